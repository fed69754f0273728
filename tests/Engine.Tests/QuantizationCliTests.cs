using System.Globalization;
using System.Text.Json.Nodes;
using Engine.IO;

namespace Engine.Tests;

/// <summary>The <c>quantize</c> verb end to end: what it prints and reports, and every verb running what it writes.</summary>
[Collection("console")]
public sealed class QuantizationCliTests(CommandLineFixture data) : IClassFixture<CommandLineFixture>
{
    private static (int Code, string Out, string Error) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void EveryVerbRunsAQuantizedModel()
    {
        using var temp = new TempDirectory();
        foreach (var (model, output) in new[] { (data.Model, temp["base"]), (data.Classifier, temp["classifier"]), (data.MaskedLM, temp["mlm"]) })
        {
            var (code, stdout, error) = Run("quantize", "--model", model, "--output", output, "--include-embeddings");
            Assert.True(code == 0, error);
            Assert.Matches(@"^weights: [\d.]+ MB → [\d.]+ MB \([\d.]+% of the original\) in ", stdout);
            using var checkpoint = Checkpoint.Open(output);
            Assert.Equal(DType.I8, checkpoint.Info(checkpoint.Names.First(n => n.EndsWith("word_embeddings.weight", StringComparison.Ordinal))).DType);
        }
        var runs = new[]
        {
            new[] { "embed", "--model", temp["base"], "good movie" },
            ["similarity", "--model", temp["base"], "good movie", "bad movie"],
            ["encode", "--model", temp["base"], "--input", data.Texts, "--output", temp["encoded.safetensors"]],
            ["classify", "--model", temp["classifier"], "good movie"],
            ["fill-mask", "--model", temp["mlm"], "the lazy [MASK]"],
        };
        foreach (var args in runs)
        {
            var (code, stdout, error) = Run(args);
            Assert.True(code == 0, $"{string.Join(' ', args)}: {error}");
            Assert.True(stdout.Length > 0 || args[0] == "encode", $"{args[0]} printed nothing");
        }
        Assert.True(File.Exists(temp["encoded.safetensors"]));
    }

    [Fact]
    public void TheReportComparesTheQuantizedModelWithTheOriginal()
    {
        using var temp = new TempDirectory();
        var (code, stdout, error) = Run("quantize", "--model", data.Model, "--output", temp["base"], "--report", data.Texts);
        Assert.True(code == 0, error);
        var cosine = System.Text.RegularExpressions.Regex.Match(stdout, @"2 lines, cosine\(int8 embedding, FP32 embedding\) mean ([\d.]+), min ([\d.]+)");
        Assert.True(cosine.Success, stdout);
        Assert.InRange(double.Parse(cosine.Groups[2].Value, CultureInfo.InvariantCulture), 0.9, 1.0);

        string labelled = temp["eval.csv"];
        File.WriteAllLines(labelled, ["text,label", "good movie,LABEL_0", "bad movie,LABEL_1", "the good movies,LABEL_2", "a bad movie,LABEL_0"]);
        (code, stdout, error) = Run("quantize", "--model", data.Classifier, "--output", temp["classifier"], "--report", labelled, "--exclude", "classifier");
        Assert.True(code == 0, error);
        Assert.Contains("kept in FP32 by --exclude: classifier.weight", stdout);
        Assert.Matches(@"4 examples, accuracy FP32 [\d.]+%, int8 [\d.]+% \([+-]?[\d.]+ points\)", stdout);
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(temp["classifier"], "config.json")))!;
        Assert.Equal("classifier", (string?)config["quantization"]!["excluded"]![0]);
    }
}
