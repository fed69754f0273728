using System.Text.Json;
using Engine.Cli;
using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Kernels;
using Engine.Models.Bert;
using Engine.Reference;
using static Engine.Tests.CliRunner;

namespace Engine.Tests;

/// <summary>
/// The half-precision Linear (fp16 and bf16 operands on tensor cores, fp32 sums) on the ILGPU CPU emulator, which runs
/// the kernel's software path for mma.sync: the m16n8k16 fragment layout, the tiling and the staging, against the
/// float64 product of the rounded operands. (On CUDA the same cases run in the GPU script.)
/// </summary>
public sealed class HalfPrecisionTests
{
    public static TheoryData<string> EmulatorCases => [.. OpCases.HalfLinear.Where(c => c.EmulatorSeconds <= OpCases.EmulatorBudgetSeconds).Select(c => c.Id)];

    [Theory, MemberData(nameof(EmulatorCases))]
    public void TensorCoreKernelOnTheEmulatorEqualsTheRoundedReference(string id)
    {
        var halfCase = OpCases.HalfLinear.Single(c => c.Id == id);
        using var backend = IlgpuBackend.Create(IlgpuDevice.CpuEmulator);
        backend.Precision = halfCase.Precision;
        var result = halfCase.Forward(backend);
        Assert.True(result.Passed, result.ToString());
    }

    [Theory]
    [InlineData(ComputePrecision.Fp16)]
    [InlineData(ComputePrecision.Bf16)]
    public void TheCasesTellTheFormatsApart(ComputePrecision precision)
    {
        // The fp32 product, and the product in the other half format, both miss the rounded reference: the cases
        // see which format the backend multiplied in.
        var halfCase = OpCases.HalfLinear.Single(c => c.Id == $"linear-{precision.ToString().ToLowerInvariant()}/odd-gelu-kept");
        using var backend = IlgpuBackend.Create(IlgpuDevice.CpuEmulator);
        foreach (var other in new[] { ComputePrecision.Fp32, precision == ComputePrecision.Fp16 ? ComputePrecision.Bf16 : ComputePrecision.Fp16 })
        {
            backend.Precision = other;
            Assert.False(halfCase.Forward(backend).Passed, $"{halfCase.Id} passed with {other} products");
        }
    }

    /// <summary>
    /// A whole tiny BERT with fp16 or bf16 Linears on the emulator stays within the format's rounding of the fp32 CPU backend
    /// on real tokens (two layers: within about four units of the format's precision; measured 3.0e-4 fp16, 1.9e-3 bf16), and
    /// differs from it (the half path ran).
    /// </summary>
    [Theory]
    [InlineData(ComputePrecision.Fp16, 2e-3)]
    [InlineData(ComputePrecision.Bf16, 2e-2)]
    public void ATinyBertInHalfPrecisionTracksTheFp32CpuBackend(ComputePrecision precision, double tolerance)
    {
        using var temp = new TempDirectory();
        string directory = TinyBert.Write(temp.Path);
        var batch = new BertBatch(2, 5, [2, 5, 7, 3, 0, 2, 9, 3, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 1, 1, 1, 0, 0]);
        using var cpu = BertModel.Load(directory, new CpuBackend());
        var emulator = IlgpuBackend.Create(IlgpuDevice.CpuEmulator);
        emulator.Precision = precision;
        using var half = BertModel.Load(directory, emulator);
        var (expected, actual) = (cpu.Forward(batch).LastHiddenState, half.Forward(batch).LastHiddenState);
        double worst = 0;
        for (int i = 0; i < batch.BatchSize * batch.SequenceLength; i++)
            for (int c = 0; c < TinyBert.Hidden && batch.AttentionMask[i] == 1; c++)
                worst = Math.Max(worst, Math.Abs(expected[i * TinyBert.Hidden + c] - actual[i * TinyBert.Hidden + c]));
        Assert.InRange(worst, 1e-5, tolerance);
    }

    [Fact]
    public void PrecisionOptionRunsHalfLinearsOnAGpuDeviceAndIsRefusedElsewhere()
    {
        using var temp = new TempDirectory();
        string model = TinyBert.WriteWithVocabulary(temp["tiny"]);
        var fp32 = JsonSerializer.Deserialize<float[]>(Run("embed", "--model", model, "--device", "cpu", "good movie").Out)!;
        foreach (var precision in new[] { "fp16", "bf16" })
        {
            var (code, output, error) = Run("embed", "--model", model, "--device", "ilgpu-cpu", "--precision", precision, "good movie");
            Assert.True(code == 0, error);
            var half = JsonSerializer.Deserialize<float[]>(output)!;
            double cosine = SentenceEmbedder.Cosine(fp32, half);
            Assert.InRange(cosine, 0.999, 1.0);
            Assert.NotEqual(fp32, half);

            (code, _, error) = Run("embed", "--model", model, "--device", "cpu", "--precision", precision, "good movie");
            Assert.Equal((int)ExitCode.Usage, code);
            Assert.Equal($"error: --precision {precision} runs on a GPU device (--device cuda, or ilgpu-cpu to check it); the CPU backend computes in fp32", error.Trim());
        }
        File.WriteAllText(temp["train.tsv"], "text\tlabel\ngood\tpos\nbad\tneg\n");
        var (trainCode, _, trainError) = Run("finetune", "--model", model, "--train", temp["train.tsv"], "--device", "ilgpu-cpu", "--precision", "bf16", "--output", temp["out"]);
        Assert.Equal((int)ExitCode.Usage, trainCode);
        Assert.Equal("error: finetune trains in fp32 only for now; --precision bf16 is for inference verbs", trainError.Trim());
        var (badCode, _, badError) = Run("embed", "--model", model, "--precision", "fp8", "good");
        Assert.Equal((int)ExitCode.Usage, badCode);
        Assert.Contains("--precision: 'fp8' is not one of fp32, fp16, bf16", badError);
    }

    [Fact]
    public void HalfBitsAreRoundedToNearestEvenAsTheReferenceRoundsThem()
    {
        var values = new List<float> { 0f, -0f, 1f, -1f, 65504f, 65520f, 1e-8f, 6e-8f, 3e-5f, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, float.Epsilon };
        // Ties and near-ties at both formats' rounding points, and a spread of magnitudes.
        values.AddRange([BitConverter.UInt32BitsToSingle(0x3F808000u), BitConverter.UInt32BitsToSingle(0x3F818000u), BitConverter.UInt32BitsToSingle(0x3F808001u),
            BitConverter.UInt32BitsToSingle(0x3F801000u), BitConverter.UInt32BitsToSingle(0x3F803000u), BitConverter.UInt32BitsToSingle(0x7F7F8000u)]);
        var random = new Random(5);
        for (int i = 0; i < 2000; i++) values.Add((float)((random.NextDouble() * 2 - 1) * Math.Pow(2, random.Next(-30, 30))));
        foreach (var precision in new[] { ComputePrecision.Fp16, ComputePrecision.Bf16 })
        {
            int format = precision == ComputePrecision.Fp16 ? HalfGemmKernels.Fp16 : HalfGemmKernels.Bf16;
            var expected = ReferenceOps.Round([.. values], precision);
            for (int i = 0; i < values.Count; i++)
            {
                uint word = HalfGemmKernels.Pack(values[i], -values[i], format);
                Assert.Equal(expected[i], HalfGemmKernels.Value(word, high: false, format));
                Assert.Equal(-expected[i], HalfGemmKernels.Value(word, high: true, format));
            }
        }
        Assert.True(float.IsNaN(HalfGemmKernels.Value(HalfGemmKernels.Pack(float.NaN, 0f, HalfGemmKernels.Bf16), false, HalfGemmKernels.Bf16)));
        Assert.True(float.IsNaN(HalfGemmKernels.Value(HalfGemmKernels.Pack(float.NaN, 0f, HalfGemmKernels.Fp16), false, HalfGemmKernels.Fp16)));
    }
}
