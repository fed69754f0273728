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
                Console.WriteLine(JsonSerializer.Serialize(new { epoch = v.Epoch, eval_loss = v.Result.Loss, accuracy = v.Result.Accuracy, f1 = v.Result.F1, best = v.Best }));
                break;
            case StepEvent s when _terminal:
                double elapsed = (DateTime.UtcNow - _start).TotalSeconds;
                double eta = elapsed / s.Step * (s.TotalSteps - s.Step);
                Console.Error.Write(string.Create(invariant,
                    $"\rstep {s.Step}/{s.TotalSteps}  loss {s.Loss:F4}  lr {s.LearningRate:E2}  {s.ExamplesPerSecond:F1} examples/s  ETA {TimeSpan.FromSeconds(eta):hh\\:mm\\:ss}   "));
                break;
            case EvaluationEvent v:
                Console.Error.WriteLine(string.Create(invariant,
                    $"{(_terminal ? "\n" : "")}epoch {v.Epoch}: eval loss {v.Result.Loss:F4}, accuracy {v.Result.Accuracy:P2}, F1 {v.Result.F1:F4}{(v.Best ? " (best)" : "")}"));
                break;
        }
    }

    public void Finish()
    {
        if (_terminal && !json) Console.Error.WriteLine();
    }
}
