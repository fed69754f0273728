using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
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

    /// <summary>
    /// sums (N) += Σ over the M rows of values (M,N) (a bias gradient): blocks of 256 rows summed in parallel into
    /// partial rows, then the partials added in block order, so the result is the same for any thread count.
    /// </summary>
    public static void SumRows(ArraySegment<float> sums, float[] values, int M, int N)
    {
        const int BlockRows = 256;
        int blocks = (M + BlockRows - 1) / BlockRows;
        var partials = System.Buffers.ArrayPool<float>.Shared.Rent(blocks * N);
        try
        {
            CpuParallel.For(0, blocks, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (block) =>
            {
                var partial = partials.AsSpan(block * N, N);
                partial.Clear();
                for (int m = block * BlockRows, end = Math.Min(M, m + BlockRows); m < end; m++)
                    TensorPrimitives.Add(partial, values.AsSpan(m * N, N), partial);
            });
            var total = sums.AsSpan(0, N);
            for (int block = 0; block < blocks; block++) TensorPrimitives.Add(total, partials.AsSpan(block * N, N), total);
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(partials);
        }
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

    /// <summary>
    /// factors[k] = mask.Factor(first + k), one Philox block per four consecutive elements (Philox.Uniform's layout).
    /// Four blocks run side by side in the lanes of 256-bit integer vectors (the 32×32→64-bit products are
    /// vpmuludq on x64) and a group of four blocks inside the range becomes sixteen factors by two shuffles and a
    /// compare per eight, so a mask costs a few instructions per element instead of a scalar Philox block per four
    /// (the training step's dropout and attention-probability masks: about 470 → 110 ms at MiniLM 32 × 128 here).
    /// A word keeps its element when its top 24 bits reach ⌈p·2²⁴⌉: the same test as uniform ≥ p, in integers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DropoutFactors(DropoutMask mask, long first, Span<float> factors)
    {
        if (factors.IsEmpty) return;
        long end = first + factors.Length, lastBlock = (end - 1) >> 2;
        uint threshold = (uint)Math.Ceiling(mask.Probability * (double)(1 << 24));
        float kept = mask.FactorOf(1f);
        const int Lanes = 4;
        Span<ulong> words = stackalloc ulong[4 * Lanes];
        var lowBits = Vector256.Create(0xFFFF_FFFFUL);
        var lanes = Vector256.Create(0UL, 1, 2, 3);
        var (offsetLow, offsetHigh) = (Vector256.Create((ulong)(uint)mask.Offset), Vector256.Create(mask.Offset >> 32));
        // Words in element order: blocks 0 and 1 of a group, then 2 and 3 (Narrow puts word k of the four blocks side by side).
        var (blocksLow, blocksHigh) = (Vector256.Create(0u, 4, 0, 4, 1, 5, 1, 5), Vector256.Create(2u, 6, 2, 6, 3, 7, 3, 7));
        var fromFirstPair = Vector256.Create(~0u, ~0u, 0, 0, ~0u, ~0u, 0, 0);
        var (keep, cut) = (Vector256.Create(kept), Vector256.Create((int)threshold));
        for (long block = first >> 2; block <= lastBlock; block += Lanes)
        {
            var counter = Vector256.Create((ulong)block) + lanes;
            var (w0, w1, w2, w3) = PhiloxBlocks(counter & lowBits, counter >>> 32, offsetLow, offsetHigh, (uint)mask.Seed, (uint)(mask.Seed >> 32));
            long start = block * 4;
            if (start >= first && start + 4 * Lanes <= end)
            {
                // The whole group inside the range: sixteen factors in two vectors.
                Vector256<uint> words01 = Vector256.Narrow(w0, w1), words23 = Vector256.Narrow(w2, w3);
                var low = Vector256.ConditionalSelect(fromFirstPair, Vector256.Shuffle(words01, blocksLow), Vector256.Shuffle(words23, blocksLow));
                var high = Vector256.ConditionalSelect(fromFirstPair, Vector256.Shuffle(words01, blocksHigh), Vector256.Shuffle(words23, blocksHigh));
                var target = factors[(int)(start - first)..];
                Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual((low >>> 8).AsInt32(), cut).AsSingle(), keep, Vector256<float>.Zero).CopyTo(target);
                Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual((high >>> 8).AsInt32(), cut).AsSingle(), keep, Vector256<float>.Zero).CopyTo(target[8..]);
                continue;
            }
            w0.CopyTo(words);
            w1.CopyTo(words[Lanes..]);
            w2.CopyTo(words[(2 * Lanes)..]);
            w3.CopyTo(words[(3 * Lanes)..]);
            for (int lane = 0; lane < Lanes; lane++)
                for (int k = 0; k < 4; k++)
                {
                    long index = (block + lane) * 4 + k;
                    if (index < first || index >= end) continue;
                    factors[(int)(index - first)] = (uint)words[k * Lanes + lane] >> 8 >= threshold ? kept : 0f;
                }
        }
    }

    /// <summary>
    /// <see cref="Training.Philox.Block"/> for four counters at once, each 32-bit word zero-extended in a 64-bit lane; the
    /// key (k0, k1) is the same for every lane.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<ulong>, Vector256<ulong>, Vector256<ulong>, Vector256<ulong>) PhiloxBlocks(
        Vector256<ulong> c0, Vector256<ulong> c1, Vector256<ulong> c2, Vector256<ulong> c3, uint k0, uint k1)
    {
        var lowBits = Vector256.Create(0xFFFF_FFFFUL);
        for (int round = 0; round < 10; round++)
        {
            if (round > 0)
            {
                k0 += Training.Philox.W0;
                k1 += Training.Philox.W1;
            }
            var product0 = Multiply32(c0, Training.Philox.M0);
            var product1 = Multiply32(c2, Training.Philox.M1);
            (c0, c1, c2, c3) = ((product1 >>> 32) ^ c1 ^ Vector256.Create((ulong)k0), product1 & lowBits, (product0 >>> 32) ^ c3 ^ Vector256.Create((ulong)k1), product0 & lowBits);
        }
        return (c0, c1, c2, c3);
    }

    /// <summary>Each lane's low 32 bits times <paramref name="multiplier"/>, as a 64-bit product (vpmuludq where there is AVX2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> Multiply32(Vector256<ulong> value, uint multiplier) =>
        Avx2.IsSupported ? Avx2.Multiply(value.AsUInt32(), Vector256.Create((ulong)multiplier).AsUInt32()) : value * Vector256.Create((ulong)multiplier);

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
