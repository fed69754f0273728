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
// call, the weight every call too, so a weight updated by training is never stale); TensorCores (a 64×32 output tile per group of 4 warps, each warp 16×32 as four
// mma products per step from shared memory, rows padded to 12 words so the fragment loads hit 32 distinct banks), with
// the fp32 GEMM's epilogue (bias, activation, pre-activation) or an accumulating one (weight gradients). The backward's
// products are the same kernel over transposed operands: dX = dOut · (Wᵀ)ᵀ, dW += (dOutᵀ) · (Xᵀ)ᵀ.
// Inline PTX runs only on CUDA: elsewhere the warp does the mma itself following the PTX ISA's fragment layout (each
// lane gathers its rows of A and columns of B from the lanes that hold them with shuffles, then multiplies the values
// in fp32), so the ILGPU CPU emulator checks the tiling and fragment indexing; only the instruction differs.
// History: v1 fp16/bf16; v2 tf32; v3 (this version) transposed operands and accumulation, for the backward. Operands
// are staged by plain loads and fragments read from shared memory word by word; cp.async staging, ldmatrix fragments and
// larger tiles are the next steps.
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Engine.Kernels;

internal static class ReducedPrecisionGemmKernels
{
    public const int WordsPerStep = 8, WarpsPerGroup = 4, TileM = 64, TileN = 32, Stride = 12;
    /// <summary>Values of <see cref="Shape.Format"/>.</summary>
    public const int Fp16 = 0, Bf16 = 1, Tf32 = 2;

    /// <param name="Words">Words per padded row: <see cref="WordsFor"/>.</param>
    /// <param name="Format"><see cref="Fp16"/>, <see cref="Bf16"/> or <see cref="Tf32"/>.</param>
    /// <param name="Accumulate">C += the product (a weight gradient): no bias, activation or pre-activation.</param>
    public readonly record struct Shape(int M, int K, int N, int Words, int Format, int HasBias, int Activation, int KeepPreActivation, int Accumulate = 0)
    {
        /// <summary>ceil(K/16)·8 words of two halves, or ceil(K/8)·8 words of one tf32 value.</summary>
        public static int WordsFor(int K, int format) => format == Tf32 ? (K + 7) / 8 * WordsPerStep : (K + 15) / 16 * WordsPerStep;
    }

    public static KernelConfig TensorCoreConfig(Shape s, int warpSize) =>
        new(new Index2D((s.N + TileN - 1) / TileN, (s.M + TileM - 1) / TileM), new Index2D(WarpsPerGroup * warpSize, 1));

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
    /// A 64×32 output tile per group of 4 warps; warp i computes rows 16i…16i+15 as four 16×8 mma tiles (n = 0, 8, 16, 24).
    /// Per k step the group stages 64 rows of A and 32 of W, 8 words each, in shared rows of 12 words.
    /// </summary>
    public static void TensorCoreKernel(ArrayView<float> output, ArrayView<float> pre, ArrayView<uint> a, ArrayView<uint> w, ArrayView<float> bias, Shape s)
    {
        var aTile = SharedMemory.Allocate1D<uint>(TileM * Stride);
        var wTile = SharedMemory.Allocate1D<uint>(TileN * Stride);
        int thread = Group.IdxX, warp = thread / Warp.WarpSize, lane = Warp.LaneIdx;
        int group = lane >> 2, inGroup = lane & 3; // the PTX ISA's groupID and threadID_in_group
        int rowBase = Grid.IdxY * TileM, colBase = Grid.IdxX * TileN;
        float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        for (int w0 = 0; w0 < s.Words; w0 += WordsPerStep)
        {
            for (int e = thread; e < TileM * WordsPerStep; e += WarpsPerGroup * Warp.WarpSize)
            {
                int r = e / WordsPerStep, word = e % WordsPerStep, row = rowBase + r;
                aTile[r * Stride + word] = row < s.M ? a[(long)row * s.Words + w0 + word] : 0u;
            }
            for (int e = thread; e < TileN * WordsPerStep; e += WarpsPerGroup * Warp.WarpSize)
            {
                int r = e / WordsPerStep, word = e % WordsPerStep, col = colBase + r;
                wTile[r * Stride + word] = col < s.N ? w[(long)col * s.Words + w0 + word] : 0u;
            }
            Group.Barrier();
            // A fragment (row-major): a0 row g, word t (k 2t, 2t+1; tf32: k t); a1 row g+8; a2 row g, word 4+t; a3 row g+8, word 4+t.
            int aRow = (warp * 16 + group) * Stride;
            uint a0 = aTile[aRow + inGroup], a1 = aTile[aRow + 8 * Stride + inGroup];
            uint a2 = aTile[aRow + 4 + inGroup], a3 = aTile[aRow + 8 * Stride + 4 + inGroup];
            // B fragment (column-major = W's rows): b0 column g, word t; b1 column g, word 4+t.
            for (int tile = 0; tile < 4; tile++)
            {
                int bRow = (tile * 8 + group) * Stride;
                uint b0 = wTile[bRow + inGroup], b1 = wTile[bRow + 4 + inGroup];
                float d0 = tile == 0 ? c00 : tile == 1 ? c10 : tile == 2 ? c20 : c30;
                float d1 = tile == 0 ? c01 : tile == 1 ? c11 : tile == 2 ? c21 : c31;
                float d2 = tile == 0 ? c02 : tile == 1 ? c12 : tile == 2 ? c22 : c32;
                float d3 = tile == 0 ? c03 : tile == 1 ? c13 : tile == 2 ? c23 : c33;
                Mma(ref d0, ref d1, ref d2, ref d3, a0, a1, a2, a3, b0, b1, group, inGroup, s.Format);
                if (tile == 0) { c00 = d0; c01 = d1; c02 = d2; c03 = d3; }
                else if (tile == 1) { c10 = d0; c11 = d1; c12 = d2; c13 = d3; }
                else if (tile == 2) { c20 = d0; c21 = d1; c22 = d2; c23 = d3; }
                else { c30 = d0; c31 = d1; c32 = d2; c33 = d3; }
            }
            Group.Barrier();
        }
        // D fragment (16×8): d0, d1 row g, columns 2t, 2t+1; d2, d3 row g+8.
        int top = rowBase + warp * 16 + group, left = colBase + 2 * inGroup;
        for (int tile = 0; tile < 4; tile++)
        {
            int col = left + 8 * tile;
            Store(output, pre, bias, s, top, col, tile == 0 ? c00 : tile == 1 ? c10 : tile == 2 ? c20 : c30);
            Store(output, pre, bias, s, top, col + 1, tile == 0 ? c01 : tile == 1 ? c11 : tile == 2 ? c21 : c31);
            Store(output, pre, bias, s, top + 8, col, tile == 0 ? c02 : tile == 1 ? c12 : tile == 2 ? c22 : c32);
            Store(output, pre, bias, s, top + 8, col + 1, tile == 0 ? c03 : tile == 1 ? c13 : tile == 2 ? c23 : c33);
        }
    }

    /// <summary>
    /// d += A (16×8 words) · B (8 words×8) for the warp in the mma fragment layout: one <c>mma.sync</c> on CUDA (m16n8k16 for
    /// f16 or bf16, m16n8k8 for tf32; f32 accumulators); elsewhere each lane computes its four outputs from the words
    /// <see cref="MmaFragments{T}.Gather"/> fetches. Every lane must call it.
    /// </summary>
    private static void Mma(ref float d0, ref float d1, ref float d2, ref float d3, uint a0, uint a1, uint a2, uint a3, uint b0, uint b1,
        int group, int inGroup, int format)
    {
        if (CudaAsm.IsSupported)
        {
            Ref<float> r0 = d0, r1 = d1, r2 = d2, r3 = d3;
            Input<uint> x0 = a0, x1 = a1, x2 = a2, x3 = a3, y0 = b0, y1 = b1;
            if (format == Fp16)
                CudaAsm.EmitRef("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};",
                    ref r0, ref r1, ref r2, ref r3, ref x0, ref x1, ref x2, ref x3, ref y0, ref y1);
            else if (format == Tf32)
                CudaAsm.EmitRef("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};",
                    ref r0, ref r1, ref r2, ref r3, ref x0, ref x1, ref x2, ref x3, ref y0, ref y1);
            else
                CudaAsm.EmitRef("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};",
                    ref r0, ref r1, ref r2, ref r3, ref x0, ref x1, ref x2, ref x3, ref y0, ref y1);
            (d0, d1, d2, d3) = (r0.Value, r1.Value, r2.Value, r3.Value);
            return;
        }
        for (int step = 0; step < 4; step++)
        {
            var f = MmaFragments<uint>.Gather(a0, a1, a2, a3, b0, b1, group, inGroup, step);
            d0 = Dot2(f.TopHigh, f.LeftHigh, Dot2(f.Top, f.LeftLow, d0, format), format);
            d1 = Dot2(f.TopHigh, f.RightHigh, Dot2(f.Top, f.RightLow, d1, format), format);
            d2 = Dot2(f.BottomHigh, f.LeftHigh, Dot2(f.Bottom, f.LeftLow, d2, format), format);
            d3 = Dot2(f.BottomHigh, f.RightHigh, Dot2(f.Bottom, f.RightLow, d3, format), format);
        }
    }

    /// <summary>c + the dot product of two words' values in fp32: two pairs of halves, or one pair of tf32 values (each product exact in fp32).</summary>
    private static float Dot2(uint x, uint y, float c, int format) =>
        format == Tf32
            ? c + Interop.IntAsFloat(x) * Interop.IntAsFloat(y)
            : c + Value(x, false, format) * Value(y, false, format) + Value(x, true, format) * Value(y, true, format);

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
