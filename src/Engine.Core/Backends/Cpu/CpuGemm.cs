using System.Runtime.CompilerServices;

namespace Engine.Backends.Cpu;

/// <summary>
/// C (M,N) = A (M,K) · W (N,K)ᵀ + bias, the CPU backend's matrix product.
/// </summary>
/// <remarks>
/// W is packed once into column panels of NR = 2·SIMD-width columns laid out k-major ((N/NR, K, NR),
/// zero-padded), so the micro-kernel streams it contiguously. A full MR×NR tile of C keeps its
/// accumulators in registers, starts from the bias (or from C) and is stored straight into C; edge tiles go
/// through a small buffer. K runs in blocks sized from the L1 data cache; work is split into (row chunk,
/// panel group) items over the op's threads. A stored transposed (a weight gradient's output gradient) is
/// packed per K block into MR-row tiles, not copied whole.
/// The AVX-512 inner loop (Tile8, per k) compiles to 2 panel loads, 8 vbroadcastss and 16 vfmadd231ps/213ps
/// on zmm registers, with one vmovaps per row (the JIT's register choice for the second FMA of a broadcast;
/// renamed away): it runs at 200 GFLOP/s per core in L1, the processor's FMA peak (DOTNET_JitDisasm=Tile8*).
/// Version history: v1 6×NR tiles from zero, every tile copied out through a buffer (≈120 GFLOP/s on
/// 2 AVX-512 cores at MiniLM shapes); v2 bias-initialised tiles stored in place, 8 rows where the ISA has
/// 32 vector registers (≈300 forward, ≈180 weight gradients); v3 K blocks, panel groups, transposed A read
/// through strides and packed per block (≈350 forward, ≈250 weight gradients, of a 400 GFLOP/s peak).
/// </remarks>
internal static unsafe class CpuGemm
{
    /// <summary>
    /// B packed as (ceil(N/NR), K, NR), NR = 2·<paramref name="width"/> (default: this processor's); B is
    /// stored (N,K) (a Linear weight) or, with <paramref name="kMajor"/>, (K,N), from <paramref name="offset"/>.
    /// Panels are packed in parallel; a k-major row segment is one contiguous copy. The panels go to
    /// <paramref name="destination"/> when given (at least <see cref="PackedLength"/> long: a re-used buffer).
    /// </summary>
    public static float[] Pack(float[] weight, int N, int K, int width = 0, bool kMajor = false, long offset = 0, float[]? destination = null)
    {
        int nr = 2 * (width == 0 ? Simd.Width : width);
        var packed = destination ?? GC.AllocateUninitializedArray<float>(PackedLength(N, K, width));
        if (packed.Length < PackedLength(N, K, width)) throw new ArgumentException($"packing buffer of {packed.Length} elements for a ({N},{K}) operand");
        int panels = (N + nr - 1) / nr;
        CpuParallel.For(0, panels, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (p) =>
        {
            int columns = Math.Min(nr, N - p * nr);
            var panel = packed.AsSpan(p * K * nr, K * nr);
            if (columns < nr) panel.Clear();
            if (kMajor)
                for (int k = 0; k < K; k++)
                    weight.AsSpan((int)(offset + (long)k * N + p * nr), columns).CopyTo(panel.Slice(k * nr, columns));
            else
                for (int j = 0; j < columns; j++)
                {
                    var row = weight.AsSpan((int)(offset + (long)(p * nr + j) * K), K);
                    for (int k = 0; k < K; k++) panel[k * nr + j] = row[k];
                }
        });
        return packed;
    }

    /// <summary>Elements of the packed form of an (N,K) operand: whole panels of NR columns.</summary>
    public static int PackedLength(int N, int K, int width = 0)
    {
        int nr = 2 * (width == 0 ? Simd.Width : width);
        return (N + nr - 1) / nr * K * nr;
    }

    /// <summary>
    /// <paramref name="packedWeight"/> must come from <see cref="Pack"/> with the same <paramref name="width"/>;
    /// 0 means the processor's widest (tests pass 8 and 4 to check the narrower kernels on any machine).
    /// A and C start at <paramref name="aOffset"/> and <paramref name="cOffset"/> (one item of a batch).
    /// <paramref name="preActivation"/> (M,N), when given, receives the product plus bias before the activation (training).
    /// With <paramref name="accumulate"/>, C += A · Wᵀ: tiles start from C instead of the bias (a gradient summed
    /// in place, with no product buffer); it takes neither bias, activation nor pre-activation.
    /// With <paramref name="transposedA"/>, A is stored (K,M) (the output gradient of a weight-gradient product) and
    /// read in place: the micro-kernel takes A through row and k strides, so neither layout is copied.
    /// </summary>
    public static void Multiply(float[] c, float[] a, float[] packedWeight, ArraySegment<float>? bias, int M, int K, int N, Activation activation, int width = 0,
        long aOffset = 0, long cOffset = 0, float[]? preActivation = null, bool accumulate = false, bool transposedA = false)
    {
        if (accumulate && (bias is not null || activation != Activation.None || preActivation is not null))
            throw new ArgumentException("an accumulating product takes no bias, activation or pre-activation");
        switch (width == 0 ? Simd.Width : width)
        {
            case 16: Multiply<Simd512>(c, a, packedWeight, bias, M, K, N, activation, aOffset, cOffset, preActivation, accumulate, transposedA); break;
            case 8: Multiply<Simd256>(c, a, packedWeight, bias, M, K, N, activation, aOffset, cOffset, preActivation, accumulate, transposedA); break;
            default: Multiply<Simd128>(c, a, packedWeight, bias, M, K, N, activation, aOffset, cOffset, preActivation, accumulate, transposedA); break;
        }
    }

    private static void Multiply<V>(float[] c, float[] a, float[] packedWeight, ArraySegment<float>? bias, int M, int K, int N, Activation activation,
        long aOffset, long cOffset, float[]? preActivation, bool accumulate, bool transposedA)
        where V : struct, ISimd<V>
    {
        // Rows per tile: 8 with 512-bit vectors (AVX-512 has 32 registers: 16 accumulators), else 6 (12 of 16).
        int nr = 2 * V.Count, mr = V.Count == 16 ? 8 : 6;
        int panels = (N + nr - 1) / nr;
        int depthBlock = DepthBlock(K, nr);
        // Tiles read A rows of K (row-major) or the packed (MR-row tiles, depth, MR) block of a transposed A.
        nint tileRowStride = transposedA ? 1 : K, tileKStride = transposedA ? mr : 1;
        // An item is a chunk of rows × a group of panels. Each K block of the chunk's A (up to 192 × depth) stays in L2
        // while the group's panel blocks pass it, each block in L1 over every row tile: 8 panels × 24 tiles load a
        // tenth of the bytes per FLOP of 1 panel × 6 tiles (v2), which a weight gradient (K = 4,096 tokens) needs; the
        // forward products run as fast either way. A product with few items for the threads (a short batch, a weight
        // gradient's few rows) gets narrower groups, then shorter chunks.
        int tilesPerChunk = 24, panelsPerGroup = MaxPanelsPerGroup;
        int Chunks() => (M + tilesPerChunk * mr - 1) / (tilesPerChunk * mr);
        int Groups() => (panels + panelsPerGroup - 1) / panelsPerGroup;
        while (Chunks() * Groups() < 4 * CpuParallel.Threads && (panelsPerGroup > 1 || tilesPerChunk > 1))
        {
            if (panelsPerGroup > 1) panelsPerGroup /= 2;
            else tilesPerChunk /= 2;
        }
        int rowChunk = tilesPerChunk * mr, groups = Groups();
        CpuParallel.For(0, Chunks() * groups, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (item) =>
        {
            int chunk = item / groups, group = item % groups;
            int rowStart = chunk * rowChunk, rowEnd = Math.Min(M, rowStart + rowChunk);
            int firstPanel = group * panelsPerGroup, lastPanel = Math.Min(panels, firstPanel + panelsPerGroup);
            float* edge = stackalloc float[mr * nr];
            float* biasTiles = stackalloc float[MaxPanelsPerGroup * nr];
            float* zeroTile = stackalloc float[nr];
            for (int j = 0; j < nr; j++) zeroTile[j] = 0f;
            for (int panel = firstPanel; panel < lastPanel; panel++)
                for (int j = 0; j < nr; j++)
                {
                    int column = panel * nr + j;
                    biasTiles[(panel - firstPanel) * nr + j] = bias is { } b && column < N ? b[column] : 0f;
                }
            var packedA = transposedA ? System.Buffers.ArrayPool<float>.Shared.Rent(rowChunk * depthBlock) : null;
            fixed (float* pa0 = a, pw = packedWeight, pc0 = c, pPre = preActivation, pA = packedA)
            {
                float* pa = pa0 + aOffset, pc = pc0 + cOffset;
                // K in blocks whose slice of a panel stays in L1 while every row tile of the chunk streams past it;
                // a block after the first adds to the tile the previous blocks left in C.
                for (int k0 = 0; k0 < K; k0 += depthBlock)
                {
                    int depth = Math.Min(depthBlock, K - k0);
                    bool first = k0 == 0, last = k0 + depth == K, addToC = accumulate || !first;
                    // A stored (K,M) has a tile's MR values for one k side by side: the block is packed tile by tile
                    // into (MR-row tiles, depth, MR) so the micro-kernel reads it as one sequential stream.
                    if (pA is not null)
                        for (int row = rowStart; row < rowEnd; row += mr)
                        {
                            int rows = Math.Min(mr, rowEnd - row);
                            float* tile = pA + (long)(row - rowStart) * depth;
                            float* source = pa + (long)k0 * M + row;
                            if (rows == 8)
                                for (int k = 0; k < depth; k++, source += M) System.Runtime.Intrinsics.Vector256.Store(System.Runtime.Intrinsics.Vector256.Load(source), tile + k * 8);
                            else
                                for (int k = 0; k < depth; k++, source += M)
                                    for (int r = 0; r < mr; r++) tile[k * mr + r] = r < rows ? source[r] : 0f;
                        }
                    for (int panel = firstPanel; panel < lastPanel; panel++)
                    {
                        int col = panel * nr, cols = Math.Min(nr, N - col);
                        float* panelBlock = pw + (long)panel * K * nr + (long)k0 * nr;
                        float* biasTile = first ? biasTiles + (panel - firstPanel) * nr : zeroTile;
                        for (int row = rowStart; row < rowEnd; row += mr)
                        {
                            int rows = Math.Min(mr, rowEnd - row);
                            float* aTile = pA is not null ? pA + (long)(row - rowStart) * depth : pa + (long)row * K + k0;
                            // The tile goes to the pre-activation when training keeps it; the activation then writes C from it.
                            float* product = pc + (long)row * N + col, destination = pPre is null ? product : pPre + (long)row * N + col;
                            if (rows == mr && cols == nr)
                            {
                                if (mr == 8) Tile8<V>(aTile, tileRowStride, tileKStride, depth, panelBlock, biasTile, destination, N, addToC);
                                else Tile6<V>(aTile, tileRowStride, tileKStride, depth, panelBlock, biasTile, destination, N, addToC);
                            }
                            else
                            {
                                EdgeTile<V>(aTile, tileRowStride, tileKStride, depth, rows, panelBlock, biasTile, edge, nr);
                                for (int r = 0; r < rows; r++)
                                {
                                    var tileRow = new ReadOnlySpan<float>(edge + r * nr, cols);
                                    var target = new Span<float>(destination + (long)r * N, cols);
                                    if (addToC) System.Numerics.Tensors.TensorPrimitives.Add(target, tileRow, target);
                                    else tileRow.CopyTo(target);
                                }
                            }
                            if (last && (activation != Activation.None || pPre is not null))
                                CpuActivations.ApplyTile(destination, product, rows, cols, N, activation);
                        }
                    }
                }
            }
            if (packedA is not null) System.Buffers.ArrayPool<float>.Shared.Return(packedA);
        });
    }

    private const int MaxPanelsPerGroup = 8;

    /// <summary>
    /// Depth of a K block: its slice of one packed panel (depth × NR floats) fills half the level-1 data cache, and K
    /// is cut into equal blocks (384 → 2 × 192, 1,536 → 8 × 192 with a 48 KiB L1 and 32-column panels).
    /// </summary>
    private static int DepthBlock(int K, int nr)
    {
        int most = Math.Max(16, CpuCaches.Level1DataBytes / 2 / (nr * sizeof(float)));
        int blocks = (K + most - 1) / most;
        return (K + blocks - 1) / blocks;
    }

    /// <summary>C rows (8, NR) = bias (or, accumulating, C) + A rows (8, depth) · panel (depth, NR); A element (r, k) at r·rowStride + k·kStride, C row stride ldc.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile8<V>(float* a, nint rowStride, nint kStride, int depth, float* panel, float* bias, float* c, int ldc, bool accumulate) where V : struct, ISimd<V>
    {
        int w = V.Count, nr = 2 * w;
        V bias0 = V.Load(bias), bias1 = V.Load(bias + w);
        V c00 = bias0, c01 = bias1, c10 = bias0, c11 = bias1, c20 = bias0, c21 = bias1, c30 = bias0, c31 = bias1;
        V c40 = bias0, c41 = bias1, c50 = bias0, c51 = bias1, c60 = bias0, c61 = bias1, c70 = bias0, c71 = bias1;
        if (accumulate)
        {
            float* r = c;
            c00 = V.Load(r); c01 = V.Load(r + w); r += ldc;
            c10 = V.Load(r); c11 = V.Load(r + w); r += ldc;
            c20 = V.Load(r); c21 = V.Load(r + w); r += ldc;
            c30 = V.Load(r); c31 = V.Load(r + w); r += ldc;
            c40 = V.Load(r); c41 = V.Load(r + w); r += ldc;
            c50 = V.Load(r); c51 = V.Load(r + w); r += ldc;
            c60 = V.Load(r); c61 = V.Load(r + w); r += ldc;
            c70 = V.Load(r); c71 = V.Load(r + w);
        }
        float* a0 = a, a1 = a + rowStride, a2 = a + 2 * rowStride, a3 = a + 3 * rowStride, a4 = a + 4 * rowStride, a5 = a + 5 * rowStride, a6 = a + 6 * rowStride, a7 = a + 7 * rowStride;
        float* b = panel;
        nint k = 0;
        for (int step = 0; step < depth; step++, k += kStride, b += nr)
        {
            V b0 = V.Load(b), b1 = V.Load(b + w);
            V x = V.Broadcast(a0 + k); c00 = V.FusedMultiplyAdd(x, b0, c00); c01 = V.FusedMultiplyAdd(x, b1, c01);
            x = V.Broadcast(a1 + k); c10 = V.FusedMultiplyAdd(x, b0, c10); c11 = V.FusedMultiplyAdd(x, b1, c11);
            x = V.Broadcast(a2 + k); c20 = V.FusedMultiplyAdd(x, b0, c20); c21 = V.FusedMultiplyAdd(x, b1, c21);
            x = V.Broadcast(a3 + k); c30 = V.FusedMultiplyAdd(x, b0, c30); c31 = V.FusedMultiplyAdd(x, b1, c31);
            x = V.Broadcast(a4 + k); c40 = V.FusedMultiplyAdd(x, b0, c40); c41 = V.FusedMultiplyAdd(x, b1, c41);
            x = V.Broadcast(a5 + k); c50 = V.FusedMultiplyAdd(x, b0, c50); c51 = V.FusedMultiplyAdd(x, b1, c51);
            x = V.Broadcast(a6 + k); c60 = V.FusedMultiplyAdd(x, b0, c60); c61 = V.FusedMultiplyAdd(x, b1, c61);
            x = V.Broadcast(a7 + k); c70 = V.FusedMultiplyAdd(x, b0, c70); c71 = V.FusedMultiplyAdd(x, b1, c71);
        }
        c00.Store(c); c01.Store(c + w); c += ldc;
        c10.Store(c); c11.Store(c + w); c += ldc;
        c20.Store(c); c21.Store(c + w); c += ldc;
        c30.Store(c); c31.Store(c + w); c += ldc;
        c40.Store(c); c41.Store(c + w); c += ldc;
        c50.Store(c); c51.Store(c + w); c += ldc;
        c60.Store(c); c61.Store(c + w); c += ldc;
        c70.Store(c); c71.Store(c + w);
    }

    /// <summary>C rows (6, NR) = bias (or, accumulating, C) + A rows (6, depth) · panel (depth, NR), for ISAs with 16 vector registers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile6<V>(float* a, nint rowStride, nint kStride, int depth, float* panel, float* bias, float* c, int ldc, bool accumulate) where V : struct, ISimd<V>
    {
        int w = V.Count, nr = 2 * w;
        V bias0 = V.Load(bias), bias1 = V.Load(bias + w);
        V c00 = bias0, c01 = bias1, c10 = bias0, c11 = bias1, c20 = bias0, c21 = bias1;
        V c30 = bias0, c31 = bias1, c40 = bias0, c41 = bias1, c50 = bias0, c51 = bias1;
        if (accumulate)
        {
            float* r = c;
            c00 = V.Load(r); c01 = V.Load(r + w); r += ldc;
            c10 = V.Load(r); c11 = V.Load(r + w); r += ldc;
            c20 = V.Load(r); c21 = V.Load(r + w); r += ldc;
            c30 = V.Load(r); c31 = V.Load(r + w); r += ldc;
            c40 = V.Load(r); c41 = V.Load(r + w); r += ldc;
            c50 = V.Load(r); c51 = V.Load(r + w);
        }
        float* a0 = a, a1 = a + rowStride, a2 = a + 2 * rowStride, a3 = a + 3 * rowStride, a4 = a + 4 * rowStride, a5 = a + 5 * rowStride;
        float* b = panel;
        nint k = 0;
        for (int step = 0; step < depth; step++, k += kStride, b += nr)
        {
            V b0 = V.Load(b), b1 = V.Load(b + w);
            V x = V.Broadcast(a0 + k); c00 = V.FusedMultiplyAdd(x, b0, c00); c01 = V.FusedMultiplyAdd(x, b1, c01);
            x = V.Broadcast(a1 + k); c10 = V.FusedMultiplyAdd(x, b0, c10); c11 = V.FusedMultiplyAdd(x, b1, c11);
            x = V.Broadcast(a2 + k); c20 = V.FusedMultiplyAdd(x, b0, c20); c21 = V.FusedMultiplyAdd(x, b1, c21);
            x = V.Broadcast(a3 + k); c30 = V.FusedMultiplyAdd(x, b0, c30); c31 = V.FusedMultiplyAdd(x, b1, c31);
            x = V.Broadcast(a4 + k); c40 = V.FusedMultiplyAdd(x, b0, c40); c41 = V.FusedMultiplyAdd(x, b1, c41);
            x = V.Broadcast(a5 + k); c50 = V.FusedMultiplyAdd(x, b0, c50); c51 = V.FusedMultiplyAdd(x, b1, c51);
        }
        c00.Store(c); c01.Store(c + w); c += ldc;
        c10.Store(c); c11.Store(c + w); c += ldc;
        c20.Store(c); c21.Store(c + w); c += ldc;
        c30.Store(c); c31.Store(c + w); c += ldc;
        c40.Store(c); c41.Store(c + w); c += ldc;
        c50.Store(c); c51.Store(c + w);
    }

    /// <summary>A partial tile (fewer rows, or a panel past N's end) into a (rows, NR) buffer, one row at a time.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void EdgeTile<V>(float* a, nint rowStride, nint kStride, int depth, int rows, float* panel, float* bias, float* tile, int nr) where V : struct, ISimd<V>
    {
        int w = V.Count;
        for (int r = 0; r < rows; r++)
        {
            V c0 = V.Load(bias), c1 = V.Load(bias + w);
            float* ar = a + r * rowStride, b = panel;
            nint k = 0;
            for (int step = 0; step < depth; step++, k += kStride, b += nr)
            {
                V x = V.Broadcast(ar + k);
                c0 = V.FusedMultiplyAdd(x, V.Load(b), c0);
                c1 = V.FusedMultiplyAdd(x, V.Load(b + w), c1);
            }
            c0.Store(tile + r * nr);
            c1.Store(tile + r * nr + w);
        }
    }
}
