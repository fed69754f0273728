// Activations: exact GELU and tanh as device functions (fused into the GEMM epilogue) and as an
// element-wise kernel; their backward; dropout (forward = backward, the Philox mask regenerated).
//
// Shapes: out (n) = act(inp (n)); dinp (n) = dout · act′(inp). The backward reads the activation's input
// (the pre-activation values), which the training forward keeps.
// Accuracy: ILGPU's XMath.Tanh is PTX tanh.approx (≈2^-11 relative error) and erf has no fast PTX form,
// so both are built on XMath.Exp (ex2.approx, ≈2 ulp): GELU = x·Φ(x) with Φ from Numerical Recipes'
// erfc fit (relative error < 1.2e-7, the CPU backend's formula); tanh from exp with a Taylor series near 0.
// History: v1 forward; v2 backward and dropout (this version).
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using Engine.Backends;
using Engine.Backends.Cpu;

namespace Engine.Kernels;

internal static class ActivationKernels
{
    public const int None = 0, Gelu = 1, Tanh = 2;

    public static int Code(Activation activation) => activation switch
    {
        Activation.None => None,
        Activation.Gelu => Gelu,
        Activation.Tanh => Tanh,
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };

    /// <summary>act(x) for an activation code; a device function.</summary>
    public static float Apply(float x, int activation)
    {
        if (activation == Gelu) return GeluExact(x);
        if (activation == Tanh) return TanhAccurate(x);
        return x;
    }

    public static float GeluExact(float x) => x * Phi(x);

    /// <summary>Φ(x) = ½·erfc(−x/√2), erfc from the fit both backends use (<see cref="Backends.Cpu.ErfcFit"/>).</summary>
    private static float Phi(float x)
    {
        float z = XMath.Abs(x) * 0.70710678118654752f;
        float t = 1f / (1f + 0.5f * z);
        float poly = ErfcFit.C0 + t * (ErfcFit.C1 + t * (ErfcFit.C2 + t * (ErfcFit.C3 + t * (ErfcFit.C4
            + t * (ErfcFit.C5 + t * (ErfcFit.C6 + t * (ErfcFit.C7 + t * (ErfcFit.C8 + t * ErfcFit.C9))))))));
        float halfErfc = 0.5f * t * XMath.Exp(poly - z * z);
        return x < 0f ? halfErfc : 1f - halfErfc;
    }

    public static float TanhAccurate(float x)
    {
        float a = XMath.Abs(x);
        float result;
        if (a < 0.125f)
        {
            // x − x³/3 + 2x⁵/15 − 17x⁷/315: the next term is below 1e-9 here.
            float x2 = a * a;
            result = a * (1f + x2 * (-0.33333333f + x2 * (0.13333333f + x2 * -0.05396825f)));
        }
        else
        {
            float e = XMath.Exp(-2f * a);
            result = (1f - e) / (1f + e);
        }
        return x < 0f ? -result : result;
    }

    /// <summary>act′(x): GELU′ = Φ(x) + x·φ(x), tanh′ = 1 − tanh².</summary>
    public static float Derivative(float x, int activation)
    {
        if (activation == Gelu) return Phi(x) + x * XMath.Exp(-0.5f * x * x) * 0.3989422804014327f;
        if (activation == Tanh)
        {
            float y = TanhAccurate(x);
            return 1f - y * y;
        }
        return 1f;
    }

    /// <summary>dinp (n) = dout (n) · act′(inp (n)); one thread per element.</summary>
    public static void BackwardKernel(Index1D i, ArrayView<float> dInput, ArrayView<float> dOutput, ArrayView<float> input, int activation) =>
        dInput[i] = dOutput[i] * Derivative(input[i], activation);

    /// <summary>out (n) = inp ⊙ keep / (1 − p), keep_i = [Philox uniform(seed, offset, i) ≥ p]; also the backward.</summary>
    public static void DropoutKernel(Index1D i, ArrayView<float> output, ArrayView<float> input, Backends.DropoutMask mask) =>
        output[i] = input[i] * mask.Factor(i);

    /// <summary>out (n) = act(inp (n)); one thread per element.</summary>
    public static void ActivateKernel(Index1D i, ArrayView<float> output, ArrayView<float> input, int activation) =>
        output[i] = Apply(input[i], activation);
}
