using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Kernels;
using Engine.Models.Bert;
using Engine.Reference;

namespace Engine.Tests;

/// <summary>
/// The reduced-precision Linear (tf32, fp16 and bf16 operands on tensor cores, fp32 sums) on the ILGPU CPU emulator, which runs
/// the kernel's software path for mma.sync: the m16n8k16 fragment layout, the tiling and the staging, against the
/// float64 product of the rounded operands. (On CUDA the same cases run in the GPU script.)
/// </summary>
public sealed class ReducedPrecisionTests
{
    public static TheoryData<string> EmulatorCases => [.. OpCases.ReducedPrecisionLinear.Where(c => c.EmulatorSeconds <= OpCases.EmulatorBudgetSeconds).Select(c => c.Id)];

    [Theory, MemberData(nameof(EmulatorCases))]
    public void TensorCoreKernelOnTheEmulatorEqualsTheRoundedReference(string id) => AssertPassesOnTheEmulator(id, (c, backend) => c.Forward(backend));

    public static TheoryData<string> EmulatorBackwardCases =>
        [.. OpCases.ReducedPrecisionLinear.Where(c => c.EmulatorBackwardSeconds <= OpCases.EmulatorBudgetSeconds).Select(c => c.Id)];

    [Theory, MemberData(nameof(EmulatorBackwardCases))]
    public void BackwardProductsOnTheEmulatorEqualTheRoundedReference(string id) => AssertPassesOnTheEmulator(id, (c, backend) => c.Backward(backend));

    /// <summary>Case <paramref name="id"/> run by <paramref name="run"/> on an emulator backend set to the case's precision.</summary>
    private static void AssertPassesOnTheEmulator(string id, Func<ReducedPrecisionLinearCase, IlgpuBackend, ParityResult> run)
    {
        var reducedCase = OpCases.ReducedPrecisionLinear.Single(c => c.Id == id);
        using var backend = IlgpuBackend.Create(IlgpuDevice.CpuEmulator);
        backend.Precision = reducedCase.Precision;
        var result = run(reducedCase, backend);
        Assert.True(result.Passed, result.ToString());
    }

    [Theory]
    [InlineData(ComputePrecision.Tf32)]
    [InlineData(ComputePrecision.Fp16)]
    [InlineData(ComputePrecision.Bf16)]
    public void TheCasesTellTheFormatsApart(ComputePrecision precision)
    {
        // The fp32 products, and the products in the other formats, all miss the rounded reference, forward and backward:
        // the cases see which format the backend multiplied in (tf32 and fp16 both keep 10 mantissa bits, but round differently and fp16's
        // range is smaller).
        var reducedCase = OpCases.ReducedPrecisionLinear.Single(c => c.Id == $"linear-{precision.ToString().ToLowerInvariant()}/odd-gelu-kept");
        using var backend = IlgpuBackend.Create(IlgpuDevice.CpuEmulator);
        foreach (var other in Enum.GetValues<ComputePrecision>().Where(p => p != precision))
        {
            backend.Precision = other;
            Assert.False(reducedCase.Forward(backend).Passed, $"{reducedCase.Id} passed with {other} products");
            Assert.False(reducedCase.Backward(backend).Passed, $"{reducedCase.Id}'s backward passed with {other} products");
        }
    }

    /// <summary>
    /// A whole tiny BERT with tf32, fp16 or bf16 Linears on the emulator stays within the format's rounding of the fp32 CPU
    /// backend on real tokens (two layers: within about four units of the format's precision; measured 3.0e-4 for tf32 and
    /// fp16, which keep 10 mantissa bits, 1.9e-3 for bf16), and
    /// differs from it (the reduced path ran).
    /// </summary>
    [Theory]
    [InlineData(ComputePrecision.Tf32, 2e-3)]
    [InlineData(ComputePrecision.Fp16, 2e-3)]
    [InlineData(ComputePrecision.Bf16, 2e-2)]
    public void ATinyBertInReducedPrecisionTracksTheFp32CpuBackend(ComputePrecision precision, double tolerance)
    {
        using var temp = new TempDirectory();
        string directory = TinyBert.Write(temp.Path);
        var batch = new BertBatch(2, 5, [2, 5, 7, 3, 0, 2, 9, 3, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 1, 1, 1, 0, 0]);
        using var cpu = BertModel.Load(directory, new CpuBackend());
        var emulator = IlgpuBackend.Create(IlgpuDevice.CpuEmulator);
        emulator.Precision = precision;
        using var reduced = BertModel.Load(directory, emulator);
        var (expected, actual) = (cpu.Forward(batch).LastHiddenState, reduced.Forward(batch).LastHiddenState);
        double worst = 0;
        for (int i = 0; i < batch.BatchSize * batch.SequenceLength; i++)
            for (int c = 0; c < TinyBert.Hidden && batch.AttentionMask[i] == 1; c++)
                worst = Math.Max(worst, Math.Abs(expected[i * TinyBert.Hidden + c] - actual[i * TinyBert.Hidden + c]));
        Assert.InRange(worst, 1e-5, tolerance);
    }

    /// <summary>
    /// Training with tf32 or bf16 Linears (forward and backward on the emulator's tensor-core path; fp32 parameters,
    /// gradients and AdamW): three steps of a tiny classifier follow the fp32 CPU backend's losses within the format's
    /// rounding (measured at most 4.1e-6 for tf32 and 4.5e-5 for bf16 on losses near 1.1), and the loss falls as it does there.
    /// </summary>
    [Theory]
    [InlineData(ComputePrecision.Tf32, 5e-5)]
    [InlineData(ComputePrecision.Bf16, 5e-4)]
    public void FineTuningInReducedPrecisionTracksFp32(ComputePrecision precision, double tolerance)
    {
        using var temp = new TempDirectory();
        string directory = TinyBert.WriteClassifier(temp["classifier"]);
        var batch = new BertBatch(2, 5, [2, 5, 7, 3, 0, 2, 9, 3, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 1, 1, 1, 0, 0]);
        int[] labels = [2, 0];
        double[] Losses(ITrainingBackend backend)
        {
            using var model = BertForSequenceClassification.Load(directory, backend);
            using var optimizer = new Engine.Training.AdamWOptimizer(backend, model.Arena, new Engine.Training.AdamWOptions());
            var losses = new double[3];
            for (int step = 0; step < losses.Length; step++)
            {
                model.ZeroGradients();
                losses[step] = model.ForwardBackward(batch, labels, DropoutSettings.None);
                optimizer.Step(1e-2f);
            }
            return losses;
        }
        var expected = Losses(new CpuBackend());
        var emulator = IlgpuBackend.Create(IlgpuDevice.CpuEmulator);
        emulator.Precision = precision;
        var actual = Losses(emulator);
        for (int step = 0; step < expected.Length; step++)
            Assert.True(Math.Abs(actual[step] - expected[step]) <= tolerance * Math.Max(1, Math.Abs(expected[step])), $"step {step + 1}: {actual[step]} against fp32's {expected[step]}");
        Assert.True(actual[^1] < actual[0], "the loss did not fall");
        Assert.NotEqual(expected, actual);
    }

    /// <summary>
    /// The staged rows' swizzle: a bijection of every stage's words, and conflict-free for ldmatrix — the 8 rows of any
    /// 8×16-byte matrix it reads (8 consecutive rows from a multiple of 8, either chunk) land in 32 distinct banks — where
    /// unswizzled 32-byte rows would put rows r and r+4 in the same banks.
    /// </summary>
    [Fact]
    public void TheSwizzleIsABijectionAndLdmatrixReadsAreConflictFree()
    {
        const int Words = ReducedPrecisionGemmKernels.StageWords;
        var seen = new HashSet<int>();
        for (int row = 0; row < ReducedPrecisionGemmKernels.StageRows; row++)
            for (int chunk = 0; chunk < 2; chunk++)
                for (int word = 0; word < 4; word++)
                    Assert.True(seen.Add(ReducedPrecisionGemmKernels.Swizzled(row, chunk) + word));
        Assert.Equal(Words, seen.Count);
        Assert.InRange(seen.Max(), 0, Words - 1);
        for (int first = 0; first < ReducedPrecisionGemmKernels.StageRows; first += 8)
            for (int chunk = 0; chunk < 2; chunk++)
            {
                var banks = Enumerable.Range(first, 8).SelectMany(row => Enumerable.Range(ReducedPrecisionGemmKernels.Swizzled(row, chunk) % 32, 4)).ToList();
                Assert.Equal(32, banks.Distinct().Count());
                var plain = Enumerable.Range(first, 8).SelectMany(row => Enumerable.Range((row * 8 + 4 * chunk) % 32, 4));
                Assert.Equal(16, plain.Distinct().Count());
            }
    }

    [Fact]
    public void WordsAreRoundedAsTheReferenceRoundsThem()
    {
        var values = new List<float> { 0f, -0f, 1f, -1f, 65504f, 65520f, 1e-8f, 6e-8f, 3e-5f, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, float.Epsilon };
        // Ties and near-ties at each format's rounding points (bf16 0x8000, fp16 and tf32 0x1000 below the kept bits), and a
        // spread of magnitudes.
        values.AddRange([BitConverter.UInt32BitsToSingle(0x3F808000u), BitConverter.UInt32BitsToSingle(0x3F818000u), BitConverter.UInt32BitsToSingle(0x3F808001u),
            BitConverter.UInt32BitsToSingle(0x3F801000u), BitConverter.UInt32BitsToSingle(0x3F803000u), BitConverter.UInt32BitsToSingle(0xBF803000u),
            BitConverter.UInt32BitsToSingle(0x7F7F8000u), BitConverter.UInt32BitsToSingle(0x7F7FF000u), BitConverter.UInt32BitsToSingle(0x00001000u)]);
        var random = new Random(5);
        for (int i = 0; i < 2000; i++) values.Add((float)((random.NextDouble() * 2 - 1) * Math.Pow(2, random.Next(-30, 30))));
        foreach (var precision in new[] { ComputePrecision.Fp16, ComputePrecision.Bf16 })
        {
            int format = precision == ComputePrecision.Fp16 ? ReducedPrecisionGemmKernels.Fp16 : ReducedPrecisionGemmKernels.Bf16;
            var expected = ReferenceOps.Round([.. values], precision);
            for (int i = 0; i < values.Count; i++)
            {
                uint word = ReducedPrecisionGemmKernels.Pack(values[i], -values[i], format);
                Assert.Equal(expected[i], ReducedPrecisionGemmKernels.Value(word, high: false, format));
                Assert.Equal(-expected[i], ReducedPrecisionGemmKernels.Value(word, high: true, format));
            }
        }
        Assert.True(float.IsNaN(ReducedPrecisionGemmKernels.Value(ReducedPrecisionGemmKernels.Pack(float.NaN, 0f, ReducedPrecisionGemmKernels.Bf16), false, ReducedPrecisionGemmKernels.Bf16)));
        Assert.True(float.IsNaN(ReducedPrecisionGemmKernels.Value(ReducedPrecisionGemmKernels.Pack(float.NaN, 0f, ReducedPrecisionGemmKernels.Fp16), false, ReducedPrecisionGemmKernels.Fp16)));
        var tf32 = ReferenceOps.Round([.. values], ComputePrecision.Tf32);
        for (int i = 0; i < values.Count; i++) Assert.Equal(tf32[i], BitConverter.UInt32BitsToSingle(ReducedPrecisionGemmKernels.Tf32Bits(values[i])));
        Assert.True(float.IsNaN(BitConverter.UInt32BitsToSingle(ReducedPrecisionGemmKernels.Tf32Bits(BitConverter.UInt32BitsToSingle(0x7F800001u)))));
    }
}
