using Engine.Backends;
using Engine.Models.Bert;
using Engine.Tokenization;

namespace Engine;

/// <summary>How token vectors become one sentence vector.</summary>
public enum Pooling
{
    /// <summary>Average of the real (unmasked) tokens' last hidden states, the sentence-transformers convention.</summary>
    Mean,
    /// <summary>The [CLS] token's last hidden state.</summary>
    Cls,
}

/// <summary>
/// Sentence embeddings from a BERT model directory: tokenize, run the encoder in batches, pool, and
/// L2-normalise — with the directory's own sentence-transformers settings when it has them
/// (<see cref="SentenceTransformersConfig"/>: maximum length, pooling, normalisation, lower-casing), else mean
/// pooling, normalisation, and the model's max_position_embeddings.
/// </summary>
/// <remarks>
/// Thread safety: one embedder may be used from several threads at once; each call tokenizes on its own thread
/// and the model runs one forward pass at a time (see <see cref="BertModel"/>). The settings are fixed at
/// construction (init-only).
/// </remarks>
public sealed class SentenceEmbedder : IDisposable
{
    public BertTokenizer Tokenizer { get; }
    public BertModel Model { get; }
    public Pooling Pooling { get; init; } = Pooling.Mean;
    public bool Normalize { get; init; } = true;
    /// <summary>Lower-case each text before tokenizing (sentence-transformers' do_lower_case).</summary>
    public bool LowerCase { get; init; }
    public int BatchSize { get; init; } = 32;
    /// <summary>Tokens per text including [CLS] and [SEP]; defaults to the model's max_position_embeddings.</summary>
    public int MaxLength { get; init; }

    public SentenceEmbedder(BertTokenizer tokenizer, BertModel model)
    {
        Tokenizer = tokenizer;
        Model = model;
        MaxLength = model.Config.MaxPositionEmbeddings;
    }

    /// <summary>The model, its tokenizer and its sentence-transformers settings (when the directory has them) from <paramref name="directory"/>.</summary>
    public static SentenceEmbedder Load(string directory, IBackend backend)
    {
        var settings = SentenceTransformersConfig.Load(directory) ?? new SentenceTransformersConfig();
        var model = BertModel.Load(directory, backend);
        try
        {
            return new SentenceEmbedder(BertTokenizer.Load(directory, model.Config), model)
            {
                Pooling = settings.Pooling ?? Pooling.Mean,
                Normalize = settings.Normalize ?? true,
                LowerCase = settings.DoLowerCase,
                MaxLength = Math.Min(settings.MaxSequenceLength ?? int.MaxValue, model.Config.MaxPositionEmbeddings),
            };
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    public int Dimensions => Model.Config.HiddenSize;

    /// <summary>
    /// Each text as the encoder sees it: lower-cased when set, tokenized, cut to <see cref="MaxLength"/> (<see cref="Encoding.Truncated"/>
    /// says where). Many texts are shared out over the CPU backend's threads (the tokenizer is thread-safe; one thread spent
    /// 0.3 s of a 512-text embed here before its first batch); a few are tokenized on the calling thread.
    /// </summary>
    public List<Encoding> Tokenize(IReadOnlyList<string> texts)
    {
        var encodings = new Encoding[texts.Count];
        int threads = Model.Backend is Backends.Cpu.CpuBackend cpu ? cpu.Threads : Environment.ProcessorCount;
        if (threads > 1 && texts.Count >= ParallelTokenizingTexts)
            Parallel.For(0, texts.Count, new ParallelOptions { MaxDegreeOfParallelism = threads }, i => encodings[i] = Encode(texts[i]));
        else
            for (int i = 0; i < texts.Count; i++) encodings[i] = Encode(texts[i]);
        return [.. encodings];
    }

    /// <summary>Texts from which <see cref="Tokenize"/> uses several threads: below it, starting them costs more than it saves.</summary>
    private const int ParallelTokenizingTexts = 64;

    private Encoding Encode(string text) => Tokenizer.Encode(LowerCase ? text.ToLowerInvariant() : text, maxLength: MaxLength);

    public float[][] Embed(IReadOnlyList<string> texts) => Embed(Tokenize(texts));

    /// <summary>
    /// The embeddings of already tokenized texts, in their order, computed <see cref="BatchSize"/> at a time in batches of
    /// like length (<see cref="BertBatch.ByLength"/>); <paramref name="done"/> is told how many are done after each batch.
    /// </summary>
    public float[][] Embed(IReadOnlyList<Encoding> encodings, Action<int>? done = null)
    {
        var result = new float[encodings.Count][];
        int finished = 0;
        foreach (var indices in BertBatch.ByLength(encodings, BatchSize))
        {
            var batch = Tokenizer.Pad([.. indices.Select(i => encodings[i])]);
            var output = Model.Forward(batch);
            for (int b = 0; b < batch.BatchSize; b++) result[indices[b]] = Pool(output, batch, b);
            done?.Invoke(finished += indices.Length);
        }
        return result;
    }

    public float[] Embed(string text) => Embed([text])[0];

    private float[] Pool(BertModelOutput output, BertBatch batch, int row)
    {
        int T = batch.SequenceLength, C = output.HiddenSize;
        var sum = new double[C];
        int count = 0;
        for (int t = 0; t < T; t++)
        {
            if (batch.AttentionMask[row * T + t] == 0 || (Pooling == Pooling.Cls && t > 0)) continue;
            var hidden = output.LastHiddenState.AsSpan((row * T + t) * C, C);
            for (int c = 0; c < C; c++) sum[c] += hidden[c];
            count++;
            if (Pooling == Pooling.Cls) break;
        }
        double norm = 0;
        for (int c = 0; c < C; c++)
        {
            sum[c] /= Math.Max(count, 1);
            norm += sum[c] * sum[c];
        }
        // sentence-transformers' Normalize: x / max(‖x‖, 1e-12).
        double scale = Normalize ? 1.0 / Math.Max(Math.Sqrt(norm), 1e-12) : 1.0;
        return [.. sum.Select(v => (float)(v * scale))];
    }

    /// <summary>Cosine similarity, in float64.</summary>
    public static double Cosine(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        double dot = 0, nx = 0, ny = 0;
        for (int i = 0; i < x.Length; i++)
        {
            dot += (double)x[i] * y[i];
            nx += (double)x[i] * x[i];
            ny += (double)y[i] * y[i];
        }
        return dot / Math.Max(Math.Sqrt(nx * ny), 1e-24);
    }

    public void Dispose() => Model.Dispose();
}
