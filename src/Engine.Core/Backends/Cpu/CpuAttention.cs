using System.Runtime.CompilerServices;
using System.Numerics.Tensors;

namespace Engine.Backends.Cpu;

/// <summary>
/// Multi-head self-attention on the CPU, over padded sequences with a key mask or packed ones (see
/// <see cref="SequenceLayout"/>): one task per (sequence, head). qkv (rows,3C) → out (rows,C). Masked keys get probability exactly 0 (as with Hugging Face's
/// float-minimum mask); a row whose keys are all masked outputs zeros. Dropout on the probabilities, when
/// asked, multiplies each by its <see cref="DropoutMask.Factor"/> after the normalisation, as Hugging Face's
/// attention_probs dropout does; the backward regenerates the same factors.
/// </summary>
/// <remarks>
/// Each task first gathers its head's unmasked keys transposed, Kᵀ (HS, T'), and values, V (T', HS), into
/// contiguous scratch, so both products run as vector multiply-adds along contiguous rows, four queries at a time:
/// scores (4, T') = Q (4, HS) · Kᵀ with each key vector loaded once for the four, then each row's softmax, then
/// out (4, HS) = P · V with each value row loaded once for the four, the accumulators in registers, at the widest
/// vector width the processor runs. History: v1 one dot product per key, accumulated through memory (8 GFLOP/s on
/// MiniLM shapes); v2 transposed keys, register accumulators, 256-bit; v3 any width; v4 four queries per pass and the
/// float exponential in the softmax (a MiniLM layer at 32 × 128: about 36 → 12 ms here); v5 the queries copied and scaled
/// as vectors (an indexed scalar loop had cost a fifth of the time), the keys transposed through pointers and the softmax
/// without calls inside a row (the same layer on one thread 13.4 → 10.5 ms, of which the softmax is a third).
/// </remarks>
internal static class CpuAttention
{
    /// <summary>Queries whose scores and weighted sums the forward computes together, sharing each key and value load.</summary>
    private const int QueryBlock = 4;

    /// <summary>Where sequence b's rows are and which of its keys are real, from a layout's indices on the host.</summary>
    private readonly struct Sequences(int[] indices, bool packed, int T)
    {
        /// <summary>The row of sequence b's token 0.</summary>
        public int First(int b) => packed ? indices[b] : b * T;
        /// <summary>Sequence b's rows: its length when packed, T when padded.</summary>
        public int Count(int b) => packed ? indices[b + 1] - indices[b] : T;
        public bool IsKey(int b, int j) => packed || indices[b * T + j] != 0;
    }

    /// <summary>
    /// probabilities (B,NH,T,T), as <see cref="IBackend.AttentionProbabilities"/>: one task per (sequence, head), a dot product
    /// per (query, key) and the softmax of each real query's row over the real keys; every other element 0. For attention
    /// maps, not the forward's fast path.
    /// </summary>
    public static void Maps(float[] probabilities, float[] qkv, int[] indices, SequenceLayout layout, int NH, int HS)
    {
        var sequences = new Sequences(indices, layout.IsPacked, layout.T);
        int T = layout.T, C = NH * HS;
        float scale = 1f / MathF.Sqrt(HS);
        CpuParallel.For(0, layout.B * NH, task =>
        {
            int b = task / NH, h = task % NH, first = sequences.First(b), count = sequences.Count(b);
            var block = probabilities.AsSpan(task * T * T, T * T);
            block.Clear();
            var keys = Enumerable.Range(0, count).Where(j => sequences.IsKey(b, j)).ToArray();
            if (keys.Length == 0) return;
            var scores = new float[keys.Length];
            for (int i = 0; i < count; i++)
            {
                if (!sequences.IsKey(b, i)) continue; // a padding query: its row stays 0
                var query = qkv.AsSpan((first + i) * 3 * C + h * HS, HS);
                for (int k = 0; k < keys.Length; k++)
                    scores[k] = TensorPrimitives.Dot(query, qkv.AsSpan((first + keys[k]) * 3 * C + C + h * HS, HS)) * scale;
                Probabilities.FromLogits(scores, scores);
                var row = block.Slice(i * T, T);
                for (int k = 0; k < keys.Length; k++) row[keys[k]] = scores[k];
            }
        });
    }

    public static void Forward(float[] output, float[] qkv, int[] indices, SequenceLayout layout, int NH, int HS, DropoutMask dropout)
    {
        var sequences = new Sequences(indices, layout.IsPacked, layout.T);
        switch (Simd.Width)
        {
            case 16: Forward<Simd512>(output, qkv, sequences, layout.B, layout.T, NH, HS, dropout); break;
            case 8: Forward<Simd256>(output, qkv, sequences, layout.B, layout.T, NH, HS, dropout); break;
            default: Forward<Simd128>(output, qkv, sequences, layout.B, layout.T, NH, HS, dropout); break;
        }
    }

    private static void Forward<V>(float[] output, float[] qkv, Sequences sequences, int B, int T, int NH, int HS, DropoutMask dropout) where V : struct, ISimd<V>
    {
        int C = NH * HS;
        float scale = 1f / MathF.Sqrt(HS);
        // Scratch per worker thread, sized for the longest sequence: no allocation per task.
        CpuParallel.For(0, B * NH, () => new Scratch(T, HS), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (task, _, scratch) =>
        {
            int b = task / NH, h = task % NH, first = sequences.First(b), count = sequences.Count(b);
            var valid = scratch.Valid;
            int n = 0;
            for (int j = 0; j < count; j++)
                if (sequences.IsKey(b, j)) valid[n++] = j;
            var keysTransposed = scratch.KeysTransposed; // (HS, T')
            var values = scratch.Values;                 // (T', HS)
            GatherTransposed(qkv, valid, n, first, 3 * C, C + h * HS, HS, keysTransposed);
            for (int v = 0; v < n; v++) qkv.AsSpan((first + valid[v]) * 3 * C + 2 * C + h * HS, HS).CopyTo(values.AsSpan(v * HS, HS));
            var (scores, queries) = (scratch.Scores, scratch.Queries); // (QueryBlock, T'), (QueryBlock, HS)
            for (int i0 = 0; i0 < count; i0 += QueryBlock)
            {
                int rows = Math.Min(QueryBlock, count - i0);
                if (n == 0)
                {
                    for (int r = 0; r < rows; r++) output.AsSpan((first + i0 + r) * C + h * HS, HS).Clear();
                    continue;
                }
                for (int r = 0; r < QueryBlock; r++)
                {
                    var query = queries.AsSpan(r * HS, HS);
                    if (r < rows) TensorPrimitives.Multiply(qkv.AsSpan((first + i0 + r) * 3 * C + h * HS, HS), scale, query);
                    else query.Clear();
                }
                ScoresBlock<V>(keysTransposed, n, queries, HS, scores);
                for (int r = 0; r < rows; r++)
                {
                    var row = scores.AsSpan(r * n, n);
                    Probabilities.FromLogits<V>(row, row);
                    if (!dropout.IsActive) continue;
                    var factors = scratch.Factors;
                    CpuBackward.DropoutFactors(dropout, (((long)b * NH + h) * T + i0 + r) * T, factors.AsSpan(0, count));
                    for (int v = 0; v < n; v++) row[v] *= factors[valid[v]];
                }
                WeightedSumBlock<V>(values, n, HS, scores, output, (first + i0) * C + h * HS, C, rows);
            }
            return scratch;
        }, _ => { });
    }

    /// <summary>
    /// scores (QueryBlock, T') = queries (QueryBlock, HS), already scaled, · Kᵀ (HS, T'): four queries × four vectors of keys
    /// (16 accumulators) per pass over the head, each key vector loaded once for the four queries.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void ScoresBlock<V>(float[] keysTransposed, int n, float[] queries, int HS, float[] scores) where V : struct, ISimd<V>
    {
        int w = V.Count, j = 0;
        fixed (float* kt = keysTransposed, q = queries, s = scores)
        {
            float* q1 = q + HS, q2 = q + 2 * HS, q3 = q + 3 * HS;
            for (; j + 4 * w <= n; j += 4 * w)
            {
                V s00 = V.Zero, s01 = V.Zero, s02 = V.Zero, s03 = V.Zero, s10 = V.Zero, s11 = V.Zero, s12 = V.Zero, s13 = V.Zero;
                V s20 = V.Zero, s21 = V.Zero, s22 = V.Zero, s23 = V.Zero, s30 = V.Zero, s31 = V.Zero, s32 = V.Zero, s33 = V.Zero;
                for (int d = 0; d < HS; d++)
                {
                    float* row = kt + d * n + j;
                    V k0 = V.Load(row), k1 = V.Load(row + w), k2 = V.Load(row + 2 * w), k3 = V.Load(row + 3 * w);
                    var b0 = V.Create(q[d]);
                    s00 = V.FusedMultiplyAdd(k0, b0, s00); s01 = V.FusedMultiplyAdd(k1, b0, s01); s02 = V.FusedMultiplyAdd(k2, b0, s02); s03 = V.FusedMultiplyAdd(k3, b0, s03);
                    var b1 = V.Create(q1[d]);
                    s10 = V.FusedMultiplyAdd(k0, b1, s10); s11 = V.FusedMultiplyAdd(k1, b1, s11); s12 = V.FusedMultiplyAdd(k2, b1, s12); s13 = V.FusedMultiplyAdd(k3, b1, s13);
                    var b2 = V.Create(q2[d]);
                    s20 = V.FusedMultiplyAdd(k0, b2, s20); s21 = V.FusedMultiplyAdd(k1, b2, s21); s22 = V.FusedMultiplyAdd(k2, b2, s22); s23 = V.FusedMultiplyAdd(k3, b2, s23);
                    var b3 = V.Create(q3[d]);
                    s30 = V.FusedMultiplyAdd(k0, b3, s30); s31 = V.FusedMultiplyAdd(k1, b3, s31); s32 = V.FusedMultiplyAdd(k2, b3, s32); s33 = V.FusedMultiplyAdd(k3, b3, s33);
                }
                float* o = s + j;
                s00.Store(o); s01.Store(o + w); s02.Store(o + 2 * w); s03.Store(o + 3 * w);
                o += n;
                s10.Store(o); s11.Store(o + w); s12.Store(o + 2 * w); s13.Store(o + 3 * w);
                o += n;
                s20.Store(o); s21.Store(o + w); s22.Store(o + 2 * w); s23.Store(o + 3 * w);
                o += n;
                s30.Store(o); s31.Store(o + w); s32.Store(o + 2 * w); s33.Store(o + 3 * w);
            }
            for (; j + w <= n; j += w)
            {
                V s0 = V.Zero, s1 = V.Zero, s2 = V.Zero, s3 = V.Zero;
                for (int d = 0; d < HS; d++)
                {
                    var k = V.Load(kt + d * n + j);
                    s0 = V.FusedMultiplyAdd(k, V.Create(q[d]), s0);
                    s1 = V.FusedMultiplyAdd(k, V.Create(q1[d]), s1);
                    s2 = V.FusedMultiplyAdd(k, V.Create(q2[d]), s2);
                    s3 = V.FusedMultiplyAdd(k, V.Create(q3[d]), s3);
                }
                s0.Store(s + j); s1.Store(s + n + j); s2.Store(s + 2 * n + j); s3.Store(s + 3 * n + j);
            }
            for (; j < n; j++)
                for (int r = 0; r < QueryBlock; r++)
                {
                    float sum = 0;
                    for (int d = 0; d < HS; d++) sum += q[r * HS + d] * kt[d * n + j];
                    s[r * n + j] = sum;
                }
        }
    }

    /// <summary>
    /// output rows r &lt; <paramref name="rows"/> (HS each, <paramref name="stride"/> apart from <paramref name="offset"/>) =
    /// p (QueryBlock, T') · V (T', HS): four queries × two vectors of the head (8 accumulators), each value row loaded once
    /// for the four queries.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void WeightedSumBlock<V>(float[] values, int n, int HS, float[] probabilities, float[] output, int offset, int stride, int rows)
        where V : struct, ISimd<V>
    {
        int w = V.Count, d = 0;
        fixed (float* v = values, p = probabilities, o = &output[offset])
        {
            float* p1 = p + n, p2 = p + 2 * n, p3 = p + 3 * n;
            for (; d + 2 * w <= HS; d += 2 * w)
            {
                V a00 = V.Zero, a01 = V.Zero, a10 = V.Zero, a11 = V.Zero, a20 = V.Zero, a21 = V.Zero, a30 = V.Zero, a31 = V.Zero;
                for (int j = 0; j < n; j++)
                {
                    float* row = v + j * HS + d;
                    V v0 = V.Load(row), v1 = V.Load(row + w);
                    var c0 = V.Create(p[j]);
                    a00 = V.FusedMultiplyAdd(v0, c0, a00); a01 = V.FusedMultiplyAdd(v1, c0, a01);
                    var c1 = V.Create(p1[j]);
                    a10 = V.FusedMultiplyAdd(v0, c1, a10); a11 = V.FusedMultiplyAdd(v1, c1, a11);
                    var c2 = V.Create(p2[j]);
                    a20 = V.FusedMultiplyAdd(v0, c2, a20); a21 = V.FusedMultiplyAdd(v1, c2, a21);
                    var c3 = V.Create(p3[j]);
                    a30 = V.FusedMultiplyAdd(v0, c3, a30); a31 = V.FusedMultiplyAdd(v1, c3, a31);
                }
                a00.Store(o + d); a01.Store(o + d + w);
                if (rows > 1) { a10.Store(o + stride + d); a11.Store(o + stride + d + w); }
                if (rows > 2) { a20.Store(o + 2 * stride + d); a21.Store(o + 2 * stride + d + w); }
                if (rows > 3) { a30.Store(o + 3 * stride + d); a31.Store(o + 3 * stride + d + w); }
            }
            for (; d + w <= HS; d += w)
            {
                V a0 = V.Zero, a1 = V.Zero, a2 = V.Zero, a3 = V.Zero;
                for (int j = 0; j < n; j++)
                {
                    var row = V.Load(v + j * HS + d);
                    a0 = V.FusedMultiplyAdd(row, V.Create(p[j]), a0);
                    a1 = V.FusedMultiplyAdd(row, V.Create(p1[j]), a1);
                    a2 = V.FusedMultiplyAdd(row, V.Create(p2[j]), a2);
                    a3 = V.FusedMultiplyAdd(row, V.Create(p3[j]), a3);
                }
                a0.Store(o + d);
                if (rows > 1) a1.Store(o + stride + d);
                if (rows > 2) a2.Store(o + 2 * stride + d);
                if (rows > 3) a3.Store(o + 3 * stride + d);
            }
            for (; d < HS; d++)
                for (int r = 0; r < rows; r++)
                {
                    float sum = 0;
                    for (int j = 0; j < n; j++) sum += p[r * n + j] * v[j * HS + d];
                    o[r * stride + d] = sum;
                }
        }
    }

    /// <summary>
    /// dQkv (rows,3C) from dOut (rows,C), recomputing each query's probabilities p and dropout factors f: with
    /// dp_j = f_j·(dOut·v_j) (the gradient of the undropped probability) and D = Σ_j p_j·dp_j = dOut·o,
    /// dS = p ⊙ (dp − D); dQ = scale·dS·K, dK = scale·dSᵀ·Q, dV = (p ⊙ f)ᵀ·dOut. One task per (batch row, head),
    /// each writing only its own head's slices of its own rows, so the result does not depend on scheduling.
    /// </summary>
    /// <remarks>
    /// As the forward, each task gathers its unmasked keys (Kᵀ and K) and values (Vᵀ) into scratch, and takes its
    /// queries four at a time: scores and dOut·V as (4, HS)·(HS, T') with each key and value vector loaded once for the
    /// four, dq as (4, T')·(T', HS), and dK, dV accumulated by rank-4 updates that load and store each row once per four
    /// queries. History: v1 one TensorPrimitives call per key (≈ 3.5× the forward's time); v2 gathered operands and
    /// register-blocked vector loops, one query at a time; v3 (this version) four queries per pass (a MiniLM training
    /// step's six attention backwards at 32 × 128 with dropout: 364 → 233 ms, before the vectorised masks took it to 185).
    /// </remarks>
    public static void Backward(float[] dQkv, float[] dOutput, float[] qkv, int[] indices, SequenceLayout layout, int NH, int HS, DropoutMask dropout)
    {
        var sequences = new Sequences(indices, layout.IsPacked, layout.T);
        switch (Simd.Width)
        {
            case 16: Backward<Simd512>(dQkv, dOutput, qkv, sequences, layout.B, layout.T, NH, HS, dropout); break;
            case 8: Backward<Simd256>(dQkv, dOutput, qkv, sequences, layout.B, layout.T, NH, HS, dropout); break;
            default: Backward<Simd128>(dQkv, dOutput, qkv, sequences, layout.B, layout.T, NH, HS, dropout); break;
        }
    }

    private static void Backward<V>(float[] dQkv, float[] dOutput, float[] qkv, Sequences sequences, int B, int T, int NH, int HS, DropoutMask dropout)
        where V : struct, ISimd<V>
    {
        int C = NH * HS;
        float scale = 1f / MathF.Sqrt(HS);
        CpuParallel.For(0, B * NH, () => new BackwardScratch(T, HS), [MethodImpl(MethodImplOptions.AggressiveOptimization)] (task, _, scratch) =>
        {
            int b = task / NH, h = task % NH, first = sequences.First(b), count = sequences.Count(b);
            var valid = scratch.Valid;
            int n = 0;
            for (int j = 0; j < count; j++)
                if (sequences.IsKey(b, j)) valid[n++] = j;
            var (keysTransposed, keys, valuesTransposed) = (scratch.KeysTransposed, scratch.Keys, scratch.ValuesTransposed);
            GatherTransposed(qkv, valid, n, first, 3 * C, C + h * HS, HS, keysTransposed);
            GatherTransposed(qkv, valid, n, first, 3 * C, 2 * C + h * HS, HS, valuesTransposed);
            for (int v = 0; v < n; v++) qkv.AsSpan((first + valid[v]) * 3 * C + C + h * HS, HS).CopyTo(keys.AsSpan(v * HS, HS));
            Span<float> dKeys = scratch.DKeys.AsSpan(0, n * HS), dValues = scratch.DValues.AsSpan(0, n * HS);
            dKeys.Clear();
            dValues.Clear();
            // Per block of four queries (QueryBlock, T') each: probabilities, dOut·V, dS, and the weights that multiplied V.
            var (p, dp, ds, weights) = (scratch.P, scratch.DP, scratch.DS, scratch.Weights);
            var (queries, scaledQueries, dOuts) = (scratch.Queries, scratch.ScaledQueries, scratch.DOutputs);
            for (int i0 = 0; i0 < count; i0 += QueryBlock)
            {
                int rows = Math.Min(QueryBlock, count - i0);
                if (n == 0)
                {
                    for (int r = 0; r < rows; r++) dQkv.AsSpan((first + i0 + r) * 3 * C + h * HS, HS).Clear();
                    continue;
                }
                for (int r = 0; r < QueryBlock; r++)
                {
                    Span<float> query = queries.AsSpan(r * HS, HS), scaledQuery = scaledQueries.AsSpan(r * HS, HS), dOut = dOuts.AsSpan(r * HS, HS);
                    if (r < rows)
                    {
                        qkv.AsSpan((first + i0 + r) * 3 * C + h * HS, HS).CopyTo(query);
                        TensorPrimitives.Multiply(query, scale, scaledQuery);
                        dOutput.AsSpan((first + i0 + r) * C + h * HS, HS).CopyTo(dOut);
                    }
                    else
                    {
                        query.Clear();
                        scaledQuery.Clear();
                        dOut.Clear();
                    }
                }
                ScoresBlock<V>(keysTransposed, n, scaledQueries, HS, p);
                ScoresBlock<V>(valuesTransposed, n, dOuts, HS, dp);
                for (int r = 0; r < QueryBlock; r++)
                {
                    Span<float> pr = p.AsSpan(r * n, n), dpr = dp.AsSpan(r * n, n), dsr = ds.AsSpan(r * n, n), wr = weights.AsSpan(r * n, n);
                    if (r >= rows)
                    {
                        dsr.Clear(); // a missing query adds nothing to dK, dV
                        wr.Clear();
                        continue;
                    }
                    Probabilities.FromLogits<V>(pr, pr);
                    pr.CopyTo(wr); // p ⊙ f: what multiplied each value in the forward
                    if (dropout.IsActive)
                    {
                        var factors = scratch.Factors.AsSpan(0, count);
                        CpuBackward.DropoutFactors(dropout, (((long)b * NH + h) * T + i0 + r) * T, factors);
                        for (int v = 0; v < n; v++)
                        {
                            float factor = factors[valid[v]];
                            dpr[v] *= factor;
                            wr[v] *= factor;
                        }
                    }
                    float dot = TensorPrimitives.Dot(pr, dpr);
                    TensorPrimitives.Subtract(dpr, dot, dsr);
                    TensorPrimitives.Multiply(dsr, pr, dsr);
                    TensorPrimitives.Multiply(dsr, scale, dsr);
                }
                WeightedSumBlock<V>(keys, n, HS, ds, dQkv, (first + i0) * 3 * C + h * HS, 3 * C, rows);
                RankFourUpdate<V>(dKeys, ds, queries, n, HS);
                RankFourUpdate<V>(dValues, weights, dOuts, n, HS);
            }
            for (int j = 0; j < count; j++)
            {
                int baseIndex = (first + j) * 3 * C + h * HS;
                dQkv.AsSpan(baseIndex + C, HS).Clear();
                dQkv.AsSpan(baseIndex + 2 * C, HS).Clear();
            }
            for (int v = 0; v < n; v++)
            {
                int baseIndex = (first + valid[v]) * 3 * C + h * HS;
                dKeys.Slice(v * HS, HS).CopyTo(dQkv.AsSpan(baseIndex + C, HS));
                dValues.Slice(v * HS, HS).CopyTo(dQkv.AsSpan(baseIndex + 2 * C, HS));
            }
            return scratch;
        }, _ => { });
    }

    /// <summary>
    /// columns (HS, n) = the head's HS values at each of the n valid rows, transposed: columns[d·n + v] is
    /// qkv[(first + valid[v])·stride + offset + d]. Contiguous reads, one strided store each.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void GatherTransposed(float[] qkv, int[] valid, int n, int first, int stride, int offset, int HS, float[] columns)
    {
        fixed (float* source = qkv, destination = columns)
            for (int v = 0; v < n; v++)
            {
                float* row = source + (long)(first + valid[v]) * stride + offset, column = destination + v;
                for (int d = 0; d < HS; d++) column[d * n] = row[d];
            }
    }

    /// <summary>
    /// rows (T', HS) += coefficientsᵀ (T', QueryBlock) · vectors (QueryBlock, HS): row j gains Σ_r coefficients[r, j]·vectors[r],
    /// each row loaded and stored once for the four queries.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void RankFourUpdate<V>(Span<float> rows, float[] coefficients, float[] vectors, int n, int HS) where V : struct, ISimd<V>
    {
        int w = V.Count, d = 0;
        fixed (float* r = rows, c = coefficients, x = vectors)
        {
            float* c1 = c + n, c2 = c + 2 * n, c3 = c + 3 * n;
            for (; d + 2 * w <= HS; d += 2 * w)
            {
                V x00 = V.Load(x + d), x01 = V.Load(x + d + w), x10 = V.Load(x + HS + d), x11 = V.Load(x + HS + d + w);
                V x20 = V.Load(x + 2 * HS + d), x21 = V.Load(x + 2 * HS + d + w), x30 = V.Load(x + 3 * HS + d), x31 = V.Load(x + 3 * HS + d + w);
                for (int j = 0; j < n; j++)
                {
                    float* row = r + j * HS + d;
                    V a0 = V.Load(row), a1 = V.Load(row + w);
                    V k0 = V.Create(c[j]), k1 = V.Create(c1[j]), k2 = V.Create(c2[j]), k3 = V.Create(c3[j]);
                    a0 = V.FusedMultiplyAdd(x00, k0, a0); a1 = V.FusedMultiplyAdd(x01, k0, a1);
                    a0 = V.FusedMultiplyAdd(x10, k1, a0); a1 = V.FusedMultiplyAdd(x11, k1, a1);
                    a0 = V.FusedMultiplyAdd(x20, k2, a0); a1 = V.FusedMultiplyAdd(x21, k2, a1);
                    a0 = V.FusedMultiplyAdd(x30, k3, a0); a1 = V.FusedMultiplyAdd(x31, k3, a1);
                    a0.Store(row);
                    a1.Store(row + w);
                }
            }
            for (; d + w <= HS; d += w)
            {
                V x0 = V.Load(x + d), x1 = V.Load(x + HS + d), x2 = V.Load(x + 2 * HS + d), x3 = V.Load(x + 3 * HS + d);
                for (int j = 0; j < n; j++)
                {
                    float* row = r + j * HS + d;
                    V a = V.FusedMultiplyAdd(x0, V.Create(c[j]), V.Load(row));
                    a = V.FusedMultiplyAdd(x1, V.Create(c1[j]), a);
                    a = V.FusedMultiplyAdd(x2, V.Create(c2[j]), a);
                    V.FusedMultiplyAdd(x3, V.Create(c3[j]), a).Store(row);
                }
            }
            for (; d < HS; d++)
                for (int j = 0; j < n; j++)
                    r[j * HS + d] += c[j] * x[d] + c1[j] * x[HS + d] + c2[j] * x[2 * HS + d] + c3[j] * x[3 * HS + d];
        }
    }

    private sealed class BackwardScratch(int T, int HS)
    {
        public readonly int[] Valid = new int[T];
        public readonly float[] KeysTransposed = new float[HS * T], Keys = new float[T * HS], ValuesTransposed = new float[HS * T];
        public readonly float[] DKeys = new float[T * HS], DValues = new float[T * HS];
        public readonly float[] P = new float[QueryBlock * T], DP = new float[QueryBlock * T], DS = new float[QueryBlock * T], Weights = new float[QueryBlock * T];
        public readonly float[] Queries = new float[QueryBlock * HS], ScaledQueries = new float[QueryBlock * HS], DOutputs = new float[QueryBlock * HS];
        public readonly float[] Factors = new float[T];
    }

    private sealed class Scratch(int T, int HS)
    {
        public readonly int[] Valid = new int[T];
        public readonly float[] KeysTransposed = new float[HS * T];
        public readonly float[] Values = new float[T * HS];
        public readonly float[] Scores = new float[QueryBlock * T];
        public readonly float[] Queries = new float[QueryBlock * HS];
        public readonly float[] Factors = new float[T];
    }
}
