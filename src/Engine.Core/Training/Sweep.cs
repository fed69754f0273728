using System.Globalization;
using System.Text.Json.Nodes;

namespace Engine.Training;

/// <summary>How a trial ended: it trained to the end, or it diverged (a non-finite loss, or a loss that did not fall).</summary>
public enum TrialStatus
{
    Finished,
    Diverged,
}

/// <summary>One trial of a sweep: its number (from 0), its hyper-parameters, how it ended, its evaluation, its time.</summary>
public sealed record SweepTrial(int Number, SearchPoint Point, TrialStatus Status, EvaluationResult? Result, double Seconds, string? Note = null);

/// <summary>What a trial's training reports back: its best evaluation (null without one) and its steps' training losses.</summary>
public sealed record TrialRun(EvaluationResult? Result, IReadOnlyList<double> StepLosses);

/// <summary>
/// A hyper-parameter sweep: trials proposed by an <see cref="ISearchStrategy"/>, each trained by the caller's function into
/// a directory of its own; every finished or diverged trial is appended to <c>trials.jsonl</c> and the whole table
/// rewritten to <c>trials.csv</c>; the best trial's model (by <see cref="Metric"/>) is kept in <c>best/</c>, the others'
/// deleted. A sweep run again on the same output resumes: the finished trials are read back (and given to the strategy
/// as its history), never re-run.
/// </summary>
/// <remarks>
/// Divergence: the trainer stops on a non-finite loss (an <see cref="EngineException"/>), which the sweep records as
/// diverged; a trial whose last quarter of step losses averages no lower than its first quarter is recorded as diverged
/// too (the loss did not fall), with its evaluation kept but never chosen as best. A strategy minimises
/// <see cref="Objective"/>: −F1 or −accuracy, or the evaluation loss; +∞ for a diverged trial.
/// </remarks>
public sealed class Sweep(ISearchStrategy strategy, string metric)
{
    public const string ResultsFile = "trials.jsonl", TableFile = "trials.csv", BestDirectory = "best";

    /// <summary>The metrics a sweep can follow.</summary>
    public static readonly string[] Metrics = ["f1", "accuracy", "eval_loss"];

    public string Metric { get; } = Metrics.Contains(metric) ? metric : throw new ArgumentException($"metric '{metric}' is not one of {string.Join(", ", Metrics)}");

    /// <summary>The trial's value of the metric, or null when it has none (no evaluation, or a regression head asked for F1).</summary>
    public double? MetricOf(SweepTrial trial) => Metric switch
    {
        "f1" => trial.Result?.F1,
        "accuracy" => trial.Result?.Accuracy,
        _ => trial.Result?.Loss,
    };

    /// <summary>What the strategy minimises: the metric, negated when higher is better; +∞ for a diverged trial or one without the metric.</summary>
    public double Objective(SweepTrial trial) =>
        trial.Status == TrialStatus.Diverged || MetricOf(trial) is not { } value || !double.IsFinite(value) ? double.PositiveInfinity
        : Metric == "eval_loss" ? value : -value;

    /// <summary>
    /// Runs trials until <paramref name="trials"/> are recorded in <paramref name="output"/> (or the strategy has no more):
    /// <paramref name="train"/> trains the given point into the given directory (its best model there) and reports back.
    /// Returns every trial, the resumed ones first.
    /// </summary>
    public IReadOnlyList<SweepTrial> Run(string output, int trials, Func<SearchPoint, string, TrialRun> train, Action<SweepTrial>? log = null)
    {
        if (trials < 1) throw new ArgumentOutOfRangeException(nameof(trials), $"{trials} trials");
        Directory.CreateDirectory(output);
        var done = Read(Path.Combine(output, ResultsFile)).ToList();
        while (done.Count < trials && strategy.Next([.. done.Select(t => new TrialOutcome(t.Point, Objective(t)))]) is { } point)
        {
            string directory = Path.Combine(output, $"trial-{done.Count}");
            if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true); // a trial a kill interrupted starts again
            var clock = System.Diagnostics.Stopwatch.StartNew();
            SweepTrial trial;
            try
            {
                var run = train(point, directory);
                string? falling = Falling(run.StepLosses);
                trial = new SweepTrial(done.Count, point, falling is null ? TrialStatus.Finished : TrialStatus.Diverged, run.Result, clock.Elapsed.TotalSeconds, falling);
            }
            catch (TrainingDivergedException e)
            {
                trial = new SweepTrial(done.Count, point, TrialStatus.Diverged, null, clock.Elapsed.TotalSeconds, e.Message);
            }
            KeepIfBest(output, directory, trial, done);
            File.AppendAllText(Path.Combine(output, ResultsFile), ToJson(trial).ToJsonString() + "\n");
            done.Add(trial);
            IO.AtomicFile.WriteText(Path.Combine(output, TableFile), Table(done));
            log?.Invoke(trial);
        }
        return done;
    }

    /// <summary>The best trial so far by the objective (finished ones only), or null.</summary>
    public SweepTrial? Best(IEnumerable<SweepTrial> trials) =>
        trials.Where(t => double.IsFinite(Objective(t))).OrderBy(Objective).ThenBy(t => t.Number).FirstOrDefault();

    /// <summary>Null when the loss fell; else why the trial counts as diverged.</summary>
    private static string? Falling(IReadOnlyList<double> losses)
    {
        if (losses.Count < 4) return null;
        int quarter = losses.Count / 4;
        double first = losses.Take(quarter).Average(), last = losses.Skip(losses.Count - quarter).Average();
        return last < first ? null : string.Create(CultureInfo.InvariantCulture, $"the loss did not fall: {first:G4} over the first quarter of steps, {last:G4} over the last");
    }

    /// <summary>Moves the trial's model to best/ when it beats every earlier trial; deletes it otherwise.</summary>
    private void KeepIfBest(string output, string directory, SweepTrial trial, IReadOnlyList<SweepTrial> earlier)
    {
        bool best = double.IsFinite(Objective(trial)) && (Best(earlier) is not { } previous || Objective(trial) < Objective(previous));
        if (best && Directory.Exists(directory))
        {
            string target = Path.Combine(output, BestDirectory), old = target + ".replaced";
            if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
            if (Directory.Exists(target)) Directory.Move(target, old);
            Directory.Move(directory, target);
            if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
        }
        else if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
    }

    /// <summary>One JSON line: trial, params, status, the evaluation's metrics, seconds, note.</summary>
    public static JsonObject ToJson(SweepTrial trial)
    {
        var line = new JsonObject
        {
            ["trial"] = trial.Number,
            ["params"] = new JsonObject([.. trial.Point.Values.Select(v => KeyValuePair.Create(v.Key, (JsonNode?)v.Value))]),
            ["status"] = trial.Status == TrialStatus.Finished ? "finished" : "diverged",
            ["seconds"] = Math.Round(trial.Seconds, 3),
        };
        if (trial.Result is { } r)
        {
            line["eval_loss"] = r.Loss;
            if (r.Accuracy is { } accuracy) line["accuracy"] = accuracy;
            if (r.F1 is { } f1) line["f1"] = f1;
            line["eval_count"] = r.Count;
        }
        if (trial.Note is not null) line["note"] = trial.Note;
        return line;
    }

    /// <summary>The trials recorded in <paramref name="path"/> (none when it does not exist); a malformed line is an error naming it.</summary>
    public static IEnumerable<SweepTrial> Read(string path)
    {
        if (!File.Exists(path)) yield break;
        int number = 0;
        foreach (string text in File.ReadLines(path))
        {
            number++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            SweepTrial trial;
            try
            {
                var line = JsonNode.Parse(text)!.AsObject();
                var values = line["params"]!.AsObject().ToDictionary(p => p.Key, p => (double)p.Value!);
                EvaluationResult? result = line["eval_loss"] is { } loss
                    ? new EvaluationResult((double)loss, (int?)line["eval_count"] ?? 0, (double?)line["accuracy"], (double?)line["f1"]) : null;
                var status = (string)line["status"]! switch { "finished" => TrialStatus.Finished, "diverged" => TrialStatus.Diverged, var s => throw new FormatException($"status '{s}'") };
                trial = new SweepTrial((int)line["trial"]!, new SearchPoint(values), status, result, (double?)line["seconds"] ?? 0, (string?)line["note"]);
            }
            catch (Exception e) when (e is System.Text.Json.JsonException or FormatException or InvalidOperationException or NullReferenceException or KeyNotFoundException)
            {
                throw new EngineException($"{path}:{number}: not a trial record ({e.Message})");
            }
            yield return trial;
        }
    }

    /// <summary>The trials as CSV: trial, each hyper-parameter, status, the metrics, seconds.</summary>
    public static string Table(IReadOnlyList<SweepTrial> trials)
    {
        var names = trials.SelectMany(t => t.Point.Values.Keys).Distinct().ToList();
        var invariant = CultureInfo.InvariantCulture;
        var csv = new System.Text.StringBuilder();
        csv.AppendLine(string.Join(",", ["trial", .. names, "status", "eval_loss", "accuracy", "f1", "seconds"]));
        foreach (var t in trials)
            csv.AppendLine(string.Join(",", [t.Number.ToString(invariant), .. names.Select(n => t.Point.Values.TryGetValue(n, out var v) ? v.ToString("R", invariant) : ""),
                t.Status == TrialStatus.Finished ? "finished" : "diverged", t.Result?.Loss.ToString("R", invariant) ?? "",
                t.Result?.Accuracy?.ToString("R", invariant) ?? "", t.Result?.F1?.ToString("R", invariant) ?? "", t.Seconds.ToString("F1", invariant)]));
        return csv.ToString();
    }
}
