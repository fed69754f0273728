using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Models.Bert;

namespace Engine.Reference;

/// <summary>The shape of a BERT encoder, for random-weight models of real sizes.</summary>
public sealed record BertShape(string Name, int Vocab, int Hidden, int Layers, int Heads, int Intermediate, int Positions, int Types = 2)
{
    public static readonly BertShape MiniLM = new("all-MiniLM-L6-v2-shaped", 30522, 384, 6, 12, 1536, 512);
    public static readonly BertShape BertBase = new("bert-base-shaped", 30522, 768, 12, 12, 3072, 512);

    /// <summary>Multiply-adds ×2 of one forward pass at (B,T): the GEMMs and attention's two products.</summary>
    public double ForwardFlops(int B, int T)
    {
        double tokens = (double)B * T;
        double perLayer = 2 * tokens * (4.0 * Hidden * Hidden + 2.0 * Hidden * Intermediate) + 4.0 * B * T * T * Hidden;
        return perLayer * Layers;
    }
}

/// <summary>
/// Writes a Hugging Face BERT directory (config.json, model.safetensors with a pooler) with random weights
/// of a given shape: for checks and timings where the values do not matter but the sizes do, and for
/// loading the same weights into another framework (transformers' from_pretrained).
/// </summary>
public static class RandomBert
{
    public static string Write(string directory, BertShape shape, int seed = 1)
    {
        Directory.CreateDirectory(directory);
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("BertModel"),
            ["model_type"] = "bert",
            ["vocab_size"] = shape.Vocab,
            ["hidden_size"] = shape.Hidden,
            ["num_hidden_layers"] = shape.Layers,
            ["num_attention_heads"] = shape.Heads,
            ["intermediate_size"] = shape.Intermediate,
            ["max_position_embeddings"] = shape.Positions,
            ["type_vocab_size"] = shape.Types,
            ["layer_norm_eps"] = 1e-12,
            ["hidden_act"] = "gelu",
            ["hidden_dropout_prob"] = 0.0,
            ["attention_probs_dropout_prob"] = 0.0,
        };
        BertConfig.FromJson(config, directory).Save(Path.Combine(directory, BertConfig.FileName));
        var tensors = new List<SafeTensorData>();
        void Add(string name, float scale, params long[] dims)
        {
            int count = (int)dims.Aggregate(1L, (a, b) => a * b);
            // LayerNorm weights near 1, everything else small, as in a trained model.
            var values = OpCases.Random(count, seed + tensors.Count, scale);
            if (name.EndsWith("LayerNorm.weight", StringComparison.Ordinal)) for (int i = 0; i < count; i++) values[i] += 1f;
            tensors.Add(SafeTensorData.FromFloats(name, values, dims));
        }
        int C = shape.Hidden, I = shape.Intermediate;
        float linearScale = 1f / MathF.Sqrt(C);
        Add("embeddings.word_embeddings.weight", 0.05f, shape.Vocab, C);
        Add("embeddings.position_embeddings.weight", 0.05f, shape.Positions, C);
        Add("embeddings.token_type_embeddings.weight", 0.05f, shape.Types, C);
        Add("embeddings.LayerNorm.weight", 0.1f, C);
        Add("embeddings.LayerNorm.bias", 0.1f, C);
        for (int l = 0; l < shape.Layers; l++)
        {
            string p = $"encoder.layer.{l}.";
            foreach (string part in new[] { "query", "key", "value" })
            {
                Add($"{p}attention.self.{part}.weight", linearScale, C, C);
                Add($"{p}attention.self.{part}.bias", 0.02f, C);
            }
            Add($"{p}attention.output.dense.weight", linearScale, C, C);
            Add($"{p}attention.output.dense.bias", 0.02f, C);
            Add($"{p}attention.output.LayerNorm.weight", 0.1f, C);
            Add($"{p}attention.output.LayerNorm.bias", 0.1f, C);
            Add($"{p}intermediate.dense.weight", linearScale, I, C);
            Add($"{p}intermediate.dense.bias", 0.02f, I);
            Add($"{p}output.dense.weight", 1f / MathF.Sqrt(I), C, I);
            Add($"{p}output.dense.bias", 0.02f, C);
            Add($"{p}output.LayerNorm.weight", 0.1f, C);
            Add($"{p}output.LayerNorm.bias", 0.1f, C);
        }
        Add("pooler.dense.weight", linearScale, C, C);
        Add("pooler.dense.bias", 0.02f, C);
        SafeTensorsWriter.Write(Path.Combine(directory, Checkpoint.SingleFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        return directory;
    }

    /// <summary>A (B,T) batch of random token ids with ragged lengths (row b keeps T − 7b real tokens, at least 1).</summary>
    public static BertBatch Batch(int B, int T, int vocab, int seed = 1)
    {
        var random = new Random(seed);
        var ids = new int[B * T];
        var mask = new int[B * T];
        for (int b = 0; b < B; b++)
        {
            int length = Math.Max(1, T - 7 * b % T);
            for (int t = 0; t < T; t++)
            {
                ids[b * T + t] = t < length ? random.Next(1000, vocab) : 0;
                mask[b * T + t] = t < length ? 1 : 0;
            }
        }
        return new BertBatch(B, T, ids, new int[B * T], mask);
    }
}
