namespace Engine.Training;

/// <summary>Dynamic loss scaling's settings: PyTorch's <c>torch.amp.GradScaler</c> defaults.</summary>
public sealed record LossScaleOptions
{
    /// <summary>The scale of the first step.</summary>
    public float InitialScale { get; init; } = 65536f;
    /// <summary>The scale is multiplied by this after <see cref="GrowthInterval"/> steps in a row whose gradients were finite.</summary>
    public float GrowthFactor { get; init; } = 2f;
    /// <summary>The scale is multiplied by this when a step's gradients overflow (and the step is skipped).</summary>
    public float BackoffFactor { get; init; } = 0.5f;
    public int GrowthInterval { get; init; } = 2000;

    /// <summary>Throws, naming the setting, unless every setting is in its range.</summary>
    public void Validate()
    {
        void Check(bool valid, string setting, object value, string range)
        {
            if (!valid) throw new EngineException($"loss-scaling setting {setting} = {value} is out of range; expected {range}");
        }
        Check(float.IsFinite(InitialScale) && InitialScale > 0, nameof(InitialScale), InitialScale, "a finite number above 0");
        Check(float.IsFinite(GrowthFactor) && GrowthFactor > 1, nameof(GrowthFactor), GrowthFactor, "a finite number above 1");
        Check(BackoffFactor is > 0 and < 1, nameof(BackoffFactor), BackoffFactor, "(0, 1)");
        Check(GrowthInterval >= 1, nameof(GrowthInterval), GrowthInterval, "at least 1");
    }
}

/// <summary>
/// Dynamic loss scaling for fp16 training (Micikevicius et al., "Mixed Precision Training", as PyTorch's GradScaler):
/// the loss's gradient is multiplied by <see cref="Scale"/> so that small gradients survive fp16's narrow range; a step
/// whose (scaled) gradients overflowed to infinity or NaN is skipped and the scale shrinks; after
/// <see cref="LossScaleOptions.GrowthInterval"/> good steps in a row it grows again. bf16 has fp32's range and needs none.
/// </summary>
public sealed class DynamicLossScaler
{
    private readonly LossScaleOptions _options;

    public DynamicLossScaler(LossScaleOptions options, float? scale = null, int goodSteps = 0)
    {
        options.Validate();
        _options = options;
        Scale = scale ?? options.InitialScale;
        if (!float.IsFinite(Scale) || Scale <= 0) throw new EngineException($"loss scale {Scale} is not a finite number above 0");
        if (goodSteps < 0 || goodSteps >= options.GrowthInterval) throw new EngineException($"{goodSteps} good steps is outside [0, {options.GrowthInterval})");
        GoodSteps = goodSteps;
    }

    /// <summary>What the loss is multiplied by for the next step's gradients.</summary>
    public float Scale { get; private set; }

    /// <summary>Steps in a row with finite gradients since the scale last changed.</summary>
    public int GoodSteps { get; private set; }

    /// <summary>
    /// After a step's backward: <paramref name="finite"/> says whether its gradients were all finite. Returns whether the
    /// optimizer step is to be taken; an overflow shrinks the scale (never below the smallest positive float) and skips it.
    /// </summary>
    public bool Update(bool finite)
    {
        if (!finite)
        {
            Scale = Math.Max(Scale * _options.BackoffFactor, float.Epsilon);
            GoodSteps = 0;
            return false;
        }
        if (++GoodSteps == _options.GrowthInterval)
        {
            GoodSteps = 0;
            float grown = Scale * _options.GrowthFactor;
            if (float.IsFinite(grown)) Scale = grown;
        }
        return true;
    }
}
