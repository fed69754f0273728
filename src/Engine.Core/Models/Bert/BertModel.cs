using Engine.Backends;
using Engine.IO;

namespace Engine.Models.Bert;

/// <summary>
/// A batch of token sequences padded to a common length T: row-major (B,T) ids, token types and
/// attention mask (1 for a real token, 0 for padding).
/// </summary>
public sealed record BertBatch(int BatchSize, int SequenceLength, int[] InputIds, int[] TokenTypeIds, int[] AttentionMask)
{
}

/// <summary>
/// The outputs of <see cref="BertModel.Forward"/>, on the host: <c>LastHiddenState</c> (B,T,C) and
/// <c>PoolerOutput</c> (B,C), null when the checkpoint has no pooler.
/// </summary>
public sealed record BertModelOutput(int BatchSize, int SequenceLength, int HiddenSize, float[] LastHiddenState, float[]? PoolerOutput);

/// <summary>
/// <c>BertModel</c>: embeddings, encoder (a stack of <see cref="BertLayer"/>) and optional pooler, loaded
/// from a Hugging Face checkpoint through a prefix scope and run on any <see cref="IBackend"/>.
/// </summary>
/// <remarks>Mirrors <c>transformers.models.bert.modeling_bert.BertModel</c> in eval mode (no dropout).</remarks>
public sealed class BertModel : IDisposable
{
    private readonly IBackend _backend;
    private readonly BertActivations _activations;
    private readonly Lock _forwardLock = new();

    public BertConfig Config { get; }
    public BertEmbeddings Embeddings { get; }
    public BertEncoder Encoder { get; }
    public BertPooler? Pooler { get; }
    /// <summary>Checkpoint tensors this model did not use (a task head's, or stray ones), for the user to see.</summary>
    public IReadOnlyList<string> UnusedTensors { get; }

    private BertModel(IBackend backend, BertConfig config, BertEmbeddings embeddings, BertEncoder encoder, BertPooler? pooler, IReadOnlyList<string> unused)
    {
        _backend = backend;
        Config = config;
        Embeddings = embeddings;
        Encoder = encoder;
        Pooler = pooler;
        UnusedTensors = unused;
        _activations = new BertActivations(backend, config);
    }

    /// <summary>Loads <c>config.json</c> and the safetensors weights of a Hugging Face model directory.</summary>
    public static BertModel Load(string directory, IBackend backend)
    {
        var config = BertConfig.Load(Path.Combine(directory, BertConfig.FileName));
        using var checkpoint = Checkpoint.Open(directory);
        return Load(checkpoint, config, backend);
    }

    public static BertModel Load(Checkpoint checkpoint, BertConfig config, IBackend backend)
    {
        var root = WeightScope.ForBaseModel(checkpoint, "bert");
        var disposables = new List<IDisposable>();
        try
        {
            var embeddings = new BertEmbeddings(root.Sub("embeddings"), config, backend);
            disposables.Add(embeddings);
            var encoder = new BertEncoder(root.Sub("encoder"), config, backend);
            disposables.Add(encoder);
            BertPooler? pooler = root.Sub("pooler").Sub("dense").Has("weight") ? new BertPooler(root.Sub("pooler"), config, backend) : null;
            return new BertModel(backend, config, embeddings, encoder, pooler, checkpoint.UnusedNames);
        }
        catch
        {
            foreach (var d in disposables) d.Dispose();
            throw;
        }
    }

    public long ParameterCount =>
        Embeddings.ParameterCount + Encoder.ParameterCount + (Pooler?.Dense.ParameterCount ?? 0);

    /// <summary>
    /// Runs the encoder over a padded batch; padded positions never influence real ones. Calls from several
    /// threads take turns: the activation buffers are shared, and each op already uses every core.
    /// </summary>
    public BertModelOutput Forward(BertBatch batch)
    {
        Validate(batch);
        lock (_forwardLock) return ForwardLocked(batch);
    }

    private BertModelOutput ForwardLocked(BertBatch batch)
    {
        int B = batch.BatchSize, T = batch.SequenceLength, C = Config.HiddenSize;
        var a = _activations;
        a.Ensure(B, T);
        _backend.Upload<int>(batch.InputIds, a.InputIds);
        _backend.Upload<int>(batch.TokenTypeIds, a.TokenTypeIds);
        _backend.Upload<int>(batch.AttentionMask, a.AttentionMask);
        Embeddings.Forward(_backend, a.Hidden, a.InputIds, a.TokenTypeIds, B, T);
        Encoder.Forward(_backend, a, B, T);

        var hidden = new float[B * T * C];
        _backend.Download(a.Hidden, hidden);
        float[]? pooled = null;
        if (Pooler is not null)
        {
            Pooler.Forward(_backend, a.Pooled, a.FirstTokens, a.Hidden, B, T);
            pooled = new float[B * C];
            _backend.Download(a.Pooled, pooled);
        }
        return new BertModelOutput(B, T, C, hidden, pooled);
    }

    internal void Validate(BertBatch batch)
    {
        int B = batch.BatchSize, T = batch.SequenceLength;
        if (B <= 0 || T <= 0) throw new EngineException($"empty batch ({B}×{T})");
        if (T > Config.MaxPositionEmbeddings)
            throw new EngineException($"sequence length {T} exceeds max_position_embeddings {Config.MaxPositionEmbeddings}");
        int n = B * T;
        if (batch.InputIds.Length != n || batch.TokenTypeIds.Length != n || batch.AttentionMask.Length != n)
            throw new EngineException($"batch arrays must each hold {B}×{T} = {n} values");
        for (int i = 0; i < n; i++)
        {
            if ((uint)batch.InputIds[i] >= (uint)Config.VocabSize)
                throw new EngineException($"input_ids[{i / T}][{i % T}] = {batch.InputIds[i]} is outside the vocabulary (vocab_size {Config.VocabSize})");
            if ((uint)batch.TokenTypeIds[i] >= (uint)Config.TypeVocabSize)
                throw new EngineException($"token_type_ids[{i / T}][{i % T}] = {batch.TokenTypeIds[i]} is outside type_vocab_size {Config.TypeVocabSize}");
        }
    }

    public void Dispose()
    {
        _activations.Dispose();
        Embeddings.Dispose();
        Encoder.Dispose();
        Pooler?.Dispose();
    }
}
