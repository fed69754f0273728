using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Models.Bert;

namespace Engine.Tests;

/// <summary>Concurrent callers of one model get the same outputs as sequential ones.</summary>
public sealed class ConcurrencyTests
{
    [Fact]
    public void ForwardFromSeveralThreadsMatchesSequentialRuns()
    {
        using var temp = new TempDirectory();
        using var model = BertModel.Load(TinyBert.Write(temp.Path), new CpuBackend());
        var batches = Enumerable.Range(1, 8).Select(b => new BertBatch(b, 3,
            [.. Enumerable.Range(0, b * 3).Select(i => (i * 7 + b) % TinyBert.Vocab)], new int[b * 3], [.. Enumerable.Repeat(1, b * 3)])).ToArray();
        var sequential = batches.Select(b => model.Forward(b).LastHiddenState).ToArray();
        var concurrent = new float[batches.Length][];
        Parallel.For(0, batches.Length, i => concurrent[i] = model.Forward(batches[i]).LastHiddenState);
        for (int i = 0; i < batches.Length; i++) Assert.Equal(sequential[i], concurrent[i]);
    }

    /// <summary>One loaded embedder and one classifier, each used from 8 threads at once, give exactly the serial outputs.</summary>
    [Fact]
    public void EmbedderAndClassifierFromEightThreadsMatchSerialRuns()
    {
        string[] texts = [.. Enumerable.Range(0, 8).Select(i => string.Join(' ', Enumerable.Repeat($"sentence {i} about a different topic", 1 + i % 3)))];
        using var embedder = SentenceEmbedder.Load(Engine.Reference.PretrainedModels.MiniLM.Directory, new CpuBackend());
        var serial = texts.Select(t => embedder.Embed([t, t + " again"])).ToArray();
        var parallel = new float[texts.Length][][];
        var start = new Barrier(texts.Length);
        var threads = Enumerable.Range(0, texts.Length).Select(i => new Thread(() =>
        {
            start.SignalAndWait();
            for (int repeat = 0; repeat < 3; repeat++) parallel[i] = embedder.Embed([texts[i], texts[i] + " again"]);
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        for (int i = 0; i < texts.Length; i++)
            for (int j = 0; j < 2; j++) Assert.Equal(serial[i][j], parallel[i][j]);

        using var classifier = Engine.Models.Bert.BertForSequenceClassification.Load(Engine.Reference.PretrainedModels.MiniLM.Directory, new CpuBackend(), numLabels: 3, seed: 1);
        var batches = texts.Select(t => embedder.Tokenizer.Pad(embedder.Tokenize([t, t + " again"]))).ToArray();
        var serialLogits = batches.Select(classifier.Logits).ToArray();
        var parallelLogits = new float[batches.Length][];
        threads = [.. Enumerable.Range(0, batches.Length).Select(i => new Thread(() =>
        {
            start.SignalAndWait();
            for (int repeat = 0; repeat < 3; repeat++) parallelLogits[i] = classifier.Logits(batches[i]);
        }))];
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        for (int i = 0; i < batches.Length; i++) Assert.Equal(serialLogits[i], parallelLogits[i]);
    }

    /// <summary>Many texts are tokenized on several threads: the encodings are each text's own, in input order, on one thread or two.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void ManyTextsTokenizeInOrderOnAnyNumberOfThreads(int threads)
    {
        string[] texts = [.. Enumerable.Range(0, 300).Select(i => $"text {i}: " + string.Join(' ', Enumerable.Repeat($"word{i % 17} and more", 1 + i % 90)))];
        using var embedder = SentenceEmbedder.Load(Engine.Reference.PretrainedModels.MiniLM.Directory, new CpuBackend(threads));
        var encodings = embedder.Tokenize(texts);
        Assert.Equal(texts.Length, encodings.Count);
        for (int i = 0; i < texts.Length; i++)
        {
            var expected = embedder.Tokenizer.Encode(texts[i], maxLength: embedder.MaxLength);
            Assert.Equal(expected.InputIds, encodings[i].InputIds);
            Assert.Equal(expected.Truncated, encodings[i].Truncated);
        }
        Assert.Contains(encodings, e => e.Truncated); // long texts are cut at the model's max_seq_length, as alone
    }

    /// <summary>A masked-LM model's full and gathered logits from 8 threads at once give exactly the serial outputs.</summary>
    [Fact]
    public void MaskedLMFromEightThreadsMatchesSerialRuns()
    {
        string directory = Path.Combine(AppContext.BaseDirectory, "Fixtures", "pytorch", "tiny-mlm", "model");
        using var model = BertForMaskedLM.Load(directory, new CpuBackend());
        var tokenizer = Engine.Tokenization.BertTokenizer.Load(directory);
        var batches = Enumerable.Range(0, 8).Select(i => tokenizer.Pad([tokenizer.Encode(string.Join(' ', Enumerable.Repeat("the [MASK] dog sat", 1 + i % 3)))])).ToArray();
        int[] Masks(BertBatch b) => [.. Enumerable.Range(0, b.InputIds.Length).Where(j => b.InputIds[j] == tokenizer.MaskId)];
        var serial = batches.Select(b => (model.Logits(b), model.MaskedLogits(b, Masks(b)))).ToArray();
        var parallel = new (float[], float[])[batches.Length];
        var start = new Barrier(batches.Length);
        var threads = Enumerable.Range(0, batches.Length).Select(i => new Thread(() =>
        {
            start.SignalAndWait();
            for (int repeat = 0; repeat < 3; repeat++) parallel[i] = (model.Logits(batches[i]), model.MaskedLogits(batches[i], Masks(batches[i])));
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        for (int i = 0; i < batches.Length; i++)
        {
            Assert.Equal(serial[i].Item1, parallel[i].Item1);
            Assert.Equal(serial[i].Item2, parallel[i].Item2);
        }
    }
}

/// <summary>After the first batch of a size, a forward pass allocates nothing on the backend.</summary>
public sealed class ArenaTests
{
    [Fact]
    public void ForwardReusesItsBuffersForBatchesThatFit()
    {
        using var temp = new TempDirectory();
        var backend = new CountingBackend(new CpuBackend());
        using var model = BertModel.Load(TinyBert.Write(temp.Path), backend);
        BertBatch Batch(int B, int T) => new(B, T, [.. Enumerable.Range(0, B * T).Select(i => i % TinyBert.Vocab)], new int[B * T], [.. Enumerable.Repeat(1, B * T)]);
        int afterLoad = backend.Allocations;
        model.Forward(Batch(3, 7));
        int afterWarmUp = backend.Allocations;
        Assert.True(afterWarmUp > afterLoad);
        model.Forward(Batch(3, 7));
        model.Forward(Batch(2, 5));
        model.Forward(Batch(1, 7));
        Assert.Equal(afterWarmUp, backend.Allocations);
        model.Forward(Batch(4, 9)); // larger: the arena grows once
        int grown = backend.Allocations;
        model.Forward(Batch(4, 9));
        Assert.Equal(grown, backend.Allocations);
    }
}

/// <summary>Texts batched by length (little padding) come back in their order, equal to each text run alone.</summary>
public sealed class LengthBatchingTests
{
    [Fact]
    public void BatchesRunLongestFirstWithEveryIndexOnce()
    {
        int[] lengths = [3, 9, 5, 9, 1, 7, 5];
        var encodings = lengths.Select(n => new Engine.Tokenization.Encoding(new int[n], new int[n], new int[n])).ToList();
        var batches = BertBatch.ByLength(encodings, 3).ToList();
        Assert.Equal([[1, 3, 5], [2, 6, 0], [4]], batches);
        Assert.Throws<EngineException>(() => BertBatch.ByLength(encodings, 0));
    }

    [Fact]
    public void EmbeddingsBatchedByLengthEqualEachTextAlone()
    {
        string[] texts =
        [
            "A short one.",
            "A much longer sentence about a man who is eating a piece of bread in the kitchen while it rains outside.",
            "Medium length text about the weather.",
            "Hi",
            "Another fairly long sentence, with commas, clauses and a few more words than the medium one has.",
        ];
        string directory = Engine.Reference.PretrainedModels.MiniLM.Directory;
        using var embedder = new SentenceEmbedder(Engine.Tokenization.BertTokenizer.Load(directory), BertModel.Load(directory, new CpuBackend())) { BatchSize = 2 };
        var batched = embedder.Embed(texts);
        for (int i = 0; i < texts.Length; i++)
        {
            var alone = embedder.Embed(texts[i]);
            Assert.True(batched[i].Zip(alone).All(p => Math.Abs(p.First - p.Second) <= 1e-6f), $"text {i} differs from its embedding alone");
        }
    }
}
