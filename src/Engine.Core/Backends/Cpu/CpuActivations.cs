using System.Numerics;
using System.Numerics.Tensors;

namespace Engine.Backends.Cpu;

/// <summary>
/// The coefficients of Numerical Recipes' Chebyshev fit of erfc (<c>erfcc</c>): erfc(z) ≈ t·exp(−z² + C0 + t·(C1 + … + t·C9)),
/// t = 1/(1 + z/2), relative error below 1.2e-7 for z ≥ 0. The one table both backends' GELU evaluates.
/// </summary>
public static class ErfcFit
{
    public const float C0 = -1.26551223f, C1 = 1.00002368f, C2 = 0.37409196f, C3 = 0.09678418f, C4 = -0.18628806f,
        C5 = 0.27886807f, C6 = -1.13520398f, C7 = 1.48851587f, C8 = -0.82215223f, C9 = 0.17087277f;
}

/// <summary>Softmax for every caller on the CPU (the softmax op, attention, cross-entropy, fill-mask, classify).</summary>
public static class Probabilities
{
    /// <summary>
    /// probabilities = softmax(logits), the maximum subtracted first. (TensorPrimitives.SoftMax exponentiates the logits
    /// as they are: past about 88 exp overflows to infinity and the row becomes NaN; attention logits and trained
    /// vocabulary logits get there.) The two spans may be the same.
    /// </summary>
    public static void FromLogits(ReadOnlySpan<float> logits, Span<float> probabilities)
    {
        float max = TensorPrimitives.Max(logits);
        TensorPrimitives.Subtract(logits, max, probabilities);
        TensorPrimitives.Exp(probabilities, probabilities);
        TensorPrimitives.Multiply(probabilities, 1f / TensorPrimitives.Sum<float>(probabilities), probabilities);
    }
}

/// <summary>Element-wise activations on the CPU, vectorized.</summary>
/// <remarks>
/// GELU is the exact form x·Φ(x) with Φ(x) = ½·erfc(−x/√2), BERT's <c>"gelu"</c>. erfc is Numerical Recipes'
/// Chebyshev fit (<c>erfcc</c>), whose relative error is below 1.2e-7 everywhere, so GELU keeps float32
/// relative accuracy in its negative tail too (where 1 + erf(x) would cancel). Results smaller than
/// float's least normal (GELU below x ≈ −13.2) are flushed to zero: subnormal operands make every later
/// multiply-add that reads them take a microcode assist (a GEMM over them ran 10× slower), and .NET cannot
/// set the processor's flush-to-zero mode. The change is below 1.2e-38 in absolute value.
/// </remarks>
internal static unsafe class CpuActivations
{
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

    private static void Gelu(ReadOnlySpan<float> input, Span<float> output) => ByVectors<GeluForward>(input, input, output);

    /// <summary>Backward of GELU: dInput = dOutput · (Φ(x) + x·φ(x)), φ the standard normal density exp(−x²/2)/√(2π).</summary>
    public static void GeluBackward(ReadOnlySpan<float> dOutput, ReadOnlySpan<float> input, Span<float> dInput) =>
        ByVectors<GeluDerivative>(input, dOutput, dInput);

    /// <summary>A function of two vectors; a struct type argument, so that the JIT inlines it into <see cref="ByVectors{F}"/>.</summary>
    private interface IVectorFunction
    {
        static abstract Vector<float> Apply(Vector<float> x, Vector<float> y);
    }

    private readonly struct GeluForward : IVectorFunction
    {
        public static Vector<float> Apply(Vector<float> x, Vector<float> _) => FlushSubnormal(x * Phi(x, out _));
    }

    private readonly struct GeluDerivative : IVectorFunction
    {
        public static Vector<float> Apply(Vector<float> x, Vector<float> dy)
        {
            var cdf = Phi(x, out var halfSquare);
            return FlushSubnormal(dy * (cdf + x * (InvSqrt2Pi * Vector.Exp(-halfSquare))));
        }
    }

    /// <summary>
    /// destination = act(source) over a tile of <paramref name="rows"/> × <paramref name="cols"/> with row stride
    /// <paramref name="stride"/> (a GEMM epilogue's tile; source and destination may be the same): one call per tile,
    /// the function inlined, so a 32-column tile pays no per-row call.
    /// </summary>
    public static unsafe void ApplyTile(float* source, float* destination, int rows, int cols, long stride, Activation activation)
    {
        if (activation == Activation.Gelu)
        {
            int width = Vector<float>.Count, full = cols - cols % width;
            for (int r = 0; r < rows; r++)
            {
                float* x = source + r * stride, y = destination + r * stride;
                for (int c = 0; c < full; c += width)
                {
                    var v = Vector.Load(x + c);
                    Vector.Store(GeluForward.Apply(v, v), y + c);
                }
                if (full < cols) ByVectors<GeluForward>(new ReadOnlySpan<float>(x + full, cols - full), new ReadOnlySpan<float>(x + full, cols - full), new Span<float>(y + full, cols - full));
            }
            return;
        }
        for (int r = 0; r < rows; r++)
            Apply(new ReadOnlySpan<float>(source + r * stride, cols), new Span<float>(destination + r * stride, cols), activation);
    }

    /// <summary>output = F(x, y) a vector at a time; the last partial vector goes through a zero-padded copy (one formula for every element).</summary>
    private static void ByVectors<F>(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> output) where F : struct, IVectorFunction
    {
        int width = Vector<float>.Count, i = 0;
        for (; i <= x.Length - width; i += width) F.Apply(new Vector<float>(x[i..]), new Vector<float>(y[i..])).CopyTo(output[i..]);
        if (i == x.Length) return;
        Span<float> xs = stackalloc float[width], ys = stackalloc float[width], result = stackalloc float[width];
        x[i..].CopyTo(xs);
        y[i..].CopyTo(ys);
        F.Apply(new Vector<float>(xs), new Vector<float>(ys)).CopyTo(result);
        result[..(x.Length - i)].CopyTo(output[i..]);
    }

    private static Vector<float> FlushSubnormal(Vector<float> v) =>
        Vector.ConditionalSelect(Vector.LessThan(Vector.Abs(v), new Vector<float>(LeastNormal)), Vector<float>.Zero, v);

    /// <summary>Φ(x) = ½·erfc(−x/√2) from the erfc fit; <paramref name="halfSquare"/> = x²/2, for the density.</summary>
    private static Vector<float> Phi(Vector<float> x, out Vector<float> halfSquare)
    {
        var half = new Vector<float>(0.5f);
        var one = Vector<float>.One;
        var z = Vector.Abs(x) * InvSqrt2;
        var t = one / (one + half * z);
        var poly = ErfcFit.C9 * t + new Vector<float>(ErfcFit.C8);
        poly = poly * t + new Vector<float>(ErfcFit.C7);
        poly = poly * t + new Vector<float>(ErfcFit.C6);
        poly = poly * t + new Vector<float>(ErfcFit.C5);
        poly = poly * t + new Vector<float>(ErfcFit.C4);
        poly = poly * t + new Vector<float>(ErfcFit.C3);
        poly = poly * t + new Vector<float>(ErfcFit.C2);
        poly = poly * t + new Vector<float>(ErfcFit.C1);
        poly = poly * t + new Vector<float>(ErfcFit.C0);
        halfSquare = z * z;
        var halfErfc = half * t * Vector.Exp(poly - halfSquare);
        return Vector.ConditionalSelect(Vector.LessThan(x, Vector<float>.Zero), halfErfc, one - halfErfc);
    }
}
