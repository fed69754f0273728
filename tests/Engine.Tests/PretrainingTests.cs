using Engine.Backends.Cpu;
using Engine.Models.Bert;
using Engine.Tokenization;
using Engine.Training;

namespace Engine.Tests;

/// <summary>Dynamic masking, cutting a corpus into pre-training examples, and learning a WordPiece vocabulary.</summary>
public sealed class PretrainingTests
{
    private static readonly string[] Words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "brown", "fox", "jump", "##s", "##ed", "over", "lazy", "dog", "un", "##believ", "##able"];
    private static BertTokenizer Tokenizer() => new(Words, new BertTokenizerOptions());

    /// <summary>B rows of T tokens: [CLS], random words, [SEP], then padding on every other row.</summary>
    private static (int[] Ids, int[] Mask) Rows(int B, int T, int seed)
    {
        var random = new Random(seed);
        var (ids, mask) = (new int[B * T], new int[B * T]);
        for (int b = 0; b < B; b++)
        {
            int length = b % 2 == 0 ? T : T / 2;
            for (int t = 0; t < length; t++)
            {
                ids[b * T + t] = t == 0 ? 2 : t == length - 1 ? 3 : 5 + random.Next(Words.Length - 5);
                mask[b * T + t] = 1;
            }
        }
        return (ids, mask);
    }

    [Fact]
    public void MaskingChoosesFifteenPercentThenEightyTenTenAndNeverSpecialTokensOrPadding()
    {
        const int B = 400, T = 64;
        var (original, mask) = Rows(B, T, 1);
        var ids = original.ToArray();
        var labels = new TokenMasker(Tokenizer(), 0.15, wholeWord: false).Mask(ids, mask, B, T, [.. Enumerable.Range(0, B)], seed: 9, step: 3);
        int eligible = 0, chosen = 0, masked = 0, replaced = 0, kept = 0;
        for (int i = 0; i < B * T; i++)
        {
            bool special = original[i] < 5 || mask[i] == 0;
            if (!special) eligible++;
            if (labels[i] < 0)
            {
                Assert.Equal(original[i], ids[i]); // not chosen: untouched
                continue;
            }
            Assert.False(special, $"position {i} (id {original[i]}, mask {mask[i]}) was chosen");
            Assert.Equal(original[i], labels[i]);
            chosen++;
            if (ids[i] == 4) masked++;
            else if (ids[i] == original[i]) kept++;
            else replaced++;
        }
        // Binomial bounds, five standard deviations wide (a random replacement equal to the original counts as kept: 1/18 of 10%).
        void Within(int count, int n, double p, string what)
        {
            double sd = Math.Sqrt(n * p * (1 - p));
            Assert.True(Math.Abs(count - n * p) <= 5 * sd, $"{what}: {count} of {n}, expected {n * p:F0} ± {5 * sd:F0}");
        }
        Within(chosen, eligible, 0.15, "chosen");
        Within(masked, chosen, 0.8, "[MASK]");
        Within(replaced, chosen, 0.1 * 17 / 18, "random token");
        Within(kept, chosen, 0.1 + 0.1 / 18, "kept");
    }

    [Fact]
    public void MaskingIsAFunctionOfSeedStepAndExample()
    {
        var (original, mask) = Rows(8, 32, 2);
        float[] Mask(ulong seed, long step, int[] examples)
        {
            var ids = original.ToArray();
            return [.. new TokenMasker(Tokenizer(), 0.3, wholeWord: false).Mask(ids, mask, 8, 32, examples, seed, step), .. ids.Select(i => (float)i)];
        }
        int[] order = [.. Enumerable.Range(0, 8)];
        Assert.Equal(Mask(1, 5, order), Mask(1, 5, order));
        Assert.NotEqual(Mask(1, 5, order), Mask(1, 6, order));
        Assert.NotEqual(Mask(1, 5, order), Mask(2, 5, order));
        Assert.NotEqual(Mask(1, 5, order), Mask(1, 5, [.. order.Select(i => i + 8)]));
    }

    [Fact]
    public void WholeWordMaskingMasksEveryPieceOfAWordTogether()
    {
        var tokenizer = Tokenizer();
        var encoding = tokenizer.Encode("the quick fox jumps over the lazy dog unbelievable jumped");
        Assert.Contains(10, encoding.InputIds); // ##s
        int T = encoding.InputIds.Length, B = 300;
        var original = Enumerable.Repeat(encoding.InputIds, B).SelectMany(x => x).ToArray();
        var mask = Enumerable.Repeat(1, B * T).ToArray();
        var ids = original.ToArray();
        var labels = new TokenMasker(tokenizer, 0.2, wholeWord: true).Mask(ids, mask, B, T, [.. Enumerable.Range(0, B)], seed: 4, step: 0);
        bool Continues(int id) => Words[id].StartsWith("##");
        int expected = (int)Math.Round(T * 0.2, MidpointRounding.ToEven);
        for (int b = 0; b < B; b++)
        {
            var row = labels.AsSpan(b * T, T).ToArray();
            int count = row.Count(l => l >= 0);
            Assert.InRange(count, 1, expected); // a word that would overshoot is skipped
            for (int t = 1; t < T; t++)
                if (Continues(encoding.InputIds[t])) Assert.Equal(row[t - 1] >= 0, row[t] >= 0); // a piece goes with the token before it
            Assert.True(row[0] < 0 && row[T - 1] < 0);
        }
    }

    private static int[][] Document(params int[] lengths) => [.. lengths.Select((n, d) => Enumerable.Range(100 * (d + 1), n).ToArray())];

    [Fact]
    public void SentenceOrderExamplesKeepLinesWholeAndSwapHalfTheTime()
    {
        var documents = Enumerable.Range(0, 40).Select(_ => Document(5, 7, 4, 6, 3, 8)).ToList();
        var examples = PretrainingCorpus.Examples(documents, maxLength: 24, SentenceObjective.SentenceOrder, seed: 3);
        Assert.InRange(examples.Count(e => e.SentenceLabel == 1), examples.Count * 3 / 10, examples.Count * 7 / 10);
        foreach (var e in examples)
        {
            Assert.True(e.First.Length + e.Second!.Length <= 24 - 3);
            Assert.NotEmpty(e.First);
            Assert.NotEmpty(e.Second);
            // Lines are numbered 100·line + k: in order, A's last token comes before B's first.
            Assert.Equal(e.SentenceLabel == 0, e.First[^1] < e.Second[0]);
        }
        var single = PretrainingCorpus.Examples(documents, maxLength: 24, SentenceObjective.None, seed: 3);
        Assert.All(single, e => Assert.True(e.Second is null && e.First.Length <= 22));
        Assert.Equal(documents.Sum(d => d.Sum(l => l.Length)), single.Sum(e => e.First.Length)); // masked-LM alone keeps every token
    }

    [Fact]
    public void NextSentenceExamplesTakeARandomSegmentFromAnotherDocument()
    {
        var documents = Enumerable.Range(0, 30).Select(d => new[] { Enumerable.Range(1000 * d, 6).ToArray(), Enumerable.Range(1000 * d + 6, 6).ToArray() }).ToList();
        var examples = PretrainingCorpus.Examples(documents, maxLength: 32, SentenceObjective.NextSentence, seed: 8);
        Assert.Contains(examples, e => e.SentenceLabel == 1);
        Assert.Contains(examples, e => e.SentenceLabel == 0);
        foreach (var e in examples)
            Assert.Equal(e.SentenceLabel == 1, e.First[0] / 1000 != e.Second![0] / 1000);
        var (train, eval) = PretrainingCorpus.Split(documents, 0.2, seed: 1);
        Assert.Equal((24, 6), (train.Count, eval.Count));
        Assert.Empty(train.Intersect(eval));
    }

    [Fact]
    public void AWordPieceVocabularyLearnsFrequentWordsAndSpellsTheRest()
    {
        string[] corpus = [.. Enumerable.Repeat("the lazy dog jumps over the lazy fox", 20), "a zebra jumped"];
        var vocabulary = WordPieceTrainer.Train(corpus, new BertTokenizerOptions(), vocabSize: 40);
        Assert.Equal(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], vocabulary.Take(5));
        Assert.Contains("lazy", vocabulary);
        Assert.Contains("the", vocabulary);
        Assert.Equal(vocabulary.Count, vocabulary.Distinct().Count());
        var tokenizer = new BertTokenizer(vocabulary, new BertTokenizerOptions());
        Assert.DoesNotContain(tokenizer.UnkId, tokenizer.TokenIds("THE LAZY zebra")); // every character of the corpus is a token
        Assert.Equal(vocabulary, WordPieceTrainer.Train(corpus, new BertTokenizerOptions(), vocabSize: 40));
    }
}
