using System.Globalization;
using System.Text.Json;
using Engine.Training;

namespace Engine.Cli;

/// <summary>
/// Training output: with --log-json one JSON object per step and per evaluation on stdout; on stderr the
/// progress (a bar on a terminal, else a plain line every interval) with the step's loss, and one line per evaluation.
/// </summary>
internal sealed class TrainingProgress(bool json, ProgressReporter progress)
{
    public void Report(TrainingEvent e)
    {
        var invariant = CultureInfo.InvariantCulture;
        switch (e)
        {
            case StepEvent s:
                if (json) Console.WriteLine(JsonSerializer.Serialize(new { step = s.Step, loss = s.Loss, lr = s.LearningRate, grad_norm = s.GradientNorm }));
                progress.Report(s.Step, string.Create(invariant, $"loss {s.Loss:F4}, lr {s.LearningRate:E2}, {s.ExamplesPerSecond:F1} examples/s"));
                break;
            case EvaluationEvent v:
                if (json)
                    Console.WriteLine(v.Result.F1 is null
                        ? JsonSerializer.Serialize(new { epoch = v.Epoch, eval_loss = v.Result.Loss, pearson = v.Result.Pearson, spearman = v.Result.Spearman, best = v.Best })
                        : JsonSerializer.Serialize(new { epoch = v.Epoch, eval_loss = v.Result.Loss, accuracy = v.Result.Accuracy, f1 = v.Result.F1, best = v.Best }));
                progress.Line(string.Create(invariant, $"epoch {v.Epoch}: {Describe(v.Result)}{(v.Best ? " (best)" : "")}"));
                break;
            case CheckpointEvent c:
                if (json) Console.WriteLine(JsonSerializer.Serialize(new { checkpoint = c.Directory, epoch = c.Epoch, optimizer_steps = c.OptimizerSteps }));
                break;
        }
    }

    /// <summary>One evaluation in words: loss with accuracy and F1, or with the correlations for regression.</summary>
    public static string Describe(EvaluationResult r) => r.F1 is null
        ? string.Create(CultureInfo.InvariantCulture, $"eval loss {r.Loss:F4}, Pearson {r.Pearson:F4}, Spearman {r.Spearman:F4}")
        : string.Create(CultureInfo.InvariantCulture, $"eval loss {r.Loss:F4}, accuracy {r.Accuracy:P2}, F1 {r.F1:F4}");
}
