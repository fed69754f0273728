using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Engine.Backends.Cpu;

/// <summary>
/// C (M,N) int32 = A (M,K) int8 · W (N,K) int8ᵀ, exactly: the integer core of a dynamically quantized Linear (the
/// scales and the bias are the epilogue's). W is packed once into panels of 8 columns, k in groups of 4 bytes, so that
/// one 256-bit lane holds 4 consecutive k of one column: the operand layout of <c>vpdpbusd</c> (AVX-VNNI).
/// </summary>
/// <remarks>
/// <c>vpdpbusd</c> multiplies unsigned by signed bytes, so the signed activations are shifted by 128 (a + 128 is a
/// byte) and 128·Σₖ W[n,k], precomputed per column at packing, is taken off again; the sums stay exact in int32 for
/// any K up to 2¹⁶ (|255 · 128 · K| &lt; 2³¹). Without AVX-VNNI a portable loop computes the same integers.
/// Version history: v1 (this version) one row and one panel at a time; blocking and threads come with the op.
/// </remarks>
internal static class CpuInt8Gemm
{
    public const int PanelColumns = 8, GroupBytes = 4;

    /// <summary>W (N,K) packed as (ceil(N/8) panels, ceil(K/4) groups, 8 columns × 4 bytes), zero-padded, with each column's Σₖ W[n,k].</summary>
    public sealed record PackedWeights(sbyte[] Panels, int[] ColumnSums, int N, int K)
    {
        public int Groups => (K + GroupBytes - 1) / GroupBytes;
    }

    public static PackedWeights Pack(ReadOnlySpan<sbyte> weights, int N, int K)
    {
        if (weights.Length < (long)N * K) throw new ArgumentException($"{weights.Length} weights for an ({N},{K}) matrix");
        if (K > 1 << 16) throw new ArgumentException($"K = {K}: the shifted int32 sums are exact only up to 2^16");
        int panels = (N + PanelColumns - 1) / PanelColumns, groups = (K + GroupBytes - 1) / GroupBytes;
        var packed = new sbyte[panels * groups * PanelColumns * GroupBytes];
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

    /// <summary>c (M,N) = a (M,K) · Wᵀ; <paramref name="useVnni"/> false forces the portable loop (tests compare both).</summary>
    public static void Multiply(Span<int> c, ReadOnlySpan<sbyte> a, PackedWeights w, int M, bool useVnni = true)
    {
        int N = w.N, K = w.K;
        if (a.Length < (long)M * K || c.Length < (long)M * N) throw new ArgumentException($"buffers too short for ({M},{K}) · ({N},{K})ᵀ");
        if (useVnni && AvxVnni.IsSupported) MultiplyVnni(c, a, w, M);
        else MultiplyPortable(c, a, w, M);
    }

    private static unsafe void MultiplyVnni(Span<int> c, ReadOnlySpan<sbyte> a, PackedWeights w, int M)
    {
        int N = w.N, K = w.K, groups = w.Groups, panels = (N + PanelColumns - 1) / PanelColumns;
        Span<byte> shifted = stackalloc byte[groups * GroupBytes]; // a row + 128, zero-padded past K
        Span<int> lanes = stackalloc int[PanelColumns];
        fixed (sbyte* panelsStart = w.Panels)
        fixed (byte* row = shifted)
        {
            for (int m = 0; m < M; m++)
            {
                shifted.Clear();
                for (int k = 0; k < K; k++) shifted[k] = (byte)(a[m * K + k] + 128);
                for (int p = 0; p < panels; p++)
                {
                    var acc = Vector256<int>.Zero;
                    sbyte* panel = panelsStart + (long)p * groups * PanelColumns * GroupBytes;
                    for (int g = 0; g < groups; g++)
                    {
                        // The same 4 activation bytes against 8 columns' 4 weights: one vpdpbusd.
                        var activations = Vector256.Create(*(int*)(row + g * GroupBytes)).AsByte();
                        acc = AvxVnni.MultiplyWideningAndAdd(acc, activations, Vector256.Load(panel + g * PanelColumns * GroupBytes));
                    }
                    acc.CopyTo(lanes);
                    for (int j = 0, n = p * PanelColumns; j < PanelColumns && n < N; j++, n++)
                        c[m * N + n] = lanes[j] - 128 * w.ColumnSums[n]; // (a + 128)·w − 128·Σw = a·w
                }
            }
        }
    }

    private static void MultiplyPortable(Span<int> c, ReadOnlySpan<sbyte> a, PackedWeights w, int M)
    {
        int N = w.N, K = w.K, groups = w.Groups;
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
            {
                int panel = n / PanelColumns, column = n % PanelColumns, sum = 0;
                for (int k = 0; k < K; k++)
                    sum += a[m * K + k] * w.Panels[((panel * groups + k / GroupBytes) * PanelColumns + column) * GroupBytes + k % GroupBytes];
                c[m * N + n] = sum;
            }
    }
}
