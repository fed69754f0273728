using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Cli;
using Engine.IO;
using Engine.Reference;
using Engine.Training;

namespace Engine.Tests;

/// <summary>
/// What the verbs do at the edges: models without the head a verb needs, damaged weights, integer and one-class
/// labels, truncation, the model's own sentence-transformers settings, progress, disk use, the launcher.
/// </summary>
[Collection("console")]
public sealed class CliBehaviourTests
{
    private static (int Code, string Out, string Error) Run(params string[] args) => CliRunner.Run(args);

    private static string ErrorLine((int Code, string Out, string Error) run, ExitCode code)
    {
        Assert.True(run.Code == (int)code, $"exit {run.Code}; stderr: {run.Error}");
        var lines = run.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        return lines[0];
    }

    [Fact]
    public void ClassifyRefusesAModelWithoutAClassificationHead()
    {
        using var temp = new TempDirectory();
        string model = TinyBert.WriteWithVocabulary(temp["base"]);
        string line = ErrorLine(Run("classify", "--model", model, "good movie"), ExitCode.Failure);
        Assert.Equal($"error: {model}: no classification head (no 'classifier.weight' among its 39 tensors; it holds BertModel); " +
            $"'engine finetune --model {model} --train DATA' trains one", line);
        // The same for encode's logits, which only a classifier checkpoint gets.
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "config.json")))!.AsObject();
        config["architectures"] = new JsonArray("BertForSequenceClassification");
        File.WriteAllText(Path.Combine(model, "config.json"), config.ToJsonString());
        File.WriteAllLines(temp["in.txt"], ["good"]);
        Assert.Contains("no classification head", ErrorLine(Run("encode", "--model", model, "--input", temp["in.txt"], "--output", temp["o.safetensors"]), ExitCode.Failure));
    }

    [Fact]
    public void WeightsHoldingNaNOrInfinityAreRefusedAtLoadByName()
    {
        using var temp = new TempDirectory();
        var tensors = TinyBert.Tensors();
        int index = tensors.FindIndex(t => t.Name == "encoder.layer.1.output.dense.weight");
        var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(tensors[index].Data).ToArray();
        values[7] = float.NaN;
        tensors[index] = SafeTensorData.FromFloats(tensors[index].Name, values, tensors[index].Shape);
        string model = TinyBert.WriteWithVocabulary(temp["nan"], tensors);
        Assert.Equal($"error: {model}/model.safetensors: tensor 'encoder.layer.1.output.dense.weight' holds NaN at element 7; the checkpoint is damaged (a diverged training run?)",
            ErrorLine(Run("embed", "--model", model, "good"), ExitCode.Failure));
        values[7] = float.PositiveInfinity;
        tensors[index] = SafeTensorData.FromFloats(tensors[index].Name, values, tensors[index].Shape);
        TinyBert.WriteWithVocabulary(temp["inf"], tensors);
        Assert.Contains("holds Infinity at element 7", ErrorLine(Run("info", "--model", temp["inf"]), ExitCode.Failure));
    }

    [Fact]
    public void AVocabularyLargerThanTheEmbeddingsIsRefusedAtLoad()
    {
        using var temp = new TempDirectory();
        string model = TinyBert.WriteWithVocabulary(temp["tiny"]);
        File.AppendAllLines(Path.Combine(model, "vocab.txt"), ["extra"]);
        Assert.Equal($"error: {model}/vocab.txt: 12 tokens, but {model}/config.json has vocab_size 11: ids from 11 up have no embedding",
            ErrorLine(Run("embed", "--model", model, "good"), ExitCode.Failure));
        File.WriteAllLines(Path.Combine(model, "vocab.txt"), TinyBert.Words.Where(w => w != "[MASK]"));
        Assert.Equal($"error: {model}/vocab.txt: special token '[MASK]' is not in the vocabulary (tokenizer_config.json may name another)",
            ErrorLine(Run("embed", "--model", model, "good"), ExitCode.Failure));
    }

    /// <summary>Hugging Face's convention: an integer label is a class id, a string a label name; one class or no rows is not a classifier's data.</summary>
    [Fact]
    public void LabelsMayBeClassIdsAndTheDataMustHoldTwoClasses()
    {
        using var temp = new TempDirectory();
        string classifier = TinyBert.WriteClassifier(temp["classifier"]); // LABEL_0, LABEL_1, LABEL_2
        File.WriteAllLines(temp["ids.jsonl"], ["{\"text\": \"good movie\", \"label\": 0}", "{\"text\": \"bad movie\", \"label\": 2}", "{\"text\": \"a movie\", \"label\": \"LABEL_1\"}"]);
        var run = Run("finetune", "--model", classifier, "--train", temp["ids.jsonl"], "--steps", "1", "--output", temp["tuned"], "--quiet");
        Assert.True(run.Code == 0, run.Error);
        Assert.Equal("LABEL_2", (string)JsonNode.Parse(File.ReadAllText(temp["tuned/config.json"]))!["id2label"]!["2"]!);

        File.WriteAllLines(temp["three.jsonl"], ["{\"text\": \"good movie\", \"label\": 3}"]);
        Assert.Equal($"error: {temp["three.jsonl"]}:1: label 3 is not a class id below 3 nor one of the classifier's labels (LABEL_0, LABEL_1, LABEL_2)",
            ErrorLine(Run("finetune", "--model", classifier, "--train", temp["three.jsonl"], "--output", temp["unused"]), ExitCode.Failure));

        string model = TinyBert.WriteWithVocabulary(temp["base"]);
        File.WriteAllLines(temp["one.csv"], ["text,label", "good movie,spam", "bad movie,spam"]);
        Assert.Equal($"error: {temp["one.csv"]}: every row has label 'spam'; a classifier needs at least two classes (--regression trains on a numeric target)",
            ErrorLine(Run("finetune", "--model", model, "--train", temp["one.csv"], "--output", temp["unused"]), ExitCode.Failure));
        File.WriteAllLines(temp["empty.csv"], ["text,label"]);
        Assert.Equal($"error: {temp["empty.csv"]}: no data rows, only the header (text,label)",
            ErrorLine(Run("finetune", "--model", model, "--train", temp["empty.csv"], "--output", temp["unused"]), ExitCode.Failure));
        File.WriteAllText(temp["empty.jsonl"], "\n");
        Assert.Contains("empty.jsonl: no rows", ErrorLine(Run("finetune", "--model", model, "--train", temp["empty.jsonl"], "--output", temp["unused"]), ExitCode.Failure));
        File.WriteAllLines(temp["array.jsonl"], ["[1, 2]"]);
        Assert.Contains("array.jsonl:1: not a JSON object", ErrorLine(Run("finetune", "--model", model, "--train", temp["array.jsonl"], "--output", temp["unused"]), ExitCode.Failure));
        Assert.False(Directory.Exists(temp["unused"]));
    }

    [Fact]
    public void TruncatedInputsAreCountedInOneWarning()
    {
        using var temp = new TempDirectory();
        string model = TinyBert.WriteWithVocabulary(temp["tiny"]); // 16 positions
        string longText = string.Join(' ', Enumerable.Repeat("good movie", 20));
        File.WriteAllLines(temp["texts.txt"], [longText, "good", longText]);
        var run = Run("embed", "--model", model, "--input", temp["texts.txt"], "--max-length", "8");
        Assert.Equal(0, run.Code);
        Assert.Equal(3, run.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        Assert.Equal("warning: 2 of 3 inputs were longer than 8 tokens and were truncated; --max-length up to 16 keeps more", run.Error.Trim());
        run = Run("similarity", "--model", model, "good", longText);
        Assert.Equal("warning: 1 of 2 inputs were longer than 16 tokens and were truncated", run.Error.Trim());
        Assert.Equal("", Run("embed", "--model", model, "good").Error);
    }

    /// <summary>The packaged default model carries its sentence-transformers settings: 256 tokens, mean pooling, normalised.</summary>
    [Fact]
    public void TheDefaultModelUsesItsSentenceTransformersSettings()
    {
        var settings = SentenceTransformersConfig.Load(PretrainedModels.MiniLM.Directory)!;
        Assert.Equal(new SentenceTransformersConfig(256, false, Pooling.Mean, true), settings);
        using var embedder = SentenceEmbedder.Load(PretrainedModels.MiniLM.Directory, new Engine.Backends.Cpu.CpuBackend());
        Assert.Equal(256, embedder.MaxLength);
        var run = Run("embed", "--model", PretrainedModels.MiniLM.Directory, string.Join(' ', Enumerable.Repeat("word", 300)));
        Assert.Equal("warning: 1 of 1 inputs were longer than 256 tokens and were truncated; --max-length up to 512 keeps more", run.Error.Trim());
        Assert.Contains("sentence-transformers: max_seq_length 256, pooling mean, normalize yes", Run("info", "--model", PretrainedModels.MiniLM.Directory).Out);
        Assert.Equal(new SentenceTransformersConfig(512, false, Pooling.Cls, true), SentenceTransformersConfig.Load(PretrainedModels.ArcticXs.Directory));
    }

    /// <summary>A model directory's own settings (CLS pooling, no Normalize module, 8 tokens) give what the same options give explicitly.</summary>
    [Fact]
    public void AModelsSentenceTransformersFilesSetTheDefaults()
    {
        using var temp = new TempDirectory();
        string plain = TinyBert.WriteWithVocabulary(temp["plain"]);
        string configured = TinyBert.WriteWithVocabulary(temp["configured"]);
        File.WriteAllText(Path.Combine(configured, "sentence_bert_config.json"), "{\"max_seq_length\": 8, \"do_lower_case\": true}");
        File.WriteAllText(Path.Combine(configured, "modules.json"),
            "[{\"idx\":0,\"name\":\"0\",\"path\":\"\",\"type\":\"sentence_transformers.models.Transformer\"},{\"idx\":1,\"name\":\"1\",\"path\":\"1_Pooling\",\"type\":\"sentence_transformers.models.Pooling\"}]");
        Directory.CreateDirectory(Path.Combine(configured, "1_Pooling"));
        File.WriteAllText(Path.Combine(configured, "1_Pooling", "config.json"), "{\"word_embedding_dimension\": 8, \"pooling_mode_cls_token\": true, \"pooling_mode_mean_tokens\": false}");
        string text = "GOOD movie the good movies a bad movie";
        var own = Run("embed", "--model", configured, text);
        var explicitOptions = Run("embed", "--model", plain, "--pooling", "cls", "--no-normalize", "--max-length", "8", text.ToLowerInvariant());
        Assert.Equal(0, own.Code);
        Assert.Equal(explicitOptions.Out, own.Out);
        Assert.NotEqual(Run("embed", "--model", plain, text).Out, own.Out);
        File.WriteAllText(Path.Combine(configured, "1_Pooling", "config.json"), "{\"pooling_mode_max_tokens\": true}");
        Assert.Contains("1_Pooling/config.json: pooling pooling_mode_max_tokens is not supported", ErrorLine(Run("embed", "--model", configured, text), ExitCode.Failure));
    }

    /// <summary>With stderr not a terminal (a log, a pipe) long work prints a plain progress line at a steady interval.</summary>
    [Fact]
    public void ProgressIsPrintedAsLinesWhenStderrIsNotATerminal()
    {
        using var temp = new TempDirectory();
        string model = TinyBert.WriteWithVocabulary(temp["tiny"]);
        File.WriteAllLines(temp["many.txt"], Enumerable.Range(0, 200).Select(i => i % 2 == 0 ? "good movie" : "bad movie"));
        var run = Run("embed", "--model", model, "--input", temp["many.txt"], "--batch-size", "10", "--progress-interval", "0.000001");
        Assert.Equal(0, run.Code);
        var lines = run.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(lines, l => l.StartsWith("embed: 100/200 texts (50%), ", StringComparison.Ordinal) && l.Contains("texts/s, ETA "));
        Assert.Matches(@"^embed: 200 texts in \d\d:\d\d:\d\d$", lines[^1]);
        // Quick work prints nothing at the default interval; --quiet prints nothing at all.
        Assert.Equal("", Run("embed", "--model", model, "--input", temp["many.txt"]).Error);
        Assert.Equal("", Run("embed", "--model", model, "--input", temp["many.txt"], "--progress-interval", "0.000001", "--quiet").Error);

        File.WriteAllLines(temp["train.csv"], ["text,label", .. Enumerable.Range(0, 8).Select(i => i % 2 == 0 ? "good movie,pos" : "bad movie,neg")]);
        run = Run("finetune", "--model", model, "--train", temp["train.csv"], "--eval", temp["train.csv"], "--epochs", "2", "--batch-size", "4",
            "--output", temp["tuned"], "--progress-interval", "0.000001");
        Assert.True(run.Code == 0, run.Error);
        lines = run.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains(lines, l => l.StartsWith("finetune: 2/4 steps (50%)", StringComparison.Ordinal) && l.Contains(", loss "));
        Assert.Contains(lines, l => l.StartsWith("epoch 2: eval loss ", StringComparison.Ordinal));
    }

    /// <summary>On a terminal the progress is a live bar (run under script(1), which gives the program a terminal).</summary>
    [SkippableFact]
    public void ProgressIsABarOnATerminal()
    {
        Skip.IfNot(File.Exists("/usr/bin/script"), "script(1) is not installed");
        using var temp = new TempDirectory();
        string model = TinyBert.WriteWithVocabulary(temp["tiny"]);
        File.WriteAllLines(temp["many.txt"], Enumerable.Range(0, 50).Select(_ => "good movie"));
        string command = $"dotnet '{EngineProcess.Program}' embed --model '{model}' --input '{temp["many.txt"]}' --batch-size 5 > '{temp["out.txt"]}'";
        var info = new ProcessStartInfo("/usr/bin/script", ["-qec", command, "/dev/null"]) { RedirectStandardOutput = true, UseShellExecute = false };
        info.Environment["TERM"] = "xterm-256color";
        using var process = Process.Start(info)!;
        string terminal = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, terminal);
        Assert.Contains("embed", terminal);
        Assert.Contains("100%", terminal);
        Assert.Contains("━", terminal); // the bar itself
        Assert.Equal(50, File.ReadAllLines(temp["out.txt"]).Length);
    }

    [Fact]
    public void TheLastLineSaysWhatWasWrittenAndNoCheckpointKeepsOnlyTheModel()
    {
        using var temp = new TempDirectory();
        string model = TinyBert.WriteWithVocabulary(temp["tiny"]);
        File.WriteAllLines(temp["train.csv"], ["text,label", "good movie,pos", "bad movie,neg"]);
        var run = Run("finetune", "--model", model, "--train", temp["train.csv"], "--epochs", "1", "--output", temp["tuned"]);
        Assert.True(run.Code == 0, run.Error);
        string last = run.Error.Trim().Split('\n')[^1];
        Assert.Matches($@"^saved the model to {System.Text.RegularExpressions.Regex.Escape(temp["tuned"])} \(\d+ MB\); resumable checkpoint in .*tuned/last \(\d+ MB: delete it, or pass --no-checkpoint, to keep only the model\)$", last);
        Assert.StartsWith($"2 training examples, labels neg, pos; writing to {temp["tuned"]}", run.Error);

        run = Run("finetune", "--model", model, "--train", temp["train.csv"], "--epochs", "1", "--output", temp["only"], "--no-checkpoint");
        Assert.True(run.Code == 0, run.Error);
        Assert.False(Directory.Exists(temp["only/last"]));
        Assert.True(File.Exists(temp["only/model.safetensors"]));
        Assert.DoesNotContain("resumable", run.Error);
    }

    /// <summary>A kill between the checkpoint swap's two renames leaves only last.previous: --resume OUTPUT/last finds it.</summary>
    [Fact]
    public void ResumeFindsTheCheckpointAKillLeftBesideLast()
    {
        using var temp = new TempDirectory();
        string model = TinyBert.WriteWithVocabulary(temp["tiny"]);
        File.WriteAllLines(temp["train.csv"], ["text,label", "good movie,pos", "bad movie,neg", "a good movie,pos", "the bad movie,neg"]);
        // A constant learning rate: the one-epoch run's checkpoint is then the three-epoch run's after its first epoch.
        string[] args = ["finetune", "--model", model, "--train", temp["train.csv"], "--batch-size", "2", "--schedule", "constant", "--log-json", "--quiet"];
        Assert.Equal(0, Run([.. args, "--epochs", "3", "--output", temp["straight"]]).Code);
        Assert.Equal(0, Run([.. args, "--epochs", "1", "--output", temp["cut"]]).Code);
        Directory.Move(temp["cut/last"], temp["cut/last.previous"]);
        Assert.Equal(temp["cut/last.previous"], Trainer.ResolveCheckpoint(temp["cut/last"]));
        var resumed = CliRunner.Run([.. args.Where(a => a != "--quiet"), "--epochs", "3", "--output", temp["cut"], "--resume", temp["cut/last"]]);
        Assert.True(resumed.Code == 0, resumed.Error);
        Assert.Contains($"resuming from {temp["cut/last.previous"]}, the checkpoint before an interrupted save", resumed.Error);
        Assert.Equal(File.ReadAllBytes(temp["straight/last/model.safetensors"]), File.ReadAllBytes(temp["cut/last/model.safetensors"]));
        Assert.False(Directory.Exists(temp["cut/last.previous"]));
        Assert.Contains("not a resumable checkpoint", ErrorLine(Run([.. args, "--resume", temp["tiny"], "--output", temp["x"]]), ExitCode.Failure));
    }

    /// <summary>Seeds are fixed functions: these values hold in every process, on every machine, in every .NET version.</summary>
    [Fact]
    public void SeedStreamsAreFixedFunctionsOfTheSeed()
    {
        Assert.Equal([9, 3, 5, 0, 1, 4, 7, 6, 2, 8], SeedStreams.EpochOrder(10, 42, 1));
        Assert.NotEqual(SeedStreams.EpochOrder(10, 42, 1), SeedStreams.EpochOrder(10, 42, 2));
        var weights = SeedStreams.HeadWeights(4, 0.02, 7);
        Assert.Equal([0.015524605f, -0.0054155346f, 0.036765266f, -0.013803466f], weights);
        var many = SeedStreams.HeadWeights(100_000, 1, 7);
        Assert.InRange(many.Average(), -0.02, 0.02);
        Assert.InRange(Math.Sqrt(many.Average(w => (double)w * w)), 0.98, 1.02);
    }

    /// <summary>The launcher builds once, then starts the built program without a build check.</summary>
    [Fact]
    public void TheLauncherBuildsOnceThenRunsTheProgramDirectly()
    {
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "Engine.sln"))) root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("no Engine.sln above the tests");
        using var temp = new TempDirectory();
        string model = TinyBert.WriteWithVocabulary(temp["tiny"]);
        (int, string, string) Launch()
        {
            var info = new ProcessStartInfo("bash", [Path.Combine(root, "engine"), "embed", "--model", model, "good movie"])
            { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            using var process = Process.Start(info)!;
            var error = process.StandardError.ReadToEndAsync();
            string output = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, output, error.Result);
        }
        var (code, output, error) = Launch();
        Assert.True(code == 0, error);
        Assert.Equal(TinyBert.Hidden, JsonSerializer.Deserialize<float[]>(output)!.Length);
        (code, output, error) = Launch();
        Assert.Equal(0, code);
        Assert.Equal("", error); // no build this time
        Assert.Equal(TinyBert.Hidden, JsonSerializer.Deserialize<float[]>(output)!.Length);
    }
}
