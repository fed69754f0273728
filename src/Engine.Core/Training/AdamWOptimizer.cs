using Engine.Backends;
using Engine.Models;

namespace Engine.Training;

/// <summary>AdamW hyper-parameters (PyTorch's defaults but the weight decay, Hugging Face's Trainer default 0 made explicit).</summary>
public sealed record AdamWOptions
{
    public float Beta1 { get; init; } = 0.9f;
    public float Beta2 { get; init; } = 0.999f;
    public float Eps { get; init; } = 1e-8f;
    public float WeightDecay { get; init; } = 0.01f;
    /// <summary>Global-norm gradient clipping; null: none.</summary>
    public float? MaxGradNorm { get; init; } = 1f;
}

/// <summary>
/// AdamW with decoupled weight decay (none on the tensors the model family exempts: biases and LayerNorm weights),
/// bias correction and optional global-norm clipping, over a whole <see cref="ParameterArena"/>: its moments are two
/// buffers of the arena's layout, and a step is one norm reduction and one AdamW launch, with no per-tensor host round trip.
/// </summary>
public sealed class AdamWOptimizer : IDisposable
{
    private readonly ITrainingBackend _backend;
    private readonly ParameterArena _arena;
    private readonly DeviceBuffer<float> _m, _v;

    public AdamWOptions Options { get; }
    /// <summary>Optimizer steps taken so far (t of the bias correction is StepCount after a step).</summary>
    public int StepCount { get; private set; }

    public AdamWOptimizer(ITrainingBackend backend, ParameterArena arena, AdamWOptions options)
    {
        if (arena.FirstUntrainable is { } kept) throw new EngineException(kept.WhyNotTrainable);
        _backend = backend;
        _arena = arena;
        Options = options;
        (_m, _v) = (Zeros(arena.Length), Zeros(arena.Length));
    }

    /// <summary>
    /// One update at <paramref name="learningRate"/> from the accumulated gradients (divided by
    /// <paramref name="gradientDivisor"/> first, for gradient accumulation, and by <paramref name="lossScale"/>, the
    /// loss scale of dynamic loss scaling they were computed under, if any). Returns the global gradient norm before
    /// clipping. A NaN or infinite norm stops training with an error naming the step, unless the gradients are
    /// loss-scaled: then the overflow is the scale's, the norm is returned and nothing is updated (the step is skipped,
    /// as PyTorch's GradScaler skips it, and <see cref="StepCount"/> stays).
    /// </summary>
    public double Step(float learningRate, int gradientDivisor = 1, float? lossScale = null)
    {
        var gradients = _arena.Gradients ?? throw new InvalidOperationException("no gradients: call ZeroGradients and a backward pass before a step");
        double divisor = (double)gradientDivisor * (lossScale ?? 1f);
        double norm = Math.Sqrt(_backend.SumOfSquares(gradients, _arena.Length)) / divisor;
        if (!double.IsFinite(norm))
        {
            if (lossScale is not null) return norm;
            throw new EngineException($"step {StepCount + 1}: the gradient norm is {norm} (the loss or a gradient is NaN or infinite); training stopped");
        }
        float scale = (float)(1.0 / divisor);
        // torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), clamped to 1.
        if (Options.MaxGradNorm is { } maxNorm) scale *= (float)Math.Min(1.0, maxNorm / (norm + 1e-6));
        StepCount++;
        _backend.AdamW(_arena.Values, gradients, _m, _v, _arena.Length, _arena.DecayedLength,
            new AdamWStep(learningRate, Options.Beta1, Options.Beta2, Options.Eps, Options.WeightDecay, scale, StepCount));
        return norm;
    }

    /// <summary>The moment estimates of every arena entry, by its name, for checkpoints.</summary>
    public IEnumerable<(string Name, float[] M, float[] V)> ReadState() =>
        _arena.Entries.Select(e => (e.Name, Read(_m, e), Read(_v, e)));

    /// <summary>Restores moment estimates and the step count saved by <see cref="ReadState"/>.</summary>
    public void LoadState(int stepCount, IReadOnlyDictionary<string, (float[] M, float[] V)> state)
    {
        foreach (var entry in _arena.Entries)
        {
            if (!state.TryGetValue(entry.Name, out var saved) || saved.M.Length != entry.Length || saved.V.Length != entry.Length)
                throw new EngineException($"optimizer state has no moments of length {entry.Length} for '{entry.Name}'");
            _backend.Upload<float>(saved.M, _m.Slice(entry.Offset, entry.Length));
            _backend.Upload<float>(saved.V, _v.Slice(entry.Offset, entry.Length));
        }
        StepCount = stepCount;
    }

    private DeviceBuffer<float> Zeros(int length)
    {
        var buffer = _backend.Allocate<float>(Math.Max(length, 1));
        _backend.Clear(buffer);
        return buffer;
    }

    private float[] Read(DeviceBuffer<float> buffer, ParameterEntry entry)
    {
        var values = new float[entry.Length];
        _backend.Download(buffer.Slice(entry.Offset, entry.Length), values);
        return values;
    }

    public void Dispose()
    {
        _m.Dispose();
        _v.Dispose();
    }
}

/// <summary>Learning-rate schedules, as Hugging Face's <c>get_*_schedule_with_warmup</c>: the rate of optimizer step k (0-based).</summary>
public static class LearningRateSchedule
{
    /// <summary>Linear warmup over <paramref name="warmupSteps"/>, then linear decay to 0 at <paramref name="totalSteps"/>.</summary>
    public static float Linear(float baseRate, int step, int warmupSteps, int totalSteps) =>
        step < warmupSteps ? baseRate * step / Math.Max(1, warmupSteps)
        : baseRate * Math.Max(0f, (float)(totalSteps - step) / Math.Max(1, totalSteps - warmupSteps));

    /// <summary>Linear warmup, then constant.</summary>
    public static float Constant(float baseRate, int step, int warmupSteps) =>
        step < warmupSteps ? baseRate * step / Math.Max(1, warmupSteps) : baseRate;
}
