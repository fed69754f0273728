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
            return FlushSubnormal(dy * (cdf + x * (InvSqrt2Pi * Exp(-halfSquare))));
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

    /// <summary>
    /// eˣ in float arithmetic (Cephes' expf: x = n·ln2 + r with ln2 split in two, a degree-6 polynomial for eʳ, 2ⁿ built in
    /// the exponent bits), relative error about 2e-7. <c>Vector.Exp</c> widens to double and costs several times more;
    /// GELU's two exponentials made its epilogue as slow as a small GEMM. Below −87.3 (where eˣ is no longer a normal
    /// float) the result is 0; x is capped at 88 (GELU's arguments are never positive).
    /// </summary>
    private static Vector<float> Exp(Vector<float> input)
    {
        var x = Vector.Min(Vector.Max(input, new Vector<float>(-87.3f)), new Vector<float>(88f));
        var n = Vector.Round(x * 1.44269504088896341f);
        var r = Vector.FusedMultiplyAdd(n, new Vector<float>(-0.693359375f), x);
        r = Vector.FusedMultiplyAdd(n, new Vector<float>(2.12194440e-4f), r);
        var p = Vector.FusedMultiplyAdd(new Vector<float>(1.9875691500e-4f), r, new Vector<float>(1.3981999507e-3f));
        p = Vector.FusedMultiplyAdd(p, r, new Vector<float>(8.3334519073e-3f));
        p = Vector.FusedMultiplyAdd(p, r, new Vector<float>(4.1665795894e-2f));
        p = Vector.FusedMultiplyAdd(p, r, new Vector<float>(1.6666665459e-1f));
        p = Vector.FusedMultiplyAdd(p, r, new Vector<float>(5.0000001201e-1f));
        var y = Vector.FusedMultiplyAdd(p, r * r, r) + Vector<float>.One;
        var twoToN = Vector.ShiftLeft(Vector.ConvertToInt32(n) + new Vector<int>(127), 23).As<int, float>();
        return Vector.ConditionalSelect(Vector.LessThan(input, new Vector<float>(-87.3f)), Vector<float>.Zero, y * twoToN);
    }

    /// <summary>Φ(x) = ½·erfc(−x/√2) from the erfc fit; <paramref name="halfSquare"/> = x²/2, for the density.</summary>
    private static Vector<float> Phi(Vector<float> x, out Vector<float> halfSquare)
    {
        var half = new Vector<float>(0.5f);
        var one = Vector<float>.One;
        var z = Vector.Abs(x) * InvSqrt2;
        var t = one / Vector.FusedMultiplyAdd(half, z, one);
        // Horner's rule with fused multiply-adds: half the dependent operations of multiply-then-add.
        var poly = Vector.FusedMultiplyAdd(new Vector<float>(ErfcFit.C9), t, new Vector<float>(ErfcFit.C8));
        poly = Vector.FusedMultiplyAdd(poly, t, new Vector<float>(ErfcFit.C7));
        poly = Vector.FusedMultiplyAdd(poly, t, new Vector<float>(ErfcFit.C6));
        poly = Vector.FusedMultiplyAdd(poly, t, new Vector<float>(ErfcFit.C5));
        poly = Vector.FusedMultiplyAdd(poly, t, new Vector<float>(ErfcFit.C4));
        poly = Vector.FusedMultiplyAdd(poly, t, new Vector<float>(ErfcFit.C3));
        poly = Vector.FusedMultiplyAdd(poly, t, new Vector<float>(ErfcFit.C2));
        poly = Vector.FusedMultiplyAdd(poly, t, new Vector<float>(ErfcFit.C1));
        poly = Vector.FusedMultiplyAdd(poly, t, new Vector<float>(ErfcFit.C0));
        halfSquare = z * z;
        var halfErfc = half * t * Exp(poly - halfSquare);
        return Vector.ConditionalSelect(Vector.LessThan(x, Vector<float>.Zero), halfErfc, one - halfErfc);
    }
}
