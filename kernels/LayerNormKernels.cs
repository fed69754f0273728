// Layer-norm forward with a fused residual add: out (N,C) = (x − mean)·rstd·weight + bias, x = inp + residual.
//
// Shapes: inp, residual, out (N,C); weight, bias (C). The forward caches nothing; the backward recomputes
// each row's mean and rstd (N) and passes them from its row kernel to its parameter kernel.
// Scheme: one warp per row, lanes striding over C. Statistics in one pass: each lane runs Welford's
// update over its elements, then the lanes' (count, mean, M2) are merged by Chan's formula across a
// butterfly of shuffles (stable, unlike E[x²] − mean²); a second pass normalises. Biased variance, as
// torch.nn.LayerNorm.
// Backward: one warp per row writes dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·w, and the row's
// (mean, rstd); then dw += Σ dy·x̂ and db += Σ dy in two deterministic passes, no atomics: thread (channel,
// chunk of 32 rows) sums its rows in order, then one thread per channel adds the chunks in order.
// History: v1 warp per row, mean then variance (three reads of the row); v2 one-pass Welford statistics
// (two reads); v3 backward; v4 chunked parameter gradients (this version).
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
        var moments = default(Moments);
        for (int c = lane; c < s.C; c += Warp.WarpSize) moments = moments.Add(X(input, residual, s, rowBase + c));
        moments = moments.WarpMerge();
        float rstd = moments.Rstd(s.C, s.Eps);
        for (int c = lane; c < s.C; c += Warp.WarpSize)
            output[rowBase + c] = (X(input, residual, s, rowBase + c) - moments.Mean) * rstd * weight[c] + bias[c];
    }

    /// <summary>dx (N,C) and each row's (mean, rstd) into statistics (N,2); one warp per row.</summary>
    public static void BackwardKernel(ArrayView<float> dInput, ArrayView<float> statistics, ArrayView<float> dOutput, ArrayView<float> input,
        ArrayView<float> residual, ArrayView<float> weight, Shape s)
    {
        int row = Grid.IdxX * WarpsPerGroup + Warp.WarpIdx, lane = Warp.LaneIdx;
        if (row >= s.N) return;
        long rowBase = (long)row * s.C;
        var moments = default(Moments);
        for (int c = lane; c < s.C; c += Warp.WarpSize) moments = moments.Add(X(input, residual, s, rowBase + c));
        moments = moments.WarpMerge();
        float rstd = moments.Rstd(s.C, s.Eps);
        float sumG = 0f, sumGx = 0f;
        for (int c = lane; c < s.C; c += Warp.WarpSize)
        {
            float g = dOutput[rowBase + c] * weight[c], xHat = (X(input, residual, s, rowBase + c) - moments.Mean) * rstd;
            sumG += g;
            sumGx += g * xHat;
        }
        float meanG = AttentionKernels.WarpSum(sumG) / s.C, meanGx = AttentionKernels.WarpSum(sumGx) / s.C;
        for (int c = lane; c < s.C; c += Warp.WarpSize)
        {
            float xHat = (X(input, residual, s, rowBase + c) - moments.Mean) * rstd;
            dInput[rowBase + c] = rstd * (dOutput[rowBase + c] * weight[c] - meanG - xHat * meanGx);
        }
        if (lane == 0)
        {
            statistics[2L * row] = moments.Mean;
            statistics[2L * row + 1] = rstd;
        }
    }

    /// <summary>
    /// partialW, partialB (chunks, C) = Σ over chunk k's rows of dy·x̂ and of dy; thread (channel, k), rows in order.
    /// <see cref="ReductionKernels.ColumnFinishKernel"/> adds the chunks into dw and db.
    /// </summary>
    public static void ParameterPartialsKernel(Index2D index, ArrayView<float> partialW, ArrayView<float> partialB, ArrayView<float> statistics,
        ArrayView<float> dOutput, ArrayView<float> input, ArrayView<float> residual, Shape s)
    {
        int c = index.X, chunk = index.Y;
        int end = Math.Min(s.N, (chunk + 1) * ReductionKernels.RowsPerChunk);
        float dw = 0f, db = 0f;
        for (int row = chunk * ReductionKernels.RowsPerChunk; row < end; row++)
        {
            long i = (long)row * s.C + c;
            float dy = dOutput[i];
            dw += dy * (X(input, residual, s, i) - statistics[2L * row]) * statistics[2L * row + 1];
            db += dy;
        }
        partialW[(long)chunk * s.C + c] = dw;
        partialB[(long)chunk * s.C + c] = db;
    }

    /// <summary>Welford's running count, mean and sum of squared deviations; a device-side value.</summary>
    internal readonly struct Moments(float count, float mean, float m2)
    {
        public readonly float Count = count, Mean = mean, M2 = m2;

        public Moments Add(float x)
        {
            float count = Count + 1f, delta = x - Mean, mean = Mean + delta / count;
            return new Moments(count, mean, M2 + delta * (x - mean));
        }

        /// <summary>The whole warp's moments in every lane: Chan's merge over a butterfly of shuffles.</summary>
        public Moments WarpMerge()
        {
            var m = this;
            for (int offset = 16; offset > 0; offset >>= 1)
            {
                float otherCount = Warp.ShuffleXor(m.Count, offset), otherMean = Warp.ShuffleXor(m.Mean, offset), otherM2 = Warp.ShuffleXor(m.M2, offset);
                float total = m.Count + otherCount;
                if (total > 0f)
                {
                    float delta = otherMean - m.Mean;
                    m = new Moments(total, m.Mean + delta * otherCount / total, m.M2 + otherM2 + delta * delta * m.Count * otherCount / total);
                }
            }
            return m;
        }

        /// <summary>1/√(biased variance + ε) of a row of C elements.</summary>
        public float Rstd(int C, float eps) => 1f / XMath.Sqrt(M2 / C + eps);
    }

    private static float X(ArrayView<float> input, ArrayView<float> residual, Shape s, long index) =>
        s.HasResidual != 0 ? input[index] + residual[index] : input[index];
}
