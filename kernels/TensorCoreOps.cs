// The tensor-core building blocks the reduced-precision kernels share (the GEMM, flash attention): cp.async staging into
// shared memory, ldmatrix fragments (plain and transposed), mma.sync on f16/bf16/tf32 words with f32 accumulators. Each
// is one instruction of inline PTX on CUDA and, elsewhere (the ILGPU CPU emulator), the same data movement done by plain
// copies and warp shuffles as the PTX ISA describes it, so the kernels' tiling, staging and fragment indexing are tested
// without a GPU. Values travel in pairs: two 16-bit values in a word (the lower first), two words or two f32
// accumulators in a 64-bit value (ILGPU passes only one output of an inline-PTX statement in a register, the rest
// through local memory; a pair halves that traffic).
using ILGPU;
using ILGPU.Runtime.Cuda;
using static Engine.Kernels.ReducedPrecisionGemmKernels;

namespace Engine.Kernels;

internal static class TensorCoreOps
{
    public static float Low(ulong pair) => Interop.IntAsFloat((uint)pair);
    public static float High(ulong pair) => Interop.IntAsFloat((uint)(pair >> 32));
    public static ulong Pair(float low, float high) => Interop.FloatAsInt(low) | ((ulong)Interop.FloatAsInt(high) << 32);
    public static ulong Pair(uint low, uint high) => low | ((ulong)high << 32);

    /// <summary>
    /// The byte address in the shared window where a kernel's dynamic shared memory starts, moved up to 16 bytes (ldmatrix
    /// and cp.async need it): on CUDA from ILGPU's dynamic shared memory symbol, which it declares with 4-byte alignment;
    /// elsewhere 0 (the software paths index the view). <paramref name="spareWord"/> is a word of the view past every
    /// word the kernel stages, however far the base moved (at most 3 words): it is written, so that ILGPU declares the symbol.
    /// </summary>
    public static uint SharedBase(ArrayView<uint> tiles, int spareWord)
    {
        if (!CudaAsm.IsSupported) return 0;
        tiles[spareWord] = 0;
        CudaAsm.Emit("mov.u32 %0, __dyn_shared_alloca;", out uint address);
        return (address + 15u) & ~15u;
    }

    /// <summary>Closes this thread's group of cp.async copies (an empty group when it issued none, so the count stays uniform).</summary>
    public static void CommitCopies()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("cp.async.commit_group;");
    }

    /// <summary>Waits until at most one of this thread's groups is in flight (three stages: the step about to be read has landed).</summary>
    public static void AwaitAllButOneCopy()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("cp.async.wait_group 1;");
    }

    /// <summary>Waits until all of this thread's cp.async copies have landed.</summary>
    public static void AwaitCopies()
    {
        if (CudaAsm.IsSupported) CudaAsm.Emit("cp.async.wait_all;");
    }

    /// <summary>
    /// 4 words (16 bytes) from source[index] into tiles[destination], zeros when not <paramref name="valid"/>: cp.async on
    /// CUDA from the device address <paramref name="address"/> of source[0] (asynchronous until a wait; a source size of 0
    /// fills zeros), plain copies elsewhere.
    /// </summary>
    public static void CopyChunk(ArrayView<uint> tiles, uint sharedBase, int destination, ArrayView<uint> source, long address, long index, bool valid)
    {
        if (CudaAsm.IsSupported)
        {
            uint target = sharedBase + 4u * (uint)destination, size = valid ? 16u : 0u;
            long from = address + 4 * index;
            CudaAsm.Emit("{ .reg .u64 g; cvta.to.global.u64 g, %1; cp.async.cg.shared.global [%0], [g], 16, %2; }", target, from, size);
            return;
        }
        for (int i = 0; i < 4; i++) tiles[destination + i] = valid ? source[index + i] : 0u;
    }

    /// <summary>
    /// ldmatrix.x2 (two 8×8 matrices of 16-bit values, i.e. 8 rows × 4 words each): lane 8i+r (i &lt; 2) gives the word index
    /// of row r of matrix i (<paramref name="rowWord"/>), and lane (g, t) receives word t of row g of matrix i in the low and
    /// high half of the result. On CUDA the instruction; elsewhere the same movement by shuffles.
    /// </summary>
    public static ulong LoadMatrices(ArrayView<uint> tiles, uint sharedBase, int rowWord)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("{ .reg .b32 x, y; ldmatrix.sync.aligned.m8n8.x2.shared.b16 {x, y}, [%1]; mov.b64 %0, {x, y}; }", out ulong pair, sharedBase + 4u * (uint)rowWord);
            return pair;
        }
        int lane = Warp.LaneIdx, row = lane >> 2, word = lane & 3;
        return Pair(tiles[Warp.Shuffle(rowWord, row) + word], tiles[Warp.Shuffle(rowWord, 8 + row) + word]);
    }

    /// <summary>
    /// ldmatrix.x2.trans: the same two matrices, transposed as they move — lane (g, t) receives, for matrix i, the 16-bit
    /// values at (row 2t, column g) and (row 2t+1, column g) in one word (the first low). Row-major V then arrives in the
    /// column-major B layout mma wants. On CUDA the instruction; elsewhere by shuffles.
    /// </summary>
    public static ulong LoadMatricesTransposed(ArrayView<uint> tiles, uint sharedBase, int rowWord)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("{ .reg .b32 x, y; ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {x, y}, [%1]; mov.b64 %0, {x, y}; }", out ulong pair, sharedBase + 4u * (uint)rowWord);
            return pair;
        }
        int lane = Warp.LaneIdx, column = lane >> 2, rows = 2 * (lane & 3), word = column >> 1, shift = 16 * (column & 1);
        uint first = Half(tiles, Warp.Shuffle(rowWord, rows) + word, shift) | (Half(tiles, Warp.Shuffle(rowWord, rows + 1) + word, shift) << 16);
        uint second = Half(tiles, Warp.Shuffle(rowWord, 8 + rows) + word, shift) | (Half(tiles, Warp.Shuffle(rowWord, 8 + rows + 1) + word, shift) << 16);
        return Pair(first, second);
    }

    private static uint Half(ArrayView<uint> tiles, int word, int shift) => (tiles[word] >> shift) & 0xFFFFu;

    /// <summary>
    /// d += A (16×8 words) · B (8 words×8) for the warp in the mma fragment layout, every value a pair in one 64-bit word
    /// (low half first): the accumulators (d0, d1) in <paramref name="top"/> and (d2, d3) in <paramref name="bottom"/>, A's
    /// (a0, a1) and (a2, a3), B's (b0, b1) — what ldmatrix.x2 returns. One <c>mma.sync</c> on CUDA (m16n8k16 for f16 or
    /// bf16, m16n8k8 for tf32; f32 accumulators); elsewhere each lane computes its four outputs from the words
    /// <see cref="MmaFragments{T}.Gather"/> fetches. Every lane must call it.
    /// </summary>
    public static void Mma(ref ulong top, ref ulong bottom, ulong a01, ulong a23, ulong b01, int format)
    {
        if (CudaAsm.IsSupported)
        {
            Ref<ulong> d01 = top, d23 = bottom;
            Input<ulong> x01 = a01, x23 = a23, y01 = b01;
            const string Unpack = "{ .reg .b32 d<4>, a<4>, b<2>; mov.b64 {d0, d1}, %0; mov.b64 {d2, d3}, %1; mov.b64 {a0, a1}, %2; mov.b64 {a2, a3}, %3; mov.b64 {b0, b1}, %4; ";
            const string Operands = " {d0, d1, d2, d3}, {a0, a1, a2, a3}, {b0, b1}, {d0, d1, d2, d3}; mov.b64 %0, {d0, d1}; mov.b64 %1, {d2, d3}; }";
            if (format == Fp16)
                CudaAsm.EmitRef(Unpack + "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32" + Operands, ref d01, ref d23, ref x01, ref x23, ref y01);
            else if (format == Tf32)
                CudaAsm.EmitRef(Unpack + "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" + Operands, ref d01, ref d23, ref x01, ref x23, ref y01);
            else
                CudaAsm.EmitRef(Unpack + "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" + Operands, ref d01, ref d23, ref x01, ref x23, ref y01);
            (top, bottom) = (d01.Value, d23.Value);
            return;
        }
        int lane = Warp.LaneIdx, group = lane >> 2, inGroup = lane & 3;
        float d0 = Low(top), d1 = High(top), d2 = Low(bottom), d3 = High(bottom);
        for (int step = 0; step < 4; step++)
        {
            var f = MmaFragments<uint>.Gather((uint)a01, (uint)(a01 >> 32), (uint)a23, (uint)(a23 >> 32), (uint)b01, (uint)(b01 >> 32), group, inGroup, step);
            d0 = Dot2(f.TopHigh, f.LeftHigh, Dot2(f.Top, f.LeftLow, d0, format), format);
            d1 = Dot2(f.TopHigh, f.RightHigh, Dot2(f.Top, f.RightLow, d1, format), format);
            d2 = Dot2(f.BottomHigh, f.LeftHigh, Dot2(f.Bottom, f.LeftLow, d2, format), format);
            d3 = Dot2(f.BottomHigh, f.RightHigh, Dot2(f.Bottom, f.RightLow, d3, format), format);
        }
        (top, bottom) = (Pair(d0, d1), Pair(d2, d3));
    }

    /// <summary>c + the dot product of two words' values in fp32: two pairs of halves, or one pair of tf32 values (each product exact in fp32).</summary>
    private static float Dot2(uint x, uint y, float c, int format) =>
        format == Tf32
            ? c + Interop.IntAsFloat(x) * Interop.IntAsFloat(y)
            : c + Value(x, false, format) * Value(y, false, format) + Value(x, true, format) * Value(y, true, format);
}
