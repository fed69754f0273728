// Attention: fused multi-head self-attention forward with a key padding mask.
//
// Shapes: qkv (B,T,3C) holding Q, K, V side by side, each (B,T,NH,HS); keyMask (B,T), 0 = padding;
// out (B,T,C), C = NH·HS. Nothing is cached yet (the backward issue will add the softmax statistics
// (B,NH,T): running max and sum).
// Scheme: one warp per (b, h, query); lane l holds head dimensions l, l+32, l+64, l+96 (HS ≤ 128, a
// specialization constant); keys are visited once with an online softmax (running max, rescaled sum and
// output), so the T×T score matrix never exists, in global memory or anywhere. Masked keys are skipped
// (probability exactly 0, as Hugging Face's float-minimum mask gives); a query with no unmasked key
// outputs zeros.
// History: v1 warp-per-query online softmax, K/V read through the cache (this version).
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;

namespace Engine.Kernels;

internal static class AttentionKernels
{
    public const int WarpsPerGroup = 4, MaxHeadSize = 128;

    public readonly record struct Shape(int B, int T, int NH, float Scale);

    public static KernelConfig Config(Shape s, int warpSize) =>
        new((int)(((long)s.B * s.NH * s.T + WarpsPerGroup - 1) / WarpsPerGroup), WarpsPerGroup * warpSize);

    public static void Kernel(ArrayView<float> output, ArrayView<float> qkv, ArrayView<int> keyMask, Shape s, SpecializedValue<int> headSize)
    {
        int HS = headSize.Value, C = s.NH * HS, lane = Warp.LaneIdx;
        long query = (long)Grid.IdxX * WarpsPerGroup + Warp.WarpIdx;
        if (query >= (long)s.B * s.NH * s.T) return; // uniform per warp
        int i = (int)(query % s.T), h = (int)(query / s.T % s.NH), b = (int)(query / ((long)s.T * s.NH));

        long qBase = ((long)b * s.T + i) * 3 * C + h * HS;
        float q0 = Load(qkv, qBase, lane, HS), q1 = Load(qkv, qBase, lane + 32, HS);
        float q2 = Load(qkv, qBase, lane + 64, HS), q3 = Load(qkv, qBase, lane + 96, HS);
        float max = float.NegativeInfinity, sum = 0f, o0 = 0f, o1 = 0f, o2 = 0f, o3 = 0f;
        for (int j = 0; j < s.T; j++)
        {
            if (keyMask[b * s.T + j] == 0) continue;
            long kBase = ((long)b * s.T + j) * 3 * C + C + h * HS, vBase = kBase + C;
            float partial = q0 * Load(qkv, kBase, lane, HS) + q1 * Load(qkv, kBase, lane + 32, HS)
                + q2 * Load(qkv, kBase, lane + 64, HS) + q3 * Load(qkv, kBase, lane + 96, HS);
            float score = WarpSum(partial) * s.Scale;
            float newMax = XMath.Max(max, score);
            float correction = XMath.Exp(max - newMax), p = XMath.Exp(score - newMax);
            sum = sum * correction + p;
            o0 = o0 * correction + p * Load(qkv, vBase, lane, HS);
            o1 = o1 * correction + p * Load(qkv, vBase, lane + 32, HS);
            o2 = o2 * correction + p * Load(qkv, vBase, lane + 64, HS);
            o3 = o3 * correction + p * Load(qkv, vBase, lane + 96, HS);
            max = newMax;
        }
        float inverse = sum > 0f ? 1f / sum : 0f;
        long outBase = ((long)b * s.T + i) * C + h * HS;
        Store(output, outBase, lane, HS, o0 * inverse);
        Store(output, outBase, lane + 32, HS, o1 * inverse);
        Store(output, outBase, lane + 64, HS, o2 * inverse);
        Store(output, outBase, lane + 96, HS, o3 * inverse);
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
