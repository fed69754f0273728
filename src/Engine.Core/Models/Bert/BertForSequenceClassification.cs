using System.Text.Json.Nodes;
using Engine.Backends;
using Engine.IO;

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
/// <c>BertForSequenceClassification</c>: BertModel with its pooler, dropout, and a classifier (num_labels).
/// Runs on a training backend: <c>ForwardBackward</c> keeps every activation the backward needs, computes
/// the loss (mean cross-entropy, or mean squared error for regression) and adds every parameter's gradient
/// (see <see cref="ITrainingBackend"/>).
/// </summary>
/// <remarks>
/// Mirrors transformers' BertForSequenceClassification: single-label classification, or regression when
/// problem_type says so or num_labels is 1 (transformers' rule); multi-label classification is not
/// supported yet. Dropout applies
/// where Hugging Face's does: the embeddings, the attention probabilities (inside the fused attention), the
/// attention output, the FFN output, and the pooler output before the classifier.
/// Thread safety: <see cref="Logits"/> may be called from several threads at once (they take turns); training
/// (<c>ForwardBackward</c>, the optimizer) belongs to one thread.
/// </remarks>
public sealed class BertForSequenceClassification : IDisposable
{
    private readonly ITrainingBackend _backend;
    private readonly Lock _forwardLock = new();
    private TrainingCache? _cache;

    public ITrainingBackend Backend => _backend;
    public BertModel Bert { get; }
    public Linear Classifier { get; }
    public int NumLabels => Classifier.OutFeatures;
    public ProblemType ProblemType { get; }
    /// <summary>Label names by id (config.json's <c>id2label</c>), or LABEL_i.</summary>
    public IReadOnlyList<string> Labels { get; }
    /// <summary>Checkpoint tensors this model (base and head) did not read, e.g. a pre-training head's.</summary>
    public IReadOnlyList<string> UnusedTensors { get; private init; } = [];

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
    /// classifier is then initialised from N(0, 0.02²) with <paramref name="seed"/>. num_labels comes from
    /// <paramref name="numLabels"/> or <paramref name="labelNames"/>, else config.json's <c>num_labels</c> or
    /// <c>id2label</c>, else 1 for regression and 2 otherwise. The problem type comes from
    /// <paramref name="problemType"/>, else config.json's <c>problem_type</c>, else regression exactly when num_labels is 1.
    /// </summary>
    public static BertForSequenceClassification Load(string directory, ITrainingBackend backend, int? numLabels = null, int seed = 0,
        IReadOnlyList<string>? labelNames = null, ProblemType? problemType = null)
    {
        string configPath = Path.Combine(directory, BertConfig.FileName);
        var config = BertConfig.Load(configPath);
        var configured = ConfiguredProblemType(config.Raw, configPath);
        int labels = labelNames?.Count ?? numLabels ?? ConfiguredLabels(config.Raw, configPath) ?? ((problemType ?? configured) == ProblemType.Regression ? 1 : 2);
        if (labels is < 1 or > MaxLabels) throw new EngineException($"num_labels must be in [1, {MaxLabels}], got {labels}");
        var problem = problemType ?? ProblemTypeOf(configured, labels);
        using var checkpoint = Checkpoint.Open(directory);
        var bert = BertModel.Load(checkpoint, config, backend);
        if (bert.Pooler is null)
        {
            bert.Dispose();
            throw new EngineException($"{directory}: sequence classification needs the pooler (pooler.dense), which this checkpoint lacks");
        }
        var root = WeightScope.Root(checkpoint);
        var classifier = root.Sub("classifier").Has("weight")
            ? Linear.Load(root.Sub("classifier"), backend, config.HiddenSize, labels)
            : Linear.CreateRandom(backend, "classifier", config.HiddenSize, labels, 0.02, seed);
        var names = labelNames ?? ConfiguredLabelNames(config.Raw, labels);
        return new BertForSequenceClassification(backend, bert, classifier, names, problem) { UnusedTensors = checkpoint.UnusedNames };
    }

    /// <summary>
    /// Loads a fine-tuned classifier for inference: a checkpoint without a classification head is refused, naming
    /// what it holds, instead of predicting with a randomly initialised one.
    /// </summary>
    public static BertForSequenceClassification LoadWithHead(string directory, ITrainingBackend backend)
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
        return Load(directory, backend);
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
        if (!config.HasArchitecture(nameof(BertForSequenceClassification)) || ConfiguredLabels(config.Raw, path) is not { } count) return null;
        return ProblemTypeOf(ConfiguredProblemType(config.Raw, path), count) == ProblemType.Regression ? null : ConfiguredLabelNames(config.Raw, count);
    }

    private static string[] ConfiguredLabelNames(JsonObject raw, int count) =>
        [.. Enumerable.Range(0, count).Select(i => raw["id2label"] is JsonObject map && map[i.ToString(System.Globalization.CultureInfo.InvariantCulture)] is JsonValue v
            && v.TryGetValue(out string? name) ? name : $"LABEL_{i}")];

    /// <summary>
    /// Writes a Hugging Face directory transformers' <c>from_pretrained</c> loads: config.json
    /// (<c>BertForSequenceClassification</c>, num_labels, id2label, label2id), model.safetensors with Hugging
    /// Face names (<c>bert.</c> prefix, Q/K/V split again), and the tokenizer files of <paramref name="tokenizerDirectory"/>.
    /// Every file is written atomically.
    /// </summary>
    public void Save(string directory, string? tokenizerDirectory)
    {
        Directory.CreateDirectory(directory);
        var tensors = new List<SafeTensorData>();
        foreach (var parameter in Parameters)
        {
            var values = parameter.ReadValue(_backend);
            int offset = 0;
            foreach (var (name, length) in parameter.Parts)
            {
                tensors.Add(SafeTensorData.FromFloats(CheckpointName(name), values[offset..(offset + length)], Shape(name, length)));
                offset += length;
            }
        }
        SafeTensorsWriter.Write(Path.Combine(directory, Checkpoint.SingleFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        var config = Bert.Config.ToJson();
        config["architectures"] = new JsonArray(nameof(BertForSequenceClassification));
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

    /// <summary>Every base-model tensor under <c>bert.</c>, whatever the loaded checkpoint used; heads at the top level.</summary>
    private static string CheckpointName(string name) =>
        name.StartsWith("classifier.", StringComparison.Ordinal) || name.StartsWith("bert.", StringComparison.Ordinal) ? name : "bert." + name;

    private long[] Shape(string name, int length)
    {
        int C = Bert.Config.HiddenSize;
        if (name.EndsWith(".bias", StringComparison.Ordinal) || name.EndsWith("LayerNorm.weight", StringComparison.Ordinal)
            || name.EndsWith("LayerNorm.gamma", StringComparison.Ordinal) || name.EndsWith("LayerNorm.beta", StringComparison.Ordinal))
            return [length];
        // Every other tensor is a matrix whose rows are hidden-sized, except the output dense (C, I).
        bool outputDense = name.Contains(".output.dense.weight", StringComparison.Ordinal) && !name.Contains("attention", StringComparison.Ordinal);
        int columns = outputDense ? Bert.Config.IntermediateSize : C;
        return [length / columns, columns];
    }

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

    /// <summary>Every trainable tensor, in Hugging Face's module order.</summary>
    public IEnumerable<Parameter> Parameters =>
    [
        .. Bert.Embeddings.Parameters,
        .. Bert.Encoder.Layers.SelectMany(l => l.Parameters),
        .. Bert.Pooler!.Dense.Parameters,
        .. Classifier.Parameters,
    ];

    public void ZeroGradients()
    {
        foreach (var p in Parameters) p.ZeroGradient(_backend);
    }

    /// <summary>Logits (B, num_labels) in evaluation mode (no dropout).</summary>
    /// <remarks>Thread-safe: concurrent callers take turns (the activations are shared, and each op uses every core).</remarks>
    public float[] Logits(BertBatch batch)
    {
        lock (_forwardLock)
        {
            var cache = Forward(batch, DropoutSettings.None);
            var logits = new float[batch.BatchSize * NumLabels];
            _backend.Download(cache.Logits, logits);
            return logits;
        }
    }

    /// <summary>
    /// One training pass of a classifier: forward with dropout, mean cross-entropy over rows whose label (a
    /// class id) is ≥ 0, backward. Parameter gradients are added to (call <see cref="ZeroGradients"/> at step
    /// boundaries). Returns the loss.
    /// </summary>
    public double ForwardBackward(BertBatch batch, int[] labels, DropoutSettings dropout)
    {
        RequireProblemType(ProblemType.SingleLabelClassification);
        int B = batch.BatchSize;
        if (labels.Length != B) throw new EngineException($"{labels.Length} labels for a batch of {B}");
        foreach (int label in labels)
            if (label >= NumLabels) throw new EngineException($"label {label} is not below num_labels {NumLabels}");
        var a = Forward(batch, dropout);
        _backend.Upload<int>(labels, a.Labels);
        _backend.CrossEntropy(a.Losses, a.DLogits, a.Logits, a.Labels, B, NumLabels);
        var losses = new float[B];
        _backend.Download(a.Losses, losses);
        int counted = labels.Count(l => l >= 0);
        Backward(a, dropout);
        return counted == 0 ? 0 : losses.Sum(v => (double)v) / counted;
    }

    /// <summary>
    /// One training pass of a regression head: forward with dropout, the mean squared error of the outputs
    /// against <paramref name="targets"/> (B × num_labels), backward. Returns the loss.
    /// </summary>
    public double ForwardBackward(BertBatch batch, float[] targets, DropoutSettings dropout)
    {
        RequireProblemType(ProblemType.Regression);
        int n = batch.BatchSize * NumLabels;
        if (targets.Length != n) throw new EngineException($"{targets.Length} targets for a batch of {batch.BatchSize} × {NumLabels} outputs");
        var a = Forward(batch, dropout);
        _backend.Upload<float>(targets, a.Targets);
        _backend.MeanSquaredError(a.Losses, a.DLogits, a.Logits, a.Targets, n);
        var losses = new float[n];
        _backend.Download(a.Losses, losses);
        Backward(a, dropout);
        return losses.Sum(v => (double)v) / n;
    }

    private void RequireProblemType(ProblemType expected)
    {
        if (ProblemType != expected)
            throw new EngineException(expected == ProblemType.Regression
                ? "this model is a classifier: its training labels are class ids, not real-valued targets"
                : "this model is a regression head (problem_type regression, or num_labels 1): its training labels are real-valued targets, not class ids");
    }

    /// <summary>Every parameter's gradient from ∂L/∂logits (in the cache's DLogits), through the forward's activations.</summary>
    private void Backward(TrainingCache a, DropoutSettings dropout)
    {
        int B = a.B, T = a.T, C = Bert.Config.HiddenSize, I = Bert.Config.IntermediateSize, rows = B * T;
        // Head: classifier ← dropout ← tanh ← pooler dense ← [CLS] rows.
        Classifier.Backward(_backend, a.DPooled, a.DLogits, a.PooledDropped, B);
        _backend.DropoutBackward(a.DPooled, a.DPooled, B * C, dropout.ClassifierMask);
        _backend.ActivateBackward(a.DPooled, a.DPooled, a.PoolerPreActivation, B * C, Activation.Tanh);
        Bert.Pooler!.Dense.Backward(_backend, a.DFirstTokens, a.DPooled, a.FirstTokens, B);
        _backend.FirstTokenBackward(a.DHidden, a.DFirstTokens, B, T, C);

        for (int l = Bert.Encoder.Layers.Count - 1; l >= 0; l--)
        {
            var layer = Bert.Encoder.Layers[l];
            var c = a.Layers[l];
            // output block: LayerNorm(dropout(dense(gelu)) + h1)
            layer.Output.LayerNorm.Backward(_backend, a.DResidual, a.DHidden, c.FfnProjected, c.AttentionOutput, rows);
            _backend.DropoutBackward(a.DProjected, a.DResidual, rows * C, dropout.OutputMask(l));
            layer.Output.Dense.Backward(_backend, a.DIntermediate, a.DProjected, c.Gelu, rows);
            _backend.ActivateBackward(a.DIntermediate, a.DIntermediate, c.PreGelu, rows * I, Activation.Gelu);
            layer.Intermediate.Backward(_backend, a.DHidden, a.DIntermediate, c.AttentionOutput, rows);
            _backend.Accumulate(a.DResidual, a.DHidden, rows * C); // ∂L/∂h1 from both of its uses
            // attention block: LayerNorm(dropout(dense(attention(qkv(x)))) + x)
            layer.Attention.Output.LayerNorm.Backward(_backend, a.DHidden, a.DResidual, c.AttentionProjected, a.Hidden[l], rows);
            _backend.DropoutBackward(a.DProjected, a.DHidden, rows * C, dropout.AttentionOutputMask(l));
            layer.Attention.Output.Dense.Backward(_backend, a.DContext, a.DProjected, c.Context, rows);
            _backend.AttentionBackward(a.DQkv, a.DContext, c.QueryKeyValue, a.AttentionMask, B, T, Bert.Config.NumAttentionHeads, Bert.Config.HeadSize,
                dropout.AttentionProbabilitiesMask(l));
            layer.Attention.Self.QueryKeyValue.Backward(_backend, a.DResidual, a.DQkv, a.Hidden[l], rows);
            _backend.Accumulate(a.DHidden, a.DResidual, rows * C); // ∂L/∂x through the residual and through Q, K, V
        }
        _backend.DropoutBackward(a.DHidden, a.DHidden, rows * C, dropout.EmbeddingsMask);
        Bert.Embeddings.Backward(_backend, a.DResidual, a.DHidden, a.EmbeddingSum, a.InputIds, a.TokenTypeIds, B, T);
    }

    /// <summary>The training forward: every activation kept for the backward.</summary>
    private TrainingCache Forward(BertBatch batch, DropoutSettings dropout)
    {
        Bert.Validate(batch);
        int B = batch.BatchSize, T = batch.SequenceLength, C = Bert.Config.HiddenSize, rows = B * T;
        if (_cache is null || _cache.B != B || _cache.T != T)
        {
            _cache?.Dispose();
            _cache = new TrainingCache(_backend, Bert.Config, NumLabels, B, T);
        }
        var a = _cache;
        _backend.Upload<int>(batch.InputIds, a.InputIds);
        _backend.Upload<int>(batch.TokenTypeIds, a.TokenTypeIds);
        _backend.Upload<int>(batch.AttentionMask, a.AttentionMask);
        Bert.Embeddings.Forward(_backend, a.Hidden[0], a.EmbeddingSum, a.InputIds, a.TokenTypeIds, B, T);
        _backend.Dropout(a.Hidden[0], a.Hidden[0], rows * C, dropout.EmbeddingsMask);
        for (int l = 0; l < Bert.Encoder.Layers.Count; l++)
        {
            var layer = Bert.Encoder.Layers[l];
            var c = a.Layers[l];
            layer.Attention.Self.Forward(_backend, c.Context, c.QueryKeyValue, a.Hidden[l], a.AttentionMask, B, T, dropout.AttentionProbabilitiesMask(l));
            layer.Attention.Output.Dense.Forward(_backend, c.AttentionProjected, c.Context, rows);
            _backend.Dropout(c.AttentionProjected, c.AttentionProjected, rows * C, dropout.AttentionOutputMask(l));
            layer.Attention.Output.LayerNorm.Forward(_backend, c.AttentionOutput, c.AttentionProjected, a.Hidden[l], rows);
            layer.Intermediate.Forward(_backend, c.PreGelu, c.AttentionOutput, rows);
            _backend.Activate(c.Gelu, c.PreGelu, rows * Bert.Config.IntermediateSize, Activation.Gelu);
            layer.Output.Dense.Forward(_backend, c.FfnProjected, c.Gelu, rows);
            _backend.Dropout(c.FfnProjected, c.FfnProjected, rows * C, dropout.OutputMask(l));
            layer.Output.LayerNorm.Forward(_backend, a.Hidden[l + 1], c.FfnProjected, c.AttentionOutput, rows);
        }
        _backend.FirstToken(a.FirstTokens, a.Hidden[^1], B, T, C);
        Bert.Pooler!.Dense.Forward(_backend, a.PoolerPreActivation, a.FirstTokens, B);
        _backend.Activate(a.PooledDropped, a.PoolerPreActivation, B * C, Activation.Tanh);
        _backend.Dropout(a.PooledDropped, a.PooledDropped, B * C, dropout.ClassifierMask);
        Classifier.Forward(_backend, a.Logits, a.PooledDropped, B);
        return a;
    }

    public void Dispose()
    {
        _cache?.Dispose();
        Bert.Dispose();
        Classifier.Dispose();
    }

    /// <summary>Activations of one (B,T) training batch, and the gradient scratch shared by all layers.</summary>
    private sealed class TrainingCache : IDisposable
    {
        private readonly List<IDisposable> _owned = [];
        public int B { get; }
        public int T { get; }
        public DeviceBuffer<int> InputIds, TokenTypeIds, AttentionMask, Labels;         // (B,T), (B)
        public DeviceBuffer<float> EmbeddingSum;                                        // (B,T,C) before its layer-norm
        public DeviceBuffer<float>[] Hidden;                                            // L+1 × (B,T,C): each layer's input, then the output
        public LayerCache[] Layers;
        public DeviceBuffer<float> FirstTokens, PoolerPreActivation, PooledDropped;     // (B,C)
        public DeviceBuffer<float> Logits, DLogits, Losses, Targets;                    // (B,L) each: per-row (classification) or per-output (regression) losses
        public DeviceBuffer<float> DHidden, DResidual, DProjected, DContext;            // (B,T,C)
        public DeviceBuffer<float> DQkv, DIntermediate;                                 // (B,T,3C), (B,T,I)
        public DeviceBuffer<float> DPooled, DFirstTokens;                               // (B,C)

        public TrainingCache(IBackend backend, BertConfig config, int labels, int b, int t)
        {
            (B, T) = (b, t);
            int rows = b * t, C = config.HiddenSize, I = config.IntermediateSize;
            DeviceBuffer<float> F(int n) => Own(backend.Allocate<float>(n));
            InputIds = Own(backend.Allocate<int>(rows));
            TokenTypeIds = Own(backend.Allocate<int>(rows));
            AttentionMask = Own(backend.Allocate<int>(rows));
            Labels = Own(backend.Allocate<int>(b));
            EmbeddingSum = F(rows * C);
            Hidden = [.. Enumerable.Range(0, config.NumHiddenLayers + 1).Select(_ => F(rows * C))];
            Layers = [.. Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new LayerCache(F(rows * 3 * C), F(rows * C), F(rows * C), F(rows * C), F(rows * I), F(rows * I), F(rows * C)))];
            (FirstTokens, PoolerPreActivation, PooledDropped) = (F(b * C), F(b * C), F(b * C));
            (Logits, DLogits, Losses, Targets) = (F(b * labels), F(b * labels), F(b * labels), F(b * labels));
            (DHidden, DResidual, DProjected, DContext) = (F(rows * C), F(rows * C), F(rows * C), F(rows * C));
            (DQkv, DIntermediate) = (F(rows * 3 * C), F(rows * I));
            (DPooled, DFirstTokens) = (F(b * C), F(b * C));
        }

        private DeviceBuffer<T2> Own<T2>(DeviceBuffer<T2> buffer) where T2 : unmanaged
        {
            _owned.Add(buffer);
            return buffer;
        }

        public void Dispose()
        {
            foreach (var o in _owned) o.Dispose();
        }
    }

    /// <summary>One layer's kept activations: qkv (B,T,3C), context, attention projection (after dropout) and
    /// output (B,T,C), the FFN's pre-GELU and GELU (B,T,I), and its projection (after dropout) (B,T,C).</summary>
    private sealed record LayerCache(DeviceBuffer<float> QueryKeyValue, DeviceBuffer<float> Context, DeviceBuffer<float> AttentionProjected,
        DeviceBuffer<float> AttentionOutput, DeviceBuffer<float> PreGelu, DeviceBuffer<float> Gelu, DeviceBuffer<float> FfnProjected);
}
