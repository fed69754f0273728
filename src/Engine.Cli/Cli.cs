using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Parsing;
using System.Text.Json;

namespace Engine.Cli;

/// <summary>The exit codes of every verb (README, "Errors and exit codes").</summary>
public enum ExitCode
{
    Success = 0,
    /// <summary>The work failed on its input: a file, a model, the data (the message names which).</summary>
    Failure = 1,
    /// <summary>The command line is wrong: an unknown option, a value that is not a number or out of its range, a missing argument.</summary>
    Usage = 2,
    /// <summary>A bug in engine (an exception nobody expected); --verbose prints where.</summary>
    InternalError = 70,
}

/// <summary>A mistake in the command line found after parsing (e.g. --max-length beyond what the model holds): exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// Runs an <c>engine</c> command line: strict parsing (an unknown option is an error with a suggestion, never a
/// text; a text that starts with '-' goes after '--'), then the verb, whose every failure is one line on stderr
/// and an <see cref="ExitCode"/>.
/// </summary>
public static class Cli
{
    /// <summary>Runs the command line; everything goes to <see cref="Console.Out"/> and <see cref="Console.Error"/>.</summary>
    public static int Run(string[] args)
    {
        var result = Commands.Build().Parse(args);
        if (result.Action is not HelpAction && UsageError(result, args) is { } message)
        {
            Console.Error.WriteLine($"error: {message}");
            return (int)ExitCode.Usage;
        }
        return result.Invoke(new InvocationConfiguration { Output = Console.Out, Error = Console.Error });
    }

    /// <summary>The first thing wrong with the command line, as one line, or null.</summary>
    private static string? UsageError(ParseResult result, string[] args)
    {
        var command = result.CommandResult.Command;
        int doubleDash = IndexOf(result.Tokens, t => t.Type == TokenType.DoubleDash);
        // "--switch=value": System.CommandLine would pass a value that is not true/false on as a text.
        foreach (string arg in args.TakeWhile(a => a != "--"))
            if (arg.Split('=', 2) is [var name, var value] && LooksLikeOption(name) && !bool.TryParse(value, out _)
                && AllOptions(command).FirstOrDefault(o => o.Name == name || o.Aliases.Contains(name)) is { } option
                && CliOptions.SpecOf(option)?.Kind == ValueKind.Flag)
                return $"{name} is a switch and takes no value, got '{value}'";
        // Tokens that look like options but were taken as texts (a verb's arguments take anything) or left unmatched.
        foreach (var argument in command.Arguments)
            foreach (var token in result.GetResult(argument)?.Tokens ?? [])
                if (LooksLikeOption(token.Value) && IndexOf(result.Tokens, t => ReferenceEquals(t, token)) is int at && (doubleDash < 0 || at < doubleDash))
                    return UnknownOption(command, token.Value);
        foreach (string token in result.UnmatchedTokens)
            return LooksLikeOption(token) ? UnknownOption(command, token)
                : command.Subcommands.Count > 0 ? UnknownVerb(command, token)
                : $"unexpected argument '{token}' for '{command.Name}'";
        if (result.Errors.Count == 0) return null;
        if (command is RootCommand && result.Tokens.Count == 0)
            return $"no verb given; the verbs are {string.Join(", ", command.Subcommands.Select(c => c.Name))} ('engine --help' says what each does)";
        return OneLine(result.Errors[0].Message);
    }

    private static bool LooksLikeOption(string token) => token.Length > 1 && token[0] == '-';

    private static string UnknownOption(Command command, string token)
    {
        string name = token.Split('=', 2)[0];
        var known = AllOptions(command).SelectMany(o => o.Aliases.Prepend(o.Name)).Distinct();
        string hint = Nearest(name, known) is { } near ? $"; did you mean '{near}'?" : $"; '{command.Name} --help' lists them";
        return $"unknown option '{name}' for '{command.Name}'{hint} (a text that starts with '-' goes after '--')";
    }

    private static string UnknownVerb(Command root, string token)
    {
        string hint = Nearest(token, root.Subcommands.Select(c => c.Name)) is { } near ? $"did you mean '{near}'? " : "";
        return $"unknown verb '{token}'; {hint}the verbs are {string.Join(", ", root.Subcommands.Select(c => c.Name))}";
    }

    /// <summary>The command's options and every recursive option of its parents.</summary>
    private static IEnumerable<Option> AllOptions(Command command)
    {
        foreach (var option in command.Options) yield return option;
        for (var parent = command.Parents.OfType<Command>().FirstOrDefault(); parent is not null; parent = parent.Parents.OfType<Command>().FirstOrDefault())
            foreach (var option in parent.Options.Where(o => o.Recursive)) yield return option;
    }

    /// <summary>The candidate closest to <paramref name="word"/> by edit distance, when close enough to be a typo.</summary>
    internal static string? Nearest(string word, IEnumerable<string> candidates)
    {
        var best = candidates.Select(c => (Candidate: c, Distance: EditDistance(word, c))).OrderBy(x => x.Distance).FirstOrDefault();
        return best.Candidate is not null && best.Distance <= Math.Max(2, word.Length / 3) ? best.Candidate : null;
    }

    /// <summary>Damerau–Levenshtein (optimal string alignment): a swap of two neighbours counts once.</summary>
    private static int EditDistance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        return d[a.Length, b.Length];
    }

    private static int IndexOf(IReadOnlyList<Token> tokens, Func<Token, bool> match)
    {
        for (int i = 0; i < tokens.Count; i++)
            if (match(tokens[i])) return i;
        return -1;
    }

    private static string OneLine(string message) =>
        string.Join(" ", message.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries));

    /// <summary>
    /// Runs a verb's work: paths are checked first (<see cref="CliOptions.Preflight"/>); a failure is one line on
    /// stderr (with the stack trace under --verbose) and its exit code.
    /// </summary>
    internal static int Verb(ParseResult result, bool verbose, Action work)
    {
        var error = Console.Error;
        try
        {
            CliOptions.Preflight(result);
            work();
            return (int)ExitCode.Success;
        }
        catch (UsageException e)
        {
            error.WriteLine($"error: {OneLine(e.Message)}");
            return (int)ExitCode.Usage;
        }
        catch (Exception e) when (e is EngineException or IOException or UnauthorizedAccessException or JsonException)
        {
            error.WriteLine(verbose ? $"error: {e}" : $"error: {OneLine(e.Message)}");
            return (int)ExitCode.Failure;
        }
        catch (OutOfMemoryException e)
        {
            error.WriteLine(verbose ? $"error: {e}" : "error: out of memory; a smaller --batch-size or --max-length needs less");
            return (int)ExitCode.Failure;
        }
        catch (Exception e)
        {
            error.WriteLine(verbose ? $"error: internal error: {e}"
                : $"error: internal error ({e.GetType().Name}: {OneLine(e.Message)}); this is a bug in engine: --verbose shows where, please report it");
            return (int)ExitCode.InternalError;
        }
    }
}
