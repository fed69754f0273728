using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.IO;

namespace Engine;

/// <summary>
/// A sentence-transformers model's own embedding settings: <c>sentence_bert_config.json</c> (max_seq_length,
/// do_lower_case), <c>modules.json</c> (whether a Normalize module follows the pooling) and the pooling
/// module's <c>config.json</c> (usually <c>1_Pooling/config.json</c>). A null setting is one the directory
/// does not state; <see cref="SentenceEmbedder"/> then uses its own default.
/// </summary>
/// <remarks>
/// Mirrors what <c>SentenceTransformer(path)</c> reads: <c>Transformer</c> truncates to max_seq_length and
/// lower-cases the text first when do_lower_case is set; <c>Pooling</c> takes one mode (mean and CLS are
/// supported here); <c>Normalize</c> divides by the L2 norm.
/// </remarks>
public sealed record SentenceTransformersConfig(int? MaxSequenceLength = null, bool DoLowerCase = false, Pooling? Pooling = null, bool? Normalize = null)
{
    public const string FileName = "sentence_bert_config.json", ModulesFileName = "modules.json", PoolingDirectory = "1_Pooling";
    private const string ModuleType = "sentence_transformers.models.";

    /// <summary>The settings of <paramref name="directory"/>, or null when it has neither sentence_bert_config.json nor modules.json.</summary>
    public static SentenceTransformersConfig? Load(string directory)
    {
        string configPath = Path.Combine(directory, FileName), modulesPath = Path.Combine(directory, ModulesFileName);
        bool hasConfig = File.Exists(configPath), hasModules = File.Exists(modulesPath);
        if (!hasConfig && !hasModules) return null;
        var settings = new SentenceTransformersConfig();
        if (hasConfig)
        {
            var root = JsonInput.ReadObject(configPath);
            int? maxLength = root["max_seq_length"] switch
            {
                null => null,
                JsonValue v when v.TryGetValue(out int n) && n > 0 => n,
                var other => throw new EngineException($"{configPath}: 'max_seq_length' must be a positive integer, got {other.ToJsonString()}"),
            };
            bool lower = root["do_lower_case"] switch
            {
                null => false,
                JsonValue v when v.TryGetValue(out bool b) => b,
                var other => throw new EngineException($"{configPath}: 'do_lower_case' must be true or false, got {other.ToJsonString()}"),
            };
            settings = settings with { MaxSequenceLength = maxLength, DoLowerCase = lower };
        }
        if (hasModules) settings = ReadModules(directory, modulesPath, settings);
        return settings;
    }

    private static SentenceTransformersConfig ReadModules(string directory, string modulesPath, SentenceTransformersConfig settings)
    {
        var modules = JsonInput.ReadNode(modulesPath) as JsonArray ?? throw new EngineException($"{modulesPath}: not a JSON array of modules");
        bool normalize = false;
        Pooling? pooling = null;
        for (int i = 0; i < modules.Count; i++)
        {
            if (modules[i] is not JsonObject module || module["type"] is not JsonValue typeValue || !typeValue.TryGetValue(out string? type))
                throw new EngineException($"{modulesPath}: module {i} has no string 'type'");
            if (type == ModuleType + "Normalize") normalize = true;
            else if (type == ModuleType + "Pooling")
            {
                string path = module["path"] is JsonValue p && p.TryGetValue(out string? relative) ? relative : PoolingDirectory;
                if (path.Length == 0 || Path.IsPathRooted(path) || path.Split('/', '\\').Contains(".."))
                    throw new EngineException($"{modulesPath}: module {i} has path '{path}', which is not a folder inside the model");
                pooling = ReadPooling(Path.Combine(directory, path, "config.json"));
            }
        }
        return settings with { Pooling = pooling, Normalize = normalize };
    }

    private static Pooling ReadPooling(string path)
    {
        if (!File.Exists(path)) throw new EngineException($"{path}: the pooling module's configuration is missing");
        var root = JsonInput.ReadObject(path);
        var modes = root.Where(p => p.Key.StartsWith("pooling_mode_", StringComparison.Ordinal))
            .Where(p => p.Value is JsonValue v && v.TryGetValue(out bool on) ? on
                : p.Value is null ? false : throw new EngineException($"{path}: '{p.Key}' must be true or false, got {p.Value.ToJsonString()}"))
            .Select(p => p.Key).ToList();
        return modes switch
        {
            ["pooling_mode_mean_tokens"] => Engine.Pooling.Mean,
            ["pooling_mode_cls_token"] => Engine.Pooling.Cls,
            [] => throw new EngineException($"{path}: no pooling mode is set"),
            _ => throw new EngineException($"{path}: pooling {string.Join(" + ", modes)} is not supported (pooling_mode_mean_tokens or pooling_mode_cls_token)"),
        };
    }

    /// <summary>Writes the three files sentence-transformers reads (Transformer, Pooling, and Normalize when set).</summary>
    public void Save(string directory, int hiddenSize)
    {
        var config = new JsonObject { ["do_lower_case"] = DoLowerCase };
        if (MaxSequenceLength is { } maxLength) config["max_seq_length"] = maxLength;
        var options = new JsonSerializerOptions { WriteIndented = true };
        AtomicFile.WriteText(Path.Combine(directory, FileName), config.ToJsonString(options));
        var modules = new JsonArray
        {
            new JsonObject { ["idx"] = 0, ["name"] = "0", ["path"] = "", ["type"] = ModuleType + "Transformer" },
            new JsonObject { ["idx"] = 1, ["name"] = "1", ["path"] = PoolingDirectory, ["type"] = ModuleType + "Pooling" },
        };
        if (Normalize == true) modules.Add(new JsonObject { ["idx"] = 2, ["name"] = "2", ["path"] = "2_Normalize", ["type"] = ModuleType + "Normalize" });
        AtomicFile.WriteText(Path.Combine(directory, ModulesFileName), modules.ToJsonString(options));
        var pooling = new JsonObject
        {
            ["word_embedding_dimension"] = hiddenSize,
            ["pooling_mode_cls_token"] = Pooling == Engine.Pooling.Cls,
            ["pooling_mode_mean_tokens"] = Pooling != Engine.Pooling.Cls,
            ["pooling_mode_max_tokens"] = false,
            ["pooling_mode_mean_sqrt_len_tokens"] = false,
        };
        AtomicFile.WriteText(Path.Combine(directory, PoolingDirectory, "config.json"), pooling.ToJsonString(options));
    }
}
