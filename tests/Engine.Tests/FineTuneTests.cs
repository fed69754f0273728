using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Backends.Cpu;
using Engine.Cli;
using Engine.IO;
using Engine.Models.Bert;
using Engine.Reference;

namespace Engine.Tests;

/// <summary>Fine-tuning the real all-MiniLM-L6-v2 on a small slice, through the CLI, and the saved checkpoint.</summary>
[Collection("console")]
public sealed class FineTuneTests
{
    private static readonly string[] Positive = ["I loved this movie, it was wonderful", "What a great and happy day", "Fantastic food and lovely service", "This is excellent work, well done", "A delightful, brilliant experience"];
    private static readonly string[] Negative = ["I hated this movie, it was awful", "What a terrible and sad day", "Disgusting food and rude service", "This is horrible work, badly done", "A miserable, dreadful experience"];

    private static (int Code, string Out, string Error) Run(params string[] args) => CliRunner.Run(args);

    /// <summary>--log-json output: every event, and the step losses in order.</summary>
    private static (List<JsonNode> Events, List<double> Losses) ParseLog(string output)
    {
        var events = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToList();
        return (events, [.. events.Where(e => e["step"] is not null).Select(e => (double)e["loss"]!)]);
    }

    private static string WriteCsv(string path, int repeats)
    {
        var lines = new List<string> { "text,label" };
        for (int r = 0; r < repeats; r++)
        {
            lines.AddRange(Positive.Select(t => $"\"{t}\",positive"));
            lines.AddRange(Negative.Select(t => $"\"{t}\",negative"));
        }
        File.WriteAllLines(path, lines);
        return path;
    }

    [Fact]
    public void ShortRunLowersTheLossAndSavesAHuggingFaceClassifier()
    {
        using var temp = new TempDirectory();
        var (code, output, error) = Run("finetune", "--train", WriteCsv(temp["train.csv"], 3), "--eval", WriteCsv(temp["eval.csv"], 1),
            "--model", PretrainedModels.MiniLM.Directory, "--epochs", "3", "--batch-size", "8", "--lr", "5e-4", "--warmup", "0.1",
            "--output", temp["model"], "--log-json", "--seed", "7");
        Assert.True(code == 0, error);
        var (events, losses) = ParseLog(output);
        Assert.Equal(12, losses.Count);
        Assert.True(losses.Skip(8).Average() < losses.Take(4).Average() - 0.2, $"loss did not fall: {string.Join(", ", losses)}");
        var evaluations = events.Where(e => e["eval_loss"] is not null).ToList();
        Assert.Equal(3, evaluations.Count);
        Assert.Equal(1.0, (double)evaluations[^1]["accuracy"]!);

        var config = JsonNode.Parse(File.ReadAllText(temp["model/config.json"]))!;
        Assert.Equal("BertForSequenceClassification", (string)config["architectures"]![0]!);
        Assert.Equal(2, (int)config["num_labels"]!);
        Assert.Equal("negative", (string)config["id2label"]!["0"]!);
        Assert.True(File.Exists(temp["model/vocab.txt"]));
        using (var checkpoint = Checkpoint.Open(temp["model"]))
        {
            Assert.Contains("bert.encoder.layer.0.attention.self.key.weight", checkpoint.Names);
            Assert.Equal([384L, 384], checkpoint.Info("bert.encoder.layer.0.attention.self.key.weight").Shape);
            Assert.Equal([2L, 384], checkpoint.Info("classifier.weight").Shape);
            Assert.Equal([384L, 1536], checkpoint.Info("bert.encoder.layer.5.output.dense.weight").Shape);
        }

        File.WriteAllLines(temp["texts.txt"], ["an awful, dreadful film", "a wonderful, happy film"]);
        var encoded = Run("encode", "--input", temp["texts.txt"], "--output", temp["out.safetensors"], "--model", temp["model"]);
        Assert.True(encoded.Code == 0, encoded.Error);
        using (var file = SafeTensorsFile.Open(temp["out.safetensors"]))
        {
            Assert.True(file.TryGet("logits", out var logits));
            Assert.Equal([2L, 2], logits.Shape);
            var values = file.ReadFloat32(logits);
            Assert.True(values[0] > values[1] && values[3] > values[2], "negative text → class 0, positive → class 1");
        }

        var classified = Run("classify", "an awful, dreadful film", "a wonderful, happy film", "--model", temp["model"]);
        Assert.Equal(0, classified.Code);
        var lines = classified.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("negative\t", lines[0]);
        Assert.StartsWith("positive\t", lines[1]);
    }

    /// <summary>--regression: numeric labels (a sentiment score), mean squared error, Pearson/Spearman evaluation.</summary>
    [Fact]
    public void RegressionRunLowersTheLossAndSavesARegressionHead()
    {
        using var temp = new TempDirectory();
        string Write(string name, int repeats)
        {
            var lines = new List<string> { "text\tscore" };
            for (int r = 0; r < repeats; r++)
            {
                lines.AddRange(Positive.Select((t, i) => $"{t}\t{0.6 + 0.1 * i:F1}"));
                lines.AddRange(Negative.Select((t, i) => $"{t}\t{-0.6 - 0.1 * i:F1}"));
            }
            File.WriteAllLines(temp[name], lines);
            return temp[name];
        }
        var (code, output, error) = Run("finetune", "--regression", "--train", Write("train.tsv", 3), "--eval", Write("eval.tsv", 1), "--label-column", "score",
            "--model", PretrainedModels.MiniLM.Directory, "--epochs", "3", "--batch-size", "8", "--lr", "5e-4", "--warmup", "0.1",
            "--output", temp["model"], "--log-json", "--seed", "7");
        Assert.True(code == 0, error);
        var (events, losses) = ParseLog(output);
        Assert.Equal(12, losses.Count);
        Assert.True(losses.Skip(8).Average() < losses.Take(4).Average() / 2, $"loss did not fall: {string.Join(", ", losses)}");
        var last = events.Last(e => e["eval_loss"] is not null);
        Assert.True((double)last["pearson"]! > 0.9, last.ToJsonString());
        Assert.Null(last["f1"]);

        var config = JsonNode.Parse(File.ReadAllText(temp["model/config.json"]))!;
        Assert.Equal("regression", (string)config["problem_type"]!);
        Assert.Equal(1, (int)config["num_labels"]!);
        var classified = Run("classify", "an awful, dreadful film", "a wonderful, happy film", "--model", temp["model"]);
        Assert.True(classified.Code == 0, classified.Error);
        var values = classified.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => double.Parse(l, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.True(values[0] < 0 && values[1] > 0, string.Join(", ", values));

        File.WriteAllLines(temp["bad.tsv"], ["text\tscore", "fine\t0.5", "broken\tvery good"]);
        var bad = Run("finetune", "--regression", "--train", temp["bad.tsv"], "--label-column", "score", "--model", PretrainedModels.MiniLM.Directory, "--output", temp["unused"]);
        Assert.Equal(1, bad.Code);
        Assert.Contains("bad.tsv:3: label 'very good' is not a finite number", bad.Error);
    }

    /// <summary>Training on from a classifier keeps its label ids (config.json's id2label), not the data's sorted order.</summary>
    [Fact]
    public void FineTuningAClassifierKeepsItsLabelIds()
    {
        using var temp = new TempDirectory();
        using (var model = BertForSequenceClassification.Load(PretrainedModels.MiniLM.Directory, new CpuBackend(), seed: 3, labelNames: ["positive", "negative"]))
            model.Save(temp["classifier"], PretrainedModels.MiniLM.Directory);
        var (code, _, error) = Run("finetune", "--train", WriteCsv(temp["train.csv"], 1), "--model", temp["classifier"], "--steps", "1", "--batch-size", "4",
            "--output", temp["tuned"], "--log-json");
        Assert.True(code == 0, error);
        var config = JsonNode.Parse(File.ReadAllText(temp["tuned/config.json"]))!;
        Assert.Equal("positive", (string)config["id2label"]!["0"]!);
        Assert.Equal(1, (int)config["label2id"]!["negative"]!);
        // A label the classifier does not know is an error naming it.
        File.WriteAllLines(temp["other.csv"], ["text,label", "fine,neutral"]);
        var other = Run("finetune", "--train", temp["other.csv"], "--model", temp["classifier"], "--steps", "1", "--output", temp["unused"]);
        Assert.Equal(1, other.Code);
        Assert.Contains("label 'neutral' is not among the classifier's labels (positive, negative)", other.Error);
    }

    [Fact]
    public void SavedClassifierReloadsToTheSameLogits()
    {
        using var temp = new TempDirectory();
        TinyBert.Write(temp["base"]);
        var batch = new BertBatch(2, 3, [2, 5, 7, 3, 4, 1], new int[6], [1, 1, 1, 1, 1, 0]);
        float[] before;
        using (var model = BertForSequenceClassification.Load(temp["base"], new CpuBackend(), seed: 5, labelNames: ["a", "b", "c"]))
        {
            before = model.Logits(batch);
            model.Save(temp["saved"], temp["base"]);
        }
        using var reloaded = BertForSequenceClassification.Load(temp["saved"], new CpuBackend());
        Assert.Equal(["a", "b", "c"], reloaded.Labels);
        Assert.Equal(before, reloaded.Logits(batch));
        Assert.Empty(reloaded.UnusedTensors);
        Assert.Equal(ProblemType.SingleLabelClassification, reloaded.ProblemType);
    }

    [Fact]
    public void CsvFieldsMayHoldQuotesCommasAndNewlines()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["data.csv"], "text,label\n\"Hello, \"\"world\"\"\nsecond line\",spam\nplain,ham\n");
        var table = LabelledData.ReadRows(temp["data.csv"]);
        Assert.Equal(2, table.Rows.Count);
        Assert.Equal("Hello, \"world\"\nsecond line", table.Rows[0]["text"].GetString());
        Assert.Equal([temp["data.csv"] + ":2", temp["data.csv"] + ":4"], table.Where);
        var columns = new LabelledData.Columns("text", null, "label");
        Assert.Equal(["ham", "spam"], LabelledData.LabelNames(table, columns));
        File.WriteAllText(temp["ids.tsv"], "text\tlabel\na\t2\nb\t0\nc\t1\nd\t1\n");
        Assert.Equal(["0", "1", "2"], LabelledData.LabelNames(LabelledData.ReadRows(temp["ids.tsv"]), columns));
    }
}

/// <summary>Training resumed from the per-epoch checkpoint continues bit-identically on the CPU backend.</summary>
public sealed class ResumeTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ResumedTrainingEndsWithTheSameWeights(bool regression)
    {
        using var temp = new TempDirectory();
        TinyBert.Write(temp["base"]);
        var random = new Random(3);
        var examples = Enumerable.Range(0, 12).Select(i =>
        {
            int[] ids = [2, .. Enumerable.Range(0, 3 + i % 3).Select(_ => random.Next(4, TinyBert.Vocab)), 3];
            return new Engine.Training.LabelledExample(new Engine.Tokenization.Encoding(ids, new int[ids.Length], [.. ids.Select(_ => 1)]), regression ? 0.25f * i - 1 : i % 2);
        }).ToList();
        var options = new Engine.Training.TrainingOptions { Epochs = 3, BatchSize = 4, LearningRate = 1e-2f, Dropout = 0.2f, Seed = 11, GradientAccumulation = 2, WarmupRatio = 0.2f };

        float[][] Weights(BertForSequenceClassification m) => [.. m.Parameters.Select(p => p.ReadValue(m.Backend))];

        // Straight through, copying the checkpoint of epoch 1 while epoch 2 is evaluated (before it is overwritten).
        float[][] straight;
        using (var model = regression
            ? BertForSequenceClassification.Load(temp["base"], new CpuBackend(), numLabels: 1, seed: 1)
            : BertForSequenceClassification.Load(temp["base"], new CpuBackend(), seed: 1, labelNames: ["no", "yes"]))
        {
            new Engine.Training.Trainer(model, options).Train(examples, examples, e =>
            {
                if (e is Engine.Training.EvaluationEvent { Epoch: 2 }) CopyDirectory(temp["run/last"], temp["after-epoch-1"]);
            }, temp["run"], temp["base"]);
            straight = Weights(model);
        }
        // Resumed from that copy.
        using var resumed = BertForSequenceClassification.Load(temp["after-epoch-1"], new CpuBackend());
        Assert.Equal(regression ? ProblemType.Regression : ProblemType.SingleLabelClassification, resumed.ProblemType);
        new Engine.Training.Trainer(resumed, options).Train(examples, examples, _ => { }, temp["resumed-run"], temp["base"], resumeFrom: temp["after-epoch-1"]);
        var after = Weights(resumed);
        Assert.Equal(straight.Length, after.Length);
        for (int i = 0; i < straight.Length; i++) Assert.Equal(straight[i], after[i]);
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)), overwrite: true);
    }
}
