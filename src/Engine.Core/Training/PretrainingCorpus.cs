using Engine.Models;
using Engine.Models.Bert;
using Engine.Tokenization;

namespace Engine.Training;

/// <summary>One pre-training example before masking: segment A, segment B (null for masked-LM alone) and the sentence label (0: B is A's true continuation).</summary>
public sealed record PretrainingExample(int[] First, int[]? Second, int SentenceLabel);

/// <summary>
/// A text corpus cut into pre-training examples, as BERT's <c>create_pretraining_data.py</c> does: documents are
/// sequences of lines (sentences or paragraphs); consecutive lines are packed up to the maximum length; for a sentence
/// objective each pack is split at a random line into segments A and B, and B is then swapped with A (sentence order)
/// or replaced by lines of another document (next sentence) half the time.
/// </summary>
/// <remarks>
/// A FILE holds documents separated by blank lines; a DIRECTORY holds files (every <c>*.txt</c>, recursively, in
/// ordinal order), each such a file. A line longer than a segment is cut into pieces. Every draw comes from the
/// seed (<see cref="SeedStreams.Pairing"/>, <see cref="SeedStreams.HeldOut"/>), so the same corpus and seed give the
/// same examples in any process.
/// </remarks>
public static class PretrainingCorpus
{
    /// <summary>The documents of <paramref name="path"/>, each its non-empty lines.</summary>
    public static List<string[]> ReadDocuments(string path)
    {
        IEnumerable<string> files = Directory.Exists(path)
            ? Directory.EnumerateFiles(path, "*.txt", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            : File.Exists(path) ? [path] : throw new EngineException($"{path}: no such corpus file or directory");
        var documents = new List<string[]>();
        foreach (string file in files)
        {
            var current = new List<string>();
            foreach (string raw in File.ReadLines(file))
            {
                string line = raw.Trim();
                if (line.Length > 0) current.Add(line);
                else if (current.Count > 0)
                {
                    documents.Add([.. current]);
                    current.Clear();
                }
            }
            if (current.Count > 0) documents.Add([.. current]);
        }
        if (documents.Count == 0) throw new EngineException($"{path}: the corpus holds no text");
        return documents;
    }

    /// <summary>Documents as token ids per line (no special tokens), lines that tokenize to nothing dropped.</summary>
    public static List<int[][]> Tokenize(IReadOnlyList<string[]> documents, BertTokenizer tokenizer) =>
        [.. documents.Select(d => d.Select(tokenizer.TokenIds).Where(ids => ids.Length > 0).ToArray()).Where(d => d.Length > 0)];

    /// <summary>Splits documents into held-out and training ones: a seeded shuffle, the first round(fraction · count) held out (at least one when the fraction is above 0 and there are two documents).</summary>
    public static (List<T> Train, List<T> Eval) Split<T>(IReadOnlyList<T> documents, double fraction, ulong seed)
    {
        var order = Enumerable.Range(0, documents.Count).ToArray();
        for (int i = order.Length - 1; i > 0; i--)
        {
            int j = Philox.Below(seed, SeedStreams.HeldOut, i, i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        int held = fraction <= 0 || documents.Count < 2 ? 0 : Math.Clamp((int)Math.Round(fraction * documents.Count), 1, documents.Count - 1);
        return ([.. order.Skip(held).Order().Select(i => documents[i])], [.. order.Take(held).Order().Select(i => documents[i])]);
    }

    /// <summary>The examples of <paramref name="documents"/> for sequences of at most <paramref name="maxLength"/> tokens with special tokens.</summary>
    public static List<PretrainingExample> Examples(IReadOnlyList<int[][]> documents, int maxLength, SentenceObjective objective, ulong seed)
    {
        bool pairs = objective != SentenceObjective.None;
        int budget = maxLength - (pairs ? 3 : 2);
        if (budget < (pairs ? 2 : 1)) throw new EngineException($"maximum length {maxLength} leaves no room for {(pairs ? "two segments" : "a segment")}");
        long draw = 0;
        int Below(int bound) => Philox.Below(seed, SeedStreams.Pairing, draw++, bound);
        var pieces = documents.Select(d => d.SelectMany(line => line.Chunk(budget)).ToArray()).ToArray();
        var examples = new List<PretrainingExample>();
        for (int d = 0; d < pieces.Length; d++)
        {
            var lines = pieces[d];
            for (int start = 0; start < lines.Length;)
            {
                // Pack whole lines up to the budget (a line is never longer than it).
                int end = start, length = 0;
                while (end < lines.Length && length + lines[end].Length <= budget) length += lines[end++].Length;
                var pack = lines[start..end];
                start = end;
                if (!pairs)
                {
                    examples.Add(new PretrainingExample([.. pack.SelectMany(l => l)], null, 0));
                    continue;
                }
                int[] a, b;
                if (pack.Length >= 2)
                {
                    int cut = 1 + Below(pack.Length - 1);
                    (a, b) = ([.. pack[..cut].SelectMany(l => l)], [.. pack[cut..].SelectMany(l => l)]);
                }
                else if (pack[0].Length >= 2)
                    (a, b) = (pack[0][..(pack[0].Length / 2)], pack[0][(pack[0].Length / 2)..]);
                else continue; // a one-token document cannot make a pair
                int label = Below(2);
                if (label == 1 && objective == SentenceObjective.SentenceOrder) (a, b) = (b, a);
                else if (label == 1 && pieces.Length > 1)
                {
                    int other = Below(pieces.Length - 1);
                    if (other >= d) other++;
                    var source = pieces[other];
                    var random = new List<int>();
                    for (int line = Below(source.Length); line < source.Length && random.Count < budget - a.Length; line++) random.AddRange(source[line]);
                    b = [.. random];
                }
                else label = 0;
                examples.Add(Truncated(a, b, budget, label));
            }
        }
        return examples;
    }

    /// <summary>The pair cut to the budget, the longer segment shortened from its end first (each keeps at least one token).</summary>
    private static PretrainingExample Truncated(int[] a, int[] b, int budget, int label)
    {
        int na = a.Length, nb = b.Length;
        while (na + nb > budget)
        {
            if (na > nb) na--;
            else nb--;
        }
        return new PretrainingExample(a[..na], b[..nb], label);
    }
}

/// <summary>
/// Pre-training examples as a <see cref="ITrainingSet"/>: each batch is padded, masked anew for its step
/// (<see cref="TokenMasker"/>), and its targets are the token labels, then (with a sentence objective) the sentence labels.
/// </summary>
public sealed class PretrainingSet(IReadOnlyList<PretrainingExample> examples, BertTokenizer tokenizer, TokenMasker masker, int maxLength) : ITrainingSet
{
    public int Count => examples.Count;

    public void Validate(ITaskModel model, string set)
    {
        if (model is not BertForMaskedLM lm) throw new EngineException($"pre-training needs a masked-LM model, not {model.GetType().Name}");
        if (tokenizer.Vocabulary.Count > lm.VocabSize)
            throw new EngineException($"{tokenizer.Source}: {tokenizer.Vocabulary.Count} tokens, but the model's vocab_size is {lm.VocabSize}");
        bool pairs = examples.Count > 0 && examples[0].Second is not null;
        if (pairs != (lm.Sentence != SentenceObjective.None))
            throw new EngineException($"the {set} examples are {(pairs ? "segment pairs" : "single segments")}, but the model's sentence objective is {lm.Sentence}");
    }

    public TrainingBatch Collate(IReadOnlyList<int> indices, ulong seed, long step)
    {
        var chosen = indices.Select(i => examples[i]).ToList();
        var batch = tokenizer.Pad([.. chosen.Select(e => tokenizer.Build(e.First, e.Second, maxLength))]);
        var labels = masker.Mask(batch.InputIds, batch.AttentionMask, batch.BatchSize, batch.SequenceLength, indices, seed, step);
        float[] targets = chosen[0].Second is null ? labels : [.. labels, .. chosen.Select(e => (float)e.SentenceLabel)];
        return new TrainingBatch(batch, targets);
    }
}
