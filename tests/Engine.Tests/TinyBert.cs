using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Reference;

namespace Engine.Tests;

/// <summary>Writes small random BERT checkpoints in the Hugging Face layout, with the variants loaders must accept.</summary>
internal static class TinyBert
{
    public const int Vocab = 11, Hidden = 8, Heads = 2, Layers = 2, Intermediate = 12, Positions = 16, Types = 2;

    public static JsonObject Config() => new()
    {
        ["architectures"] = new JsonArray("BertModel"),
        ["model_type"] = "bert",
        ["vocab_size"] = Vocab,
        ["hidden_size"] = Hidden,
        ["num_hidden_layers"] = Layers,
        ["num_attention_heads"] = Heads,
        ["intermediate_size"] = Intermediate,
        ["max_position_embeddings"] = Positions,
        ["type_vocab_size"] = Types,
        ["layer_norm_eps"] = 1e-12,
        ["hidden_act"] = "gelu",
        ["some_unknown_field"] = "ignored",
    };

    /// <summary>Parameter name → shape, in Hugging Face's names.</summary>
    public static List<(string Name, long[] Shape)> Parameters(bool pooler = true)
    {
        var list = new List<(string, long[])>
        {
            ("embeddings.word_embeddings.weight", [Vocab, Hidden]),
            ("embeddings.position_embeddings.weight", [Positions, Hidden]),
            ("embeddings.token_type_embeddings.weight", [Types, Hidden]),
            ("embeddings.LayerNorm.weight", [Hidden]),
            ("embeddings.LayerNorm.bias", [Hidden]),
        };
        for (int l = 0; l < Layers; l++)
        {
            string p = $"encoder.layer.{l}.";
            foreach (string qkv in new[] { "query", "key", "value" })
            {
                list.Add(($"{p}attention.self.{qkv}.weight", [Hidden, Hidden]));
                list.Add(($"{p}attention.self.{qkv}.bias", [Hidden]));
            }
            list.Add(($"{p}attention.output.dense.weight", [Hidden, Hidden]));
            list.Add(($"{p}attention.output.dense.bias", [Hidden]));
            list.Add(($"{p}attention.output.LayerNorm.weight", [Hidden]));
            list.Add(($"{p}attention.output.LayerNorm.bias", [Hidden]));
            list.Add(($"{p}intermediate.dense.weight", [Intermediate, Hidden]));
            list.Add(($"{p}intermediate.dense.bias", [Intermediate]));
            list.Add(($"{p}output.dense.weight", [Hidden, Intermediate]));
            list.Add(($"{p}output.dense.bias", [Hidden]));
            list.Add(($"{p}output.LayerNorm.weight", [Hidden]));
            list.Add(($"{p}output.LayerNorm.bias", [Hidden]));
        }
        if (pooler)
        {
            list.Add(("pooler.dense.weight", [Hidden, Hidden]));
            list.Add(("pooler.dense.bias", [Hidden]));
        }
        return list;
    }

    /// <summary>Random F32 tensors for every parameter, with the given renaming applied.</summary>
    public static List<SafeTensorData> Tensors(Func<string, string>? rename = null, bool pooler = true)
    {
        int seed = 100;
        return [.. Parameters(pooler).Select(p => SafeTensorData.FromFloats((rename ?? (n => n))(p.Name),
            OpCases.Random((int)p.Shape.Aggregate(1L, (a, b) => a * b), seed++, 0.5f), p.Shape))];
    }

    public static string Write(string directory, IEnumerable<SafeTensorData>? tensors = null, JsonObject? config = null)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "config.json"), (config ?? Config()).ToJsonString());
        SafeTensorsWriter.Write(Path.Combine(directory, "model.safetensors"), tensors ?? Tensors());
        return directory;
    }

    /// <summary>The <see cref="Vocab"/> WordPiece tokens of the tiny models that the command line runs.</summary>
    public static readonly string[] Words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "a", "##s"];

    /// <summary>A tiny base model with a vocabulary, which every verb can load.</summary>
    public static string WriteWithVocabulary(string directory, IEnumerable<SafeTensorData>? tensors = null, JsonObject? config = null)
    {
        Write(directory, tensors, config);
        File.WriteAllLines(Path.Combine(directory, "vocab.txt"), Words);
        return directory;
    }

    /// <summary>A tiny classifier checkpoint (labels LABEL_0…, a random head), as fine-tuning writes one.</summary>
    public static string WriteClassifier(string directory, int labels = 3)
    {
        string baseModel = WriteWithVocabulary(directory + "-base");
        using var model = Engine.Models.Bert.BertForSequenceClassification.Load(baseModel, new Engine.Backends.Cpu.CpuBackend(), numLabels: labels, seed: 1);
        model.Save(directory, baseModel);
        return directory;
    }
}

/// <summary>A temporary directory removed after the test.</summary>
internal sealed class TempDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("engine-test-").FullName;

    public string this[string name] => System.IO.Path.Combine(Path, name);

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
