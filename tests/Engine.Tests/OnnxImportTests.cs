using System.Text.Json.Nodes;
using Engine.IO;
using Engine.Onnx;
using Engine.Reference;

namespace Engine.Tests;

/// <summary>Import of the real PyTorch-exported graphs, and its refusal to guess.</summary>
public sealed class OnnxImportTests
{
    [Fact]
    public void ImportedMiniLMHasTheExpectedConfigAndTransposedLinearWeights()
    {
        var pretrained = PretrainedModels.MiniLM;
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(pretrained.Directory, "config.json")))!;
        Assert.Equal(384, (int)config["hidden_size"]!);
        Assert.Equal(6, (int)config["num_hidden_layers"]!);
        Assert.Equal(12, (int)config["num_attention_heads"]!);
        Assert.Equal(1536, (int)config["intermediate_size"]!);
        Assert.Equal(512, (int)config["max_position_embeddings"]!);
        Assert.Equal(1e-12, (double)config["layer_norm_eps"]!);
        Assert.Equal("BertModel", (string)config["architectures"]![0]!);
        Assert.True((bool)JsonNode.Parse(File.ReadAllText(Path.Combine(pretrained.Directory, "tokenizer_config.json")))!["do_lower_case"]!);

        // The graph's MatMul weight is [in, out]; the checkpoint must hold PyTorch's [out, in].
        var graph = OnnxGraph.Load(pretrained.OnnxPath);
        var add = graph.Nodes.First(n => n.OpType == "Add" && n.Inputs.Contains("encoder.layer.0.intermediate.dense.bias"));
        string product = add.Inputs.Single(i => i != "encoder.layer.0.intermediate.dense.bias");
        var matMul = graph.Nodes.Single(n => n.OpType == "MatMul" && n.Outputs[0] == product);
        var onnxWeight = graph.Initializers[matMul.Inputs[1]];
        Assert.Equal([384L, 1536], onnxWeight.Dims);
        using var checkpoint = Checkpoint.Open(pretrained.Directory);
        var weight = checkpoint.ReadFloat32("encoder.layer.0.intermediate.dense.weight", [1536, 384]);
        for (int o = 0; o < 1536; o += 97)
            for (int i = 0; i < 384; i += 31)
                Assert.Equal(onnxWeight.Values[i * 1536 + o], weight[o * 384 + i]);
        Assert.Equal(6 * 16 + 5 + 2, checkpoint.Names.Count());
    }

    [Fact]
    public void ArcticImportsWithoutPooler()
    {
        using var checkpoint = Checkpoint.Open(PretrainedModels.ArcticXs.Directory);
        Assert.DoesNotContain(checkpoint.Names, n => n.StartsWith("pooler.", StringComparison.Ordinal));
        Assert.Equal(6 * 16 + 5, checkpoint.Names.Count());
    }

    [Fact]
    public void AnUnmappableInitializerFailsNamingIt()
    {
        var graph = OnnxGraph.Load(PretrainedModels.MiniLM.OnnxPath);
        // Drop the Add that names one anonymous MatMul weight: that weight can no longer be mapped.
        var add = graph.Nodes.First(n => n.OpType == "Add" && n.Inputs.Contains("encoder.layer.2.output.dense.bias"));
        var matMul = graph.Nodes.Single(n => n.OpType == "MatMul" && add.Inputs.Contains(n.Outputs[0]));
        var broken = Rebuild(graph, graph.Nodes.Where(n => n != add));
        var e = Assert.Throws<EngineException>(() => OnnxBertImporter.MapWeights(broken, "model.onnx"));
        Assert.Contains($"cannot map initializer(s) '{matMul.Inputs[1]}'", e.Message);
    }

    [Fact]
    public void TruncatedGraphFailsClearly()
    {
        var bytes = File.ReadAllBytes(PretrainedModels.ArcticXs.OnnxPath)[..4096];
        var e = Assert.Throws<EngineException>(() => OnnxGraph.Parse(bytes, "cut.onnx"));
        Assert.Contains("cut.onnx: truncated protobuf", e.Message);
    }

    private static OnnxGraph Rebuild(OnnxGraph graph, IEnumerable<OnnxNode> nodes) =>
        (OnnxGraph)typeof(OnnxGraph).GetConstructors(System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)[0]
            .Invoke([nodes.ToList(), graph.Initializers.ToDictionary(), graph.Inputs.ToList()]);
}
