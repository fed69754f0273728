using System.Runtime.CompilerServices;
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

    /// <summary>erfc(x) for any x in double arithmetic from the same fit (erfc(−x) = 2 − erfc(x)): the normal CDF of a search's densities.</summary>
    public static double Erfc(double x)
    {
        double z = Math.Abs(x), t = 1 / (1 + 0.5 * z);
        double erfc = t * Math.Exp(-z * z + C0 + t * (C1 + t * (C2 + t * (C3 + t * (C4 + t * (C5 + t * (C6 + t * (C7 + t * (C8 + t * C9)))))))));
        return x >= 0 ? erfc : 2 - erfc;
    }
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
        switch (Simd.Width)
        {
            case 16: FromLogits<Simd512>(logits, probabilities); break;
            case 8: FromLogits<Simd256>(logits, probabilities); break;
            default: FromLogits<Simd128>(logits, probabilities); break;
        }
    }

    /// <summary>
    /// Three vector passes without calls (attention runs one per 128-key row, where call overhead showed): the maximum,
    /// e^(x − max) with the float exponential and its sum, the normalisation.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static unsafe void FromLogits<V>(ReadOnlySpan<float> logits, Span<float> probabilities) where V : struct, ISimd<V>
    {
        int width = V.Count, n = logits.Length;
        if (probabilities.Length < n) throw new ArgumentException("The destination is shorter than the logits.", nameof(probabilities));
        fixed (float* x = logits, p = probabilities)
        {
            // A NaN anywhere makes the sum, and so every probability, NaN, whichever maximum is taken.
            float max = float.NegativeInfinity;
            int i = 0;
            if (n >= width)
            {
                var maxima = V.Load(x);
                for (i = width; i <= n - width; i += width) maxima = V.Max(maxima, V.Load(x + i));
                max = V.MaxAcross(maxima);
            }
            for (; i < n; i++) max = MathF.Max(max, x[i]);
            var maximum = V.Create(max);
            var sums = V.Zero;
            for (i = 0; i <= n - width; i += width)
            {
                var e = CpuActivations.Exp(V.Load(x + i) - maximum);
                e.Store(p + i);
                sums += e;
            }
            float sum = V.Sum(sums);
            for (; i < n; i++)
            {
                p[i] = MathF.Exp(x[i] - max);
                sum += p[i];
            }
            var reciprocal = V.Create(1f / sum);
            for (i = 0; i <= n - width; i += width) (V.Load(p + i) * reciprocal).Store(p + i);
            for (; i < n; i++) p[i] *= 1f / sum;
        }
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

    /// <summary>A function of two vectors at any width; a struct type argument, so that the JIT inlines it into <see cref="ByVectors{F, V}"/>.</summary>
    private interface IVectorFunction
    {
        static abstract V Apply<V>(V x, V y) where V : struct, ISimd<V>;
    }

    private readonly struct GeluForward : IVectorFunction
    {
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public static V Apply<V>(V x, V _) where V : struct, ISimd<V> => FlushSubnormal(x * Phi(x, out _));
    }

    private readonly struct GeluDerivative : IVectorFunction
    {
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        public static V Apply<V>(V x, V dy) where V : struct, ISimd<V>
        {
            var cdf = Phi(x, out var halfSquare);
            return FlushSubnormal(dy * V.FusedMultiplyAdd(x, V.Create(InvSqrt2Pi) * Exp(V.Zero - halfSquare), cdf));
        }
    }

    /// <summary>
    /// destination = act(source) over a tile of <paramref name="rows"/> × <paramref name="cols"/> with row stride
    /// <paramref name="stride"/> (a GEMM epilogue's tile; source and destination may be the same): one call per tile,
    /// the function inlined, so a 32-column tile pays no per-row call.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static unsafe void ApplyTile(float* source, float* destination, int rows, int cols, long stride, Activation activation)
    {
        if (activation == Activation.Gelu)
        {
            for (int r = 0; r < rows; r++)
                ByVectors<GeluForward>(new ReadOnlySpan<float>(source + r * stride, cols), new ReadOnlySpan<float>(source + r * stride, cols), new Span<float>(destination + r * stride, cols));
            return;
        }
        for (int r = 0; r < rows; r++)
            Apply(new ReadOnlySpan<float>(source + r * stride, cols), new Span<float>(destination + r * stride, cols), activation);
    }

    /// <summary>output = F(x, y) at the processor's widest vectors.</summary>
    private static void ByVectors<F>(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> output) where F : struct, IVectorFunction
    {
        switch (Simd.Width)
        {
            case 16: ByVectors<F, Simd512>(x, y, output); break;
            case 8: ByVectors<F, Simd256>(x, y, output); break;
            default: ByVectors<F, Simd128>(x, y, output); break;
        }
    }

    /// <summary>output = F(x, y) a vector at a time; the last partial vector goes through a zero-padded copy (one formula for every element).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static unsafe void ByVectors<F, V>(ReadOnlySpan<float> x, ReadOnlySpan<float> y, Span<float> output) where F : struct, IVectorFunction where V : struct, ISimd<V>
    {
        int width = V.Count, i = 0, n = x.Length;
        fixed (float* px = x, py = y, po = output)
        {
            for (; i <= n - width; i += width) F.Apply(V.Load(px + i), V.Load(py + i)).Store(po + i);
            if (i == n) return;
            float* xs = stackalloc float[width], ys = stackalloc float[width], result = stackalloc float[width];
            for (int k = 0; k < width; k++) (xs[k], ys[k]) = i + k < n ? (px[i + k], py[i + k]) : (0f, 0f);
            F.Apply(V.Load(xs), V.Load(ys)).Store(result);
            for (int k = 0; i + k < n; k++) po[i + k] = result[k];
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static V FlushSubnormal<V>(V v) where V : struct, ISimd<V> => V.SelectLess(V.Abs(v), V.Create(LeastNormal), V.Zero, v);

    /// <summary>
    /// eˣ in float arithmetic (Cephes' expf: x = n·ln2 + r with ln2 split in two, a degree-6 polynomial for eʳ, 2ⁿ built in
    /// the exponent bits), relative error about 2e-7, at any vector width. <c>Vector.Exp</c> and TensorPrimitives.Exp widen
    /// to double and cost several times more: GELU's two exponentials made its epilogue as slow as a small GEMM, and the
    /// softmax most of attention's time. Below −87.3 (where eˣ is no longer a normal float) the result is 0; x is capped
    /// at 88 (GELU's and the softmax's arguments are never positive). The clamps and the conversion to 2ⁿ are the
    /// processor's own instructions (.NET's IEEE min, max and saturating conversion add nine instructions a vector: GELU
    /// over 6.3 M values 3.9 → 3.3 ms here); a NaN passes through because it is the clamps' second operand.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal static V Exp<V>(V input) where V : struct, ISimd<V>
    {
        var x = V.Min(V.Create(88f), V.Max(V.Create(-87.3f), input)); // a NaN input stays NaN
        var n = V.Round(x * V.Create(1.44269504088896341f));
        var r = V.FusedMultiplyAdd(n, V.Create(-0.693359375f), x);
        r = V.FusedMultiplyAdd(n, V.Create(2.12194440e-4f), r);
        var p = V.FusedMultiplyAdd(V.Create(1.9875691500e-4f), r, V.Create(1.3981999507e-3f));
        p = V.FusedMultiplyAdd(p, r, V.Create(8.3334519073e-3f));
        p = V.FusedMultiplyAdd(p, r, V.Create(4.1665795894e-2f));
        p = V.FusedMultiplyAdd(p, r, V.Create(1.6666665459e-1f));
        p = V.FusedMultiplyAdd(p, r, V.Create(5.0000001201e-1f));
        var y = V.FusedMultiplyAdd(p, r * r, r) + V.Create(1f);
        return V.SelectLess(input, V.Create(-87.3f), V.Zero, y * V.PowerOfTwo(n));
    }

    /// <summary>Φ(x) = ½·erfc(−x/√2) from the erfc fit; <paramref name="halfSquare"/> = x²/2, for the density.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static V Phi<V>(V x, out V halfSquare) where V : struct, ISimd<V>
    {
        var half = V.Create(0.5f);
        var one = V.Create(1f);
        var z = V.Abs(x) * V.Create(InvSqrt2);
        var t = one / V.FusedMultiplyAdd(half, z, one);
        // Horner's rule with fused multiply-adds: half the dependent operations of multiply-then-add.
        var poly = V.FusedMultiplyAdd(V.Create(ErfcFit.C9), t, V.Create(ErfcFit.C8));
        poly = V.FusedMultiplyAdd(poly, t, V.Create(ErfcFit.C7));
        poly = V.FusedMultiplyAdd(poly, t, V.Create(ErfcFit.C6));
        poly = V.FusedMultiplyAdd(poly, t, V.Create(ErfcFit.C5));
        poly = V.FusedMultiplyAdd(poly, t, V.Create(ErfcFit.C4));
        poly = V.FusedMultiplyAdd(poly, t, V.Create(ErfcFit.C3));
        poly = V.FusedMultiplyAdd(poly, t, V.Create(ErfcFit.C2));
        poly = V.FusedMultiplyAdd(poly, t, V.Create(ErfcFit.C1));
        poly = V.FusedMultiplyAdd(poly, t, V.Create(ErfcFit.C0));
        halfSquare = z * z;
        var halfErfc = half * t * Exp(poly - halfSquare);
        return V.SelectLess(x, V.Zero, halfErfc, one - halfErfc);
    }
}
