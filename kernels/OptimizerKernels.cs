// Optimizer kernels: AdamW in place, and partial sums of squares for the global gradient norm.
//
// Shapes: parameter, gradient, m, v (n), a whole parameter arena in one launch, its first `Decayed` elements
// decayed. The AdamW arithmetic is Training.AdamWMath, shared with the CPU
// backend, so both follow PyTorch's single-tensor AdamW operation for operation.
// Sums of squares: each warp folds a grid-strided slice into one float partial; the host adds the
// partials in float64 (no atomics: the same n gives the same sum).
// History: v1 one launch per tensor; v2 one launch per arena, decay by position (this version).
using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels;

internal static class OptimizerKernels
{
    public const int Groups = 256, Threads = 256;

    /// <summary>One step's constants; elements below <c>Decayed</c> are multiplied by <c>Decay</c> (1 − lr·wd), the rest by 1.</summary>
    public readonly record struct AdamWConstants(float LearningRate, float Beta1, float Beta2, float Eps, float GradientScale,
        float Decay, int Decayed, float StepSize, float SqrtCorrection2);

    public static void AdamWKernel(Index1D i, ArrayView<float> parameter, ArrayView<float> gradient, ArrayView<float> m, ArrayView<float> v, AdamWConstants c)
    {
        float p = parameter[i], first = m[i], second = v[i];
        Training.AdamWMath.Update(ref p, gradient[i], ref first, ref second,
            new Engine.Backends.AdamWStep(c.LearningRate, c.Beta1, c.Beta2, c.Eps, 0f, c.GradientScale, 1), (i < c.Decayed ? c.Decay : 1f, c.StepSize, c.SqrtCorrection2));
        parameter[i] = p;
        m[i] = first;
        v[i] = second;
    }

    /// <summary>partials (Groups·Threads/32): each warp's Σ values² over its grid-strided elements.</summary>
    public static void SumOfSquaresKernel(ArrayView<float> partials, ArrayView<float> values, int n)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        float sum = 0f;
        for (long i = Grid.GlobalIndex.X; i < n; i += stride)
        {
            float x = values[i];
            sum += x * x;
        }
        sum = AttentionKernels.WarpSum(sum);
        if (Warp.LaneIdx == 0) partials[Grid.GlobalIndex.X / Warp.WarpSize] = sum;
    }
}
