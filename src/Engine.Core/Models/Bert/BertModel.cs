using Engine.Backends;
using Engine.IO;

namespace Engine.Models.Bert;

/// <summary>
/// A batch of token sequences padded to a common length T: row-major (B,T) ids, token types and
/// attention mask (1 for a real token, 0 for padding).
/// </summary>
public sealed record BertBatch(int BatchSize, int SequenceLength, int[] InputIds, int[] TokenTypeIds, int[] AttentionMask)
{
    /// <summary>Encodings padded to the longest with <paramref name="padId"/> and a zero mask (padded positions never reach a real one).</summary>
    public static BertBatch Pad(IReadOnlyList<Tokenization.Encoding> encodings, int padId = 0)
    {
        int B = encodings.Count, T = encodings.Max(e => e.InputIds.Length);
        var ids = new int[B * T];
        var types = new int[B * T];
        var mask = new int[B * T];
        Array.Fill(ids, padId);
        for (int b = 0; b < B; b++)
        {
            encodings[b].InputIds.CopyTo(ids, b * T);
            encodings[b].TokenTypeIds.CopyTo(types, b * T);
            encodings[b].AttentionMask.CopyTo(mask, b * T);
        }
        return new BertBatch(B, T, ids, types, mask);
    }

    /// <summary>
    /// Each row's length when every row is real tokens then padding (mask 1…1 0…0, at least one 1): a batch a forward
    /// pass can pack (<see cref="Engine.Backends.SequenceLayout"/>). Null for any other mask (holes, left padding, an empty row),
    /// which runs padded.
    /// </summary>
    public int[]? PackableLengths()
    {
        var lengths = new int[BatchSize];
        for (int b = 0; b < BatchSize; b++)
        {
            var row = AttentionMask.AsSpan(b * SequenceLength, SequenceLength);
            int length = row.IndexOf(0);
            if (length < 0) length = SequenceLength;
            if (length == 0 || row[length..].ContainsAnyExcept(0)) return null;
            lengths[b] = length;
        }
        return lengths;
    }

    /// <summary>
    /// Indices of <paramref name="encodings"/> in batches of up to <paramref name="batchSize"/>, longest first (as
    /// sentence-transformers orders them): texts of like length share a batch, so padding, which costs as much as real
    /// tokens in every Linear, all but vanishes. Equal lengths keep their order; every index appears once, for the caller
    /// to put each result back in its place.
    /// </summary>
    public static IEnumerable<int[]> ByLength(IReadOnlyList<Tokenization.Encoding> encodings, int batchSize)
    {
        if (batchSize <= 0) throw new EngineException($"batch size must be positive, got {batchSize}");
        return Enumerable.Range(0, encodings.Count).OrderByDescending(i => encodings[i].InputIds.Length).Chunk(batchSize);
    }
}

/// <summary>
/// The outputs of <see cref="BertModel.Forward(BertBatch, bool)"/>, on the host: <c>LastHiddenState</c> (B,T,C),
/// <c>PoolerOutput</c> (B,C), null when the checkpoint has no pooler, and when asked for, <c>Attentions</c>: each
/// layer's attention probabilities (B,NH,T,T) (Hugging Face's output_attentions; zeros for padding keys and queries).
/// </summary>
public sealed record BertModelOutput(int BatchSize, int SequenceLength, int HiddenSize, float[] LastHiddenState, float[]? PoolerOutput,
    IReadOnlyList<float[]>? Attentions = null);

/// <summary>
/// <c>BertModel</c>: embeddings, encoder (a stack of <see cref="BertLayer"/>) and optional pooler, loaded
/// from a Hugging Face checkpoint through a prefix scope into a parameter arena, and run on any <see cref="IBackend"/>.
/// The same forward serves inference (recording nothing) and training (recording what <see cref="Backward"/> reads).
/// </summary>
/// <remarks>Mirrors <c>transformers.models.bert.modeling_bert.BertModel</c>. A task model (a head) builds it into its own arena.</remarks>
public sealed class BertModel : IDisposable
{
    private readonly ActivationArena _activations;
    private readonly bool _ownsArena;

    public IBackend Backend { get; }
    public BertConfig Config { get; }
    public ModelFamily Family { get; }
    /// <summary>The parameters (this model's, and a head's when one built it).</summary>
    public ParameterArena Arena { get; }
    public BertEmbeddings Embeddings { get; }
    public BertEncoder Encoder { get; }
    public BertPooler? Pooler { get; }
    /// <summary>Checkpoint tensors this model did not use (a task head's, or stray ones), for the user to see.</summary>
    public IReadOnlyList<string> UnusedTensors { get; internal set; } = [];

    /// <summary>
    /// Whether forward passes pack batches whose rows are real tokens then padding (default), computing nothing for
    /// padding; off, every batch runs padded as Hugging Face runs it (the same values on real tokens, within rounding).
    /// </summary>
    public bool PackSequences { get; set; } = true;

    /// <summary>Calls that share the activations take turns on this (they are one model's buffers; each op already uses every core).</summary>
    internal Lock ForwardLock { get; } = new();

    /// <param name="scope">Where the weights are read from and what they are called (e.g. <c>bert.</c> inside a task model).</param>
    /// <param name="withPooler">Whether to build the pooler when the family has one and the scope holds it (a masked-LM head does not use it).</param>
    /// <param name="newPooler">Where a pooler the scope lacks comes from (a sentence head trained on a checkpoint without one); null: none.</param>
    internal BertModel(IBackend backend, BertConfig config, ParameterScope scope, bool ownsArena, bool withPooler = true, WeightInitializer? newPooler = null)
    {
        Backend = backend;
        Config = config;
        Family = ModelRegistry.Family(config);
        Arena = scope.Arena;
        _ownsArena = ownsArena;
        Embeddings = new BertEmbeddings(scope.Sub(Family.EmbeddingsModule), config);
        Encoder = new BertEncoder(scope.Sub("encoder"), config);
        var pooler = scope.Sub(Family.PoolerModule);
        if (newPooler is not null && !pooler.Sub("dense").Has("weight")) pooler = pooler.Fresh(newPooler);
        Pooler = withPooler && Family.HasPooler && pooler.Sub("dense").Has("weight") ? new BertPooler(pooler, config) : null;
        _activations = new ActivationArena(backend);
    }

    /// <summary>
    /// Loads <c>config.json</c> and the safetensors weights of a Hugging Face model directory, for inference: weights
    /// stored in F16 or BF16 stay so unless <paramref name="halfWeights"/> says to widen them.
    /// </summary>
    public static BertModel Load(string directory, IBackend backend, HalfWeights halfWeights = HalfWeights.Keep)
    {
        var config = BertConfig.Load(Path.Combine(directory, BertConfig.FileName));
        using var checkpoint = Checkpoint.Open(directory);
        return Load(checkpoint, config, backend, halfWeights);
    }

    public static BertModel Load(Checkpoint checkpoint, BertConfig config, IBackend backend, HalfWeights halfWeights = HalfWeights.Keep)
    {
        var family = ModelRegistry.Family(config);
        var arena = new ParameterArena(backend, family.Decays, halfWeights);
        try
        {
            var model = new BertModel(backend, config, new ParameterScope(arena, WeightScope.ForBaseModel(checkpoint, family.WeightPrefix), ""), ownsArena: true);
            arena.Build();
            model.UnusedTensors = checkpoint.UnusedNames;
            return model;
        }
        catch
        {
            arena.Dispose();
            throw;
        }
    }

    public long ParameterCount =>
        Embeddings.ParameterCount + Encoder.ParameterCount + (Pooler?.ParameterCount ?? 0);

    /// <summary>
    /// Runs the encoder over a padded batch; padded positions never influence real ones (and hold zeros when the batch was
    /// packed, see <see cref="PackSequences"/>). Calls from several
    /// threads take turns: the activation buffers are shared, and each op already uses every core.
    /// </summary>
    /// <param name="outputAttentions">Also return each layer's attention probabilities (computed apart: the fused attention never forms them).</param>
    public BertModelOutput Forward(BertBatch batch, bool outputAttentions = false)
    {
        lock (ForwardLock)
        {
            var pass = Begin(batch, records: false, DropoutSettings.None, outputAttentions);
            return Read(pass, Forward(pass));
        }
    }

    /// <summary>
    /// Checks and uploads a batch, with the family's position ids: the start of every forward pass (callers hold
    /// <see cref="ForwardLock"/>); <paramref name="outputAttentions"/>: the pass collects each layer's attention probabilities.
    /// </summary>
    internal ForwardPass Begin(BertBatch batch, bool records, DropoutSettings dropout, bool outputAttentions = false)
    {
        Validate(batch);
        var positions = Family.PositionIds(batch, Config);
        for (int i = 0; i < positions.Length; i++)
            if ((uint)positions[i] >= (uint)Config.MaxPositionEmbeddings)
                throw new EngineException($"position id {positions[i]} of row {i / batch.SequenceLength} is outside max_position_embeddings {Config.MaxPositionEmbeddings}");
        return new ForwardPass(Backend, _activations, batch, positions, PackSequences ? batch.PackableLengths() : null, records, dropout)
        {
            Attentions = outputAttentions ? [] : null,
        };
    }

    /// <summary>The last hidden state (rows,C) on the device, in the pass's layout.</summary>
    internal DeviceBuffer<float> Forward(ForwardPass pass, float[]? embeddingsOutput = null)
    {
        var embedded = pass.Kept(Embeddings, "output", Config.HiddenSize);
        Embeddings.Forward(pass, embedded);
        if (embeddingsOutput is not null)
        {
            // Attributions run the encoder from given embeddings (a point on a path from a baseline): they replace the
            // module's output; its backward still sees the batch's own sums.
            if (embeddingsOutput.Length != pass.Rows * Config.HiddenSize)
                throw new ArgumentException($"{embeddingsOutput.Length} embedding values for {pass.Rows} rows of {Config.HiddenSize}");
            Backend.Upload<float>(embeddingsOutput, embedded);
        }
        return Encoder.Forward(pass, embedded, Config.HiddenSize);
    }

    /// <summary>
    /// The embeddings module's output (B·T, C) for a batch without padding, dropout off: where attributions are taken.
    /// </summary>
    public float[] EmbeddingsOutput(BertBatch batch)
    {
        RequireUnpadded(batch);
        lock (ForwardLock)
        {
            var pass = Begin(batch, records: false, DropoutSettings.None);
            var embedded = pass.Kept(Embeddings, "output", Config.HiddenSize);
            Embeddings.Forward(pass, embedded);
            var values = new float[pass.Rows * Config.HiddenSize];
            Backend.Download(embedded, values);
            return values;
        }
    }

    /// <summary>Throws unless every token of <paramref name="batch"/> is real: rows (B·T) then are the same in every layout.</summary>
    internal static void RequireUnpadded(BertBatch batch)
    {
        if (batch.AttentionMask.Any(m => m == 0)) throw new ArgumentException("attributions need a batch without padding (every attention_mask value 1)");
    }

    /// <summary>Parameter gradients += from dHidden (rows,C) = ∂L/∂last hidden state, which this overwrites.</summary>
    internal void Backward(ForwardPass pass, DeviceBuffer<float> dHidden)
    {
        Encoder.Backward(pass, dHidden, pass.Kept(Embeddings, "output", Config.HiddenSize), Config.HiddenSize);
        Embeddings.Backward(pass, dHidden);
    }

    /// <summary>The pooler output (B,C) on the device, from the last hidden state.</summary>
    internal DeviceBuffer<float> Pool(ForwardPass pass, DeviceBuffer<float> hidden)
    {
        // Its own name: in inference every owner shares scratch by name, and "output" is the hidden states a head may still read.
        var pooled = pass.Kept(Pooler!, "pooled", Config.HiddenSize, perToken: false);
        Pooler!.Forward(pass, pooled, hidden);
        return pooled;
    }

    /// <summary>Downloads the last hidden state and, when there is a pooler, its output (<paramref name="pooled"/> when a head already ran it).</summary>
    internal BertModelOutput Read(ForwardPass pass, DeviceBuffer<float> hidden, DeviceBuffer<float>? pooled = null)
    {
        int B = pass.B, T = pass.T, C = Config.HiddenSize;
        var rows = new float[pass.Rows * C];
        Backend.Download(hidden, rows);
        var lastHidden = pass.Unpack(rows, C);
        float[]? pooledOutput = null;
        if (Pooler is not null)
        {
            pooledOutput = new float[B * C];
            Backend.Download(pooled ?? Pool(pass, hidden), pooledOutput);
        }
        return new BertModelOutput(B, T, C, lastHidden, pooledOutput, pass.Attentions);
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
        if (_ownsArena) Arena.Dispose();
    }
}
