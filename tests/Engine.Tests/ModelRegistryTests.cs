using Engine.Backends.Cpu;
using Engine.Models;
using Engine.Models.Bert;

namespace Engine.Tests;

/// <summary>The family registry (by model_type) and the head registry (by architectures): one place that loaders and the command line ask.</summary>
public sealed class ModelRegistryTests
{
    [Fact]
    public void AnUnregisteredModelTypeIsOneErrorListingTheRegisteredOnes()
    {
        using var temp = new TempDirectory();
        var config = TinyBert.Config();
        config["model_type"] = "roberta";
        TinyBert.Write(temp.Path, config: config);
        var e = Assert.Throws<EngineException>(() => BertModel.Load(temp.Path, new CpuBackend()));
        Assert.Equal("model_type 'roberta' is not supported; registered: bert", e.Message);
        Assert.Throws<EngineException>(() => BertForSequenceClassification.Load(temp.Path, new CpuBackend()));
    }

    [Fact]
    public void ArchitecturesNameTheHead()
    {
        var config = BertConfig.FromJson(TinyBert.Config(), "config.json");
        Assert.Equal(ModelHead.None, ModelRegistry.Head(config));
        var classifier = TinyBert.Config();
        classifier["architectures"] = new System.Text.Json.Nodes.JsonArray("BertForSequenceClassification");
        Assert.Equal(ModelHead.SequenceClassification, ModelRegistry.Head(BertConfig.FromJson(classifier, "config.json")));
        Assert.Equal("BertForSequenceClassification", ModelRegistry.ArchitectureName(ModelFamily.Bert, ModelHead.SequenceClassification));
        foreach (var (name, head) in new[] { ("BertForMaskedLM", ModelHead.MaskedLM), ("BertForPreTraining", ModelHead.PreTraining) })
        {
            var masked = TinyBert.Config();
            masked["architectures"] = new System.Text.Json.Nodes.JsonArray(name);
            Assert.Equal(head, ModelRegistry.Head(BertConfig.FromJson(masked, "config.json")));
            Assert.Equal(name, ModelRegistry.ArchitectureName(ModelFamily.Bert, head));
        }
    }

    [Fact]
    public void PresetsAreGooglesMiniaturesAndAnUnknownSizeIsOneError()
    {
        var tiny = BertConfig.Preset("tiny", 1000);
        Assert.Equal((2, 128, 2, 512, 1000), (tiny.NumHiddenLayers, tiny.HiddenSize, tiny.NumAttentionHeads, tiny.IntermediateSize, tiny.VocabSize));
        Assert.Equal((12, 768, 12), (BertConfig.Preset("base", 30522).NumHiddenLayers, BertConfig.Preset("base", 30522).HiddenSize, BertConfig.Preset("base", 30522).NumAttentionHeads));
        Assert.Contains("tiny, mini, small, base", Assert.Throws<EngineException>(() => BertConfig.Preset("huge", 10)).Message);
    }

    [Fact]
    public void BertPositionsCountFromZeroInEveryRow()
    {
        var batch = new BertBatch(2, 3, new int[6], new int[6], [1, 1, 1, 1, 0, 0]);
        Assert.Equal([0, 1, 2, 0, 1, 2], ModelFamily.Bert.PositionIds(batch, BertConfig.FromJson(TinyBert.Config(), "config.json")));
    }
}
