using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Models;
using Engine.Models.Bert;
using Engine.Tokenization;

namespace Engine.Training;

public enum Schedule
{
    Linear,
    Constant,
}

/// <summary>Training settings (fine-tuning and pre-training alike), with Hugging Face Trainer's defaults where it has them.</summary>
public sealed record TrainingOptions
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
    /// <summary>Write the resumable checkpoint <c>OUTPUT/last</c> after every epoch (model, optimizer moments: about three times the model's size).</summary>
    public bool KeepCheckpoint { get; init; } = true;
    /// <summary>Dynamic loss scaling (fp16 compute); null: none.</summary>
    public LossScaleOptions? LossScaling { get; init; }

    /// <summary>Throws, naming the setting, unless every setting is in its range (before any work, so that nothing trains on a bad one).</summary>
    public void Validate()
    {
        void Check(bool valid, string setting, object value, string range)
        {
            if (!valid) throw new EngineException($"training setting {setting} = {value} is out of range; expected {range}");
        }
        Check(Epochs >= 1, nameof(Epochs), Epochs, "at least 1");
        Check(MaxSteps is null or >= 1, nameof(MaxSteps), MaxSteps!, "at least 1");
        Check(BatchSize >= 1, nameof(BatchSize), BatchSize, "at least 1");
        Check(float.IsFinite(LearningRate) && LearningRate > 0, nameof(LearningRate), LearningRate, "a finite number above 0");
        Check(float.IsFinite(WeightDecay) && WeightDecay >= 0, nameof(WeightDecay), WeightDecay, "a finite number ≥ 0");
        Check(WarmupRatio is >= 0 and <= 1, nameof(WarmupRatio), WarmupRatio, "[0, 1]");
        Check(Dropout is null or >= 0 and < 1, nameof(Dropout), Dropout!, "[0, 1)");
        Check(MaxGradNorm is null || float.IsFinite(MaxGradNorm.Value) && MaxGradNorm > 0, nameof(MaxGradNorm), MaxGradNorm!, "a finite number above 0, or null for no clipping");
        Check(Seed >= 0, nameof(Seed), Seed, "at least 0");
        Check(EarlyStoppingPatience is null or >= 1, nameof(EarlyStoppingPatience), EarlyStoppingPatience!, "at least 1");
        Check(GradientAccumulation >= 1, nameof(GradientAccumulation), GradientAccumulation, "at least 1");
        LossScaling?.Validate();
    }
}

/// <summary>A line of training progress: a step's loss (the loss that was backpropagated), or an evaluation.</summary>
public abstract record TrainingEvent;
/// <summary>
/// A step: its loss, learning rate and gradient norm; under dynamic loss scaling, the scale its gradients were computed
/// with, and whether they overflowed so that the optimizer skipped the step (the norm is then infinite or NaN).
/// </summary>
public sealed record StepEvent(int Step, int TotalSteps, double Loss, float LearningRate, double GradientNorm, double ExamplesPerSecond,
    float? LossScale = null, bool Skipped = false) : TrainingEvent;
public sealed record EvaluationEvent(int Epoch, EvaluationResult Result, bool Best) : TrainingEvent;
/// <summary>A resumable checkpoint was written, whole, to <paramref name="Directory"/>.</summary>
public sealed record CheckpointEvent(int Epoch, int OptimizerSteps, string Directory) : TrainingEvent;

/// <summary>
/// An evaluation over Count examples (masked tokens, for a masked-LM head): the mean loss (cross-entropy, or squared
/// error for regression); for a classifier, accuracy and F1 (of class 1 for two classes, macro-averaged otherwise);
/// for regression, the Pearson and Spearman correlations of predictions and targets; for a masked-LM head, the
/// masked tokens' accuracy, their perplexity (e^loss of the masked-LM part) and, with a sentence head, its accuracy
/// (the loss is then the sum of both parts, as BertForPreTraining's).
/// </summary>
public sealed record EvaluationResult(double Loss, int Count, double? Accuracy = null, double? F1 = null, double? Pearson = null, double? Spearman = null,
    double? Perplexity = null, double? SentenceAccuracy = null)
{
    /// <summary>What early stopping and the best checkpoint follow: F1 for a classifier (higher is better), else the loss (lower is better).</summary>
    public string MetricName => F1 is null ? "eval_loss" : "f1";

    public bool IsBetterThan(EvaluationResult? other) => other is null || (F1 is { } f1 ? f1 > other.F1 : Loss < other.Loss);
}

/// <summary>Training stopped because its loss became infinite or NaN (a sweep records such a trial as diverged).</summary>
public sealed class TrainingDivergedException(string message) : EngineException(message);

/// <summary>
/// Trains a model with a task head (<see cref="ITaskModel"/>: a classifier, a regression head, a masked-LM head, …) on
/// an <see cref="ITrainingSet"/> (which makes each batch and its targets, masking it anew for a masked-LM head):
/// seeded shuffling, dropout on Philox streams, gradient accumulation, AdamW with warmup and a linear or constant
/// schedule, evaluation after every epoch, early stopping on the evaluation metric, and the best model saved. After
/// every epoch (and where a step limit stops one) a resumable checkpoint (model, optimizer moments, trainer state) is
/// written to <c>OUTPUT/last</c>; training resumed from it, in this process or another, continues exactly as if it had
/// not stopped (each epoch's order, each step's masks and dropout derive from the seed and the epoch or step alone,
/// through <see cref="SeedStreams"/>).
/// </summary>
/// <remarks>
/// The checkpoint is replaced whole or not at all, so a process killed at any moment leaves one to resume from:
/// the new one is written into <c>last.saving-*</c>, the old one renamed to <c>last.previous</c>, the new one
/// renamed to <c>last</c>, and the old one deleted. <see cref="ResolveCheckpoint"/> takes <c>last.previous</c>
/// when a kill fell between the two renames. The best model's only changing file (its weights) is itself
/// written atomically.
/// </remarks>
public sealed class Trainer(ITaskModel model, TrainingOptions options)
{
    public const string LastDirectory = "last", OptimizerFile = "optimizer.safetensors", StateFile = "trainer_state.json";

    /// <summary>As Hugging Face's Trainer: a step every GradientAccumulation batches and at the end of each epoch.</summary>
    private int StepsPerEpoch(int examples) =>
        ((examples + options.BatchSize - 1) / options.BatchSize + options.GradientAccumulation - 1) / options.GradientAccumulation;

    /// <summary>The optimizer steps a run over <paramref name="examples"/> takes: every epoch's, or MaxSteps when fewer.</summary>
    public int TotalSteps(int examples) => (int)Math.Min(options.MaxSteps ?? int.MaxValue, (long)StepsPerEpoch(examples) * options.Epochs);

    /// <summary>Fine-tunes on labelled examples (see the other overload).</summary>
    public EvaluationResult? Train(IReadOnlyList<LabelledExample> train, IReadOnlyList<LabelledExample>? eval, Action<TrainingEvent> log,
        string? output = null, string? tokenizerDirectory = null, string? resumeFrom = null) =>
        Train(new LabelledSet(train), eval is null ? null : new LabelledSet(eval), log, output, tokenizerDirectory, resumeFrom);

    /// <summary>Trains; when <paramref name="output"/> is given, the best model (by the eval metric, else the last) is written there.</summary>
    /// <param name="resumeFrom">A <c>last</c> checkpoint whose model this trainer's model was loaded from: its optimizer and trainer state are restored.</param>
    public EvaluationResult? Train(ITrainingSet train, ITrainingSet? eval, Action<TrainingEvent> log,
        string? output = null, string? tokenizerDirectory = null, string? resumeFrom = null)
    {
        options.Validate();
        if (train.Count == 0) throw new EngineException("no training examples");
        train.Validate(model, "training");
        eval?.Validate(model, "evaluation");
        var backend = model.Backend;
        int stepsPerEpoch = StepsPerEpoch(train.Count), totalSteps = TotalSteps(train.Count);
        int epochs = (totalSteps + stepsPerEpoch - 1) / stepsPerEpoch;
        int warmup = (int)Math.Ceiling(options.WarmupRatio * totalSteps);
        using var optimizer = new AdamWOptimizer(backend, model.Arena, new AdamWOptions { WeightDecay = options.WeightDecay, MaxGradNorm = options.MaxGradNorm });
        // The tokenizer files are read now: the directory they come from may be a checkpoint that this run replaces.
        var tokenizerFiles = tokenizerDirectory is null ? []
            : BertTokenizer.FileNames.Where(f => File.Exists(Path.Combine(tokenizerDirectory, f))).ToDictionary(f => f, f => File.ReadAllBytes(Path.Combine(tokenizerDirectory, f)));
        void Save(string directory)
        {
            model.Save(directory);
            foreach (var (name, bytes) in tokenizerFiles) IO.AtomicFile.Write(Path.Combine(directory, name), s => s.Write(bytes));
        }
        EvaluationResult? best = null;
        // Steps taken, skipped ones included: what the step limit, the progress and each step's streams count. The
        // optimizer counts its updates alone (AdamW's bias correction, and the schedule, as Hugging Face's Trainer
        // advances its scheduler only when the optimizer ran).
        int step = 0, epochsWithoutImprovement = 0, firstEpoch = 1, firstExample = 0;
        var scaler = options.LossScaling is { } scaling ? new DynamicLossScaler(scaling) : null;
        if (resumeFrom is not null) (firstEpoch, firstExample, best, epochsWithoutImprovement, step, scaler) = Restore(resumeFrom, optimizer, options.LossScaling);
        int micro = 0;
        double accumulatedLoss = 0, examplesSeen = 0;
        var clock = Stopwatch.StartNew();
        model.Arena.ZeroGradients(backend);
        for (int epoch = firstEpoch; epoch <= epochs && step < totalSteps; epoch++)
        {
            var order = options.Shuffle ? SeedStreams.EpochOrder(train.Count, (ulong)options.Seed, epoch) : [.. Enumerable.Range(0, train.Count)];
            // A run resumed from a checkpoint that --steps cut mid-epoch continues that epoch where it stopped.
            int start = epoch == firstEpoch ? firstExample : 0;
            for (; start < train.Count && step < totalSteps; start += options.BatchSize)
            {
                long microStep = (long)step * options.GradientAccumulation + micro;
                var batch = train.Collate(order[start..Math.Min(train.Count, start + options.BatchSize)], (ulong)options.Seed, microStep);
                var dropout = DropoutSettings.FromConfig(model.Config, options.Dropout, (ulong)options.Seed, microStep);
                float? lossScale = scaler?.Scale;
                accumulatedLoss += model.ForwardBackward(batch.Batch, batch.Targets, dropout, lossScale ?? 1f);
                if (!double.IsFinite(accumulatedLoss))
                    throw new TrainingDivergedException($"step {step + 1}: the loss is {accumulatedLoss}; training stopped");
                if (++micro < options.GradientAccumulation && start + options.BatchSize < train.Count) continue;
                float rate = options.Schedule == Schedule.Linear
                    ? LearningRateSchedule.Linear(options.LearningRate, optimizer.StepCount, warmup, totalSteps)
                    : LearningRateSchedule.Constant(options.LearningRate, optimizer.StepCount, warmup);
                double norm = optimizer.Step(rate, micro, lossScale);
                bool skipped = scaler is not null && !scaler.Update(double.IsFinite(norm));
                step++;
                examplesSeen += micro * options.BatchSize;
                log(new StepEvent(step, totalSteps, accumulatedLoss / micro, rate, norm, examplesSeen / clock.Elapsed.TotalSeconds, lossScale, skipped));
                model.Arena.ZeroGradients(backend);
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
                    if (output is not null) Save(output);
                }
                else ++epochsWithoutImprovement;
            }
            if (output is not null && options.KeepCheckpoint)
            {
                string last = Path.Combine(output, LastDirectory);
                SaveLast(last, Save, optimizer, new TrainerState(epoch, optimizer.StepCount, best, epochsWithoutImprovement, start < train.Count ? start : 0,
                    step, scaler?.Scale, scaler?.GoodSteps ?? 0));
                log(new CheckpointEvent(epoch, optimizer.StepCount, last));
            }
            if (options.EarlyStoppingPatience is { } patience && epochsWithoutImprovement >= patience) break;
        }
        if (output is not null && best is null) Save(output);
        return best;
    }

    private const string SavingInfix = ".saving-", PreviousSuffix = ".previous";

    /// <summary>
    /// The checkpoint to resume from for <paramref name="directory"/> (an <c>OUTPUT/last</c>): itself when it holds
    /// a trainer state, else the <c>.previous</c> one that a kill between the swap's two renames left; null if neither.
    /// </summary>
    public static string? ResolveCheckpoint(string directory)
    {
        string trimmed = Path.TrimEndingDirectorySeparator(directory);
        foreach (string candidate in new[] { trimmed, trimmed + PreviousSuffix })
            if (File.Exists(Path.Combine(candidate, StateFile))) return candidate;
        return null;
    }

    /// <summary>Writes the checkpoint beside <paramref name="directory"/> and swaps it in (see the class remarks).</summary>
    private static void SaveLast(string directory, Action<string> saveModel, AdamWOptimizer optimizer, TrainerState state)
    {
        string parent = Path.GetDirectoryName(Path.GetFullPath(directory))!, name = Path.GetFileName(directory);
        Directory.CreateDirectory(parent);
        foreach (string stale in Directory.EnumerateDirectories(parent, name + SavingInfix + "*")) Directory.Delete(stale, recursive: true);
        string staging = Path.Combine(parent, $"{name}{SavingInfix}{Environment.ProcessId}-{Guid.NewGuid():N}"), previous = directory + PreviousSuffix;
        WriteCheckpoint(staging, saveModel, optimizer, state);
        // Both present: a kill fell after the new one was renamed in; the .previous one is the older of the two.
        if (Directory.Exists(previous) && Directory.Exists(directory)) Directory.Delete(previous, recursive: true);
        if (Directory.Exists(directory)) Directory.Move(directory, previous);
        Directory.Move(staging, directory);
        if (Directory.Exists(previous)) Directory.Delete(previous, recursive: true);
    }

    private static void WriteCheckpoint(string directory, Action<string> saveModel, AdamWOptimizer optimizer, TrainerState state)
    {
        saveModel(directory);
        IO.SafeTensorsWriter.Write(Path.Combine(directory, OptimizerFile),
            optimizer.ReadState().SelectMany(s => new[] { IO.SafeTensorData.FromFloats("m." + s.Name, s.M, s.M.Length), IO.SafeTensorData.FromFloats("v." + s.Name, s.V, s.V.Length) }));
        state.Write(Path.Combine(directory, StateFile));
    }

    /// <summary>
    /// The epoch and example to continue from, the best result so far, the patience count, the steps taken and the loss
    /// scaler (the checkpoint's scale when it has one, else a new one when <paramref name="scaling"/> asks for it), with
    /// the optimizer restored.
    /// </summary>
    private static (int, int, EvaluationResult?, int, int, DynamicLossScaler?) Restore(string directory, AdamWOptimizer optimizer, LossScaleOptions? scaling)
    {
        var state = TrainerState.Read(Path.Combine(directory, StateFile));
        string optimizerPath = Path.Combine(directory, OptimizerFile);
        using var file = IO.SafeTensorsFile.Open(optimizerPath);
        var moments = new Dictionary<string, (float[], float[])>();
        foreach (var info in file.Tensors.Where(t => t.Name.StartsWith("m.", StringComparison.Ordinal)))
        {
            string name = info.Name[2..];
            if (!file.TryGet("v." + name, out var v)) throw new EngineException($"{optimizerPath}: no 'v.{name}'");
            var (first, second) = (file.ReadFloat32(info), file.ReadFloat32(v));
            // Adam's second moment is a running mean of squares: finite and never negative.
            if (!first.All(float.IsFinite) || !second.All(x => float.IsFinite(x) && x >= 0))
                throw new EngineException($"{optimizerPath}: the moments of '{name}' are not finite (or the second is negative); the checkpoint is damaged");
            moments[name] = (first, second);
        }
        try { optimizer.LoadState(state.OptimizerSteps, moments); }
        catch (EngineException e) { throw new EngineException($"{optimizerPath}: {e.Message}", e); }
        DynamicLossScaler? scaler = null;
        if (scaling is not null)
        {
            try { scaler = new DynamicLossScaler(scaling, state.LossScale, state.LossScale is null ? 0 : Math.Min(state.GoodSteps, scaling.GrowthInterval - 1)); }
            catch (EngineException e) { throw new EngineException($"{Path.Combine(directory, StateFile)}: {e.Message}", e); }
        }
        return state.NextExample > 0 ? (state.Epoch, state.NextExample, state.Best, state.EpochsWithoutImprovement, state.Steps, scaler)
            : (state.Epoch + 1, 0, state.Best, state.EpochsWithoutImprovement, state.Steps, scaler);
    }

    /// <summary>
    /// The model's evaluation metrics over <paramref name="examples"/>, in evaluation mode (no dropout), in batches in
    /// order; a set that masks draws its masks from a fixed evaluation stream, so every epoch is scored on the same ones.
    /// </summary>
    public EvaluationResult Evaluate(ITrainingSet examples) => model.Evaluate(EvaluationBatches(examples, options.BatchSize, (ulong)options.Seed));

    /// <summary>The set in order, <paramref name="batchSize"/> examples at a time, as evaluation sees it (masks from the evaluation stream).</summary>
    public static IEnumerable<TrainingBatch> EvaluationBatches(ITrainingSet examples, int batchSize, ulong seed)
    {
        for (int start = 0; start < examples.Count; start += batchSize)
            yield return examples.Collate([.. Enumerable.Range(start, Math.Min(batchSize, examples.Count - start))], seed, EvaluationStep);
    }

    /// <summary>The step whose streams an evaluation draws from (masking): one no training step reaches.</summary>
    public const long EvaluationStep = -1;
}

/// <summary>
/// Where a training run stood when its checkpoint was written (<c>trainer_state.json</c>): the epoch just finished (or,
/// when a step limit stopped it part-way, the epoch in progress and the position in its order of the first example not
/// yet trained: <see cref="NextExample"/>, 0 for a whole epoch), the optimizer's updates, the best evaluation so far,
/// the epochs since it improved, and under dynamic loss scaling the steps taken (skipped ones included), the loss scale
/// and the good steps since it last changed.
/// </summary>
public sealed record TrainerState(int Epoch, int OptimizerSteps, EvaluationResult? Best, int EpochsWithoutImprovement, int NextExample = 0,
    int? StepsTaken = null, float? LossScale = null, int GoodSteps = 0)
{
    /// <summary>Steps taken, skipped ones included: the optimizer's updates when none was skipped.</summary>
    public int Steps => StepsTaken ?? OptimizerSteps;

    /// <summary>Writes the state as JSON, atomically; <see cref="Read"/> reads it back.</summary>
    public void Write(string path)
    {
        var state = new JsonObject
        {
            ["epoch"] = Epoch,
            ["optimizer_steps"] = OptimizerSteps,
            ["best"] = Best is null ? null : new JsonObject
            {
                ["loss"] = Best.Loss, ["count"] = Best.Count, ["accuracy"] = Best.Accuracy, ["f1"] = Best.F1,
                ["pearson"] = Best.Pearson, ["spearman"] = Best.Spearman, ["perplexity"] = Best.Perplexity, ["sentence_accuracy"] = Best.SentenceAccuracy,
            },
            ["epochs_without_improvement"] = EpochsWithoutImprovement,
            ["next_example"] = NextExample,
            ["steps"] = Steps,
            ["loss_scale"] = LossScale,
            ["good_steps"] = GoodSteps,
        };
        IO.AtomicFile.WriteText(path, state.ToJsonString());
    }

    /// <summary>Reads and checks a trainer state; anything missing, mistyped or out of range is an error naming the file and field.</summary>
    public static TrainerState Read(string path)
    {
        if (!File.Exists(path)) throw new EngineException($"{Path.GetDirectoryName(path)}: not a resumable checkpoint (no {Path.GetFileName(path)})");
        var root = IO.JsonInput.ReadObject(path);
        int Count(JsonObject o, string field, string where) =>
            o[field] is JsonValue v && v.TryGetValue(out int n) && n >= 0 ? n : throw new EngineException($"{path}: '{where}{field}' must be a whole number ≥ 0");
        double? Number(JsonObject o, string field, bool required) => o[field] switch
        {
            null when !required => null,
            JsonValue v when v.TryGetValue(out double d) && double.IsFinite(d) => d,
            _ => throw new EngineException($"{path}: 'best.{field}' must be a finite number{(required ? "" : " or null")}"),
        };
        var best = root["best"] switch
        {
            null => null,
            JsonObject b => new EvaluationResult(Number(b, "loss", true)!.Value, Count(b, "count", "best."), Number(b, "accuracy", false), Number(b, "f1", false),
                Number(b, "pearson", false), Number(b, "spearman", false), Number(b, "perplexity", false), Number(b, "sentence_accuracy", false)),
            _ => throw new EngineException($"{path}: 'best' must be an object or null"),
        };
        int epoch = Count(root, "epoch", "");
        if (epoch < 1) throw new EngineException($"{path}: 'epoch' must be at least 1");
        // next_example is absent from checkpoints written before it existed (which always ended an epoch).
        int next = root["next_example"] is null ? 0 : Count(root, "next_example", "");
        // So are steps, loss_scale and good_steps (from before loss scaling: no step was skipped).
        int updates = Count(root, "optimizer_steps", ""), steps = root["steps"] is null ? updates : Count(root, "steps", "");
        if (steps < updates) throw new EngineException($"{path}: 'steps' ({steps}) must be at least 'optimizer_steps' ({updates})");
        float? scale = root["loss_scale"] switch
        {
            null => null,
            JsonValue v when v.TryGetValue(out float f) && float.IsFinite(f) && f > 0 => f,
            _ => throw new EngineException($"{path}: 'loss_scale' must be a finite number above 0, or null"),
        };
        return new TrainerState(epoch, updates, best, Count(root, "epochs_without_improvement", ""), next, steps, scale,
            root["good_steps"] is null ? 0 : Count(root, "good_steps", ""));
    }
}
