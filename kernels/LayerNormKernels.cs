// Layer-norm forward with a fused residual add: out (N,C) = (x − mean)·rstd·weight + bias, x = inp + residual.
//
// Shapes: inp, residual, out (N,C); weight, bias (C). The backward issue will cache mean and rstd (N).
// Scheme: one warp per row, lanes striding over C; mean, then the variance of the centred row (two
// passes, as the CPU reference), each a warp butterfly reduction; biased variance as torch.nn.LayerNorm.
// History: v1 warp per row, two passes through L1 (this version).
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Engine.Kernels;

internal static class LayerNormKernels
{
    public const int WarpsPerGroup = 4;

    public readonly record struct Shape(int N, int C, float Eps, int HasResidual);

    public static KernelConfig Config(Shape s, int warpSize) =>
        new((s.N + WarpsPerGroup - 1) / WarpsPerGroup, WarpsPerGroup * warpSize);

    public static void Kernel(ArrayView<float> output, ArrayView<float> input, ArrayView<float> residual,
        ArrayView<float> weight, ArrayView<float> bias, Shape s)
    {
        int row = Grid.IdxX * WarpsPerGroup + Warp.WarpIdx, lane = Warp.LaneIdx;
        if (row >= s.N) return; // uniform per warp
        long rowBase = (long)row * s.C;
        float sum = 0f;
        for (int c = lane; c < s.C; c += Warp.WarpSize) sum += X(input, residual, s, rowBase + c);
        float mean = AttentionKernels.WarpSum(sum) / s.C;
        float squares = 0f;
        for (int c = lane; c < s.C; c += Warp.WarpSize)
        {
            float d = X(input, residual, s, rowBase + c) - mean;
            squares += d * d;
        }
        float rstd = 1f / XMath.Sqrt(AttentionKernels.WarpSum(squares) / s.C + s.Eps);
        for (int c = lane; c < s.C; c += Warp.WarpSize)
            output[rowBase + c] = (X(input, residual, s, rowBase + c) - mean) * rstd * weight[c] + bias[c];
    }

    private static float X(ArrayView<float> input, ArrayView<float> residual, Shape s, long index) =>
        s.HasResidual != 0 ? input[index] + residual[index] : input[index];
}
