using System.Diagnostics;
using Engine.Backends;
using Engine.Models.Bert;
using Engine.Tokenization;

namespace Engine.Training;

/// <summary>A tokenized example and its label id.</summary>
public sealed record LabelledExample(Encoding Encoding, int Label);

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
    /// <summary>Hidden dropout probability; null: the config's hidden_dropout_prob.</summary>
    public float? Dropout { get; init; }
    public float? MaxGradNorm { get; init; } = 1f;
    public int Seed { get; init; } = 42;
    public bool Shuffle { get; init; } = true;
    /// <summary>Stop when the evaluation F1 has not improved for this many epochs; null: never.</summary>
    public int? EarlyStoppingPatience { get; init; }
    public int GradientAccumulation { get; init; } = 1;
}

/// <summary>A line of training progress: a step's loss (the loss that was backpropagated), or an evaluation.</summary>
public abstract record TrainingEvent;
public sealed record StepEvent(int Step, int TotalSteps, double Loss, float LearningRate, double GradientNorm, double ExamplesPerSecond) : TrainingEvent;
public sealed record EvaluationEvent(int Epoch, EvaluationResult Result, bool Best) : TrainingEvent;

/// <summary>Mean loss, accuracy, and F1 (of class 1 for two classes, macro-averaged otherwise).</summary>
public sealed record EvaluationResult(double Loss, double Accuracy, double F1, int Count);

/// <summary>
/// Fine-tunes a <see cref="BertForSequenceClassification"/>: seeded shuffling, dropout on Philox streams,
/// gradient accumulation, AdamW with warmup and a linear or constant schedule, evaluation after every
/// epoch, early stopping on F1, and the best model saved. After every epoch a resumable checkpoint
/// (model, optimizer moments, trainer state) is written to <c>OUTPUT/last</c>; training resumed from it
/// continues exactly as if it had not stopped (each epoch's order and each step's dropout derive from the
/// seed and the epoch or step alone).
/// </summary>
public sealed class FineTuner(BertForSequenceClassification model, FineTuneOptions options)
{
    public const string LastDirectory = "last", OptimizerFile = "optimizer.safetensors", StateFile = "trainer_state.json";

    /// <summary>Trains; when <paramref name="output"/> is given, the best model (by eval F1, else the last) is written there.</summary>
    /// <param name="resumeFrom">A <c>last</c> checkpoint whose model this tuner's model was loaded from: its optimizer and trainer state are restored.</param>
    public EvaluationResult? Train(IReadOnlyList<LabelledExample> train, IReadOnlyList<LabelledExample>? eval, Action<TrainingEvent> log,
        string? output = null, string? tokenizerDirectory = null, string? resumeFrom = null)
    {
        if (train.Count == 0) throw new EngineException("no training examples");
        if (options.BatchSize <= 0 || options.GradientAccumulation <= 0) throw new EngineException("batch size and gradient accumulation must be positive");
        var backend = model.Backend;
        int batchesPerEpoch = (train.Count + options.BatchSize - 1) / options.BatchSize;
        // As Hugging Face's Trainer: a step every GradientAccumulation batches and at the end of each epoch.
        int stepsPerEpoch = (batchesPerEpoch + options.GradientAccumulation - 1) / options.GradientAccumulation;
        int totalSteps = Math.Min(options.MaxSteps ?? int.MaxValue, stepsPerEpoch * options.Epochs);
        int epochs = (totalSteps + stepsPerEpoch - 1) / stepsPerEpoch;
        int warmup = (int)Math.Ceiling(options.WarmupRatio * totalSteps);
        float dropout = options.Dropout ?? (float)model.Bert.Config.HiddenDropoutProb;
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
                accumulatedLoss += model.ForwardBackward(batch, [.. examples.Select(e => e.Label)],
                    new DropoutSettings(dropout, (ulong)options.Seed, optimizer.StepCount * options.GradientAccumulation + micro));
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
                bool improved = best is null || result.F1 > best.F1;
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
            ["best_f1"] = best?.F1,
            ["best_accuracy"] = best?.Accuracy,
            ["best_loss"] = best?.Loss,
            ["best_count"] = best?.Count,
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
        var best = state["best_f1"] is null ? null
            : new EvaluationResult((double)state["best_loss"]!, (double)state["best_accuracy"]!, (double)state["best_f1"]!, (int)state["best_count"]!);
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

    /// <summary>Loss, accuracy and F1 over <paramref name="examples"/> in evaluation mode.</summary>
    public EvaluationResult Evaluate(IReadOnlyList<LabelledExample> examples)
    {
        int labels = model.NumLabels;
        var confusion = new int[labels, labels];
        double loss = 0;
        for (int start = 0; start < examples.Count; start += options.BatchSize)
        {
            var chunk = examples.Skip(start).Take(options.BatchSize).ToList();
            int B = chunk.Count;
            var logits = model.Logits(Pad(chunk));
            for (int b = 0; b < B; b++)
            {
                var row = logits.AsSpan(b * labels, labels);
                int predicted = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(row);
                float max = row[predicted];
                double sum = 0;
                foreach (float z in row) sum += Math.Exp(z - max);
                loss += Math.Log(sum) + max - row[chunk[b].Label];
                confusion[chunk[b].Label, predicted]++;
            }
        }
        int correct = Enumerable.Range(0, labels).Sum(i => confusion[i, i]);
        double F1Of(int c)
        {
            int tp = confusion[c, c], fp = Enumerable.Range(0, labels).Sum(i => i == c ? 0 : confusion[i, c]), fn = Enumerable.Range(0, labels).Sum(j => j == c ? 0 : confusion[c, j]);
            return tp == 0 ? 0 : 2.0 * tp / (2.0 * tp + fp + fn);
        }
        double f1 = labels == 2 ? F1Of(1) : Enumerable.Range(0, labels).Average(F1Of);
        return new EvaluationResult(loss / examples.Count, (double)correct / examples.Count, f1, examples.Count);
    }
}
