using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Reference;

namespace Engine.Tests;

/// <summary>The float64 backward of every op against central finite differences of its float64 forward.</summary>
public sealed class ReferenceGradientTests
{
    private static TheoryData<string> Small(IEnumerable<IOpCase> cases) =>
        [.. cases.Where(c => c.Work <= OpCases.FiniteDifferenceWork).Select(c => c.Name)];

    public static TheoryData<string> LinearCases => Small(OpCases.Linear);
    public static TheoryData<string> LayerNormCases => Small(OpCases.LayerNorm);
    public static TheoryData<string> SoftmaxCases => Small(OpCases.Softmax);
    public static TheoryData<string> CrossEntropyCases => Small(OpCases.CrossEntropy);
    public static TheoryData<string> MeanSquaredErrorCases => Small(OpCases.MeanSquaredError);
    public static TheoryData<string> AttentionCases => Small(OpCases.Attention);
    public static TheoryData<string> EmbeddingsCases => Small(OpCases.Embeddings);
    public static TheoryData<string> Activations => ["gelu", "tanh"];

    private static void AssertPassed(ParityResult result) => Assert.True(result.Passed, result.ToString());

    [Theory, MemberData(nameof(LinearCases))]
    public void Linear(string name) => AssertPassed(GradientCheck.ReferenceLinear(OpCases.Linear.Single(c => c.Name == name)));

    [Theory, MemberData(nameof(Activations))]
    public void Activation(string activation) => AssertPassed(GradientCheck.ReferenceActivation(1000, activation));

    [Theory, MemberData(nameof(LayerNormCases))]
    public void LayerNorm(string name) => AssertPassed(GradientCheck.ReferenceLayerNorm(OpCases.LayerNorm.Single(c => c.Name == name)));

    [Theory, MemberData(nameof(SoftmaxCases))]
    public void Softmax(string name) => AssertPassed(GradientCheck.ReferenceSoftmax(OpCases.Softmax.Single(c => c.Name == name)));

    [Theory, MemberData(nameof(AttentionCases))]
    public void Attention(string name) => AssertPassed(GradientCheck.ReferenceAttention(OpCases.Attention.Single(c => c.Name == name)));

    [Theory, MemberData(nameof(EmbeddingsCases))]
    public void Embeddings(string name) => AssertPassed(GradientCheck.ReferenceEmbeddings(OpCases.Embeddings.Single(c => c.Name == name)));

    [Theory, MemberData(nameof(CrossEntropyCases))]
    public void CrossEntropy(string name) => AssertPassed(GradientCheck.ReferenceCrossEntropy(OpCases.CrossEntropy.Single(c => c.Name == name)));

    [Theory, MemberData(nameof(MeanSquaredErrorCases))]
    public void MeanSquaredError(string name) => AssertPassed(GradientCheck.ReferenceMeanSquaredError(OpCases.MeanSquaredError.Single(c => c.Name == name)));
}

/// <summary>
/// A backend's backward passes against the float64 reference (activation gradients must be written,
/// parameter gradients added to). One thin subclass per training backend.
/// </summary>
// The case lists are static members of each concrete subclass, which xunit reads from the test class.
#pragma warning disable xUnit1015
public abstract class BackwardParityTests(ITrainingBackend backend) : IDisposable
{
    private readonly GradientCheck _check = new(backend);

    public static TheoryData<int, string> ActivationCases => OpParityTests.ActivationCases;

    private static void AssertPassed(ParityResult result) => Assert.True(result.Passed, result.ToString());

    [Theory, MemberData("LinearCases")]
    public void Linear(string name) => AssertPassed(_check.Linear(OpCases.Linear.Single(c => c.Name == name)));

    [Theory, MemberData(nameof(ActivationCases))]
    public void Activate(int n, string activation) => AssertPassed(_check.Activate(n, activation));

    [Theory, MemberData("LayerNormCases")]
    public void LayerNorm(string name) => AssertPassed(_check.LayerNorm(OpCases.LayerNorm.Single(c => c.Name == name)));

    [Theory, MemberData("SoftmaxCases")]
    public void Softmax(string name) => AssertPassed(_check.Softmax(OpCases.Softmax.Single(c => c.Name == name)));

    [Theory, MemberData("AttentionCases")]
    public void Attention(string name) => AssertPassed(_check.Attention(OpCases.Attention.Single(c => c.Name == name)));

    [Theory, MemberData("EmbeddingsCases")]
    public void Embeddings(string name) => AssertPassed(_check.Embeddings(OpCases.Embeddings.Single(c => c.Name == name)));

    [Fact]
    public void FirstToken() => AssertPassed(_check.FirstToken());

    [Fact]
    public void Accumulate() => AssertPassed(_check.Accumulate());

    [Theory, MemberData("CrossEntropyCases")]
    public void CrossEntropy(string name) => AssertPassed(_check.CrossEntropy(OpCases.CrossEntropy.Single(c => c.Name == name)));

    [Theory, MemberData("MeanSquaredErrorCases")]
    public void MeanSquaredError(string name) => AssertPassed(_check.MeanSquaredError(OpCases.MeanSquaredError.Single(c => c.Name == name)));

    [Fact]
    public void ClearZeroesEveryElement()
    {
        var buffer = backend.UploadArray(OpCases.Random(1001, 44));
        backend.Clear(buffer);
        Assert.All(backend.DownloadArray(buffer), v => Assert.Equal(0f, v));
    }

    /// <summary>A buffer too short for the op's sizes is one error naming it (OpShapes), before anything is read or written.</summary>
    [Fact]
    public void ShortBuffersAreRejectedByName()
    {
        DeviceBuffer<float> F(int n) => backend.Allocate<float>(n);
        var mask = backend.UploadArray(new[] { 1, 1, 1, 1 });
        void Throws(string name, Action op) => Assert.StartsWith($"{name} holds", Assert.Throws<ArgumentException>(op).Message);
        Throws("qkv", () => backend.Attention(F(2 * 2 * 8), F(2 * 2 * 24 - 1), mask, 2, 2, 2, 4, DropoutMask.None));
        Throws("dQkv", () => backend.AttentionBackward(F(10), F(2 * 2 * 8), F(2 * 2 * 24), mask, 2, 2, 2, 4, DropoutMask.None));
        Throws("dWeight", () => backend.LinearBackward(F(9), F(5), F(2), F(6), F(9), F(6), 3, 3, 2));
        Throws("dBias", () => backend.LayerNormBackward(F(6), F(3), F(2), F(6), F(6), null, F(3), 2, 3, 1e-5f));
        Throws("targets", () => backend.MeanSquaredError(F(4), F(4), F(4), F(3), 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => backend.Dropout(F(4), F(4), 4, new DropoutMask(1f, 1, 0)));
    }

    public void Dispose()
    {
        backend.Dispose();
        GC.SuppressFinalize(this);
    }
}
#pragma warning restore xUnit1015

public sealed class CpuBackwardParityTests() : BackwardParityTests(new CpuBackend())
{
    public static TheoryData<string> LinearCases => OpParityTests.Names(OpCases.Linear);
    public static TheoryData<string> LayerNormCases => OpParityTests.Names(OpCases.LayerNorm);
    public static TheoryData<string> SoftmaxCases => OpParityTests.Names(OpCases.Softmax);
    public static TheoryData<string> CrossEntropyCases => OpParityTests.Names(OpCases.CrossEntropy);
    public static TheoryData<string> MeanSquaredErrorCases => OpParityTests.Names(OpCases.MeanSquaredError);
    public static TheoryData<string> AttentionCases => OpParityTests.Names(OpCases.Attention);
    public static TheoryData<string> EmbeddingsCases => OpParityTests.Names(OpCases.Embeddings);
}

/// <summary>The ILGPU backward kernels on the CPU emulator, on the small cases.</summary>
public sealed class IlgpuEmulatorBackwardParityTests() : BackwardParityTests(Engine.Kernels.IlgpuBackend.Create(Engine.Kernels.IlgpuDevice.CpuEmulator))
{
    public static TheoryData<string> LinearCases => OpParityTests.Names(OpCases.Linear, OpCases.EmulatorWork);
    public static TheoryData<string> LayerNormCases => OpParityTests.Names(OpCases.LayerNorm, OpCases.EmulatorWork);
    public static TheoryData<string> SoftmaxCases => OpParityTests.Names(OpCases.Softmax, OpCases.EmulatorWork);
    public static TheoryData<string> CrossEntropyCases => OpParityTests.Names(OpCases.CrossEntropy, OpCases.EmulatorWork);
    public static TheoryData<string> MeanSquaredErrorCases => OpParityTests.Names(OpCases.MeanSquaredError, OpCases.EmulatorWork);
    public static TheoryData<string> AttentionCases => OpParityTests.Names(OpCases.Attention, OpCases.EmulatorWork);
    public static TheoryData<string> EmbeddingsCases => OpParityTests.Names(OpCases.Embeddings, OpCases.EmulatorWork);
}
