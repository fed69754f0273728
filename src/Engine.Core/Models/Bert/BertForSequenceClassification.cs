using System.Text.Json.Nodes;
using Engine.Backends;
using Engine.IO;

namespace Engine.Models.Bert;

/// <summary>Dropout for one forward-backward pass: its probability and the Philox stream (seed, step).</summary>
public readonly record struct DropoutSettings(float Probability, ulong Seed, long Step)
{
    public static readonly DropoutSettings None = new(0f, 0, 0);

    /// <summary>The Philox offset of dropout site <paramref name="site"/> in this step: every site and step its own stream.</summary>
    internal ulong Offset(int site) => (ulong)Step * 1024 + (ulong)site;
}

/// <summary>
/// <c>BertForSequenceClassification</c>: BertModel with its pooler, dropout, and a classifier (num_labels).
/// Runs on a training backend: <see cref="ForwardBackward"/> keeps every activation the backward needs,
/// computes the mean cross-entropy and adds every parameter's gradient (see <see cref="ITrainingBackend"/>).
/// </summary>
/// <remarks>
/// Mirrors transformers' BertForSequenceClassification with single-label classification. Dropout applies
/// where Hugging Face's hidden dropout does (embeddings, attention output, FFN output, pooler output);
/// dropout on the attention probabilities is not implemented yet.
/// </remarks>
public sealed class BertForSequenceClassification : IDisposable
{
    private readonly ITrainingBackend _backend;
    private TrainingCache? _cache;

    public ITrainingBackend Backend => _backend;
    public BertModel Bert { get; }
    public Linear Classifier { get; }
    public int NumLabels => Classifier.OutFeatures;
    /// <summary>Label names by id (config.json's <c>id2label</c>), or LABEL_i.</summary>
    public IReadOnlyList<string> Labels { get; }

    private BertForSequenceClassification(ITrainingBackend backend, BertModel bert, Linear classifier, IReadOnlyList<string> labels)
    {
        _backend = backend;
        Bert = bert;
        Classifier = classifier;
        Labels = labels;
    }

    /// <summary>
    /// Loads a directory holding either a classification checkpoint (<c>classifier.*</c>) or a base model, whose
    /// classifier is then initialised from N(0, 0.02²) with <paramref name="seed"/>. num_labels comes from
    /// <paramref name="numLabels"/>, else config.json's <c>num_labels</c> or <c>id2label</c>, else 2.
    /// </summary>
    public static BertForSequenceClassification Load(string directory, ITrainingBackend backend, int? numLabels = null, int seed = 0,
        IReadOnlyList<string>? labelNames = null)
    {
        var config = BertConfig.Load(Path.Combine(directory, BertConfig.FileName));
        int labels = labelNames?.Count ?? numLabels ?? ConfiguredLabels(config.Raw) ?? 2;
        if (labels < 1) throw new EngineException($"num_labels must be positive, got {labels}");
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
        return new BertForSequenceClassification(backend, bert, classifier, names);
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
        config["architectures"] = new JsonArray("BertForSequenceClassification");
        config["num_labels"] = NumLabels;
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
            foreach (string file in new[] { Tokenization.BertTokenizer.VocabFileName, Tokenization.BertTokenizer.ConfigFileName, "special_tokens_map.json", "tokenizer.json" })
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

    private static int? ConfiguredLabels(JsonObject raw) =>
        raw["num_labels"] is JsonValue n && n.TryGetValue(out int count) ? count
        : raw["id2label"] is JsonObject map ? map.Count : null;

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
    public float[] Logits(BertBatch batch)
    {
        var cache = Forward(batch, DropoutSettings.None);
        var logits = new float[batch.BatchSize * NumLabels];
        _backend.Download(cache.Logits, logits);
        return logits;
    }

    /// <summary>
    /// One training pass: forward with dropout, mean cross-entropy over rows whose label is ≥ 0, backward.
    /// Parameter gradients are added to (call <see cref="ZeroGradients"/> at step boundaries). Returns the loss.
    /// </summary>
    public double ForwardBackward(BertBatch batch, int[] labels, DropoutSettings dropout)
    {
        int B = batch.BatchSize, T = batch.SequenceLength, C = Bert.Config.HiddenSize, I = Bert.Config.IntermediateSize, rows = B * T;
        if (labels.Length != B) throw new EngineException($"{labels.Length} labels for a batch of {B}");
        foreach (int label in labels)
            if (label >= NumLabels) throw new EngineException($"label {label} is not below num_labels {NumLabels}");
        var a = Forward(batch, dropout);
        _backend.Upload<int>(labels, a.Labels);
        _backend.CrossEntropy(a.Losses, a.DLogits, a.Logits, a.Labels, B, NumLabels);
        var losses = new float[B];
        _backend.Download(a.Losses, losses);
        int counted = labels.Count(l => l >= 0);

        // Head: classifier ← dropout ← tanh ← pooler dense ← [CLS] rows.
        Classifier.Backward(_backend, a.DPooled, a.DLogits, a.PooledDropped, B);
        _backend.DropoutBackward(a.DPooled, a.DPooled, B * C, dropout.Probability, dropout.Seed, dropout.Offset(Sites.Pooler));
        _backend.ActivateBackward(a.DPooled, a.DPooled, a.PoolerPreActivation, B * C, Activation.Tanh);
        Bert.Pooler!.Dense.Backward(_backend, a.DFirstTokens, a.DPooled, a.FirstTokens, B);
        _backend.FirstTokenBackward(a.DHidden, a.DFirstTokens, B, T, C);

        for (int l = Bert.Encoder.Layers.Count - 1; l >= 0; l--)
        {
            var layer = Bert.Encoder.Layers[l];
            var c = a.Layers[l];
            // output block: LayerNorm(dropout(dense(gelu)) + h1)
            layer.Output.LayerNorm.Backward(_backend, a.DResidual, a.DHidden, c.FfnProjected, c.AttentionOutput, rows);
            _backend.DropoutBackward(a.DProjected, a.DResidual, rows * C, dropout.Probability, dropout.Seed, dropout.Offset(Sites.Ffn(l)));
            layer.Output.Dense.Backward(_backend, a.DIntermediate, a.DProjected, c.Gelu, rows);
            _backend.ActivateBackward(a.DIntermediate, a.DIntermediate, c.PreGelu, rows * I, Activation.Gelu);
            layer.Intermediate.Backward(_backend, a.DHidden, a.DIntermediate, c.AttentionOutput, rows);
            _backend.Accumulate(a.DResidual, a.DHidden, rows * C); // ∂L/∂h1 from both of its uses
            // attention block: LayerNorm(dropout(dense(attention(qkv(x)))) + x)
            layer.Attention.Output.LayerNorm.Backward(_backend, a.DHidden, a.DResidual, c.AttentionProjected, a.Hidden[l], rows);
            _backend.DropoutBackward(a.DProjected, a.DHidden, rows * C, dropout.Probability, dropout.Seed, dropout.Offset(Sites.Attention(l)));
            layer.Attention.Output.Dense.Backward(_backend, a.DContext, a.DProjected, c.Context, rows);
            _backend.AttentionBackward(a.DQkv, a.DContext, c.QueryKeyValue, a.AttentionMask, B, T, Bert.Config.NumAttentionHeads, Bert.Config.HeadSize);
            layer.Attention.Self.QueryKeyValue.Backward(_backend, a.DResidual, a.DQkv, a.Hidden[l], rows);
            _backend.Accumulate(a.DHidden, a.DResidual, rows * C); // ∂L/∂x through the residual and through Q, K, V
        }
        _backend.DropoutBackward(a.DHidden, a.DHidden, rows * C, dropout.Probability, dropout.Seed, dropout.Offset(Sites.Embeddings));
        Bert.Embeddings.Backward(_backend, a.DResidual, a.DHidden, a.EmbeddingSum, a.InputIds, a.TokenTypeIds, B, T);
        return counted == 0 ? 0 : losses.Sum(v => (double)v) / counted;
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
        float p = dropout.Probability;
        Bert.Embeddings.Forward(_backend, a.Hidden[0], a.EmbeddingSum, a.InputIds, a.TokenTypeIds, B, T);
        _backend.Dropout(a.Hidden[0], a.Hidden[0], rows * C, p, dropout.Seed, dropout.Offset(Sites.Embeddings));
        for (int l = 0; l < Bert.Encoder.Layers.Count; l++)
        {
            var layer = Bert.Encoder.Layers[l];
            var c = a.Layers[l];
            layer.Attention.Self.Forward(_backend, c.Context, c.QueryKeyValue, a.Hidden[l], a.AttentionMask, B, T);
            layer.Attention.Output.Dense.Forward(_backend, c.AttentionProjected, c.Context, rows);
            _backend.Dropout(c.AttentionProjected, c.AttentionProjected, rows * C, p, dropout.Seed, dropout.Offset(Sites.Attention(l)));
            layer.Attention.Output.LayerNorm.Forward(_backend, c.AttentionOutput, c.AttentionProjected, a.Hidden[l], rows);
            layer.Intermediate.Forward(_backend, c.PreGelu, c.AttentionOutput, rows);
            _backend.Activate(c.Gelu, c.PreGelu, rows * Bert.Config.IntermediateSize, Activation.Gelu);
            layer.Output.Dense.Forward(_backend, c.FfnProjected, c.Gelu, rows);
            _backend.Dropout(c.FfnProjected, c.FfnProjected, rows * C, p, dropout.Seed, dropout.Offset(Sites.Ffn(l)));
            layer.Output.LayerNorm.Forward(_backend, a.Hidden[l + 1], c.FfnProjected, c.AttentionOutput, rows);
        }
        _backend.FirstToken(a.FirstTokens, a.Hidden[^1], B, T, C);
        Bert.Pooler!.Dense.Forward(_backend, a.PoolerPreActivation, a.FirstTokens, B);
        _backend.Activate(a.PooledDropped, a.PoolerPreActivation, B * C, Activation.Tanh);
        _backend.Dropout(a.PooledDropped, a.PooledDropped, B * C, p, dropout.Seed, dropout.Offset(Sites.Pooler));
        Classifier.Forward(_backend, a.Logits, a.PooledDropped, B);
        return a;
    }

    /// <summary>Dropout sites, each with its own Philox stream within a step.</summary>
    private static class Sites
    {
        public const int Embeddings = 0, Pooler = 1;
        public static int Attention(int layer) => 2 + 2 * layer;
        public static int Ffn(int layer) => 3 + 2 * layer;
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
        public DeviceBuffer<float> Logits, DLogits, Losses;                             // (B,L), (B,L), (B)
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
            (Logits, DLogits, Losses) = (F(b * labels), F(b * labels), F(b));
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
