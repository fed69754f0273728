using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Reference;

namespace Engine.Tests;

/// <summary>
/// The backend × case matrix: every <see cref="OpCase"/> of the catalogue, forward and backward, on a backend against
/// its float64 reference (outputs poisoned with NaN first, every element compared). One thin subclass per backend
/// lists the cases it runs; a backend whose device is absent is skipped with the reason shown.
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
    private IBackend Backend
    {
        get
        {
            Skip.If(_skipReason is not null, _skipReason);
            return _device!;
        }
    }

    /// <summary>The ids of the catalogue's forward cases (within <paramref name="emulatorBudget"/> seconds on the emulator, for it).</summary>
    public static TheoryData<string> ForwardIds(double emulatorBudget = double.MaxValue) =>
        [.. OpCases.All.Where(c => c.HasForward && c.EmulatorSeconds <= emulatorBudget).Select(c => c.Id)];

    public static TheoryData<string> BackwardIds(double emulatorBudget = double.MaxValue) =>
        [.. OpCases.All.Where(c => c.HasBackward && c.EmulatorBackwardSeconds <= emulatorBudget).Select(c => c.Id)];

    private static void AssertPassed(ParityResult result) => Assert.True(result.Passed, result.ToString());

    [SkippableTheory, MemberData("ForwardCases")]
    public void Forward(string id) => AssertPassed(OpCases.Find(id).Forward(Backend));

    [SkippableTheory, MemberData("BackwardCases")]
    public void Backward(string id) => AssertPassed(OpCases.Find(id).Backward((ITrainingBackend)Backend));

    [SkippableFact]
    public void ClearZeroesEveryElement()
    {
        var backend = (ITrainingBackend)Backend;
        var buffer = backend.UploadArray(OpCases.Random(1001, 44));
        backend.Clear(buffer);
        Assert.All(backend.DownloadArray(buffer), v => Assert.Equal(0f, v));
    }

    /// <summary>A buffer too short for the op's sizes is one error naming it (OpShapes), before anything is read or written.</summary>
    [SkippableFact]
    public void ShortBuffersAreRejectedByName()
    {
        var backend = (ITrainingBackend)Backend;
        DeviceBuffer<float> F(int n) => backend.Allocate<float>(n);
        var mask = backend.UploadArray(new[] { 1, 1, 1, 1 });
        void Throws(string name, Action op) => Assert.StartsWith($"{name} holds", Assert.Throws<ArgumentException>(op).Message);
        var padded = SequenceLayout.Padded(mask, 2, 2);
        Throws("qkv", () => backend.Attention(F(2 * 2 * 8), F(2 * 2 * 24 - 1), padded, 2, 4, DropoutMask.None));
        Throws("dQkv", () => backend.AttentionBackward(F(10), F(2 * 2 * 8), F(2 * 2 * 24), padded, 2, 4, DropoutMask.None));
        Throws("sequenceStarts", () => backend.Attention(F(3 * 8), F(3 * 24), SequenceLayout.Packed(backend.UploadArray(new[] { 0, 3 }), 2, 2, 3), 2, 4, DropoutMask.None));
        Throws("dWeight", () => backend.LinearBackward(F(9), F(5), F(2), F(6), F(9), F(6), 3, 3, 2));
        Throws("dBias", () => backend.LayerNormBackward(F(6), F(3), F(2), F(6), F(6), null, F(3), 2, 3, 1e-5f));
        Throws("targets", () => backend.MeanSquaredError(F(4), F(4), F(4), F(3), 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => backend.Dropout(F(4), F(4), 4, new DropoutMask(1f, 1, 0)));
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
    public static TheoryData<string> ForwardCases => ForwardIds();
    public static TheoryData<string> BackwardCases => BackwardIds();

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
        SkipUnlessAccelerated(width);
        var c = OpCases.Linear.Single(x => x.Name == name);
        var (input, weight, bias) = c.Inputs;
        var output = Enumerable.Repeat(float.NaN, c.M * c.N).ToArray();
        CpuGemm.Multiply(output, input, CpuGemm.Pack(weight, c.N, c.K, width), bias is null ? (ArraySegment<float>?)null : new ArraySegment<float>(bias), c.M, c.K, c.N, OpCases.ParseActivation(c.Activation), width);
        var result = ParityCheck.Compare("linear", $"{name} at width {width}", ReferenceOps.Linear(input.AsDoubles(), weight.AsDoubles(), bias?.AsDoubles(), c.M, c.K, c.N, c.Activation), output, OpCases.LinearTolerance);
        Assert.True(result.Passed, result.ToString());
    }

    private static void SkipUnlessAccelerated(int width) => Skip.IfNot(width switch
    {
        16 => System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated,
        8 => System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated,
        _ => System.Runtime.Intrinsics.Vector128.IsHardwareAccelerated,
    }, $"{width * 32}-bit vectors are not hardware-accelerated here");

    public static TheoryData<int, string> TransposedGemmWidthCases
    {
        get
        {
            var data = new TheoryData<int, string>();
            foreach (int width in new[] { 16, 8, 4 })
                foreach (var c in OpCases.MatMul.Where(c => c.Shape.TransposeA && c.Shape.Batch == 1)) data.Add(width, c.Name);
            return data;
        }
    }

    /// <summary>A stored transposed (a weight gradient's output gradient), read through strides and packed per K block, at every vector width.</summary>
    [SkippableTheory, MemberData(nameof(TransposedGemmWidthCases))]
    public void TransposedGemmAtEveryVectorWidth(int width, string name)
    {
        SkipUnlessAccelerated(width);
        var c = OpCases.MatMul.Single(x => x.Name == name);
        var (a, b) = c.Inputs;
        var s = c.Shape;
        var output = Enumerable.Repeat(float.NaN, s.M * s.N).ToArray();
        CpuGemm.Multiply(output, a, CpuGemm.Pack(b, s.N, s.K, width, kMajor: !s.TransposeB), null, s.M, s.K, s.N, Engine.Backends.Activation.None, width, transposedA: true);
        var result = ParityCheck.Compare("matmul", $"{name} at width {width}", ReferenceOps.MatMul(a, b, s), output, OpCases.LinearTolerance);
        Assert.True(result.Passed, result.ToString());
    }

    /// <summary>The accumulating product (C += A·Wᵀ, how weight gradients are summed) at every vector width, full and edge tiles.</summary>
    [SkippableTheory, MemberData(nameof(GemmWidthCases))]
    public void AccumulatingGemmAtEveryVectorWidth(int width, string name)
    {
        SkipUnlessAccelerated(width);
        var c = OpCases.Linear.Single(x => x.Name == name);
        var (input, weight, _) = c.Inputs;
        var previous = OpCases.Random(c.M * c.N, 41);
        var output = previous.ToArray();
        CpuGemm.Multiply(output, input, CpuGemm.Pack(weight, c.N, c.K, width), null, c.M, c.K, c.N, Engine.Backends.Activation.None, width, accumulate: true);
        var product = ReferenceOps.Linear(input.AsDoubles(), weight.AsDoubles(), null, c.M, c.K, c.N, "none");
        var result = ParityCheck.Compare("linear", $"{name} accumulated at width {width}", [.. product.Select((v, i) => v + previous[i])], output, OpCases.LinearTolerance);
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

    /// <summary>
    /// A NaN or an infinity in reaches the output (GELU(NaN) = NaN, GELU(∞) = ∞; the softmax of a row with a NaN is NaN):
    /// the vector exponential's clamps use the processor's min and max, which let a NaN through only in one operand order.
    /// </summary>
    [Fact]
    public void NaNAndInfinitiesPropagateThroughGeluAndSoftmax()
    {
        float[] x = [float.NaN, float.PositiveInfinity, 1f, .. Enumerable.Repeat(0.5f, 20)];
        var gelu = new float[x.Length];
        CpuActivations.Apply(x, gelu, Engine.Backends.Activation.Gelu);
        Assert.True(float.IsNaN(gelu[0]));
        Assert.Equal(float.PositiveInfinity, gelu[1]);
        float[] logits = [float.NaN, .. Enumerable.Repeat(0.5f, 31)]; // whole vectors at any width: no scalar tail to carry the NaN
        var probabilities = new float[logits.Length];
        Probabilities.FromLogits(logits, probabilities);
        Assert.All(probabilities, p => Assert.True(float.IsNaN(p)));
    }
}

/// <summary>The float64 backward of every op against central finite differences of its float64 forward, on the small cases.</summary>
public sealed class ReferenceGradientTests
{
    public static TheoryData<string> Cases => [.. OpCases.All.Where(c => c.HasReferenceGradient).Select(c => c.Id)];

    [Theory, MemberData(nameof(Cases))]
    public void AgreesWithFiniteDifferences(string id)
    {
        var result = ((IReferenceGradient)OpCases.Find(id)).ReferenceGradient();
        Assert.True(result.Passed, result.ToString());
    }
}
