namespace Engine.Backends;

/// <summary>
/// A flat buffer of <typeparamref name="T"/> owned by a backend (host memory, or device memory), or a view of
/// part of one (<see cref="Slice"/>: a parameter in its model's arena).
/// </summary>
public abstract class DeviceBuffer<T> : IDisposable where T : unmanaged
{
    public abstract int Length { get; }

    /// <summary>
    /// Elements [offset, offset + length) of this buffer as a buffer of their own, sharing its storage: what an op
    /// writes there, this buffer holds. Disposing a view frees nothing; the view must not outlive the buffer.
    /// </summary>
    public abstract DeviceBuffer<T> Slice(long offset, int length);

    /// <summary>Throws unless [offset, offset + length) lies inside a buffer of <paramref name="bufferLength"/> elements.</summary>
    protected static void CheckSlice(long offset, int length, int bufferLength)
    {
        if (offset < 0 || length < 0 || offset + length > bufferLength)
            throw new ArgumentOutOfRangeException(nameof(offset), $"slice [{offset}, {offset + length}) of a buffer of {bufferLength} elements");
    }

    /// <summary>Throws unless the buffer holds at least <paramref name="needed"/> elements (buffers are reused for smaller batches).</summary>
    public void RequireLength(long needed, string name) => OpShapes.Require(Length, needed, name);

    public virtual void Dispose() => GC.SuppressFinalize(this);
}

/// <summary>The element-wise function applied after a linear layer (or on its own).</summary>
public enum Activation
{
    None,
    /// <summary>Exact GELU, x·Φ(x) with the erf form (BERT's <c>"gelu"</c>), not the tanh approximation.</summary>
    Gelu,
    Tanh,
}

/// <summary>
/// A batch of matrix products output[i] (M,N) = opA(a[i]) · opB(b[i]) for i &lt; Batch. opA(a) is (M,K):
/// stored (M,K), or (K,M) when <c>TransposeA</c>. opB(b) is (K,N): stored (N,K) when <c>TransposeB</c>
/// (PyTorch's Linear-weight layout), else (K,N). Strides are in elements between batch items; items are
/// dense inside.
/// </summary>
public readonly record struct MatMulShape(int Batch, int M, int K, int N, bool TransposeA, bool TransposeB, long StrideA, long StrideB, long StrideC)
{
    /// <summary>Contiguous items: strides M·K, K·N, M·N.</summary>
    public static MatMulShape Contiguous(int batch, int M, int K, int N, bool transposeA, bool transposeB) =>
        new(batch, M, K, N, transposeA, transposeB, (long)M * K, (long)K * N, (long)M * N);

    /// <summary>Elements each buffer must hold.</summary>
    public long ElementsA => (Batch - 1) * StrideA + (long)M * K;
    public long ElementsB => (Batch - 1) * StrideB + (long)K * N;
    public long ElementsC => (Batch - 1) * StrideC + (long)M * N;
}

/// <summary>
/// The encoder's operations, implemented once per backend (the managed SIMD CPU backend; the ILGPU
/// backend). Float operands are <see cref="Tensor"/>s, which carry their element type and shape (parameters pass
/// their table's; a float buffer converts to a flat F32 tensor); a backend refuses, naming the operand, a type it
/// has no kernel for. Sizes are passed as well, named with fixed letters: B batch, T tokens, C channels, NH heads,
/// HS head size, V vocabulary, M×K·(N×K)ᵀ for matrix products. Outputs come first, then inputs, then weights, then
/// sizes. No op allocates its output.
/// </summary>
public interface IBackend : IDisposable
{
    /// <summary>What runs the ops, for <c>info</c> and <c>--verbose</c> (e.g. "cpu: AVX-512, 2 threads").</summary>
    string Description { get; }

    DeviceBuffer<T> Allocate<T>(int length) where T : unmanaged;

    /// <summary>Copies <paramref name="source"/> into the start of <paramref name="destination"/> (which may be longer: buffers are reused).</summary>
    void Upload<T>(ReadOnlySpan<T> source, DeviceBuffer<T> destination) where T : unmanaged;

    /// <summary>Copies the start of <paramref name="source"/> into <paramref name="destination"/>.</summary>
    void Download<T>(DeviceBuffer<T> source, Span<T> destination) where T : unmanaged;

    /// <summary>
    /// output (M,N) = activation(input (M,K) · weight (N,K)ᵀ + bias (N)); the weight is in PyTorch's [out, in] layout.
    /// <paramref name="preActivation"/> (M,N), when given, also receives input · weightᵀ + bias (what the activation's
    /// backward reads): training keeps the activation fused into the product too.
    /// </summary>
    void Linear(Tensor output, Tensor input, Tensor weight, Tensor? bias,
        int M, int K, int N, Activation activation, Tensor? preActivation = null);

    /// <summary>Strided-batched matrix products in either layout (attention's and backward passes' products).</summary>
    void MatMul(Tensor output, Tensor a, Tensor b, MatMulShape shape);

    /// <summary>output (rows, N) = softmax over each row of input (rows, N) (e.g. class probabilities).</summary>
    void Softmax(Tensor output, Tensor input, int rows, int N);

    /// <summary>output (n) = activation(input (n)).</summary>
    void Activate(Tensor output, Tensor input, int n, Activation activation);

    /// <summary>
    /// Multi-head self-attention over each sequence of <paramref name="sequences"/> (padded with a key mask, or packed):
    /// for each sequence and head, softmax(Q·Kᵀ/√HS over its real keys)·V. qkv (rows,3·C) holds Q, K, V side by side,
    /// each (rows,NH,HS); output (rows,C) with C = NH·HS. <paramref name="dropout"/> applies to the probabilities (Hugging
    /// Face's attention_probs dropout) as if they were a (B,NH,T,T) tensor: element ((b·NH + h)·T + i)·T + j is query i's
    /// probability of key j in sequence b, in either layout; <see cref="DropoutMask.None"/> for inference.
    /// </summary>
    void Attention(Tensor output, Tensor qkv, SequenceLayout sequences, int NH, int HS, DropoutMask dropout);

    /// <summary>
    /// probabilities (B,NH,T,T) = what <see cref="Attention"/> weighs the values by, without dropout (Hugging Face's
    /// output_attentions): element ((b·NH + h)·T + i)·T + j is query i's probability of key j in sequence b, softmax of
    /// Q·Kᵀ/√HS over the sequence's real keys. A key that is padding gets 0, and so does every key of a query that is
    /// padding (a packed layout has no such query; a padded one gives the same). The fused attention never forms these:
    /// a model asks for them only when attention maps are wanted.
    /// </summary>
    void AttentionProbabilities(Tensor probabilities, Tensor qkv, SequenceLayout sequences, int NH, int HS);

    /// <summary>output (N,C) = LayerNorm(input + residual) over C, with weight (C) and bias (C); residual may be null.</summary>
    void LayerNorm(Tensor output, Tensor input, Tensor? residual,
        Tensor weight, Tensor bias, int N, int C, float eps);

    /// <summary>
    /// output (B,T,C) = LayerNorm(wordEmbeddings[inputIds] + positionEmbeddings[positionIds] + tokenTypeEmbeddings[tokenTypeIds])
    /// with weight and bias (C); <paramref name="sum"/> (B,T,C), when given, receives the sum before the
    /// normalisation (what a backward pass needs). inputIds, positionIds, tokenTypeIds (B,T); ids must already be in
    /// range (the model checks them; the family decides the positions, e.g. t for BERT).
    /// </summary>
    void Embeddings(Tensor output, Tensor? sum, DeviceBuffer<int> inputIds, DeviceBuffer<int> positionIds, DeviceBuffer<int> tokenTypeIds,
        Tensor wordEmbeddings, Tensor positionEmbeddings, Tensor tokenTypeEmbeddings,
        Tensor weight, Tensor bias, int B, int T, int C, float eps);

    /// <summary>
    /// output (R,C) = input (N,C)[rows]: the rows a head reads (the [CLS] rows for a pooler, the masked positions for a
    /// masked-LM head). rows (R) must be distinct and below N; the caller builds them.
    /// </summary>
    void GatherRows(Tensor output, Tensor input, DeviceBuffer<int> rows, int R, int N, int C);
}
