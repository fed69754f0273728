using System.Text.Json.Nodes;
using System.Xml.Linq;
using Engine.Cli;
using static Engine.Tests.CliRunner;

namespace Engine.Tests;

/// <summary><c>explain</c> on a tiny classifier: the JSON line, the text table, --target, and the self-contained page.</summary>
[Collection("console")]
public sealed class ExplainCliTests
{
    [Fact]
    public void JsonGivesTokensScoresPredictionAndDelta()
    {
        using var temp = new TempDirectory();
        string model = AttributionTests.WriteClassifier(temp);
        var (code, output, error) = Run("explain", "--model", model, "--json", "--steps", "20", "good movie", "bad");
        Assert.True(code == 0, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        var first = JsonNode.Parse(lines[0])!;
        Assert.Equal("good movie", (string)first["text"]!);
        Assert.Equal(["[CLS]", "good", "movie", "[SEP]"], first["tokens"]!.AsArray().Select(t => (string)t!));
        string predicted = (string)first["prediction"]!["label"]!;
        Assert.Equal(predicted, (string)first["target"]!); // no --target: the predicted label is explained
        Assert.InRange((double)first["prediction"]!["probability"]!, 1.0 / 3, 1.0);
        var methods = first["methods"]!.AsObject();
        Assert.Equal(["integrated-gradients", "gradient-input", "attention-rollout"], methods.Select(m => m.Key));
        Assert.All(methods, m => Assert.Equal(4, m.Value!["scores"]!.AsArray().Count));
        double delta = (double)methods["integrated-gradients"]!["delta"]!;
        double difference = (double)first["output"]! - (double)first["baseline_output"]!;
        Assert.True(Math.Abs(delta) < 1e-3 * Math.Max(1, Math.Abs(difference)), $"delta {delta}");
        Assert.Equal(difference + delta, methods["integrated-gradients"]!["scores"]!.AsArray().Sum(v => (double)v!), 1e-6);
        Assert.Equal(1.0, methods["attention-rollout"]!["scores"]!.AsArray().Sum(v => (double)v!), 1e-6);
    }

    [Fact]
    public void TargetByNameOrIndexAndTheTextTable()
    {
        using var temp = new TempDirectory();
        string model = AttributionTests.WriteClassifier(temp);
        var byName = Run("explain", "--model", model, "--json", "--method", "gradient-input", "--target", "LABEL_1", "good movie");
        var byIndex = Run("explain", "--model", model, "--json", "--method", "gradient-input", "--target", "1", "good movie");
        Assert.True(byName.Code == 0, byName.Error);
        Assert.Equal(byName.Out, byIndex.Out);
        var line = JsonNode.Parse(byName.Out)!;
        Assert.Equal("LABEL_1", (string)line["target"]!);
        Assert.Equal(["gradient-input"], line["methods"]!.AsObject().Select(m => m.Key));

        var table = Run("explain", "--model", model, "--method", "integrated-gradients", "--target", "LABEL_0", "good");
        Assert.True(table.Code == 0, table.Error);
        var rows = table.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("text 1: the logit of 'LABEL_0' = ", rows[0]);
        Assert.Equal("token\tintegrated-gradients", rows[1]);
        Assert.StartsWith("[CLS]\t", rows[2]);
        Assert.StartsWith("good\t", rows[3]);
        Assert.StartsWith("integrated-gradients delta", rows[^1]);

        var (code, _, error) = Run("explain", "--model", model, "--target", "LABEL_7", "good");
        Assert.Equal((int)ExitCode.Usage, code);
        Assert.Equal("error: --target: 'LABEL_7' is neither a label (LABEL_0, LABEL_1, LABEL_2) nor an index below 3", error.Trim());
        Assert.Equal((int)ExitCode.Usage, Run("explain", "--model", model, "--steps", "0", "good").Code);
        Assert.Equal((int)ExitCode.Usage, Run("explain", "--model", model, "--method", "lime", "good").Code);
    }

    /// <summary>The page parses as XML, fetches nothing (no URL, script or link), and holds a PNG per layer and head and a heat map per method.</summary>
    [Fact]
    public void TheHtmlPageIsWellFormedAndSelfContained()
    {
        using var temp = new TempDirectory();
        string model = AttributionTests.WriteClassifier(temp);
        var (code, _, error) = Run("explain", "--model", model, "--steps", "4", "--html", temp["page.html"], "good movie", "a <b> & \"c\"");
        Assert.True(code == 0, error);
        string html = File.ReadAllText(temp["page.html"]);
        var page = XDocument.Parse(html);
        Assert.DoesNotContain("http:", html);
        Assert.DoesNotContain("https:", html);
        Assert.DoesNotContain(page.Descendants(), e => e.Name.LocalName is "script" or "link" or "iframe" or "object");
        var images = page.Descendants("img").ToList();
        Assert.Equal(2 * TinyBert.Layers * TinyBert.Heads, images.Count);
        foreach (var image in images)
        {
            string source = (string)image.Attribute("src")!;
            Assert.StartsWith("data:image/png;base64,", source);
            var png = Convert.FromBase64String(source["data:image/png;base64,".Length..]);
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
        }
        Assert.Equal(2 * 3, page.Descendants("div").Count(d => (string?)d.Attribute("class") == "tokens"));
        Assert.Contains("a &lt;b&gt; &amp; &quot;c&quot;", html); // the text is escaped, never markup
    }

    /// <summary>A masked-LM checkpoint: the token at the first [MASK] is explained (the predicted one, or --target's); a text without one is refused.</summary>
    [Fact]
    public void AMaskedLMExplainsTheTokenAtItsMask()
    {
        string model = Path.Combine(PyTorchParityTests.Root, "tiny-mlm", "model");
        var (code, output, error) = Run("explain", "--model", model, "--json", "--method", "integrated-gradients", "the quick [MASK] fox");
        Assert.True(code == 0, error);
        var line = JsonNode.Parse(output)!;
        Assert.Equal(3, (int)line["position"]!);
        Assert.Equal((string)line["prediction"]!["token"]!, (string)line["target"]!);
        Assert.Equal(6, line["methods"]!["integrated-gradients"]!["scores"]!.AsArray().Count);
        (code, output, error) = Run("explain", "--model", model, "--json", "--method", "gradient-input", "--target", "dog", "the quick [MASK] fox");
        Assert.True(code == 0, error);
        Assert.Equal("dog", (string)JsonNode.Parse(output)!["target"]!);
        (code, _, error) = Run("explain", "--model", model, "the quick brown fox");
        Assert.Equal((int)ExitCode.Failure, code);
        Assert.Equal("error: text 1 has no [MASK]: a masked-LM head explains the token it predicts there", error.Trim());
        Assert.Equal((int)ExitCode.Usage, Run("explain", "--model", model, "--target", "zebra", "the [MASK]").Code);
    }
}
