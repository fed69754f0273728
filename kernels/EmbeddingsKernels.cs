// Embeddings: out (B,T,C) = LayerNorm(word[ids] + position[positions] + tokenType[types]) with weight, bias (C);
// and row gathers by index (the pooler's [CLS] rows, a masked-LM head's masked positions) with their scatter backward.
//
// Shapes: ids, positions, types (B,T) (the family's rule gives the positions); word (V,C); position (P,C);
// tokenType (TV,C); the word table may be int8 with a scale per token (dequantized as gathered), or F16 or BF16 as a
// checkpoint stores it (widened as gathered). Cached for backward: the sum before normalisation (B,T,C), written when a sum buffer is given.
// Scheme: one warp per token: gather and sum the three rows (consecutive lanes, consecutive channels),
// Welford statistics merged across the warp (LayerNormKernels.Moments), the sum kept in the sum buffer
// or, without one, in the output row itself (each lane re-reads only what it wrote), then normalised.
// Backward (of the sum; its layer-norm's is LayerNormKernels): per table, thread (channel, block of rows) walks
// the tokens in order and adds dsum into the rows of its block: a deterministic scatter-add, no atomics.
// History: v1 gather-sum kernel, layer-norm as a second kernel; v2 fused into one; v3 backward (a thread per
// channel over all three tables); v4 explicit position ids, the backward per table over row blocks; the [CLS] gather
// generalised to any distinct rows; v5 int8 word tables; v6 F16 and BF16 word tables (this version).
using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels;

internal static class EmbeddingsKernels
{
    public const int WarpsPerGroup = 4;

    /// <summary>The word table's <see cref="Shape.WordFormat"/>: F32, int8 with a scale per token, or 16-bit values as stored.</summary>
    public const int F32Words = 0, Int8Words = 1, F16Words = 2, Bf16Words = 3;

    /// <param name="WordFormat">How the word table (V,C) is stored: <see cref="F32Words"/>, <see cref="Int8Words"/> (dequantized
    /// as it is gathered), <see cref="F16Words"/> or <see cref="Bf16Words"/> (widened as it is gathered).</param>
    public readonly record struct Shape(int B, int T, int C, float Eps, int WordFormat = F32Words);

    public static KernelConfig Config(Shape s, int warpSize) =>
        new((s.B * s.T + WarpsPerGroup - 1) / WarpsPerGroup, WarpsPerGroup * warpSize);

    /// <param name="sum">(B,T,C), receives the sum; the output itself when no sum is kept.</param>
    public static void Kernel(ArrayView<float> output, ArrayView<float> sum, ArrayView<int> inputIds, ArrayView<int> positionIds, ArrayView<int> tokenTypeIds,
        ArrayView<float> word, ArrayView<sbyte> quantizedWord, ArrayView<float> wordScales, ArrayView<ushort> halfWord, ArrayView<float> position, ArrayView<float> tokenType, ArrayView<float> weight, ArrayView<float> bias, Shape s)
    {
        int token = Grid.IdxX * WarpsPerGroup + Warp.WarpIdx, lane = Warp.LaneIdx;
        if (token >= s.B * s.T) return; // uniform per warp
        int id = inputIds[token];
        long rowBase = (long)token * s.C, wordBase = (long)id * s.C;
        float wordScale = s.WordFormat == Int8Words ? wordScales[id] : 1f;
        long positionBase = (long)positionIds[token] * s.C, typeBase = (long)tokenTypeIds[token] * s.C;
        var moments = default(LayerNormKernels.Moments);
        for (int c = lane; c < s.C; c += Warp.WarpSize)
        {
            float wordValue = s.WordFormat switch
            {
                Int8Words => quantizedWord[wordBase + c] * wordScale,
                F16Words => ReducedPrecisionGemmKernels.Value(halfWord[wordBase + c], false, ReducedPrecisionGemmKernels.Fp16),
                Bf16Words => ReducedPrecisionGemmKernels.Value(halfWord[wordBase + c], false, ReducedPrecisionGemmKernels.Bf16),
                _ => word[wordBase + c],
            };
            float x = wordValue + position[positionBase + c] + tokenType[typeBase + c];
            sum[rowBase + c] = x;
            moments = moments.Add(x);
        }
        moments = moments.WarpMerge();
        float rstd = moments.Rstd(s.C, s.Eps);
        for (int c = lane; c < s.C; c += Warp.WarpSize)
            output[rowBase + c] = (sum[rowBase + c] - moments.Mean) * rstd * weight[c] + bias[c];
    }

    /// <summary>Row blocks per table in the backward: enough threads for a GPU on a vocabulary (32 × C), one block for small tables.</summary>
    public static int Blocks(int rows) => Math.Clamp(rows / 256, 1, 32);

    /// <summary>
    /// dtable[ids] += dsum rows (one of the three tables); thread (channel, block of table rows) walks the tokens in
    /// order and adds those whose id falls in its block: each gradient element has one owner, so the sum is
    /// deterministic, and a vocabulary's gradient runs on 32 × C threads, not C.
    /// </summary>
    public static void TableBackwardKernel(Index2D index, ArrayView<float> dTable, ArrayView<float> dSum, ArrayView<int> ids, int tokens, int C, int rows, int blocks)
    {
        int c = index.X, block = index.Y;
        int rowsPerBlock = (rows + blocks - 1) / blocks, first = block * rowsPerBlock, end = Math.Min(rows, first + rowsPerBlock);
        for (int token = 0; token < tokens; token++)
        {
            int id = ids[token];
            if (id >= first && id < end) dTable[(long)id * C + c] += dSum[(long)token * C + c];
        }
    }

    /// <summary>out (R,C) = inp (N,C)[rows]; one thread per output element. A row index outside [0, N) gives zeros, never a stray read.</summary>
    public static void GatherRowsKernel(Index1D index, ArrayView<float> output, ArrayView<float> input, ArrayView<int> rows, int N, int C)
    {
        int r = index / C, c = index % C, row = rows[r];
        output[index] = (uint)row < (uint)N ? input[(long)row * C + c] : 0f;
    }

    /// <summary>dinp[rows] = dout (R,C), dinp cleared before; one thread per element of dout (rows distinct: no two threads share a target).</summary>
    public static void ScatterRowsKernel(Index1D index, ArrayView<float> dInput, ArrayView<float> dOutput, ArrayView<int> rows, int N, int C)
    {
        int r = index / C, c = index % C, row = rows[r];
        if ((uint)row < (uint)N) dInput[(long)row * C + c] = dOutput[index];
    }
}
