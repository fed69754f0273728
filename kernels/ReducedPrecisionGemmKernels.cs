// Reduced-precision Linear on tensor cores: out (M,N) = act(A (M,K) · W (N,K)ᵀ + bias), with A and W rounded to fp16 or
// bf16 (round to nearest even) or tf32 (fp32 with a 10-bit mantissa, round to nearest, ties away, as cvt.rna.tf32.f32)
// and the products summed in fp32 — the precision of mma.sync's f32 accumulators.
//
// Shapes: M = B·T rows, K in-features, N out-features. Operands are uint words: two consecutive k of fp16/bf16 (the
// lower k in the low 16 bits, as PTX packs .f16x2), or one k of tf32 (the low 13 bits zero). Rows are padded with zeros
// to 8 words per tensor-core step: one m16n8k16 for halves (Words = ceil(K/16)·8), one m16n8k8 for tf32 (ceil(K/8)·8).
// Both instructions hold A, B and C in the same words of the same lanes (a0 row g word t, a1 row g+8, a2 and a3 at word
// 4+t; b0 column g word t, b1 word 4+t; c0, c1 row g columns 2t, 2t+1, c2, c3 row g+8), so one kernel runs all three.
// Kernels: ToWords (fp32 rows, or the columns of a matrix stored transposed, into padded words: the activations every
// call, the weight every call too, so a weight updated by training is never stale; a weight kept in its checkpoint's
// fp16 or bf16 with K a multiple of 16 already is the words of that format, and is read as it is); Widen (a kept weight
// to fp32, for the other cases); TensorCores (a 64×32 output tile per
// group of 4 warps, each warp 16×32 as four mma products per k step of 8 words; the steps staged by cp.async into
// swizzled shared memory, three in flight; fragments by ldmatrix), with the fp32 GEMM's epilogue (bias, activation,
// pre-activation) or an accumulating one (weight gradients). The backward's products are the same kernel over
// transposed operands: dX = dOut · (Wᵀ)ᵀ, dW += (dOutᵀ) · (Xᵀ)ᵀ. The format is a specialization: one instruction per build.
// Inline PTX runs only on CUDA: elsewhere (TensorCoreOps) cp.async is a plain copy, ldmatrix the shuffles that move the
// same words to the same lanes, and the warp does the mma itself following the PTX ISA's fragment layout, so the ILGPU
// CPU emulator checks the tiling, the swizzled staging and the fragment indexing; only the instructions differ.
// ILGPU passes an inline-PTX statement's outputs beyond the first through local memory: each mma's accumulators and
// fragment words (as 64-bit pairs) are stored and reloaded around it (ptxas: a 216-byte stack, no spills), which only a
// GPU can price.
// History: v1 fp16/bf16; v2 tf32; v3 transposed operands and accumulation, for the backward; v4 (this version) cp.async
// staging in three stages, a swizzle instead of padded rows, ldmatrix fragments, the format specialized.
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Engine.Kernels;

internal static class ReducedPrecisionGemmKernels
{
    public const int WordsPerStep = 8, WarpsPerGroup = 4, TileM = 64, TileN = 32;
    /// <summary>The operand formats: <see cref="TensorCoreKernel"/>'s specialization, and <see cref="Operand.Format"/>.</summary>
    public const int Fp16 = 0, Bf16 = 1, Tf32 = 2;

    /// <param name="Words">Words per padded row: <see cref="WordsFor"/>.</param>
    /// <param name="Accumulate">C += the product (a weight gradient): no bias, activation or pre-activation.</param>
    public readonly record struct Shape(int M, int K, int N, int Words, int HasBias, int Activation, int KeepPreActivation, int Accumulate = 0)
    {
        /// <summary>ceil(K/16)·8 words of two halves, or ceil(K/8)·8 words of one tf32 value.</summary>
        public static int WordsFor(int K, int format) => format == Tf32 ? (K + 7) / 8 * WordsPerStep : (K + 15) / 16 * WordsPerStep;
    }

    /// <summary>
    /// How an fp32 operand is stored for <see cref="ToWordsKernel"/>: (Rows, Depth) row-major, or with
    /// <paramref name="Transposed"/> (Depth, Rows) — the backward's dOutᵀ, Xᵀ and Wᵀ, converted without a transposed copy.
    /// </summary>
    public readonly record struct Operand(int Rows, int Depth, int Words, int Format, int Transposed)
    {
        public long Index(long row, int k) => Transposed != 0 ? (long)k * Rows + row : row * Depth + k;
    }

    /// <summary>
    /// One word of an fp32 operand as padded words (Rows, Words): values k = 2w, 2w+1 of its row as halves, or k = w as
    /// tf32; zero past the depth.
    /// </summary>
    public static void ToWordsKernel(Index1D index, ArrayView<uint> words, ArrayView<float> source, Operand o)
    {
        long row = index / o.Words;
        int w = (int)(index % o.Words);
        if (o.Format == Tf32)
        {
            words[index] = w < o.Depth ? Tf32Bits(source[o.Index(row, w)]) : 0u;
            return;
        }
        int k = w * 2;
        float low = k < o.Depth ? source[o.Index(row, k)] : 0f, high = k + 1 < o.Depth ? source[o.Index(row, k + 1)] : 0f;
        words[index] = Pack(low, high, o.Format);
    }

    /// <summary>values (n) = 16-bit values of <paramref name="format"/> (fp16 or bf16) widened to fp32, exactly.</summary>
    public static void WidenKernel(Index1D index, ArrayView<float> values, ArrayView<ushort> halves, int format) =>
        values[index] = Value(halves[index], false, format);

    /// <summary>
    /// A float rounded to tf32 (10 mantissa bits, nearest, ties away from zero), the low 13 bits zero: cvt.rna.tf32.f32 on
    /// CUDA; elsewhere half a unit added to the magnitude's bits, then cut (a carry moves into the exponent, up to
    /// infinity). NaN stays NaN.
    /// </summary>
    public static uint Tf32Bits(float value)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("cvt.rna.tf32.f32 %0, %1;", out uint converted, value);
            return converted & 0xFFFFE000u;
        }
        uint bits = Interop.FloatAsInt(value);
        if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (bits | 0x00400000u) & 0xFFFFE000u; // quiet, so the cut keeps it NaN
        if ((bits & 0x7FFFFFFFu) == 0x7F800000u) return bits;
        return (bits + 0x1000u) & 0xFFFFE000u;
    }

    /// <summary>Two floats rounded to the format, the first in the low 16 bits.</summary>
    public static uint Pack(float low, float high, int format) => Bits(low, format) | (Bits(high, format) << 16);

    /// <summary>
    /// The 16 bits of a float rounded to nearest even: fp16 by cvt.rn.f16.f32 on CUDA and <see cref="Fp16Bits"/> elsewhere
    /// (ILGPU's software conversion does not round to nearest even), bf16 from its top bits.
    /// </summary>
    public static uint Bits(float value, int format)
    {
        if (format == Fp16) return CudaAsm.IsSupported ? Interop.FloatAsInt((ILGPU.Half)value) : Fp16Bits(value);
        uint bits = Interop.FloatAsInt(value);
        if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (bits >> 16) | 0x40u; // a NaN stays a (quiet) NaN
        return (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    }

    /// <summary>IEEE fp16 bits of a float, rounded to nearest even, in integer arithmetic (subnormal results, overflow to infinity, NaN kept).</summary>
    public static uint Fp16Bits(float value)
    {
        uint bits = Interop.FloatAsInt(value), sign = (bits >> 16) & 0x8000u, magnitude = bits & 0x7FFFFFFFu;
        if (magnitude > 0x7F800000u) return sign | 0x7E00u;   // NaN
        if (magnitude >= 0x477FF000u) return sign | 0x7C00u;  // 65,520 and up (the tie included) round to infinity
        uint exponent = magnitude >> 23, rest, half, result;
        if (exponent >= 113)
        {
            // Normal: rebias the exponent (127 → 15) and keep 10 mantissa bits; the 13 dropped bits decide the rounding.
            result = (magnitude - (112u << 23)) >> 13;
            rest = magnitude & 0x1FFFu;
            half = 0x1000u;
        }
        else
        {
            // Subnormal (below 2⁻¹⁴): units of 2⁻²⁴, the float's 24-bit significand shifted right by 126 − exponent.
            if (exponent < 102) return sign; // below 2⁻²⁵: rounds to zero
            int shift = 126 - (int)exponent;
            uint significand = (magnitude & 0x7FFFFFu) | 0x800000u;
            result = significand >> shift;
            rest = significand & ((1u << shift) - 1u);
            half = 1u << (shift - 1);
        }
        if (rest > half || rest == half && (result & 1u) != 0) result++; // a carry moves into the exponent, as it should
        return sign | result;
    }

    /// <summary>The float value of a word's low or high half.</summary>
    public static float Value(uint word, bool high, int format)
    {
        uint bits = high ? word >> 16 : word & 0xFFFFu;
        return format == Fp16 ? Interop.IntAsFloat((ushort)bits) : Interop.IntAsFloat(bits << 16);
    }

    /// <summary>
    /// Dynamic shared memory of one launch: <see cref="Stages"/> stages of 64 A rows then 32 W rows, 8 words each, and
    /// 4 words of slack so that CUDA can start the stages on a 16-byte boundary (ldmatrix and cp.async need it).
    /// </summary>
    public const int Stages = 3, StageRows = TileM + TileN, StageWords = StageRows * WordsPerStep, SharedWords = Stages * StageWords + 4;

    /// <summary>
    /// Where word 4·chunk of a staged row lives: rows are 8 words (two 16-byte chunks) with the chunks of rows 4–7 of
    /// every 8 swapped (chunk ^ bit 2 of the row), so that the 8 rows one ldmatrix matrix reads (16 bytes each) fall
    /// in 32 distinct banks without padding: rows r and r+4 sit at the same bank offset, their chunks do not.
    /// </summary>
    public static int Swizzled(int row, int chunk) => row * WordsPerStep + ((chunk ^ ((row >> 2) & 1)) << 2);

    public static KernelConfig TensorCoreConfig(Shape s, int warpSize) =>
        new(new Index2D((s.N + TileN - 1) / TileN, (s.M + TileM - 1) / TileM), new Index2D(WarpsPerGroup * warpSize, 1),
            SharedMemoryConfig.RequestDynamic<uint>(SharedWords));

    /// <summary>
    /// A 64×32 output tile per group of 4 warps; warp i computes rows 16i…16i+15 as four 16×8 mma tiles (n = 0, 8, 16, 24).
    /// Each k step of 8 words is staged in shared memory by cp.async, 16 bytes per thread (zero-filled past M or N),
    /// <see cref="Stages"/> steps in flight; the warp's fragments come from the staged rows by ldmatrix (two x2 for A,
    /// one per B tile). <paramref name="aAddress"/> and <paramref name="wAddress"/> are the device addresses of
    /// <paramref name="a"/> and <paramref name="w"/> (cp.async takes addresses; ILGPU gives kernels none); unused off CUDA.
    /// </summary>
    public static void TensorCoreKernel(ArrayView<float> output, ArrayView<float> pre, ArrayView<uint> a, ArrayView<uint> w, ArrayView<float> bias, Shape s,
        long aAddress, long wAddress, SpecializedValue<int> format)
    {
        var tiles = SharedMemory.GetDynamic<uint>();
        uint sharedBase = TensorCoreOps.SharedBase(tiles, SharedWords - 1);
        int thread = Group.IdxX, warp = thread / Warp.WarpSize, lane = Warp.LaneIdx;
        int group = lane >> 2, inGroup = lane & 3; // the PTX ISA's groupID and threadID_in_group
        int rowBase = Grid.IdxY * TileM, colBase = Grid.IdxX * TileN, steps = s.Words / WordsPerStep;
        // The staged row and chunk this thread copies: A's 128 chunks take threads 0–127, W's 64 threads 0–63.
        int copyRow = thread >> 1, copyChunk = thread & 1;
        // The rows whose addresses this lane gives ldmatrix (lanes 0–15 count): for A, matrices (rows 0–7, chunk 0), (8–15, 0)
        // of the warp's 16 rows are a0, a1 and (0–7, 1), (8–15, 1) are a2, a3; for B, (tile rows, chunk 0), (tile rows, chunk 1)
        // are the tile's b0, b1 (the other tiles 8, 16, 24 rows on).
        int aLow = Swizzled(warp * 16 + (lane & 15), 0), aHigh = Swizzled(warp * 16 + (lane & 15), 1);
        int bFragment = Swizzled(TileM + (lane & 7), (lane >> 3) & 1); // tile j at + 8j rows: the swizzle repeats every 8 rows
        // Accumulators as pairs of floats in one 64-bit value (row g's two columns, row g+8's): what the mma statement passes
        // through ILGPU's local-memory lowering of its outputs, two 8-byte slots where four 4-byte ones were.
        ulong top0 = 0, bottom0 = 0, top1 = 0, bottom1 = 0, top2 = 0, bottom2 = 0, top3 = 0, bottom3 = 0;
        for (int step = 0; step < Stages - 1; step++)
        {
            if (step < steps) Stage(tiles, sharedBase, a, w, s, aAddress, wAddress, step, rowBase, colBase, copyRow, copyChunk, thread);
            TensorCoreOps.CommitCopies();
        }
        for (int step = 0; step < steps; step++)
        {
            // This thread's copies of the step have landed; after the barrier everyone's have, and every warp is done with
            // the stage the next copy overwrites (the one read in the previous step).
            TensorCoreOps.AwaitAllButOneCopy();
            Group.Barrier();
            int next = step + Stages - 1;
            if (next < steps) Stage(tiles, sharedBase, a, w, s, aAddress, wAddress, next, rowBase, colBase, copyRow, copyChunk, thread);
            TensorCoreOps.CommitCopies();
            int stage = step % Stages * StageWords;
            ulong a01 = TensorCoreOps.LoadMatrices(tiles, sharedBase, stage + aLow), a23 = TensorCoreOps.LoadMatrices(tiles, sharedBase, stage + aHigh);
            TensorCoreOps.Mma(ref top0, ref bottom0, a01, a23, TensorCoreOps.LoadMatrices(tiles, sharedBase, stage + bFragment), format.Value);
            TensorCoreOps.Mma(ref top1, ref bottom1, a01, a23, TensorCoreOps.LoadMatrices(tiles, sharedBase, stage + bFragment + 8 * WordsPerStep), format.Value);
            TensorCoreOps.Mma(ref top2, ref bottom2, a01, a23, TensorCoreOps.LoadMatrices(tiles, sharedBase, stage + bFragment + 16 * WordsPerStep), format.Value);
            TensorCoreOps.Mma(ref top3, ref bottom3, a01, a23, TensorCoreOps.LoadMatrices(tiles, sharedBase, stage + bFragment + 24 * WordsPerStep), format.Value);
        }
        // D fragment (16×8): d0, d1 row g, columns 2t, 2t+1; d2, d3 row g+8.
        int top = rowBase + warp * 16 + group, left = colBase + 2 * inGroup;
        StorePairs(output, pre, bias, s, top, left, top0, bottom0);
        StorePairs(output, pre, bias, s, top, left + 8, top1, bottom1);
        StorePairs(output, pre, bias, s, top, left + 16, top2, bottom2);
        StorePairs(output, pre, bias, s, top, left + 24, top3, bottom3);
    }

    /// <summary>One mma tile's outputs: rows <paramref name="row"/> and row + 8, columns col and col + 1, from the packed accumulators.</summary>
    private static void StorePairs(ArrayView<float> output, ArrayView<float> pre, ArrayView<float> bias, Shape s, int row, int col, ulong top, ulong bottom)
    {
        Store(output, pre, bias, s, row, col, TensorCoreOps.Low(top));
        Store(output, pre, bias, s, row, col + 1, TensorCoreOps.High(top));
        Store(output, pre, bias, s, row + 8, col, TensorCoreOps.Low(bottom));
        Store(output, pre, bias, s, row + 8, col + 1, TensorCoreOps.High(bottom));
    }

    /// <summary>Step <paramref name="step"/>'s 64 A rows and 32 W rows (8 words from word 8·step) into stage step % Stages.</summary>
    private static void Stage(ArrayView<uint> tiles, uint sharedBase, ArrayView<uint> a, ArrayView<uint> w, Shape s, long aAddress, long wAddress,
        int step, int rowBase, int colBase, int copyRow, int copyChunk, int thread)
    {
        int stage = step % Stages * StageWords, word = step * WordsPerStep + 4 * copyChunk;
        int aRow = rowBase + copyRow;
        TensorCoreOps.CopyChunk(tiles, sharedBase, stage + Swizzled(copyRow, copyChunk), a, aAddress, (long)Math.Min(aRow, s.M - 1) * s.Words + word, aRow < s.M);
        if (thread < 2 * TileN)
        {
            int wRow = colBase + copyRow;
            TensorCoreOps.CopyChunk(tiles, sharedBase, stage + Swizzled(TileM + copyRow, copyChunk), w, wAddress, (long)Math.Min(wRow, s.N - 1) * s.Words + word, wRow < s.N);
        }
    }

    /// <summary>The epilogue: output (and pre-activation) at (row, col), or the sum into output when accumulating; skipped outside (M, N).</summary>
    private static void Store(ArrayView<float> output, ArrayView<float> pre, ArrayView<float> bias, Shape s, int row, int col, float value)
    {
        if (row >= s.M || col >= s.N) return;
        long index = (long)row * s.N + col;
        if (s.Accumulate != 0)
        {
            output[index] += value;
            return;
        }
        if (s.HasBias != 0) value += bias[col];
        if (s.KeepPreActivation != 0) pre[index] = value;
        output[index] = ActivationKernels.Apply(value, s.Activation);
    }
}
