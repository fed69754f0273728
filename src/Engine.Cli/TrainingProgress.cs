using System.Globalization;
using System.Text.Json;
using Engine.Training;

namespace Engine.Cli;

/// <summary>
/// Training output: with --log-json one JSON object per step and per evaluation on stdout; else, on a
/// terminal, a progress line (step, loss, throughput, ETA) redrawn in place on stderr, and one line per evaluation.
/// </summary>
internal sealed class TrainingProgress(bool json)
{
    private readonly bool _terminal = !Console.IsErrorRedirected;
    private readonly DateTime _start = DateTime.UtcNow;

    public void Report(TrainingEvent e)
    {
        var invariant = CultureInfo.InvariantCulture;
        switch (e)
        {
            case StepEvent s when json:
                Console.WriteLine(JsonSerializer.Serialize(new { step = s.Step, loss = s.Loss, lr = s.LearningRate, grad_norm = s.GradientNorm }));
                break;
            case EvaluationEvent v when json:
                Console.WriteLine(v.Result.F1 is null
                    ? JsonSerializer.Serialize(new { epoch = v.Epoch, eval_loss = v.Result.Loss, pearson = v.Result.Pearson, spearman = v.Result.Spearman, best = v.Best })
                    : JsonSerializer.Serialize(new { epoch = v.Epoch, eval_loss = v.Result.Loss, accuracy = v.Result.Accuracy, f1 = v.Result.F1, best = v.Best }));
                break;
            case StepEvent s when _terminal:
                double elapsed = (DateTime.UtcNow - _start).TotalSeconds;
                double eta = elapsed / s.Step * (s.TotalSteps - s.Step);
                Console.Error.Write(string.Create(invariant,
                    $"\rstep {s.Step}/{s.TotalSteps}  loss {s.Loss:F4}  lr {s.LearningRate:E2}  {s.ExamplesPerSecond:F1} examples/s  ETA {TimeSpan.FromSeconds(eta):hh\\:mm\\:ss}   "));
                break;
            case EvaluationEvent v:
                Console.Error.WriteLine(string.Create(invariant,
                    $"{(_terminal ? "\n" : "")}epoch {v.Epoch}: {Describe(v.Result)}{(v.Best ? " (best)" : "")}"));
                break;
        }
    }

    /// <summary>One evaluation in words: loss with accuracy and F1, or with the correlations for regression.</summary>
    public static string Describe(EvaluationResult r) => r.F1 is null
        ? string.Create(CultureInfo.InvariantCulture, $"eval loss {r.Loss:F4}, Pearson {r.Pearson:F4}, Spearman {r.Spearman:F4}")
        : string.Create(CultureInfo.InvariantCulture, $"eval loss {r.Loss:F4}, accuracy {r.Accuracy:P2}, F1 {r.F1:F4}");

    public void Finish()
    {
        if (_terminal && !json) Console.Error.WriteLine();
    }
}
