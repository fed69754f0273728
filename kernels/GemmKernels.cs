// GEMM: C[i] (M,N) = act(opA(A[i]) · opB(B[i]) + bias (N)) for each batch item i (grid z), where
// opA(A) is A (M,K) or, transposed, A stored (K,M); opB(B) is B stored (N,K) (PyTorch's Linear weight,
// "transposed") or (K,N). Strided-batched: items sit StrideA/B/C elements apart (attention's per-head
// products, backward's dX = dY·W and dW = dYᵀ·X).
//
// Shapes: for a Linear, M = B·T rows, K in-features, N out-features, one item. Nothing cached.
// Tiling: a 64×64 tile of C per group of 16×16 threads; each thread accumulates a 4×4 register block
// (rows ty+16i, columns tx+16j, so shared reads are broadcast or consecutive and stores coalesce); K is
// walked in slices of 16 staged through shared memory (A slice stored k-major). Sizes that are not tile
// multiples load zeros and skip out-of-range stores. Bias and activation are fused into the epilogue, which
// also stores the pre-activation when training asks for it.
// Staging maps consecutive threads to consecutive addresses in either layout, so global loads coalesce.
// History: v1 shared-memory tiled, 4×4 register blocking, C = A·Wᵀ only; v2 both layouts of each
// operand and strided batches; v3 an accumulate flag (C += A·B, for parameter gradients); v4 the pre-activation
// kept by the epilogue for training (this version).
using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels;

internal static class GemmKernels
{
    public const int Tile = 64, Slice = 16, Threads = 16;

    /// <summary>Sizes, layouts and flags of one batched product (one struct: ILGPU kernels take at most 14 parameters).</summary>
    /// <remarks>
    /// <c>Accumulate</c>: C += product (a parameter gradient) instead of C = product. <c>KeepPreActivation</c>: the
    /// pre-activation (product + bias) is also stored, in the same layout, for the activation's backward.
    /// </remarks>
    public readonly record struct Shape(int Batch, int M, int K, int N, int TransposeA, int TransposeB,
        long StrideA, long StrideB, long StrideC, int HasBias, int Activation, int Accumulate, int KeepPreActivation);

    /// <summary>A Linear: C (M,N) = act(A (M,K) · W (N,K)ᵀ + bias), the pre-activation kept when asked.</summary>
    public static Shape Linear(int M, int K, int N, bool hasBias, int activation, bool keepPreActivation) =>
        new(1, M, K, N, 0, 1, (long)M * K, (long)N * K, (long)M * N, hasBias ? 1 : 0, activation, 0, keepPreActivation ? 1 : 0);

    /// <summary>A product of the MatMul op, assigned or accumulated.</summary>
    public static Shape Product(Engine.Backends.MatMulShape s, bool accumulate) =>
        new(s.Batch, s.M, s.K, s.N, s.TransposeA ? 1 : 0, s.TransposeB ? 1 : 0, s.StrideA, s.StrideB, s.StrideC, 0, ActivationKernels.None, accumulate ? 1 : 0, 0);

    public static KernelConfig Config(Shape s) =>
        new(new Index3D((s.N + Tile - 1) / Tile, (s.M + Tile - 1) / Tile, s.Batch), new Index3D(Threads, Threads, 1));

    /// <summary>One 64×64 tile of one batch item's C; w is the B operand (a Linear's weight).</summary>
    /// <param name="pre">(M,N): the pre-activation, written when <c>KeepPreActivation</c> (a single-item Linear).</param>
    public static void Kernel(ArrayView<float> c, ArrayView<float> pre, ArrayView<float> a, ArrayView<float> w, ArrayView<float> bias, Shape s)
    {
        var aSlice = SharedMemory.Allocate1D<float>(Slice * Tile); // (Slice, Tile): k-major rows of A
        var wSlice = SharedMemory.Allocate1D<float>(Slice * Tile); // (Slice, Tile): k-major rows of W
        int tx = Group.IdxX, ty = Group.IdxY, thread = ty * Threads + tx;
        int rowBase = Grid.IdxY * Tile, colBase = Grid.IdxX * Tile;
        long item = Grid.IdxZ;
        var aItem = a.SubView(item * s.StrideA, (long)s.M * s.K);
        var bItem = w.SubView(item * s.StrideB, (long)s.K * s.N);

        float c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        float c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        for (int k0 = 0; k0 < s.K; k0 += Slice)
        {
            // Each of the 256 threads stages 4 elements of each slice, consecutive threads on consecutive
            // addresses: along k for a row-major A or an (N,K) B, along rows/columns otherwise.
            for (int e = thread; e < Slice * Tile; e += Threads * Threads)
            {
                int r = s.TransposeA != 0 ? e % Tile : e / Slice, kk = s.TransposeA != 0 ? e / Tile : e % Slice;
                int row = rowBase + r, k = k0 + kk;
                aSlice[kk * Tile + r] = row < s.M && k < s.K
                    ? aItem[s.TransposeA != 0 ? (long)k * s.M + row : (long)row * s.K + k] : 0f;
                r = s.TransposeB != 0 ? e / Slice : e % Tile;
                kk = s.TransposeB != 0 ? e % Slice : e / Tile;
                int col = colBase + r;
                k = k0 + kk;
                wSlice[kk * Tile + r] = col < s.N && k < s.K
                    ? bItem[s.TransposeB != 0 ? (long)col * s.K + k : (long)k * s.N + col] : 0f;
            }
            Group.Barrier();
            for (int kk = 0; kk < Slice; kk++)
            {
                float a0 = aSlice[kk * Tile + ty], a1 = aSlice[kk * Tile + ty + 16], a2 = aSlice[kk * Tile + ty + 32], a3 = aSlice[kk * Tile + ty + 48];
                float b0 = wSlice[kk * Tile + tx], b1 = wSlice[kk * Tile + tx + 16], b2 = wSlice[kk * Tile + tx + 32], b3 = wSlice[kk * Tile + tx + 48];
                c00 += a0 * b0; c01 += a0 * b1; c02 += a0 * b2; c03 += a0 * b3;
                c10 += a1 * b0; c11 += a1 * b1; c12 += a1 * b2; c13 += a1 * b3;
                c20 += a2 * b0; c21 += a2 * b1; c22 += a2 * b2; c23 += a2 * b3;
                c30 += a3 * b0; c31 += a3 * b1; c32 += a3 * b2; c33 += a3 * b3;
            }
            Group.Barrier();
        }
        var cItem = c.SubView(item * s.StrideC, (long)s.M * s.N);
        Store(cItem, pre, bias, s, rowBase + ty, colBase + tx, c00, c01, c02, c03);
        Store(cItem, pre, bias, s, rowBase + ty + 16, colBase + tx, c10, c11, c12, c13);
        Store(cItem, pre, bias, s, rowBase + ty + 32, colBase + tx, c20, c21, c22, c23);
        Store(cItem, pre, bias, s, rowBase + ty + 48, colBase + tx, c30, c31, c32, c33);
    }

    /// <summary>Epilogue for one row of a thread's block: columns col, col+16, col+32, col+48.</summary>
    private static void Store(ArrayView<float> c, ArrayView<float> pre, ArrayView<float> bias, Shape s, int row, int col, float v0, float v1, float v2, float v3)
    {
        if (row >= s.M) return;
        StoreOne(c, pre, bias, s, row, col, v0);
        StoreOne(c, pre, bias, s, row, col + 16, v1);
        StoreOne(c, pre, bias, s, row, col + 32, v2);
        StoreOne(c, pre, bias, s, row, col + 48, v3);
    }

    private static void StoreOne(ArrayView<float> c, ArrayView<float> pre, ArrayView<float> bias, Shape s, int row, int col, float value)
    {
        if (col >= s.N) return;
        if (s.HasBias != 0) value += bias[col];
        long index = (long)row * s.N + col;
        if (s.KeepPreActivation != 0) pre[index] = value;
        c[index] = s.Accumulate != 0 ? c[index] + value : ActivationKernels.Apply(value, s.Activation);
    }
}
