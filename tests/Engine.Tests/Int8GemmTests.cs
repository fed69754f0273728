using Engine.Backends.Cpu;

namespace Engine.Tests;

/// <summary>The CPU int8 product against exact integer arithmetic: odd sizes, the saturation edges −128 and 127, AVX-VNNI and the portable loop alike.</summary>
public sealed class Int8GemmTests
{
    private static long[] Reference(sbyte[] a, sbyte[] w, int M, int K, int N)
    {
        var c = new long[M * N];
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
                for (int k = 0; k < K; k++) c[m * N + n] += (long)a[m * K + k] * w[n * K + k];
        return c;
    }

    private static sbyte[] Values(int length, int seed, Func<Random, sbyte>? draw = null)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, length).Select(_ => draw?.Invoke(random) ?? (sbyte)random.Next(-128, 128))];
    }

    public static TheoryData<int, int, int, string> Cases => new()
    {
        { 1, 1, 1, "random" }, { 3, 5, 7, "random" }, { 13, 37, 33, "random" }, { 64, 384, 96, "random" }, { 5, 3072, 9, "random" },
        { 7, 19, 11, "all -128" }, { 7, 19, 11, "all 127" }, { 6, 1027, 10, "edges" }, { 2, 65536, 3, "all -128" }, { 2, 65536, 3, "127 by -128" },
    };

    [Theory, MemberData(nameof(Cases))]
    public void ProductsAreExactOnEveryPath(int M, int K, int N, string kind)
    {
        Func<Random, sbyte>? draw = kind switch
        {
            "all -128" => _ => -128,
            "all 127" => _ => 127,
            "edges" => r => r.Next(2) == 0 ? (sbyte)-128 : (sbyte)127,
            _ => null,
        };
        // "127 by -128": the largest shifted sum vpdpbusd accumulates, 255 · −128 · K.
        var (a, w) = kind == "127 by -128" ? (Values(M * K, 1, _ => 127), Values(N * K, 2, _ => -128)) : (Values(M * K, 1, draw), Values(N * K, 2, draw));
        var expected = Reference(a, w, M, K, N);
        var packed = CpuInt8Gemm.Pack(w, N, K);
        foreach (bool vnni in new[] { true, false })
        {
            var c = new int[M * N];
            CpuInt8Gemm.Multiply(c, a, packed, M, useVnni: vnni);
            Assert.Equal(expected, c.Select(v => (long)v));
        }
    }

    [Fact]
    public void SizesThatWouldOverflowOrShortBuffersAreRefused()
    {
        Assert.Throws<ArgumentException>(() => CpuInt8Gemm.Pack(new sbyte[65537], 1, 65537));
        Assert.Throws<ArgumentException>(() => CpuInt8Gemm.Pack(new sbyte[5], 2, 3));
        var packed = CpuInt8Gemm.Pack(new sbyte[6], 2, 3);
        Assert.Throws<ArgumentException>(() => CpuInt8Gemm.Multiply(new int[3], new sbyte[6], packed, 2));
    }
}
