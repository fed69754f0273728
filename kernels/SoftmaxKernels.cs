// Softmax over the rows of a matrix: out (rows, N) = exp(x − max) / Σ exp(x − max).
//
// Shapes: rows = e.g. B for classifier logits (N = classes), or B·T for a vocabulary (N = V). Nothing is
// cached for backward (it needs only the output).
// Scheme: one warp per row: a running (max, sum) per lane in one pass (the sum rescaled when the max
// grows, as attention's online softmax), merged across the warp by shuffles, then one pass that writes.
// Attention has its own fused online softmax (AttentionKernels); this is the standalone op.
// History: v1 (this version).
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
        float inverse = 1f / sum;
        for (int n = lane; n < N; n += Warp.WarpSize) output[rowBase + n] = XMath.Exp(input[rowBase + n] - max) * inverse;
    }
}
