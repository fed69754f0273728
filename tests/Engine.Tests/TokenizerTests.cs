using System.Text.Json;
using Engine.Reference;
using Engine.Tokenization;

namespace Engine.Tests;

/// <summary>
/// Ids against Hugging Face's BertTokenizer rules: Fixtures/tokenizer/expected.json was written by
/// generate.mjs with tokenizers.js (a port of the Rust tokenizers) on the real all-MiniLM-L6-v2 vocabulary;
/// the unit-test cases are transformers' own (tests/models/bert/test_tokenization_bert.py).
/// </summary>
public sealed class TokenizerTests
{
    private static readonly Lazy<BertTokenizer> MiniLM = new(() => BertTokenizer.Load(PretrainedModels.MiniLM.Directory));

    private sealed record Expected(string text, string? pair, int[] input_ids, int[] token_type_ids);

    public static TheoryData<int> FixtureCases => [.. Enumerable.Range(0, LoadFixture().Length)];

    private static Expected[] LoadFixture() =>
        JsonSerializer.Deserialize<Expected[]>(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Fixtures", "tokenizer", "expected.json")))!;

    [Fact]
    public void FixtureHasAtLeastThirtyCases() => Assert.True(LoadFixture().Length >= 30);

    [Theory, MemberData(nameof(FixtureCases))]
    public void IdsEqualHuggingFace(int index)
    {
        var expected = LoadFixture()[index];
        var encoding = MiniLM.Value.Encode(expected.text, expected.pair);
        Assert.Equal(expected.input_ids, encoding.InputIds);
        Assert.Equal(expected.token_type_ids, encoding.TokenTypeIds);
        Assert.All(encoding.AttentionMask, m => Assert.Equal(1, m));
    }

    private static BertTokenizer Tiny(bool lowerCase, bool? stripAccents = null) => new(
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "want", "##want", "##ed", "wa", "un", "runn", "##ing", ",", "low", "lowest", "hello", "!", "how", "are", "you", "?", "HeLLo", "hällo", "hallo"],
        new BertTokenizerOptions { DoLowerCase = lowerCase, StripAccents = stripAccents });

    [Fact]
    public void WordPieceSplitsGreedilyAndUnknownWordsBecomeUnk() =>
        // transformers: test_wordpiece_tokenizer
        Assert.Equal(["un", "##want", "##ed", "runn", "##ing", "[UNK]", "runn"], Tiny(true).Tokenize("unwanted running unwantedX runn"));

    [Fact]
    public void LowerCasingCleansWhitespace() =>
        // transformers: test_basic_tokenizer_lower
        Assert.Equal(["hello", "!", "how", "are", "you", "?"], Tiny(true).Tokenize(" \tHeLLo!how  \n Are yoU?  "));

    [Fact]
    public void CasedKeepsCase() =>
        // transformers: test_basic_tokenizer_no_lower ("Are" and "yoU" are not in this vocabulary)
        Assert.Equal(["HeLLo", "!", "how", "[UNK]", "[UNK]", "?"], Tiny(false).Tokenize(" \tHeLLo!how  \n Are yoU?  "));

    [Fact]
    public void StripAccentsFollowsTheOptions()
    {
        // transformers: test_basic_tokenizer_lower_strip_accents_false / _true / _default
        Assert.Equal(["hällo", "!"], Tiny(true, stripAccents: false).Tokenize("HäLLo!"));
        Assert.Equal(["hallo", "!"], Tiny(true, stripAccents: true).Tokenize("HäLLo!"));
        Assert.Equal(["hallo", "!"], Tiny(true).Tokenize("HäLLo!"));
    }

    [Fact]
    public void OverLongWordIsOneUnk() => Assert.Equal(["[UNK]"], Tiny(true).Tokenize(new string('a', 101)));

    [Fact]
    public void TruncatesSingleSequencesFromTheEnd()
    {
        var encoding = MiniLM.Value.Encode("the quick brown fox jumps over the lazy dog", maxLength: 6);
        Assert.Equal(6, encoding.InputIds.Length);
        Assert.Equal(MiniLM.Value.ClsId, encoding.InputIds[0]);
        Assert.Equal(MiniLM.Value.SepId, encoding.InputIds[^1]);
        Assert.Equal(MiniLM.Value.TokenIds("the quick brown fox"), encoding.InputIds[1..^1]);
    }

    [Theory]
    // (first, second, budget incl. 3 specials) → kept lengths, as tokenizers' LongestFirst: the shorter keeps
    // what fits, the longer takes the rest; when both exceed half, the longer keeps the odd token.
    [InlineData(10, 2, 10, 5, 2)]
    [InlineData(1, 9, 9, 1, 5)]
    [InlineData(4, 4, 8, 2, 3)]
    [InlineData(7, 5, 9, 3, 3)]
    public void TruncatesPairsLongestFirst(int n1, int n2, int maxLength, int kept1, int kept2)
    {
        var t = MiniLM.Value;
        int[] first = [.. Enumerable.Repeat(2000, n1)], second = [.. Enumerable.Repeat(3000, n2)];
        var encoding = t.Build(first, second, maxLength);
        Assert.Equal(kept1, encoding.InputIds.Count(i => i == 2000));
        Assert.Equal(kept2, encoding.InputIds.Count(i => i == 3000));
        Assert.Equal(kept1 + kept2 + 3, encoding.InputIds.Length);
        Assert.Equal(kept2 + 1, encoding.TokenTypeIds.Sum());
    }

    [Fact]
    public void PadsToTheLongestWithMask()
    {
        var t = MiniLM.Value;
        var batch = t.Pad([t.Encode("a"), t.Encode("a man is eating")]);
        Assert.Equal(2, batch.BatchSize);
        Assert.Equal(6, batch.SequenceLength);
        Assert.Equal([1, 1, 1, 0, 0, 0], batch.AttentionMask[..6]);
        Assert.Equal(t.PadId, batch.InputIds[5]);
    }
}
