// Embeddings: out (B,T,C) = word[ids] + position[t] + tokenType[types]; and the [CLS] gather of the pooler.
//
// Shapes: ids, types (B,T); word (V,C); position (P,C), P ≥ T; tokenType (TV,C). The layer-norm that
// follows in BertEmbeddings is LayerNorm.cs. The backward issue adds a deterministic scatter-add here.
// Scheme: one thread per output element; consecutive threads read consecutive channels of one row.
// History: v1 (this version).
using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels;

internal static class EmbeddingsKernels
{
    public readonly record struct Shape(int B, int T, int C);

    public static void Kernel(Index1D index, ArrayView<float> output, ArrayView<int> inputIds, ArrayView<int> tokenTypeIds,
        ArrayView<float> word, ArrayView<float> position, ArrayView<float> tokenType, Shape s)
    {
        int token = index / s.C, c = index % s.C, t = token % s.T;
        output[index] = word[(long)inputIds[token] * s.C + c] + position[(long)t * s.C + c] + tokenType[(long)tokenTypeIds[token] * s.C + c];
    }

    /// <summary>out (B,C) = inp (B,T,C)[:, 0, :]; one thread per output element.</summary>
    public static void FirstTokenKernel(Index1D index, ArrayView<float> output, ArrayView<float> input, int T, int C)
    {
        int b = index / C, c = index % C;
        output[index] = input[(long)b * T * C + c];
    }
}
