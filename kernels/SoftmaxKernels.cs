// Softmax over the rows of a matrix: out (rows, N) = exp(x − max) / Σ exp(x − max); its backward
// dx = y ⊙ (dy − Σ dy·y); and cross-entropy (forward and backward in one).
//
// Shapes: rows = e.g. B for classifier logits (N = classes), or B·T for a vocabulary (N = V). Nothing is
// cached for backward (it needs only the output).
// Scheme: one warp per row: a running (max, sum) per lane in one pass (the sum rescaled when the max
// grows, as attention's online softmax), merged across the warp by shuffles, then one pass that writes.
// Attention has its own fused online softmax (AttentionKernels); this is the standalone op.
// History: v1 forward; v2 backward and cross-entropy (this version).
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Engine.Kernels;

internal static class SoftmaxKernels
{
    public const int WarpsPerGroup = 4;

    public static KernelConfig Config(int rows, int warpSize) => new((rows + WarpsPerGroup - 1) / WarpsPerGroup, WarpsPerGroup * warpSize);

    public static void Kernel(ArrayView<float> output, ArrayView<float> input, int rows, int N)
    {
        int row = Grid.IdxX * WarpsPerGroup + Warp.WarpIdx, lane = Warp.LaneIdx;
        if (row >= rows) return; // uniform per warp
        long rowBase = (long)row * N;
        var (max, inverse) = RowStatistics(input, rowBase, N, lane);
        for (int n = lane; n < N; n += Warp.WarpSize) output[rowBase + n] = XMath.Exp(input[rowBase + n] - max) * inverse;
    }

    /// <summary>dx (rows, N) = y ⊙ (dy − Σ dy·y); one warp per row.</summary>
    public static void BackwardKernel(ArrayView<float> dInput, ArrayView<float> dOutput, ArrayView<float> output, int rows, int N)
    {
        int row = Grid.IdxX * WarpsPerGroup + Warp.WarpIdx, lane = Warp.LaneIdx;
        if (row >= rows) return;
        long rowBase = (long)row * N;
        float dot = 0f;
        for (int n = lane; n < N; n += Warp.WarpSize) dot += dOutput[rowBase + n] * output[rowBase + n];
        dot = AttentionKernels.WarpSum(dot);
        for (int n = lane; n < N; n += Warp.WarpSize) dInput[rowBase + n] = output[rowBase + n] * (dOutput[rowBase + n] - dot);
    }

    /// <summary>
    /// losses (B) = −log softmax(logits)[label]; dlogits (B,V) = (softmax − onehot)/count; a negative label is
    /// ignored (zero loss and gradient). One warp per row; each warp counts the labels ≥ 0 itself (B is a batch's
    /// rows: cheaper than a host round trip). A label ≥ V, which the model refuses before it gets here, reads
    /// nothing outside the row: its loss and gradient are NaN.
    /// </summary>
    public static void CrossEntropyKernel(ArrayView<float> losses, ArrayView<float> dLogits, ArrayView<float> logits, ArrayView<int> labels, int B, int V)
    {
        int row = Grid.IdxX * WarpsPerGroup + Warp.WarpIdx, lane = Warp.LaneIdx;
        if (row >= B) return;
        long rowBase = (long)row * V;
        int label = labels[row];
        if (label < 0 || label >= V)
        {
            if (lane == 0) losses[row] = label < 0 ? 0f : float.NaN;
            for (int v = lane; v < V; v += Warp.WarpSize) dLogits[rowBase + v] = label < 0 ? 0f : float.NaN;
            return;
        }
        float counted = 0f; // exact: a count below 2²⁴
        for (int i = lane; i < B; i += Warp.WarpSize) counted += labels[i] >= 0 ? 1f : 0f;
        counted = AttentionKernels.WarpSum(counted);
        var (max, inverse) = RowStatistics(logits, rowBase, V, lane);
        float scale = 1f / counted;
        for (int v = lane; v < V; v += Warp.WarpSize)
        {
            float p = XMath.Exp(logits[rowBase + v] - max) * inverse;
            dLogits[rowBase + v] = (v == label ? p - 1f : p) * scale;
        }
        // −log p = log Σ exp(z − max) + max − z[label] = −log(inverse) + max − z[label].
        if (lane == 0) losses[row] = -XMath.Log(inverse) + max - logits[rowBase + label];
    }

    /// <summary>A row's max and 1/Σ exp(x − max), in every lane: one online pass, merged across the warp.</summary>
    private static (float Max, float Inverse) RowStatistics(ArrayView<float> input, long rowBase, int N, int lane)
    {
        float max = float.NegativeInfinity, sum = 0f;
        for (int n = lane; n < N; n += Warp.WarpSize)
        {
            float x = input[rowBase + n], newMax = XMath.Max(max, x);
            sum = sum * XMath.Exp(max - newMax) + XMath.Exp(x - newMax);
            max = newMax;
        }
        for (int offset = 16; offset > 0; offset >>= 1)
        {
            float otherMax = Warp.ShuffleXor(max, offset), otherSum = Warp.ShuffleXor(sum, offset);
            float newMax = XMath.Max(max, otherMax);
            // A lane with no elements holds (−∞, 0): its term must vanish, not become NaN.
            sum = (sum > 0f ? sum * XMath.Exp(max - newMax) : 0f) + (otherSum > 0f ? otherSum * XMath.Exp(otherMax - newMax) : 0f);
            max = newMax;
        }
        return (max, 1f / sum);
    }
}
