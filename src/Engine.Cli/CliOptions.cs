using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Engine.Cli;

/// <summary>What an option takes: how it is parsed, checked up front, described in help, and swept with bad values by the tests.</summary>
internal enum ValueKind
{
    Flag,
    Integer,
    Number,
    Choice,
    /// <summary>Free text checked against the data (a column name).</summary>
    Text,
    InputFile,
    InputDirectory,
    /// <summary>An existing file or directory (a corpus).</summary>
    InputPath,
    OutputFile,
    OutputDirectory,
    /// <summary>A fine-tuning run's resumable checkpoint (OUTPUT/last, or the OUTPUT/last.previous a kill left).</summary>
    Checkpoint,
}

/// <summary>An option's kind and, for numbers, its closed or open interval; for choices, the accepted words.</summary>
internal sealed record OptionSpec(ValueKind Kind, double Min = double.NegativeInfinity, double Max = double.PositiveInfinity,
    bool MinExclusive = false, string[]? Choices = null)
{
    public bool Contains(double value) => (MinExclusive ? value > Min : value >= Min) && value <= Max;

    /// <summary>The interval as help and errors write it: [1, 4096], (0, 10], ≥ 1.</summary>
    public string Interval => double.IsPositiveInfinity(Max)
        ? $"{(MinExclusive ? ">" : "≥")} {Format(Min)}"
        : $"{(MinExclusive ? "(" : "[")}{Format(Min)}, {Format(Max)}]";

    private static string Format(double value) => value.ToString("G", CultureInfo.InvariantCulture);
}

/// <summary>
/// Options of the <c>engine</c> verbs, made only through these factories so that every one is parsed strictly
/// (a number that is not one, out of its interval, NaN or infinite is a usage error naming the option), shows its
/// interval and default in help, is checked before any work starts (paths: <see cref="Preflight"/>), and is known
/// to the test that sweeps every verb with bad values.
/// </summary>
internal static class CliOptions
{
    private static readonly ConditionalWeakTable<Option, OptionSpec> Specs = [];

    public static OptionSpec? SpecOf(Option option) => Specs.TryGetValue(option, out var spec) ? spec : null;

    private static T With<T>(T option, OptionSpec spec) where T : Option
    {
        Specs.Add(option, spec);
        return option;
    }

    public static Option<bool> Flag(string name, string description) => With(new Option<bool>(name) { Description = description }, new(ValueKind.Flag));

    /// <summary>An integer option in [min, max]; without a default it is null when absent.</summary>
    public static Option<int?> Integer(string name, string description, int min, int max, string? absent = null)
    {
        var spec = new OptionSpec(ValueKind.Integer, min, max);
        return With(new Option<int?>(name)
        {
            Description = Describe(description, $"an integer in {spec.Interval}", absent),
            CustomParser = result => (int?)ParseNumber(result, spec, integer: true),
        }, spec);
    }

    public static Option<int> Integer(string name, string description, int min, int max, int defaultValue)
    {
        var spec = new OptionSpec(ValueKind.Integer, min, max);
        return With(new Option<int>(name)
        {
            Description = Describe(description, $"an integer in {spec.Interval}", null),
            CustomParser = result => (int)ParseNumber(result, spec, integer: true),
            DefaultValueFactory = _ => defaultValue,
        }, spec);
    }

    /// <summary>A finite number in its interval (open below when <paramref name="minExclusive"/>); null when absent.</summary>
    public static Option<float?> Number(string name, string description, double min, double max, bool minExclusive = false, string? absent = null)
    {
        var spec = new OptionSpec(ValueKind.Number, min, max, minExclusive);
        return With(new Option<float?>(name)
        {
            Description = Describe(description, $"a number in {spec.Interval}", absent),
            CustomParser = result => (float?)ParseNumber(result, spec, integer: false),
        }, spec);
    }

    public static Option<float> Number(string name, string description, double min, double max, float defaultValue, bool minExclusive = false)
    {
        var spec = new OptionSpec(ValueKind.Number, min, max, minExclusive);
        return With(new Option<float>(name)
        {
            Description = Describe(description, $"a number in {spec.Interval}", null),
            CustomParser = result => (float)ParseNumber(result, spec, integer: false),
            DefaultValueFactory = _ => defaultValue,
        }, spec);
    }

    /// <summary>One of <paramref name="choices"/> (lower case); null when absent unless a default is given.</summary>
    public static Option<string?> Choice(string name, string description, string[] choices, string? defaultValue = null, bool recursive = false)
    {
        var spec = new OptionSpec(ValueKind.Choice, Choices: choices);
        var option = new Option<string?>(name)
        {
            Description = description,
            Recursive = recursive,
            CustomParser = result =>
            {
                string value = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
                if (choices.Contains(value, StringComparer.Ordinal)) return value;
                result.AddError($"{name}: '{value}' is not one of {string.Join(", ", choices)}");
                return null;
            },
        };
        option.CompletionSources.Add(choices);
        if (defaultValue is not null) option.DefaultValueFactory = _ => defaultValue;
        return With(option, spec);
    }

    public static Option<string?> Text(string name, string description, string? defaultValue = null)
    {
        var option = new Option<string?>(name) { Description = description };
        if (defaultValue is not null) option.DefaultValueFactory = _ => defaultValue;
        return With(option, new(ValueKind.Text));
    }

    /// <summary>Free texts (patterns) given after the option, checked against the data like <see cref="Text"/>.</summary>
    public static Option<string[]> TextList(string name, string description) =>
        With(new Option<string[]>(name) { Description = description, AllowMultipleArgumentsPerToken = true, Arity = ArgumentArity.OneOrMore }, new(ValueKind.Text));

    /// <summary>A path option: it must exist (inputs) or be writable (outputs), which <see cref="Preflight"/> checks before any work.</summary>
    public static Option<string?> Path(string name, ValueKind kind, string description, bool required = false, string? defaultValue = null)
    {
        if (kind is not (ValueKind.InputFile or ValueKind.InputDirectory or ValueKind.InputPath or ValueKind.OutputFile or ValueKind.OutputDirectory or ValueKind.Checkpoint))
            throw new ArgumentOutOfRangeException(nameof(kind));
        var option = new Option<string?>(name) { Description = description, Required = required };
        if (defaultValue is not null) option.DefaultValueFactory = _ => defaultValue;
        return With(option, new(kind));
    }

    private static string Describe(string description, string domain, string? absent) =>
        absent is null ? $"{description}; {domain}" : $"{description}; {domain} (default: {absent})";

    /// <summary>The option's one value as a number in its interval, or a parse error naming the option and the value.</summary>
    private static double ParseNumber(ArgumentResult result, OptionSpec spec, bool integer)
    {
        string name = ((OptionResult)result.Parent!).Option.Name;
        string text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
        string expected = integer ? $"an integer in {spec.Interval}" : $"a number in {spec.Interval}";
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
        {
            result.AddError($"{name}: '{text}' is not a number; expected {expected}");
            return 0;
        }
        if (!double.IsFinite(value))
        {
            result.AddError($"{name}: '{text}' is not a finite number; expected {expected}");
            return 0;
        }
        if (integer && value != Math.Floor(value))
        {
            result.AddError($"{name}: '{text}' is not a whole number; expected {expected}");
            return 0;
        }
        if (!spec.Contains(value))
        {
            result.AddError($"{name}: {text} is out of range; expected {expected}");
            return 0;
        }
        return value;
    }

    /// <summary>
    /// Checks every path option of the verb before it starts: inputs exist and are of the right kind, outputs can be
    /// created (by probing the nearest existing folder with a file that is deleted again). A failure names the option
    /// and the path, as an <see cref="EngineException"/>.
    /// </summary>
    public static void Preflight(ParseResult result)
    {
        foreach (var option in result.CommandResult.Command.Options)
        {
            if (SpecOf(option) is not { } spec || option is not Option<string?> pathOption || result.GetValue(pathOption) is not { } path)
                continue;
            string name = option.Name;
            if (string.IsNullOrWhiteSpace(path)) throw new UsageException($"{name}: the path is empty");
            if (path.Contains('\0')) throw new UsageException($"{name}: the path holds a NUL character");
            switch (spec.Kind)
            {
                case ValueKind.InputFile when Directory.Exists(path):
                    throw new EngineException($"{name} {path}: is a directory, not a file");
                case ValueKind.InputFile when !File.Exists(path):
                    throw new EngineException($"{name} {path}: file not found");
                case ValueKind.InputFile:
                    CheckReadable(name, path);
                    break;
                case ValueKind.InputDirectory when File.Exists(path):
                    throw new EngineException($"{name} {path}: is a file, not a directory");
                case ValueKind.InputDirectory when !Directory.Exists(path):
                    throw new EngineException($"{name} {path}: directory not found");
                case ValueKind.InputPath when !File.Exists(path) && !Directory.Exists(path):
                    throw new EngineException($"{name} {path}: no such file or directory");
                case ValueKind.InputPath when File.Exists(path):
                    CheckReadable(name, path);
                    break;
                case ValueKind.OutputFile when Directory.Exists(path):
                    throw new EngineException($"{name} {path}: is a directory; give a file name");
                case ValueKind.OutputFile:
                    CheckWritable(name, path, System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
                    break;
                case ValueKind.OutputDirectory when File.Exists(path):
                    throw new EngineException($"{name} {path}: is a file, not a directory");
                case ValueKind.OutputDirectory:
                    CheckWritable(name, path, System.IO.Path.GetFullPath(path));
                    break;
                case ValueKind.Checkpoint when Training.Trainer.ResolveCheckpoint(path) is null:
                    throw new EngineException($"{name} {path}: not a resumable checkpoint (no {Training.Trainer.StateFile}); give a run's OUTPUT/last");
            }
        }
    }

    private static void CheckReadable(string name, string path)
    {
        try { using var _ = File.OpenHandle(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        { throw new EngineException($"{name} {path}: cannot be read ({e.Message})", e); }
    }

    /// <summary>Whether files can be created in <paramref name="folder"/>, or in its nearest existing ancestor (where the folders would be made).</summary>
    private static void CheckWritable(string name, string path, string folder)
    {
        string? existing = folder;
        while (existing is not null && !Directory.Exists(existing))
        {
            if (File.Exists(existing)) throw new EngineException($"{name} {path}: {existing} is a file, so the folder cannot be created");
            existing = System.IO.Path.GetDirectoryName(existing);
        }
        if (existing is null) throw new EngineException($"{name} {path}: no folder of it exists");
        string probe = System.IO.Path.Combine(existing, $".engine-write-check-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            File.WriteAllBytes(probe, []);
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new EngineException($"{name} {path}: cannot create files in {existing} ({(e is UnauthorizedAccessException ? "permission denied" : "the file system refused")})", e);
        }
    }
}
