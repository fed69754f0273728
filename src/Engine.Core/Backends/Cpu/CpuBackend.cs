namespace Engine.Backends.Cpu;

/// <summary>Host memory for the CPU backend: an array, or a view of part of one (<see cref="DeviceBuffer{T}.Slice"/>).</summary>
internal sealed class CpuBuffer<T> : DeviceBuffer<T> where T : unmanaged
{
    /// <summary>The array and its version, shared by a buffer and its views.</summary>
    private sealed class Storage(T[] array)
    {
        public readonly T[] Array = array;
        public int Version;
    }

    private readonly Storage _storage;

    public CpuBuffer(int length) : this(new Storage(new T[length]), 0, length) { }

    private CpuBuffer(Storage storage, int offset, int length)
    {
        _storage = storage;
        Offset = offset;
        Length = length;
    }

    public override int Length { get; }

    /// <summary>Where this buffer starts in <see cref="Array"/> (0 unless it is a view).</summary>
    public int Offset { get; }

    public T[] Array => _storage.Array;

    public Span<T> Span => _storage.Array.AsSpan(Offset, Length);

    public ArraySegment<T> Segment => new(_storage.Array, Offset, Length);

    /// <summary>The array of a buffer that starts at its beginning: what the ops whose operands are never parameters (activations) index from 0.</summary>
    public T[] Data => Offset == 0 ? _storage.Array : throw new ArgumentException($"a view at offset {Offset} where an op needs a whole buffer");

    /// <summary>Bumped by every write to the storage (upload, optimizer step), so caches derived from the contents (packed weights) know they are stale.</summary>
    public int Version
    {
        get => _storage.Version;
        set => _storage.Version = value;
    }

    /// <summary>The weight in its GEMM's packed form (float panels, or <see cref="CpuInt8Gemm.PackedWeights"/>), as of <c>Version</c>.</summary>
    public (int Version, int N, int K, object Packed)? PackedCache { get; set; }

    public override DeviceBuffer<T> Slice(long offset, int length)
    {
        CheckSlice(offset, length, Length);
        return new CpuBuffer<T>(_storage, Offset + (int)offset, length);
    }
}

/// <summary>
/// The managed CPU backend: SIMD (512-, 256- or 128-bit, whatever the processor runs natively) and all cores.
/// It is what users without a GPU run, and what the ILGPU kernels are checked against.
/// </summary>
public sealed class CpuBackend : ITrainingBackend
{
    /// <summary>The most threads an op may use, and the options its loops run with.</summary>
    private readonly ParallelOptions _parallelism;

    /// <param name="threads">The most threads one op uses: 1 runs every op on the calling thread; 0 (the default) every core.</param>
    public CpuBackend(int threads = 0)
    {
        if (threads < 0 || threads > MaxThreads) throw new ArgumentOutOfRangeException(nameof(threads), $"threads = {threads}: expected 0 (every core) to {MaxThreads}");
        Threads = threads == 0 ? Environment.ProcessorCount : threads;
        _parallelism = new ParallelOptions { MaxDegreeOfParallelism = Threads };
    }

    /// <summary>The largest thread count a backend takes.</summary>
    public const int MaxThreads = 4096;

    /// <summary>The most threads one op uses.</summary>
    public int Threads { get; }

    public string Description => $"cpu: {Simd.Name}, {Threads} thread{(Threads == 1 ? "" : "s")}";

    public DeviceBuffer<T> Allocate<T>(int length) where T : unmanaged => new CpuBuffer<T>(length);

    public void Upload<T>(ReadOnlySpan<T> source, DeviceBuffer<T> destination) where T : unmanaged
    {
        var buffer = Host(destination);
        Check(source.Length <= buffer.Length, $"upload of {source.Length} elements into a buffer of {buffer.Length}");
        source.CopyTo(buffer.Span);
        buffer.Version++;
    }

    public void Download<T>(DeviceBuffer<T> source, Span<T> destination) where T : unmanaged
    {
        var buffer = Host(source);
        Check(destination.Length <= buffer.Length, $"download of {destination.Length} elements from a buffer of {buffer.Length}");
        buffer.Span[..destination.Length].CopyTo(destination);
    }

    public void Linear(Tensor output, Tensor input, Tensor weight, Tensor? bias,
        int M, int K, int N, Activation activation, Tensor? preActivation = null)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.Linear(output, input, weight, bias, M, K, N, preActivation);
        if (weight.Type == IO.DType.I8)
        {
            LinearInt8(output, input, weight, bias, M, K, N, activation, preActivation);
            return;
        }
        var packed = IO.DTypes.IsHalf(weight.Type) ? PackedHalves(Host(weight.HalfValues(nameof(weight))), weight.Type, N, K) : PackedWeight(Host(weight), N, K);
        CpuGemm.Multiply(Host(output).Data, Host(input).Data, packed, bias is null ? (ArraySegment<float>?)null : Host(bias).Segment, M, K, N, activation,
            preActivation: preActivation is null ? null : Host(preActivation).Data);
    }

    /// <summary>The int8 Linear: the input quantized per row into pooled scratch, the integer product, the dequantizing epilogue.</summary>
    private static void LinearInt8(Tensor output, Tensor input, Tensor weight, Tensor? bias, int M, int K, int N, Activation activation, Tensor? preActivation)
    {
        var (values, scales) = weight.I8(nameof(weight));
        var packed = PackedInt8(Host(values), N, K);
        var shifted = System.Buffers.ArrayPool<byte>.Shared.Rent(CpuInt8Gemm.ShiftedLength(M, K));
        var rowScales = System.Buffers.ArrayPool<float>.Shared.Rent(M);
        try
        {
            CpuInt8Gemm.QuantizeRows(Host(input).Data, M, K, shifted, rowScales);
            CpuInt8Gemm.Linear(Host(output).Data, shifted, rowScales, packed, Host(scales).Segment, bias is null ? (ArraySegment<float>?)null : Host(bias).Segment, M, activation,
                preActivation is null ? null : Host(preActivation).Data);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(shifted);
            System.Buffers.ArrayPool<float>.Shared.Return(rowScales);
        }
    }

    public void MatMul(Tensor output, Tensor a, Tensor b, MatMulShape shape)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.MatMul(output, a, b, shape);
        Multiply(Host(output), Host(a), Host(b), shape, accumulate: false);
    }

    /// <summary>
    /// The batched product of <see cref="MatMul"/> (or, with <paramref name="accumulate"/>, C += A·B); the packed B is
    /// rented from the shared pool and a transposed A is read in place, so a training step allocates no product scratch.
    /// </summary>
    private static void Multiply(CpuBuffer<float> c, CpuBuffer<float> aBuffer, CpuBuffer<float> bBuffer, MatMulShape shape, bool accumulate)
    {
        int M = shape.M, K = shape.K, N = shape.N;
        var pool = System.Buffers.ArrayPool<float>.Shared;
        var packed = pool.Rent(CpuGemm.PackedLength(N, K));
        try
        {
            for (int i = 0; i < shape.Batch; i++)
            {
                CpuGemm.Pack(bBuffer.Array, N, K, kMajor: !shape.TransposeB, offset: bBuffer.Offset + i * shape.StrideB, destination: packed);
                CpuGemm.Multiply(c.Array, aBuffer.Array, packed, null, M, K, N, Activation.None, aOffset: aBuffer.Offset + i * shape.StrideA,
                    cOffset: c.Offset + i * shape.StrideC, accumulate: accumulate, transposedA: shape.TransposeA);
            }
        }
        finally
        {
            pool.Return(packed);
        }
    }

    public void Softmax(Tensor output, Tensor input, int rows, int N)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.Rows(rows, N, (output, nameof(output)), (input, nameof(input)));
        var (source, destination) = (Host(input).Data, Host(output).Data);
        CpuParallel.For(0, rows, row => Probabilities.FromLogits(source.AsSpan(row * N, N), destination.AsSpan(row * N, N)));
    }

    public void Activate(Tensor output, Tensor input, int n, Activation activation)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.Elementwise(n, (output, nameof(output)), (input, nameof(input)));
        var (source, destination) = (Host(input).Data, Host(output).Data);
        CpuParallel.For(0, (n + 4095) / 4096, chunk =>
        {
            int start = chunk * 4096, length = Math.Min(n - start, 4096);
            CpuActivations.Apply(source.AsSpan(start, length), destination.AsSpan(start, length), activation);
        });
    }

    public void Attention(Tensor output, Tensor qkv, SequenceLayout sequences, int NH, int HS, DropoutMask dropout)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.Attention(output, qkv, sequences, NH, HS, dropout);
        var indices = Host(sequences.Indices).Data;
        sequences.ValidateStarts(indices);
        CpuAttention.Forward(Host(output).Data, Host(qkv).Data, indices, sequences, NH, HS, dropout);
    }

    public void AttentionProbabilities(Tensor probabilities, Tensor qkv, SequenceLayout sequences, int NH, int HS)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.AttentionProbabilities(probabilities, qkv, sequences, NH, HS);
        var indices = Host(sequences.Indices).Data;
        sequences.ValidateStarts(indices);
        CpuAttention.Maps(Host(probabilities).Data, Host(qkv).Data, indices, sequences, NH, HS);
    }

    public void LayerNorm(Tensor output, Tensor input, Tensor? residual,
        Tensor weight, Tensor bias, int N, int C, float eps)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.LayerNorm(output, input, residual, weight, bias, N, C);
        CpuNormalization.LayerNorm(Host(output).Data, Host(input).Data, residual is null ? null : Host(residual).Data,
            Host(weight).Segment, Host(bias).Segment, N, C, eps);
    }

    public void Embeddings(Tensor output, Tensor? sum, DeviceBuffer<int> inputIds, DeviceBuffer<int> positionIds, DeviceBuffer<int> tokenTypeIds,
        Tensor wordEmbeddings, Tensor positionEmbeddings, Tensor tokenTypeEmbeddings,
        Tensor weight, Tensor bias, int B, int T, int C, float eps)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.Embeddings(output, sum, inputIds, positionIds, tokenTypeIds, weight, bias, B, T, C);
        var sumData = Host(sum ?? output).Data; // without a sum buffer, the output holds it until normalised in place
        var words = wordEmbeddings.Type switch
        {
            IO.DType.I8 => new CpuNormalization.WordRows(Host(wordEmbeddings.I8(nameof(wordEmbeddings)).Values).Segment, Host(wordEmbeddings.I8(nameof(wordEmbeddings)).Scales).Segment),
            IO.DType.F16 or IO.DType.BF16 => new CpuNormalization.WordRows(Host(wordEmbeddings.HalfValues(nameof(wordEmbeddings))).Segment, wordEmbeddings.Type),
            _ => new CpuNormalization.WordRows(Host(wordEmbeddings).Segment),
        };
        CpuNormalization.Embeddings(sumData, Host(inputIds).Data, Host(positionIds).Data, Host(tokenTypeIds).Data,
            words, Host(positionEmbeddings).Segment, Host(tokenTypeEmbeddings).Segment, B, T, C);
        CpuNormalization.LayerNorm(Host(output).Data, sumData, null, Host(weight).Segment, Host(bias).Segment, B * T, C, eps);
    }

    public void GatherRows(Tensor output, Tensor input, DeviceBuffer<int> rows, int R, int N, int C)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.GatherRows(output, input, rows, R, N, C, nameof(output), nameof(input));
        var (source, destination, indices) = (Host(input).Data, Host(output).Data, Rows(rows, R, N));
        for (int r = 0; r < R; r++) source.AsSpan(indices[r] * C, C).CopyTo(destination.AsSpan(r * C, C));
    }

    public void LinearBackward(Tensor? dInput, Tensor dWeight, Tensor? dBias,
        Tensor dOutput, Tensor input, Tensor weight, int M, int K, int N)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.LinearBackward(dInput, dWeight, dBias, dOutput, input, weight, M, K, N);
        // dInput (M,K) = dOutput (M,N) · weight (N,K): weight is the (K,N)-layout operand of a product over N.
        if (dInput is not null) MatMul(dInput, dOutput, weight, MatMulShape.Contiguous(1, M, N, K, false, false));
        // dWeight (N,K) += dOutputᵀ · input, summed into the gradient in place.
        Multiply(Host(dWeight), Host(dOutput), Host(input), MatMulShape.Contiguous(1, N, M, K, true, false), accumulate: true);
        if (dBias is not null) CpuBackward.SumRows(Host(dBias).Segment, Host(dOutput).Data, M, N);
    }

    public void ActivateBackward(Tensor dInput, Tensor dOutput, Tensor input, int n, Activation activation)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.Elementwise(n, (dInput, nameof(dInput)), (dOutput, nameof(dOutput)), (input, nameof(input)));
        CpuBackward.ActivateBackward(Host(dInput).Data, Host(dOutput).Data, Host(input).Data, n, activation);
    }

    public void LayerNormBackward(Tensor dInput, Tensor dWeight, Tensor dBias,
        Tensor dOutput, Tensor input, Tensor? residual, Tensor weight, int N, int C, float eps)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.LayerNormBackward(dInput, dWeight, dBias, dOutput, input, residual, weight, N, C);
        CpuNormalization.LayerNormBackward(Host(dInput).Data, Host(dWeight).Segment, Host(dBias).Segment, Host(dOutput).Data, Host(input).Data,
            residual is null ? null : Host(residual).Data, Host(weight).Segment, N, C, eps);
    }

    public void AttentionBackward(Tensor dQkv, Tensor dOutput, Tensor qkv, SequenceLayout sequences, int NH, int HS, DropoutMask dropout)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.AttentionBackward(dQkv, dOutput, qkv, sequences, NH, HS, dropout);
        var indices = Host(sequences.Indices).Data;
        sequences.ValidateStarts(indices);
        CpuAttention.Backward(Host(dQkv).Data, Host(dOutput).Data, Host(qkv).Data, indices, sequences, NH, HS, dropout);
    }

    public void EmbeddingsBackward(Tensor dWord, Tensor dPosition, Tensor dTokenType,
        Tensor dSum, DeviceBuffer<int> inputIds, DeviceBuffer<int> positionIds, DeviceBuffer<int> tokenTypeIds, int B, int T, int C)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.EmbeddingsBackward(dSum, inputIds, positionIds, tokenTypeIds, B, T, C);
        CpuBackward.EmbeddingsBackward(Host(dWord).Segment, Host(dPosition).Segment, Host(dTokenType).Segment, Host(dSum).Data,
            Host(inputIds).Data, Host(positionIds).Data, Host(tokenTypeIds).Data, B, T, C);
    }

    public void GatherRowsBackward(Tensor dInput, Tensor dOutput, DeviceBuffer<int> rows, int R, int N, int C)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.GatherRows(dOutput, dInput, rows, R, N, C, nameof(dOutput), nameof(dInput));
        var (destination, source, indices) = (Host(dInput).Data, Host(dOutput).Data, Rows(rows, R, N));
        Array.Clear(destination, 0, N * C);
        for (int r = 0; r < R; r++) source.AsSpan(r * C, C).CopyTo(destination.AsSpan(indices[r] * C, C));
    }

    /// <summary>The first R row indices, each checked below N (they are on the host here, so the check is free).</summary>
    private static int[] Rows(DeviceBuffer<int> rows, int R, int N)
    {
        var indices = Host(rows).Data;
        for (int r = 0; r < R; r++) Check((uint)indices[r] < (uint)N, $"row index {indices[r]} at {r} is outside [0, {N})");
        return indices;
    }

    public void Dropout(Tensor output, Tensor input, int n, DropoutMask mask)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.Dropout(output, input, n, mask);
        CpuBackward.Dropout(Host(output).Data, Host(input).Data, n, mask);
    }

    // The backward applies the same mask and scale to the gradient as the forward did to the values.
    public void DropoutBackward(Tensor dInput, Tensor dOutput, int n, DropoutMask mask) =>
        Dropout(dInput, dOutput, n, mask);

    public double SumOfSquares(Tensor values, int n)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.Elementwise(n, (values, nameof(values)));
        var data = Host(values).Span;
        double sum = 0;
        for (int i = 0; i < n; i++) sum += (double)data[i] * data[i];
        return sum;
    }

    public void AdamW(Tensor parameter, Tensor gradient, Tensor m, Tensor v, int n, int decayed, AdamWStep step)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.Elementwise(n, (parameter, nameof(parameter)), (gradient, nameof(gradient)), (m, nameof(m)), (v, nameof(v)));
        OpShapes.Count(decayed, n, nameof(decayed));
        Span<float> p = Host(parameter).Span, g = Host(gradient).Span, first = Host(m).Span, second = Host(v).Span;
        var constants = Training.AdamWMath.Constants(step);
        var undecayed = Training.AdamWMath.Constants(step with { WeightDecay = 0 });
        for (int i = 0; i < n; i++) Training.AdamWMath.Update(ref p[i], g[i], ref first[i], ref second[i], step, i < decayed ? constants : undecayed);
        Host(parameter).Version++; // the packed copy a Linear keeps of this weight is now stale
    }

    public void Clear(Tensor buffer)
    {
        using var threads = CpuParallel.Use(_parallelism);
        var host = Host(buffer);
        host.Span.Clear();
        host.Version++;
    }

    public void Accumulate(Tensor destination, Tensor source, int n)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.Elementwise(n, (destination, nameof(destination)), (source, nameof(source)));
        var d = Host(destination).Data.AsSpan(0, n);
        System.Numerics.Tensors.TensorPrimitives.Add(d, Host(source).Data.AsSpan(0, n), d);
    }

    public void Scale(Tensor values, int n, float factor)
    {
        OpShapes.Elementwise(n, (values, nameof(values)));
        var v = Host(values).Data.AsSpan(0, n);
        System.Numerics.Tensors.TensorPrimitives.Multiply(v, factor, v);
    }

    public void SoftmaxBackward(Tensor dInput, Tensor dOutput, Tensor output, int rows, int N)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.Rows(rows, N, (dInput, nameof(dInput)), (dOutput, nameof(dOutput)), (output, nameof(output)));
        CpuBackward.SoftmaxBackward(Host(dInput).Data, Host(dOutput).Data, Host(output).Data, rows, N);
    }

    public void CrossEntropy(Tensor losses, Tensor dLogits, Tensor logits, DeviceBuffer<int> labels, int B, int V)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.CrossEntropy(losses, dLogits, logits, labels, B, V);
        CpuBackward.CrossEntropy(Host(losses).Data, Host(dLogits).Data, Host(logits).Data, Host(labels).Data, B, V);
    }

    public void MeanSquaredError(Tensor losses, Tensor dPredictions, Tensor predictions, Tensor targets, int n)
    {
        using var threads = CpuParallel.Use(_parallelism);
        OpShapes.Elementwise(n, (losses, nameof(losses)), (dPredictions, nameof(dPredictions)), (predictions, nameof(predictions)), (targets, nameof(targets)));
        CpuBackward.MeanSquaredError(Host(losses).Data, Host(dPredictions).Data, Host(predictions).Data, Host(targets).Data, n);
    }

    public void Dispose() { }

    private static float[] PackedWeight(CpuBuffer<float> weight, int N, int K) =>
        // A weight that changed (a training step) is repacked into its previous panels.
        Packed<float, float[]>(weight, N, K, stale => CpuGemm.Pack(weight.Array, N, K, offset: weight.Offset, destination: stale));

    /// <summary>
    /// An F16 or BF16 weight's panels: widened (exactly) as it is packed, so the product is the fp32 one of its values; the
    /// model holds the 16-bit weight, the packed fp32 panels are this backend's working copy (as for any weight).
    /// </summary>
    private static float[] PackedHalves(CpuBuffer<ushort> weight, IO.DType type, int N, int K) => Packed<ushort, float[]>(weight, N, K, _ =>
    {
        // A transient array, not a pooled one: a pool would keep a vocabulary-sized copy alive after the packing.
        var widened = GC.AllocateUninitializedArray<float>(N * K);
        IO.DTypes.ToFloat32(type, weight.Span[..(N * K)], widened);
        return CpuGemm.Pack(widened, N, K);
    });

    private static CpuInt8Gemm.PackedWeights PackedInt8(CpuBuffer<sbyte> weight, int N, int K) => Packed<sbyte, CpuInt8Gemm.PackedWeights>(weight, N, K, _ => CpuInt8Gemm.Pack(weight.Span, N, K));

    /// <summary>
    /// The packed form of a (N,K) weight, kept beside its buffer while the buffer's version stands; <paramref name="pack"/>
    /// is given the stale packing of the same shape (to pack into), or null.
    /// </summary>
    private static TPacked Packed<T, TPacked>(CpuBuffer<T> weight, int N, int K, Func<TPacked?, TPacked> pack) where T : unmanaged where TPacked : class
    {
        lock (weight)
        {
            if (weight.PackedCache is { } cache && cache.Version == weight.Version && cache.N == N && cache.K == K) return (TPacked)cache.Packed;
            var stale = weight.PackedCache is { } old && old.N == N && old.K == K ? (TPacked)old.Packed : null;
            var packed = pack(stale);
            weight.PackedCache = (weight.Version, N, K, packed);
            return packed;
        }
    }

    private static CpuBuffer<float> Host(Tensor tensor, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(tensor))] string operand = "") =>
        Host(tensor.F32(operand));

    private static CpuBuffer<T> Host<T>(DeviceBuffer<T> buffer) where T : unmanaged =>
        buffer as CpuBuffer<T> ?? throw new ArgumentException($"buffer of type {buffer.GetType().Name} does not belong to the CPU backend");

    private static void Check(bool condition, string message)
    {
        if (!condition) throw new ArgumentException(message);
    }
}
