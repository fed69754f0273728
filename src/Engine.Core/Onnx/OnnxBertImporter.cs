using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Engine.IO;
using Engine.Models.Bert;
using Engine.Tokenization;

namespace Engine.Onnx;

/// <summary>
/// Turns a BERT graph exported from PyTorch to ONNX back into a Hugging Face model directory
/// (config.json, model.safetensors with Linear weights in PyTorch's [out, in] layout, vocab.txt,
/// tokenizer_config.json).
/// </summary>
/// <remarks>
/// PyTorch's exporter keeps parameter names for initializers that are used as they are (embeddings, biases,
/// LayerNorm) but stores each Linear weight transposed ([in, out]) under an anonymous name, as the second
/// input of a MatMul. That weight is named by following the graph: the MatMul's output is added to a known
/// <c>….bias</c>, whose module owns the weight. Integer initializers and Constant nodes are the graph's
/// shape constants; every floating-point initializer must be mapped, or the import fails naming it.
/// The configuration is read off the weights' shapes and the graph (heads from the attention Reshape,
/// layer-norm epsilon from the normalisation's Add, GELU from Erf).
/// </remarks>
public static partial class OnnxBertImporter
{
    private const int OnnxFloat = 1, OnnxFloat16 = 10, OnnxDouble = 11, OnnxBFloat16 = 16;

    /// <summary>Imports <paramref name="onnxPath"/> with <paramref name="vocabPath"/> into <paramref name="outputDirectory"/>.</summary>
    /// <param name="doLowerCase">Null: lower-case when no vocabulary token (but the [SPECIAL] ones) has an ASCII capital.</param>
    public static BertConfig Import(string onnxPath, string vocabPath, string outputDirectory, bool? doLowerCase = null)
    {
        var graph = OnnxGraph.Load(onnxPath);
        var weights = MapWeights(graph, onnxPath);
        var config = InferConfig(graph, weights, onnxPath);

        var vocabLines = File.Exists(vocabPath) ? File.ReadAllLines(vocabPath) : throw new EngineException($"{vocabPath}: vocabulary file not found");
        if (vocabLines.Length != config.VocabSize)
            throw new EngineException($"{vocabPath}: {vocabLines.Length} tokens, but the graph's word embeddings have {config.VocabSize} rows");
        bool lower = doLowerCase ?? !vocabLines.Any(t => !(t.StartsWith('[') && t.EndsWith(']')) && t.Any(char.IsAsciiLetterUpper));

        Directory.CreateDirectory(outputDirectory);
        SafeTensorsWriter.Write(Path.Combine(outputDirectory, Checkpoint.SingleFileName),
            weights.OrderBy(w => w.Key, StringComparer.Ordinal).Select(w => SafeTensorData.FromFloats(w.Key, w.Value.Values, w.Value.Shape)),
            new Dictionary<string, string> { ["format"] = "pt" });
        var tokenizer = new BertTokenizer(vocabLines, new BertTokenizerOptions { DoLowerCase = lower });
        tokenizer.Save(outputDirectory);
        config.Save(Path.Combine(outputDirectory, BertConfig.FileName));
        return config;
    }

    /// <summary>Hugging Face name → (values, shape) for every floating-point initializer of the graph.</summary>
    public static Dictionary<string, (float[] Values, long[] Shape)> MapWeights(OnnxGraph graph, string source)
    {
        var consumers = graph.Nodes.SelectMany(n => n.Inputs.Select(i => (Input: i, Node: n)))
            .ToLookup(x => x.Input, x => x.Node, StringComparer.Ordinal);
        var weights = new Dictionary<string, (float[], long[])>(StringComparer.Ordinal);
        var unmapped = new List<string>();
        foreach (var tensor in graph.Initializers.Values.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            if (tensor.DataType is not (OnnxFloat or OnnxFloat16 or OnnxDouble or OnnxBFloat16)) continue; // shape constant
            if (ParameterName().IsMatch(tensor.Name))
            {
                weights[tensor.Name] = (tensor.Values, tensor.Dims);
                continue;
            }
            string? name = LinearWeightName(tensor, graph, consumers);
            if (name is null || tensor.Dims.Length != 2) unmapped.Add(tensor.Name);
            else if (!weights.TryAdd(name, (Transpose(tensor.Values, (int)tensor.Dims[0], (int)tensor.Dims[1]), [tensor.Dims[1], tensor.Dims[0]])))
                throw new EngineException($"{source}: initializers map twice to '{name}'");
        }
        if (unmapped.Count > 0)
            throw new EngineException($"{source}: cannot map initializer(s) {string.Join(", ", unmapped.Select(u => $"'{u}'"))} to a Hugging Face parameter");
        return weights;
    }

    /// <summary>The weight name of an anonymous MatMul initializer: the module of the bias added to its product.</summary>
    private static string? LinearWeightName(OnnxTensor tensor, OnnxGraph graph, ILookup<string, OnnxNode> consumers)
    {
        foreach (var matMul in consumers[tensor.Name].Where(n => n.OpType == "MatMul" && n.Inputs.Length == 2 && n.Inputs[1] == tensor.Name))
            foreach (var add in matMul.Outputs.Take(1).SelectMany(output => consumers[output]).Where(n => n.OpType == "Add"))
                foreach (string input in add.Inputs)
                    if (input.EndsWith(".bias", StringComparison.Ordinal) && graph.Initializers.ContainsKey(input))
                        return input[..^".bias".Length] + ".weight";
        return null;
    }

    /// <summary>The configuration read off the mapped weights' shapes and the graph (heads, layer-norm epsilon, activation).</summary>
    public static BertConfig InferConfig(OnnxGraph graph, Dictionary<string, (float[] Values, long[] Shape)> weights, string source)
    {
        long[] Shape(string name, int rank) => !weights.TryGetValue(name, out var w) ? throw new EngineException($"{source}: graph has no initializer for '{name}'")
            : w.Shape.Length == rank ? w.Shape
            : throw new EngineException($"{source}: initializer '{name}' has dims [{string.Join(", ", w.Shape)}], not {rank} of them");
        var word = Shape("embeddings.word_embeddings.weight", 2);
        int hidden = (int)word[1];
        int layers = weights.Keys.Select(k => LayerIndex().Match(k)).Where(m => m.Success)
            .Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).DefaultIfEmpty(-1).Max() + 1;
        if (layers == 0) throw new EngineException($"{source}: graph has no encoder.layer.N parameters");
        var constants = Constants(graph);
        int heads = InferHeads(graph, constants, hidden) ?? throw new EngineException($"{source}: cannot find the number of attention heads (no Reshape to heads × head size)");
        double eps = InferLayerNormEps(graph, constants) ?? throw new EngineException($"{source}: cannot find the layer-norm epsilon");
        if (!graph.Nodes.Any(n => n.OpType == "Erf"))
            throw new EngineException($"{source}: no Erf node: only the exact GELU activation is supported");
        return BertConfig.FromJson(new JsonObject
        {
            ["architectures"] = new JsonArray("BertModel"),
            ["model_type"] = "bert",
            ["vocab_size"] = word[0],
            ["hidden_size"] = hidden,
            ["num_hidden_layers"] = layers,
            ["num_attention_heads"] = heads,
            ["intermediate_size"] = Shape("encoder.layer.0.intermediate.dense.weight", 2)[0],
            ["hidden_act"] = "gelu",
            ["max_position_embeddings"] = Shape("embeddings.position_embeddings.weight", 2)[0],
            ["type_vocab_size"] = Shape("embeddings.token_type_embeddings.weight", 2)[0],
            ["layer_norm_eps"] = eps,
            ["pad_token_id"] = 0,
            ["position_embedding_type"] = "absolute",
        }, source);
    }

    /// <summary>Single-valued constants by output name: integer/float initializers and Constant nodes.</summary>
    private static Dictionary<string, float> Constants(OnnxGraph graph)
    {
        var constants = new Dictionary<string, float>(StringComparer.Ordinal);
        foreach (var t in graph.Initializers.Values.Where(t => t.Values.Length == 1)) constants[t.Name] = t.Values[0];
        foreach (var n in graph.Nodes.Where(n => n.OpType == "Constant" && n.Value is { Values.Length: 1 } && n.Outputs.Length == 1))
            constants[n.Outputs[0]] = n.Value!.Values[0];
        return constants;
    }

    /// <summary>The attention's view to (B, T, NH, HS): a Concat ending in two constants NH, HS with NH·HS = C.</summary>
    private static int? InferHeads(OnnxGraph graph, Dictionary<string, float> constants, int hidden)
    {
        foreach (var concat in graph.Nodes.Where(n => n.OpType == "Concat" && n.Inputs.Length == 4))
            if (constants.TryGetValue(concat.Inputs[2], out float heads) && constants.TryGetValue(concat.Inputs[3], out float size)
                && heads >= 1 && (int)heads * (int)size == hidden)
                return (int)heads;
        return null;
    }

    /// <summary>The decomposed LayerNorm's variance + ε: an Add of a ReduceMean output and a constant.</summary>
    private static double? InferLayerNormEps(OnnxGraph graph, Dictionary<string, float> constants)
    {
        var reduceMeans = graph.Nodes.Where(n => n.OpType == "ReduceMean").SelectMany(n => n.Outputs.Take(1)).ToHashSet(StringComparer.Ordinal);
        foreach (var add in graph.Nodes.Where(n => n.OpType == "Add" && n.Inputs.Length == 2))
            for (int i = 0; i < 2; i++)
                if (reduceMeans.Contains(add.Inputs[i]) && constants.TryGetValue(add.Inputs[1 - i], out float eps))
                    return double.Parse(eps.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        return null;
    }

    private static float[] Transpose(float[] values, int rows, int cols)
    {
        var result = new float[values.Length];
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                result[c * rows + r] = values[r * cols + c];
        return result;
    }

    [GeneratedRegex(@"^(embeddings|encoder|pooler)\.[\w.]+\.(weight|bias)$")]
    private static partial Regex ParameterName();

    [GeneratedRegex(@"^encoder\.layer\.(\d+)\.")]
    private static partial Regex LayerIndex();
}
