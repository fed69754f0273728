using Engine.Models.Bert;

namespace Engine.Models;

/// <summary>
/// What sets a family of encoders (config.json's <c>model_type</c>) apart for loading, saving and training: the
/// prefix of its base model's weights inside a task checkpoint, its module names, how position ids follow from a
/// batch, whether it has token types and a pooler, and which tensors AdamW leaves undecayed.
/// </summary>
public sealed record ModelFamily(
    string ModelType,
    string WeightPrefix,
    string EmbeddingsModule,
    string LayersModule,
    string PoolerModule,
    bool HasTokenTypes,
    bool HasPooler,
    Func<BertBatch, BertConfig, int[]> PositionIds,
    Func<string, bool> Decays)
{
    /// <summary>BERT: positions 0…T−1 in every row; no decay on biases and LayerNorm weights (Hugging Face's examples' <c>no_decay</c>).</summary>
    public static readonly ModelFamily Bert = new(
        ModelType: "bert",
        WeightPrefix: "bert",
        EmbeddingsModule: "embeddings",
        LayersModule: "encoder.layer",
        PoolerModule: "pooler",
        HasTokenTypes: true,
        HasPooler: true,
        PositionIds: (batch, _) => [.. Enumerable.Range(0, batch.BatchSize * batch.SequenceLength).Select(i => i % batch.SequenceLength)],
        Decays: name => !name.EndsWith(".bias", StringComparison.Ordinal) && !name.Contains("LayerNorm", StringComparison.Ordinal));
}

/// <summary>What a checkpoint is: its family (by <c>model_type</c>) and what its <c>architectures</c> entry makes of it.</summary>
public enum ModelHead
{
    /// <summary>The encoder alone (BertModel, or any checkpoint without a head this engine runs).</summary>
    None,
    /// <summary>BertForSequenceClassification: pooler, dropout, classifier.</summary>
    SequenceClassification,
    /// <summary>BertForMaskedLM: the masked-LM head (transform, decoder tied to the word embeddings).</summary>
    MaskedLM,
    /// <summary>BertForPreTraining: the masked-LM head and a sentence head (next-sentence or sentence-order) on the pooler.</summary>
    PreTraining,
}

/// <summary>The one place that maps <c>model_type</c> to a family and <c>architectures</c> to a head; loaders and the command line ask it.</summary>
public static class ModelRegistry
{
    private static readonly ModelFamily[] Families = [ModelFamily.Bert];

    private static readonly Dictionary<string, ModelHead> Architectures = new(StringComparer.Ordinal)
    {
        ["BertModel"] = ModelHead.None,
        ["BertForSequenceClassification"] = ModelHead.SequenceClassification,
        ["BertForMaskedLM"] = ModelHead.MaskedLM,
        ["BertForPreTraining"] = ModelHead.PreTraining,
    };

    public static IEnumerable<string> RegisteredTypes => Families.Select(f => f.ModelType);

    /// <summary>The family of <paramref name="config"/>'s model_type; an unregistered one is an error naming the registered ones.</summary>
    public static ModelFamily Family(BertConfig config) =>
        Families.FirstOrDefault(f => f.ModelType == config.ModelType)
        ?? throw new EngineException($"model_type '{config.ModelType}' is not supported; registered: {string.Join(", ", RegisteredTypes)}");

    /// <summary>Whether <paramref name="architecture"/> is a class name this engine runs (BertModel, BertForMaskedLM, …).</summary>
    public static bool IsArchitecture(string architecture) => Architectures.ContainsKey(architecture);

    /// <summary>The head of a class name this engine runs.</summary>
    public static ModelHead Head(string architecture) => Architectures[architecture];

    /// <summary>The head the config's <c>architectures</c> names (the first one this engine runs), else <see cref="ModelHead.None"/>.</summary>
    public static ModelHead Head(BertConfig config)
    {
        foreach (var (name, head) in Architectures)
            if (head != ModelHead.None && config.HasArchitecture(name)) return head;
        return ModelHead.None;
    }

    /// <summary>The class name Hugging Face gives <paramref name="head"/> in <paramref name="family"/>, for config.json's architectures.</summary>
    public static string ArchitectureName(ModelFamily family, ModelHead head) =>
        Architectures.First(a => a.Value == head && a.Key.StartsWith(family.ModelType, StringComparison.OrdinalIgnoreCase)).Key;
}
