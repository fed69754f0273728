// Int8 Linear: out (M,N) = act(rowScale[m] · colScale[n] · Σₖ q(x)[m,k] · W[n,k] + bias[n]), W int8 (N,K) with one
// scale per output channel (quantized ahead of time), x quantized per row at run time (symmetric, max|row|/127).
//
// Shapes: M = B·T rows, K in-features, N out-features. Operands are int32 words of 4 consecutive k (little-endian
// bytes), rows padded with zeros to Words = ceil(K/32)·8 words, so one tensor-core step (k = 32) is 8 words.
// Kernels: QuantizeRows (a warp per row: max by butterfly, then the packed words and the row's scale); PackWeights
// (W's bytes into padded words, once per weight); Dp4a (the FP32 GEMM's tiling: 64×64 tile per 16×16 threads, a 4×4
// block per thread, 16-word k slices in shared memory, dp4a.s32.s32 per word); TensorCores (a 64×32 tile per group of
// 4 warps, each warp 16×32 as four m16n8k32 products per k step from shared memory, rows padded to 12 words so the
// fragment loads hit 32 distinct banks). Both share the dequantizing epilogue (bias, activation, pre-activation).
// Inline PTX runs only on CUDA: elsewhere dp4a is four byte products, and the tensor-core kernel's mma is done by the
// warp itself following the PTX ISA's m16n8k32 fragment layout (each lane gathers its rows of A and columns of B
// from the lanes that hold them with shuffles), so the emulator checks the tiling and fragment indexing.
// History: v1 (this version).
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

namespace Engine.Kernels;

internal static class Int8GemmKernels
{
    public const int WordsPerStep = 8, WarpsPerGroup = 4;
    public const int Dp4aTile = 64, Dp4aSlice = 16, Dp4aThreads = 16;
    public const int MmaTileM = 64, MmaTileN = 32, MmaStride = 12;

    /// <param name="Words">Words per padded row: ceil(K/32)·8.</param>
    public readonly record struct Shape(int M, int K, int N, int Words, int HasBias, int Activation, int KeepPreActivation)
    {
        public static int WordsFor(int K) => (K + 31) / 32 * WordsPerStep;
    }

    public static KernelConfig QuantizeConfig(Shape s, int warpSize) => new((s.M + WarpsPerGroup - 1) / WarpsPerGroup, WarpsPerGroup * warpSize);

    public static KernelConfig Dp4aConfig(Shape s) =>
        new(new Index2D((s.N + Dp4aTile - 1) / Dp4aTile, (s.M + Dp4aTile - 1) / Dp4aTile), new Index2D(Dp4aThreads, Dp4aThreads));

    public static KernelConfig TensorCoreConfig(Shape s, int warpSize) =>
        new(new Index2D((s.N + MmaTileN - 1) / MmaTileN, (s.M + MmaTileM - 1) / MmaTileM), new Index2D(WarpsPerGroup * warpSize, 1));

    /// <summary>One warp per row: quantized (M, Words) words and rowScales (M) from input (M, K).</summary>
    public static void QuantizeRowsKernel(ArrayView<int> quantized, ArrayView<float> rowScales, ArrayView<float> input, Shape s)
    {
        int row = Grid.IdxX * WarpsPerGroup + Warp.WarpIdx, lane = Warp.LaneIdx;
        if (row >= s.M) return; // uniform per warp
        long inputBase = (long)row * s.K;
        float max = 0f;
        for (int k = lane; k < s.K; k += Warp.WarpSize) max = XMath.Max(max, XMath.Abs(input[inputBase + k]));
        for (int offset = 16; offset > 0; offset >>= 1) max = XMath.Max(max, Warp.ShuffleXor(max, offset));
        float inverse = max > 0f ? 127f / max : 0f;
        for (int word = lane; word < s.Words; word += Warp.WarpSize)
        {
            int packed = 0;
            for (int j = 0; j < 4; j++)
            {
                int k = word * 4 + j;
                int q = k < s.K ? (int)XMath.Round(input[inputBase + k] * inverse) : 0;
                packed |= (q & 0xFF) << (8 * j);
            }
            quantized[(long)row * s.Words + word] = packed;
        }
        if (lane == 0) rowScales[row] = max / 127f;
    }

    /// <summary>One thread per word: packed (N, Words) from the int8 weight (N, K).</summary>
    public static void PackWeightsKernel(Index1D index, ArrayView<int> packed, ArrayView<sbyte> weight, Shape s)
    {
        int n = index / s.Words, word = index % s.Words, value = 0;
        for (int j = 0; j < 4; j++)
        {
            int k = word * 4 + j;
            if (k < s.K) value |= (weight[(long)n * s.K + k] & 0xFF) << (8 * j);
        }
        packed[index] = value;
    }

    /// <summary>c + the dot product of the four signed bytes of a and b: <c>dp4a</c> on CUDA.</summary>
    private static int Dot4(int a, int b, int c)
    {
        if (!CudaAsm.IsSupported) return BytesDot4(a, b, c);
        CudaAsm.Emit("dp4a.s32.s32 %0, %1, %2, %3;", out int result, a, b, c);
        return result;
    }

    /// <summary>c + the dot product of the four signed bytes of a and b, without inline PTX.</summary>
    private static int BytesDot4(int a, int b, int c) =>
        c + (sbyte)a * (sbyte)b + (sbyte)(a >> 8) * (sbyte)(b >> 8) + (sbyte)(a >> 16) * (sbyte)(b >> 16) + (sbyte)(a >> 24) * (sbyte)(b >> 24);

    /// <summary>One 64×64 tile of the output per 16×16 threads, 4×4 outputs per thread, dp4a on each word.</summary>
    public static void Dp4aKernel(ArrayView<float> output, ArrayView<float> pre, ArrayView<int> a, ArrayView<float> rowScales, ArrayView<int> w,
        ArrayView<float> columnScales, ArrayView<float> bias, Shape s)
    {
        var aSlice = SharedMemory.Allocate1D<int>(Dp4aSlice * Dp4aTile); // (slice words, tile rows)
        var wSlice = SharedMemory.Allocate1D<int>(Dp4aSlice * Dp4aTile); // (slice words, tile columns)
        int tx = Group.IdxX, ty = Group.IdxY, thread = ty * Dp4aThreads + tx;
        int rowBase = Grid.IdxY * Dp4aTile, colBase = Grid.IdxX * Dp4aTile;
        int c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        int c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        for (int w0 = 0; w0 < s.Words; w0 += Dp4aSlice)
        {
            // Consecutive threads read consecutive words of a row; past the padded row (Words is a multiple of 8, the slice 16) zeros.
            for (int e = thread; e < Dp4aSlice * Dp4aTile; e += Dp4aThreads * Dp4aThreads)
            {
                int r = e / Dp4aSlice, word = e % Dp4aSlice;
                int row = rowBase + r, col = colBase + r;
                bool inK = w0 + word < s.Words;
                aSlice[word * Dp4aTile + r] = row < s.M && inK ? a[(long)row * s.Words + w0 + word] : 0;
                wSlice[word * Dp4aTile + r] = col < s.N && inK ? w[(long)col * s.Words + w0 + word] : 0;
            }
            Group.Barrier();
            for (int word = 0; word < Dp4aSlice; word++)
            {
                int a0 = aSlice[word * Dp4aTile + ty], a1 = aSlice[word * Dp4aTile + ty + 16], a2 = aSlice[word * Dp4aTile + ty + 32], a3 = aSlice[word * Dp4aTile + ty + 48];
                int b0 = wSlice[word * Dp4aTile + tx], b1 = wSlice[word * Dp4aTile + tx + 16], b2 = wSlice[word * Dp4aTile + tx + 32], b3 = wSlice[word * Dp4aTile + tx + 48];
                c00 = Dot4(a0, b0, c00); c01 = Dot4(a0, b1, c01); c02 = Dot4(a0, b2, c02); c03 = Dot4(a0, b3, c03);
                c10 = Dot4(a1, b0, c10); c11 = Dot4(a1, b1, c11); c12 = Dot4(a1, b2, c12); c13 = Dot4(a1, b3, c13);
                c20 = Dot4(a2, b0, c20); c21 = Dot4(a2, b1, c21); c22 = Dot4(a2, b2, c22); c23 = Dot4(a2, b3, c23);
                c30 = Dot4(a3, b0, c30); c31 = Dot4(a3, b1, c31); c32 = Dot4(a3, b2, c32); c33 = Dot4(a3, b3, c33);
            }
            Group.Barrier();
        }
        for (int i = 0; i < 4; i++)
        {
            int row = rowBase + ty + 16 * i;
            int v0 = i == 0 ? c00 : i == 1 ? c10 : i == 2 ? c20 : c30;
            int v1 = i == 0 ? c01 : i == 1 ? c11 : i == 2 ? c21 : c31;
            int v2 = i == 0 ? c02 : i == 1 ? c12 : i == 2 ? c22 : c32;
            int v3 = i == 0 ? c03 : i == 1 ? c13 : i == 2 ? c23 : c33;
            Store(output, pre, rowScales, columnScales, bias, s, row, colBase + tx, v0);
            Store(output, pre, rowScales, columnScales, bias, s, row, colBase + tx + 16, v1);
            Store(output, pre, rowScales, columnScales, bias, s, row, colBase + tx + 32, v2);
            Store(output, pre, rowScales, columnScales, bias, s, row, colBase + tx + 48, v3);
        }
    }

    /// <summary>
    /// A 64×32 output tile per group of 4 warps; warp i computes rows 16i…16i+15 as four m16n8k32 tiles (n = 0, 8, 16, 24).
    /// Per k step the group stages 64 rows of A and 32 of W, 8 words each, in shared rows of 12 words.
    /// </summary>
    public static void TensorCoreKernel(ArrayView<float> output, ArrayView<float> pre, ArrayView<int> a, ArrayView<float> rowScales, ArrayView<int> w,
        ArrayView<float> columnScales, ArrayView<float> bias, Shape s)
    {
        var aTile = SharedMemory.Allocate1D<int>(MmaTileM * MmaStride);
        var wTile = SharedMemory.Allocate1D<int>(MmaTileN * MmaStride);
        int thread = Group.IdxX, warp = thread / Warp.WarpSize, lane = Warp.LaneIdx;
        int group = lane >> 2, inGroup = lane & 3; // the PTX ISA's groupID and threadID_in_group
        int rowBase = Grid.IdxY * MmaTileM, colBase = Grid.IdxX * MmaTileN;
        int c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        int c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        for (int w0 = 0; w0 < s.Words; w0 += WordsPerStep)
        {
            for (int e = thread; e < MmaTileM * WordsPerStep; e += WarpsPerGroup * Warp.WarpSize)
            {
                int r = e / WordsPerStep, word = e % WordsPerStep, row = rowBase + r;
                aTile[r * MmaStride + word] = row < s.M ? a[(long)row * s.Words + w0 + word] : 0;
            }
            for (int e = thread; e < MmaTileN * WordsPerStep; e += WarpsPerGroup * Warp.WarpSize)
            {
                int r = e / WordsPerStep, word = e % WordsPerStep, col = colBase + r;
                wTile[r * MmaStride + word] = col < s.N ? w[(long)col * s.Words + w0 + word] : 0;
            }
            Group.Barrier();
            // A fragment (16×32, row-major): a0 row g, k 4t…4t+3; a1 row g+8; a2 row g, k 16+4t…; a3 row g+8, k 16+4t….
            int aRow = (warp * 16 + group) * MmaStride;
            int a0 = aTile[aRow + inGroup], a1 = aTile[aRow + 8 * MmaStride + inGroup];
            int a2 = aTile[aRow + 4 + inGroup], a3 = aTile[aRow + 8 * MmaStride + 4 + inGroup];
            // B fragment (32×8, column-major = W's rows): b0 column g, k 4t…4t+3; b1 column g, k 16+4t….
            for (int tile = 0; tile < 4; tile++)
            {
                int bRow = (tile * 8 + group) * MmaStride;
                int b0 = wTile[bRow + inGroup], b1 = wTile[bRow + 4 + inGroup];
                int d0 = tile == 0 ? c00 : tile == 1 ? c10 : tile == 2 ? c20 : c30;
                int d1 = tile == 0 ? c01 : tile == 1 ? c11 : tile == 2 ? c21 : c31;
                int d2 = tile == 0 ? c02 : tile == 1 ? c12 : tile == 2 ? c22 : c32;
                int d3 = tile == 0 ? c03 : tile == 1 ? c13 : tile == 2 ? c23 : c33;
                Mma(ref d0, ref d1, ref d2, ref d3, a0, a1, a2, a3, b0, b1, group, inGroup);
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
            Store(output, pre, rowScales, columnScales, bias, s, top, col, tile == 0 ? c00 : tile == 1 ? c10 : tile == 2 ? c20 : c30);
            Store(output, pre, rowScales, columnScales, bias, s, top, col + 1, tile == 0 ? c01 : tile == 1 ? c11 : tile == 2 ? c21 : c31);
            Store(output, pre, rowScales, columnScales, bias, s, top + 8, col, tile == 0 ? c02 : tile == 1 ? c12 : tile == 2 ? c22 : c32);
            Store(output, pre, rowScales, columnScales, bias, s, top + 8, col + 1, tile == 0 ? c03 : tile == 1 ? c13 : tile == 2 ? c23 : c33);
        }
    }

    /// <summary>
    /// d += A (16×32) · B (32×8) for the warp, operands in the m16n8k32 fragment layout: one <c>mma.sync</c> on CUDA;
    /// elsewhere each lane computes its four outputs from the words <see cref="MmaFragments{T}.Gather"/> fetches. Every lane
    /// of the warp must call it.
    /// </summary>
    private static void Mma(ref int d0, ref int d1, ref int d2, ref int d3, int a0, int a1, int a2, int a3, int b0, int b1, int group, int inGroup)
    {
        if (CudaAsm.IsSupported)
        {
            Ref<int> r0 = d0, r1 = d1, r2 = d2, r3 = d3;
            Input<int> x0 = a0, x1 = a1, x2 = a2, x3 = a3, y0 = b0, y1 = b1;
            CudaAsm.EmitRef("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};",
                ref r0, ref r1, ref r2, ref r3, ref x0, ref x1, ref x2, ref x3, ref y0, ref y1);
            (d0, d1, d2, d3) = (r0.Value, r1.Value, r2.Value, r3.Value);
            return;
        }
        for (int step = 0; step < 4; step++)
        {
            var f = MmaFragments<int>.Gather(a0, a1, a2, a3, b0, b1, group, inGroup, step);
            d0 = BytesDot4(f.TopHigh, f.LeftHigh, BytesDot4(f.Top, f.LeftLow, d0));
            d1 = BytesDot4(f.TopHigh, f.RightHigh, BytesDot4(f.Top, f.RightLow, d1));
            d2 = BytesDot4(f.BottomHigh, f.LeftHigh, BytesDot4(f.Bottom, f.LeftLow, d2));
            d3 = BytesDot4(f.BottomHigh, f.RightHigh, BytesDot4(f.Bottom, f.RightLow, d3));
        }
    }

    /// <summary>The dequantizing epilogue shared by both products: output (and pre-activation) at (row, col), skipped outside (M, N).</summary>
    private static void Store(ArrayView<float> output, ArrayView<float> pre, ArrayView<float> rowScales, ArrayView<float> columnScales, ArrayView<float> bias,
        Shape s, int row, int col, int sum)
    {
        if (row >= s.M || col >= s.N) return;
        float value = sum * (rowScales[row] * columnScales[col]);
        if (s.HasBias != 0) value += bias[col];
        long index = (long)row * s.N + col;
        if (s.KeepPreActivation != 0) pre[index] = value;
        output[index] = ActivationKernels.Apply(value, s.Activation);
    }
}
