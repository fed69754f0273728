using System.CommandLine;
using System.Globalization;
using Engine.Models;
using Engine.Models.Bert;
using Engine.Quantization;
using Engine.Tokenization;
using Engine.Training;

namespace Engine.Cli;

public static partial class Commands
{
    private static Command QuantizeCommand()
    {
        var output = CliOptions.Path("--output", ValueKind.OutputDirectory, "The quantized model directory to write", required: true);
        var embeddings = CliOptions.Flag("--include-embeddings", "Quantize the word embeddings too (one scale per token)");
        var exclude = CliOptions.TextList("--exclude", "Keep the Linear layers whose name matches one of these patterns (* and ?) in FP32, e.g. 'encoder.layer.5.output.dense' or '*.intermediate.dense'");
        var report = CliOptions.Path("--report", ValueKind.InputFile,
            "Compare the quantized model with the original on this file: a classifier's accuracy on labelled rows (CSV, TSV or JSON lines with text and label), else the cosine of int8 to FP32 sentence embeddings of its lines");
        var command = new Command("quantize", "Quantize a model's Linear weights (and optionally its word embeddings) to int8 with per-channel scales; every verb runs the result")
        {
            Model, output, embeddings, exclude, report, BatchSize, MaxLength,
        };
        command.SetAction(result => Verb(result, () =>
        {
            string directory = ResolveModel(result), target = result.GetValue(output)!;
            var quantized = CheckpointQuantizer.Quantize(directory, target, new QuantizeOptions(result.GetValue(embeddings), result.GetValue(exclude) ?? []));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"weights: {quantized.SourceBytes / 1e6:N1} MB → {quantized.QuantizedBytes / 1e6:N1} MB ({quantized.Ratio * 100:F1}% of the original) in {target}"));
            Console.WriteLine($"int8: {quantized.Quantized.Count} tensors" + (quantized.Excluded.Count == 0 ? "" : $"; kept in FP32 by --exclude: {string.Join(", ", quantized.Excluded)}"));
            if (result.GetValue(report) is { } evalFile) Report(result, directory, target, evalFile);
        }));
        return command;
    }

    /// <summary>The quantized model against the original on <paramref name="evalFile"/>: accuracy for a classifier, else embedding cosines.</summary>
    private static void Report(ParseResult result, string original, string quantized, string evalFile)
    {
        var config = BertConfig.Load(Path.Combine(original, BertConfig.FileName));
        if (ModelRegistry.Head(config) == ModelHead.SequenceClassification)
        {
            var tokenizer = BertTokenizer.Load(original, config);
            var columns = new LabelledData.Columns("text", null, "label");
            var table = LabelledData.ReadRows(evalFile);
            LabelledData.CheckColumns(table, columns);
            var examples = LabelledData.Examples(table, columns, tokenizer, config, MaxLengthFor(result, config, config.MaxPositionEmbeddings),
                BertForSequenceClassification.CheckpointLabels(original));
            var accuracies = new double[2];
            Progress(result, printsToStdout: true).Run("report", 2L * examples.Count, "examples", progress =>
            {
                foreach (var (directory, i) in new[] { original, quantized }.Select((d, i) => (d, i)))
                {
                    using var model = LoadClassifier(result, directory, requireHead: true);
                    var batches = Counted(Trainer.EvaluationBatches(new LabelledSet(examples), result.GetValue(BatchSize), seed: 0), progress, (long)i * examples.Count);
                    accuracies[i] = model.Evaluate(batches).Accuracy ?? throw new EngineException($"{directory}: a regression head has no accuracy to compare");
                }
            });
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{evalFile}: {examples.Count:N0} examples, accuracy FP32 {accuracies[0] * 100:F2}%, int8 {accuracies[1] * 100:F2}% ({(accuracies[1] - accuracies[0]) * 100:+0.00;-0.00;0.00} points)"));
            return;
        }
        var lines = File.ReadLines(evalFile).Where(line => line.Trim().Length > 0).ToList();
        if (lines.Count == 0) throw new EngineException($"{evalFile}: no lines to embed");
        var vectors = new float[2][][];
        Progress(result, printsToStdout: true).Run("report", 2L * lines.Count, "lines", progress =>
        {
            foreach (var (directory, i) in new[] { original, quantized }.Select((d, i) => (d, i)))
            {
                using var embedder = LoadEmbedder(result, null, null, directory);
                vectors[i] = embedder.Embed(embedder.Tokenize(lines), done => progress.Report((long)i * lines.Count + done));
            }
        });
        var cosines = lines.Select((_, i) => SentenceEmbedder.Cosine(vectors[0][i], vectors[1][i])).ToArray();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{evalFile}: {lines.Count:N0} lines, cosine(int8 embedding, FP32 embedding) mean {cosines.Average():F4}, min {cosines.Min():F4}"));
    }

    /// <summary>The batches as they are, reporting the examples done once each is consumed.</summary>
    private static IEnumerable<TrainingBatch> Counted(IEnumerable<TrainingBatch> batches, ProgressReporter progress, long done)
    {
        foreach (var batch in batches)
        {
            yield return batch;
            done += batch.Batch.BatchSize;
            progress.Report(done);
        }
    }
}
