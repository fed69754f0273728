using Engine.Hub;

namespace Engine.Tests;

/// <summary>The default model is imported from its NuGet package once into the cache, then reused.</summary>
[Collection("console")]
public sealed class ModelStoreTests
{
    [Fact]
    public void DefaultModelIsImportedOnceIntoTheCacheThenReused()
    {
        using var temp = new TempDirectory();
        string? previous = Environment.GetEnvironmentVariable(ModelStore.CacheVariable);
        Environment.SetEnvironmentVariable(ModelStore.CacheVariable, temp.Path);
        try
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
        }
        finally
        {
            Environment.SetEnvironmentVariable(ModelStore.CacheVariable, previous);
        }
    }
}
