using Engine.Backends;

namespace Engine.Tests;

/// <summary>
/// A training backend that passes every op to another and counts allocations (by element type), encoder passes and the
/// optimizer's launches; it can inject an overflow: the gradient norms it is told to report as infinite.
/// </summary>
internal sealed class CountingBackend(ITrainingBackend inner) : ITrainingBackend
{
    /// <summary>Which norm reductions (1 for the first) return +∞, as if a gradient had overflowed.</summary>
    public HashSet<int> OverflowingNorms { get; init; } = [];
    public Dictionary<Type, int> AllocationsByType { get; } = [];
    public int Allocations => AllocationsByType.Values.Sum();
    public int AdamWLaunches { get; private set; }
    public int NormReductions { get; private set; }
    public int Clears { get; private set; }
    /// <summary>The most rows (M) of any Linear so far: what a pass spends its products on.</summary>
    public int LargestLinearRows { get; private set; }
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
    public void Linear(Tensor o, Tensor i, Tensor w, Tensor? b, int M, int K, int N, Activation a, Tensor? pre = null)
    {
        LargestLinearRows = Math.Max(LargestLinearRows, M);
        inner.Linear(o, i, w, b, M, K, N, a, pre);
    }
    public void MatMul(Tensor o, Tensor a, Tensor b, MatMulShape s) => inner.MatMul(o, a, b, s);
    public void Softmax(Tensor o, Tensor i, int rows, int N) => inner.Softmax(o, i, rows, N);
    public void Activate(Tensor o, Tensor i, int n, Activation a) => inner.Activate(o, i, n, a);
    public void Attention(Tensor o, Tensor q, SequenceLayout s, int NH, int HS, DropoutMask d) => inner.Attention(o, q, s, NH, HS, d);
    public void AttentionProbabilities(Tensor p, Tensor q, SequenceLayout s, int NH, int HS) => inner.AttentionProbabilities(p, q, s, NH, HS);
    public void LayerNorm(Tensor o, Tensor i, Tensor? r, Tensor w, Tensor b, int N, int C, float eps) => inner.LayerNorm(o, i, r, w, b, N, C, eps);
    public void Embeddings(Tensor o, Tensor? s, DeviceBuffer<int> ids, DeviceBuffer<int> positions, DeviceBuffer<int> types, Tensor word,
        Tensor position, Tensor tokenType, Tensor w, Tensor b, int B, int T, int C, float eps)
    {
        EncoderPasses++;
        inner.Embeddings(o, s, ids, positions, types, word, position, tokenType, w, b, B, T, C, eps);
    }
    public void GatherRows(Tensor o, Tensor i, DeviceBuffer<int> rows, int R, int N, int C) => inner.GatherRows(o, i, rows, R, N, C);
    public void LinearBackward(Tensor? dI, Tensor dW, Tensor? dB, Tensor dO, Tensor i, Tensor w, int M, int K, int N) =>
        inner.LinearBackward(dI, dW, dB, dO, i, w, M, K, N);
    public void ActivateBackward(Tensor dI, Tensor dO, Tensor i, int n, Activation a) => inner.ActivateBackward(dI, dO, i, n, a);
    public void LayerNormBackward(Tensor dI, Tensor dW, Tensor dB, Tensor dO, Tensor i, Tensor? r,
        Tensor w, int N, int C, float eps) => inner.LayerNormBackward(dI, dW, dB, dO, i, r, w, N, C, eps);
    public void AttentionBackward(Tensor dQ, Tensor dO, Tensor q, SequenceLayout s, int NH, int HS, DropoutMask d) =>
        inner.AttentionBackward(dQ, dO, q, s, NH, HS, d);
    public void EmbeddingsBackward(Tensor dW, Tensor dP, Tensor dT, Tensor dS, DeviceBuffer<int> ids, DeviceBuffer<int> positions,
        DeviceBuffer<int> types, int B, int T, int C) => inner.EmbeddingsBackward(dW, dP, dT, dS, ids, positions, types, B, T, C);
    public void GatherRowsBackward(Tensor dI, Tensor dO, DeviceBuffer<int> rows, int R, int N, int C) => inner.GatherRowsBackward(dI, dO, rows, R, N, C);
    public void Dropout(Tensor o, Tensor i, int n, DropoutMask m) => inner.Dropout(o, i, n, m);
    public void DropoutBackward(Tensor dI, Tensor dO, int n, DropoutMask m) => inner.DropoutBackward(dI, dO, n, m);

    public double SumOfSquares(Tensor values, int n)
    {
        double sum = inner.SumOfSquares(values, n);
        return OverflowingNorms.Contains(++NormReductions) ? double.PositiveInfinity : sum;
    }

    public void AdamW(Tensor p, Tensor g, Tensor m, Tensor v, int n, int decayed, AdamWStep step)
    {
        AdamWLaunches++;
        inner.AdamW(p, g, m, v, n, decayed, step);
    }

    public void Clear(Tensor buffer)
    {
        Clears++;
        inner.Clear(buffer);
    }

    public void Accumulate(Tensor d, Tensor s, int n) => inner.Accumulate(d, s, n);
    public void Scale(Tensor v, int n, float factor) => inner.Scale(v, n, factor);
    public void SoftmaxBackward(Tensor dI, Tensor dO, Tensor o, int rows, int N) => inner.SoftmaxBackward(dI, dO, o, rows, N);
    public void CrossEntropy(Tensor l, Tensor d, Tensor z, DeviceBuffer<int> y, int B, int V) => inner.CrossEntropy(l, d, z, y, B, V);
    public void MeanSquaredError(Tensor l, Tensor d, Tensor p, Tensor t, int n) => inner.MeanSquaredError(l, d, p, t, n);
    public void Dispose() => inner.Dispose();
}
