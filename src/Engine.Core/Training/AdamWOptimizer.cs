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
/// AdamW with decoupled weight decay (none on biases and LayerNorm weights, as Hugging Face's examples
/// group them), bias correction and optional global-norm clipping, updating parameters on their backend.
/// </summary>
public sealed class AdamWOptimizer : IDisposable
{
    private readonly ITrainingBackend _backend;
    private readonly (Parameter Parameter, DeviceBuffer<float> M, DeviceBuffer<float> V, bool Decays)[] _state;

    public AdamWOptions Options { get; }
    /// <summary>Optimizer steps taken so far (t of the bias correction is StepCount after a step).</summary>
    public int StepCount { get; private set; }

    public AdamWOptimizer(ITrainingBackend backend, IEnumerable<Parameter> parameters, AdamWOptions options)
    {
        _backend = backend;
        Options = options;
        _state = [.. parameters.Select(p => (p, Zeros(p.Length), Zeros(p.Length), Decays(p)))];
    }

    /// <summary>No decay on biases and LayerNorm weights (Hugging Face's <c>no_decay = ["bias", "LayerNorm.weight"]</c>).</summary>
    public static bool Decays(Parameter parameter) =>
        !parameter.Parts.Any(p => p.Name.EndsWith(".bias", StringComparison.Ordinal) || p.Name.Contains("LayerNorm", StringComparison.Ordinal));

    /// <summary>
    /// One update at <paramref name="learningRate"/> from the accumulated gradients (divided by
    /// <paramref name="gradientDivisor"/> first, for gradient accumulation). Returns the global gradient norm
    /// before clipping; a NaN or infinite norm stops training with an error naming the step.
    /// </summary>
    public double Step(float learningRate, int gradientDivisor = 1)
    {
        double squares = 0;
        foreach (var (parameter, _, _, _) in _state) squares += _backend.SumOfSquares(Gradient(parameter), parameter.Length);
        double norm = Math.Sqrt(squares) / gradientDivisor;
        if (!double.IsFinite(norm))
            throw new EngineException($"step {StepCount + 1}: the gradient norm is {norm} (the loss or a gradient is NaN or infinite); training stopped");
        float scale = 1f / gradientDivisor;
        // torch.nn.utils.clip_grad_norm_: coefficient max_norm / (norm + 1e-6), clamped to 1.
        if (Options.MaxGradNorm is { } maxNorm) scale *= (float)Math.Min(1.0, maxNorm / (norm + 1e-6));
        StepCount++;
        foreach (var (parameter, m, v, decays) in _state)
            _backend.AdamW(parameter.Value, Gradient(parameter), m, v, parameter.Length,
                new AdamWStep(learningRate, Options.Beta1, Options.Beta2, Options.Eps, decays ? Options.WeightDecay : 0f, scale, StepCount));
        return norm;
    }

    /// <summary>The moment estimates by <see cref="StateKey"/>, for checkpoints.</summary>
    public IEnumerable<(string Name, float[] M, float[] V)> ReadState() =>
        _state.Select(s => (StateKey(s.Parameter), Read(s.M, s.Parameter.Length), Read(s.V, s.Parameter.Length)));

    /// <summary>A parameter's name without the base model's <c>bert.</c> prefix, which checkpoints may or may not carry.</summary>
    public static string StateKey(Parameter parameter) =>
        string.Join("+", parameter.Parts.Select(p => p.Name.StartsWith("bert.", StringComparison.Ordinal) ? p.Name[5..] : p.Name));

    /// <summary>Restores moment estimates and the step count saved by <see cref="ReadState"/>.</summary>
    public void LoadState(int stepCount, IReadOnlyDictionary<string, (float[] M, float[] V)> state)
    {
        foreach (var (parameter, m, v, _) in _state)
        {
            if (!state.TryGetValue(StateKey(parameter), out var saved) || saved.M.Length != parameter.Length || saved.V.Length != parameter.Length)
                throw new EngineException($"optimizer state has no moments of length {parameter.Length} for '{StateKey(parameter)}'");
            _backend.Upload<float>(saved.M, m);
            _backend.Upload<float>(saved.V, v);
        }
        StepCount = stepCount;
    }

    private static DeviceBuffer<float> Gradient(Parameter parameter) =>
        parameter.Gradient ?? throw new InvalidOperationException($"parameter {parameter.Name} has no gradient");

    private DeviceBuffer<float> Zeros(int length)
    {
        var buffer = _backend.Allocate<float>(length);
        _backend.Upload<float>(new float[length], buffer);
        return buffer;
    }

    private float[] Read(DeviceBuffer<float> buffer, int length)
    {
        var values = new float[length];
        _backend.Download(buffer, values);
        return values;
    }

    public void Dispose()
    {
        foreach (var (_, m, v, _) in _state)
        {
            m.Dispose();
            v.Dispose();
        }
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
