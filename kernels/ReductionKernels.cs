// Reductions for backward passes, written to be deterministic (no atomics: every sum is formed by one
// thread in a fixed order, so gradients are bit-identical run to run).
//
// Shapes: column sums dbias (N) += Σ_rows dout (rows, N); destination (n) += source (n).
// Scheme of the column sums (bias gradients, and layer-norm's parameter gradients through the same finish):
// a first pass of (N × chunks) threads, each adding RowsPerChunk rows of one column in order into a partial;
// a second pass, one thread per column, adds the chunks' partials in order. Both orders are fixed, so the sums
// are bit-identical run to run, and a GPU gets N·rows/32 threads instead of N (24 warps for C = 768).
// History: v1 one thread per column over every row; v2 chunked partials and a finish pass (this version).
using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels;

internal static class ReductionKernels
{
    /// <summary>Rows each thread of a partial-sum pass adds up: enough chunks to fill a GPU at BERT shapes (4,096 rows → 128 chunks).</summary>
    public const int RowsPerChunk = 32;

    public static int Chunks(int rows) => (rows + RowsPerChunk - 1) / RowsPerChunk;

    /// <summary>partials (chunks, N) = Σ over chunk k's rows of values (rows, N); thread (column, k), rows in order.</summary>
    public static void ColumnPartialsKernel(Index2D index, ArrayView<float> partials, ArrayView<float> values, int rows, int N)
    {
        int column = index.X, chunk = index.Y;
        int end = Math.Min(rows, (chunk + 1) * RowsPerChunk);
        float total = 0f;
        for (int r = chunk * RowsPerChunk; r < end; r++) total += values[(long)r * N + column];
        partials[(long)chunk * N + column] = total;
    }

    /// <summary>sums (N) += Σ over chunks of partials (chunks, N); one thread per column, chunks in order (the deterministic second pass).</summary>
    public static void ColumnFinishKernel(Index1D column, ArrayView<float> sums, ArrayView<float> partials, int chunks, int N)
    {
        float total = 0f;
        for (int k = 0; k < chunks; k++) total += partials[(long)k * N + column];
        sums[column] += total;
    }

    /// <summary>destination (n) += source (n); one thread per element.</summary>
    public static void AccumulateKernel(Index1D i, ArrayView<float> destination, ArrayView<float> source) => destination[i] += source[i];

    /// <summary>values (n) *= factor; one thread per element.</summary>
    public static void ScaleKernel(Index1D i, ArrayView<float> values, float factor) => values[i] *= factor;
}
