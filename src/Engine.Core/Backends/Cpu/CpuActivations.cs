using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Backends.Cpu;

/// <summary>Element-wise activations on the CPU, vectorized.</summary>
/// <remarks>
/// GELU is the exact form x·Φ(x) = ½x(1 + erf(x/√2)) of BERT's <c>"gelu"</c>; erf uses Abramowitz &amp; Stegun
/// 7.1.26 (absolute error ≤ 1.5e-7, below float32 resolution of GELU's output near its magnitude).
/// </remarks>
internal static class CpuActivations
{
    private const float P = 0.3275911f, A1 = 0.254829592f, A2 = -0.284496736f, A3 = 1.421413741f, A4 = -1.453152027f, A5 = 1.061405429f;
    private const float InvSqrt2 = 0.70710678118654752f;

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
        {
            var half = new Vector<float>(0.5f);
            var one = Vector<float>.One;
            for (; i <= input.Length - Vector<float>.Count; i += Vector<float>.Count)
            {
                var x = new Vector<float>(input[i..]);
                var z = Vector.Abs(x) * InvSqrt2;
                var t = one / (one + z * P);
                var poly = ((((t * A5 + new Vector<float>(A4)) * t + new Vector<float>(A3)) * t + new Vector<float>(A2)) * t + new Vector<float>(A1)) * t;
                var erfAbs = one - poly * Vector.Exp(-(z * z));
                var erf = Vector.ConditionalSelect(Vector.LessThan(x, Vector<float>.Zero), -erfAbs, erfAbs);
                (half * x * (one + erf)).CopyTo(output[i..]);
            }
        }
        for (; i < input.Length; i++) output[i] = Gelu(input[i]);
    }

    public static float Gelu(float x)
    {
        float z = MathF.Abs(x) * InvSqrt2;
        float t = 1f / (1f + P * z);
        float erfAbs = 1f - ((((A5 * t + A4) * t + A3) * t + A2) * t + A1) * t * MathF.Exp(-z * z);
        return 0.5f * x * (1f + (x < 0 ? -erfAbs : erfAbs));
    }
}
