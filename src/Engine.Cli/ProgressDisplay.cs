using System.Diagnostics;
using System.Globalization;
using Spectre.Console;

namespace Engine.Cli;

/// <summary>How long work shows its progress on stderr.</summary>
internal enum ProgressMode
{
    /// <summary>Nothing (--quiet): warnings and errors only.</summary>
    None,
    /// <summary>A plain line every interval, for logs and pipes (stderr is not a terminal).</summary>
    Lines,
    /// <summary>A live bar (Spectre.Console), on a terminal.</summary>
    Bar,
}

/// <summary>
/// Progress of long work (embedding many texts, encoding, fine-tuning) on stderr: a live bar on a terminal,
/// else one plain line every <see cref="Interval"/> once the work has lasted that long (so quick work prints
/// nothing), and a closing line when any was printed.
/// </summary>
internal sealed class ProgressDisplay(ProgressMode mode, TimeSpan interval)
{
    public TimeSpan Interval => interval;

    /// <summary>
    /// The mode for this process: none when quiet; a bar when stderr is a terminal, unless the work prints to stdout
    /// and stdout is that terminal too (its lines would tear the bar); else lines.
    /// </summary>
    public static ProgressDisplay For(bool quiet, double intervalSeconds, bool printsToStdout)
    {
        bool bar = !Console.IsErrorRedirected && !(printsToStdout && !Console.IsOutputRedirected);
        return new(quiet ? ProgressMode.None : bar ? ProgressMode.Bar : ProgressMode.Lines, TimeSpan.FromSeconds(intervalSeconds));
    }

    /// <summary>Runs <paramref name="work"/>, which reports how many of <paramref name="total"/> <paramref name="unit"/> are done.</summary>
    public void Run(string what, long total, string unit, Action<ProgressReporter> work)
    {
        if (mode != ProgressMode.Bar)
        {
            var reporter = new ProgressReporter(this, what, total, unit, null);
            work(reporter);
            reporter.Finish();
            return;
        }
        // Interactive and ANSI are this display's decision (stderr is a terminal), not Spectre's guess from stdout.
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(Console.Error), Interactive = InteractionSupport.Yes, Ansi = AnsiSupport.Yes,
        });
        console.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(),
                new RemainingTimeColumn(), new SpinnerColumn())
            .Start(context =>
            {
                var task = context.AddTask(Markup.Escape(what), maxValue: Math.Max(total, 1));
                var reporter = new ProgressReporter(this, what, total, unit, (task, console));
                work(reporter);
                task.Value = task.MaxValue;
            });
    }

    internal bool Quiet => mode == ProgressMode.None;
}

/// <summary>What a piece of work tells its <see cref="ProgressDisplay"/>.</summary>
internal sealed class ProgressReporter
{
    private readonly ProgressDisplay _display;
    private readonly string _what, _unit;
    private readonly long _total;
    private readonly (ProgressTask Task, IAnsiConsole Console)? _bar;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private TimeSpan _lastLine;
    private bool _printed;
    private long _done;

    internal ProgressReporter(ProgressDisplay display, string what, long total, string unit, (ProgressTask, IAnsiConsole)? bar)
    {
        _display = display;
        _what = what;
        _total = total;
        _unit = unit;
        _bar = bar;
    }

    /// <summary><paramref name="done"/> of the total are done; <paramref name="status"/> is shown beside (a loss, say).</summary>
    public void Report(long done, string? status = null)
    {
        _done = done;
        if (_bar is var (task, _))
        {
            task.Description = Markup.Escape(status is null ? _what : $"{_what}  {status}");
            task.Value = done;
            return;
        }
        if (_display.Quiet || _clock.Elapsed - _lastLine < _display.Interval) return;
        _lastLine = _clock.Elapsed;
        double rate = done / Math.Max(_clock.Elapsed.TotalSeconds, 1e-9);
        var eta = rate > 0 ? TimeSpan.FromSeconds(Math.Min((_total - done) / rate, TimeSpan.MaxValue.TotalSeconds / 2)) : TimeSpan.Zero;
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{_what}: {done:N0}/{_total:N0} {_unit} ({100.0 * done / Math.Max(_total, 1):F0}%), {rate:F1} {_unit}/s, ETA {eta:hh\\:mm\\:ss}{(status is null ? "" : ", " + status)}"));
        _printed = true;
    }

    /// <summary>A line of its own (an evaluation result), above the bar on a terminal; nothing under --quiet.</summary>
    public void Line(string text)
    {
        if (_bar is var (_, console)) console.WriteLine(text);
        else if (!_display.Quiet) Console.Error.WriteLine(text);
    }

    internal void Finish()
    {
        if (_printed)
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{_what}: {_done:N0} {_unit} in {_clock.Elapsed:hh\\:mm\\:ss}"));
    }
}
