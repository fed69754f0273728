using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Engine.Backends;
using Engine.Models;
using Engine.Models.Bert;
using Engine.Tokenization;
using Engine.Training;

namespace Engine.Cli;

public static partial class Commands
{
    /// <summary>The options every training verb shares (finetune, pretrain), with that verb's defaults, and the run they drive.</summary>
    private sealed class TrainingOptionSet
    {
        public readonly Option<int> Epochs, BatchSize, Seed, Accumulation;
        public readonly Option<int?> Steps, EarlyStopping;
        public readonly Option<float> LearningRate, WeightDecay, Warmup, MaxGradNorm;
        public readonly Option<float?> Dropout, LossScale;
        public readonly Option<string?> Schedule, Output, Resume;
        public readonly Option<bool> NoShuffle, NoCheckpoint, LogJson;

        public TrainingOptionSet(TrainingOptions defaults, string output, string earlyStoppingMetric, string seedDescription)
        {
            Epochs = CliOptions.Integer("--epochs", "Passes over the training data", 1, 100_000, defaults.Epochs);
            Steps = CliOptions.Integer("--steps", "Stop after this many optimizer steps", 1, int.MaxValue, absent: "all the epochs' steps");
            BatchSize = CliOptions.Integer("--batch-size", "Examples per forward-backward pass", 1, 4096, defaults.BatchSize);
            LearningRate = CliOptions.Number("--lr", "Peak learning rate of AdamW", 0, 10, defaults.LearningRate, minExclusive: true);
            WeightDecay = CliOptions.Number("--weight-decay", "AdamW's decoupled weight decay (not on biases and LayerNorm)", 0, 1, defaults.WeightDecay);
            Warmup = CliOptions.Number("--warmup", "Fraction of the steps spent warming up", 0, 1, defaults.WarmupRatio);
            Schedule = CliOptions.Choice("--schedule", "linear (decay to 0 after warmup) or constant", ["linear", "constant"], "linear");
            Dropout = CliOptions.Number("--dropout", "Overrides the config's dropout probabilities (hidden, attention probabilities, and a classifier's)", 0, 0.99, absent: "the config's");
            MaxGradNorm = CliOptions.Number("--max-grad-norm", "Clip the global gradient norm to this; 0 turns clipping off", 0, 1e6, defaults.MaxGradNorm!.Value);
            Seed = CliOptions.Integer("--seed", $"{seedDescription}: the same seed gives the same run in any process", 0, int.MaxValue, defaults.Seed);
            NoShuffle = CliOptions.Flag("--no-shuffle", "Keep the data's order");
            EarlyStopping = CliOptions.Integer("--early-stopping", $"Patience in epochs without a better eval metric ({earlyStoppingMetric})", 1, 100_000, absent: "never stop early");
            Accumulation = CliOptions.Integer("--gradient-accumulation", "Batches per optimizer step", 1, 4096, defaults.GradientAccumulation);
            Output = CliOptions.Path("--output", ValueKind.OutputDirectory,
                "Where the best model is written, with the resumable checkpoint OUTPUT/last (about 3x the model) unless --no-checkpoint", defaultValue: output);
            NoCheckpoint = CliOptions.Flag("--no-checkpoint", "Keep only the best model: no resumable OUTPUT/last checkpoint (the run cannot be resumed)");
            LogJson = CliOptions.Flag("--log-json", "One JSON object per step, evaluation and checkpoint on stdout");
            Resume = CliOptions.Path("--resume", ValueKind.Checkpoint, "Continue from a run's OUTPUT/last checkpoint (model, optimizer, progress), with the same options");
            LossScale = CliOptions.Number("--loss-scale", "The first loss scale of --precision fp16's dynamic loss scaling (halved, and the step skipped, " +
                "when the gradients overflow; doubled after 2000 good steps)", 1, 1e30, absent: "65536 (PyTorch's GradScaler)");
        }

        public void AddTo(Command command)
        {
            foreach (Option option in new Option[] { Epochs, Steps, BatchSize, LearningRate, WeightDecay, Warmup, Schedule, Dropout, MaxGradNorm, Seed, NoShuffle,
                EarlyStopping, Accumulation, Output, NoCheckpoint, LogJson, Resume, LossScale })
                command.Options.Add(option);
        }

        public TrainingOptions Read(ParseResult result)
        {
            float clip = result.GetValue(MaxGradNorm);
            var options = new TrainingOptions
            {
                Epochs = result.GetValue(Epochs), MaxSteps = result.GetValue(Steps), BatchSize = result.GetValue(BatchSize),
                LearningRate = result.GetValue(LearningRate), WeightDecay = result.GetValue(WeightDecay), WarmupRatio = result.GetValue(Warmup),
                Schedule = result.GetValue(Schedule) == "constant" ? Training.Schedule.Constant : Training.Schedule.Linear, Dropout = result.GetValue(Dropout),
                MaxGradNorm = clip == 0 ? null : clip, Seed = result.GetValue(Seed), Shuffle = !result.GetValue(NoShuffle),
                EarlyStoppingPatience = result.GetValue(EarlyStopping), GradientAccumulation = result.GetValue(Accumulation),
                KeepCheckpoint = !result.GetValue(NoCheckpoint),
                LossScaling = LossScalingOf(result),
            };
            options.Validate();
            return options;
        }

        /// <summary>
        /// fp16 training scales its loss dynamically (fp16's range would lose small gradients to zero and large ones to
        /// infinity); fp32, tf32 and bf16 (fp32's range) need no scaling, and --loss-scale is refused with them.
        /// </summary>
        private LossScaleOptions? LossScalingOf(ParseResult result)
        {
            float? first = result.GetValue(LossScale);
            if (ComputePrecisionOf(result) != ComputePrecision.Fp16)
                return first is null ? null : throw new UsageException($"--loss-scale is for --precision fp16; {result.GetValue(Precision) ?? "fp32"} needs no loss scaling");
            return first is { } scale ? new LossScaleOptions { InitialScale = scale } : new LossScaleOptions();
        }

        /// <summary>The checkpoint --resume names (the one before an interrupted save, said so, when that is the whole one), or null.</summary>
        public string? ResumeFrom(ParseResult result)
        {
            if (result.GetValue(Resume) is not { } resume) return null;
            string from = Trainer.ResolveCheckpoint(resume)!; // checked up front
            if (from != Path.TrimEndingDirectorySeparator(resume)) Note(result, $"resuming from {from}, the checkpoint before an interrupted save", always: true);
            return from;
        }

        /// <summary>Trains with progress on stderr (and --log-json lines on stdout), then says what was written where.</summary>
        public void Run(ParseResult result, string verb, ITaskModel model, TrainingOptions options, ITrainingSet train, ITrainingSet? eval,
            string tokenizerDirectory, string? resumeFrom)
        {
            string output = result.GetValue(Output)!;
            var trainer = new Trainer(model, options);
            EvaluationResult? best = null;
            Progress(result, printsToStdout: result.GetValue(LogJson)).Run(verb, trainer.TotalSteps(train.Count), "steps", progress =>
            {
                var display = new TrainingProgress(result.GetValue(LogJson), progress);
                best = trainer.Train(train, eval, display.Report, output, tokenizerDirectory, resumeFrom);
            });
            if (!result.GetValue(Quiet)) Console.Error.WriteLine(SavedMessage(output, best, options.KeepCheckpoint));
        }
    }

    private static Command FillMaskCommand()
    {
        var texts = new Argument<string[]>("text") { Description = "Texts holding [MASK] (else one per line of stdin); after '--' a text may start with '-'", Arity = ArgumentArity.ZeroOrMore };
        var topK = CliOptions.Integer("--top-k", "Candidates per [MASK]", 1, 100_000, 5);
        var targets = CliOptions.Text("--targets", "Comma-separated words: only these are candidates (a word that is not one token stands for its first token)");
        var json = CliOptions.Flag("--json", "One JSON line per text, as Hugging Face's fill-mask pipeline returns it (a list per [MASK] when there are several)");
        var command = new Command("fill-mask", "Print the most likely tokens for each [MASK] of each text (a masked-LM model: BertForMaskedLM or BertForPreTraining)")
        {
            texts, Model, topK, targets, json, MaxLength,
        };
        command.SetAction(result => Verb(result, () =>
        {
            string directory = ResolveModel(result);
            var config = BertConfig.Load(Path.Combine(directory, BertConfig.FileName));
            var tokenizer = BertTokenizer.Load(directory, config);
            var lines = ReadTexts(result.GetValue(texts)!, null);
            using var model = LoadMaskedLM(result, directory);
            var pipeline = new FillMask(tokenizer, model, MaxLengthFor(result, config, config.MaxPositionEmbeddings));
            var warnings = new List<string>();
            int[]? targetIds = result.GetValue(targets) is { } list
                ? pipeline.TargetIds([.. list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)], warnings.Add)
                : null;
            foreach (string warning in warnings) Console.Error.WriteLine($"warning: {warning}"); // only once the targets are usable: a failure stays one line
            var invariant = CultureInfo.InvariantCulture;
            for (int n = 0; n < lines.Count; n++)
            {
                List<FillMaskPrediction[]> masks;
                try { masks = pipeline.Fill(lines[n], result.GetValue(topK), targetIds); }
                catch (EngineException e) { throw new EngineException($"text {n + 1}: {e.Message}", e); }
                if (masks.SelectMany(m => m).Any(p => !double.IsFinite(p.Score))) throw new EngineException($"the scores for text {n + 1} are not finite");
                if (result.GetValue(json))
                {
                    var rows = masks.Select(m => m.Select(p => new { score = p.Score, token = p.Token, token_str = p.TokenStr, sequence = p.Sequence }).ToArray()).ToArray();
                    Console.WriteLine(rows.Length == 1 ? JsonSerializer.Serialize(rows[0]) : JsonSerializer.Serialize(rows));
                    continue;
                }
                for (int m = 0; m < masks.Count; m++)
                {
                    Console.WriteLine(masks.Count == 1 ? lines[n] : $"{lines[n]}  [mask {m + 1} of {masks.Count}]");
                    foreach (var p in masks[m]) Console.WriteLine(string.Create(invariant, $"  {p.Score:F4}  {p.TokenStr,-12}  {p.Sequence}"));
                }
            }
        }));
        return command;
    }

    private static Command PretrainCommand()
    {
        var corpus = CliOptions.Path("--corpus", ValueKind.InputPath,
            "Text to learn from: a file (documents separated by blank lines, a sentence or paragraph per line) or a directory of such .txt files", required: true);
        var configOption = CliOptions.Text("--config", $"Pre-train from scratch at this size ({string.Join(", ", BertConfig.PresetNames)}) or from this config.json, instead of continuing --model");
        var tokenizerOption = CliOptions.Path("--tokenizer", ValueKind.InputDirectory, "The vocabulary (vocab.txt, tokenizer_config.json) of a model trained from scratch (default: the default model's; engine train-tokenizer makes one)");
        var objective = CliOptions.Choice("--objective", "mlm (masked-LM alone), mlm+sop (with ALBERT's sentence-order prediction) or mlm+nsp (with BERT's next-sentence prediction)",
            ["mlm", "mlm+sop", "mlm+nsp"], "mlm");
        var probability = CliOptions.Number("--mlm-probability", "Fraction of the tokens chosen for prediction (80% become [MASK], 10% a random token, 10% stay)", 0, 1, 0.15f, minExclusive: true);
        var wholeWord = CliOptions.Flag("--whole-word-mask", "Choose whole words: every ## piece with the token it belongs to");
        var maxLength = CliOptions.Integer("--max-length", "Tokens per example, [CLS] and [SEP] included: consecutive lines are packed up to it", 8, 1024, 128);
        var evalFraction = CliOptions.Number("--eval-fraction", "Fraction of the documents held out for the masked-LM accuracy and perplexity after every epoch", 0, 0.5, 0.05f);
        var training = new TrainingOptionSet(new TrainingOptions { BatchSize = 32, LearningRate = 1e-4f, WarmupRatio = 0.06f }, "pretrained-model",
            "held-out masked-LM loss", "Seeds the pairing, masking, shuffling, dropout and new weights");
        var command = new Command("pretrain", "Pre-train with masked-LM (and sentence-order or next-sentence prediction), from scratch or continuing a model")
        {
            corpus, Model, configOption, tokenizerOption, objective, probability, wholeWord, maxLength, evalFraction,
        };
        training.AddTo(command);
        command.SetAction(result => Verb(result, () =>
        {
            var options = training.Read(result);
            var sentence = result.GetValue(objective) switch { "mlm+sop" => SentenceObjective.SentenceOrder, "mlm+nsp" => SentenceObjective.NextSentence, _ => SentenceObjective.None };
            string? resumeFrom = training.ResumeFrom(result);
            string? scratch = result.GetValue(configOption);
            if (scratch is not null && result.GetValue(Model) is not null) throw new UsageException("--config (from scratch) and --model (continue a model) exclude each other");
            if (scratch is null && result.GetValue(tokenizerOption) is not null) throw new UsageException("--tokenizer is for a model trained from scratch (--config); a continued model keeps its own");
            string tokenizerDirectory = resumeFrom ?? (scratch is null ? ResolveModel(result) : result.GetValue(tokenizerOption) ?? ResolveDefaultModel(result));
            var tokenizer = BertTokenizer.Load(tokenizerDirectory);
            int length = result.GetValue(maxLength);

            // The corpus is read, cut and checked before the model is built.
            var documents = PretrainingCorpus.Tokenize(PretrainingCorpus.ReadDocuments(result.GetValue(corpus)!), tokenizer);
            var (trainDocuments, evalDocuments) = PretrainingCorpus.Split(documents, result.GetValue(evalFraction), (ulong)options.Seed);
            var trainExamples = PretrainingCorpus.Examples(trainDocuments, length, sentence, (ulong)options.Seed);
            var evalExamples = PretrainingCorpus.Examples(evalDocuments, length, sentence, (ulong)options.Seed);
            if (trainExamples.Count == 0) throw new EngineException($"{result.GetValue(corpus)}: no training examples (the corpus is too short)");
            var masker = new TokenMasker(tokenizer, result.GetValue(probability), result.GetValue(wholeWord));

            using var model = resumeFrom is not null ? BertForMaskedLM.Load(resumeFrom, TrainingBackend(result), sentence, options.Seed)
                : scratch is not null ? BertForMaskedLM.Create(ScratchConfig(scratch, tokenizer), TrainingBackend(result), sentence, options.Seed)
                : BertForMaskedLM.Load(tokenizerDirectory, TrainingBackend(result), sentence, options.Seed);
            if (length > model.Config.MaxPositionEmbeddings)
                throw new UsageException($"--max-length {length} is more than the model holds (max_position_embeddings {model.Config.MaxPositionEmbeddings})");
            Note(result, string.Create(CultureInfo.InvariantCulture, $"{documents.Count:N0} documents ({evalDocuments.Count:N0} held out): {trainExamples.Count:N0} training and {evalExamples.Count:N0} evaluation examples " +
                $"of up to {length} tokens; {model.ParameterCount:N0} parameters{(resumeFrom is null && scratch is null && !model.HeadFromCheckpoint ? ", a new masked-LM head" : "")}; writing to {result.GetValue(training.Output)}"), always: true);
            training.Run(result, "pretrain", model, options, new PretrainingSet(trainExamples, tokenizer, masker, length),
                evalExamples.Count == 0 ? null : new PretrainingSet(evalExamples, tokenizer, masker, length), tokenizerDirectory, resumeFrom);
        }));
        return command;
    }

    /// <summary>A preset's config for the tokenizer's vocabulary, or a config.json's (whose vocab_size must hold the tokenizer's).</summary>
    private static BertConfig ScratchConfig(string choice, BertTokenizer tokenizer)
    {
        var config = BertConfig.PresetNames.Contains(choice) ? BertConfig.Preset(choice, tokenizer.Vocabulary.Count)
            : File.Exists(choice) ? BertConfig.Load(choice)
            : throw new UsageException($"--config '{choice}' is neither a size ({string.Join(", ", BertConfig.PresetNames)}) nor an existing config.json");
        if (config.VocabSize < tokenizer.Vocabulary.Count)
            throw new EngineException($"{choice}: vocab_size {config.VocabSize} is smaller than the tokenizer's {tokenizer.Vocabulary.Count} tokens");
        return config;
    }

    private static Command TrainTokenizerCommand()
    {
        var corpus = CliOptions.Path("--corpus", ValueKind.InputPath, "Text to learn from: a file, or a directory of .txt files", required: true);
        var vocabSize = CliOptions.Integer("--vocab-size", "Tokens in the vocabulary, special tokens included", 16, 1_000_000, 30_522);
        var minFrequency = CliOptions.Integer("--min-frequency", "Stop merging when the most frequent pair occurs fewer times than this", 1, int.MaxValue, 2);
        var cased = CliOptions.Flag("--cased", "Keep case and accents (default: lower-case and strip accents, as BERT uncased)");
        var output = CliOptions.Path("--output", ValueKind.OutputDirectory, "Where vocab.txt and tokenizer_config.json are written", required: true);
        var command = new Command("train-tokenizer", "Learn a WordPiece vocabulary from a corpus, for pre-training from scratch") { corpus, vocabSize, minFrequency, cased, output };
        command.SetAction(result => Verb(result, () =>
        {
            var options = new BertTokenizerOptions { DoLowerCase = !result.GetValue(cased) };
            var lines = PretrainingCorpus.ReadDocuments(result.GetValue(corpus)!).SelectMany(d => d).ToList();
            var vocabulary = WordPieceTrainer.Train(lines, options, result.GetValue(vocabSize), result.GetValue(minFrequency), message => Note(result, message));
            var tokenizer = new BertTokenizer(vocabulary, options);
            Directory.CreateDirectory(result.GetValue(output)!);
            tokenizer.Save(result.GetValue(output)!);
            long tokens = 0, unknown = 0;
            foreach (string line in lines)
                foreach (int id in tokenizer.TokenIds(line))
                {
                    tokens++;
                    if (id == tokenizer.UnkId) unknown++;
                }
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"wrote {result.GetValue(output)}: {vocabulary.Count:N0} tokens; the corpus is {tokens:N0} tokens, {(tokens == 0 ? 0 : (double)unknown / tokens):P2} of them [UNK]"));
        }));
        return command;
    }
}
