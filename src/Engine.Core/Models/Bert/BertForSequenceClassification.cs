using System.Text.Json.Nodes;
using Engine.Backends;
using Engine.IO;
using Engine.Training;

namespace Engine.Models.Bert;

/// <summary>
/// Dropout for one forward-backward pass: Hugging Face's three probabilities (hidden_dropout_prob on the
/// embeddings and each block's output, attention_probs_dropout_prob on the attention probabilities,
/// classifier_dropout before the classifier) and the Philox stream (seed, step).
/// </summary>
public readonly record struct DropoutSettings(float Hidden, float AttentionProbabilities, float Classifier, ulong Seed, long Step)
{
    public static readonly DropoutSettings None = default;

    /// <summary>The same probability everywhere (the CLI's <c>--dropout</c>).</summary>
    public static DropoutSettings Uniform(float probability, ulong seed, long step) => new(probability, probability, probability, seed, step);

    /// <summary>
    /// The config's probabilities, as transformers reads them: classifier_dropout when set, else
    /// hidden_dropout_prob; <paramref name="overrideAll"/>, when given, replaces all three.
    /// </summary>
    public static DropoutSettings FromConfig(BertConfig config, float? overrideAll, ulong seed, long step) =>
        overrideAll is { } p ? Uniform(p, seed, step)
        : new((float)config.HiddenDropoutProb, (float)config.AttentionProbsDropoutProb, (float)(config.ClassifierDropout ?? config.HiddenDropoutProb), seed, step);

    // Each site of each step has its own Philox stream (offset): 0 embeddings, 1 classifier, then three per layer.
    /// <summary>After the embeddings' LayerNorm (BertEmbeddings.dropout).</summary>
    public DropoutMask EmbeddingsMask => new(Hidden, Seed, Offset(0));
    /// <summary>Before the classifier (BertForSequenceClassification.dropout).</summary>
    public DropoutMask ClassifierMask => new(Classifier, Seed, Offset(1));
    /// <summary>On layer <paramref name="layer"/>'s attention probabilities (BertSelfAttention.dropout).</summary>
    public DropoutMask AttentionProbabilitiesMask(int layer) => new(AttentionProbabilities, Seed, Offset(2 + 3 * layer));
    /// <summary>On layer <paramref name="layer"/>'s attention output projection (BertSelfOutput.dropout).</summary>
    public DropoutMask AttentionOutputMask(int layer) => new(Hidden, Seed, Offset(3 + 3 * layer));
    /// <summary>On layer <paramref name="layer"/>'s FFN output projection (BertOutput.dropout).</summary>
    public DropoutMask OutputMask(int layer) => new(Hidden, Seed, Offset(4 + 3 * layer));

    private ulong Offset(int site) => (ulong)Step * 1024 + (ulong)site;
}

/// <summary>What a sequence-classification head predicts (config.json's <c>problem_type</c>).</summary>
public enum ProblemType
{
    /// <summary>One class of num_labels; mean cross-entropy.</summary>
    SingleLabelClassification,
    /// <summary>num_labels real values (usually one); mean squared error.</summary>
    Regression,
}

/// <summary>
/// <c>BertForSequenceClassification</c>: <see cref="BertModel"/> (with its pooler), dropout, a classifier (num_labels)
/// and its loss — mean cross-entropy, or mean squared error for regression. It holds no encoder code: the encoder's
/// forward and backward are <see cref="BertModel"/>'s, and a training loop drives it through <see cref="ITaskModel"/>.
/// </summary>
/// <remarks>
/// Mirrors transformers' BertForSequenceClassification: single-label classification, or regression when
/// problem_type says so or num_labels is 1 (transformers' rule); multi-label classification is not
/// supported yet. Dropout applies where Hugging Face's does: the embeddings, the attention probabilities (inside the
/// fused attention), the attention output, the FFN output, and the pooler output before the classifier.
/// Thread safety: <see cref="Logits"/> may be called from several threads at once (they take turns); training belongs to one thread.
/// </remarks>
public sealed class BertForSequenceClassification : ITaskModel, Interpretability.IAttributable
{
    private readonly ITrainingBackend _backend;

    public ITrainingBackend Backend => _backend;
    public BertModel Bert { get; }
    public BertConfig Config => Bert.Config;
    public ParameterArena Arena => Bert.Arena;
    public Linear Classifier { get; }
    public int NumLabels => Classifier.OutFeatures;
    public ProblemType ProblemType { get; }
    /// <summary>Label names by id (config.json's <c>id2label</c>), or LABEL_i.</summary>
    public IReadOnlyList<string> Labels { get; }
    /// <summary>Whether the checkpoint had no pooler (a masked-LM one), so that this model's is new: it needs fine-tuning like the classifier.</summary>
    public bool PoolerMissing { get; private init; }
    /// <summary>Checkpoint tensors this model (base and head) did not read, e.g. a pre-training head's.</summary>
    public IReadOnlyList<string> UnusedTensors => Bert.UnusedTensors;

    private BertForSequenceClassification(ITrainingBackend backend, BertModel bert, Linear classifier, IReadOnlyList<string> labels, ProblemType problemType)
    {
        _backend = backend;
        ProblemType = problemType;
        Bert = bert;
        Classifier = classifier;
        Labels = labels;
    }

    /// <summary>
    /// Loads a directory holding either a classification checkpoint (<c>classifier.*</c>) or a base model, whose
    /// classifier is then initialised from N(0, 0.02²) with <paramref name="seed"/> (and its pooler too when it has none,
    /// as a masked-LM checkpoint: <see cref="PoolerMissing"/>). num_labels comes from
    /// <paramref name="numLabels"/> or <paramref name="labelNames"/>, else config.json's <c>num_labels</c> or
    /// <c>id2label</c>, else 1 for regression and 2 otherwise. The problem type comes from
    /// <paramref name="problemType"/>, else config.json's <c>problem_type</c>, else regression exactly when num_labels is 1.
    /// </summary>
    /// <param name="halfWeights">Weights stored in F16 or BF16: widened (fp32 master weights, for training; the default) or
    /// kept as stored (<see cref="HalfWeights.Keep"/>: inference only).</param>
    public static BertForSequenceClassification Load(string directory, ITrainingBackend backend, int? numLabels = null, int seed = 0,
        IReadOnlyList<string>? labelNames = null, ProblemType? problemType = null, HalfWeights halfWeights = HalfWeights.Widen)
    {
        string configPath = Path.Combine(directory, BertConfig.FileName);
        var config = BertConfig.Load(configPath);
        var configured = ConfiguredProblemType(config.Raw, configPath);
        int labels = labelNames?.Count ?? numLabels ?? ConfiguredLabels(config.Raw, configPath) ?? ((problemType ?? configured) == ProblemType.Regression ? 1 : 2);
        if (labels is < 1 or > MaxLabels) throw new EngineException($"num_labels must be in [1, {MaxLabels}], got {labels}");
        var problem = problemType ?? ProblemTypeOf(configured, labels);
        var family = ModelRegistry.Family(config);
        using var checkpoint = Checkpoint.Open(directory);
        var arena = new ParameterArena(backend, family.Decays, halfWeights);
        try
        {
            var source = WeightScope.ForBaseModel(checkpoint, family.WeightPrefix);
            // A checkpoint without a pooler (a masked-LM one) gets a new one, as transformers gives it (PoolerMissing says so).
            var bert = new BertModel(backend, config, new ParameterScope(arena, source, family.WeightPrefix + "."), ownsArena: true,
                newPooler: new WeightInitializer(config.InitializerRange, (ulong)seed, config.PadTokenId));
            bool poolerMissing = !source.Sub(family.PoolerModule).Sub("dense").Has("weight");
            var head = new ParameterScope(arena, WeightScope.Root(checkpoint), "").Sub("classifier");
            var classifier = head.Has("weight")
                ? Linear.Load(head, config.HiddenSize, labels)
                : Linear.CreateRandom(head, config.HiddenSize, labels, 0.02, seed);
            arena.Build();
            bert.UnusedTensors = checkpoint.UnusedNames;
            return new BertForSequenceClassification(backend, bert, classifier, labelNames ?? ConfiguredLabelNames(config.Raw, labels), problem) { PoolerMissing = poolerMissing };
        }
        catch
        {
            arena.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads a fine-tuned classifier for inference: a checkpoint without a classification head is refused, naming
    /// what it holds, instead of predicting with a randomly initialised one. Weights stored in F16 or BF16 stay so unless
    /// <paramref name="halfWeights"/> says to widen them.
    /// </summary>
    public static BertForSequenceClassification LoadWithHead(string directory, ITrainingBackend backend, HalfWeights halfWeights = HalfWeights.Keep)
    {
        using (var checkpoint = Checkpoint.Open(directory))
        {
            if (!WeightScope.Root(checkpoint).Sub("classifier").Has("weight"))
            {
                var config = BertConfig.Load(Path.Combine(directory, BertConfig.FileName));
                string holds = config.Raw["architectures"] is JsonArray { Count: > 0 } names ? string.Join(", ", names.Select(n => n?.ToJsonString().Trim('"')))
                    : "a base model";
                throw new EngineException($"{directory}: no classification head (no 'classifier.weight' among its {checkpoint.Names.Count()} tensors; it holds {holds}); " +
                    $"'engine finetune --model {directory} --train DATA' trains one");
            }
        }
        return Load(directory, backend, halfWeights: halfWeights);
    }

    private static ProblemType? ConfiguredProblemType(JsonObject raw, string source) => raw["problem_type"] switch
    {
        null => null,
        JsonValue v when v.TryGetValue(out string? name) && name == "regression" => ProblemType.Regression,
        JsonValue v when v.TryGetValue(out string? name) && name == "single_label_classification" => ProblemType.SingleLabelClassification,
        var other => throw new EngineException($"{source}: problem_type {other.ToJsonString()} is not supported (regression or single_label_classification)"),
    };

    /// <summary>transformers' rule when config.json has no problem_type: regression exactly when num_labels is 1.</summary>
    private static ProblemType ProblemTypeOf(ProblemType? configured, int labels) =>
        configured ?? (labels == 1 ? ProblemType.Regression : ProblemType.SingleLabelClassification);

    /// <summary>
    /// The label names, by id, of a classifier checkpoint (config.json naming <c>BertForSequenceClassification</c>,
    /// not a regression head), so that training on from it keeps its ids; null for anything else (a base model's
    /// config may carry placeholder LABEL_i names, which do not bind anything).
    /// </summary>
    public static IReadOnlyList<string>? CheckpointLabels(string directory)
    {
        string path = Path.Combine(directory, BertConfig.FileName);
        var config = BertConfig.Load(path);
        if (ModelRegistry.Head(config) != ModelHead.SequenceClassification || ConfiguredLabels(config.Raw, path) is not { } count) return null;
        return ProblemTypeOf(ConfiguredProblemType(config.Raw, path), count) == ProblemType.Regression ? null : ConfiguredLabelNames(config.Raw, count);
    }

    private static string[] ConfiguredLabelNames(JsonObject raw, int count) =>
        [.. Enumerable.Range(0, count).Select(i => raw["id2label"] is JsonObject map && map[i.ToString(System.Globalization.CultureInfo.InvariantCulture)] is JsonValue v
            && v.TryGetValue(out string? name) ? name : $"LABEL_{i}")];

    /// <summary>
    /// Writes a Hugging Face directory transformers' <c>from_pretrained</c> loads: config.json
    /// (<c>BertForSequenceClassification</c>, num_labels, id2label, label2id), model.safetensors with the arena's names
    /// and shapes (Q/K/V separate, as the table holds them), and the tokenizer files of <paramref name="tokenizerDirectory"/>.
    /// Every file is written atomically.
    /// </summary>
    public void Save(string directory, string? tokenizerDirectory)
    {
        Directory.CreateDirectory(directory);
        SafeTensorsWriter.Write(Path.Combine(directory, Checkpoint.SingleFileName), Arena.ToSafeTensors(), new Dictionary<string, string> { ["format"] = "pt" });
        var config = Bert.Config.ToJson();
        config["architectures"] = new JsonArray(ModelRegistry.ArchitectureName(Bert.Family, ModelHead.SequenceClassification));
        config["num_labels"] = NumLabels;
        config["problem_type"] = ProblemType == ProblemType.Regression ? "regression" : "single_label_classification";
        var id2label = new JsonObject();
        var label2id = new JsonObject();
        for (int i = 0; i < NumLabels; i++)
        {
            id2label[i.ToString(System.Globalization.CultureInfo.InvariantCulture)] = Labels[i];
            label2id[Labels[i]] = i;
        }
        config["id2label"] = id2label;
        config["label2id"] = label2id;
        AtomicFile.WriteText(Path.Combine(directory, BertConfig.FileName), config.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
        if (tokenizerDirectory is not null && Path.GetFullPath(tokenizerDirectory) != Path.GetFullPath(directory))
            foreach (string file in Tokenization.BertTokenizer.FileNames)
                if (File.Exists(Path.Combine(tokenizerDirectory, file)))
                    AtomicFile.Write(Path.Combine(directory, file), s => { using var source = File.OpenRead(Path.Combine(tokenizerDirectory, file)); source.CopyTo(s); });
    }

    public void Save(string directory) => Save(directory, tokenizerDirectory: null);

    /// <summary>The most outputs a classification head may have (far above any real label set; it bounds what a config can make us allocate).</summary>
    public const int MaxLabels = 1 << 16;

    /// <summary>config.json's num_labels, else the size of its id2label, else null; a value outside [1, <see cref="MaxLabels"/>] is an error.</summary>
    private static int? ConfiguredLabels(JsonObject raw, string source)
    {
        int? count = raw["num_labels"] switch
        {
            null => raw["id2label"] is JsonObject map ? map.Count : null,
            JsonValue v when v.TryGetValue(out int n) => n,
            var other => throw new EngineException($"{source}: 'num_labels' must be an integer, got {other.ToJsonString()}"),
        };
        if (count is < 1 or > MaxLabels) throw new EngineException($"{source}: 'num_labels' must be in [1, {MaxLabels}], got {count}");
        return count;
    }

    /// <summary>Every trainable tensor, in Hugging Face's module order (views of the arena).</summary>
    public IReadOnlyList<Parameter> Parameters => Arena.Parameters;

    public void ZeroGradients() => Arena.ZeroGradients(_backend);

    /// <summary>Logits (B, num_labels) in evaluation mode (no dropout).</summary>
    /// <remarks>Thread-safe: concurrent callers take turns (the activations are shared, and each op uses every core).</remarks>
    public float[] Logits(BertBatch batch)
    {
        lock (Bert.ForwardLock)
        {
            var pass = Bert.Begin(batch, records: false, DropoutSettings.None);
            return ReadLogits(pass, HeadForward(pass, Bert.Forward(pass)).Logits);
        }
    }

    /// <summary>
    /// The encoder's outputs (with each layer's attention probabilities when <paramref name="outputAttentions"/>) and the
    /// logits from one pass over <paramref name="batch"/> (what <c>encode</c> writes).
    /// </summary>
    public (BertModelOutput Encoder, float[] Logits) Run(BertBatch batch, bool outputAttentions = false)
    {
        lock (Bert.ForwardLock)
        {
            var pass = Bert.Begin(batch, records: false, DropoutSettings.None, outputAttentions);
            var hidden = Bert.Forward(pass);
            var (pooled, logits) = HeadForward(pass, hidden); // no dropout here: pooled is the pooler's output
            return (Bert.Read(pass, hidden, pooled), ReadLogits(pass, logits));
        }
    }

    private float[] ReadLogits(ForwardPass pass, DeviceBuffer<float> logits)
    {
        var values = new float[pass.B * NumLabels];
        _backend.Download(logits, values);
        return values;
    }

    /// <summary>Head: pooler, dropout, classifier; the pooled rows after dropout (B,C) and the logits (B, num_labels), on the device.</summary>
    private (DeviceBuffer<float> Pooled, DeviceBuffer<float> Logits) HeadForward(ForwardPass pass, DeviceBuffer<float> hidden)
    {
        var pooled = Bert.Pool(pass, hidden);
        pass.ApplyDropout(pooled, pass.B * Config.HiddenSize, pass.Dropout.ClassifierMask);
        var logits = pass.Kept(this, "logits", NumLabels, perToken: false);
        Classifier.Forward(_backend, logits, pooled, pass.B);
        return (pooled, logits);
    }

    /// <summary>
    /// For attributions, dropout off: F per example, the logit of class <c>target.Output</c> (output <c>target.Output</c>
    /// for regression; a sequence's, so no position), when the embeddings module's output is <paramref name="embeddings"/>
    /// ((B·T, C); null: the batch's own), and ∂F/∂embeddings (B·T, C). The batch has no padding. Parameter gradients are
    /// cleared and then hold this backward's (a side effect: attributions need no optimizer).
    /// </summary>
    public (float[] Outputs, float[] Gradients) OutputAndGradientAtEmbeddings(BertBatch batch, float[]? embeddings, Interpretability.AttributionTarget target)
    {
        BertModel.RequireUnpadded(batch);
        if (target.Position is not null) throw new ArgumentException($"a sequence classifier's output has no position (got {target.Position})", nameof(target));
        if ((uint)target.Output >= (uint)NumLabels) throw new ArgumentOutOfRangeException(nameof(target), $"target {target.Output} of {NumLabels} outputs");
        lock (Bert.ForwardLock)
        {
            ZeroGradients();
            var pass = Bert.Begin(batch, records: true, DropoutSettings.None);
            var logits = ReadLogits(pass, HeadForward(pass, Bert.Forward(pass, embeddings)).Logits);
            int B = pass.B;
            // F's gradient with respect to the logits: 1 at the target, 0 elsewhere, seeded where a loss would put its own.
            var seed = new float[B * NumLabels];
            for (int b = 0; b < B; b++) seed[b * NumLabels + target.Output] = 1f;
            _backend.Upload<float>(seed, pass.Kept(this, "dlogits", NumLabels, perToken: false));
            Backward(pass);
            var gradients = new float[pass.Rows * Config.HiddenSize];
            _backend.Download(pass.Scratch("dHidden", Config.HiddenSize), gradients);
            return ([.. Enumerable.Range(0, B).Select(b => logits[b * NumLabels + target.Output])], gradients);
        }
    }

    public ForwardPass Forward(BertBatch batch, DropoutSettings dropout)
    {
        var pass = Bert.Begin(batch, records: true, dropout);
        HeadForward(pass, Bert.Forward(pass));
        return pass;
    }

    public double Loss(ForwardPass pass, float[] targets, float lossScale = 1f)
    {
        int B = pass.B, n = B * NumLabels;
        var (logits, dLogits, losses) = (pass.Kept(this, "logits", NumLabels, perToken: false), pass.Kept(this, "dlogits", NumLabels, perToken: false),
            pass.Kept(this, "losses", NumLabels, perToken: false));
        if (ProblemType == ProblemType.Regression)
        {
            if (targets.Length != n) throw new EngineException($"{targets.Length} targets for a batch of {B} × {NumLabels} outputs");
            var device = pass.Kept(this, "targets", NumLabels, perToken: false);
            _backend.Upload<float>(targets, device);
            _backend.MeanSquaredError(losses, dLogits, logits, device, n);
            if (lossScale != 1f) _backend.Scale(dLogits, n, lossScale);
            return Sum(losses, n) / n;
        }
        if (targets.Length != B) throw new EngineException($"{targets.Length} labels for a batch of {B}");
        var labels = new int[B];
        for (int i = 0; i < B; i++)
        {
            if (!IsValidTarget(targets[i])) throw new EngineException($"label {targets[i]} is not {TargetRule}");
            labels[i] = targets[i] < 0 ? -100 : (int)targets[i];
        }
        var deviceLabels = pass.KeptIntegers(this, "labels", 1, perToken: false);
        _backend.Upload<int>(labels, deviceLabels);
        _backend.CrossEntropy(losses, dLogits, logits, deviceLabels, B, NumLabels);
        if (lossScale != 1f) _backend.Scale(dLogits, n, lossScale);
        int counted = labels.Count(l => l >= 0);
        return counted == 0 ? 0 : Sum(losses, B) / counted;
    }

    public void Backward(ForwardPass pass)
    {
        int B = pass.B, C = Config.HiddenSize;
        var dPooled = pass.Scratch("dPooled", C, perToken: false);
        Classifier.Backward(_backend, dPooled, pass.Kept(this, "dlogits", NumLabels, perToken: false), pass.Kept(Bert.Pooler!, "pooled", C, perToken: false), B);
        _backend.DropoutBackward(dPooled, dPooled, B * C, pass.Dropout.ClassifierMask);
        var dHidden = pass.Scratch("dHidden", C);
        Bert.Pooler!.Backward(pass, dHidden, dPooled);
        Bert.Backward(pass, dHidden);
    }

    public double ForwardBackward(BertBatch batch, float[] targets, DropoutSettings dropout, float lossScale = 1f)
    {
        lock (Bert.ForwardLock)
        {
            var pass = Forward(batch, dropout);
            double loss = Loss(pass, targets, lossScale);
            Backward(pass);
            return loss;
        }
    }

    /// <summary>
    /// One training pass of a classifier: forward with dropout, mean cross-entropy over rows whose label (a
    /// class id) is ≥ 0, backward. Parameter gradients are added to (call <see cref="ZeroGradients"/> at step
    /// boundaries). Returns the loss.
    /// </summary>
    public double ForwardBackward(BertBatch batch, int[] labels, DropoutSettings dropout)
    {
        if (ProblemType == ProblemType.Regression)
            throw new EngineException("this model is a regression head (problem_type regression, or num_labels 1): its training labels are real-valued targets, not class ids");
        return ForwardBackward(batch, [.. labels.Select(l => (float)l)], dropout);
    }

    public void ValidateTargets(IReadOnlyList<float> targets, string set)
    {
        if (ProblemType == ProblemType.Regression && NumLabels != 1)
            throw new EngineException($"fine-tuning a regression head needs num_labels 1 (one target per example), not {NumLabels}");
        for (int i = 0; i < targets.Count; i++)
            if (!IsValidTarget(targets[i])) throw new EngineException($"{set} example {i + 1}: label {targets[i]} is not {TargetRule}");
    }

    /// <summary>A regression target is finite; a class id is an integer below num_labels (negative: ignored, as Hugging Face's −100).</summary>
    private bool IsValidTarget(float target) =>
        ProblemType == ProblemType.Regression ? float.IsFinite(target) : target == MathF.Floor(target) && target < NumLabels;

    private string TargetRule => ProblemType == ProblemType.Regression ? "a finite number" : $"a class id below {NumLabels}";

    /// <summary>Logits of every batch, then the metrics over all of them (correlations and F1 need every example at once).</summary>
    public EvaluationResult Evaluate(IEnumerable<TrainingBatch> batches)
    {
        var (outputs, targets) = (new List<float>(), new List<float>());
        foreach (var batch in batches)
        {
            outputs.AddRange(Logits(batch.Batch));
            targets.AddRange(batch.Targets);
        }
        return ProblemType == ProblemType.Regression
            ? Metrics.Regression([.. outputs], [.. targets])
            : Metrics.Classification([.. outputs], [.. targets.Select(t => (int)t)], NumLabels);
    }

    private double Sum(DeviceBuffer<float> losses, int n)
    {
        var host = new float[n];
        _backend.Download(losses, host);
        return host.Sum(v => (double)v);
    }

    public void Dispose() => Bert.Dispose();
}
