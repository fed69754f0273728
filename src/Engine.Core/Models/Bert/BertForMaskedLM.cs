using System.Text.Json.Nodes;
using Engine.Backends;
using Engine.IO;
using Engine.Training;

namespace Engine.Models.Bert;

/// <summary>The sentence-level objective a pre-training head trains beside masked-LM.</summary>
public enum SentenceObjective
{
    /// <summary>Masked-LM alone (<c>BertForMaskedLM</c>).</summary>
    None,
    /// <summary>Next-sentence prediction (BERT): label 0 when segment B follows A in the document, 1 when B is from another document.</summary>
    NextSentence,
    /// <summary>Sentence-order prediction (ALBERT): label 0 when two consecutive segments are in order, 1 when swapped.</summary>
    SentenceOrder,
}

/// <summary><c>BertPredictionHeadTransform</c>: dense (C→C) with the hidden activation fused into its product, then LayerNorm.</summary>
public sealed class BertPredictionHeadTransform
{
    public Linear Dense { get; }
    public LayerNorm LayerNorm { get; }

    internal BertPredictionHeadTransform(ParameterScope scope, BertConfig config)
    {
        Dense = Linear.Load(scope.Sub("dense"), config.HiddenSize, config.HiddenSize);
        LayerNorm = LayerNorm.Load(scope.Sub("LayerNorm"), config.HiddenSize, config.LayerNormEps);
    }

    private int C => Dense.OutFeatures;

    /// <summary>output (R,C) from input (R,C); a recording pass keeps the pre-activation and the activation.</summary>
    internal void Forward(ForwardPass pass, DeviceBuffer<float> output, DeviceBuffer<float> input, int R)
    {
        var activated = pass.Kept(this, "activated", C, R);
        Dense.Forward(pass.Backend, activated, input, R, Activation.Gelu, pass.Records ? pass.Kept(this, "pre_activation", C, R) : null);
        LayerNorm.Forward(pass.Backend, output, activated, null, R);
    }

    /// <summary>dInput (R,C) from dOutput (R,C), which this overwrites; <paramref name="input"/> is the forward's.</summary>
    internal void Backward(ForwardPass pass, DeviceBuffer<float> dInput, DeviceBuffer<float> dOutput, DeviceBuffer<float> input, int R)
    {
        var backend = pass.Training;
        var dActivated = pass.Scratch("dActivated", C, R);
        LayerNorm.Backward(backend, dActivated, dOutput, pass.Kept(this, "activated", C, R), null, R);
        backend.ActivateBackward(dActivated, dActivated, pass.Kept(this, "pre_activation", C, R), R * C, Activation.Gelu);
        Dense.Backward(backend, dInput, dActivated, input, R);
    }
}

/// <summary>
/// <c>BertLMPredictionHead</c>: the transform, then the decoder: the word embeddings (tied: the same arena entry the
/// embeddings read, so its gradient sums both uses and AdamW steps it once) and the output bias (V).
/// </summary>
public sealed class BertLMPredictionHead
{
    public BertPredictionHeadTransform Transform { get; }
    public Linear Decoder { get; }

    internal BertLMPredictionHead(ParameterScope scope, BertConfig config, Parameter wordEmbeddings)
    {
        Transform = new BertPredictionHeadTransform(scope.Sub("transform"), config);
        Decoder = new Linear(wordEmbeddings, scope.Load("bias", config.VocabSize), config.HiddenSize, config.VocabSize);
    }

    private int C => Decoder.InFeatures;
    private int V => Decoder.OutFeatures;

    /// <summary>Logits (R,V) of hidden rows (R,C).</summary>
    internal DeviceBuffer<float> Forward(ForwardPass pass, DeviceBuffer<float> hidden, int R)
    {
        var transformed = pass.Kept(this, "transformed", C, R);
        Transform.Forward(pass, transformed, hidden, R);
        var logits = pass.Kept(this, "logits", V, R);
        Decoder.Forward(pass.Backend, logits, transformed, R);
        return logits;
    }

    /// <summary>dHidden (R,C) from dLogits (R,V); the word embeddings' gradient += the decoder's share.</summary>
    internal void Backward(ForwardPass pass, DeviceBuffer<float> dHidden, DeviceBuffer<float> dLogits, DeviceBuffer<float> hidden, int R)
    {
        var dTransformed = pass.Scratch("dTransformed", C, R);
        Decoder.Backward(pass.Training, dTransformed, dLogits, pass.Kept(this, "transformed", C, R), R);
        Transform.Backward(pass, dHidden, dTransformed, hidden, R);
    }

    public long ParameterCount => Transform.Dense.ParameterCount + Transform.LayerNorm.ParameterCount + V;
}

/// <summary>
/// <c>BertForMaskedLM</c> (<see cref="BertModel"/> without pooler, then <see cref="BertLMPredictionHead"/>) or, with a
/// sentence objective, <c>BertForPreTraining</c> (with the pooler, and <c>cls.seq_relationship</c>: two logits from the
/// pooled output). Its loss is the mean cross-entropy over the masked positions, plus the sentence head's mean
/// cross-entropy, as Hugging Face's.
/// </summary>
/// <remarks>
/// Targets, as <see cref="Loss"/> reads them: B·T token labels (the original id at a masked position, negative
/// elsewhere: Hugging Face's −100), then, with a sentence head, B sentence labels. In training the vocabulary
/// logits are computed only at the masked positions (their hidden rows gathered first): about 1/7 of Hugging Face's
/// (B,T,V) product at 15% masking, with the same loss and gradients. Inference (<see cref="Logits"/>) computes them
/// everywhere. The head runs in <see cref="Loss"/>, where the masked positions are known.
/// </remarks>
public sealed class BertForMaskedLM : ITaskModel, Interpretability.IAttributable
{
    private readonly ITrainingBackend _backend;
    private (ForwardPass Pass, DeviceBuffer<float> Hidden, int[] Rows)? _current;

    public ITrainingBackend Backend => _backend;
    public BertModel Bert { get; }
    public BertConfig Config => Bert.Config;
    public ParameterArena Arena => Bert.Arena;
    public BertLMPredictionHead Predictions { get; }
    /// <summary><c>cls.seq_relationship</c> (C→2) on the pooled output; null without a sentence objective.</summary>
    public Linear? SeqRelationship { get; }
    public SentenceObjective Sentence { get; }
    /// <summary>Checkpoint tensors this model did not read (a pooler or a sentence head it does not use, stray ones).</summary>
    public IReadOnlyList<string> UnusedTensors => Bert.UnusedTensors;
    /// <summary>Whether the masked-LM head (transform, output bias) came from the checkpoint rather than being new.</summary>
    public bool HeadFromCheckpoint { get; }

    private BertForMaskedLM(ITrainingBackend backend, BertModel bert, BertLMPredictionHead predictions, Linear? seqRelationship, SentenceObjective sentence,
        bool headFromCheckpoint)
    {
        _backend = backend;
        Bert = bert;
        Predictions = predictions;
        SeqRelationship = seqRelationship;
        Sentence = sentence;
        HeadFromCheckpoint = headFromCheckpoint;
    }

    /// <summary>config.json's field that records which sentence objective trained <c>cls.seq_relationship</c> (Hugging Face keeps unknown fields).</summary>
    public const string SentenceObjectiveField = "sentence_objective";

    /// <summary>
    /// Loads a masked-LM, pre-training or base checkpoint. A head the checkpoint lacks (the masked-LM head of a base
    /// model; a sentence head, and a pooler, when <paramref name="sentence"/> asks for one) is new, initialised as
    /// Hugging Face does with <paramref name="seed"/>. <paramref name="sentence"/> null: the checkpoint's own (a
    /// <c>cls.seq_relationship</c> it holds, with the objective its config names, next-sentence by default).
    /// A stored decoder weight must equal the word embeddings (untied decoders are refused).
    /// </summary>
    /// <param name="halfWeights">Weights stored in F16 or BF16: widened (fp32 master weights, for training; the default) or
    /// kept as stored (<see cref="HalfWeights.Keep"/>: inference only).</param>
    public static BertForMaskedLM Load(string directory, ITrainingBackend backend, SentenceObjective? sentence = null, int seed = 0,
        HalfWeights halfWeights = HalfWeights.Widen)
    {
        string configPath = Path.Combine(directory, BertConfig.FileName);
        var config = BertConfig.Load(configPath);
        if (config.Raw["tie_word_embeddings"] is JsonValue tie && tie.TryGetValue(out bool tied) && !tied)
            throw new EngineException($"{configPath}: 'tie_word_embeddings' false (a masked-LM decoder apart from the word embeddings) is not supported");
        var family = ModelRegistry.Family(config);
        using var checkpoint = Checkpoint.Open(directory);
        var arena = new ParameterArena(backend, family.Decays, halfWeights);
        var cls = new ParameterScope(arena, WeightScope.Root(checkpoint), "").Sub("cls");
        var encoder = new ParameterScope(arena, WeightScope.ForBaseModel(checkpoint, family.WeightPrefix), family.WeightPrefix + ".");
        var objective = sentence ?? (cls.Sub("seq_relationship").Has("weight") ? ConfiguredObjective(config, configPath) : SentenceObjective.None);
        var model = Create(backend, config, arena, encoder, cls, objective, new WeightInitializer(config.InitializerRange, (ulong)seed, config.PadTokenId));
        try
        {
            var decoder = WeightScope.Root(checkpoint).Sub("cls").Sub("predictions").Sub("decoder");
            if (decoder.Has("weight"))
            {
                var word = model.Bert.Embeddings.WordEmbeddings;
                if (!decoder.Tensor("weight", word.Shape).ToFloat32().AsSpan().SequenceEqual(word.ReadValue(backend)))
                    throw new EngineException($"{directory}: 'cls.predictions.decoder.weight' differs from the word embeddings; untied masked-LM decoders are not supported");
            }
            model.Bert.UnusedTensors = checkpoint.UnusedNames;
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>A new model of <paramref name="config"/> (pre-training from scratch), every weight initialised as Hugging Face does with <paramref name="seed"/>.</summary>
    public static BertForMaskedLM Create(BertConfig config, ITrainingBackend backend, SentenceObjective sentence, int seed)
    {
        var family = ModelRegistry.Family(config);
        var arena = new ParameterArena(backend, family.Decays);
        var initializer = new WeightInitializer(config.InitializerRange, (ulong)seed, config.PadTokenId);
        return Create(backend, config, arena, new ParameterScope(arena, initializer, family.WeightPrefix + "."), new ParameterScope(arena, initializer, "cls."), sentence, initializer);
    }

    private static BertForMaskedLM Create(ITrainingBackend backend, BertConfig config, ParameterArena arena, ParameterScope encoder, ParameterScope cls,
        SentenceObjective sentence, WeightInitializer initializer)
    {
        try
        {
            bool withSentence = sentence != SentenceObjective.None;
            var bert = new BertModel(backend, config, encoder, ownsArena: true, withPooler: withSentence, newPooler: withSentence ? initializer : null);
            var predictions = cls.Sub("predictions");
            bool headFromCheckpoint = predictions.Sub("transform").Sub("dense").Has("weight");
            if (!headFromCheckpoint) predictions = predictions.Fresh(initializer);
            var head = new BertLMPredictionHead(predictions, config, bert.Embeddings.WordEmbeddings);
            Linear? seq = null;
            if (withSentence)
            {
                var scope = cls.Sub("seq_relationship");
                seq = Linear.Load(scope.Has("weight") ? scope : scope.Fresh(initializer), config.HiddenSize, 2);
            }
            arena.Build();
            return new BertForMaskedLM(backend, bert, head, seq, sentence, headFromCheckpoint);
        }
        catch
        {
            arena.Dispose();
            throw;
        }
    }

    private static SentenceObjective ConfiguredObjective(BertConfig config, string source) => config.Raw[SentenceObjectiveField] switch
    {
        null => SentenceObjective.NextSentence,
        JsonValue v when v.TryGetValue(out string? name) && name == "nsp" => SentenceObjective.NextSentence,
        JsonValue v when v.TryGetValue(out string? name) && name == "sop" => SentenceObjective.SentenceOrder,
        var other => throw new EngineException($"{source}: '{SentenceObjectiveField}' {other.ToJsonString()} is neither \"nsp\" nor \"sop\""),
    };

    public int VocabSize => Config.VocabSize;

    public void ValidateTargets(IReadOnlyList<float> targets, string set) =>
        throw new EngineException($"a masked-LM head trains on a corpus that it masks (engine pretrain), not on labelled {set} examples");

    public ForwardPass Forward(BertBatch batch, DropoutSettings dropout) => Forward(batch, dropout, null);

    private ForwardPass Forward(BertBatch batch, DropoutSettings dropout, float[]? embeddings)
    {
        var pass = Bert.Begin(batch, records: true, dropout);
        var hidden = Bert.Forward(pass, embeddings);
        if (SeqRelationship is not null) SentenceLogits(pass, hidden);
        _current = (pass, hidden, []);
        return pass;
    }

    private DeviceBuffer<float> SentenceLogits(ForwardPass pass, DeviceBuffer<float> hidden)
    {
        var pooled = Bert.Pool(pass, hidden);
        var logits = pass.Kept(this, "sentence_logits", 2, perToken: false);
        SeqRelationship!.Forward(_backend, logits, pooled, pass.B);
        return logits;
    }

    /// <summary>The masked positions (rows of the pass's hidden state) and their labels; every label must be a token id, on a real token when the pass is packed.</summary>
    private (int[] Rows, int[] Labels) Masked(float[] targets, ForwardPass pass)
    {
        int B = pass.B, T = pass.T;
        int expected = B * T + (SeqRelationship is null ? 0 : B);
        if (targets.Length != expected)
            throw new EngineException($"{targets.Length} targets for a batch of {B}×{T}; a masked-LM head takes B·T token labels{(SeqRelationship is null ? "" : " then B sentence labels")} ({expected})");
        var (rows, labels) = (new List<int>(), new List<int>());
        for (int i = 0; i < B * T; i++)
        {
            float target = targets[i];
            if (target < 0) continue;
            if (target != MathF.Floor(target) || target >= VocabSize) throw new EngineException($"token label {target} at row {i / T}, position {i % T} is not a token id below {VocabSize}");
            int row = pass.Row(i / T, i % T);
            if (row < 0) throw new EngineException($"token label {target} at row {i / T}, position {i % T} is on padding");
            rows.Add(row);
            labels.Add((int)target);
        }
        return ([.. rows], [.. labels]);
    }

    private int[] SentenceLabels(float[] targets, int B, int T)
    {
        var labels = new int[B];
        for (int b = 0; b < B; b++)
        {
            float target = targets[B * T + b];
            if (target is not (0 or 1) && target >= 0) throw new EngineException($"sentence label {target} of row {b} is neither 0 nor 1");
            labels[b] = target < 0 ? -100 : (int)target;
        }
        return labels;
    }

    /// <summary>The head over the masked rows and both losses (sums, and the rows counted); a recording pass keeps their gradients.</summary>
    private (double MaskedSum, int Masked, double SentenceSum, int Sentences) HeadLoss(ForwardPass pass, DeviceBuffer<float> hidden, int[] rows, int[] labels,
        int[]? sentenceLabels, Action<DeviceBuffer<float>, int>? readLogits = null)
    {
        int C = Config.HiddenSize, R = rows.Length;
        double maskedSum = 0, sentenceSum = 0;
        if (R > 0)
        {
            var gathered = pass.Kept(this, "masked_hidden", C, R);
            _backend.GatherRows(gathered, hidden, pass.RowIndices(this, "masked_rows", rows), R, pass.Rows, C);
            var logits = Predictions.Forward(pass, gathered, R);
            var deviceLabels = pass.KeptIntegers(this, "masked_labels", 1, R);
            _backend.Upload<int>(labels, deviceLabels);
            var losses = pass.Kept(this, "masked_losses", 1, R);
            _backend.CrossEntropy(losses, pass.Kept(this, "dlogits", VocabSize, R), logits, deviceLabels, R, VocabSize);
            maskedSum = Sum(losses, R);
            readLogits?.Invoke(logits, R);
        }
        int sentences = 0;
        if (sentenceLabels is not null)
        {
            int B = pass.B;
            var deviceLabels = pass.KeptIntegers(this, "sentence_labels", 1, perToken: false);
            _backend.Upload<int>(sentenceLabels, deviceLabels);
            var losses = pass.Kept(this, "sentence_losses", 1, perToken: false);
            _backend.CrossEntropy(losses, pass.Kept(this, "dsentence_logits", 2, perToken: false), pass.Kept(this, "sentence_logits", 2, perToken: false), deviceLabels, B, 2);
            sentenceSum = Sum(losses, B);
            sentences = sentenceLabels.Count(l => l >= 0);
        }
        return (maskedSum, R, sentenceSum, sentences);
    }

    public double Loss(ForwardPass pass, float[] targets, float lossScale = 1f)
    {
        if (_current is not { } current || current.Pass != pass) throw new InvalidOperationException("Loss needs the pass of this model's last Forward");
        var (rows, labels) = Masked(targets, pass);
        var loss = HeadLoss(pass, current.Hidden, rows, labels, SeqRelationship is null ? null : SentenceLabels(targets, pass.B, pass.T));
        if (lossScale != 1f)
        {
            if (rows.Length > 0) _backend.Scale(pass.Kept(this, "dlogits", VocabSize, rows.Length), rows.Length * VocabSize, lossScale);
            if (SeqRelationship is not null) _backend.Scale(pass.Kept(this, "dsentence_logits", 2, perToken: false), pass.B * 2, lossScale);
        }
        _current = current with { Rows = rows };
        return (loss.Masked == 0 ? 0 : loss.MaskedSum / loss.Masked) + (loss.Sentences == 0 ? 0 : loss.SentenceSum / loss.Sentences);
    }

    public void Backward(ForwardPass pass)
    {
        if (_current is not { } current || current.Pass != pass) throw new InvalidOperationException("Backward needs the pass of this model's last Forward and Loss");
        int C = Config.HiddenSize, R = current.Rows.Length;
        var dHidden = pass.Scratch("dHidden", C);
        if (R > 0)
        {
            var dGathered = pass.Scratch("dMaskedHidden", C, R);
            Predictions.Backward(pass, dGathered, pass.Kept(this, "dlogits", VocabSize, R), pass.Kept(this, "masked_hidden", C, R), R);
            _backend.GatherRowsBackward(dHidden, dGathered, pass.KeptIntegers(this, "masked_rows", 1, R), R, pass.Rows, C);
        }
        else _backend.Clear(dHidden);
        if (SeqRelationship is not null)
        {
            var dPooled = pass.Scratch("dPooled", C, perToken: false);
            SeqRelationship.Backward(_backend, dPooled, pass.Kept(this, "dsentence_logits", 2, perToken: false), pass.Kept(Bert.Pooler!, "pooled", C, perToken: false), pass.B);
            var dFromPooler = pass.Scratch("dFromPooler", C);
            Bert.Pooler!.Backward(pass, dFromPooler, dPooled);
            _backend.Accumulate(dHidden, dFromPooler, pass.Rows * C);
        }
        Bert.Backward(pass, dHidden);
        _current = null;
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
    /// Masked-LM loss, accuracy and perplexity over the masked positions of every batch (and the sentence head's loss
    /// and accuracy), in evaluation mode.
    /// </summary>
    public EvaluationResult Evaluate(IEnumerable<TrainingBatch> batches)
    {
        double maskedSum = 0, sentenceSum = 0;
        long masked = 0, correct = 0, sentences = 0, sentencesCorrect = 0;
        foreach (var (batch, targets) in batches)
        {
            lock (Bert.ForwardLock)
            {
                var pass = Bert.Begin(batch, records: false, DropoutSettings.None);
                var hidden = Bert.Forward(pass);
                var (rows, labels) = Masked(targets, pass);
                int[]? sentenceLabels = null;
                if (SeqRelationship is not null)
                {
                    sentenceLabels = SentenceLabels(targets, batch.BatchSize, batch.SequenceLength);
                    var logits = Download(SentenceLogits(pass, hidden), batch.BatchSize * 2);
                    for (int b = 0; b < batch.BatchSize; b++)
                        if (sentenceLabels[b] >= 0 && (logits[2 * b + 1] > logits[2 * b] ? 1 : 0) == sentenceLabels[b]) sentencesCorrect++;
                }
                var loss = HeadLoss(pass, hidden, rows, labels, sentenceLabels, (logits, R) =>
                {
                    var values = Download(logits, R * VocabSize);
                    for (int r = 0; r < R; r++)
                        if (ArgMax(values.AsSpan(r * VocabSize, VocabSize)) == labels[r]) correct++;
                });
                (maskedSum, masked, sentenceSum, sentences) = (maskedSum + loss.MaskedSum, masked + loss.Masked, sentenceSum + loss.SentenceSum, sentences + loss.Sentences);
            }
        }
        double maskedLoss = masked == 0 ? 0 : maskedSum / masked;
        return new EvaluationResult(maskedLoss + (sentences == 0 ? 0 : sentenceSum / sentences), (int)masked,
            Accuracy: masked == 0 ? null : (double)correct / masked, Perplexity: masked == 0 ? null : Math.Exp(maskedLoss),
            SentenceAccuracy: sentences == 0 ? null : (double)sentencesCorrect / sentences);
    }

    private static int ArgMax(ReadOnlySpan<float> values) => System.Numerics.Tensors.TensorPrimitives.IndexOfMax(values);

    /// <summary>Vocabulary logits (B,T,V), in evaluation mode (what <c>encode</c> writes); zeros at padding when the batch ran packed.</summary>
    public float[] Logits(BertBatch batch) => Run(batch).Logits;

    /// <summary>
    /// The encoder's outputs (with each layer's attention probabilities when <paramref name="outputAttentions"/>) and the
    /// logits (B,T,V) from one pass (what <c>encode</c> writes).
    /// </summary>
    public (BertModelOutput Encoder, float[] Logits) Run(BertBatch batch, bool outputAttentions = false)
    {
        lock (Bert.ForwardLock)
        {
            var pass = Bert.Begin(batch, records: false, DropoutSettings.None, outputAttentions);
            var hidden = Bert.Forward(pass);
            var logits = Download(Predictions.Forward(pass, hidden, pass.Rows), pass.Rows * VocabSize);
            return (Bert.Read(pass, hidden), pass.Unpack(logits, VocabSize));
        }
    }

    /// <summary>
    /// For attributions, dropout off: F per example, the logit of token <c>target.Output</c> at position
    /// <c>target.Position</c> (a masked token's, in fill-mask), when the embeddings module's output is
    /// <paramref name="embeddings"/> ((B·T, C); null: the batch's own), and ∂F/∂embeddings (B·T, C). The batch has no
    /// padding. Parameter gradients are cleared and then hold this backward's.
    /// </summary>
    public (float[] Outputs, float[] Gradients) OutputAndGradientAtEmbeddings(BertBatch batch, float[]? embeddings, Interpretability.AttributionTarget target)
    {
        BertModel.RequireUnpadded(batch);
        if (target.Position is not int position || (uint)position >= (uint)batch.SequenceLength) throw new ArgumentOutOfRangeException(nameof(target), $"position {target.Position} of {batch.SequenceLength} tokens (a masked-LM output is a token's)");
        if ((uint)target.Output >= (uint)VocabSize) throw new ArgumentOutOfRangeException(nameof(target), $"token {target.Output} of a vocabulary of {VocabSize}");
        lock (Bert.ForwardLock)
        {
            Arena.ZeroGradients(_backend);
            var pass = Forward(batch, DropoutSettings.None, embeddings);
            int B = pass.B, T = pass.T;
            int[] rows = [.. Enumerable.Range(0, B).Select(b => pass.Row(b, position))];
            var logits = new float[B * VocabSize];
            // The head over the target's rows (its loss is not used; the sentence head, if any, gets no labels and no gradient).
            HeadLoss(pass, _current!.Value.Hidden, rows, [.. Enumerable.Repeat(target.Output, B)], SeqRelationship is null ? null : [.. Enumerable.Repeat(-100, B)],
                (device, r) => _backend.Download(device, logits));
            var seed = new float[B * VocabSize];
            for (int b = 0; b < B; b++) seed[b * VocabSize + target.Output] = 1f;
            _backend.Upload<float>(seed, pass.Kept(this, "dlogits", VocabSize, B));
            _current = _current.Value with { Rows = rows };
            Backward(pass);
            var gradients = new float[pass.Rows * Config.HiddenSize];
            _backend.Download(pass.Scratch("dHidden", Config.HiddenSize), gradients);
            return ([.. Enumerable.Range(0, B).Select(b => logits[b * VocabSize + target.Output])], gradients);
        }
    }

    /// <summary>Vocabulary logits (R,V) at the flat positions <paramref name="rows"/> (b·T + t, distinct, real tokens) only: fill-mask's product.</summary>
    public float[] MaskedLogits(BertBatch batch, int[] rows)
    {
        lock (Bert.ForwardLock)
        {
            var pass = Bert.Begin(batch, records: false, DropoutSettings.None);
            if (rows.Distinct().Count() != rows.Length || rows.Any(r => (uint)r >= (uint)(pass.B * pass.T)))
                throw new EngineException($"masked positions must be distinct and inside the {pass.B}×{pass.T} batch");
            rows = [.. rows.Select(r => pass.Row(r / pass.T, r % pass.T))];
            if (rows.Contains(-1)) throw new EngineException("a masked position is on padding");
            var hidden = Bert.Forward(pass);
            int C = Config.HiddenSize, R = rows.Length;
            if (R == 0) return [];
            var gathered = pass.Kept(this, "masked_hidden", C, R);
            _backend.GatherRows(gathered, hidden, pass.RowIndices(this, "masked_rows", rows), R, pass.Rows, C);
            return Download(Predictions.Forward(pass, gathered, R), R * VocabSize);
        }
    }

    /// <summary>Writes config.json (<c>BertForMaskedLM</c> or <c>BertForPreTraining</c>) and model.safetensors (the tied decoder as Hugging Face saves it: not stored).</summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        SafeTensorsWriter.Write(Path.Combine(directory, Checkpoint.SingleFileName), Arena.ToSafeTensors(), new Dictionary<string, string> { ["format"] = "pt" });
        var config = Config.ToJson();
        config["architectures"] = new JsonArray(ModelRegistry.ArchitectureName(Bert.Family, SeqRelationship is null ? ModelHead.MaskedLM : ModelHead.PreTraining));
        config["tie_word_embeddings"] = true;
        if (SeqRelationship is null) config.Remove(SentenceObjectiveField);
        else config[SentenceObjectiveField] = Sentence == SentenceObjective.SentenceOrder ? "sop" : "nsp";
        AtomicFile.WriteText(Path.Combine(directory, BertConfig.FileName), config.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));
    }

    public long ParameterCount => Bert.ParameterCount + Predictions.ParameterCount + (SeqRelationship?.ParameterCount ?? 0);

    private float[] Download(DeviceBuffer<float> buffer, int n)
    {
        var host = new float[n];
        _backend.Download(buffer, host);
        return host;
    }

    private double Sum(DeviceBuffer<float> values, int n) => Download(values, n).Sum(v => (double)v);

    public void Dispose() => Bert.Dispose();
}
