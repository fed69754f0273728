using Engine.Fuzz;
using Xunit.Abstractions;

namespace Engine.Tests;

/// <summary>
/// The short seeded fuzz run CI does: every reader of untrusted bytes, thousands of structured mutations of its
/// seeds, and not one exception but an EngineException (nor an input slower than a second). The long
/// coverage-guided runs (AFL++, a million inputs per reader) are tools/fuzz/run.sh; their figures are in
/// benchmarks/RESULTS.md.
/// </summary>
public sealed class FuzzTests(ITestOutputHelper log)
{
    public static TheoryData<string> Targets => [.. FuzzTargets.All.Select(t => t.Name)];

    [Theory]
    [MemberData(nameof(Targets))]
    public void MutatedInputsAreReadOrRefusedByName(string target)
    {
        var (findings, accepted, elapsed) = Mutator.Campaign(FuzzTargets.Named(target), 5_000, seed: 20261129, hangLimit: TimeSpan.FromSeconds(1));
        log.WriteLine($"{target}: 5,000 inputs, {accepted} read, {findings.Count} findings, {elapsed.TotalSeconds:F1} s");
        Assert.True(findings.Count == 0, string.Join("\n\n", findings.Take(3).Select(f =>
            $"{f.Error.GetType().Name}: {f.Error.Message}\ninput (base64): {Convert.ToBase64String(f.Input)}\n{f.Error.StackTrace}")));
        Assert.True(accepted > 0, "no mutated input read cleanly: the seeds or the mutator are broken");
    }

    /// <summary>The findings the first runs made, kept as inputs that must now be refused by name.</summary>
    [Theory]
    [InlineData("config", "{\"vocab_size\": 1, \"vocab_size\": 2}")]
    [InlineData("config", "{\"hidden_act\": \"\\ud800\"}")]
    [InlineData("trainer-state", "{\"epoch\": 1, \"epoch\": 1}")]
    [InlineData("checkpoint-index", "\"weight_map\"")]
    [InlineData("checkpoint-index", "{\"weight_map\": {\"a.weight\": \"a\\u0000b\"}}")]
    [InlineData("tokenizer-config", "{\"cls_token\": {\"content\": 7}}")]
    [InlineData("sentence-transformers-modules", "[{\"type\": \"x\", \"type\": \"y\"}]")]
    [InlineData("jsonl", "[1, 2]")]
    public void EarlierFindingsAreRefusedByName(string target, string input)
    {
        using var workspace = new FuzzWorkspace();
        var e = Assert.Throws<EngineException>(() => FuzzTargets.Run(FuzzTargets.Named(target), System.Text.Encoding.UTF8.GetBytes(input), workspace));
        Assert.Contains(workspace.Directory, e.Message);
    }
}
