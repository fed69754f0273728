using System.Text.Json.Nodes;
using Engine.Tokenization;

namespace Engine.Tests;

/// <summary>
/// Lower-casing equals Python's str.lower() (what Hugging Face's BertTokenizer uses): on strings Python lower-cased
/// (tools/unicode/python_lower.py writes them: every code point the table maps, in runs, and thousands of words with
/// capital sigmas in every context), and where .NET's invariant lower-casing differs.
/// </summary>
public sealed class LowerCaseTests
{
    public static TheoryData<int> Chunks => [.. Enumerable.Range(0, 8)];

    private static readonly Lazy<List<(string Text, string Lower)>> Cases = new(() =>
        [.. File.ReadLines(Path.Combine(AppContext.BaseDirectory, "Fixtures", "lowercase", "cases.jsonl"))
            .Select(l => JsonNode.Parse(l)!).Select(n => ((string)n["text"]!, (string)n["lower"]!))]);

    [Theory, MemberData(nameof(Chunks))]
    public void EqualsPythonOnItsCases(int chunk)
    {
        var cases = Cases.Value.Where((_, i) => i % 8 == chunk).ToList();
        Assert.True(cases.Count > 300);
        var wrong = cases.Where(c => PythonLowerCase.Lower(c.Text) != c.Lower).Take(5)
            .Select(c => $"{Escape(c.Text)}: expected {Escape(c.Lower)}, got {Escape(PythonLowerCase.Lower(c.Text))}").ToList();
        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
    }

    [Theory]
    [InlineData("ΟΔΟΣ", "οδος")]              // a word-final capital sigma: ς (.NET: σ)
    [InlineData("ΣΑΣ ΣΑΣ", "σας σας")]         // lower-cased as one string: final before the space, not at a word's start
    [InlineData("Σ", "σ")]                     // alone: not final
    [InlineData("ΑΣ'Α", "ασ'α")]               // an apostrophe is case-ignorable: a cased letter follows it
    [InlineData("İstanbul", "i̇stanbul")]       // U+0130 becomes two code points (.NET: one)
    [InlineData("ABC", "abc")]
    public void DiffersFromDotNetWherePythonDoes(string text, string expected)
    {
        Assert.Equal(expected, PythonLowerCase.Lower(text));
        if (text.Contains('Σ') && expected.Contains('ς') || text.Contains('İ')) Assert.NotEqual(expected, text.ToLowerInvariant());
    }

    [Fact]
    public void TheTokenizerLowerCasesAsPython()
    {
        var tokenizer = new BertTokenizer(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "οδος", "οδοσ", "i", "##̇", "##stanbul"],
            new BertTokenizerOptions { StripAccents = false });
        Assert.Equal(["οδος"], tokenizer.Tokenize("ΟΔΟΣ"));
        Assert.Equal(["i", "##̇", "##stanbul"], tokenizer.Tokenize("İstanbul"));
    }

    private static string Escape(string s) => string.Concat(s.EnumerateRunes().Select(r => r.Value < 0x80 ? r.ToString() : $"\\u{r.Value:X4}"));
}
