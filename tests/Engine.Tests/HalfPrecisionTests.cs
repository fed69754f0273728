using Engine.Backends;
using Engine.Kernels;
using Engine.Reference;

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
