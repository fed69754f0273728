// Flash attention on tensor cores (FlashAttention-2's scheme), forward and backward, for fp16 and bf16: the attention of
// AttentionKernels (same layouts, key mask or packed sequences, dropout on the probabilities, the softmax sum of the
// undropped ones) with Q, K, V (and dO) rounded to the format, every product summed in fp32 by mma.sync.
//
// Shapes: words (rows, 3C/2) are qkv's values two to a word (ToWords of (rows, 3C)): Q, K, V of head h at words
// h·HS/2, C/2 + h·HS/2 and C + h·HS/2 of a row; out (rows, C) fp32. HS is 32, 64 or 128 (a specialization).
// Scheme: a block of 4 warps per (b, h, 64 queries); warp w holds queries 16w…16w+15 of the tile as mma A fragments
// (from global memory, once). Per tile of 64 keys the block stages K and V (64 rows × HS/2 words each) in swizzled
// shared memory by cp.async; each warp computes its 16×64 scores S = Q·Kᵀ (8 n-tiles of 8 keys, HS/16 k-steps, B
// fragments by ldmatrix), masks and scales them, updates its rows' running max and sum (each row's values sit in the 4
// lanes of a quad: two shuffles), rescales its output, and adds P·V: P's accumulator fragments of two adjacent key
// tiles are, rounded, the A fragment of one 16-key step (no data movement), V's B fragments come by ldmatrix.trans.
// The 64×T score matrix never exists; the output is divided by the sum at the end (a query with no key gets zeros).
// Backward (FlashAttention-2's, deterministic: each gradient element is summed by one warp): a block per 64 queries
// repeats the forward's sweep for its rows' statistics and output, then per key tile dP = dO·Vᵀ, dS = P∘(f·dP − D)·scale
// and dQ += dS·K, and keeps (max, 1/sum, D) per query; a block per 64 keys then sweeps the query tiles: Sᵀ = K·Qᵀ,
// dPᵀ = V·dOᵀ, Pᵀ from the statistics, dV += (f∘Pᵀ)·dO, dK += dSᵀ·Q. dO comes as words too.
// Inline PTX runs only on CUDA; elsewhere TensorCoreOps moves the same data by copies and shuffles.
// History: v1 forward, one stage of K/V at a time; v2 (this version) the backward.
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using static Engine.Kernels.ReducedPrecisionGemmKernels;

namespace Engine.Kernels;

internal static class FlashAttentionKernels
{
    public const int QueryTile = 64, KeyTile = 64, WarpsPerGroup = 4, MaxHeadSize = 128;
    private const int KeyTiles8 = KeyTile / 8, MaxSteps = MaxHeadSize / 16, MaxDimensionTiles = MaxHeadSize / 8;

    public static bool Supports(int headSize) => headSize is 32 or 64 or 128;

    /// <summary>K's tile then V's, KeyTile rows × HS/2 words each, and 4 words of slack to align them on 16 bytes.</summary>
    public static int SharedWords(int headSize) => 2 * KeyTile * headSize / 2 + 4;

    public static KernelConfig Config(AttentionKernels.Shape s, int headSize, int warpSize) =>
        new(new Index2D(s.B * s.NH, (s.T + QueryTile - 1) / QueryTile), new Index2D(WarpsPerGroup * warpSize, 1),
            SharedMemoryConfig.RequestDynamic<uint>(SharedWords(headSize)));

    /// <summary>
    /// Where word 4·chunk of a staged row of <paramref name="chunks"/> 16-byte chunks lives: the chunk XOR-ed with bits of the
    /// row so that the 8 consecutive rows one ldmatrix matrix reads at one chunk (plain or transposed) fall in 32 distinct
    /// banks — rows of 128 bytes or more by the row's low 3 bits, rows of 64 bytes (two to a bank line) by bits 1–2.
    /// </summary>
    public static int Swizzled(int row, int chunk, int chunks) =>
        row * chunks * 4 + ((chunk ^ (chunks >= 8 ? row & 7 : (row >> 1) & (chunks - 1))) << 2);

    public static void ForwardKernel(ArrayView<float> output, ArrayView<uint> words, ArrayView<int> indices, AttentionKernels.Shape s, long wordsAddress,
        SpecializedValue<int> headSize, SpecializedValue<int> format)
    {
        int HS = headSize.Value, C = s.NH * HS, chunks = HS / 8;
        var tiles = SharedMemory.GetDynamic<uint>();
        uint sharedBase = TensorCoreOps.SharedBase(tiles, SharedWords(HS) - 1);
        int lane = Warp.LaneIdx, inGroup = lane & 3;
        int b = Grid.IdxX / s.NH, h = Grid.IdxX % s.NH, count = s.Count(indices, b);
        if (Grid.IdxY * QueryTile >= count) return; // the whole block: no query of this tile exists
        int top = Grid.IdxY * QueryTile + Group.IdxX / Warp.WarpSize * 16 + (lane >> 2), bottom = top + 8; // this lane's two query rows
        var o = LocalMemory.Allocate<ulong>(2 * MaxDimensionTiles);
        var row = Attend(tiles, sharedBase, words, wordsAddress, indices, s, b, h, top, count, HS, format.Value, o);
        for (int n = 0; n < chunks; n++)
        {
            int dimension = h * HS + 8 * n + 2 * inGroup;
            if (top < count) StorePair(output, s.Row(indices, b, top) * C + dimension, o[2 * n], row.InverseTop);
            if (bottom < count) StorePair(output, s.Row(indices, b, bottom) * C + dimension, o[2 * n + 1], row.InverseBottom);
        }
    }

    /// <summary>A lane's two query rows after <see cref="Attend"/>: each row's max of the scaled scores and 1 / its sum (0 for a row with no key).</summary>
    private readonly record struct RowStatistics(float MaxTop, float MaxBottom, float InverseTop, float InverseBottom);

    /// <summary>
    /// The forward's sweep over the keys for the warp's 16 queries (rows <paramref name="top"/> and top + 8 of this lane):
    /// <paramref name="o"/> receives Σ_j p_j·f_j·v_j unnormalized (pairs: row g then row g+8 per 8 dimensions), and the
    /// rows' statistics are returned. Every thread of the block calls it (barriers).
    /// </summary>
    private static RowStatistics Attend(ArrayView<uint> tiles, uint sharedBase, ArrayView<uint> words, long wordsAddress, ArrayView<int> indices,
        AttentionKernels.Shape s, int b, int h, int top, int count, int HS, int format, ArrayView<ulong> o)
    {
        int C = s.NH * HS, rowWords = 3 * C / 2, headWords = HS / 2, chunks = HS / 8, steps = HS / 16, vTile = KeyTile * headWords;
        int lane = Warp.LaneIdx, inGroup = lane & 3, bottom = top + 8;
        long topQuery = ((long)b * s.NH + h) * s.T + top, bottomQuery = topQuery + 8;
        var q = LocalMemory.Allocate<ulong>(2 * MaxSteps);
        LoadFragments(words, RowStart(s, indices, b, top, count, rowWords), RowStart(s, indices, b, bottom, count, rowWords), h * headWords, steps, q);
        for (int n = 0; n < 2 * chunks; n++) o[n] = 0;
        var scores = LocalMemory.Allocate<ulong>(2 * KeyTiles8);
        var fragments = LocalMemory.Allocate<ulong>(2 * KeyTile / 16);
        float maxTop = float.NegativeInfinity, maxBottom = float.NegativeInfinity, sumTop = 0f, sumBottom = 0f;
        for (int keyBase = 0; keyBase < count; keyBase += KeyTile)
        {
            StageTiles(tiles, sharedBase, words, wordsAddress, rowWords, C / 2 + h * headWords, C + h * headWords, words, wordsAddress, rowWords,
                s, indices, b, keyBase, count, chunks, keysOnly: true);
            // S = Q·Kᵀ for the warp's 16 rows and the tile's 64 keys; masked, scaled; the tile's row maxima.
            float tileMaxTop = float.NegativeInfinity, tileMaxBottom = float.NegativeInfinity;
            for (int j = 0; j < KeyTiles8; j++)
            {
                TileProduct(tiles, sharedBase, 0, q, steps, chunks, j, format, out ulong sTop, out ulong sBottom);
                int key = keyBase + 8 * j + 2 * inGroup;
                bool first = key < count && s.IsKey(indices, b, key), second = key + 1 < count && s.IsKey(indices, b, key + 1);
                float s0 = first ? TensorCoreOps.Low(sTop) * s.Scale : float.NegativeInfinity, s1 = second ? TensorCoreOps.High(sTop) * s.Scale : float.NegativeInfinity;
                float s2 = first ? TensorCoreOps.Low(sBottom) * s.Scale : float.NegativeInfinity, s3 = second ? TensorCoreOps.High(sBottom) * s.Scale : float.NegativeInfinity;
                scores[2 * j] = TensorCoreOps.Pair(s0, s1);
                scores[2 * j + 1] = TensorCoreOps.Pair(s2, s3);
                tileMaxTop = XMath.Max(tileMaxTop, XMath.Max(s0, s1));
                tileMaxBottom = XMath.Max(tileMaxBottom, XMath.Max(s2, s3));
            }
            float newTop = XMath.Max(maxTop, QuadMax(tileMaxTop)), newBottom = XMath.Max(maxBottom, QuadMax(tileMaxBottom));
            float scaleTop = Rescale(maxTop, newTop), scaleBottom = Rescale(maxBottom, newBottom);
            (maxTop, maxBottom) = (newTop, newBottom);
            sumTop *= scaleTop;
            sumBottom *= scaleBottom;
            for (int n = 0; n < chunks; n++)
            {
                o[2 * n] = TensorCoreOps.Pair(TensorCoreOps.Low(o[2 * n]) * scaleTop, TensorCoreOps.High(o[2 * n]) * scaleTop);
                o[2 * n + 1] = TensorCoreOps.Pair(TensorCoreOps.Low(o[2 * n + 1]) * scaleBottom, TensorCoreOps.High(o[2 * n + 1]) * scaleBottom);
            }
            // O += P·V, 16 keys a step: the P fragments of key tiles 2k and 2k+1 are the A fragment of step k.
            for (int j = 0; j < KeyTiles8; j++)
            {
                int key = keyBase + 8 * j + 2 * inGroup;
                float p0 = Probability(TensorCoreOps.Low(scores[2 * j]), maxTop), p1 = Probability(TensorCoreOps.High(scores[2 * j]), maxTop);
                float p2 = Probability(TensorCoreOps.Low(scores[2 * j + 1]), maxBottom), p3 = Probability(TensorCoreOps.High(scores[2 * j + 1]), maxBottom);
                sumTop += p0 + p1;
                sumBottom += p2 + p3;
                // Dropout scales the output's terms, not the sum (as AttentionKernels); factors of keys past the sequence are never used.
                Place(fragments, j, Pack(p0 * s.Factor(topQuery, key), p1 * s.Factor(topQuery, key + 1), format),
                    Pack(p2 * s.Factor(bottomQuery, key), p3 * s.Factor(bottomQuery, key + 1), format));
            }
            AccumulateTransposed(tiles, sharedBase, vTile, fragments, o, chunks, format);
        }
        return new RowStatistics(maxTop, maxBottom, Inverse(QuadSum(sumTop)), Inverse(QuadSum(sumBottom)));
    }

    /// <summary>
    /// dQ of the warp's 16 queries, and each query's statistics (max, 1/sum, D = dO·o) for <see cref="KeyBackwardKernel"/>:
    /// the forward's sweep again for the statistics and o, then per key tile dP = dO·Vᵀ (mma, V's rows as B), dS = P∘(f·dP −
    /// D)·scale and dQ += dS·K (dS's accumulators as A fragments, K by ldmatrix.trans). dOutput's values come as words too
    /// (<paramref name="dWords"/>, (rows, C/2)).
    /// </summary>
    public static void QueryBackwardKernel(ArrayView<float> dQkv, ArrayView<float> statistics, ArrayView<float> dOutput, ArrayView<uint> words, ArrayView<uint> dWords,
        ArrayView<int> indices, AttentionKernels.Shape s, long wordsAddress, SpecializedValue<int> headSize, SpecializedValue<int> format)
    {
        int HS = headSize.Value, C = s.NH * HS, rowWords = 3 * C / 2, headWords = HS / 2, chunks = HS / 8, steps = HS / 16;
        var tiles = SharedMemory.GetDynamic<uint>();
        uint sharedBase = TensorCoreOps.SharedBase(tiles, SharedWords(HS) - 1);
        int lane = Warp.LaneIdx, inGroup = lane & 3;
        int b = Grid.IdxX / s.NH, h = Grid.IdxX % s.NH, count = s.Count(indices, b);
        if (Grid.IdxY * QueryTile >= count) return;
        int top = Grid.IdxY * QueryTile + Group.IdxX / Warp.WarpSize * 16 + (lane >> 2), bottom = top + 8;
        long topQuery = ((long)b * s.NH + h) * s.T + top, bottomQuery = topQuery + 8;
        var o = LocalMemory.Allocate<ulong>(2 * MaxDimensionTiles);
        var row = Attend(tiles, sharedBase, words, wordsAddress, indices, s, b, h, top, count, HS, format.Value, o);
        // D = Σ dO·o over the head's dimensions, o normalized, dO in fp32.
        float dTop = 0f, dBottom = 0f;
        long outTop = top < count ? s.Row(indices, b, top) * C + h * HS : -1, outBottom = bottom < count ? s.Row(indices, b, bottom) * C + h * HS : -1;
        for (int n = 0; n < chunks; n++)
        {
            int dimension = 8 * n + 2 * inGroup;
            if (outTop >= 0) dTop += (dOutput[outTop + dimension] * TensorCoreOps.Low(o[2 * n]) + dOutput[outTop + dimension + 1] * TensorCoreOps.High(o[2 * n])) * row.InverseTop;
            if (outBottom >= 0) dBottom += (dOutput[outBottom + dimension] * TensorCoreOps.Low(o[2 * n + 1]) + dOutput[outBottom + dimension + 1] * TensorCoreOps.High(o[2 * n + 1])) * row.InverseBottom;
        }
        dTop = QuadSum(dTop);
        dBottom = QuadSum(dBottom);

        var g = LocalMemory.Allocate<ulong>(2 * MaxSteps);
        LoadFragments(dWords, RowStart(s, indices, b, top, count, C / 2), RowStart(s, indices, b, bottom, count, C / 2), h * headWords, steps, g);
        var q = LocalMemory.Allocate<ulong>(2 * MaxSteps);
        LoadFragments(words, RowStart(s, indices, b, top, count, rowWords), RowStart(s, indices, b, bottom, count, rowWords), h * headWords, steps, q);
        var dq = LocalMemory.Allocate<ulong>(2 * MaxDimensionTiles);
        for (int n = 0; n < 2 * chunks; n++) dq[n] = 0;
        var fragments = LocalMemory.Allocate<ulong>(2 * KeyTile / 16);
        int vTile = KeyTile * headWords;
        for (int keyBase = 0; keyBase < count; keyBase += KeyTile)
        {
            StageTiles(tiles, sharedBase, words, wordsAddress, rowWords, C / 2 + h * headWords, C + h * headWords, words, wordsAddress, rowWords,
                s, indices, b, keyBase, count, chunks, keysOnly: true);
            for (int j = 0; j < KeyTiles8; j++)
            {
                TileProduct(tiles, sharedBase, 0, q, steps, chunks, j, format.Value, out ulong sTop, out ulong sBottom);
                TileProduct(tiles, sharedBase, vTile, g, steps, chunks, j, format.Value, out ulong pTop, out ulong pBottom);
                int key = keyBase + 8 * j + 2 * inGroup;
                bool first = key < count && s.IsKey(indices, b, key), second = key + 1 < count && s.IsKey(indices, b, key + 1);
                float ds0 = ScoreGradient(first, TensorCoreOps.Low(sTop), TensorCoreOps.Low(pTop), row.MaxTop, row.InverseTop, dTop, s.Factor(topQuery, key), s.Scale);
                float ds1 = ScoreGradient(second, TensorCoreOps.High(sTop), TensorCoreOps.High(pTop), row.MaxTop, row.InverseTop, dTop, s.Factor(topQuery, key + 1), s.Scale);
                float ds2 = ScoreGradient(first, TensorCoreOps.Low(sBottom), TensorCoreOps.Low(pBottom), row.MaxBottom, row.InverseBottom, dBottom, s.Factor(bottomQuery, key), s.Scale);
                float ds3 = ScoreGradient(second, TensorCoreOps.High(sBottom), TensorCoreOps.High(pBottom), row.MaxBottom, row.InverseBottom, dBottom, s.Factor(bottomQuery, key + 1), s.Scale);
                Place(fragments, j, Pack(ds0, ds1, format.Value), Pack(ds2, ds3, format.Value));
            }
            AccumulateTransposed(tiles, sharedBase, 0, fragments, dq, chunks, format.Value);
        }
        for (int n = 0; n < chunks; n++)
        {
            int dimension = h * HS + 8 * n + 2 * inGroup;
            if (top < count) StorePair(dQkv, s.Row(indices, b, top) * 3 * C + dimension, dq[2 * n], 1f);
            if (bottom < count) StorePair(dQkv, s.Row(indices, b, bottom) * 3 * C + dimension, dq[2 * n + 1], 1f);
        }
        if (inGroup == 0)
        {
            if (top < count) StoreStatistics(statistics, topQuery, row.MaxTop, row.InverseTop, dTop);
            if (bottom < count) StoreStatistics(statistics, bottomQuery, row.MaxBottom, row.InverseBottom, dBottom);
        }
    }

    /// <summary>
    /// dK and dV of a block's 64 keys (16 per warp, as mma rows): per tile of 64 queries, staged Q and dO, Sᵀ = K·Qᵀ and
    /// dPᵀ = V·dOᵀ (the queries' rows as B), Pᵀ from the queries' statistics, dV += (f∘Pᵀ)·dO and dK += dSᵀ·Q with the
    /// accumulators as A fragments and dO, Q by ldmatrix.trans. Masked keys get zero gradients.
    /// </summary>
    public static void KeyBackwardKernel(ArrayView<float> dQkv, ArrayView<float> statistics, ArrayView<uint> words, ArrayView<uint> dWords,
        ArrayView<int> indices, AttentionKernels.Shape s, long wordsAddress, long dWordsAddress, SpecializedValue<int> headSize, SpecializedValue<int> format)
    {
        int HS = headSize.Value, C = s.NH * HS, rowWords = 3 * C / 2, headWords = HS / 2, chunks = HS / 8, steps = HS / 16;
        var tiles = SharedMemory.GetDynamic<uint>();
        uint sharedBase = TensorCoreOps.SharedBase(tiles, SharedWords(HS) - 1);
        int lane = Warp.LaneIdx, inGroup = lane & 3;
        int b = Grid.IdxX / s.NH, h = Grid.IdxX % s.NH, count = s.Count(indices, b);
        if (Grid.IdxY * KeyTile >= count) return;
        int top = Grid.IdxY * KeyTile + Group.IdxX / Warp.WarpSize * 16 + (lane >> 2), bottom = top + 8; // this lane's two keys
        bool topIsKey = top < count && s.IsKey(indices, b, top), bottomIsKey = bottom < count && s.IsKey(indices, b, bottom);
        long firstQuery = ((long)b * s.NH + h) * s.T;
        var k = LocalMemory.Allocate<ulong>(2 * MaxSteps);
        LoadFragments(words, RowStart(s, indices, b, top, count, rowWords), RowStart(s, indices, b, bottom, count, rowWords), C / 2 + h * headWords, steps, k);
        var v = LocalMemory.Allocate<ulong>(2 * MaxSteps);
        LoadFragments(words, RowStart(s, indices, b, top, count, rowWords), RowStart(s, indices, b, bottom, count, rowWords), C + h * headWords, steps, v);
        var dk = LocalMemory.Allocate<ulong>(2 * MaxDimensionTiles);
        var dv = LocalMemory.Allocate<ulong>(2 * MaxDimensionTiles);
        for (int n = 0; n < 2 * chunks; n++) dk[n] = dv[n] = 0;
        var dropped = LocalMemory.Allocate<ulong>(2 * QueryTile / 16);
        var gradients = LocalMemory.Allocate<ulong>(2 * QueryTile / 16);
        int gTile = QueryTile * headWords;
        for (int queryBase = 0; queryBase < count; queryBase += QueryTile)
        {
            StageTiles(tiles, sharedBase, words, wordsAddress, rowWords, h * headWords, -1, dWords, dWordsAddress, C / 2,
                s, indices, b, queryBase, count, chunks, keysOnly: false);
            for (int j = 0; j < QueryTile / 8; j++)
            {
                TileProduct(tiles, sharedBase, 0, k, steps, chunks, j, format.Value, out ulong sTop, out ulong sBottom);
                TileProduct(tiles, sharedBase, gTile, v, steps, chunks, j, format.Value, out ulong pTop, out ulong pBottom);
                int query = queryBase + 8 * j + 2 * inGroup;
                // Columns are queries: each has its statistics; rows are keys.
                float m0 = 0f, i0 = 0f, d0 = 0f, m1 = 0f, i1 = 0f, d1 = 0f;
                if (query < count) (m0, i0, d0) = (statistics[3 * (firstQuery + query)], statistics[3 * (firstQuery + query) + 1], statistics[3 * (firstQuery + query) + 2]);
                if (query + 1 < count) (m1, i1, d1) = (statistics[3 * (firstQuery + query + 1)], statistics[3 * (firstQuery + query + 1) + 1], statistics[3 * (firstQuery + query + 1) + 2]);
                float f00 = s.Factor(firstQuery + query, top), f01 = s.Factor(firstQuery + query + 1, top), f10 = s.Factor(firstQuery + query, bottom), f11 = s.Factor(firstQuery + query + 1, bottom);
                float p00 = topIsKey && query < count ? XMath.Exp(TensorCoreOps.Low(sTop) * s.Scale - m0) * i0 : 0f;
                float p01 = topIsKey && query + 1 < count ? XMath.Exp(TensorCoreOps.High(sTop) * s.Scale - m1) * i1 : 0f;
                float p10 = bottomIsKey && query < count ? XMath.Exp(TensorCoreOps.Low(sBottom) * s.Scale - m0) * i0 : 0f;
                float p11 = bottomIsKey && query + 1 < count ? XMath.Exp(TensorCoreOps.High(sBottom) * s.Scale - m1) * i1 : 0f;
                Place(dropped, j, Pack(p00 * f00, p01 * f01, format.Value), Pack(p10 * f10, p11 * f11, format.Value));
                Place(gradients, j, Pack(p00 * (f00 * TensorCoreOps.Low(pTop) - d0) * s.Scale, p01 * (f01 * TensorCoreOps.High(pTop) - d1) * s.Scale, format.Value),
                    Pack(p10 * (f10 * TensorCoreOps.Low(pBottom) - d0) * s.Scale, p11 * (f11 * TensorCoreOps.High(pBottom) - d1) * s.Scale, format.Value));
            }
            AccumulateTransposed(tiles, sharedBase, gTile, dropped, dv, chunks, format.Value);
            AccumulateTransposed(tiles, sharedBase, 0, gradients, dk, chunks, format.Value);
        }
        for (int n = 0; n < chunks; n++)
        {
            int dimension = h * HS + 8 * n + 2 * inGroup;
            if (top < count)
            {
                long row = s.Row(indices, b, top) * 3 * C + dimension;
                StorePair(dQkv, row + C, dk[2 * n], topIsKey ? 1f : 0f);
                StorePair(dQkv, row + 2 * C, dv[2 * n], topIsKey ? 1f : 0f);
            }
            if (bottom < count)
            {
                long row = s.Row(indices, b, bottom) * 3 * C + dimension;
                StorePair(dQkv, row + C, dk[2 * n + 1], bottomIsKey ? 1f : 0f);
                StorePair(dQkv, row + 2 * C, dv[2 * n + 1], bottomIsKey ? 1f : 0f);
            }
        }
    }

    /// <summary>∂L/∂s of one score: p·(f·dp − D)·scale, p recomputed from the score and its row's statistics; 0 for a masked key.</summary>
    private static float ScoreGradient(bool isKey, float score, float dp, float max, float inverse, float d, float factor, float scale) =>
        isKey ? XMath.Exp(score * scale - max) * inverse * (factor * dp - d) * scale : 0f;

    /// <summary>The word offset of sequence b's row <paramref name="i"/> in a words matrix of <paramref name="rowWords"/>, −1 past the sequence.</summary>
    private static long RowStart(AttentionKernels.Shape s, ArrayView<int> indices, int b, int i, int count, int rowWords) =>
        i < count ? s.Row(indices, b, i) * rowWords : -1;

    /// <summary>
    /// The mma A fragments of the warp's 16 rows (this lane's rows start at words <paramref name="top"/> and
    /// <paramref name="bottom"/>, −1 for none) over <paramref name="steps"/> steps of 16 values from word
    /// <paramref name="offset"/>: (a0, a1) at word t of the step, (a2, a3) at word 4+t.
    /// </summary>
    private static void LoadFragments(ArrayView<uint> words, long top, long bottom, int offset, int steps, ArrayView<ulong> into)
    {
        int inGroup = Warp.LaneIdx & 3;
        for (int step = 0; step < steps; step++)
        {
            int word = offset + 8 * step + inGroup;
            into[2 * step] = TensorCoreOps.Pair(Word(words, top, word), Word(words, bottom, word));
            into[2 * step + 1] = TensorCoreOps.Pair(Word(words, top, word + 4), Word(words, bottom, word + 4));
        }
    }

    /// <summary>
    /// Stages rows first…first+63 of a sequence into the two tiles: from <paramref name="source"/> at word
    /// <paramref name="firstColumn"/> into the first tile, and into the second from the same rows at word
    /// <paramref name="secondColumn"/> — or, when it is −1, from <paramref name="second"/>'s rows (of
    /// <paramref name="secondRowWords"/>) at word <paramref name="firstColumn"/>; zeros for rows past the sequence and,
    /// with <paramref name="keysOnly"/>, for masked keys. Barriers before (the tiles' last readers are done) and after
    /// (every copy has landed).
    /// </summary>
    private static void StageTiles(ArrayView<uint> tiles, uint sharedBase, ArrayView<uint> source, long sourceAddress, int rowWords, int firstColumn,
        int secondColumn, ArrayView<uint> second, long secondAddress, int secondRowWords, AttentionKernels.Shape s, ArrayView<int> indices, int b, int first,
        int count, int chunks, bool keysOnly)
    {
        Group.Barrier();
        int tileWords = KeyTile * chunks * 4;
        for (int e = Group.IdxX; e < KeyTile * chunks; e += WarpsPerGroup * Warp.WarpSize)
        {
            int row = e / chunks, chunk = e % chunks, index = first + row;
            bool valid = index < count && (!keysOnly || s.IsKey(indices, b, index));
            long sequenceRow = s.Row(indices, b, index < count ? index : count - 1);
            int destination = Swizzled(row, chunk, chunks);
            TensorCoreOps.CopyChunk(tiles, sharedBase, destination, source, sourceAddress, sequenceRow * rowWords + firstColumn + 4 * chunk, valid);
            if (secondColumn >= 0)
                TensorCoreOps.CopyChunk(tiles, sharedBase, tileWords + destination, source, sourceAddress, sequenceRow * rowWords + secondColumn + 4 * chunk, valid);
            else
                TensorCoreOps.CopyChunk(tiles, sharedBase, tileWords + destination, second, secondAddress, sequenceRow * secondRowWords + 4 * chunk + firstColumn, valid);
        }
        TensorCoreOps.CommitCopies();
        TensorCoreOps.AwaitCopies();
        Group.Barrier();
    }

    /// <summary>
    /// The warp's 16 rows (A fragments <paramref name="a"/>) times rows 8j…8j+7 of the staged tile at word
    /// <paramref name="tile"/> (its rows as B's columns, by ldmatrix): one 16×8 product over <paramref name="steps"/> steps.
    /// </summary>
    private static void TileProduct(ArrayView<uint> tiles, uint sharedBase, int tile, ArrayView<ulong> a, int steps, int chunks, int j, int format,
        out ulong top, out ulong bottom)
    {
        int lane = Warp.LaneIdx;
        ulong accumulatorTop = 0, accumulatorBottom = 0;
        for (int step = 0; step < steps; step++)
        {
            ulong fragment = TensorCoreOps.LoadMatrices(tiles, sharedBase, tile + Swizzled(8 * j + (lane & 7), 2 * step + ((lane >> 3) & 1), chunks));
            TensorCoreOps.Mma(ref accumulatorTop, ref accumulatorBottom, a[2 * step], a[2 * step + 1], fragment, format);
        }
        (top, bottom) = (accumulatorTop, accumulatorBottom);
    }

    /// <summary>The words of 8-column tile j of a 16×64 product's values (rows g, g+8) into its place among the A fragments of four 16-wide steps.</summary>
    private static void Place(ArrayView<ulong> fragments, int j, uint topWord, uint bottomWord) =>
        fragments[2 * (j >> 1) + (j & 1)] = TensorCoreOps.Pair(topWord, bottomWord);

    /// <summary>
    /// acc (16 × HS, pairs per 8 columns) += A (16 × 64, four steps of fragments) · the staged tile at word
    /// <paramref name="tile"/> (64 rows × HS), its fragments transposed by ldmatrix.trans.
    /// </summary>
    private static void AccumulateTransposed(ArrayView<uint> tiles, uint sharedBase, int tile, ArrayView<ulong> fragments, ArrayView<ulong> accumulators, int chunks, int format)
    {
        int lane = Warp.LaneIdx;
        for (int step = 0; step < KeyTile / 16; step++)
            for (int n = 0; n < chunks; n++)
            {
                ulong fragment = TensorCoreOps.LoadMatricesTransposed(tiles, sharedBase, tile + Swizzled(16 * step + (lane & 15), n, chunks));
                ulong top = accumulators[2 * n], bottom = accumulators[2 * n + 1];
                TensorCoreOps.Mma(ref top, ref bottom, fragments[2 * step], fragments[2 * step + 1], fragment, format);
                accumulators[2 * n] = top;
                accumulators[2 * n + 1] = bottom;
            }
    }

    /// <summary>A pair of floats times <paramref name="factor"/> into destination[index], index + 1.</summary>
    private static void StorePair(ArrayView<float> destination, long index, ulong pair, float factor)
    {
        destination[index] = TensorCoreOps.Low(pair) * factor;
        destination[index + 1] = TensorCoreOps.High(pair) * factor;
    }

    private static void StoreStatistics(ArrayView<float> statistics, long query, float max, float inverse, float d)
    {
        statistics[3 * query] = max;
        statistics[3 * query + 1] = inverse;
        statistics[3 * query + 2] = d;
    }

    /// <summary>words[row + word], or 0 for a row that does not exist (−1).</summary>
    private static uint Word(ArrayView<uint> words, long row, int word) => row < 0 ? 0u : words[row + word];

    /// <summary>exp(score − max), 0 for a masked key (−∞) or while no key has been seen.</summary>
    private static float Probability(float score, float max) => score == float.NegativeInfinity ? 0f : XMath.Exp(score - max);

    /// <summary>What the sums so far are multiplied by when the running max moves from <paramref name="old"/> to <paramref name="now"/>.</summary>
    private static float Rescale(float old, float now) => now == float.NegativeInfinity ? 1f : XMath.Exp(old - now);

    private static float Inverse(float sum) => sum > 0f ? 1f / sum : 0f;

    /// <summary>The max over the 4 lanes of a quad (one mma row's values).</summary>
    private static float QuadMax(float value)
    {
        value = XMath.Max(value, Warp.ShuffleXor(value, 1));
        return XMath.Max(value, Warp.ShuffleXor(value, 2));
    }

    private static float QuadSum(float value)
    {
        value += Warp.ShuffleXor(value, 1);
        return value + Warp.ShuffleXor(value, 2);
    }
}
