namespace Engine.Backends.Cpu;

/// <summary>Host memory for the CPU backend.</summary>
internal sealed class CpuBuffer<T>(int length) : DeviceBuffer<T> where T : unmanaged
{
    public T[] Data { get; } = new T[length];

    public override int Length => Data.Length;

    /// <summary>Bumped by every upload, so caches derived from the contents (packed weights) know they are stale.</summary>
    public int Version { get; set; }

    public (int Version, int N, int K, float[] Packed)? PackedCache { get; set; }
}

/// <summary>
/// The managed CPU backend: SIMD (512-, 256- or 128-bit, whatever the processor runs natively) and all cores.
/// It is what users without a GPU run, and what the ILGPU kernels are checked against.
/// </summary>
public sealed class CpuBackend : ITrainingBackend
{
    public string Description => $"cpu: {Simd.Name}, {Environment.ProcessorCount} threads";

    public DeviceBuffer<T> Allocate<T>(int length) where T : unmanaged => new CpuBuffer<T>(length);

    public void Upload<T>(ReadOnlySpan<T> source, DeviceBuffer<T> destination) where T : unmanaged
    {
        var buffer = Host(destination);
        Check(source.Length <= buffer.Length, $"upload of {source.Length} elements into a buffer of {buffer.Length}");
        source.CopyTo(buffer.Data);
        buffer.Version++;
    }

    public void Download<T>(DeviceBuffer<T> source, Span<T> destination) where T : unmanaged
    {
        var buffer = Host(source);
        Check(destination.Length <= buffer.Length, $"download of {destination.Length} elements from a buffer of {buffer.Length}");
        buffer.Data.AsSpan(0, destination.Length).CopyTo(destination);
    }

    public void Linear(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<float> weight, DeviceBuffer<float>? bias,
        int M, int K, int N, Activation activation)
    {
        var w = Host(weight);
        CheckSize(output, (long)M * N, nameof(output));
        CheckSize(input, (long)M * K, nameof(input));
        CheckSize(weight, (long)N * K, nameof(weight));
        if (bias is not null) CheckSize(bias, N, nameof(bias));
        CpuGemm.Multiply(Host(output).Data, Host(input).Data, PackedWeight(w, N, K), bias is null ? null : Host(bias).Data, M, K, N, activation);
    }

    public void MatMul(DeviceBuffer<float> output, DeviceBuffer<float> a, DeviceBuffer<float> b, MatMulShape shape)
    {
        CheckSize(output, shape.ElementsC, nameof(output));
        CheckSize(a, shape.ElementsA, nameof(a));
        CheckSize(b, shape.ElementsB, nameof(b));
        var (c, aData, bData) = (Host(output).Data, Host(a).Data, Host(b).Data);
        int M = shape.M, K = shape.K, N = shape.N;
        var rowMajorA = shape.TransposeA ? new float[M * K] : null;
        var itemC = new float[M * N];
        for (int i = 0; i < shape.Batch; i++)
        {
            var itemA = aData.AsSpan((int)(i * shape.StrideA), M * K);
            if (rowMajorA is not null)
                for (int k = 0; k < K; k++)
                    for (int m = 0; m < M; m++) rowMajorA[m * K + k] = itemA[k * M + m];
            var packed = CpuGemm.Pack(bData.AsSpan((int)(i * shape.StrideB), K * N), N, K, kMajor: !shape.TransposeB);
            CpuGemm.Multiply(itemC, rowMajorA ?? itemA.ToArray(), packed, null, M, K, N, Activation.None);
            itemC.CopyTo(c.AsSpan((int)(i * shape.StrideC), M * N));
        }
    }

    public void Softmax(DeviceBuffer<float> output, DeviceBuffer<float> input, int rows, int N)
    {
        CheckSize(output, (long)rows * N, nameof(output));
        CheckSize(input, (long)rows * N, nameof(input));
        var (source, destination) = (Host(input).Data, Host(output).Data);
        Parallel.For(0, rows, row => System.Numerics.Tensors.TensorPrimitives.SoftMax(source.AsSpan(row * N, N), destination.AsSpan(row * N, N)));
    }

    public void Activate(DeviceBuffer<float> output, DeviceBuffer<float> input, int n, Activation activation)
    {
        CheckSize(output, n, nameof(output));
        CheckSize(input, n, nameof(input));
        CpuActivations.Apply(Host(input).Data.AsSpan(0, n), Host(output).Data.AsSpan(0, n), activation);
    }

    public void Attention(DeviceBuffer<float> output, DeviceBuffer<float> qkv, DeviceBuffer<int> keyMask, int B, int T, int NH, int HS)
    {
        long c = (long)NH * HS;
        CheckSize(output, B * T * c, nameof(output));
        CheckSize(qkv, B * T * 3 * c, nameof(qkv));
        CheckSize(keyMask, (long)B * T, nameof(keyMask));
        CpuAttention.Forward(Host(output).Data, Host(qkv).Data, Host(keyMask).Data, B, T, NH, HS);
    }

    public void LayerNorm(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<float>? residual,
        DeviceBuffer<float> weight, DeviceBuffer<float> bias, int N, int C, float eps)
    {
        CheckSize(output, (long)N * C, nameof(output));
        CheckSize(input, (long)N * C, nameof(input));
        if (residual is not null) CheckSize(residual, (long)N * C, nameof(residual));
        CheckSize(weight, C, nameof(weight));
        CheckSize(bias, C, nameof(bias));
        CpuNormalization.LayerNorm(Host(output).Data, Host(input).Data, residual is null ? null : Host(residual).Data,
            Host(weight).Data, Host(bias).Data, N, C, eps);
    }

    public void Embeddings(DeviceBuffer<float> output, DeviceBuffer<float>? sum, DeviceBuffer<int> inputIds, DeviceBuffer<int> tokenTypeIds,
        DeviceBuffer<float> wordEmbeddings, DeviceBuffer<float> positionEmbeddings, DeviceBuffer<float> tokenTypeEmbeddings,
        DeviceBuffer<float> weight, DeviceBuffer<float> bias, int B, int T, int C, float eps)
    {
        CheckSize(output, (long)B * T * C, nameof(output));
        if (sum is not null) CheckSize(sum, (long)B * T * C, nameof(sum));
        CheckSize(weight, C, nameof(weight));
        CheckSize(bias, C, nameof(bias));
        CheckSize(inputIds, (long)B * T, nameof(inputIds));
        CheckSize(tokenTypeIds, (long)B * T, nameof(tokenTypeIds));
        CheckSize(positionEmbeddings, (long)T * C, nameof(positionEmbeddings));
        var sumData = Host(sum ?? output).Data; // without a sum buffer, the output holds it until normalised in place
        CpuNormalization.Embeddings(sumData, Host(inputIds).Data, Host(tokenTypeIds).Data,
            Host(wordEmbeddings).Data, Host(positionEmbeddings).Data, Host(tokenTypeEmbeddings).Data, B, T, C);
        CpuNormalization.LayerNorm(Host(output).Data, sumData, null, Host(weight).Data, Host(bias).Data, B * T, C, eps);
    }

    public void FirstToken(DeviceBuffer<float> output, DeviceBuffer<float> input, int B, int T, int C)
    {
        CheckSize(output, (long)B * C, nameof(output));
        CheckSize(input, (long)B * T * C, nameof(input));
        var source = Host(input).Data;
        var destination = Host(output).Data;
        for (int b = 0; b < B; b++) source.AsSpan(b * T * C, C).CopyTo(destination.AsSpan(b * C, C));
    }

    public void LinearBackward(DeviceBuffer<float>? dInput, DeviceBuffer<float> dWeight, DeviceBuffer<float>? dBias,
        DeviceBuffer<float> dOutput, DeviceBuffer<float> input, DeviceBuffer<float> weight, int M, int K, int N)
    {
        CheckSize(dOutput, (long)M * N, nameof(dOutput));
        CheckSize(input, (long)M * K, nameof(input));
        CheckSize(weight, (long)N * K, nameof(weight));
        CheckSize(dWeight, (long)N * K, nameof(dWeight));
        // dInput (M,K) = dOutput (M,N) · weight (N,K): weight is the (K,N)-layout operand of a product over N.
        if (dInput is not null) MatMul(dInput, dOutput, weight, MatMulShape.Contiguous(1, M, N, K, false, false));
        // dWeight (N,K) += dOutputᵀ · input.
        var product = new CpuBuffer<float>(N * K);
        MatMul(product, dOutput, input, MatMulShape.Contiguous(1, N, M, K, true, false));
        System.Numerics.Tensors.TensorPrimitives.Add(Host(dWeight).Data.AsSpan(0, N * K), product.Data, Host(dWeight).Data.AsSpan(0, N * K));
        if (dBias is not null)
        {
            CheckSize(dBias, N, nameof(dBias));
            var bias = Host(dBias).Data.AsSpan(0, N);
            var dy = Host(dOutput).Data;
            for (int m = 0; m < M; m++) System.Numerics.Tensors.TensorPrimitives.Add(bias, dy.AsSpan(m * N, N), bias);
        }
    }

    public void ActivateBackward(DeviceBuffer<float> dInput, DeviceBuffer<float> dOutput, DeviceBuffer<float> input, int n, Activation activation)
    {
        CheckSize(dInput, n, nameof(dInput));
        CheckSize(dOutput, n, nameof(dOutput));
        CheckSize(input, n, nameof(input));
        CpuBackward.ActivateBackward(Host(dInput).Data, Host(dOutput).Data, Host(input).Data, n, activation);
    }

    public void LayerNormBackward(DeviceBuffer<float> dInput, DeviceBuffer<float> dWeight, DeviceBuffer<float> dBias,
        DeviceBuffer<float> dOutput, DeviceBuffer<float> input, DeviceBuffer<float>? residual, DeviceBuffer<float> weight, int N, int C, float eps)
    {
        foreach (var (buffer, name) in new[] { (dInput, nameof(dInput)), (dOutput, nameof(dOutput)), (input, nameof(input)) })
            CheckSize(buffer, (long)N * C, name);
        if (residual is not null) CheckSize(residual, (long)N * C, nameof(residual));
        CheckSize(weight, C, nameof(weight));
        CheckSize(dWeight, C, nameof(dWeight));
        CheckSize(dBias, C, nameof(dBias));
        CpuBackward.LayerNormBackward(Host(dInput).Data, Host(dWeight).Data, Host(dBias).Data, Host(dOutput).Data, Host(input).Data,
            residual is null ? null : Host(residual).Data, Host(weight).Data, N, C, eps);
    }

    public void AttentionBackward(DeviceBuffer<float> dQkv, DeviceBuffer<float> dOutput, DeviceBuffer<float> qkv, DeviceBuffer<int> keyMask,
        int B, int T, int NH, int HS)
    {
        long c = (long)NH * HS;
        CheckSize(dQkv, B * T * 3 * c, nameof(dQkv));
        CheckSize(qkv, B * T * 3 * c, nameof(qkv));
        CheckSize(dOutput, B * T * c, nameof(dOutput));
        CheckSize(keyMask, (long)B * T, nameof(keyMask));
        CpuAttention.Backward(Host(dQkv).Data, Host(dOutput).Data, Host(qkv).Data, Host(keyMask).Data, B, T, NH, HS);
    }

    public void EmbeddingsBackward(DeviceBuffer<float> dWord, DeviceBuffer<float> dPosition, DeviceBuffer<float> dTokenType,
        DeviceBuffer<float> dSum, DeviceBuffer<int> inputIds, DeviceBuffer<int> tokenTypeIds, int B, int T, int C)
    {
        CheckSize(dSum, (long)B * T * C, nameof(dSum));
        CheckSize(inputIds, (long)B * T, nameof(inputIds));
        CheckSize(tokenTypeIds, (long)B * T, nameof(tokenTypeIds));
        CheckSize(dPosition, (long)T * C, nameof(dPosition));
        CpuBackward.EmbeddingsBackward(Host(dWord).Data, Host(dPosition).Data, Host(dTokenType).Data, Host(dSum).Data,
            Host(inputIds).Data, Host(tokenTypeIds).Data, B, T, C);
    }

    public void FirstTokenBackward(DeviceBuffer<float> dInput, DeviceBuffer<float> dOutput, int B, int T, int C)
    {
        CheckSize(dInput, (long)B * T * C, nameof(dInput));
        CheckSize(dOutput, (long)B * C, nameof(dOutput));
        var (destination, source) = (Host(dInput).Data, Host(dOutput).Data);
        Array.Clear(destination, 0, B * T * C);
        for (int b = 0; b < B; b++) source.AsSpan(b * C, C).CopyTo(destination.AsSpan(b * T * C, C));
    }

    public void Dropout(DeviceBuffer<float> output, DeviceBuffer<float> input, int n, float probability, ulong seed, ulong offset)
    {
        CheckSize(output, n, nameof(output));
        CheckSize(input, n, nameof(input));
        CpuBackward.Dropout(Host(output).Data, Host(input).Data, n, probability, seed, offset);
    }

    // The backward applies the same mask and scale to the gradient as the forward did to the values.
    public void DropoutBackward(DeviceBuffer<float> dInput, DeviceBuffer<float> dOutput, int n, float probability, ulong seed, ulong offset) =>
        Dropout(dInput, dOutput, n, probability, seed, offset);

    public double SumOfSquares(DeviceBuffer<float> values, int n)
    {
        CheckSize(values, n, nameof(values));
        var data = Host(values).Data;
        double sum = 0;
        for (int i = 0; i < n; i++) sum += (double)data[i] * data[i];
        return sum;
    }

    public void AdamW(DeviceBuffer<float> parameter, DeviceBuffer<float> gradient, DeviceBuffer<float> m, DeviceBuffer<float> v, int n, AdamWStep step)
    {
        foreach (var (buffer, name) in new[] { (parameter, nameof(parameter)), (gradient, nameof(gradient)), (m, nameof(m)), (v, nameof(v)) })
            CheckSize(buffer, n, name);
        var (p, g, first, second) = (Host(parameter).Data, Host(gradient).Data, Host(m).Data, Host(v).Data);
        var constants = Training.AdamWMath.Constants(step);
        for (int i = 0; i < n; i++) Training.AdamWMath.Update(ref p[i], g[i], ref first[i], ref second[i], step, constants);
        Host(parameter).Version++; // the packed copy a Linear keeps of this weight is now stale
    }

    public void Accumulate(DeviceBuffer<float> destination, DeviceBuffer<float> source, int n)
    {
        CheckSize(destination, n, nameof(destination));
        CheckSize(source, n, nameof(source));
        var d = Host(destination).Data.AsSpan(0, n);
        System.Numerics.Tensors.TensorPrimitives.Add(d, Host(source).Data.AsSpan(0, n), d);
    }

    public void SoftmaxBackward(DeviceBuffer<float> dInput, DeviceBuffer<float> dOutput, DeviceBuffer<float> output, int rows, int N)
    {
        foreach (var (buffer, name) in new[] { (dInput, nameof(dInput)), (dOutput, nameof(dOutput)), (output, nameof(output)) })
            CheckSize(buffer, (long)rows * N, name);
        CpuBackward.SoftmaxBackward(Host(dInput).Data, Host(dOutput).Data, Host(output).Data, rows, N);
    }

    public void CrossEntropy(DeviceBuffer<float> losses, DeviceBuffer<float> dLogits, DeviceBuffer<float> logits, DeviceBuffer<int> labels, int B, int V)
    {
        CheckSize(losses, B, nameof(losses));
        CheckSize(dLogits, (long)B * V, nameof(dLogits));
        CheckSize(logits, (long)B * V, nameof(logits));
        CheckSize(labels, B, nameof(labels));
        CpuBackward.CrossEntropy(Host(losses).Data, Host(dLogits).Data, Host(logits).Data, Host(labels).Data, B, V);
    }

    public void Dispose() { }

    private static float[] PackedWeight(CpuBuffer<float> weight, int N, int K)
    {
        lock (weight)
        {
            if (weight.PackedCache is { } cache && cache.Version == weight.Version && cache.N == N && cache.K == K) return cache.Packed;
            var packed = CpuGemm.Pack(weight.Data, N, K);
            weight.PackedCache = (weight.Version, N, K, packed);
            return packed;
        }
    }

    private static CpuBuffer<T> Host<T>(DeviceBuffer<T> buffer) where T : unmanaged =>
        buffer as CpuBuffer<T> ?? throw new ArgumentException($"buffer of type {buffer.GetType().Name} does not belong to the CPU backend");

    /// <summary>At least <paramref name="needed"/> elements: buffers are reused for smaller batches.</summary>
    private static void CheckSize<T>(DeviceBuffer<T> buffer, long needed, string name) where T : unmanaged =>
        Check(buffer.Length >= needed, $"{name} holds {buffer.Length} elements, the op needs {needed}");

    private static void Check(bool condition, string message)
    {
        if (!condition) throw new ArgumentException(message);
    }
}
