using Engine.Backends;

namespace Engine.Training;

/// <summary>
/// The AdamW update of one element, shared by the CPU backend and the ILGPU kernel so both follow PyTorch's
/// single-tensor AdamW (torch/optim/adamw.py, <c>_single_tensor_adamw</c>) operation for operation.
/// </summary>
public static class AdamWMath
{
    /// <summary>(1 − lr·wd, lr/(1−β1ᵗ), √(1−β2ᵗ)), computed once per step in float64 and rounded, as PyTorch does on the host.</summary>
    public static (float Decay, float StepSize, float SqrtCorrection2) Constants(AdamWStep s) =>
        ((float)(1 - (double)s.LearningRate * s.WeightDecay),
         (float)(s.LearningRate / (1 - Math.Pow(s.Beta1, s.Step))),
         (float)Math.Sqrt(1 - Math.Pow(s.Beta2, s.Step)));

    public static void Update(ref float p, float gradient, ref float m, ref float v, AdamWStep s, (float Decay, float StepSize, float SqrtCorrection2) c)
    {
        float g = gradient * s.GradientScale;
        p *= c.Decay;
        m += (g - m) * (1f - s.Beta1);         // PyTorch: exp_avg.lerp_(grad, 1 − β1)
        v = v * s.Beta2 + (1f - s.Beta2) * g * g; // exp_avg_sq.mul_(β2).addcmul_(grad, grad, value=1 − β2)
        float denominator = MathF.Sqrt(v) / c.SqrtCorrection2 + s.Eps;
        p -= c.StepSize * (m / denominator);
    }
}
