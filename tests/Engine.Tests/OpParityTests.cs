using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Reference;

namespace Engine.Tests;

/// <summary>
/// Every op of a backend against its float64 reference over the whole <see cref="OpCases"/> catalogue.
/// Outputs are poisoned with NaN first, so an element the op fails to write fails the test.
/// One thin subclass per backend; a backend whose device is absent is skipped with the reason shown.
/// </summary>
// The case lists are static members of each concrete subclass, which xunit reads from the test class.
#pragma warning disable xUnit1015
public abstract class OpParityTests : IDisposable
{
    private readonly IBackend? _device;
    private readonly string? _skipReason;

    /// <param name="backend">The backend under test, or null when its device is absent.</param>
    /// <param name="skipReason">Why the tests are skipped when <paramref name="backend"/> is null.</param>
    protected OpParityTests(IBackend? backend, string? skipReason = null)
    {
        _device = backend;
        _skipReason = backend is null ? skipReason ?? "no device" : null;
    }

    /// <summary>The backend under test; skips the test when its device is absent.</summary>
    private IBackend _backend
    {
        get
        {
            Skip.If(_skipReason is not null, _skipReason);
            return _device!;
        }
    }

    // Each subclass names its own case lists (xunit reads them from the concrete test class): all cases
    // by default, Names(..., OpCases.EmulatorWork) for the ILGPU CPU emulator.
    public static TheoryData<string> Names(IEnumerable<IOpCase> cases, long maxWork = long.MaxValue) =>
        [.. cases.Where(c => c.Work <= maxWork).Select(c => c.Name)];

    public static TheoryData<int, string> ActivationCases
    {
        get
        {
            var data = new TheoryData<int, string>();
            foreach (int n in OpCases.ActivationLengths)
                foreach (string activation in new[] { "gelu", "tanh" }) data.Add(n, activation);
            return data;
        }
    }

    [SkippableTheory, MemberData("LinearCases")]
    public void Linear(string name)
    {
        var (c, input, weight, bias) = LinearInputs(name);
        var output = Poisoned(c.M * c.N);
        _backend.Linear(output, Upload(input), Upload(weight), bias is null ? null : Upload(bias), c.M, c.K, c.N, Parse(c.Activation));
        AssertClose(ReferenceOps.Linear(input, weight, bias, c.M, c.K, c.N, c.Activation), Download(output), OpCases.LinearTolerance, name);
    }

    [SkippableFact]
    public void LinearRepacksAfterTheWeightChanges()
    {
        var input = OpCases.Random(6 * 9, 1);
        var weight = OpCases.Random(5 * 9, 2);
        var weightBuffer = Upload(weight);
        var output = Poisoned(6 * 5);
        _backend.Linear(output, Upload(input), weightBuffer, null, 6, 9, 5, Activation.None);
        weight = OpCases.Random(5 * 9, 3);
        _backend.Upload<float>(weight, weightBuffer);
        _backend.Linear(output, Upload(input), weightBuffer, null, 6, 9, 5, Activation.None);
        AssertClose(ReferenceOps.Linear(input, weight, null, 6, 9, 5, "none"), Download(output), OpCases.LinearTolerance, "updated weight");
    }

    [SkippableTheory, MemberData(nameof(ActivationCases))]
    public void Activate(int n, string activation)
    {
        var input = OpCases.Random(n, 4, 6f);
        var output = Poisoned(n);
        _backend.Activate(output, Upload(input), n, Parse(activation));
        AssertClose([.. input.Select(x => ReferenceOps.Activate(x, activation))], Download(output), OpCases.ActivationTolerance, activation);
    }

    [SkippableTheory, MemberData("AttentionCases")]
    public void Attention(string name)
    {
        var c = OpCases.Attention.Single(x => x.Name == name);
        int C = c.NH * c.HS;
        var qkv = OpCases.Random(c.B * c.T * 3 * C, 5, 2f);
        var mask = OpCases.Mask(c.Lengths, c.T);
        var output = Poisoned(c.B * c.T * C);
        _backend.Attention(output, Upload(qkv), Upload(mask), c.B, c.T, c.NH, c.HS);
        AssertClose(ReferenceOps.Attention(qkv, mask, c.B, c.T, c.NH, c.HS), Download(output), OpCases.AttentionTolerance, name);
    }

    [SkippableFact]
    public void AttentionIgnoresWhatPaddedKeysHold()
    {
        const int B = 1, T = 6, NH = 2, HS = 3, C = NH * HS;
        var qkv = OpCases.Random(B * T * 3 * C, 6);
        var mask = OpCases.Mask([4], T);
        var first = Poisoned(B * T * C);
        _backend.Attention(first, Upload(qkv), Upload(mask), B, T, NH, HS);
        for (int t = 4; t < T; t++)
            for (int i = 0; i < 3 * C; i++) qkv[t * 3 * C + i] = 1e4f;
        var second = Poisoned(B * T * C);
        _backend.Attention(second, Upload(qkv), Upload(mask), B, T, NH, HS);
        Assert.Equal(Download(first).AsSpan(0, 4 * C).ToArray(), Download(second).AsSpan(0, 4 * C).ToArray());
    }

    [SkippableTheory, MemberData("LayerNormCases")]
    public void LayerNorm(string name)
    {
        var c = OpCases.LayerNorm.Single(x => x.Name == name);
        var input = OpCases.Random(c.N * c.C, 7, 3f);
        var residual = c.Residual ? OpCases.Random(c.N * c.C, 8) : null;
        var weight = OpCases.Random(c.C, 9);
        var bias = OpCases.Random(c.C, 10);
        var output = Poisoned(c.N * c.C);
        _backend.LayerNorm(output, Upload(input), residual is null ? null : Upload(residual), Upload(weight), Upload(bias), c.N, c.C, 1e-12f);
        AssertClose(ReferenceOps.LayerNorm(input, residual, weight, bias, c.N, c.C, 1e-12), Download(output), OpCases.LayerNormTolerance, name);
    }

    [SkippableTheory, MemberData("EmbeddingsCases")]
    public void Embeddings(string name)
    {
        var c = OpCases.Embeddings.Single(x => x.Name == name);
        var random = new Random(11);
        var ids = Enumerable.Range(0, c.B * c.T).Select(_ => random.Next(c.V)).ToArray();
        var types = Enumerable.Range(0, c.B * c.T).Select(_ => random.Next(c.TypeVocab)).ToArray();
        var word = OpCases.Random(c.V * c.C, 12);
        var position = OpCases.Random(c.T * c.C, 13);
        var tokenType = OpCases.Random(c.TypeVocab * c.C, 14);
        var output = Poisoned(c.B * c.T * c.C);
        _backend.Embeddings(output, Upload(ids), Upload(types), Upload(word), Upload(position), Upload(tokenType), c.B, c.T, c.C);
        AssertClose(ReferenceOps.Embeddings(ids, types, word, position, tokenType, c.B, c.T, c.C), Download(output), OpCases.EmbeddingsTolerance, name);
    }

    [SkippableFact]
    public void FirstToken()
    {
        const int B = 3, T = 5, C = 7;
        var input = OpCases.Random(B * T * C, 15);
        var output = Poisoned(B * C);
        _backend.FirstToken(output, Upload(input), B, T, C);
        AssertClose(ReferenceOps.FirstToken(input, B, T, C), Download(output), new Tolerance(0, 0), "first token");
    }

    /// <summary>A Linear case of the catalogue with its random inputs.</summary>
    internal static (LinearCase Case, float[] Input, float[] Weight, float[]? Bias) LinearInputs(string name)
    {
        var c = OpCases.Linear.Single(x => x.Name == name);
        return (c, OpCases.Random(c.M * c.K, 1), OpCases.Random(c.N * c.K, 2, 0.5f), c.Bias ? OpCases.Random(c.N, 3) : null);
    }

    internal static Activation Parse(string activation) => activation switch
    {
        "none" => Activation.None,
        "gelu" => Activation.Gelu,
        "tanh" => Activation.Tanh,
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };

    private DeviceBuffer<T> Upload<T>(T[] values) where T : unmanaged
    {
        var buffer = _backend.Allocate<T>(values.Length);
        _backend.Upload<T>(values, buffer);
        return buffer;
    }

    private DeviceBuffer<float> Poisoned(int length) => Upload(Enumerable.Repeat(float.NaN, length).ToArray());

    private float[] Download(DeviceBuffer<float> buffer)
    {
        var values = new float[buffer.Length];
        _backend.Download(buffer, values);
        return values;
    }

    internal static void AssertClose(double[] expected, float[] actual, Tolerance tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double error = Math.Abs(actual[i] - expected[i]);
            if (!(error <= tolerance.Absolute + tolerance.Relative * Math.Abs(expected[i])))
                Assert.Fail($"{what}: element {i} is {actual[i]}, reference {expected[i]} (|Δ| {error:E2} over tolerance {tolerance})");
        }
    }

    public void Dispose()
    {
        _device?.Dispose();
        GC.SuppressFinalize(this);
    }
}

#pragma warning restore xUnit1015

public sealed class CpuOpParityTests() : OpParityTests(new CpuBackend())
{
    public static TheoryData<string> LinearCases => Names(OpCases.Linear);
    public static TheoryData<string> AttentionCases => Names(OpCases.Attention);
    public static TheoryData<string> LayerNormCases => Names(OpCases.LayerNorm);
    public static TheoryData<string> EmbeddingsCases => Names(OpCases.Embeddings);

    public static TheoryData<int, string> GemmWidthCases
    {
        get
        {
            var data = new TheoryData<int, string>();
            foreach (int width in new[] { 16, 8, 4 })
                foreach (var c in OpCases.Linear) data.Add(width, c.Name);
            return data;
        }
    }

    /// <summary>The 512-, 256- and 128-bit GEMM kernels (8- and 6-row tiles), whichever this machine runs by default.</summary>
    [SkippableTheory, MemberData(nameof(GemmWidthCases))]
    public void GemmAtEveryVectorWidth(int width, string name)
    {
        bool accelerated = width switch
        {
            16 => System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated,
            8 => System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated,
            _ => System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated,
        };
        if (!accelerated) return; // emulated vectors would only be slow, not different
        var (c, input, weight, bias) = LinearInputs(name);
        var output = Enumerable.Repeat(float.NaN, c.M * c.N).ToArray();
        CpuGemm.Multiply(output, input, CpuGemm.Pack(weight, c.N, c.K, width), bias, c.M, c.K, c.N, Parse(c.Activation), width);
        AssertClose(ReferenceOps.Linear(input, weight, bias, c.M, c.K, c.N, c.Activation), output, OpCases.LinearTolerance, $"{name} at width {width}");
    }
}
