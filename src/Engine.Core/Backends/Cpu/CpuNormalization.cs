using System.Numerics.Tensors;

namespace Engine.Backends.Cpu;

/// <summary>Layer-norm with a fused residual add, and the embedding sum, on the CPU: one task per row.</summary>
internal static class CpuNormalization
{
    /// <summary>out (N,C) = (x − mean)·rstd·weight + bias, x = input + residual; two passes (mean, then variance of the centred row).</summary>
    public static void LayerNorm(float[] output, float[] input, float[]? residual, float[] weight, float[] bias, int N, int C, float eps)
    {
        Parallel.For(0, N, () => new float[C], (row, _, x) =>
        {
            var inRow = input.AsSpan(row * C, C);
            if (residual is null) inRow.CopyTo(x);
            else TensorPrimitives.Add(inRow, residual.AsSpan(row * C, C), x);
            double mean = TensorPrimitives.Sum<float>(x) / (double)C;
            TensorPrimitives.Subtract(x, (float)mean, x);
            double variance = TensorPrimitives.SumOfSquares<float>(x) / C;
            float rstd = (float)(1.0 / Math.Sqrt(variance + eps));
            var outRow = output.AsSpan(row * C, C);
            TensorPrimitives.Multiply(x, rstd, x);
            TensorPrimitives.FusedMultiplyAdd(x, weight, bias, outRow);
            return x;
        }, _ => { });
    }

    public static void Embeddings(float[] output, int[] inputIds, int[] tokenTypeIds, float[] word, float[] position, float[] tokenType, int B, int T, int C)
    {
        Parallel.For(0, B * T, token =>
        {
            int t = token % T;
            var outRow = output.AsSpan(token * C, C);
            TensorPrimitives.Add(word.AsSpan(inputIds[token] * C, C), position.AsSpan(t * C, C), outRow);
            TensorPrimitives.Add(outRow, tokenType.AsSpan(tokenTypeIds[token] * C, C), outRow);
        });
    }
}
