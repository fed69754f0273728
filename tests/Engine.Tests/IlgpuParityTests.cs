using Engine.Backends.Cpu;
using Engine.Kernels;
using Engine.Models.Bert;
using Engine.Reference;

namespace Engine.Tests;

/// <summary>
/// The ILGPU kernels on ILGPU's CPU accelerator emulating an NVIDIA GPU (warp 32, real groups and barriers): the
/// cases whose estimated emulator cost fits <see cref="OpCases.EmulatorBudgetSeconds"/>, forward and backward.
/// </summary>
public sealed class IlgpuEmulatorOpParityTests() : OpParityTests(IlgpuBackend.Create(IlgpuDevice.CpuEmulator))
{
    public static TheoryData<string> ForwardCases => ForwardIds(OpCases.EmulatorBudgetSeconds);
    public static TheoryData<string> BackwardCases => BackwardIds(OpCases.EmulatorBudgetSeconds);
}

/// <summary>The whole catalogue, forward and backward, on a CUDA GPU; skipped, with the reason shown, where there is none.</summary>
public sealed class CudaOpParityTests : OpParityTests
{
    private static readonly bool Available = IlgpuBackend.CudaAvailable();

    public CudaOpParityTests()
        : base(Available ? IlgpuBackend.Create(IlgpuDevice.Cuda) : null, "no CUDA device on this machine (the GPU script runs this suite on one)") { }

    public static TheoryData<string> ForwardCases => ForwardIds();
    public static TheoryData<string> BackwardCases => BackwardIds();
}

/// <summary>A whole tiny BERT through the ILGPU kernels equals the CPU backend.</summary>
public sealed class IlgpuModelTests
{
    [Fact]
    public void TinyBertOnTheEmulatorEqualsTheCpuBackend()
    {
        using var temp = new TempDirectory();
        TinyBert.Write(temp.Path);
        var (expected, actual) = EmulatorAgreesWithTheCpuBackend(temp.Path, 1e-5f);
        for (int i = 0; i < expected.PoolerOutput!.Length; i++) Assert.Equal(expected.PoolerOutput[i], actual.PoolerOutput![i], 1e-5f);
    }

    /// <summary>The model in <paramref name="directory"/> on a ragged batch: the emulator's last hidden state within <paramref name="tolerance"/> of the CPU backend's on real tokens.</summary>
    internal static (BertModelOutput Expected, BertModelOutput Actual) EmulatorAgreesWithTheCpuBackend(string directory, float tolerance)
    {
        var batch = new BertBatch(2, 5, [2, 5, 7, 3, 0, 2, 9, 3, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 1, 1, 1, 0, 0]);
        using var cpu = BertModel.Load(directory, new CpuBackend());
        using var ilgpu = BertModel.Load(directory, IlgpuBackend.Create(IlgpuDevice.CpuEmulator));
        var expected = cpu.Forward(batch);
        var actual = ilgpu.Forward(batch);
        for (int i = 0; i < batch.BatchSize * batch.SequenceLength; i++)
        {
            if (batch.AttentionMask[i] == 0) continue;
            for (int c = 0; c < TinyBert.Hidden; c++)
                Assert.Equal(expected.LastHiddenState[i * TinyBert.Hidden + c], actual.LastHiddenState[i * TinyBert.Hidden + c], tolerance);
        }
        return (expected, actual);
    }
}
