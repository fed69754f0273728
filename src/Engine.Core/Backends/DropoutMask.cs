using Engine.Training;

namespace Engine.Backends;

/// <summary>
/// An inverted-dropout mask that is never stored: element i of a tensor is kept when
/// <see cref="Philox.Uniform"/>(Seed, Offset, i) ≥ Probability, and a kept element is scaled by 1/(1 − Probability).
/// A run is reproducible from its seed, and a backward (or a fused kernel, on any thread) regenerates any
/// element's decision from its index alone. Plain arithmetic: ILGPU kernels take it as a parameter.
/// </summary>
public readonly record struct DropoutMask(float Probability, ulong Seed, ulong Offset)
{
    /// <summary>No dropout: every element kept, unscaled.</summary>
    public static DropoutMask None => default;

    public bool IsActive => Probability > 0f;

    /// <summary>The factor of element <paramref name="index"/>: 0 (dropped) or 1/(1 − p) (kept).</summary>
    public float Factor(long index) => FactorOf(Philox.Uniform(Seed, Offset, index));

    /// <summary>The factor of an element whose uniform number is <paramref name="uniform"/>.</summary>
    public float FactorOf(float uniform) => uniform >= Probability ? 1f / (1f - Probability) : 0f;

    /// <summary>Throws unless 0 ≤ p &lt; 1.</summary>
    public void Validate()
    {
        if (Probability is < 0f or >= 1f || float.IsNaN(Probability))
            throw new ArgumentOutOfRangeException(nameof(Probability), $"dropout probability {Probability} is not in [0, 1)");
    }
}
