using System.IO.Enumeration;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Models;
using Engine.Models.Bert;

namespace Engine.Quantization;

/// <summary>What <see cref="CheckpointQuantizer.Quantize"/> quantizes: every Linear weight, the word embeddings when asked, never what matches <see cref="Exclude"/>.</summary>
/// <param name="Exclude">Simple patterns (<c>*</c>, <c>?</c>) matched against a weight's module name (<c>encoder.layer.5.output.dense</c>) or full name; each must match a weight.</param>
public sealed record QuantizeOptions(bool IncludeEmbeddings = false, IReadOnlyList<string>? Exclude = null);

/// <summary>What was written: sizes of the weights before and after, and which tensors became int8.</summary>
public sealed record QuantizeResult(string OutputDirectory, long SourceBytes, long QuantizedBytes, IReadOnlyList<string> Quantized, IReadOnlyList<string> Excluded)
{
    public double Ratio => (double)QuantizedBytes / SourceBytes;
}

/// <summary>
/// Dynamic int8 quantization of a Hugging Face checkpoint, as PyTorch's <c>quantize_dynamic</c> does for Linear layers:
/// each Linear weight (and, when asked, the word-embedding table) becomes an I8 tensor of the same name with symmetric
/// per-row scales beside it (<c>{name}_scale</c>, F32); LayerNorm, biases, position and token-type embeddings stay as
/// stored (the residual stream and its outlier sites stay FP32); activations are quantized per token at run time.
/// config.json gains a <c>quantization</c> entry; tokenizer and sentence-transformers files are copied.
/// </summary>
public static class CheckpointQuantizer
{
    /// <summary>config.json's field describing a quantized checkpoint.</summary>
    public const string ConfigField = "quantization";

    /// <summary>The tied masked-LM decoder: the word embeddings again, dropped from a quantized checkpoint (Hugging Face does not store it either).</summary>
    private const string TiedDecoder = "cls.predictions.decoder.weight";

    private static readonly string[] WeightExtensions = [".safetensors", ".bin", ".onnx", ".h5", ".msgpack", ".pt", ".ckpt"];

    public static QuantizeResult Quantize(string modelDirectory, string outputDirectory, QuantizeOptions options)
    {
        if (Path.GetFullPath(modelDirectory).TrimEnd('/') == Path.GetFullPath(outputDirectory).TrimEnd('/'))
            throw new EngineException($"{outputDirectory}: the output must not be the model directory");
        string configPath = Path.Combine(modelDirectory, BertConfig.FileName);
        var config = BertConfig.Load(configPath);
        ModelRegistry.Family(config);
        if (config.Raw.ContainsKey(ConfigField)) throw new EngineException($"{configPath}: the model is already quantized ('{ConfigField}' is set)");

        using var checkpoint = Checkpoint.Open(modelDirectory);
        var names = checkpoint.Names.ToList();
        var linear = names.Where(n => IsLinearWeight(n, checkpoint.Info(n))).ToList();
        var exclude = options.Exclude ?? [];
        foreach (string pattern in exclude)
            if (!linear.Any(n => Matches(pattern, n)))
                throw new EngineException($"--exclude '{pattern}' matches no Linear weight (they are named like '{linear.FirstOrDefault() ?? "encoder.layer.0.attention.self.query.weight"}')");
        var excluded = linear.Where(n => exclude.Any(p => Matches(p, n))).ToList();
        var chosen = linear.Except(excluded).ToHashSet(StringComparer.Ordinal);
        string? wordEmbeddings = options.IncludeEmbeddings ? names.FirstOrDefault(IsWordEmbeddings) : null;
        if (options.IncludeEmbeddings && wordEmbeddings is null) throw new EngineException($"{modelDirectory}: no word-embedding table to quantize");
        if (wordEmbeddings is not null) chosen.Add(wordEmbeddings);

        var tensors = new List<SafeTensorData>();
        foreach (string name in names)
        {
            var info = checkpoint.Info(name);
            if (name == TiedDecoder && wordEmbeddings is not null) continue;
            if (!chosen.Contains(name))
            {
                tensors.Add(new SafeTensorData(name, info.DType, info.Shape, checkpoint.ReadRaw(name)));
                continue;
            }
            var (values, scales) = Int8Quantizer.QuantizeRows(checkpoint.ReadFloat32(name, info.Shape), (int)info.Shape[1]);
            tensors.Add(new SafeTensorData(name, DType.I8, info.Shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray()));
            tensors.Add(SafeTensorData.FromFloats(name + Int8Quantizer.ScaleSuffix, scales, info.Shape[0]));
        }

        Directory.CreateDirectory(outputDirectory);
        CopySideFiles(modelDirectory, outputDirectory, topLevel: true);
        string weights = Path.Combine(outputDirectory, Checkpoint.SingleFileName);
        SafeTensorsWriter.Write(weights, tensors);
        var raw = (JsonObject)config.Raw.DeepClone();
        raw[ConfigField] = new JsonObject
        {
            ["method"] = "dynamic-int8",
            ["weights"] = "int8, symmetric, one float32 scale per row (output channel; token for embeddings) in '<name>" + Int8Quantizer.ScaleSuffix + "'",
            ["activations"] = "int8, symmetric, one scale per token row, computed at run time",
            ["embeddings"] = wordEmbeddings is not null,
            ["excluded"] = new JsonArray([.. exclude.Select(p => (JsonNode)p)]),
        };
        AtomicFile.WriteText(Path.Combine(outputDirectory, BertConfig.FileName), raw.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }));

        long sourceBytes = SourceWeightFiles(modelDirectory).Sum(f => new FileInfo(f).Length);
        return new QuantizeResult(outputDirectory, sourceBytes, new FileInfo(weights).Length, [.. chosen.Order(StringComparer.Ordinal)], excluded);
    }

    /// <summary>A Linear layer's weight: a floating-point matrix named <c>*.weight</c> outside the embeddings and LayerNorms.</summary>
    public static bool IsLinearWeight(string name, SafeTensorInfo info) =>
        info.Shape.Length == 2 && DTypes.IsFloat(info.DType) && name.EndsWith(".weight", StringComparison.Ordinal) && name != TiedDecoder
        && !name.Contains("embeddings.", StringComparison.Ordinal) && !name.Contains("LayerNorm", StringComparison.Ordinal);

    private static bool IsWordEmbeddings(string name) => name.EndsWith("embeddings.word_embeddings.weight", StringComparison.Ordinal);

    /// <summary>A pattern matches the weight's module name (without <c>.weight</c>) or its full name.</summary>
    private static bool Matches(string pattern, string name) =>
        FileSystemName.MatchesSimpleExpression(pattern, name.AsSpan(0, name.Length - ".weight".Length), ignoreCase: false) || FileSystemName.MatchesSimpleExpression(pattern, name, ignoreCase: false);

    private static IEnumerable<string> SourceWeightFiles(string directory) =>
        File.Exists(Path.Combine(directory, Checkpoint.IndexFileName))
            ? Directory.EnumerateFiles(directory, "*.safetensors")
            : [Path.Combine(directory, Checkpoint.SingleFileName)];

    /// <summary>
    /// Copies the tokenizer, sentence-transformers and other small files (not config.json or weights), with the
    /// subdirectories that hold no weights (sentence-transformers modules, not a training run's <c>last</c> checkpoint).
    /// </summary>
    private static void CopySideFiles(string source, string destination, bool topLevel)
    {
        foreach (string file in Directory.EnumerateFiles(source))
        {
            string name = Path.GetFileName(file);
            if (topLevel && name is BertConfig.FileName or Checkpoint.IndexFileName || WeightExtensions.Any(e => name.EndsWith(e, StringComparison.OrdinalIgnoreCase))) continue;
            string target = Path.Combine(destination, name);
            AtomicFile.Write(target, stream =>
            {
                using var input = File.OpenRead(file);
                input.CopyTo(stream);
            });
        }
        foreach (string directory in Directory.EnumerateDirectories(source))
        {
            if (Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories).Any(f => WeightExtensions.Any(e => f.EndsWith(e, StringComparison.OrdinalIgnoreCase))))
                continue;
            string target = Path.Combine(destination, Path.GetFileName(directory));
            Directory.CreateDirectory(target);
            CopySideFiles(directory, target, topLevel: false);
        }
    }
}
