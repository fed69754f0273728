using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Engine.Models.Bert;
using Engine.Tokenization;
using Engine.Training;

namespace Engine.Cli;

public static partial class Commands
{
    /// <summary>The hyper-parameters a sweep varies, by their command-line names, and how each sets the training options.</summary>
    private static readonly Dictionary<string, Func<TrainingOptions, double, TrainingOptions>> SweepParameters = new(StringComparer.Ordinal)
    {
        ["lr"] = (o, v) => o with { LearningRate = (float)v },
        ["batch-size"] = (o, v) => o with { BatchSize = (int)v },
        ["epochs"] = (o, v) => o with { Epochs = (int)v },
        ["warmup"] = (o, v) => o with { WarmupRatio = (float)v },
        ["weight-decay"] = (o, v) => o with { WeightDecay = (float)v },
        ["dropout"] = (o, v) => o with { Dropout = (float)v },
    };

    /// <summary>The BERT paper's fine-tuning grid (Devlin et al., appendix A.3): the default.</summary>
    private static readonly string[] BertGrid = ["lr=5e-5,3e-5,2e-5", "batch-size=16,32", "epochs=2,3,4"];

    private static Command SweepCommand()
    {
        var train = CliOptions.Path("--train", ValueKind.InputFile, "Training data: CSV, TSV or JSON lines (by extension)", required: true);
        var eval = CliOptions.Path("--eval", ValueKind.InputFile, "Evaluation data: each trial's metric", required: true);
        var grid = CliOptions.TextList("--grid", $"Values per hyper-parameter, NAME=V1,V2,… ({string.Join(", ", SweepParameters.Keys)}; default the BERT paper's grid: {string.Join(" ", BertGrid)})");
        var space = CliOptions.Path("--space", ValueKind.InputFile, "A JSON search space for random search and TPE: {\"lr\": {\"low\": 1e-5, \"high\": 1e-4, \"log\": true}, \"batch-size\": [16, 32], \"epochs\": {\"low\": 2, \"high\": 4, \"integer\": true}}");
        var strategy = CliOptions.Choice("--strategy", "grid (every point once), random, or tpe (a Tree-structured Parzen Estimator)", ["grid", "random", "tpe"], "grid");
        var trials = CliOptions.Integer("--trials", "Trials in all (a resumed sweep runs only the missing ones)", 1, 100_000, absent: "the grid's size; 20 for random and tpe");
        var metric = CliOptions.Choice("--metric", "What the sweep maximises (f1, accuracy) or minimises (eval_loss)", Sweep.Metrics, "f1");
        var output = CliOptions.Path("--output", ValueKind.OutputDirectory, "Where trials.jsonl, trials.csv, sweep.png and the best model (best/) go; a sweep run again there resumes", defaultValue: "sweep");
        var seed = CliOptions.Integer("--seed", "Seeds the strategy and every trial's training: the same seed gives the same sweep in any process", 0, int.MaxValue, 42);
        var patience = CliOptions.Integer("--early-stopping", "Each trial stops after this many epochs without a better metric", 1, 100_000, 1);
        var textColumn = CliOptions.Text("--text-column", "The column (field) holding the text", "text");
        var pairColumn = CliOptions.Text("--text-pair-column", "The column holding the second text of a pair (default: none)");
        var labelColumn = CliOptions.Text("--label-column", "The column holding the label (a class name or id)", "label");
        var command = new Command("sweep", "Search fine-tuning hyper-parameters: a trial per point (grid, random or TPE), its results table and plot, the best model kept")
        {
            train, eval, Model, grid, space, strategy, trials, metric, output, seed, patience, textColumn, pairColumn, labelColumn, MaxLength,
        };
        command.SetAction(result => Verb(result, () =>
        {
            string kind = result.GetValue(strategy)!;
            var dimensions = result.GetValue(space) is { } spaceFile ? ReadSpace(spaceFile) : ReadGrid(result.GetValue(grid) is { Length: > 0 } given ? given : BertGrid);
            if (result.GetValue(space) is not null && result.GetValue(grid) is { Length: > 0 }) throw new UsageException("--grid and --space: give one search space");
            int seedValue = result.GetValue(seed);
            ISearchStrategy searcher = kind switch
            {
                "grid" => new GridSearch(dimensions),
                "random" => new RandomSearch(dimensions, seedValue),
                _ => new TreeParzenEstimator(dimensions, seedValue),
            };
            int trialCount = result.GetValue(trials) ?? (searcher is GridSearch g ? g.Size : 20);

            string directory = ResolveModel(result);
            var config = BertConfig.Load(Path.Combine(directory, BertConfig.FileName));
            var tokenizer = BertTokenizer.Load(directory, config);
            var columns = new LabelledData.Columns(result.GetValue(textColumn)!, result.GetValue(pairColumn), result.GetValue(labelColumn)!);
            var trainTable = LabelledData.ReadRows(result.GetValue(train)!);
            LabelledData.CheckColumns(trainTable, columns);
            var evalTable = LabelledData.ReadRows(result.GetValue(eval)!);
            LabelledData.CheckColumns(evalTable, columns);
            var labelNames = BertForSequenceClassification.CheckpointLabels(directory) ?? LabelledData.LabelNames(trainTable, columns);
            int maxLength = MaxLengthFor(result, config, config.MaxPositionEmbeddings);
            var trainSet = new LabelledSet(LabelledData.Examples(trainTable, columns, tokenizer, config, maxLength, labelNames));
            var evalSet = new LabelledSet(LabelledData.Examples(evalTable, columns, tokenizer, config, maxLength, labelNames));

            string outputDirectory = result.GetValue(output)!;
            var sweep = new Sweep(searcher, result.GetValue(metric)!);
            int resumed = Sweep.Read(Path.Combine(outputDirectory, Sweep.ResultsFile)).Count();
            if (resumed > 0) Note(result, $"{resumed} trials already recorded in {outputDirectory}: resuming after them", always: true);
            var baseOptions = new TrainingOptions { Seed = seedValue, EarlyStoppingPatience = result.GetValue(patience), KeepCheckpoint = false };
            var all = sweep.Run(outputDirectory, trialCount, (point, trialDirectory) =>
            {
                var options = point.Values.Aggregate(baseOptions, (o, p) => SweepParameters[p.Key](o, p.Value));
                options.Validate();
                using var model = BertForSequenceClassification.Load(directory, TrainingBackend(result), seed: seedValue, labelNames: labelNames);
                var losses = new List<double>();
                var trainer = new Trainer(model, options);
                EvaluationResult? best = null;
                // Each trial shows its steps as finetune does (a bar on a terminal, lines otherwise).
                Progress(result, printsToStdout: true).Run($"trial {point}", trainer.TotalSteps(trainSet.Count), "steps", progress =>
                {
                    var display = new TrainingProgress(json: false, progress);
                    best = trainer.Train(trainSet, evalSet, e =>
                    {
                        if (e is StepEvent step) losses.Add(step.Loss);
                        display.Report(e);
                    }, trialDirectory, directory);
                });
                return new TrialRun(best, losses);
            }, trial => Console.WriteLine(TrialLine(sweep, trial)));
            IO.AtomicFile.Write(Path.Combine(outputDirectory, "sweep.png"), s => s.Write(SweepPlot(sweep, all)));
            Console.WriteLine(sweep.Best(all) is { } winner
                ? $"best: trial {winner.Number} ({winner.Point}), {sweep.Metric} {sweep.MetricOf(winner)!.Value.ToString("F4", CultureInfo.InvariantCulture)}; its model is in {Path.Combine(outputDirectory, Sweep.BestDirectory)}"
                : "best: none (every trial diverged, or none has the metric)");
        }));
        return command;
    }

    private static string TrialLine(Sweep sweep, SweepTrial trial)
    {
        string value = sweep.MetricOf(trial) is { } m ? m.ToString("F4", CultureInfo.InvariantCulture) : "-";
        string status = trial.Status == TrialStatus.Finished ? "finished" : $"diverged: {trial.Note}";
        return string.Create(CultureInfo.InvariantCulture, $"trial {trial.Number}: {trial.Point} -> {sweep.Metric} {value} ({status}, {trial.Seconds:F0} s)");
    }

    /// <summary>--grid's NAME=V1,V2,… items as choice dimensions; an unknown name or a bad value is a usage error naming it.</summary>
    private static SearchDimension[] ReadGrid(string[] items)
    {
        var dimensions = new List<SearchDimension>();
        foreach (string item in items)
        {
            int equals = item.IndexOf('=');
            string name = equals < 0 ? item : item[..equals];
            if (!SweepParameters.ContainsKey(name)) throw new UsageException($"--grid: '{name}' is not one of {string.Join(", ", SweepParameters.Keys)}");
            if (dimensions.Any(d => d.Name == name)) throw new UsageException($"--grid: '{name}' is given twice");
            var values = equals < 0 ? [] : item[(equals + 1)..].Split(',').Select(v => double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) && double.IsFinite(x) && x >= 0 ? x
                : throw new UsageException($"--grid: '{v}' is not a value of {name}")).ToList();
            if (values.Count == 0) throw new UsageException($"--grid: '{item}' gives no values (NAME=V1,V2,…)");
            dimensions.Add(new ChoiceDimension(name, values));
        }
        return [.. dimensions];
    }

    /// <summary>A --space file: each hyper-parameter a list of values, or {low, high, log?, integer?}.</summary>
    private static SearchDimension[] ReadSpace(string path)
    {
        var root = IO.JsonInput.ReadObject(path);
        var dimensions = new List<SearchDimension>();
        foreach (var (name, node) in root.AsEnumerable())
        {
            if (!SweepParameters.ContainsKey(name)) throw new EngineException($"{path}: '{name}' is not one of {string.Join(", ", SweepParameters.Keys)}");
            dimensions.Add(node switch
            {
                JsonArray values when values.Count > 0 && values.All(v => v is JsonValue j && j.TryGetValue(out double _)) =>
                    new ChoiceDimension(name, [.. values.Select(v => (double)v!)]),
                JsonObject range when range["low"] is JsonValue low && range["high"] is JsonValue high && low.TryGetValue(out double l) && high.TryGetValue(out double h) && h > l =>
                    Flag(range, "log", name) && l <= 0
                        ? throw new EngineException($"{path}: '{name}' is on a log scale but its low end {l} is not positive")
                        : new RangeDimension(name, l, h, Flag(range, "log", name), Flag(range, "integer", name)),
                _ => throw new EngineException($"{path}: '{name}' must be a list of numbers or {{\"low\": L, \"high\": H (above L), \"log\": bool, \"integer\": bool}}"),
            });
        }
        if (dimensions.Count == 0) throw new EngineException($"{path}: an empty search space");
        return [.. dimensions];

        bool Flag(JsonObject range, string field, string name) => range[field] switch
        {
            null => false,
            JsonValue v when v.TryGetValue(out bool flag) => flag,
            var other => throw new EngineException($"{path}: '{name}'.{field} must be true or false, got {other.ToJsonString()}"),
        };
    }

    /// <summary>
    /// The metric against each hyper-parameter that the trials varied (every one when none did), one panel each (log scale
    /// for lr), diverged trials left out.
    /// </summary>
    private static byte[] SweepPlot(Sweep sweep, IReadOnlyList<SweepTrial> trials)
    {
        var all = trials.SelectMany(t => t.Point.Values.Keys).Distinct().ToList();
        var varied = all.Where(n => trials.Select(t => t.Point.Values.GetValueOrDefault(n)).Distinct().Count() > 1).ToList();
        var names = varied.Count > 0 ? varied : all;
        var multiplot = new ScottPlot.Multiplot { Layout = new ScottPlot.MultiplotLayouts.Columns() };
        while (multiplot.Subplots.Count > 0) multiplot.Subplots.RemoveAt(0); // it starts with an empty plot of its own
        for (int i = 0; i < names.Count; i++)
        {
            var plot = new ScottPlot.Plot();
            multiplot.Subplots.Add(plot);
            var shown = trials.Where(t => t.Status == TrialStatus.Finished && sweep.MetricOf(t) is not null).ToList();
            bool log = names[i] == "lr";
            double[] xs = [.. shown.Select(t => log ? Math.Log10(t.Point[names[i]]) : t.Point[names[i]])];
            double[] ys = [.. shown.Select(t => sweep.MetricOf(t)!.Value)];
            if (xs.Length > 0)
            {
                var scatter = plot.Add.ScatterPoints(xs, ys);
                scatter.MarkerSize = 8;
            }
            plot.XLabel(log ? "log10(lr)" : names[i]);
            plot.YLabel(sweep.Metric);
        }
        int width = 360 * Math.Max(1, names.Count), height = 360;
        using var surface = SkiaSharp.SKSurface.Create(new SkiaSharp.SKImageInfo(width, height));
        surface.Canvas.Clear(SkiaSharp.SKColors.White);
        multiplot.Render(surface.Canvas, new ScottPlot.PixelRect(0, width, height, 0));
        using var image = surface.Snapshot();
        using var png = image.Encode(SkiaSharp.SKEncodedImageFormat.Png, 100);
        return png.ToArray();
    }
}
