using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Kernels;
using Engine.Models.Bert;
using Engine.Reference;

namespace Engine.Tests;

/// <summary>
/// Flash attention on tensor cores (fp16, bf16) on the ILGPU CPU emulator, whose software paths for cp.async, ldmatrix
/// (plain and transposed) and mma.sync move the same data as the instructions: forward and backward against the float64
/// attention of the rounded operands, and inside a model against the fp32 CPU backend. (A class of its own, so that xunit
/// runs it beside the other emulator tests.)
/// </summary>
public sealed class FlashAttentionTests
{
    /// <summary>
    /// Every flash-attention case, over the emulator budget as they are (4–10 s forward, 20–70 s backward): each is the
    /// smallest that reaches its path (a second tile, packing, a head size), and the kernel has no other test.
    /// </summary>
    public static TheoryData<string> AttentionCases => [.. OpCases.ReducedPrecisionAttention.Select(c => c.Id)];

    /// <summary>
    /// The backward's cases: each path in one format or the other (a second query and key tile with dropout, packing, a
    /// ragged key mask, head size 128), as each takes 20–70 s on the emulator.
    /// </summary>
    public static TheoryData<string> AttentionBackwardCases =>
        ["attention-fp16/over-tiles-dropout-hs32", "attention-fp16/packed-hs64", "attention-bf16/ragged-hs32", "attention-bf16/hs128"];

    /// <summary>Flash attention's backward (fp16, bf16) on the emulator against the float64 gradients of the rounded operands.</summary>
    [Theory, MemberData(nameof(AttentionBackwardCases))]
    public void FlashAttentionBackwardOnTheEmulatorEqualsTheRoundedReference(string id)
    {
        var (attentionCase, backend) = OnTheEmulator(id);
        using (backend)
        {
            var result = attentionCase.Backward(backend);
            Assert.True(result.Passed, result.ToString());
        }
    }

    /// <summary>Case <paramref name="id"/>, and an emulator backend set to its precision.</summary>
    private static (ReducedPrecisionAttentionCase Case, IlgpuBackend Backend) OnTheEmulator(string id)
    {
        var attentionCase = OpCases.ReducedPrecisionAttention.Single(c => c.Id == id);
        var backend = IlgpuBackend.Create(IlgpuDevice.CpuEmulator);
        backend.Precision = attentionCase.Precision;
        return (attentionCase, backend);
    }

    /// <summary>
    /// Flash attention (fp16, bf16) on the emulator: the software paths of cp.async, ldmatrix (plain and transposed) and
    /// mma through the kernel's tiling, online softmax, masking, packing and dropout, against the rounded reference.
    /// </summary>
    [Theory, MemberData(nameof(AttentionCases))]
    public void FlashAttentionOnTheEmulatorEqualsTheRoundedReference(string id)
    {
        var (attentionCase, backend) = OnTheEmulator(id);
        using var _ = backend;
        var result = attentionCase.Forward(backend);
        Assert.True(result.Passed, result.ToString());
        // The fp32 kernel misses the rounded reference's tolerance nowhere it matters; the fp16 and bf16 cases tell the formats apart.
        backend.Precision = attentionCase.Precision == ComputePrecision.Fp16 ? ComputePrecision.Bf16 : ComputePrecision.Fp16;
        if (attentionCase.Precision == ComputePrecision.Fp16) Assert.False(attentionCase.Forward(backend).Passed, $"{id} passed in bf16");
    }

    /// <summary>
    /// A model whose heads flash attention takes (2 heads of 32) in fp16 and bf16 on the emulator: tensor-core Linears and
    /// flash attention over the encoder's packed sequences track the fp32 CPU backend on a ragged batch (measured: least
    /// token cosine 1 − 1e-8 and max |Δ| 3.6e-4 in fp16, 1 − 7e-7 and 3.0e-3 in bf16; bounds about 4× those), and differ from it.
    /// </summary>
    [Theory]
    [InlineData(ComputePrecision.Fp16, 0.999999, 1.5e-3)]
    [InlineData(ComputePrecision.Bf16, 0.99999, 1.2e-2)]
    public void AModelWithFlashAttentionTracksTheFp32CpuBackend(ComputePrecision precision, double cosineFloor, double tolerance)
    {
        using var temp = new TempDirectory();
        string directory = RandomBert.Write(temp.Path, new BertShape("heads-of-32", 1100, 64, 1, 2, 64, 32));
        var batch = RandomBert.Batch(2, 11, 1100);
        using var cpu = BertModel.Load(directory, new CpuBackend());
        var emulator = IlgpuBackend.Create(IlgpuDevice.CpuEmulator);
        emulator.Precision = precision;
        using var reduced = BertModel.Load(directory, emulator);
        var (expected, actual) = (cpu.Forward(batch).LastHiddenState, reduced.Forward(batch).LastHiddenState);
        double least = 1, worst = 0;
        for (int i = 0; i < batch.BatchSize * batch.SequenceLength; i++)
            if (batch.AttentionMask[i] == 1)
            {
                least = Math.Min(least, SentenceEmbedder.Cosine(expected.AsSpan(i * 64, 64).ToArray(), actual.AsSpan(i * 64, 64).ToArray()));
                for (int c = 0; c < 64; c++) worst = Math.Max(worst, Math.Abs(expected[i * 64 + c] - actual[i * 64 + c]));
            }
        Assert.InRange(least, cosineFloor, 1.0);
        Assert.InRange(worst, 1e-6, tolerance);
        Assert.NotEqual(expected, actual);
    }

}
