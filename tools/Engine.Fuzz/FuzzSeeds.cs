using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json.Nodes;
using Engine.IO;

namespace Engine.Fuzz;

/// <summary>Valid inputs of each reader, which the fuzzers mutate: small, and covering the variants each format allows.</summary>
public static class FuzzSeeds
{
    public static readonly string[] Vocabulary = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "a", "##s", "ü", "中"];
    public const string Text = "The good movies, [MASK] a bad movie; ÜBER 中文\ttabs";

    public static JsonObject Config() => new()
    {
        ["architectures"] = new JsonArray("BertModel"),
        ["model_type"] = "bert",
        ["vocab_size"] = Vocabulary.Length,
        ["hidden_size"] = 8,
        ["num_hidden_layers"] = 1,
        ["num_attention_heads"] = 2,
        ["intermediate_size"] = 12,
        ["max_position_embeddings"] = 16,
        ["type_vocab_size"] = 2,
        ["layer_norm_eps"] = 1e-12,
        ["hidden_act"] = "gelu",
        ["hidden_dropout_prob"] = 0.1,
        ["attention_probs_dropout_prob"] = 0.1,
    };

    public static string ClassifierConfig()
    {
        var config = Config();
        config["architectures"] = new JsonArray("BertForSequenceClassification");
        config["num_labels"] = 2;
        config["id2label"] = new JsonObject { ["0"] = "neg", ["1"] = "pos" };
        config["label2id"] = new JsonObject { ["neg"] = 0, ["pos"] = 1 };
        config["problem_type"] = "single_label_classification";
        config["classifier_dropout"] = null;
        return config.ToJsonString();
    }

    private static byte[] Floats(params float[] values) => MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    private static byte[] Write(IEnumerable<SafeTensorData> tensors, Dictionary<string, string>? metadata = null)
    {
        string path = Path.Combine(Path.GetTempPath(), $"engine-fuzz-seed-{Guid.NewGuid():N}.safetensors");
        try
        {
            SafeTensorsWriter.Write(path, tensors, metadata);
            return File.ReadAllBytes(path);
        }
        finally { File.Delete(path); }
    }

    public static IEnumerable<byte[]> SafeTensors()
    {
        yield return Write([
            SafeTensorData.FromFloats("embeddings.LayerNorm.weight", [1f, 0.5f, -2f, 3f], 4),
            SafeTensorData.FromFloats("encoder.layer.0.attention.self.query.weight", [.. Enumerable.Range(0, 6).Select(i => i * 0.25f)], 2, 3),
            SafeTensorData.FromInt64("position_ids", [0, 1, 2], 1, 3),
            new("half", DType.F16, [2], [0x00, 0x3C, 0x00, 0xC0]),
            new("brain", DType.BF16, [2], [0x80, 0x3F, 0x00, 0x40]),
            new("scalar", DType.F32, [], Floats(7f)),
            new("empty", DType.F32, [0], []),
        ], new Dictionary<string, string> { ["format"] = "pt" });
        yield return Write([SafeTensorData.FromFloats("w", [1f], 1)]);
    }

    /// <summary>The two shards the checkpoint-index seeds name.</summary>
    public static (string, byte[])[] Shards() =>
    [
        ("model-00001-of-00002.safetensors", Write([SafeTensorData.FromFloats("a.weight", [1f, 2f], 2)])),
        ("model-00002-of-00002.safetensors", Write([SafeTensorData.FromFloats("b.weight", [3f, 4f, 5f], 3), SafeTensorData.FromFloats("c.bias", [6f], 1)])),
    ];

    public static IEnumerable<byte[]> CheckpointIndex()
    {
        yield return Encoding.UTF8.GetBytes("{\"metadata\": {\"total_size\": 24}, \"weight_map\": {\"a.weight\": \"model-00001-of-00002.safetensors\", " +
            "\"b.weight\": \"model-00002-of-00002.safetensors\", \"c.bias\": \"model-00002-of-00002.safetensors\"}}");
    }

    public static byte[] TokenizerConfig() => Encoding.UTF8.GetBytes("""
        {"tokenizer_class": "BertTokenizer", "do_lower_case": true, "strip_accents": null, "tokenize_chinese_chars": true,
         "unk_token": "[UNK]", "cls_token": {"content": "[CLS]", "lstrip": false}, "sep_token": "[SEP]", "pad_token": "[PAD]", "mask_token": "[MASK]",
         "model_max_length": 512}
        """);

    /// <summary>A real BERT graph exported by PyTorch at a tiny size (Seeds/tiny-bert.onnx, made by tools/fuzz/make_onnx_seed.py).</summary>
    public static IEnumerable<byte[]> Onnx()
    {
        yield return File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Seeds", "tiny-bert.onnx"));
    }

    public static byte[] Csv(char separator)
    {
        string s = separator.ToString();
        var lines = separator == ','
            ? new[] { "text,pair,label", "\"good movie, really\",the movie,pos", "\"a \"\"bad\"\"\nmovie\",a movie,neg", "the movies,,1" }
            : new[] { $"text{s}pair{s}label", $"good movie{s}the movie{s}pos", $"bad movie{s}a movie{s}neg", $"the movies{s}{s}1" };
        return Encoding.UTF8.GetBytes(string.Join("\r\n", lines) + "\n");
    }

    public static byte[] JsonLines() => Encoding.UTF8.GetBytes(string.Join('\n',
        "{\"text\": \"good movie\", \"pair\": \"the movie\", \"label\": \"pos\"}",
        "{\"text\": \"bad movie\", \"label\": 0}",
        "{\"input_ids\": [2, 5, 7, 3], \"attention_mask\": [1, 1, 1, 1], \"token_type_ids\": [0, 0, 0, 0], \"label\": 1}",
        "",
        "{\"text\": \"ÜBER 中文\", \"label\": 2.5}") + "\n");

    /// <summary>encode's input: text lines, and JSON lines of token ids.</summary>
    public static byte[] EncodeInput() => Encoding.UTF8.GetBytes(string.Join('\n',
        "good movie",
        "{\"input_ids\": [2, 5, 7, 3], \"attention_mask\": [1, 1, 1, 0], \"token_type_ids\": [0, 0, 1, 1]}",
        "ÜBER 中文 the movies",
        "{\"input_ids\": [2, 3]}") + "\n");

    public static byte[] TrainerState() => Encoding.UTF8.GetBytes(
        "{\"epoch\": 2, \"optimizer_steps\": 12, \"best\": {\"loss\": 0.25, \"count\": 10, \"accuracy\": 0.9, \"f1\": 0.8, \"pearson\": null, \"spearman\": null}, \"epochs_without_improvement\": 0}");

    public static byte[] Modules() => Encoding.UTF8.GetBytes("""
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
         {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
         {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]
        """);

    public const string PoolingConfig = """
        {"word_embedding_dimension": 8, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": false,
         "pooling_mode_mean_sqrt_len_tokens": false, "include_prompt": true}
        """;
}
