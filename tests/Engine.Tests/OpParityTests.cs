using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Reference;

namespace Engine.Tests;

/// <summary>
/// Every op of a backend against its float64 reference over the <see cref="OpCases"/> catalogue, through
/// <see cref="ParityCheck"/> (outputs poisoned with NaN first, every element compared). One thin subclass
/// per backend; a backend whose device is absent is skipped with the reason shown.
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

    /// <summary>The check on the backend under test; skips the test when its device is absent.</summary>
    private ParityCheck Check
    {
        get
        {
            Skip.If(_skipReason is not null, _skipReason);
            return new ParityCheck(_device!);
        }
    }

    /// <summary>Case names for a subclass's lists: all by default, the small ones for the ILGPU CPU emulator.</summary>
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

    private static void AssertPassed(ParityResult result) => Assert.True(result.Passed, result.ToString());

    [SkippableTheory, MemberData("LinearCases")]
    public void Linear(string name) => AssertPassed(Check.Linear(OpCases.Linear.Single(c => c.Name == name)));

    [SkippableTheory, MemberData("MatMulCases")]
    public void MatMul(string name) => AssertPassed(Check.MatMul(OpCases.MatMul.Single(c => c.Name == name)));

    [SkippableFact]
    public void LinearUsesTheWeightAsUploadedLast() => AssertPassed(Check.LinearAfterWeightUpdate());

    [SkippableTheory, MemberData(nameof(ActivationCases))]
    public void Activate(int n, string activation) => AssertPassed(Check.Activate(n, activation));

    [SkippableTheory, MemberData("SoftmaxCases")]
    public void Softmax(string name) => AssertPassed(Check.Softmax(OpCases.Softmax.Single(c => c.Name == name)));

    [SkippableTheory, MemberData("AttentionCases")]
    public void Attention(string name) => AssertPassed(Check.Attention(OpCases.Attention.Single(c => c.Name == name)));

    [SkippableFact]
    public void AttentionIgnoresWhatPaddedKeysHold() => AssertPassed(Check.AttentionIgnoresPaddedKeys());

    [SkippableTheory, MemberData("LayerNormCases")]
    public void LayerNorm(string name) => AssertPassed(Check.LayerNorm(OpCases.LayerNorm.Single(c => c.Name == name)));

    [SkippableTheory, MemberData("EmbeddingsCases")]
    public void Embeddings(string name) => AssertPassed(Check.Embeddings(OpCases.Embeddings.Single(c => c.Name == name)));

    [SkippableFact]
    public void FirstToken() => AssertPassed(Check.FirstToken());

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
    public static TheoryData<string> MatMulCases => Names(OpCases.MatMul);
    public static TheoryData<string> SoftmaxCases => Names(OpCases.Softmax);
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
        Skip.IfNot(accelerated, $"{width * 32}-bit vectors are not hardware-accelerated here");
        var c = OpCases.Linear.Single(x => x.Name == name);
        var (input, weight, bias) = OpCases.LinearInputs(c);
        var output = Enumerable.Repeat(float.NaN, c.M * c.N).ToArray();
        CpuGemm.Multiply(output, input, CpuGemm.Pack(weight, c.N, c.K, width), bias is null ? (ArraySegment<float>?)null : new ArraySegment<float>(bias), c.M, c.K, c.N, OpCases.ParseActivation(c.Activation), width);
        var result = ParityCheck.Compare("linear", $"{name} at width {width}", ReferenceOps.Linear(input.AsDoubles(), weight.AsDoubles(), bias?.AsDoubles(), c.M, c.K, c.N, c.Activation), output, OpCases.LinearTolerance);
        Assert.True(result.Passed, result.ToString());
    }

    /// <summary>
    /// GELU and its backward never write subnormal floats (they slow every later multiply-add ~10×). In the far
    /// tail float's x²/2 limits the relative accuracy (2e-5 at x = −12), and where exp's result is itself
    /// subnormal (x &lt; −13.1) only absolute accuracy is left: within 1e-37 of the reference.
    /// </summary>
    [Fact]
    public void GeluWritesNoSubnormals()
    {
        var x = Enumerable.Range(0, 3001).Select(i => -30f + i * 0.01f).ToArray();
        var (forward, backward) = (new float[x.Length], new float[x.Length]);
        CpuActivations.Apply(x, forward, Engine.Backends.Activation.Gelu);
        CpuActivations.GeluBackward(Enumerable.Repeat(1f, x.Length).ToArray(), x, backward);
        for (int i = 0; i < x.Length; i++)
        {
            Assert.False(float.IsSubnormal(forward[i]) || float.IsSubnormal(backward[i]), $"x = {x[i]}: {forward[i]}, {backward[i]}");
            Assert.True(Math.Abs(forward[i] - ReferenceOps.Activate(x[i], "gelu")) <= 1e-37 + 2e-5 * Math.Abs(ReferenceOps.Activate(x[i], "gelu")), $"x = {x[i]}: {forward[i]} vs {ReferenceOps.Activate(x[i], "gelu")}");
        }
        Assert.Equal(0f, forward[0]);
        Assert.NotEqual(0f, forward[1700]); // x = −13: GELU ≈ −8e-38, still normal
    }
}
