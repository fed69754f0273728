using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Backends.Cpu;

/// <summary>
/// Multi-head self-attention with a key padding mask on the CPU: one task per (batch row, head).
/// qkv (B,T,3C) → out (B,T,C). Masked keys get probability exactly 0 (as with Hugging Face's
/// float-minimum mask); a row whose keys are all masked outputs zeros.
/// </summary>
internal static class CpuAttention
{
    public static void Forward(float[] output, float[] qkv, int[] keyMask, int B, int T, int NH, int HS)
    {
        int C = NH * HS;
        float scale = 1f / MathF.Sqrt(HS);
        Parallel.For(0, B * NH, task =>
        {
            int b = task / NH, h = task % NH;
            var scores = new float[T];
            var valid = new int[T];
            int validCount = 0;
            for (int j = 0; j < T; j++)
                if (keyMask[b * T + j] != 0) valid[validCount++] = j;
            var used = scores.AsSpan(0, validCount);
            for (int i = 0; i < T; i++)
            {
                var outRow = output.AsSpan((b * T + i) * C + h * HS, HS);
                if (validCount == 0)
                {
                    outRow.Clear();
                    continue;
                }
                var q = qkv.AsSpan((b * T + i) * 3 * C + h * HS, HS);
                for (int v = 0; v < validCount; v++)
                    scores[v] = Dot(q, qkv.AsSpan((b * T + valid[v]) * 3 * C + C + h * HS, HS)) * scale;
                float max = TensorPrimitives.Max(used);
                TensorPrimitives.Subtract(used, max, used);
                TensorPrimitives.Exp(used, used);
                float inverseSum = 1f / TensorPrimitives.Sum(used);
                outRow.Clear();
                for (int v = 0; v < validCount; v++)
                    MultiplyAdd(qkv.AsSpan((b * T + valid[v]) * 3 * C + 2 * C + h * HS, HS), scores[v] * inverseSum, outRow);
            }
        });
    }

    private static float Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        int i = 0;
        var sum = Vector<float>.Zero;
        for (; i <= x.Length - Vector<float>.Count; i += Vector<float>.Count)
            sum = Vector.FusedMultiplyAdd(new Vector<float>(x[i..]), new Vector<float>(y[i..]), sum);
        float result = Vector.Sum(sum);
        for (; i < x.Length; i++) result += x[i] * y[i];
        return result;
    }

    /// <summary>accumulator += x · scale.</summary>
    private static void MultiplyAdd(ReadOnlySpan<float> x, float scale, Span<float> accumulator)
    {
        int i = 0;
        var s = new Vector<float>(scale);
        for (; i <= x.Length - Vector<float>.Count; i += Vector<float>.Count)
            Vector.FusedMultiplyAdd(new Vector<float>(x[i..]), s, new Vector<float>(accumulator[i..])).CopyTo(accumulator[i..]);
        for (; i < x.Length; i++) accumulator[i] += x[i] * scale;
    }
}
