// Attention: fused multi-head self-attention forward and backward, over padded sequences with a key mask or
// packed ones (SequenceLayout).
//
// Shapes: qkv (rows,3C) holding Q, K, V side by side, each (rows,NH,HS); out (rows,C), C = NH·HS. Padded:
// sequence b is rows b·T … b·T + T − 1 and indices is the key mask (B,T), 0 = padding; packed: sequence b is rows
// indices[b] … indices[b + 1] − 1 (cumulative lengths, each ≤ T), every key real, and the warps of a
// sequence's missing queries (i ≥ its length) return at once. The forward caches nothing: its backward
// recomputes the probabilities (below).
// Scheme: one warp per (b, h, query); lane l holds head dimensions l, l+32, l+64, l+96 (HS ≤ 128, a
// specialization constant); keys are visited once with an online softmax (running max, rescaled sum and
// output), so the T×T score matrix never exists, in global memory or anywhere. Masked keys are skipped
// (probability exactly 0, as Hugging Face's float-minimum mask gives); a query with no unmasked key
// outputs zeros.
// Dropout on the probabilities (training): key j's term of the output is scaled by its DropoutMask factor,
// element ((b·NH + h)·T + i)·T + j of the (B,NH,T,T) probabilities, regenerated from Philox wherever needed;
// the softmax sum is of the undropped probabilities.
// Backward, deterministic (each gradient element is summed by one warp, no atomics): a warp per query
// recomputes its probabilities (max m, sum l), D = dO·o, and dq = scale·Σ_j p(dp − D)·k_j with dp = f·(dO·v_j),
// and keeps (m, l, D) in statistics (B,NH,T,3); then a warp per key sums dk = scale·Σ_i p(dp − D)·q_i and
// dv = Σ_i p·f·dO_i over the queries. Masked keys get zero gradients.
// Probabilities (attention maps, only when asked for): a thread per (b, h, query) row writes the row of the (B,NH,T,T)
// probabilities: zeros for a padding query or key, else softmax of its scores over the real keys, each score recomputed
// per pass (max, sum, write) rather than kept: T·HS work per pass, no scratch.
// History: v1 warp-per-query online softmax, K/V read through the cache; v2 backward; v3 dropout on the
// probabilities; v4 packed sequences; v5 the probabilities kernel for attention maps (this version).
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Engine.Kernels;

internal static class AttentionKernels
{
    public const int WarpsPerGroup = 4, MaxHeadSize = 128;

    /// <summary>The sizes; <c>Packed</c> is 1 when the layout's indices are cumulative lengths, 0 when they are a key mask.</summary>
    public readonly record struct Shape(int B, int T, int NH, float Scale, Backends.DropoutMask Dropout, int Packed)
    {
        /// <summary>The row of sequence b's token i.</summary>
        public long Row(ArrayView<int> indices, int b, int i) => Packed != 0 ? indices[b] + (long)i : (long)b * T + i;

        /// <summary>Sequence b's tokens: its length when packed, T when padded.</summary>
        public int Count(ArrayView<int> indices, int b) => Packed != 0 ? indices[b + 1] - indices[b] : T;

        public bool IsKey(ArrayView<int> indices, int b, int j) => Packed != 0 || indices[b * T + j] != 0;

        /// <summary>Key j's dropout factor for query row <paramref name="query"/> = (b·NH + h)·T + i.</summary>
        public float Factor(long query, int j) => Dropout.IsActive ? Dropout.Factor(query * T + j) : 1f;
    }

    public static KernelConfig Config(Shape s, int warpSize) =>
        new((int)(((long)s.B * s.NH * s.T + WarpsPerGroup - 1) / WarpsPerGroup), WarpsPerGroup * warpSize);

    public static void Kernel(ArrayView<float> output, ArrayView<float> qkv, ArrayView<int> indices, Shape s, SpecializedValue<int> headSize)
    {
        int HS = headSize.Value, C = s.NH * HS, lane = Warp.LaneIdx;
        long query = (long)Grid.IdxX * WarpsPerGroup + Warp.WarpIdx;
        if (query >= (long)s.B * s.NH * s.T) return; // uniform per warp
        int i = (int)(query % s.T), h = (int)(query / s.T % s.NH), b = (int)(query / ((long)s.T * s.NH));
        int count = s.Count(indices, b);
        if (i >= count) return;

        var row = QueryRow.Compute(qkv, indices, s, HS, b, h, i, count, lane);
        long outBase = s.Row(indices, b, i) * C + h * HS;
        Store(output, outBase, lane, HS, row.O0 * row.Inverse);
        Store(output, outBase, lane + 32, HS, row.O1 * row.Inverse);
        Store(output, outBase, lane + 64, HS, row.O2 * row.Inverse);
        Store(output, outBase, lane + 96, HS, row.O3 * row.Inverse);
    }

    /// <summary>Query i's row of the (B,NH,T,T) attention probabilities, for row index = (b·NH + h)·T + i; <paramref name="HS"/> the head size.</summary>
    public static void ProbabilitiesKernel(Index1D index, ArrayView<float> probabilities, ArrayView<float> qkv, ArrayView<int> indices, Shape s, int HS)
    {
        long query = index;
        int i = (int)(query % s.T), h = (int)(query / s.T % s.NH), b = (int)(query / ((long)s.T * s.NH)), C = s.NH * HS;
        int count = s.Count(indices, b);
        long rowBase = query * s.T;
        bool real = i < count && s.IsKey(indices, b, i);
        float max = float.NegativeInfinity, sum = 0f;
        if (real)
        {
            for (int j = 0; j < count; j++)
                if (s.IsKey(indices, b, j)) max = XMath.Max(max, Score(qkv, indices, s, C, HS, b, h, i, j));
            for (int j = 0; j < count; j++)
                if (s.IsKey(indices, b, j)) sum += XMath.Exp(Score(qkv, indices, s, C, HS, b, h, i, j) - max);
        }
        for (int j = 0; j < s.T; j++)
            probabilities[rowBase + j] = real && j < count && s.IsKey(indices, b, j) ? XMath.Exp(Score(qkv, indices, s, C, HS, b, h, i, j) - max) / sum : 0f;
    }

    /// <summary>Query i's scaled score of key j in head h of sequence b.</summary>
    private static float Score(ArrayView<float> qkv, ArrayView<int> indices, Shape s, int C, int HS, int b, int h, int i, int j)
    {
        long q = s.Row(indices, b, i) * 3 * C + h * HS, k = s.Row(indices, b, j) * 3 * C + C + h * HS;
        float dot = 0f;
        for (int d = 0; d < HS; d++) dot += qkv[q + d] * qkv[k + d];
        return dot * s.Scale;
    }

    /// <summary>dq for one query per warp, and its (max, sum, D) statistics.</summary>
    public static void QueryBackwardKernel(ArrayView<float> dQkv, ArrayView<float> statistics, ArrayView<float> dOutput, ArrayView<float> qkv,
        ArrayView<int> indices, Shape s, SpecializedValue<int> headSize)
    {
        int HS = headSize.Value, C = s.NH * HS, lane = Warp.LaneIdx;
        long query = (long)Grid.IdxX * WarpsPerGroup + Warp.WarpIdx;
        if (query >= (long)s.B * s.NH * s.T) return;
        int i = (int)(query % s.T), h = (int)(query / s.T % s.NH), b = (int)(query / ((long)s.T * s.NH));
        int count = s.Count(indices, b);
        if (i >= count) return;
        long qRow = s.Row(indices, b, i), qBase = qRow * 3 * C + h * HS, oBase = qRow * C + h * HS;
        float q0 = Load(qkv, qBase, lane, HS), q1 = Load(qkv, qBase, lane + 32, HS), q2 = Load(qkv, qBase, lane + 64, HS), q3 = Load(qkv, qBase, lane + 96, HS);
        float g0 = Load(dOutput, oBase, lane, HS), g1 = Load(dOutput, oBase, lane + 32, HS), g2 = Load(dOutput, oBase, lane + 64, HS), g3 = Load(dOutput, oBase, lane + 96, HS);
        // Pass 1: the forward's statistics and output, as the forward kernel computes them.
        var row = QueryRow.Compute(qkv, indices, s, HS, b, h, i, count, lane);
        float max = row.Max, inverse = row.Inverse;
        float o0 = row.O0 * inverse, o1 = row.O1 * inverse, o2 = row.O2 * inverse, o3 = row.O3 * inverse;
        float d = WarpSum(g0 * o0 + g1 * o1 + g2 * o2 + g3 * o3);
        // Pass 2: dq.
        float dq0 = 0f, dq1 = 0f, dq2 = 0f, dq3 = 0f;
        for (int j = 0; j < count && inverse > 0f; j++)
        {
            if (!s.IsKey(indices, b, j)) continue;
            long kBase = s.Row(indices, b, j) * 3 * C + C + h * HS, vBase = kBase + C;
            float k0 = Load(qkv, kBase, lane, HS), k1 = Load(qkv, kBase, lane + 32, HS), k2 = Load(qkv, kBase, lane + 64, HS), k3 = Load(qkv, kBase, lane + 96, HS);
            float p = XMath.Exp(WarpSum(q0 * k0 + q1 * k1 + q2 * k2 + q3 * k3) * s.Scale - max) * inverse;
            float dp = s.Factor(query, j) * WarpSum(g0 * Load(qkv, vBase, lane, HS) + g1 * Load(qkv, vBase, lane + 32, HS) + g2 * Load(qkv, vBase, lane + 64, HS) + g3 * Load(qkv, vBase, lane + 96, HS));
            float ds = p * (dp - d) * s.Scale;
            dq0 += ds * k0; dq1 += ds * k1; dq2 += ds * k2; dq3 += ds * k3;
        }
        Store(dQkv, qBase, lane, HS, dq0);
        Store(dQkv, qBase, lane + 32, HS, dq1);
        Store(dQkv, qBase, lane + 64, HS, dq2);
        Store(dQkv, qBase, lane + 96, HS, dq3);
        if (lane == 0)
        {
            statistics[3 * query] = max;
            statistics[3 * query + 1] = inverse;
            statistics[3 * query + 2] = d;
        }
    }

    /// <summary>dk and dv for one key per warp, from the queries' statistics.</summary>
    public static void KeyBackwardKernel(ArrayView<float> dQkv, ArrayView<float> statistics, ArrayView<float> dOutput, ArrayView<float> qkv,
        ArrayView<int> indices, Shape s, SpecializedValue<int> headSize)
    {
        int HS = headSize.Value, C = s.NH * HS, lane = Warp.LaneIdx;
        long key = (long)Grid.IdxX * WarpsPerGroup + Warp.WarpIdx;
        if (key >= (long)s.B * s.NH * s.T) return;
        int j = (int)(key % s.T), h = (int)(key / s.T % s.NH), b = (int)(key / ((long)s.T * s.NH));
        int count = s.Count(indices, b);
        if (j >= count) return;
        long kBase = s.Row(indices, b, j) * 3 * C + C + h * HS, vBase = kBase + C;
        float dk0 = 0f, dk1 = 0f, dk2 = 0f, dk3 = 0f, dv0 = 0f, dv1 = 0f, dv2 = 0f, dv3 = 0f;
        if (s.IsKey(indices, b, j))
        {
            float k0 = Load(qkv, kBase, lane, HS), k1 = Load(qkv, kBase, lane + 32, HS), k2 = Load(qkv, kBase, lane + 64, HS), k3 = Load(qkv, kBase, lane + 96, HS);
            float v0 = Load(qkv, vBase, lane, HS), v1 = Load(qkv, vBase, lane + 32, HS), v2 = Load(qkv, vBase, lane + 64, HS), v3 = Load(qkv, vBase, lane + 96, HS);
            for (int i = 0; i < count; i++)
            {
                long query = ((long)b * s.NH + h) * s.T + i;
                float inverse = statistics[3 * query + 1];
                if (inverse == 0f) continue; // a query with no unmasked key
                long qRow = s.Row(indices, b, i), qBase = qRow * 3 * C + h * HS, oBase = qRow * C + h * HS;
                float q0 = Load(qkv, qBase, lane, HS), q1 = Load(qkv, qBase, lane + 32, HS), q2 = Load(qkv, qBase, lane + 64, HS), q3 = Load(qkv, qBase, lane + 96, HS);
                float g0 = Load(dOutput, oBase, lane, HS), g1 = Load(dOutput, oBase, lane + 32, HS), g2 = Load(dOutput, oBase, lane + 64, HS), g3 = Load(dOutput, oBase, lane + 96, HS);
                float p = XMath.Exp(WarpSum(q0 * k0 + q1 * k1 + q2 * k2 + q3 * k3) * s.Scale - statistics[3 * query]) * inverse;
                float factor = s.Factor(query, j);
                float ds = p * (factor * WarpSum(g0 * v0 + g1 * v1 + g2 * v2 + g3 * v3) - statistics[3 * query + 2]) * s.Scale;
                float dropped = p * factor;
                dk0 += ds * q0; dk1 += ds * q1; dk2 += ds * q2; dk3 += ds * q3;
                dv0 += dropped * g0; dv1 += dropped * g1; dv2 += dropped * g2; dv3 += dropped * g3;
            }
        }
        Store(dQkv, kBase, lane, HS, dk0); Store(dQkv, kBase, lane + 32, HS, dk1); Store(dQkv, kBase, lane + 64, HS, dk2); Store(dQkv, kBase, lane + 96, HS, dk3);
        Store(dQkv, vBase, lane, HS, dv0); Store(dQkv, vBase, lane + 32, HS, dv1); Store(dQkv, vBase, lane + 64, HS, dv2); Store(dQkv, vBase, lane + 96, HS, dv3);
    }

    /// <summary>
    /// One query's online softmax over its unmasked keys, in every lane of the warp: the running max, the
    /// inverse of the sum of exp(score − max) (0 when every key is masked), and the lane's four unnormalised
    /// output dimensions (lane, lane+32, lane+64, lane+96), each key's term scaled by its dropout factor.
    /// </summary>
    private readonly struct QueryRow(float max, float inverse, float o0, float o1, float o2, float o3)
    {
        public readonly float Max = max, Inverse = inverse, O0 = o0, O1 = o1, O2 = o2, O3 = o3;

        public static QueryRow Compute(ArrayView<float> qkv, ArrayView<int> indices, Shape s, int HS, int b, int h, int i, int count, int lane)
        {
            int C = s.NH * HS;
            long qBase = s.Row(indices, b, i) * 3 * C + h * HS;
            float q0 = Load(qkv, qBase, lane, HS), q1 = Load(qkv, qBase, lane + 32, HS);
            float q2 = Load(qkv, qBase, lane + 64, HS), q3 = Load(qkv, qBase, lane + 96, HS);
            float max = float.NegativeInfinity, sum = 0f, o0 = 0f, o1 = 0f, o2 = 0f, o3 = 0f;
            long query = ((long)b * s.NH + h) * s.T + i;
            for (int j = 0; j < count; j++)
            {
                if (!s.IsKey(indices, b, j)) continue;
                long kBase = s.Row(indices, b, j) * 3 * C + C + h * HS, vBase = kBase + C;
                float partial = q0 * Load(qkv, kBase, lane, HS) + q1 * Load(qkv, kBase, lane + 32, HS)
                    + q2 * Load(qkv, kBase, lane + 64, HS) + q3 * Load(qkv, kBase, lane + 96, HS);
                float score = WarpSum(partial) * s.Scale;
                float newMax = XMath.Max(max, score);
                float correction = XMath.Exp(max - newMax), p = XMath.Exp(score - newMax);
                sum = sum * correction + p;
                p *= s.Factor(query, j);
                o0 = o0 * correction + p * Load(qkv, vBase, lane, HS);
                o1 = o1 * correction + p * Load(qkv, vBase, lane + 32, HS);
                o2 = o2 * correction + p * Load(qkv, vBase, lane + 64, HS);
                o3 = o3 * correction + p * Load(qkv, vBase, lane + 96, HS);
                max = newMax;
            }
            return new QueryRow(max, sum > 0f ? 1f / sum : 0f, o0, o1, o2, o3);
        }
    }

    private static float Load(ArrayView<float> view, long baseIndex, int d, int HS) => d < HS ? view[baseIndex + d] : 0f;

    private static void Store(ArrayView<float> view, long baseIndex, int d, int HS, float value)
    {
        if (d < HS) view[baseIndex + d] = value;
    }

    /// <summary>The sum over the warp's 32 lanes, in every lane (butterfly of ShuffleXor on floats).</summary>
    internal static float WarpSum(float value)
    {
        for (int offset = 16; offset > 0; offset >>= 1) value += Warp.ShuffleXor(value, offset);
        return value;
    }
}
