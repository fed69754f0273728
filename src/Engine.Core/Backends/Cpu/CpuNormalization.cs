using System.Runtime.CompilerServices;
using System.Buffers;
using System.Numerics.Tensors;

namespace Engine.Backends.Cpu;

/// <summary>Layer-norm with a fused residual add (forward and backward), and the embedding sum, on the CPU: one task per row.</summary>
internal static class CpuNormalization
{
    /// <summary>out (N,C) = (x − mean)·rstd·weight + bias, x = input + residual; two passes (mean, then variance of the centred row).</summary>
    public static void LayerNorm(float[] output, float[] input, float[]? residual, ArraySegment<float> weight, ArraySegment<float> bias, int N, int C, float eps)
    {
        CpuParallel.For(0, N, () => new float[C], [MethodImpl(MethodImplOptions.AggressiveOptimization)] (row, _, x) =>
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

    /// <summary>
    /// Backward of <see cref="LayerNorm"/>, statistics recomputed as the forward computes them: with g = dy ⊙ w and
    /// x̂ = (x − mean)·rstd, dx = rstd·(g − mean(g) − x̂·mean(g ⊙ x̂)); dWeight += Σ_rows dy ⊙ x̂, dBias += Σ_rows dy,
    /// reduced over rows in a fixed order per slice of channels (deterministic). History: v1 scalar float64 per
    /// element; v2 (this version) vector float32 with the forward's float64 row statistics.
    /// </summary>
    public static void LayerNormBackward(float[] dInput, ArraySegment<float> dWeight, ArraySegment<float> dBias, float[] dOutput, float[] input, float[]? residual,
        ArraySegment<float> weight, int N, int C, float eps)
    {
        var normalized = ArrayPool<float>.Shared.Rent(N * C); // x̂ (N,C), for the parameter gradients
        try
        {
            CpuParallel.For(0, N, () => new float[C], [MethodImpl(MethodImplOptions.AggressiveOptimization)] (row, _, g) =>
            {
                var xHat = normalized.AsSpan(row * C, C);
                var inRow = input.AsSpan(row * C, C);
                if (residual is null) inRow.CopyTo(xHat);
                else TensorPrimitives.Add(inRow, residual.AsSpan(row * C, C), xHat);
                double mean = TensorPrimitives.Sum<float>(xHat) / (double)C;
                TensorPrimitives.Subtract(xHat, (float)mean, xHat);
                float rstd = (float)(1.0 / Math.Sqrt(TensorPrimitives.SumOfSquares<float>(xHat) / C + eps));
                TensorPrimitives.Multiply(xHat, rstd, xHat);
                var dy = dOutput.AsSpan(row * C, C);
                TensorPrimitives.Multiply(dy, weight.AsSpan(0, C), g);
                float meanG = TensorPrimitives.Sum<float>(g) / C, meanGx = TensorPrimitives.Dot(g, xHat) / C;
                var dx = dInput.AsSpan(row * C, C);
                TensorPrimitives.Multiply(xHat, -meanGx, dx);       // −x̂·mean(g x̂)
                TensorPrimitives.Add(dx, g, dx);                     // + g
                TensorPrimitives.Subtract(dx, meanG, dx);            // − mean(g)
                TensorPrimitives.Multiply(dx, rstd, dx);
                return g;
            }, _ => { });
            const int Slice = 64;
            CpuParallel.For(0, (C + Slice - 1) / Slice, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (slice) =>
            {
                int c0 = slice * Slice, width = Math.Min(Slice, C - c0);
                Span<float> weightSum = dWeight.AsSpan(c0, width), biasSum = dBias.AsSpan(c0, width);
                for (int row = 0; row < N; row++)
                {
                    var dy = dOutput.AsSpan(row * C + c0, width);
                    TensorPrimitives.FusedMultiplyAdd(dy, normalized.AsSpan(row * C + c0, width), weightSum, weightSum);
                    TensorPrimitives.Add(biasSum, dy, biasSum);
                }
            });
        }
        finally { ArrayPool<float>.Shared.Return(normalized); }
    }

    /// <summary>The word-embedding table: F32 rows, or int8 rows with a scale per token (dequantized as they are gathered).</summary>
    public readonly record struct WordRows(ArraySegment<float> Values, ArraySegment<sbyte> Quantized = default, ArraySegment<float> Scales = default)
    {
        public WordRows(ArraySegment<sbyte> quantized, ArraySegment<float> scales) : this(default, quantized, scales) { }

        /// <summary>destination (C) = row <paramref name="id"/>.</summary>
        public void Read(int id, Span<float> destination)
        {
            int C = destination.Length;
            if (Quantized.Array is null)
            {
                Values.AsSpan(id * C, C).CopyTo(destination);
                return;
            }
            TensorPrimitives.ConvertTruncating<sbyte, float>(Quantized.AsSpan(id * C, C), destination);
            TensorPrimitives.Multiply(destination, Scales[id], destination);
        }
    }

    public static void Embeddings(float[] output, int[] inputIds, int[] positionIds, int[] tokenTypeIds, WordRows word, ArraySegment<float> position,
        ArraySegment<float> tokenType, int B, int T, int C)
    {
        CpuParallel.For(0, B * T, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (token) =>
        {
            var outRow = output.AsSpan(token * C, C);
            word.Read(inputIds[token], outRow);
            TensorPrimitives.Add(outRow, position.AsSpan(positionIds[token] * C, C), outRow);
            TensorPrimitives.Add(outRow, tokenType.AsSpan(tokenTypeIds[token] * C, C), outRow);
        });
    }
}
