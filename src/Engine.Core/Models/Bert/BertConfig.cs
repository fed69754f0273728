using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.IO;

namespace Engine.Models.Bert;

/// <summary>
/// A BERT <c>config.json</c>, read with the Hugging Face field names. Unknown fields are kept (in
/// <see cref="Raw"/>) but otherwise ignored; a missing required field is an error naming it.
/// </summary>
/// <remarks>Mirrors <c>transformers.BertConfig</c>; defaults are that class's defaults.</remarks>
public sealed record BertConfig
{
    public const string FileName = "config.json";

    public required int VocabSize { get; init; }
    public required int HiddenSize { get; init; }
    public required int NumHiddenLayers { get; init; }
    public required int NumAttentionHeads { get; init; }
    public required int IntermediateSize { get; init; }
    public required int MaxPositionEmbeddings { get; init; }
    public int TypeVocabSize { get; init; } = 2;
    public double LayerNormEps { get; init; } = 1e-12;
    public string HiddenAct { get; init; } = "gelu";
    public double HiddenDropoutProb { get; init; } = 0.1;
    public double AttentionProbsDropoutProb { get; init; } = 0.1;
    /// <summary><c>classifier_dropout</c>: the dropout before a classification head; null: hidden_dropout_prob.</summary>
    public double? ClassifierDropout { get; init; }
    public int PadTokenId { get; init; }
    /// <summary>The standard deviation of freshly initialised weights (Hugging Face's <c>initializer_range</c>).</summary>
    public double InitializerRange { get; init; } = 0.02;
    public string ModelType { get; init; } = "bert";

    /// <summary>The whole JSON object as read, so that writing a checkpoint keeps fields this engine does not use.</summary>
    public JsonObject Raw { get; init; } = [];

    public int HeadSize => HiddenSize / NumAttentionHeads;

    /// <summary>Whether config.json's <c>architectures</c> names <paramref name="name"/> (e.g. a fine-tuned head's class).</summary>
    public bool HasArchitecture(string name) =>
        Raw["architectures"] is JsonArray architectures && architectures.Any(a => a is JsonValue v && v.TryGetValue(out string? s) && s == name);

    public static BertConfig Load(string path)
    {
        if (!File.Exists(path)) throw new EngineException($"{path}: not found (a Hugging Face model directory holds config.json)");
        return FromJson(JsonInput.ReadObject(path), path);
    }

    public static BertConfig FromJson(JsonObject root, string source)
    {
        int Required(string field) => GetInt(root, field, source) ?? throw new EngineException($"{source}: missing required field '{field}'");
        var config = new BertConfig
        {
            VocabSize = Required("vocab_size"),
            HiddenSize = Required("hidden_size"),
            NumHiddenLayers = Required("num_hidden_layers"),
            NumAttentionHeads = Required("num_attention_heads"),
            IntermediateSize = Required("intermediate_size"),
            MaxPositionEmbeddings = Required("max_position_embeddings"),
            TypeVocabSize = GetInt(root, "type_vocab_size", source) ?? 2,
            LayerNormEps = GetNumber(root, "layer_norm_eps", source) ?? 1e-12,
            HiddenAct = GetString(root, "hidden_act", source) ?? "gelu",
            HiddenDropoutProb = GetNumber(root, "hidden_dropout_prob", source) ?? 0.1,
            AttentionProbsDropoutProb = GetNumber(root, "attention_probs_dropout_prob", source) ?? 0.1,
            ClassifierDropout = GetNumber(root, "classifier_dropout", source),
            PadTokenId = GetInt(root, "pad_token_id", source) ?? 0,
            InitializerRange = GetNumber(root, "initializer_range", source) ?? 0.02,
            ModelType = GetString(root, "model_type", source) ?? "bert",
            Raw = root,
        };
        config.Validate(source);
        return config;
    }

    private void Validate(string source)
    {
        void Positive(string field, int value)
        {
            if (value <= 0) throw new EngineException($"{source}: '{field}' must be positive, got {value}");
        }
        Positive("vocab_size", VocabSize);
        Positive("hidden_size", HiddenSize);
        Positive("num_hidden_layers", NumHiddenLayers);
        Positive("num_attention_heads", NumAttentionHeads);
        Positive("intermediate_size", IntermediateSize);
        Positive("max_position_embeddings", MaxPositionEmbeddings);
        Positive("type_vocab_size", TypeVocabSize);
        foreach (var (field, probability) in new[] { ("hidden_dropout_prob", HiddenDropoutProb), ("attention_probs_dropout_prob", AttentionProbsDropoutProb), ("classifier_dropout", ClassifierDropout ?? 0) })
            if (probability is < 0 or >= 1) throw new EngineException($"{source}: '{field}' must be in [0, 1), got {probability}");
        if (!double.IsFinite(InitializerRange) || InitializerRange <= 0)
            throw new EngineException($"{source}: 'initializer_range' must be a positive number, got {InitializerRange}");
        if (HiddenSize % NumAttentionHeads != 0)
            throw new EngineException($"{source}: 'hidden_size' {HiddenSize} is not a multiple of 'num_attention_heads' {NumAttentionHeads}");
        if (HiddenAct != "gelu")
            throw new EngineException($"{source}: 'hidden_act' '{HiddenAct}' is not supported (only the exact erf 'gelu')");
        string positions = GetString(Raw, "position_embedding_type", source) ?? "absolute";
        if (positions != "absolute")
            throw new EngineException($"{source}: 'position_embedding_type' '{positions}' is not supported (only 'absolute')");
    }

    /// <summary>The JSON to write: <see cref="Raw"/> with this record's values over it.</summary>
    public JsonObject ToJson()
    {
        var json = (JsonObject)Raw.DeepClone();
        json["model_type"] = ModelType;
        json["vocab_size"] = VocabSize;
        json["hidden_size"] = HiddenSize;
        json["num_hidden_layers"] = NumHiddenLayers;
        json["num_attention_heads"] = NumAttentionHeads;
        json["intermediate_size"] = IntermediateSize;
        json["hidden_act"] = HiddenAct;
        json["hidden_dropout_prob"] = HiddenDropoutProb;
        json["attention_probs_dropout_prob"] = AttentionProbsDropoutProb;
        json["max_position_embeddings"] = MaxPositionEmbeddings;
        json["type_vocab_size"] = TypeVocabSize;
        json["layer_norm_eps"] = LayerNormEps;
        json["pad_token_id"] = PadTokenId;
        json["initializer_range"] = InitializerRange;
        return json;
    }

    /// <summary>
    /// The sizes of pre-training from scratch: Google's BERT miniatures (Turc et al., 2019) tiny (L2/H128), mini (L4/H256),
    /// small (L4/H512) and BERT-base (L12/H768); heads of 64 dimensions, FFN 4H, 512 positions, Hugging Face's other defaults.
    /// </summary>
    public static BertConfig Preset(string name, int vocabSize)
    {
        (int layers, int hidden) = name switch
        {
            "tiny" => (2, 128),
            "mini" => (4, 256),
            "small" => (4, 512),
            "base" => (12, 768),
            _ => throw new EngineException($"unknown model size '{name}'; expected {string.Join(", ", PresetNames)} or a config.json"),
        };
        var config = new BertConfig
        {
            VocabSize = vocabSize, HiddenSize = hidden, NumHiddenLayers = layers, NumAttentionHeads = hidden / 64,
            IntermediateSize = 4 * hidden, MaxPositionEmbeddings = 512,
        };
        return FromJson(config.ToJson(), $"preset '{name}'");
    }

    public static readonly string[] PresetNames = ["tiny", "mini", "small", "base"];

    public void Save(string path) =>
        AtomicFile.WriteText(path, ToJson().ToJsonString(new JsonSerializerOptions { WriteIndented = true }));

    private static string? GetString(JsonObject root, string field, string source)
    {
        if (!root.TryGetPropertyValue(field, out var node) || node is null) return null;
        return node.GetValueKind() == JsonValueKind.String ? node.GetValue<string>()
            : throw new EngineException($"{source}: field '{field}' must be a string, got {node.ToJsonString()}");
    }

    private static double? GetNumber(JsonObject root, string field, string source)
    {
        if (!root.TryGetPropertyValue(field, out var node) || node is null) return null;
        return node.GetValueKind() == JsonValueKind.Number
            ? double.Parse(node.ToJsonString(), System.Globalization.CultureInfo.InvariantCulture)
            : throw new EngineException($"{source}: field '{field}' must be a number, got {node.ToJsonString()}");
    }

    private static int? GetInt(JsonObject root, string field, string source)
    {
        double? number = GetNumber(root, field, source);
        if (number is not { } d) return null;
        return d == Math.Floor(d) && d >= int.MinValue && d <= int.MaxValue ? (int)d
            : throw new EngineException($"{source}: field '{field}' must be an integer, got {d}");
    }
}
