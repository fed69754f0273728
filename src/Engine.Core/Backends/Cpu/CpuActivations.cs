using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Backends.Cpu;

/// <summary>Element-wise activations on the CPU, vectorized.</summary>
/// <remarks>
/// GELU is the exact form x·Φ(x) with Φ(x) = ½·erfc(−x/√2), BERT's <c>"gelu"</c>. erfc is Numerical Recipes'
/// Chebyshev fit (<c>erfcc</c>), whose relative error is below 1.2e-7 everywhere, so GELU keeps float32
/// relative accuracy in its negative tail too (where 1 + erf(x) would cancel). Results smaller than
/// float's least normal (GELU below x ≈ −13.2) are flushed to zero: subnormal operands make every later
/// multiply-add that reads them take a microcode assist (a GEMM over them ran 10× slower), and .NET cannot
/// set the processor's flush-to-zero mode. The change is below 1.2e-38 in absolute value.
/// </remarks>
internal static class CpuActivations
{
    private const float C0 = -1.26551223f, C1 = 1.00002368f, C2 = 0.37409196f, C3 = 0.09678418f, C4 = -0.18628806f,
        C5 = 0.27886807f, C6 = -1.13520398f, C7 = 1.48851587f, C8 = -0.82215223f, C9 = 0.17087277f;
    private const float InvSqrt2 = 0.70710678118654752f, InvSqrt2Pi = 0.3989422804014327f, LeastNormal = 1.17549435e-38f;

    public static void Apply(ReadOnlySpan<float> input, Span<float> output, Activation activation)
    {
        switch (activation)
        {
            case Activation.None: input.CopyTo(output); break;
            case Activation.Tanh: TensorPrimitives.Tanh(input, output); break;
            case Activation.Gelu: Gelu(input, output); break;
            default: throw new ArgumentOutOfRangeException(nameof(activation));
        }
    }

    private static void Gelu(ReadOnlySpan<float> input, Span<float> output)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
            for (; i <= input.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var x = new Vector<float>(input[i..]);
                FlushSubnormal(x * Phi(x, out _)).CopyTo(output[i..]);
            }
        for (; i < input.Length; i++) output[i] = FlushSubnormal(input[i] * Phi(input[i], out _));
    }

    /// <summary>Backward of GELU: dInput = dOutput · (Φ(x) + x·φ(x)), φ the standard normal density exp(−x²/2)/√(2π).</summary>
    public static void GeluBackward(ReadOnlySpan<float> dOutput, ReadOnlySpan<float> input, Span<float> dInput)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
            for (; i <= input.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var x = new Vector<float>(input[i..]);
                var cdf = Phi(x, out var halfSquare);
                var density = InvSqrt2Pi * Vector.Exp(-halfSquare);
                FlushSubnormal(new Vector<float>(dOutput[i..]) * (cdf + x * density)).CopyTo(dInput[i..]);
            }
        for (; i < input.Length; i++)
        {
            float cdf = Phi(input[i], out float halfSquare);
            dInput[i] = FlushSubnormal(dOutput[i] * (cdf + input[i] * InvSqrt2Pi * MathF.Exp(-halfSquare)));
        }
    }

    private static Vector<float> FlushSubnormal(Vector<float> v) =>
        Vector.ConditionalSelect(Vector.LessThan(Vector.Abs(v), new Vector<float>(LeastNormal)), Vector<float>.Zero, v);

    private static float FlushSubnormal(float v) => MathF.Abs(v) < LeastNormal ? 0f : v;

    /// <summary>Φ(x) = ½·erfc(−x/√2) from the erfc fit; <paramref name="halfSquare"/> = x²/2, for the density.</summary>
    private static Vector<float> Phi(Vector<float> x, out Vector<float> halfSquare)
    {
        var half = new Vector<float>(0.5f);
        var one = Vector<float>.One;
        var z = Vector.Abs(x) * InvSqrt2;
        var t = one / (one + half * z);
        var poly = C9 * t + new Vector<float>(C8);
        poly = poly * t + new Vector<float>(C7);
        poly = poly * t + new Vector<float>(C6);
        poly = poly * t + new Vector<float>(C5);
        poly = poly * t + new Vector<float>(C4);
        poly = poly * t + new Vector<float>(C3);
        poly = poly * t + new Vector<float>(C2);
        poly = poly * t + new Vector<float>(C1);
        poly = poly * t + new Vector<float>(C0);
        halfSquare = z * z;
        var halfErfc = half * t * Vector.Exp(poly - halfSquare);
        return Vector.ConditionalSelect(Vector.LessThan(x, Vector<float>.Zero), halfErfc, one - halfErfc);
    }

    private static float Phi(float x, out float halfSquare)
    {
        float z = MathF.Abs(x) * InvSqrt2;
        float t = 1f / (1f + 0.5f * z);
        float poly = C0 + t * (C1 + t * (C2 + t * (C3 + t * (C4 + t * (C5 + t * (C6 + t * (C7 + t * (C8 + t * C9))))))));
        halfSquare = z * z;
        float halfErfc = 0.5f * t * MathF.Exp(poly - halfSquare);
        return x < 0 ? halfErfc : 1f - halfErfc;
    }
}
