using System.CommandLine;
using System.Globalization;
using Engine.Cli;
using Engine.Reference;
using Xunit.Abstractions;

namespace Engine.Tests;

/// <summary>Tiny models and data files every verb can run on, made once for the command-line tests.</summary>
public sealed class CommandLineFixture : IDisposable
{
    private readonly TempDirectory _temp = new();

    public string Model { get; }
    public string Classifier { get; }
    public string Texts { get; }
    public string Train { get; }
    /// <summary>A masked-LM checkpoint with a word-level vocabulary (the PyTorch fixture's).</summary>
    public string MaskedLM { get; } = Path.Combine(AppContext.BaseDirectory, "Fixtures", "pytorch", "tiny-mlm", "model");
    /// <summary>A corpus of that vocabulary's words: documents of a few lines.</summary>
    public string Corpus { get; }
    public string Onnx => PretrainedModels.ArcticXs.OnnxPath;
    public string OnnxVocabulary => Path.Combine(Path.GetDirectoryName(Onnx)!, "vocab.txt");

    public CommandLineFixture()
    {
        Model = TinyBert.WriteWithVocabulary(_temp["tiny"]);
        Classifier = TinyBert.WriteClassifier(_temp["classifier"]);
        Texts = _temp["texts.txt"];
        File.WriteAllLines(Texts, ["good movie", "bad movie"]);
        Train = _temp["train.csv"];
        File.WriteAllLines(Train, ["text,label", "good movie,pos", "bad movie,neg", "the good movies,pos", "a bad movie,neg"]);
        Corpus = _temp["corpus.txt"];
        File.WriteAllLines(Corpus, ["the quick brown fox jumps over the lazy dog", "a cat sat on the mat", "", "the dog ran to the big red house",
            "it was a good day", "", "they ran up and down", "she sat in the small blue house at night"]);
    }

    public void Dispose() => _temp.Dispose();
}

/// <summary>
/// The command line is strict and every failure is one line: unknown options, bad and out-of-range values of every
/// option of every verb, the issue's reported cases, and what help says.
/// </summary>
[Collection("console")]
public sealed class CommandLineTests(CommandLineFixture data, ITestOutputHelper log) : IClassFixture<CommandLineFixture>
{
    private static (int Code, string Out, string Error) Run(params string[] args) => CliRunner.Run(args);

    /// <summary>A failure: the code, nothing on stdout, exactly one line on stderr starting with "error: "; returns that line.</summary>
    private static string AssertFails((int Code, string Out, string Error) run, ExitCode code)
    {
        Assert.True(run.Code == (int)code, $"exit {run.Code}, expected {(int)code}; stderr: {run.Error}");
        Assert.Equal("", run.Out);
        var lines = run.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1 && lines[0].StartsWith("error: ", StringComparison.Ordinal), $"stderr is not one error line: {run.Error}");
        return lines[0];
    }

    [Fact]
    public void UnknownOptionsAreErrorsWithASuggestion()
    {
        // Both reported cases used to succeed: the misspelled option and its value became texts.
        string line = AssertFails(Run("embed", "hi", "--max-lenght", "5", "--model", data.Model), ExitCode.Usage);
        Assert.Equal("error: unknown option '--max-lenght' for 'embed'; did you mean '--max-length'? (a text that starts with '-' goes after '--')", line);
        line = AssertFails(Run("similarity", "a", "b", "--modle", "X"), ExitCode.Usage);
        Assert.Contains("unknown option '--modle' for 'similarity'; did you mean '--model'?", line);
        // On a verb without texts, and at the top level.
        Assert.Contains("did you mean '--model'?", AssertFails(Run("info", "--mdoel", data.Model), ExitCode.Usage));
        Assert.Contains("did you mean '--device'?", AssertFails(Run("info", "--devise", "cpu"), ExitCode.Usage));
        Assert.Contains("unknown verb 'embd'; did you mean 'embed'?", AssertFails(Run("embd", "x"), ExitCode.Usage));
        Assert.Contains("'info --help' lists them", AssertFails(Run("info", "--zzzzzzzzzzzz"), ExitCode.Usage));
        Assert.Contains("unexpected argument 'stray' for 'info'", AssertFails(Run("info", "stray"), ExitCode.Usage));
        Assert.StartsWith("error: no verb given; the verbs are embed, similarity,", AssertFails(Run(), ExitCode.Usage));
        Assert.Equal("error: Option '--input' is required.", AssertFails(Run("encode", "--output", "x.safetensors"), ExitCode.Usage));
        Assert.Equal("error: Required argument missing for option: '--model'.", AssertFails(Run("embed", "--model"), ExitCode.Usage));
    }

    [Fact]
    public void TextsThatStartWithADashGoAfterTheDoubleDash()
    {
        var (code, output, error) = Run("embed", "--model", data.Model, "--", "-not an option", "--neither");
        Assert.True(code == 0, error);
        Assert.Equal(2, output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
        (code, output, error) = Run("similarity", "--model", data.Model, "--", "-a good movie", "-a bad movie");
        Assert.True(code == 0, error);
        Assert.EndsWith("\t-a bad movie", output.Trim());
        // Before '--' the same text is an unknown option.
        AssertFails(Run("embed", "--model", data.Model, "-not an option"), ExitCode.Usage);
    }

    /// <summary>The reported settings that trained and saved a model: each is refused before any work, and nothing is written.</summary>
    [Theory]
    [InlineData("--lr", "-1", "--lr: -1 is out of range; expected a number in (0, 10]")]
    [InlineData("--lr", "NaN", "--lr: 'NaN' is not a finite number; expected a number in (0, 10]")]
    [InlineData("--epochs", "0", "--epochs: 0 is out of range; expected an integer in [1, 100000]")]
    [InlineData("--steps", "-3", "--steps: -3 is out of range; expected an integer in [1, 2147483647]")]
    [InlineData("--warmup", "5", "--warmup: 5 is out of range; expected a number in [0, 1]")]
    [InlineData("--dropout", "1.5", "--dropout: 1.5 is out of range; expected a number in [0, 0.99]")]
    [InlineData("--max-length", "abc", "--max-length: 'abc' is not a number; expected an integer in [2, 1048576]")]
    [InlineData("--max-length", "99999999999", "--max-length: 99999999999 is out of range; expected an integer in [2, 1048576]")]
    [InlineData("--batch-size", "2.5", "--batch-size: '2.5' is not a whole number; expected an integer in [1, 4096]")]
    public void ReportedSettingsAreRefusedUpFront(string option, string value, string message)
    {
        using var temp = new TempDirectory();
        var run = Run("finetune", "--model", data.Model, "--train", data.Train, "--output", temp["out"], option, value);
        Assert.Equal($"error: {message}", AssertFails(run, ExitCode.Usage));
        Assert.Empty(Directory.GetFileSystemEntries(temp.Path));
    }

    /// <summary>An exception nobody expected (a bug) is still one line, with its own exit code; --verbose adds where it came from.</summary>
    [Fact]
    public void AnInternalErrorIsOneLineWithItsOwnExitCode()
    {
        var (oldOut, oldError) = (Console.Out, Console.Error);
        var error = new StringWriter();
        Console.SetError(error);
        try
        {
            var result = Commands.Build().Parse(["info"]);
            int code = Cli.Cli.Verb(result, verbose: false, () => throw new InvalidOperationException("the impossible\nhappened"));
            Assert.Equal((int)ExitCode.InternalError, code);
            Assert.Equal("error: internal error (InvalidOperationException: the impossible happened); this is a bug in engine: --verbose shows where, please report it",
                error.ToString().Trim());
            error.GetStringBuilder().Clear();
            Assert.Equal((int)ExitCode.InternalError, Cli.Cli.Verb(result, verbose: true, () => throw new InvalidOperationException("again")));
            Assert.Contains(nameof(AnInternalErrorIsOneLineWithItsOwnExitCode), error.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetError(oldError);
        }
    }

    [Fact]
    public void ModelDependentLimitsAreUsageErrors()
    {
        // The tiny model has 16 positions.
        Assert.Equal("error: --max-length 17 is more than the model holds (max_position_embeddings 16)",
            AssertFails(Run("embed", "--model", data.Model, "--max-length", "17", "good"), ExitCode.Usage));
        Assert.Contains("similarity needs at least two texts, got 1", AssertFails(Run("similarity", "--model", data.Model, "good"), ExitCode.Usage));
    }

    [Fact]
    public void MessagesNameWhatIsWrong()
    {
        using var temp = new TempDirectory();
        Assert.Equal($"error: --input {temp.Path}: is a directory, not a file", AssertFails(Run("embed", "--model", data.Model, "--input", temp.Path), ExitCode.Failure));
        // A pre-tokenized line whose ids hold a string used to end in an unhandled exception with a stack trace.
        File.WriteAllText(temp["ids.jsonl"], "{\"input_ids\": [2, \"7\", 3]}\n");
        Assert.Equal($"error: {temp["ids.jsonl"]}:1: 'input_ids'[1] is \"7\", not an integer",
            AssertFails(Run("encode", "--model", data.Model, "--input", temp["ids.jsonl"], "--output", temp["o.safetensors"]), ExitCode.Failure));
        File.WriteAllText(temp["big.jsonl"], "{\"input_ids\": [2, 99999999999, 3]}\n");
        Assert.Contains("big.jsonl:1: 'input_ids'[1] = 99999999999 is outside the vocabulary (vocab_size 11)",
            AssertFails(Run("encode", "--model", data.Model, "--input", temp["big.jsonl"], "--output", temp["o.safetensors"]), ExitCode.Failure));
        File.WriteAllText(temp["broken.jsonl"], "good movie\n{\"input_ids\": [2, 5\n");
        Assert.Contains("broken.jsonl:2 (a line that starts with '{' is read as JSON): invalid JSON", AssertFails(Run("encode", "--model", data.Model, "--input", temp["broken.jsonl"], "--output", temp["o.safetensors"]), ExitCode.Failure));
        Assert.False(File.Exists(temp["o.safetensors"]));
    }

    /// <summary>Every option of every verb is declared through <see cref="CliOptions"/>, and help shows each number's interval.</summary>
    [Fact]
    public void EveryOptionHasAKindAndHelpShowsTheRanges()
    {
        var root = Commands.Build();
        foreach (var verb in root.Subcommands)
        {
            var (code, help, _) = Run(verb.Name, "--help");
            Assert.Equal(0, code);
            foreach (var option in Options(root, verb))
            {
                var spec = CliOptions.SpecOf(option);
                Assert.True(spec is not null, $"{verb.Name} {option.Name} was not made by CliOptions");
                Assert.Contains(option.Name, help);
                if (spec.Kind is ValueKind.Integer or ValueKind.Number) Assert.Contains(spec.Interval, help);
                if (spec.Choices is { } choices) Assert.All(choices, c => Assert.Contains(c, help));
            }
        }
    }

    /// <summary>
    /// Every verb, every option, bad values of its kind: exit 1 or 2 (never 70, an internal error), one line on
    /// stderr that names the option or the value, nothing on stdout, and nothing written.
    /// </summary>
    [Fact]
    public void BadValuesOfEveryOptionOfEveryVerbFailWithOneLine()
    {
        using var temp = new TempDirectory();
        string file = temp["file.txt"], folder = temp["folder"];
        File.WriteAllText(file, "x");
        Directory.CreateDirectory(folder);
        var root = Commands.Build();
        int runs = 0;
        foreach (var verb in root.Subcommands)
        {
            var (baseOptions, texts) = ValidCommand(verb.Name, temp);
            foreach (var option in Options(root, verb))
            {
                var spec = CliOptions.SpecOf(option)!;
                foreach (string value in BadValues(spec, file, folder))
                {
                    var options = new Dictionary<string, string?>(baseOptions) { [option.Name] = value };
                    var args = new List<string> { verb.Name };
                    foreach (var (name, v) in options)
                    {
                        if (spec.Kind == ValueKind.Flag && name == option.Name) args.Add($"{name}={v}");
                        else if (v is null) args.Add(name);
                        else args.AddRange([name, v]);
                    }
                    args.AddRange(texts);
                    var before = Snapshot(temp.Path);
                    var run = Run([.. args]);
                    runs++;
                    string what = $"{string.Join(' ', args)}";
                    Assert.True(run.Code is 1 or 2, $"{what}: exit {run.Code}; stderr: {run.Error}");
                    Assert.True(run.Out.Length == 0, $"{what}: wrote to stdout: {run.Out}");
                    var lines = run.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
                    Assert.True(lines.Length == 1 && lines[0].StartsWith("error: ", StringComparison.Ordinal), $"{what}: stderr is not one error line: {run.Error}");
                    Assert.True(lines[0].Contains(option.Name) || value.Length > 0 && lines[0].Contains(value), $"{what}: the message names neither the option nor the value: {lines[0]}");
                    Assert.Equal(before, Snapshot(temp.Path));
                    log.WriteLine($"{what} -> {lines[0]}");
                }
            }
        }
        Assert.False(Directory.Exists("finetuned-model"), "a failed finetune wrote its default output");
        log.WriteLine($"{runs} failing command lines checked");
        Assert.True(runs > 150, $"only {runs} runs");
    }

    private static IEnumerable<Option> Options(RootCommand root, Command verb) =>
        verb.Options.Concat(root.Options.Where(o => o.Recursive)).Where(o => o is not System.CommandLine.Help.HelpOption and not VersionOption).Distinct();

    /// <summary>A command line of the verb that would succeed, as options (null value: a flag) and texts.</summary>
    private (Dictionary<string, string?> Options, string[] Texts) ValidCommand(string verb, TempDirectory temp) => verb switch
    {
        "embed" => (new() { ["--model"] = data.Model }, ["good movie"]),
        "similarity" => (new() { ["--model"] = data.Model }, ["good movie", "bad movie"]),
        "encode" => (new() { ["--model"] = data.Model, ["--input"] = data.Texts, ["--output"] = temp["encoded.safetensors"] }, []),
        "info" => (new() { ["--model"] = data.Model }, []),
        "import-onnx" => (new() { ["--onnx"] = data.Onnx, ["--vocab"] = data.OnnxVocabulary, ["--output"] = temp["imported"] }, []),
        "finetune" => (new() { ["--model"] = data.Model, ["--train"] = data.Train, ["--output"] = temp["tuned"], ["--epochs"] = "1" }, []),
        "classify" => (new() { ["--model"] = data.Classifier }, ["good movie"]),
        "fill-mask" => (new() { ["--model"] = data.MaskedLM }, ["the lazy [MASK]"]),
        "pretrain" => (new() { ["--model"] = data.MaskedLM, ["--corpus"] = data.Corpus, ["--output"] = temp["pretrained"], ["--epochs"] = "1", ["--max-length"] = "16" }, []),
        "train-tokenizer" => (new() { ["--corpus"] = data.Corpus, ["--output"] = temp["vocabulary"], ["--vocab-size"] = "60" }, []),
        "quantize" => (new() { ["--model"] = data.Model, ["--output"] = temp["quantized"], ["--report"] = data.Texts }, []),
        "explain" => (new() { ["--model"] = data.Classifier, ["--steps"] = "2", ["--html"] = temp["explained.html"] }, ["good movie"]),
        "validate" => (new() { ["--model"] = ValidateTests.Model("tiny-3-labels"), ["--reference"] = ValidateTests.Reference("tiny-3-labels") }, []),
        "sweep" => (new() { ["--model"] = data.Model, ["--train"] = data.Train, ["--eval"] = data.Train, ["--grid"] = "epochs=1", ["--output"] = temp["swept"] }, []),
        _ => throw new InvalidOperationException($"no valid command line for the new verb '{verb}': add one here"),
    };

    private static IEnumerable<string> BadValues(OptionSpec spec, string file, string folder)
    {
        string Format(double v) => v.ToString("R", CultureInfo.InvariantCulture);
        switch (spec.Kind)
        {
            case ValueKind.Integer:
                yield return "abc";
                yield return "1.5";
                yield return "NaN";
                yield return "99999999999";
                yield return Format(spec.Min - 1);
                if (spec.Max < int.MaxValue) yield return Format(spec.Max + 1);
                break;
            case ValueKind.Number:
                yield return "abc";
                yield return "NaN";
                yield return "Infinity";
                yield return "-Infinity";
                yield return Format(spec.MinExclusive ? spec.Min : spec.Min - 1);
                yield return Format(spec.Max + 1);
                break;
            case ValueKind.Choice:
                yield return "bogus";
                yield return "";
                break;
            case ValueKind.Flag:
                yield return "maybe";
                break;
            case ValueKind.Text:
                yield return "no-such-column";
                break;
            case ValueKind.InputFile:
                yield return "/no/such/file";
                yield return folder;
                yield return "";
                yield return "bad\0path";
                break;
            case ValueKind.InputDirectory:
                yield return "/no/such/folder";
                yield return file;
                yield return "";
                break;
            case ValueKind.InputPath:
                yield return "/no/such/path";
                yield return "";
                yield return "bad\0path";
                break;
            case ValueKind.Checkpoint:
                yield return "/no/such/folder";
                yield return file;
                yield return folder;
                yield return "";
                break;
            case ValueKind.OutputFile:
                yield return folder;
                yield return Path.Combine(file, "out.safetensors");
                yield return "/proc/engine-test/out.safetensors";
                yield return "";
                break;
            case ValueKind.OutputDirectory:
                yield return file;
                yield return Path.Combine(file, "out");
                yield return "/proc/engine-test/out";
                yield return "";
                break;
        }
    }

    private static string Snapshot(string directory) =>
        string.Join("\n", Directory.EnumerateFileSystemEntries(directory, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal));
}
