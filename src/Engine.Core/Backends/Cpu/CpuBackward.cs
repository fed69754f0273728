using System.Runtime.CompilerServices;
using System.Numerics.Tensors;

namespace Engine.Backends.Cpu;

/// <summary>
/// The CPU backend's backward passes (see <see cref="ITrainingBackend"/> for the accumulation rule).
/// Parameter gradients are reduced over rows in a fixed order, so results do not depend on thread timing.
/// </summary>
internal static class CpuBackward
{
    public static void ActivateBackward(float[] dInput, float[] dOutput, float[] input, int n, Activation activation)
    {
        switch (activation)
        {
            case Activation.None:
                Array.Copy(dOutput, dInput, n);
                break;
            case Activation.Gelu:
                CpuParallel.For(0, (n + 4095) / 4096, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (chunk) =>
                {
                    int start = chunk * 4096, length = Math.Min(n - start, 4096);
                    CpuActivations.GeluBackward(dOutput.AsSpan(start, length), input.AsSpan(start, length), dInput.AsSpan(start, length));
                });
                break;
            case Activation.Tanh:
                CpuParallel.For(0, (n + 4095) / 4096, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (chunk) =>
                {
                    for (int i = chunk * 4096, end = Math.Min(n, i + 4096); i < end; i++)
                    {
                        float t = MathF.Tanh(input[i]);
                        dInput[i] = dOutput[i] * (1f - t * t);
                    }
                });
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(activation));
        }
    }

    /// <summary>
    /// The scatter-add runs over tokens in order within each slice of channels, and slices run in parallel:
    /// every sum is formed in the same order whatever the threads do.
    /// </summary>
    public static void EmbeddingsBackward(ArraySegment<float> dWord, ArraySegment<float> dPosition, ArraySegment<float> dTokenType, float[] dSum,
        int[] inputIds, int[] positionIds, int[] tokenTypeIds, int B, int T, int C)
    {
        const int Slice = 64;
        CpuParallel.For(0, (C + Slice - 1) / Slice, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (slice) =>
        {
            int c0 = slice * Slice, width = Math.Min(Slice, C - c0);
            for (int token = 0; token < B * T; token++)
            {
                var row = dSum.AsSpan(token * C + c0, width);
                Add(dWord.AsSpan(inputIds[token] * C + c0, width), row);
                Add(dPosition.AsSpan(positionIds[token] * C + c0, width), row);
                Add(dTokenType.AsSpan(tokenTypeIds[token] * C + c0, width), row);
            }
        });

        static void Add(Span<float> accumulator, ReadOnlySpan<float> values) => TensorPrimitives.Add(accumulator, values, accumulator);
    }

    public static void Dropout(float[] output, float[] input, int n, DropoutMask mask)
    {
        if (!mask.IsActive)
        {
            Array.Copy(input, output, n);
            return;
        }
        const int Chunk = 4096;
        CpuParallel.For(0, (n + Chunk - 1) / Chunk, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (chunk) =>
        {
            int start = chunk * Chunk, length = Math.Min(n - start, Chunk);
            Span<float> factors = stackalloc float[length];
            DropoutFactors(mask, start, factors);
            TensorPrimitives.Multiply(input.AsSpan(start, length), factors, output.AsSpan(start, length));
        });
    }

    /// <summary>factors[k] = mask.Factor(first + k), one Philox block per four consecutive elements (Philox.Uniform's layout).</summary>
    public static void DropoutFactors(DropoutMask mask, long first, Span<float> factors)
    {
        long end = first + factors.Length;
        for (long blockStart = first & ~3L; blockStart < end; blockStart += 4)
        {
            ulong block = (ulong)blockStart >> 2;
            var (w0, w1, w2, w3) = Training.Philox.Block((uint)block, (uint)(block >> 32), (uint)mask.Offset, (uint)(mask.Offset >> 32), (uint)mask.Seed, (uint)(mask.Seed >> 32));
            for (int k = 0; k < 4; k++)
            {
                long index = blockStart + k;
                if (index < first || index >= end) continue;
                uint word = k switch { 0 => w0, 1 => w1, 2 => w2, _ => w3 };
                factors[(int)(index - first)] = mask.FactorOf(Training.Philox.ToUniform(word));
            }
        }
    }

    public static void SoftmaxBackward(float[] dInput, float[] dOutput, float[] output, int rows, int N) =>
        CpuParallel.For(0, rows, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (row) =>
        {
            var y = output.AsSpan(row * N, N);
            var dy = dOutput.AsSpan(row * N, N);
            float dot = TensorPrimitives.Dot(dy, y);
            var dx = dInput.AsSpan(row * N, N);
            TensorPrimitives.Subtract(dy, dot, dx);
            TensorPrimitives.Multiply(dx, y, dx);
        });

    public static void CrossEntropy(float[] losses, float[] dLogits, float[] logits, int[] labels, int B, int V)
    {
        int counted = labels.Take(B).Count(l => l >= 0);
        float scale = counted == 0 ? 0f : 1f / counted;
        CpuParallel.For(0, B, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (row) =>
        {
            var dx = dLogits.AsSpan(row * V, V);
            int label = labels[row];
            if (label < 0)
            {
                losses[row] = 0f;
                dx.Clear();
                return;
            }
            if (label >= V) throw new ArgumentOutOfRangeException(nameof(labels), $"label {label} of row {row} is not below {V}");
            Probabilities.FromLogits(logits.AsSpan(row * V, V), dx);
            // −log p computed from the logits (log-sum-exp), not from a rounded probability.
            var z = logits.AsSpan(row * V, V);
            float max = TensorPrimitives.Max(z);
            double sum = 0;
            foreach (float v in z) sum += Math.Exp(v - max);
            losses[row] = (float)(Math.Log(sum) + max - z[label]);
            dx[label] -= 1f;
            TensorPrimitives.Multiply(dx, scale, dx);
        });
    }

    /// <summary>losses (n) = (p − t)², dPredictions (n) = 2·(p − t)/n: the mean squared error's terms and gradient.</summary>
    public static void MeanSquaredError(float[] losses, float[] dPredictions, float[] predictions, float[] targets, int n)
    {
        float scale = 2f / Math.Max(n, 1);
        for (int i = 0; i < n; i++)
        {
            float difference = predictions[i] - targets[i];
            losses[i] = difference * difference;
            dPredictions[i] = difference * scale;
        }
    }
}
