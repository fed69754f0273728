using Engine.Models.Bert;

namespace Engine.Reference;

/// <summary>
/// BertForSequenceClassification's loss in float64, composed from <see cref="ReferenceOps"/>, with dropout at
/// the sites and on the streams <see cref="DropoutSettings"/> names: the whole-model gradient check
/// differentiates it numerically.
/// </summary>
public static class ReferenceBert
{
    /// <summary>Mean cross-entropy over rows with a label ≥ 0; weights by Hugging Face name (without a <c>bert.</c> prefix).</summary>
    public static double Loss(IReadOnlyDictionary<string, double[]> w, BertConfig config, BertBatch batch, int[] labels, DropoutSettings dropout = default)
    {
        var logits = Logits(w, config, batch, dropout);
        var (losses, _) = ReferenceGradients.CrossEntropy(logits, labels, batch.BatchSize, w["classifier.bias"].Length);
        return losses.Sum() / labels.Count(v => v >= 0);
    }

    /// <summary>Mean squared error of a regression head's outputs against targets (B × num_labels).</summary>
    public static double Loss(IReadOnlyDictionary<string, double[]> w, BertConfig config, BertBatch batch, double[] targets, DropoutSettings dropout = default) =>
        ReferenceGradients.MeanSquaredError(Logits(w, config, batch, dropout), targets).Losses.Average();

    /// <summary>
    /// The classifier's outputs (B, num_labels). Like the engine, a batch whose rows are real tokens then padding runs
    /// packed: the per-token activations hold only the real tokens (which is where the dropout masks of the per-token
    /// sites fall), and attention sees them through their padded form.
    /// </summary>
    public static double[] Logits(IReadOnlyDictionary<string, double[]> w, BertConfig config, BertBatch batch, DropoutSettings dropout)
    {
        int B = batch.BatchSize, T = batch.SequenceLength, C = config.HiddenSize, I = config.IntermediateSize;
        int numLabels = w["classifier.bias"].Length;
        double eps = config.LayerNormEps;
        var lengths = batch.PackableLengths();
        int[] tokens = lengths is null ? [.. Enumerable.Range(0, B * T)] : [.. Enumerable.Range(0, B).SelectMany(b => Enumerable.Range(b * T, lengths[b]))];
        int rows = tokens.Length;
        var x = ReferenceOps.Dropout(EmbeddingsOutput(w, config, batch, tokens), dropout.EmbeddingsMask);
        return LogitsFrom(w, config, batch, tokens, x, dropout);
    }

    /// <summary>The embeddings module's output (before its dropout) for the rows <paramref name="tokens"/> (flat b·T + t).</summary>
    public static double[] EmbeddingsOutput(IReadOnlyDictionary<string, double[]> w, BertConfig config, BertBatch batch, int[] tokens)
    {
        int T = batch.SequenceLength, C = config.HiddenSize, rows = tokens.Length;
        return ReferenceOps.LayerNorm(
            ReferenceOps.Embeddings([.. tokens.Select(i => batch.InputIds[i])], [.. tokens.Select(i => i % T)], [.. tokens.Select(i => batch.TokenTypeIds[i])],
                w["embeddings.word_embeddings.weight"], w["embeddings.position_embeddings.weight"], w["embeddings.token_type_embeddings.weight"], 1, rows, C),
            null, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], rows, C, config.LayerNormEps);
    }

    /// <summary>
    /// The classifier's outputs (B, num_labels) from the embeddings module's output <paramref name="x"/> (rows
    /// <paramref name="tokens"/>, C) onwards: what attributions differentiate.
    /// </summary>
    public static double[] LogitsFrom(IReadOnlyDictionary<string, double[]> w, BertConfig config, BertBatch batch, int[] tokens, double[] x,
        DropoutSettings dropout = default)
    {
        int B = batch.BatchSize, T = batch.SequenceLength, C = config.HiddenSize, I = config.IntermediateSize, rows = tokens.Length;
        int numLabels = w["classifier.bias"].Length;
        double eps = config.LayerNormEps;
        for (int l = 0; l < config.NumHiddenLayers; l++)
        {
            string p = $"encoder.layer.{l}.";
            double[] Stack(string leaf) => [.. new[] { "query", "key", "value" }.SelectMany(part => w[$"{p}attention.self.{part}.{leaf}"])];
            var qkv = ReferenceOps.Linear(x, Stack("weight"), Stack("bias"), rows, C, 3 * C, "none");
            var paddedQkv = new double[B * T * 3 * C];
            for (int r = 0; r < rows; r++) Array.Copy(qkv, r * 3 * C, paddedQkv, tokens[r] * 3 * C, 3 * C);
            var paddedContext = ReferenceOps.Attention(paddedQkv, batch.AttentionMask, B, T, config.NumAttentionHeads, config.HeadSize, dropout.AttentionProbabilitiesMask(l));
            var context = new double[rows * C];
            for (int r = 0; r < rows; r++) Array.Copy(paddedContext, tokens[r] * C, context, r * C, C);
            var projected = ReferenceOps.Dropout(ReferenceOps.Linear(context, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"], rows, C, C, "none"),
                dropout.AttentionOutputMask(l));
            var h1 = ReferenceOps.LayerNorm(projected, x, w[p + "attention.output.LayerNorm.weight"], w[p + "attention.output.LayerNorm.bias"], rows, C, eps);
            var intermediate = ReferenceOps.Linear(h1, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"], rows, C, I, "gelu");
            var output = ReferenceOps.Dropout(ReferenceOps.Linear(intermediate, w[p + "output.dense.weight"], w[p + "output.dense.bias"], rows, I, C, "none"),
                dropout.OutputMask(l));
            x = ReferenceOps.LayerNorm(output, h1, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], rows, C, eps);
        }
        var first = new double[B * C];
        for (int b = 0; b < B; b++) Array.Copy(x, Array.IndexOf(tokens, b * T) * C, first, b * C, C);
        var pooled = ReferenceOps.Dropout(ReferenceOps.Linear(first, w["pooler.dense.weight"], w["pooler.dense.bias"], B, C, C, "tanh"), dropout.ClassifierMask);
        return ReferenceOps.Linear(pooled, w["classifier.weight"], w["classifier.bias"], B, C, numLabels, "none");
    }

    /// <summary>A model directory's weights in float64, by Hugging Face name without the <c>bert.</c> prefix (as this class reads them).</summary>
    public static Dictionary<string, double[]> Weights(string directory)
    {
        var weights = new Dictionary<string, double[]>();
        using var file = Engine.IO.SafeTensorsFile.Open(Path.Combine(directory, Engine.IO.Checkpoint.SingleFileName));
        foreach (var info in file.Tensors) weights[info.Name.StartsWith("bert.", StringComparison.Ordinal) ? info.Name[5..] : info.Name] = file.ReadFloat32(info).AsDoubles();
        return weights;
    }

    /// <summary>∂loss/∂w for every element of the named tensor, by central differences (<paramref name="loss"/> reads <paramref name="w"/>).</summary>
    public static double[] NumericGradient(Dictionary<string, double[]> w, string name, Func<double> loss, double h = 1e-5)
    {
        var tensor = w[name];
        var gradient = new double[tensor.Length];
        for (int i = 0; i < tensor.Length; i++)
        {
            double saved = tensor[i];
            tensor[i] = saved + h;
            double plus = loss();
            tensor[i] = saved - h;
            double minus = loss();
            tensor[i] = saved;
            gradient[i] = (plus - minus) / (2 * h);
        }
        return gradient;
    }
}
