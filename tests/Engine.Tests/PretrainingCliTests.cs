using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Backends.Cpu;
using Engine.IO;
using Engine.Models.Bert;
using Engine.Reference;
using Engine.Tokenization;

namespace Engine.Tests;

/// <summary>
/// The masked-LM verbs end to end: fill-mask as the pipeline gives it, encode's per-token logits, a short
/// pre-training run on a slice of the SpamAssassin text (lower held-out loss, bit-identical resume, a model that
/// fill-mask, finetune and embed load), and a vocabulary trained for it.
/// </summary>
[Collection("console")]
public sealed class PretrainingCliTests
{
    private static (int Code, string Out, string Error) Run(params string[] args) => CliRunner.Run(args);
    private static readonly string MaskedLM = Path.Combine(AppContext.BaseDirectory, "Fixtures", "pytorch", "tiny-mlm", "model");
    /// <summary>The first 120 training messages of the SpamAssassin split (tools/spam/prepare.py --fixture 120), a sentence per line.</summary>
    private static readonly string SpamCorpus = Path.Combine(AppContext.BaseDirectory, "Fixtures", "spam", "corpus-120.txt");

    [Fact]
    public void FillMaskPrintsWhatThePipelineGives()
    {
        var (code, output, error) = Run("fill-mask", "--model", MaskedLM, "--json", "--top-k", "3", "the quick brown fox jumps over the [MASK] dog", "a [MASK] sat on the [MASK]");
        Assert.True(code == 0, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        using var model = BertForMaskedLM.Load(MaskedLM, new CpuBackend());
        var pipeline = new FillMask(BertTokenizer.Load(MaskedLM), model, 512);
        var one = JsonNode.Parse(lines[0])!.AsArray(); // one mask: a list of candidates
        var expected = pipeline.Fill("the quick brown fox jumps over the [MASK] dog", topK: 3)[0];
        Assert.Equal(expected.Select(p => p.Token), one.Select(c => (int)c!["token"]!));
        Assert.Equal(expected.Select(p => p.Sequence), one.Select(c => (string)c!["sequence"]!));
        var two = JsonNode.Parse(lines[1])!.AsArray(); // two masks: a list per mask
        Assert.Equal(2, two.Count);
        Assert.All(two, list => Assert.Equal(3, list!.AsArray().Count));

        (code, output, error) = Run("fill-mask", "--model", MaskedLM, "--targets", "dog,cat,zebra", "the lazy [MASK]");
        Assert.True(code == 0, error);
        Assert.Contains("'zebra'", error); // not in this vocabulary: a warning, and dropped
        Assert.Equal(3, output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length); // the text, then dog and cat
        var failure = Run("fill-mask", "--model", MaskedLM, "no mask here");
        Assert.Equal(1, failure.Code);
        Assert.Contains("text 1: no [MASK]", failure.Error);
        // A model without a masked-LM head is refused, not run with a random one.
        using var temp = new TempDirectory();
        TinyBert.WriteWithVocabulary(temp.Path);
        Assert.Contains("no masked-LM head", Run("fill-mask", "--model", temp.Path, "a [MASK]").Error);
    }

    [Fact]
    public void EncodeWritesAMaskedLMsLogitsAtEveryPosition()
    {
        using var temp = new TempDirectory();
        File.WriteAllLines(temp["in.txt"], ["the quick brown fox", "a cat"]);
        var (code, _, error) = Run("encode", "--model", MaskedLM, "--input", temp["in.txt"], "--output", temp["out.safetensors"]);
        Assert.True(code == 0, error);
        using var file = SafeTensorsFile.Open(temp["out.safetensors"]);
        Assert.True(file.TryGet("logits", out var logits));
        Assert.Equal([2L, 6, 50], logits.Shape);
        using var model = BertForMaskedLM.Load(MaskedLM, new CpuBackend());
        var tokenizer = BertTokenizer.Load(MaskedLM);
        var alone = model.Logits(tokenizer.Pad([tokenizer.Encode("a cat")]));
        Assert.Equal(alone, file.ReadFloat32(logits).AsSpan(6 * 50, 4 * 50).ToArray()); // the shorter text's rows, from a padded batch
    }

    [Fact]
    public void APretrainingRunLowersTheHeldOutLossResumesBitIdenticallyAndGivesAModelEveryVerbLoads()
    {
        Assert.True(File.Exists(SpamCorpus), $"{SpamCorpus}: the fixture is missing");
        using var temp = new TempDirectory();
        string vocabulary = temp["vocabulary"];
        var (code, output, error) = Run("train-tokenizer", "--corpus", SpamCorpus, "--vocab-size", "2000", "--output", vocabulary);
        Assert.True(code == 0, error);
        Assert.Contains("2,000 tokens", output);
        string[] common = ["pretrain", "--corpus", SpamCorpus, "--config", "tiny", "--tokenizer", vocabulary, "--objective", "mlm+sop", "--max-length", "64",
            "--batch-size", "16", "--lr", "1e-3", "--schedule", "constant", "--warmup", "0", "--eval-fraction", "0.1", "--seed", "7", "--device", "cpu", "--log-json", "--quiet"];
        (code, output, error) = Run([.. common, "--epochs", "3", "--output", temp["whole"]]);
        Assert.True(code == 0, error);
        var evaluations = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).Where(e => e["eval_loss"] is not null).ToList();
        Assert.Equal(3, evaluations.Count);
        // A new model predicts uniformly: ln 2000 for the masked tokens, ln 2 for the sentence order. Each epoch lowers it.
        var losses = evaluations.Select(e => (double)e["eval_loss"]!).ToList();
        Assert.True(losses[0] < Math.Log(2000) + Math.Log(2) - 0.5, $"held-out loss after one epoch {losses[0]}");
        for (int epoch = 1; epoch < losses.Count; epoch++) Assert.True(losses[epoch] < losses[epoch - 1], $"held-out losses {string.Join(", ", losses)}");
        Assert.True((double)evaluations[^1]["perplexity"]! < (double)evaluations[0]["perplexity"]!);

        // Stopped by --steps in the middle of the second epoch, then resumed from the checkpoint: the same weights to the
        // bit (a constant rate without warmup, so that the step limit changes no step's rate).
        (code, _, error) = Run([.. common, "--epochs", "3", "--steps", StepsOfOneEpochAndAHalf(temp["whole"]), "--output", temp["cut"]]);
        Assert.True(code == 0, error);
        var cut = JsonNode.Parse(File.ReadAllText(Path.Combine(temp["cut"], "last", "trainer_state.json")))!;
        Assert.Equal(2, (int)cut["epoch"]!);
        Assert.True((int)cut["next_example"]! > 0); // where the second epoch stopped
        (code, _, error) = Run([.. common, "--epochs", "3", "--output", temp["cut"], "--resume", Path.Combine(temp["cut"], "last")]);
        Assert.True(code == 0, error);
        Assert.Equal(File.ReadAllBytes(Path.Combine(temp["whole"], "last", "model.safetensors")), File.ReadAllBytes(Path.Combine(temp["cut"], "last", "model.safetensors")));

        // What it wrote is a BertForPreTraining directory with its tokenizer, which the other verbs load.
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(temp["whole"], "config.json")))!;
        Assert.Equal("BertForPreTraining", (string)config["architectures"]![0]!);
        Assert.Equal(0, Run("fill-mask", "--model", temp["whole"], "--device", "cpu", "the [MASK] of the message").Code);
        Assert.Equal(0, Run("embed", "--model", temp["whole"], "--device", "cpu", "hello").Code);
        File.WriteAllLines(temp["train.csv"], ["text,label", "cheap pills now,spam", "meeting at noon,ham", "win money fast,spam", "lunch tomorrow,ham"]);
        (code, _, error) = Run("finetune", "--model", temp["whole"], "--train", temp["train.csv"], "--epochs", "1", "--output", temp["classifier"], "--device", "cpu", "--quiet");
        Assert.True(code == 0, error);
    }

    /// <summary>The optimizer steps of one and a half of the run's three epochs, from its trainer state.</summary>
    private static string StepsOfOneEpochAndAHalf(string output)
    {
        var state = JsonNode.Parse(File.ReadAllText(Path.Combine(output, "last", "trainer_state.json")))!;
        return ((int)state["optimizer_steps"]! / 2).ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
}
