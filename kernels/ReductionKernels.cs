// Reductions for backward passes, written to be deterministic (no atomics: every sum is formed by one
// thread in a fixed order, so gradients are bit-identical run to run).
//
// Shapes: column sums dbias (N) += Σ_rows dout (rows, N); first-token backward dinp (B,T,C) from dout (B,C).
// History: v1 (this version).
using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels;

internal static class ReductionKernels
{
    /// <summary>sums (N) += Σ over rows of values (rows, N); one thread per column.</summary>
    public static void ColumnSumKernel(Index1D column, ArrayView<float> sums, ArrayView<float> values, int rows, int N)
    {
        float total = 0f;
        for (int r = 0; r < rows; r++) total += values[(long)r * N + column];
        sums[column] += total;
    }

    /// <summary>destination (n) += source (n); one thread per element.</summary>
    public static void AccumulateKernel(Index1D i, ArrayView<float> destination, ArrayView<float> source) => destination[i] += source[i];

    /// <summary>dinp (B,T,C) = dout (B,C) at t = 0, zero elsewhere; one thread per element of dinp.</summary>
    public static void FirstTokenBackwardKernel(Index1D index, ArrayView<float> dInput, ArrayView<float> dOutput, int T, int C)
    {
        long token = index / C;
        int c = (int)(index % C);
        dInput[index] = token % T == 0 ? dOutput[token / T * C + c] : 0f;
    }
}
