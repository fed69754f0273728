// Flash attention forward on tensor cores (FlashAttention-2's scheme) for fp16 and bf16: the attention of
// AttentionKernels (same layouts, key mask or packed sequences, dropout on the probabilities, the softmax sum of the
// undropped ones) with Q, K and V rounded to the format, the scores and the output summed in fp32 by mma.sync.
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
// The backward is the fp32 kernels' (AttentionKernels), recomputing the probabilities from the fp32 qkv.
// Inline PTX runs only on CUDA; elsewhere TensorCoreOps moves the same data by copies and shuffles.
// History: v1 (this version) forward, one stage of K/V at a time.
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
        int HS = headSize.Value, C = s.NH * HS, rowWords = 3 * C / 2, headWords = HS / 2, chunks = HS / 8, steps = HS / 16;
        var tiles = SharedMemory.GetDynamic<uint>();
        uint sharedBase = TensorCoreOps.SharedBase(tiles, SharedWords(HS) - 1);
        int thread = Group.IdxX, warp = thread / Warp.WarpSize, lane = Warp.LaneIdx, group = lane >> 2, inGroup = lane & 3;
        int b = Grid.IdxX / s.NH, h = Grid.IdxX % s.NH, count = s.Count(indices, b);
        if (Grid.IdxY * QueryTile >= count) return; // the whole block: no query of this tile exists
        int top = Grid.IdxY * QueryTile + warp * 16 + group, bottom = top + 8; // this lane's two query rows
        long topQuery = ((long)b * s.NH + h) * s.T + top, bottomQuery = topQuery + 8;

        // Q's A fragments, per k-step of 16 dimensions: (a0, a1) rows g, g+8 at word t, (a2, a3) at word 4+t.
        var q = LocalMemory.Allocate<ulong>(2 * MaxSteps);
        long qTop = top < count ? s.Row(indices, b, top) * rowWords + h * headWords : -1, qBottom = bottom < count ? s.Row(indices, b, bottom) * rowWords + h * headWords : -1;
        for (int step = 0; step < steps; step++)
        {
            int word = 8 * step + inGroup;
            q[2 * step] = TensorCoreOps.Pair(Word(words, qTop, word), Word(words, qBottom, word));
            q[2 * step + 1] = TensorCoreOps.Pair(Word(words, qTop, word + 4), Word(words, qBottom, word + 4));
        }
        var o = LocalMemory.Allocate<ulong>(2 * MaxDimensionTiles);
        for (int n = 0; n < 2 * MaxDimensionTiles; n++) o[n] = 0;
        var scores = LocalMemory.Allocate<ulong>(2 * KeyTiles8);
        float maxTop = float.NegativeInfinity, maxBottom = float.NegativeInfinity, sumTop = 0f, sumBottom = 0f;
        int vTile = KeyTile * headWords;

        for (int keyBase = 0; keyBase < count; keyBase += KeyTile)
        {
            Group.Barrier(); // every warp is done with the previous tile
            for (int e = thread; e < KeyTile * chunks; e += WarpsPerGroup * Warp.WarpSize)
            {
                int row = e / chunks, chunk = e % chunks, key = keyBase + row;
                bool valid = key < count && s.IsKey(indices, b, key);
                long source = s.Row(indices, b, key < count ? key : count - 1) * rowWords + C / 2 + h * headWords + 4 * chunk;
                TensorCoreOps.CopyChunk(tiles, sharedBase, Swizzled(row, chunk, chunks), words, wordsAddress, source, valid);
                TensorCoreOps.CopyChunk(tiles, sharedBase, vTile + Swizzled(row, chunk, chunks), words, wordsAddress, source + C / 2, valid);
            }
            TensorCoreOps.CommitCopies();
            TensorCoreOps.AwaitCopies();
            Group.Barrier();

            // S = Q·Kᵀ for the warp's 16 rows and the tile's 64 keys; masked, scaled; the tile's row maxima.
            float tileMaxTop = float.NegativeInfinity, tileMaxBottom = float.NegativeInfinity;
            for (int j = 0; j < KeyTiles8; j++)
            {
                ulong sTop = 0, sBottom = 0;
                for (int step = 0; step < steps; step++)
                {
                    ulong kFragment = TensorCoreOps.LoadMatrices(tiles, sharedBase, Swizzled(8 * j + (lane & 7), 2 * step + ((lane >> 3) & 1), chunks));
                    TensorCoreOps.Mma(ref sTop, ref sBottom, q[2 * step], q[2 * step + 1], kFragment, format.Value);
                }
                int key = keyBase + 8 * j + 2 * inGroup;
                bool first = key < count && s.IsKey(indices, b, key), second = key + 1 < count && s.IsKey(indices, b, key + 1);
                float s0 = first ? TensorCoreOps.Low(sTop) * s.Scale : float.NegativeInfinity, s1 = second ? TensorCoreOps.High(sTop) * s.Scale : float.NegativeInfinity;
                float s2 = first ? TensorCoreOps.Low(sBottom) * s.Scale : float.NegativeInfinity, s3 = second ? TensorCoreOps.High(sBottom) * s.Scale : float.NegativeInfinity;
                scores[2 * j] = TensorCoreOps.Pair(s0, s1);
                scores[2 * j + 1] = TensorCoreOps.Pair(s2, s3);
                tileMaxTop = XMath.Max(tileMaxTop, XMath.Max(s0, s1));
                tileMaxBottom = XMath.Max(tileMaxBottom, XMath.Max(s2, s3));
            }
            tileMaxTop = QuadMax(tileMaxTop);
            tileMaxBottom = QuadMax(tileMaxBottom);
            float newTop = XMath.Max(maxTop, tileMaxTop), newBottom = XMath.Max(maxBottom, tileMaxBottom);
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
            for (int step = 0; step < KeyTile / 16; step++)
            {
                ulong a01 = 0, a23 = 0;
                for (int half = 0; half < 2; half++)
                {
                    int j = 2 * step + half, key = keyBase + 8 * j + 2 * inGroup;
                    float p0 = Probability(TensorCoreOps.Low(scores[2 * j]), maxTop), p1 = Probability(TensorCoreOps.High(scores[2 * j]), maxTop);
                    float p2 = Probability(TensorCoreOps.Low(scores[2 * j + 1]), maxBottom), p3 = Probability(TensorCoreOps.High(scores[2 * j + 1]), maxBottom);
                    sumTop += p0 + p1;
                    sumBottom += p2 + p3;
                    // Dropout scales the output's terms, not the sum (as AttentionKernels); factors of keys past the sequence are never used.
                    uint topWord = Pack(p0 * s.Factor(topQuery, key), p1 * s.Factor(topQuery, key + 1), format.Value);
                    uint bottomWord = Pack(p2 * s.Factor(bottomQuery, key), p3 * s.Factor(bottomQuery, key + 1), format.Value);
                    if (half == 0) a01 = TensorCoreOps.Pair(topWord, bottomWord);
                    else a23 = TensorCoreOps.Pair(topWord, bottomWord);
                }
                for (int n = 0; n < chunks; n++)
                {
                    ulong vFragment = TensorCoreOps.LoadMatricesTransposed(tiles, sharedBase, vTile + Swizzled(16 * step + (lane & 15), n, chunks));
                    ulong oTop = o[2 * n], oBottom = o[2 * n + 1];
                    TensorCoreOps.Mma(ref oTop, ref oBottom, a01, a23, vFragment, format.Value);
                    o[2 * n] = oTop;
                    o[2 * n + 1] = oBottom;
                }
            }
        }

        float inverseTop = Inverse(QuadSum(sumTop)), inverseBottom = Inverse(QuadSum(sumBottom));
        for (int n = 0; n < chunks; n++)
        {
            int dimension = h * HS + 8 * n + 2 * inGroup;
            if (top < count)
            {
                long index = s.Row(indices, b, top) * C + dimension;
                output[index] = TensorCoreOps.Low(o[2 * n]) * inverseTop;
                output[index + 1] = TensorCoreOps.High(o[2 * n]) * inverseTop;
            }
            if (bottom < count)
            {
                long index = s.Row(indices, b, bottom) * C + dimension;
                output[index] = TensorCoreOps.Low(o[2 * n + 1]) * inverseBottom;
                output[index + 1] = TensorCoreOps.High(o[2 * n + 1]) * inverseBottom;
            }
        }
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
