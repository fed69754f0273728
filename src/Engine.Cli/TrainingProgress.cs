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
                if (json)
                    Console.WriteLine(s.LossScale is { } scale
                        // An overflowed step's norm is infinite or NaN, which JSON has no number for.
                        ? JsonSerializer.Serialize(new { step = s.Step, loss = s.Loss, lr = s.LearningRate, grad_norm = double.IsFinite(s.GradientNorm) ? s.GradientNorm : (double?)null,
                            loss_scale = scale, skipped = s.Skipped })
                        : JsonSerializer.Serialize(new { step = s.Step, loss = s.Loss, lr = s.LearningRate, grad_norm = s.GradientNorm }));
                if (s.Skipped) progress.Line(string.Create(invariant, $"step {s.Step}: the gradients overflowed at loss scale {s.LossScale}; step skipped, scale halved"));
                progress.Report(s.Step, string.Create(invariant, $"loss {s.Loss:F4}, lr {s.LearningRate:E2}, {s.ExamplesPerSecond:F1} examples/s"));
                break;
            case EvaluationEvent v:
                if (json)
                    Console.WriteLine(v.Result switch
                    {
                        { Perplexity: not null } r => JsonSerializer.Serialize(new { epoch = v.Epoch, eval_loss = r.Loss, accuracy = r.Accuracy, perplexity = r.Perplexity,
                            sentence_accuracy = r.SentenceAccuracy, best = v.Best }),
                        { F1: null } r => JsonSerializer.Serialize(new { epoch = v.Epoch, eval_loss = r.Loss, pearson = r.Pearson, spearman = r.Spearman, best = v.Best }),
                        var r => JsonSerializer.Serialize(new { epoch = v.Epoch, eval_loss = r.Loss, accuracy = r.Accuracy, f1 = r.F1, best = v.Best }),
                    });
                progress.Line(string.Create(invariant, $"epoch {v.Epoch}: {Describe(v.Result)}{(v.Best ? " (best)" : "")}"));
                break;
            case CheckpointEvent c:
                if (json) Console.WriteLine(JsonSerializer.Serialize(new { checkpoint = c.Directory, epoch = c.Epoch, optimizer_steps = c.OptimizerSteps }));
                break;
        }
    }

    /// <summary>One evaluation in words: loss with accuracy and F1, with the correlations for regression, or with masked-token accuracy and perplexity.</summary>
    public static string Describe(EvaluationResult r) => r switch
    {
        { Perplexity: not null } => string.Create(CultureInfo.InvariantCulture,
            $"eval loss {r.Loss:F4}, masked accuracy {r.Accuracy:P2}, perplexity {r.Perplexity:F2}{(r.SentenceAccuracy is { } s ? $", sentence accuracy {s:P2}" : "")}"),
        { F1: null } => string.Create(CultureInfo.InvariantCulture, $"eval loss {r.Loss:F4}, Pearson {r.Pearson:F4}, Spearman {r.Spearman:F4}"),
        _ => string.Create(CultureInfo.InvariantCulture, $"eval loss {r.Loss:F4}, accuracy {r.Accuracy:P2}, F1 {r.F1:F4}"),
    };
}
