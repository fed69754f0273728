namespace Engine.IO;

/// <summary>
/// A path into a checkpoint's tensor names, built one module at a time
/// (<c>scope.Sub("encoder").Sub("layer.0")</c>), never spelled out whole.
/// </summary>
/// <remarks>
/// Resolves the naming variants of Hugging Face BERT checkpoints: a task model's <c>bert.</c> prefix (chosen once
/// for the root), the legacy TensorFlow-era LayerNorm names <c>gamma</c>/<c>beta</c>, and a masked-LM output bias
/// stored only under its tied alias <c>cls.predictions.decoder.bias</c>.
/// </remarks>
public sealed class WeightScope
{
    private readonly Checkpoint _checkpoint;
    private readonly string _prefix;

    private WeightScope(Checkpoint checkpoint, string prefix)
    {
        _checkpoint = checkpoint;
        _prefix = prefix;
    }

    /// <summary>The root scope of a base model whose names may carry <paramref name="modelPrefix"/> (e.g. "bert").</summary>
    public static WeightScope ForBaseModel(Checkpoint checkpoint, string modelPrefix)
    {
        string dotted = modelPrefix + ".";
        bool prefixed = checkpoint.Names.Any(n => n.StartsWith(dotted, StringComparison.Ordinal));
        return new WeightScope(checkpoint, prefixed ? dotted : "");
    }

    /// <summary>The checkpoint's top level: task heads (<c>classifier.*</c>) sit beside the <c>bert.</c> prefix.</summary>
    public static WeightScope Root(Checkpoint checkpoint) => new(checkpoint, "");

    public WeightScope Sub(string name) => new(_checkpoint, _prefix + name + ".");

    public string NameOf(string leaf) => _prefix + leaf;

    public bool Has(string leaf) => _checkpoint.Contains(Resolve(leaf));

    /// <summary>The tensor <paramref name="leaf"/> here, its shape checked, as stored (read when the model converts it).</summary>
    public StoredTensor Tensor(string leaf, params long[] shape) => _checkpoint.Get(Resolve(leaf), shape);

    private string Resolve(string leaf)
    {
        string name = _prefix + leaf;
        if (_checkpoint.Contains(name)) return name;
        string? legacy = leaf switch { "weight" => "gamma", "bias" => "beta", _ => null };
        if (legacy is not null && _prefix.EndsWith("LayerNorm.", StringComparison.Ordinal) && _checkpoint.Contains(_prefix + legacy))
            return _prefix + legacy;
        if (leaf == "bias" && _prefix.EndsWith("predictions.", StringComparison.Ordinal) && _checkpoint.Contains(_prefix + "decoder.bias"))
            return _prefix + "decoder.bias";
        return name;
    }
}
