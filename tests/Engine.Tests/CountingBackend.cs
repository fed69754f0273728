using Engine.Backends;

namespace Engine.Tests;

/// <summary>A training backend that passes every op to another and counts allocations (by element type), encoder passes and the optimizer's launches.</summary>
internal sealed class CountingBackend(ITrainingBackend inner) : ITrainingBackend
{
    public Dictionary<Type, int> AllocationsByType { get; } = [];
    public int Allocations => AllocationsByType.Values.Sum();
    public int AdamWLaunches { get; private set; }
    public int NormReductions { get; private set; }
    public int Clears { get; private set; }
    /// <summary>Embeddings ops run: one per encoder pass.</summary>
    public int EncoderPasses { get; private set; }

    public string Description => inner.Description;

    public DeviceBuffer<T> Allocate<T>(int length) where T : unmanaged
    {
        AllocationsByType[typeof(T)] = AllocationsByType.GetValueOrDefault(typeof(T)) + 1;
        return inner.Allocate<T>(length);
    }

    public void Upload<T>(ReadOnlySpan<T> source, DeviceBuffer<T> destination) where T : unmanaged => inner.Upload(source, destination);
    public void Download<T>(DeviceBuffer<T> source, Span<T> destination) where T : unmanaged => inner.Download(source, destination);
    public void Linear(DeviceBuffer<float> o, DeviceBuffer<float> i, DeviceBuffer<float> w, DeviceBuffer<float>? b, int M, int K, int N, Activation a) => inner.Linear(o, i, w, b, M, K, N, a);
    public void MatMul(DeviceBuffer<float> o, DeviceBuffer<float> a, DeviceBuffer<float> b, MatMulShape s) => inner.MatMul(o, a, b, s);
    public void Softmax(DeviceBuffer<float> o, DeviceBuffer<float> i, int rows, int N) => inner.Softmax(o, i, rows, N);
    public void Activate(DeviceBuffer<float> o, DeviceBuffer<float> i, int n, Activation a) => inner.Activate(o, i, n, a);
    public void Attention(DeviceBuffer<float> o, DeviceBuffer<float> q, DeviceBuffer<int> m, int B, int T, int NH, int HS, DropoutMask d) => inner.Attention(o, q, m, B, T, NH, HS, d);
    public void LayerNorm(DeviceBuffer<float> o, DeviceBuffer<float> i, DeviceBuffer<float>? r, DeviceBuffer<float> w, DeviceBuffer<float> b, int N, int C, float eps) => inner.LayerNorm(o, i, r, w, b, N, C, eps);
    public void Embeddings(DeviceBuffer<float> o, DeviceBuffer<float>? s, DeviceBuffer<int> ids, DeviceBuffer<int> positions, DeviceBuffer<int> types, DeviceBuffer<float> word,
        DeviceBuffer<float> position, DeviceBuffer<float> tokenType, DeviceBuffer<float> w, DeviceBuffer<float> b, int B, int T, int C, float eps)
    {
        EncoderPasses++;
        inner.Embeddings(o, s, ids, positions, types, word, position, tokenType, w, b, B, T, C, eps);
    }
    public void FirstToken(DeviceBuffer<float> o, DeviceBuffer<float> i, int B, int T, int C) => inner.FirstToken(o, i, B, T, C);
    public void LinearBackward(DeviceBuffer<float>? dI, DeviceBuffer<float> dW, DeviceBuffer<float>? dB, DeviceBuffer<float> dO, DeviceBuffer<float> i, DeviceBuffer<float> w, int M, int K, int N) =>
        inner.LinearBackward(dI, dW, dB, dO, i, w, M, K, N);
    public void ActivateBackward(DeviceBuffer<float> dI, DeviceBuffer<float> dO, DeviceBuffer<float> i, int n, Activation a) => inner.ActivateBackward(dI, dO, i, n, a);
    public void LayerNormBackward(DeviceBuffer<float> dI, DeviceBuffer<float> dW, DeviceBuffer<float> dB, DeviceBuffer<float> dO, DeviceBuffer<float> i, DeviceBuffer<float>? r,
        DeviceBuffer<float> w, int N, int C, float eps) => inner.LayerNormBackward(dI, dW, dB, dO, i, r, w, N, C, eps);
    public void AttentionBackward(DeviceBuffer<float> dQ, DeviceBuffer<float> dO, DeviceBuffer<float> q, DeviceBuffer<int> m, int B, int T, int NH, int HS, DropoutMask d) =>
        inner.AttentionBackward(dQ, dO, q, m, B, T, NH, HS, d);
    public void EmbeddingsBackward(DeviceBuffer<float> dW, DeviceBuffer<float> dP, DeviceBuffer<float> dT, DeviceBuffer<float> dS, DeviceBuffer<int> ids, DeviceBuffer<int> positions,
        DeviceBuffer<int> types, int B, int T, int C) => inner.EmbeddingsBackward(dW, dP, dT, dS, ids, positions, types, B, T, C);
    public void FirstTokenBackward(DeviceBuffer<float> dI, DeviceBuffer<float> dO, int B, int T, int C) => inner.FirstTokenBackward(dI, dO, B, T, C);
    public void Dropout(DeviceBuffer<float> o, DeviceBuffer<float> i, int n, DropoutMask m) => inner.Dropout(o, i, n, m);
    public void DropoutBackward(DeviceBuffer<float> dI, DeviceBuffer<float> dO, int n, DropoutMask m) => inner.DropoutBackward(dI, dO, n, m);

    public double SumOfSquares(DeviceBuffer<float> values, int n)
    {
        NormReductions++;
        return inner.SumOfSquares(values, n);
    }

    public void AdamW(DeviceBuffer<float> p, DeviceBuffer<float> g, DeviceBuffer<float> m, DeviceBuffer<float> v, int n, int decayed, AdamWStep step)
    {
        AdamWLaunches++;
        inner.AdamW(p, g, m, v, n, decayed, step);
    }

    public void Clear(DeviceBuffer<float> buffer)
    {
        Clears++;
        inner.Clear(buffer);
    }

    public void Accumulate(DeviceBuffer<float> d, DeviceBuffer<float> s, int n) => inner.Accumulate(d, s, n);
    public void SoftmaxBackward(DeviceBuffer<float> dI, DeviceBuffer<float> dO, DeviceBuffer<float> o, int rows, int N) => inner.SoftmaxBackward(dI, dO, o, rows, N);
    public void CrossEntropy(DeviceBuffer<float> l, DeviceBuffer<float> d, DeviceBuffer<float> z, DeviceBuffer<int> y, int B, int V) => inner.CrossEntropy(l, d, z, y, B, V);
    public void MeanSquaredError(DeviceBuffer<float> l, DeviceBuffer<float> d, DeviceBuffer<float> p, DeviceBuffer<float> t, int n) => inner.MeanSquaredError(l, d, p, t, n);
    public void Dispose() => inner.Dispose();
}
