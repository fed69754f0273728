using System.Runtime.CompilerServices;

namespace Engine.Backends.Cpu;

/// <summary>
/// C (M,N) = A (M,K) · W (N,K)ᵀ + bias, the CPU backend's matrix product.
/// </summary>
/// <remarks>
/// W is packed once into column panels of 2·SIMD-width columns laid out k-major ((N/NR, K, NR), zero-padded),
/// so the micro-kernel streams it contiguously; each 6×NR tile of C keeps 12 vector accumulators in
/// registers and reads one broadcast A element per row per k. Work is split into (48-row chunk, panel)
/// items over all cores. Version 1: no K blocking (BERT's K ≤ 4096 fits a panel in L2).
/// </remarks>
internal static unsafe class CpuGemm
{
    private const int MR = 6;
    private const int RowChunk = 8 * MR;

    /// <summary>W (N,K) packed as (ceil(N/NR), K, NR), NR = 2·<see cref="Simd.Width"/>.</summary>
    public static float[] Pack(ReadOnlySpan<float> weight, int N, int K)
    {
        int nr = 2 * Simd.Width;
        int panels = (N + nr - 1) / nr;
        var packed = GC.AllocateUninitializedArray<float>(panels * K * nr);
        for (int p = 0; p < panels; p++)
            for (int k = 0; k < K; k++)
            {
                int baseIndex = (p * K + k) * nr;
                for (int j = 0; j < nr; j++)
                {
                    int n = p * nr + j;
                    packed[baseIndex + j] = n < N ? weight[n * K + k] : 0f;
                }
            }
        return packed;
    }

    public static void Multiply(float[] c, float[] a, float[] packedWeight, float[]? bias, int M, int K, int N, Activation activation)
    {
        switch (Simd.Width)
        {
            case 16: Multiply<Simd512>(c, a, packedWeight, bias, M, K, N, activation); break;
            case 8: Multiply<Simd256>(c, a, packedWeight, bias, M, K, N, activation); break;
            default: Multiply<Simd128>(c, a, packedWeight, bias, M, K, N, activation); break;
        }
    }

    private static void Multiply<V>(float[] c, float[] a, float[] packedWeight, float[]? bias, int M, int K, int N, Activation activation)
        where V : struct, ISimd<V>
    {
        int nr = 2 * V.Count;
        int panels = (N + nr - 1) / nr;
        int chunks = (M + RowChunk - 1) / RowChunk;
        Parallel.For(0, chunks * panels, item =>
        {
            int chunk = item / panels, panel = item % panels;
            int rowStart = chunk * RowChunk, rowEnd = Math.Min(M, rowStart + RowChunk);
            int col = panel * nr, cols = Math.Min(nr, N - col);
            float* tile = stackalloc float[MR * nr];
            fixed (float* pa = a, pw = packedWeight, pc = c)
            {
                float* panelStart = pw + (long)panel * K * nr;
                for (int row = rowStart; row < rowEnd; row += MR)
                {
                    int rows = Math.Min(MR, rowEnd - row);
                    if (rows == MR) Tile<V>(pa + (long)row * K, K, panelStart, tile, nr);
                    else PartialTile<V>(pa + (long)row * K, K, rows, panelStart, tile, nr);
                    for (int r = 0; r < rows; r++)
                    {
                        var destination = new Span<float>(pc + (long)(row + r) * N + col, cols);
                        var source = new ReadOnlySpan<float>(tile + r * nr, cols);
                        if (bias is null) source.CopyTo(destination);
                        else System.Numerics.Tensors.TensorPrimitives.Add(source, bias.AsSpan(col, cols), destination);
                        if (activation != Activation.None) CpuActivations.Apply(destination, destination, activation);
                    }
                }
            }
        });
    }

    /// <summary>tile (6, NR) = A rows (6, K) · panel (K, NR).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Tile<V>(float* a, int K, float* panel, float* tile, int nr) where V : struct, ISimd<V>
    {
        int w = V.Count;
        V c00 = V.Zero, c01 = V.Zero, c10 = V.Zero, c11 = V.Zero, c20 = V.Zero, c21 = V.Zero;
        V c30 = V.Zero, c31 = V.Zero, c40 = V.Zero, c41 = V.Zero, c50 = V.Zero, c51 = V.Zero;
        float* a0 = a, a1 = a + K, a2 = a + 2 * K, a3 = a + 3 * K, a4 = a + 4 * K, a5 = a + 5 * K;
        float* b = panel;
        for (int k = 0; k < K; k++, b += nr)
        {
            V b0 = V.Load(b), b1 = V.Load(b + w);
            V x = V.Broadcast(a0 + k); c00 = V.FusedMultiplyAdd(x, b0, c00); c01 = V.FusedMultiplyAdd(x, b1, c01);
            x = V.Broadcast(a1 + k); c10 = V.FusedMultiplyAdd(x, b0, c10); c11 = V.FusedMultiplyAdd(x, b1, c11);
            x = V.Broadcast(a2 + k); c20 = V.FusedMultiplyAdd(x, b0, c20); c21 = V.FusedMultiplyAdd(x, b1, c21);
            x = V.Broadcast(a3 + k); c30 = V.FusedMultiplyAdd(x, b0, c30); c31 = V.FusedMultiplyAdd(x, b1, c31);
            x = V.Broadcast(a4 + k); c40 = V.FusedMultiplyAdd(x, b0, c40); c41 = V.FusedMultiplyAdd(x, b1, c41);
            x = V.Broadcast(a5 + k); c50 = V.FusedMultiplyAdd(x, b0, c50); c51 = V.FusedMultiplyAdd(x, b1, c51);
        }
        c00.Store(tile); c01.Store(tile + w); tile += nr;
        c10.Store(tile); c11.Store(tile + w); tile += nr;
        c20.Store(tile); c21.Store(tile + w); tile += nr;
        c30.Store(tile); c31.Store(tile + w); tile += nr;
        c40.Store(tile); c41.Store(tile + w); tile += nr;
        c50.Store(tile); c51.Store(tile + w);
    }

    /// <summary>The last rows of a chunk, fewer than 6: one row at a time.</summary>
    private static void PartialTile<V>(float* a, int K, int rows, float* panel, float* tile, int nr) where V : struct, ISimd<V>
    {
        int w = V.Count;
        for (int r = 0; r < rows; r++)
        {
            V c0 = V.Zero, c1 = V.Zero;
            float* ar = a + (long)r * K, b = panel;
            for (int k = 0; k < K; k++, b += nr)
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
