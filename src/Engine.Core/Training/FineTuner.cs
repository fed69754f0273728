using System.Diagnostics;
using Engine.Backends;
using Engine.Models.Bert;
using Engine.Tokenization;

namespace Engine.Training;

/// <summary>A tokenized example and its label: a class id (an integer) for a classifier, the target value for regression.</summary>
public sealed record LabelledExample(Encoding Encoding, float Label);

public enum Schedule
{
    Linear,
    Constant,
}

/// <summary>Fine-tuning settings, with Hugging Face Trainer's defaults where it has them.</summary>
public sealed record FineTuneOptions
{
    public int Epochs { get; init; } = 3;
    /// <summary>Stop after this many optimizer steps (overrides epochs when smaller).</summary>
    public int? MaxSteps { get; init; }
    public int BatchSize { get; init; } = 16;
    public float LearningRate { get; init; } = 5e-5f;
    public float WeightDecay { get; init; } = 0.01f;
    /// <summary>Fraction of the optimizer steps spent warming up.</summary>
    public float WarmupRatio { get; init; }
    public Schedule Schedule { get; init; } = Schedule.Linear;
    /// <summary>Every dropout probability (hidden, attention probabilities, classifier); null: the config's.</summary>
    public float? Dropout { get; init; }
    public float? MaxGradNorm { get; init; } = 1f;
    public int Seed { get; init; } = 42;
    public bool Shuffle { get; init; } = true;
    /// <summary>Stop when the evaluation metric (<see cref="EvaluationResult.MetricName"/>) has not improved for this many epochs; null: never.</summary>
    public int? EarlyStoppingPatience { get; init; }
    public int GradientAccumulation { get; init; } = 1;
}

/// <summary>A line of training progress: a step's loss (the loss that was backpropagated), or an evaluation.</summary>
public abstract record TrainingEvent;
public sealed record StepEvent(int Step, int TotalSteps, double Loss, float LearningRate, double GradientNorm, double ExamplesPerSecond) : TrainingEvent;
public sealed record EvaluationEvent(int Epoch, EvaluationResult Result, bool Best) : TrainingEvent;

/// <summary>
/// An evaluation over Count examples: the mean loss (cross-entropy, or squared error for regression); for a
/// classifier, accuracy and F1 (of class 1 for two classes, macro-averaged otherwise); for regression, the
/// Pearson and Spearman correlations of predictions and targets.
/// </summary>
public sealed record EvaluationResult(double Loss, int Count, double? Accuracy = null, double? F1 = null, double? Pearson = null, double? Spearman = null)
{
    /// <summary>What early stopping and the best checkpoint follow: F1 for a classifier (higher is better), else the loss (lower is better).</summary>
    public string MetricName => F1 is null ? "eval_loss" : "f1";

    public bool IsBetterThan(EvaluationResult? other) => other is null || (F1 is { } f1 ? f1 > other.F1 : Loss < other.Loss);
}

/// <summary>
/// Fine-tunes a <see cref="BertForSequenceClassification"/> (a classifier or a regression head): seeded
/// shuffling, dropout on Philox streams, gradient accumulation, AdamW with warmup and a linear or constant
/// schedule, evaluation after every epoch, early stopping on the evaluation metric, and the best model saved. After every epoch a resumable checkpoint
/// (model, optimizer moments, trainer state) is written to <c>OUTPUT/last</c>; training resumed from it
/// continues exactly as if it had not stopped (each epoch's order and each step's dropout derive from the
/// seed and the epoch or step alone).
/// </summary>
public sealed class FineTuner(BertForSequenceClassification model, FineTuneOptions options)
{
    public const string LastDirectory = "last", OptimizerFile = "optimizer.safetensors", StateFile = "trainer_state.json";

    /// <summary>Trains; when <paramref name="output"/> is given, the best model (by the eval metric, else the last) is written there.</summary>
    /// <param name="resumeFrom">A <c>last</c> checkpoint whose model this tuner's model was loaded from: its optimizer and trainer state are restored.</param>
    public EvaluationResult? Train(IReadOnlyList<LabelledExample> train, IReadOnlyList<LabelledExample>? eval, Action<TrainingEvent> log,
        string? output = null, string? tokenizerDirectory = null, string? resumeFrom = null)
    {
        if (train.Count == 0) throw new EngineException("no training examples");
        if (options.BatchSize <= 0 || options.GradientAccumulation <= 0) throw new EngineException("batch size and gradient accumulation must be positive");
        ValidateLabels(train, "training");
        if (eval is not null) ValidateLabels(eval, "evaluation");
        var backend = model.Backend;
        int batchesPerEpoch = (train.Count + options.BatchSize - 1) / options.BatchSize;
        // As Hugging Face's Trainer: a step every GradientAccumulation batches and at the end of each epoch.
        int stepsPerEpoch = (batchesPerEpoch + options.GradientAccumulation - 1) / options.GradientAccumulation;
        int totalSteps = Math.Min(options.MaxSteps ?? int.MaxValue, stepsPerEpoch * options.Epochs);
        int epochs = (totalSteps + stepsPerEpoch - 1) / stepsPerEpoch;
        int warmup = (int)Math.Ceiling(options.WarmupRatio * totalSteps);
        using var optimizer = new AdamWOptimizer(backend, model.Parameters, new AdamWOptions { WeightDecay = options.WeightDecay, MaxGradNorm = options.MaxGradNorm });
        EvaluationResult? best = null;
        int epochsWithoutImprovement = 0, firstEpoch = 1;
        if (resumeFrom is not null) (firstEpoch, best, epochsWithoutImprovement) = Restore(resumeFrom, optimizer);
        int micro = 0;
        double accumulatedLoss = 0, examplesSeen = 0;
        var clock = Stopwatch.StartNew();
        model.ZeroGradients();
        for (int epoch = firstEpoch; epoch <= epochs && optimizer.StepCount < totalSteps; epoch++)
        {
            var order = Enumerable.Range(0, train.Count).ToArray();
            if (options.Shuffle) new Random(HashCode.Combine(options.Seed, epoch)).Shuffle(order);
            for (int start = 0; start < train.Count && optimizer.StepCount < totalSteps; start += options.BatchSize)
            {
                var examples = order.Skip(start).Take(options.BatchSize).Select(i => train[i]).ToList();
                var batch = Pad(examples);
                var dropout = DropoutSettings.FromConfig(model.Bert.Config, options.Dropout, (ulong)options.Seed, optimizer.StepCount * options.GradientAccumulation + micro);
                accumulatedLoss += model.ProblemType == ProblemType.Regression
                    ? model.ForwardBackward(batch, [.. examples.Select(e => e.Label)], dropout)
                    : model.ForwardBackward(batch, [.. examples.Select(e => (int)e.Label)], dropout);
                if (!double.IsFinite(accumulatedLoss))
                    throw new EngineException($"step {optimizer.StepCount + 1}: the loss is {accumulatedLoss}; training stopped");
                if (++micro < options.GradientAccumulation && start + options.BatchSize < train.Count) continue;
                float rate = options.Schedule == Schedule.Linear
                    ? LearningRateSchedule.Linear(options.LearningRate, optimizer.StepCount, warmup, totalSteps)
                    : LearningRateSchedule.Constant(options.LearningRate, optimizer.StepCount, warmup);
                double norm = optimizer.Step(rate, micro);
                examplesSeen += micro * options.BatchSize;
                log(new StepEvent(optimizer.StepCount, totalSteps, accumulatedLoss / micro, rate, norm, examplesSeen / clock.Elapsed.TotalSeconds));
                model.ZeroGradients();
                micro = 0;
                accumulatedLoss = 0;
            }
            if (eval is { Count: > 0 })
            {
                var result = Evaluate(eval);
                bool improved = result.IsBetterThan(best);
                log(new EvaluationEvent(epoch, result, improved));
                if (improved)
                {
                    best = result;
                    epochsWithoutImprovement = 0;
                    if (output is not null) model.Save(output, tokenizerDirectory);
                }
                else ++epochsWithoutImprovement;
            }
            if (output is not null) SaveLast(Path.Combine(output, LastDirectory), tokenizerDirectory, optimizer, epoch, best, epochsWithoutImprovement);
            if (options.EarlyStoppingPatience is { } patience && epochsWithoutImprovement >= patience) break;
        }
        if (output is not null && best is null) model.Save(output, tokenizerDirectory);
        return best;
    }

    private void SaveLast(string directory, string? tokenizerDirectory, AdamWOptimizer optimizer, int epoch, EvaluationResult? best, int epochsWithoutImprovement)
    {
        model.Save(directory, tokenizerDirectory);
        IO.SafeTensorsWriter.Write(Path.Combine(directory, OptimizerFile),
            optimizer.ReadState().SelectMany(s => new[] { IO.SafeTensorData.FromFloats("m." + s.Name, s.M, s.M.Length), IO.SafeTensorData.FromFloats("v." + s.Name, s.V, s.V.Length) }));
        var state = new System.Text.Json.Nodes.JsonObject
        {
            ["epoch"] = epoch,
            ["optimizer_steps"] = optimizer.StepCount,
            ["best"] = best is null ? null : new System.Text.Json.Nodes.JsonObject
            {
                ["loss"] = best.Loss, ["count"] = best.Count, ["accuracy"] = best.Accuracy, ["f1"] = best.F1,
                ["pearson"] = best.Pearson, ["spearman"] = best.Spearman,
            },
            ["epochs_without_improvement"] = epochsWithoutImprovement,
        };
        IO.AtomicFile.WriteText(Path.Combine(directory, StateFile), state.ToJsonString());
    }

    /// <summary>The epoch to continue from, the best result so far and the patience count, with the optimizer restored.</summary>
    private static (int, EvaluationResult?, int) Restore(string directory, AdamWOptimizer optimizer)
    {
        string statePath = Path.Combine(directory, StateFile);
        if (!File.Exists(statePath)) throw new EngineException($"{directory}: not a resumable checkpoint (no {StateFile})");
        var state = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(statePath)) as System.Text.Json.Nodes.JsonObject
            ?? throw new EngineException($"{statePath}: not a JSON object");
        using var file = IO.SafeTensorsFile.Open(Path.Combine(directory, OptimizerFile));
        var moments = new Dictionary<string, (float[], float[])>();
        foreach (var info in file.Tensors.Where(t => t.Name.StartsWith("m.", StringComparison.Ordinal)))
        {
            string name = info.Name[2..];
            if (!file.TryGet("v." + name, out var v)) throw new EngineException($"{directory}/{OptimizerFile}: no 'v.{name}'");
            moments[name] = (file.ReadFloat32(info), file.ReadFloat32(v));
        }
        optimizer.LoadState((int)state["optimizer_steps"]!, moments);
        var best = state["best"] is not System.Text.Json.Nodes.JsonObject b ? null
            : new EvaluationResult((double)b["loss"]!, (int)b["count"]!, (double?)b["accuracy"], (double?)b["f1"], (double?)b["pearson"], (double?)b["spearman"]);
        return ((int)state["epoch"]! + 1, best, (int)state["epochs_without_improvement"]!);
    }

    /// <summary>Examples padded into one batch (zero ids and mask past each one's end).</summary>
    private static BertBatch Pad(IReadOnlyList<LabelledExample> examples)
    {
        int T = examples.Max(e => e.Encoding.InputIds.Length), B = examples.Count;
        var ids = new int[B * T];
        var types = new int[B * T];
        var mask = new int[B * T];
        for (int b = 0; b < B; b++)
        {
            examples[b].Encoding.InputIds.CopyTo(ids, b * T);
            examples[b].Encoding.TokenTypeIds.CopyTo(types, b * T);
            examples[b].Encoding.AttentionMask.CopyTo(mask, b * T);
        }
        return new BertBatch(B, T, ids, types, mask);
    }

    /// <summary>Class ids must be integers below num_labels (or negative: ignored); regression targets must be finite.</summary>
    private void ValidateLabels(IReadOnlyList<LabelledExample> examples, string set)
    {
        if (model.ProblemType == ProblemType.Regression && model.NumLabels != 1)
            throw new EngineException($"fine-tuning a regression head needs num_labels 1 (one target per example), not {model.NumLabels}");
        for (int i = 0; i < examples.Count; i++)
        {
            float label = examples[i].Label;
            bool valid = model.ProblemType == ProblemType.Regression ? float.IsFinite(label) : label == MathF.Floor(label) && label < model.NumLabels;
            if (!valid)
                throw new EngineException($"{set} example {i + 1}: label {label} is not {(model.ProblemType == ProblemType.Regression ? "a finite number" : $"a class id below {model.NumLabels}")}");
        }
    }

    /// <summary>The model's evaluation metrics over <paramref name="examples"/>, in evaluation mode (no dropout).</summary>
    public EvaluationResult Evaluate(IReadOnlyList<LabelledExample> examples)
    {
        int labels = model.NumLabels;
        var outputs = new float[examples.Count * labels];
        for (int start = 0; start < examples.Count; start += options.BatchSize)
        {
            var chunk = examples.Skip(start).Take(options.BatchSize).ToList();
            model.Logits(Pad(chunk)).CopyTo(outputs, start * labels);
        }
        return model.ProblemType == ProblemType.Regression
            ? Metrics.Regression(outputs, [.. examples.Select(e => e.Label)])
            : Metrics.Classification(outputs, [.. examples.Select(e => (int)e.Label)], labels);
    }
}
