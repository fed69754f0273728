using System.Diagnostics;

namespace Engine.Tests;

/// <summary>
/// Runs the built <c>engine</c> program in a process of its own (<c>dotnet engine.dll</c> beside the tests), for what
/// only a separate process shows: seeds that must not depend on the process, resuming after a kill, a terminal.
/// </summary>
internal static class EngineProcess
{
    public static string Program => Path.Combine(AppContext.BaseDirectory, "engine.dll");

    public static ProcessStartInfo StartInfo(IEnumerable<string> args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(Program);
        foreach (string arg in args) info.ArgumentList.Add(arg);
        return info;
    }

    /// <summary>Runs to the end; returns the exit code and both streams.</summary>
    public static (int Code, string Out, string Error) Run(params string[] args)
    {
        using var process = Process.Start(StartInfo(args))!;
        var error = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output, error.Result);
    }

    /// <summary>
    /// Starts the program and hands each stdout line to <paramref name="onLine"/>, which returns true to have the
    /// process killed at once (SIGKILL: no cleanup runs); returns whether it was killed.
    /// </summary>
    public static bool RunUntil(IEnumerable<string> args, Func<string, bool> onLine)
    {
        using var process = Process.Start(StartInfo(args))!;
        _ = process.StandardError.ReadToEndAsync();
        while (process.StandardOutput.ReadLine() is { } line)
        {
            if (!onLine(line)) continue;
            process.Kill();
            process.WaitForExit();
            return true;
        }
        process.WaitForExit();
        return false;
    }
}
