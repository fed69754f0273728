using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Engine.Backends.Cpu;

/// <summary>
/// The CPU int8 Linear: output (M,N) = activation(dequantize(quantize(input) (M,K) int8 · W (N,K) int8ᵀ) + bias), with
/// the activations quantized per row at run time (symmetric, scale max|row|/127) and W per output channel ahead of
/// time. The integer product is exact; W is packed once into panels of 8 columns, k in groups of 4 bytes, so that one
/// 256-bit lane holds 4 consecutive k of one column: the operand layout of <c>vpdpbusd</c> (AVX-VNNI).
/// </summary>
/// <remarks>
/// <c>vpdpbusd</c> multiplies unsigned by signed bytes, so the signed activations are stored shifted by 128 (a + 128 is a
/// byte) and 128·Σₖ W[n,k], precomputed per column at packing, is taken off again in the epilogue; the sums stay exact
/// in int32 for any K up to 2¹⁶ (|255 · 128 · K| &lt; 2³¹). A micro-tile is 4 rows × 3 panels (12 accumulators), and work
/// is split into (row chunk, column chunk) items over all cores, as the FP32 GEMM does. Without AVX-VNNI a portable
/// loop computes the same integers.
/// Version history: v1 one row and one panel at a time; v2 6×16 register tiles, threads, the dequantizing epilogue;
/// v3 6×24 tiles (18 accumulators), the epilogue's column constants loaded once per panel; v4 (this version) 4×24
/// tiles whose 12 accumulators, 3 panels and broadcast fit the 16 registers VEX-encoded <c>vpdpbusd</c> reaches, the sums
/// stored before the epilogue's calls, loop offsets widened once: MiniLM's shapes at 4096 rows 260–370 → 590–720 GOP/s (of ~800).
/// </remarks>
internal static unsafe class CpuInt8Gemm
{
    public const int PanelColumns = 8, GroupBytes = 4;
    private const int TileRows = 4, TilePanels = 3, ChunkRows = 12 * TileRows, ChunkPanels = 2 * TilePanels;

    /// <summary>W (N,K) packed as (ceil(N/8) panels rounded up to whole tiles of 3, ceil(K/4) groups, 8 columns × 4 bytes), zero-padded, with each column's Σₖ W[n,k].</summary>
    public sealed record PackedWeights(sbyte[] Panels, int[] ColumnSums, int N, int K)
    {
        public int Groups => (K + GroupBytes - 1) / GroupBytes;
        public int PanelCount => (N + PanelColumns - 1) / PanelColumns;
    }

    public static PackedWeights Pack(ReadOnlySpan<sbyte> weights, int N, int K)
    {
        if (weights.Length < (long)N * K) throw new ArgumentException($"{weights.Length} weights for an ({N},{K}) matrix");
        if (K > 1 << 16) throw new ArgumentException($"K = {K}: the shifted int32 sums are exact only up to 2^16");
        int panels = (N + PanelColumns - 1) / PanelColumns, groups = (K + GroupBytes - 1) / GroupBytes;
        int paddedPanels = (panels + TilePanels - 1) / TilePanels * TilePanels; // a tile always reads whole groups of 3 panels
        var packed = new sbyte[paddedPanels * groups * PanelColumns * GroupBytes];
        var sums = new int[N];
        for (int n = 0; n < N; n++)
        {
            int panel = n / PanelColumns, column = n % PanelColumns;
            for (int k = 0; k < K; k++)
            {
                sbyte w = weights[n * K + k];
                packed[((panel * groups + k / GroupBytes) * PanelColumns + column) * GroupBytes + k % GroupBytes] = w;
                sums[n] += w;
            }
        }
        return new PackedWeights(packed, sums, N, K);
    }

    /// <summary>Bytes of the shifted activations of <paramref name="M"/> rows: whole tiles of rows, whole groups of k.</summary>
    public static int ShiftedLength(int M, int K) => (M + TileRows - 1) / TileRows * TileRows * ((K + GroupBytes - 1) / GroupBytes * GroupBytes);

    /// <summary>
    /// shifted (M rounded up to a tile, K rounded up to a group) = round(input / scale) + 128 per row, scale = max|row| / 127
    /// (a zero row gets scale 0); padding rows and columns hold 128, i.e. zero.
    /// </summary>
    public static void QuantizeRows(float[] input, int M, int K, byte[] shifted, float[] rowScales)
    {
        int stride = (K + GroupBytes - 1) / GroupBytes * GroupBytes;
        if (input.Length < (long)M * K || shifted.Length < ShiftedLength(M, K) || rowScales.Length < M)
            throw new ArgumentException($"buffers too short to quantize ({M},{K})");
        shifted.AsSpan(M * stride, ShiftedLength(M, K) - M * stride).Fill(128);
        const int RowsPerItem = 16;
        CpuParallel.For(0, (M + RowsPerItem - 1) / RowsPerItem, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (item) =>
        {
            for (int m = item * RowsPerItem; m < Math.Min(M, (item + 1) * RowsPerItem); m++)
                QuantizeRow(input.AsSpan(m * K, K), shifted.AsSpan(m * stride, stride), out rowScales[m]);
        });
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void QuantizeRow(ReadOnlySpan<float> row, Span<byte> shifted, out float scale)
    {
        float max = TensorPrimitives.MaxMagnitude(row);
        max = Math.Abs(max);
        scale = max / 127f;
        float inverse = max > 0 ? 127f / max : 0f;
        int k = 0;
        if (Avx512F.IsSupported)
            fixed (float* x = row)
            fixed (byte* q = shifted)
                for (; k + 16 <= row.Length; k += 16)
                {
                    var rounded = Vector512.ConvertToInt32(Vector512.Round(Vector512.Load(x + k) * inverse)) + Vector512.Create(128);
                    Vector128<byte> bytes = Avx512F.ConvertToVector128Byte(rounded.AsUInt32());
                    bytes.Store(q + k);
                }
        for (; k < row.Length; k++) shifted[k] = (byte)((int)MathF.Round(row[k] * inverse) + 128);
        shifted[row.Length..].Fill(128);
    }

    /// <summary>c (M,N) = a (M,K) · Wᵀ exactly; <paramref name="useVnni"/> false forces the portable loop (tests compare both).</summary>
    public static void Multiply(Span<int> c, ReadOnlySpan<sbyte> a, PackedWeights w, int M, bool useVnni = true)
    {
        int N = w.N, K = w.K, stride = w.Groups * GroupBytes;
        if (a.Length < (long)M * K || c.Length < (long)M * N) throw new ArgumentException($"buffers too short for ({M},{K}) · ({N},{K})ᵀ");
        var shifted = new byte[ShiftedLength(M, K)];
        Array.Fill(shifted, (byte)128);
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++) shifted[m * stride + k] = (byte)(a[m * K + k] + 128);
        var result = new int[M * N];
        Run(new IntegerEpilogue(result, w.ColumnSums, N), shifted, w, M, useVnni);
        result.CopyTo(c);
    }

    /// <summary>
    /// output (M,N) = activation(a·Wᵀ · rowScale[m] · columnScale[n] + bias[n]) from activations already quantized by
    /// <see cref="QuantizeRows"/>; <paramref name="preActivation"/>, when given, receives the value before the activation.
    /// </summary>
    public static void Linear(float[] output, byte[] shifted, float[] rowScales, PackedWeights w, ArraySegment<float> columnScales, ArraySegment<float>? bias,
        int M, Activation activation, float[]? preActivation = null, bool useVnni = true)
    {
        if (output.Length < (long)M * w.N || columnScales.Count < w.N || bias is { } b && b.Count < w.N)
            throw new ArgumentException($"buffers too short for an ({M},{w.K})·({w.N},{w.K})ᵀ linear");
        Run(new DequantizeEpilogue(output, rowScales, w.ColumnSums, columnScales, bias, w.N, activation, preActivation), shifted, w, M, useVnni);
    }

    /// <summary>What a finished tile's integer sums become.</summary>
    private interface IEpilogue
    {
        /// <summary>
        /// Rows m…m+rows−1 (at most 6), columns [n, n+8) of them below N, receive acc = Σ (a+128)·w, row r's 8 sums at
        /// <c>sums[8r]</c>: one panel of a tile, so that the column constants are loaded once per panel.
        /// </summary>
        void Store(int m, int rows, int n, int* sums);
        /// <summary>One sum (the portable loop).</summary>
        void Store(int m, int n, int sum);
        /// <summary>Called once an item's tiles are stored: rows [m0, m1), columns [n0, n1).</summary>
        void Finish(int m0, int m1, int n0, int n1);
    }

    /// <summary>A panel's sums one at a time, for the columns below N (a partial panel, or the integer results of the tests).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void StoreEach<TEpilogue>(ref TEpilogue epilogue, int m, int rows, int n, int N, int* sums) where TEpilogue : struct, IEpilogue
    {
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < PanelColumns && n + j < N; j++) epilogue.Store(m + r, n + j, sums[r * PanelColumns + j]);
    }

    private readonly struct IntegerEpilogue(int[] c, int[] columnSums, int N) : IEpilogue
    {
        public void Store(int m, int rows, int n, int* sums)
        {
            var self = this;
            StoreEach(ref self, m, rows, n, N, sums);
        }

        public void Store(int m, int n, int sum) => c[m * N + n] = sum - 128 * columnSums[n];

        public void Finish(int m0, int m1, int n0, int n1) { }
    }

    private readonly struct DequantizeEpilogue(float[] output, float[] rowScales, int[] columnSums, ArraySegment<float> columnScales, ArraySegment<float>? bias,
        int N, Activation activation, float[]? preActivation) : IEpilogue
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Store(int m, int rows, int n, int* sums)
        {
            if (n + PanelColumns > N)
            {
                var self = this;
                StoreEach(ref self, m, rows, n, N, sums);
                return;
            }
            // (acc − 128·Σw) · rowScale · columnScale + bias, with the column constants loaded once for the panel.
            var offset = Vector256.Create(columnSums, n) * 128;
            var scales = Vector256.Create(columnScales.Array!, columnScales.Offset + n);
            var shift = bias is { } b ? Vector256.Create(b.Array!, b.Offset + n) : Vector256<float>.Zero;
            fixed (float* destination = &output[m * N + n])
            fixed (float* rowScale = &rowScales[m])
            {
                for (int r = 0; r < rows; r++)
                    Row(destination + r * N, Vector256.Load(sums + r * PanelColumns) - offset, scales * rowScale[r], shift);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        private static void Row(float* destination, Vector256<int> exact, Vector256<float> scales, Vector256<float> shift) =>
            Vector256.FusedMultiplyAdd(Vector256.ConvertToSingle(exact), scales, shift).Store(destination);

        /// <summary>As the vector path: (acc − 128·Σw) · (columnScale · rowScale) + bias, fused, so both paths give the same floats.</summary>
        public void Store(int m, int n, int sum) =>
            output[m * N + n] = MathF.FusedMultiplyAdd(sum - 128 * columnSums[n], columnScales[n] * rowScales[m], bias is { } b ? b[n] : 0f);

        public void Finish(int m0, int m1, int n0, int n1)
        {
            if (activation == Activation.None && preActivation is null) return;
            for (int m = m0; m < m1; m++)
            {
                var row = output.AsSpan(m * N + n0, n1 - n0);
                if (preActivation is not null) row.CopyTo(preActivation.AsSpan(m * N + n0, n1 - n0));
                if (activation != Activation.None) CpuActivations.Apply(row, row, activation);
            }
        }
    }

    /// <summary>Every (row chunk, column chunk) item over all cores; each tile's sums go to <paramref name="epilogue"/>.</summary>
    private static void Run<TEpilogue>(TEpilogue epilogue, byte[] shifted, PackedWeights w, int M, bool useVnni) where TEpilogue : struct, IEpilogue
    {
        if (shifted.Length < ShiftedLength(M, w.K)) throw new ArgumentException($"{shifted.Length} activation bytes for ({M},{w.K})");
        int rowChunks = (M + ChunkRows - 1) / ChunkRows, columnChunks = (w.PanelCount + ChunkPanels - 1) / ChunkPanels;
        bool vnni = useVnni && AvxVnni.IsSupported;
        CpuParallel.For(0, rowChunks * columnChunks, [MethodImpl(MethodImplOptions.AggressiveOptimization)] (item) =>
        {
            int m0 = item / columnChunks * ChunkRows, m1 = Math.Min(M, m0 + ChunkRows);
            int p0 = item % columnChunks * ChunkPanels, p1 = Math.Min(w.PanelCount, p0 + ChunkPanels);
            if (vnni)
                for (int m = m0; m < m1; m += TileRows)
                    for (int p = p0; p < p1; p += TilePanels) TileVnni(ref epilogue, shifted, w, m, Math.Min(TileRows, M - m), p);
            else
                Portable(ref epilogue, shifted, w, m0, m1, p0, p1);
            epilogue.Finish(m0, m1, p0 * PanelColumns, Math.Min(w.N, p1 * PanelColumns));
        });
    }

    /// <summary>
    /// Rows [m, m+4) × panels p…p+2: 12 accumulators; per group of 4 k, three panel loads and four broadcasts. The JIT
    /// encodes AVX-VNNI's <c>vpdpbusd</c> with VEX, which reaches only ymm0–15: 12 accumulators, 3 panels and a broadcast
    /// fit, where a tile of 18 accumulators (v3) spilled a dozen of them to the stack every group.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TileVnni<TEpilogue>(ref TEpilogue epilogue, byte[] shifted, PackedWeights w, int m, int rows, int p) where TEpilogue : struct, IEpilogue
    {
        int groups = w.Groups, stride = groups * GroupBytes, panelBytes = groups * PanelColumns * GroupBytes;
        Vector256<int> c00 = default, c01 = default, c02 = default, c10 = default, c11 = default, c12 = default,
            c20 = default, c21 = default, c22 = default, c30 = default, c31 = default, c32 = default;
        fixed (sbyte* panels = w.Panels)
        fixed (byte* activations = shifted)
        {
            sbyte* w0 = panels + (long)p * panelBytes;
            byte* a = activations + (long)m * stride;
            // Offsets widened once, outside the loop (the JIT otherwise recomputes and sign-extends them every group).
            nint panel1 = panelBytes, panel2 = 2 * (nint)panelBytes, row1 = stride, row2 = 2 * (nint)stride, row3 = 3 * (nint)stride;
            for (int g = 0; g < groups; g++, w0 += PanelColumns * GroupBytes, a += GroupBytes)
            {
                var b0 = Vector256.Load(w0);
                var b1 = Vector256.Load(w0 + panel1);
                var b2 = Vector256.Load(w0 + panel2);
                var a0 = Vector256.Create(*(int*)a).AsByte();
                c00 = AvxVnni.MultiplyWideningAndAdd(c00, a0, b0); c01 = AvxVnni.MultiplyWideningAndAdd(c01, a0, b1); c02 = AvxVnni.MultiplyWideningAndAdd(c02, a0, b2);
                var a1 = Vector256.Create(*(int*)(a + row1)).AsByte();
                c10 = AvxVnni.MultiplyWideningAndAdd(c10, a1, b0); c11 = AvxVnni.MultiplyWideningAndAdd(c11, a1, b1); c12 = AvxVnni.MultiplyWideningAndAdd(c12, a1, b2);
                var a2 = Vector256.Create(*(int*)(a + row2)).AsByte();
                c20 = AvxVnni.MultiplyWideningAndAdd(c20, a2, b0); c21 = AvxVnni.MultiplyWideningAndAdd(c21, a2, b1); c22 = AvxVnni.MultiplyWideningAndAdd(c22, a2, b2);
                var a3 = Vector256.Create(*(int*)(a + row3)).AsByte();
                c30 = AvxVnni.MultiplyWideningAndAdd(c30, a3, b0); c31 = AvxVnni.MultiplyWideningAndAdd(c31, a3, b1); c32 = AvxVnni.MultiplyWideningAndAdd(c32, a3, b2);
            }
        }
        int* sums = stackalloc int[TilePanels * TileRows * PanelColumns];
        c00.Store(sums); c10.Store(sums + 8); c20.Store(sums + 16); c30.Store(sums + 24);
        c01.Store(sums + 32); c11.Store(sums + 40); c21.Store(sums + 48); c31.Store(sums + 56);
        c02.Store(sums + 64); c12.Store(sums + 72); c22.Store(sums + 80); c32.Store(sums + 88);
        int n = p * PanelColumns;
        epilogue.Store(m, rows, n, sums);
        if (n + PanelColumns < w.N) epilogue.Store(m, rows, n + PanelColumns, sums + TileRows * PanelColumns);
        if (n + 2 * PanelColumns < w.N) epilogue.Store(m, rows, n + 2 * PanelColumns, sums + 2 * TileRows * PanelColumns);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Portable<TEpilogue>(ref TEpilogue epilogue, byte[] shifted, PackedWeights w, int m0, int m1, int p0, int p1) where TEpilogue : struct, IEpilogue
    {
        int groups = w.Groups, stride = groups * GroupBytes;
        for (int m = m0; m < m1; m++)
            for (int n = p0 * PanelColumns; n < Math.Min(w.N, p1 * PanelColumns); n++)
            {
                int panel = n / PanelColumns, column = n % PanelColumns, sum = 0;
                for (int k = 0; k < stride; k++)
                    sum += shifted[m * stride + k] * w.Panels[((panel * groups + k / GroupBytes) * PanelColumns + column) * GroupBytes + k % GroupBytes];
                epilogue.Store(m, n, sum);
            }
    }
}
