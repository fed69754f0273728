using Engine.Models.Bert;

namespace Engine.Interpretability;

/// <summary>How a token's share of a prediction is measured.</summary>
public enum AttributionMethod
{
    /// <summary>Integrated gradients (Sundararajan et al. 2017) from a baseline of padding, by Gauss–Legendre quadrature.</summary>
    IntegratedGradients,
    /// <summary>The embeddings' output times the output's gradient with respect to it.</summary>
    GradientTimesInput,
    /// <summary>Attention rollout (Abnar and Zuidema 2020): the layers' head-averaged attention, with the residual, multiplied through.</summary>
    AttentionRollout,
}

/// <summary>
/// The output an attribution explains: output <see cref="Output"/> of the sequence (a classifier's class, a regression
/// head's output), or with a <see cref="Position"/> that token's (a masked-LM head's vocabulary entry at a [MASK]).
/// </summary>
public readonly record struct AttributionTarget(int Output, int? Position = null);

/// <summary>A model with a head whose outputs attributions explain: its encoder, and one output's value and gradient at the embeddings.</summary>
public interface IAttributable
{
    BertModel Bert { get; }

    /// <summary>
    /// F per example of <paramref name="batch"/> (no padding; dropout off) for <paramref name="target"/>, when the
    /// embeddings module's output is <paramref name="embeddings"/> ((B·T, C); null: the batch's own), and ∂F/∂embeddings
    /// (B·T, C). Clears the parameter gradients and leaves this backward's in them.
    /// </summary>
    (float[] Outputs, float[] Gradients) OutputAndGradientAtEmbeddings(BertBatch batch, float[]? embeddings, AttributionTarget target);
}

/// <summary>One method's score per token (in the input's order) and, for integrated gradients, its convergence delta.</summary>
public sealed record TokenScores(AttributionMethod Method, double[] Scores, double? Delta = null);

/// <summary>
/// What an explanation explains: the output F of <see cref="Target"/> — a class's logit, a regression output, a token's
/// logit at a position — at the input, and at the baseline when integrated gradients ran.
/// </summary>
/// <param name="Attentions">Each layer's attention probabilities (1, NH, T, T) at the input.</param>
public sealed record Explanation(int[] InputIds, AttributionTarget Target, double Output, double? BaselineOutput, IReadOnlyList<TokenScores> Scores,
    IReadOnlyList<float[]> Attentions);

/// <summary>
/// Token attributions of a head's output (a classifier's, a regression head's, a masked-LM head's at a position), with
/// the conventions of the README: taken at the output of the
/// embeddings module (after its LayerNorm, dropout off), per token, summed over the hidden dimension. Integrated
/// gradients' baseline is the same input with every token but [CLS] and [SEP] replaced by [PAD] (same positions and
/// token types); its path integral is a Gauss–Legendre quadrature with <c>steps</c> nodes on [0, 1] (Captum's default
/// rule), the points batched through the model; the delta Σ attributions − (F(x) − F(baseline)) says how far the
/// quadrature is from completeness. Attention rollout needs no gradient: per layer A = ½·(mean over heads) + ½·I, rows
/// renormalised, multiplied from the first layer up; the [CLS] row is the token score.
/// </summary>
public sealed class TokenAttributions(IAttributable model, int padId, int clsId, int sepId)
{
    /// <summary>The most path points one forward and backward takes.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Explains <paramref name="inputIds"/> (one sequence, no padding) for <paramref name="target"/> by each of <paramref name="methods"/>.</summary>
    public Explanation Explain(int[] inputIds, int[] tokenTypeIds, AttributionTarget target, IReadOnlyCollection<AttributionMethod> methods, int steps = 50)
    {
        if (inputIds.Length == 0 || tokenTypeIds.Length != inputIds.Length) throw new ArgumentException($"{inputIds.Length} ids and {tokenTypeIds.Length} token types");
        if (steps is < 1 or > 10_000) throw new ArgumentOutOfRangeException(nameof(steps), $"steps = {steps}: expected 1 to 10000");
        int T = inputIds.Length, C = model.Bert.Config.HiddenSize;
        var single = Batch(inputIds, tokenTypeIds, 1);
        var attentions = model.Bert.Forward(single, outputAttentions: true).Attentions!;
        var x = model.Bert.EmbeddingsOutput(single);
        var (outputs, gradient) = model.OutputAndGradientAtEmbeddings(single, null, target); // at x: the batch's own embeddings
        var scores = new List<TokenScores>();
        double? baselineOutput = null;
        foreach (var method in methods.Distinct())
        {
            switch (method)
            {
                case AttributionMethod.GradientTimesInput:
                    scores.Add(new(method, SumOverHidden(T, C, (t, c) => (double)x[t * C + c] * gradient[t * C + c])));
                    break;
                case AttributionMethod.IntegratedGradients:
                    var (integrated, fBaseline) = IntegratedGradients(inputIds, tokenTypeIds, x, target, steps);
                    baselineOutput = fBaseline;
                    scores.Add(new(method, integrated, integrated.Sum() - (outputs[0] - fBaseline)));
                    break;
                case AttributionMethod.AttentionRollout:
                    scores.Add(new(method, Rollout(attentions, model.Bert.Config.NumAttentionHeads, T)));
                    break;
            }
        }
        return new Explanation(inputIds, target, outputs[0], baselineOutput, scores, attentions);
    }

    /// <summary>The baseline's ids: [PAD] everywhere but at [CLS] and [SEP].</summary>
    public int[] BaselineIds(int[] inputIds) => [.. inputIds.Select(id => id == clsId || id == sepId ? id : padId)];

    private (double[] Scores, double BaselineOutput) IntegratedGradients(int[] inputIds, int[] tokenTypeIds, float[] x, AttributionTarget target, int steps)
    {
        int T = inputIds.Length, C = model.Bert.Config.HiddenSize, n = T * C;
        var baseline = model.Bert.EmbeddingsOutput(Batch(BaselineIds(inputIds), tokenTypeIds, 1));
        var (nodes, weights) = GaussLegendre.OnUnitInterval(steps);
        var weightedGradient = new double[n];
        for (int first = 0; first < steps; first += BatchSize)
        {
            int count = Math.Min(BatchSize, steps - first);
            var points = new float[count * n];
            for (int k = 0; k < count; k++)
            {
                double alpha = nodes[first + k];
                for (int i = 0; i < n; i++) points[k * n + i] = (float)(baseline[i] + alpha * (x[i] - baseline[i]));
            }
            var (_, gradients) = model.OutputAndGradientAtEmbeddings(Batch(inputIds, tokenTypeIds, count), points, target);
            for (int k = 0; k < count; k++)
                for (int i = 0; i < n; i++) weightedGradient[i] += weights[first + k] * gradients[k * n + i];
        }
        var (baselineOutputs, _) = model.OutputAndGradientAtEmbeddings(Batch(inputIds, tokenTypeIds, 1), baseline, target);
        return (SumOverHidden(T, C, (t, c) => ((double)x[t * C + c] - baseline[t * C + c]) * weightedGradient[t * C + c]), baselineOutputs[0]);
    }

    /// <summary>
    /// Attention rollout of one sequence's maps ((1, NH, T, T) per layer): per layer the heads' mean, plus the identity for
    /// the residual, halved, rows renormalised, multiplied from the first layer up; the [CLS] (first) row.
    /// </summary>
    public static double[] Rollout(IReadOnlyList<float[]> attentions, int heads, int T)
    {
        var rollout = Identity(T);
        foreach (var layer in attentions)
        {
            var a = new double[T, T];
            for (int i = 0; i < T; i++)
            {
                double row = 0;
                for (int j = 0; j < T; j++)
                {
                    double mean = 0;
                    for (int h = 0; h < heads; h++) mean += layer[(h * T + i) * T + j];
                    a[i, j] = 0.5 * mean / heads + (i == j ? 0.5 : 0);
                    row += a[i, j];
                }
                for (int j = 0; j < T; j++) a[i, j] /= row;
            }
            var next = new double[T, T];
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++)
                    for (int k = 0; k < T; k++) next[i, j] += a[i, k] * rollout[k, j];
            rollout = next;
        }
        return [.. Enumerable.Range(0, T).Select(j => rollout[0, j])];
    }

    private static double[,] Identity(int T)
    {
        var identity = new double[T, T];
        for (int i = 0; i < T; i++) identity[i, i] = 1;
        return identity;
    }

    private static double[] SumOverHidden(int T, int C, Func<int, int, double> term) =>
        [.. Enumerable.Range(0, T).Select(t => Enumerable.Range(0, C).Sum(c => term(t, c)))];

    /// <summary><paramref name="count"/> copies of one unpadded sequence.</summary>
    private static BertBatch Batch(int[] ids, int[] types, int count) =>
        new(count, ids.Length, [.. Enumerable.Repeat(ids, count).SelectMany(r => r)], [.. Enumerable.Repeat(types, count).SelectMany(r => r)],
            Enumerable.Repeat(1, count * ids.Length).ToArray());
}

/// <summary>Gauss–Legendre quadrature: n nodes and weights that integrate polynomials of degree up to 2n − 1 exactly.</summary>
public static class GaussLegendre
{
    /// <summary>Nodes in (0, 1), ascending, and weights summing to 1 (numpy's leggauss mapped from [−1, 1]).</summary>
    public static (double[] Nodes, double[] Weights) OnUnitInterval(int n)
    {
        if (n < 1) throw new ArgumentOutOfRangeException(nameof(n), $"{n} nodes");
        var (nodes, weights) = (new double[n], new double[n]);
        for (int i = 0; i < n; i++)
        {
            // Root i of P_n by Newton's method from Chebyshev's estimate (descending on [−1, 1]).
            double x = Math.Cos(Math.PI * (i + 0.75) / (n + 0.5));
            for (int iteration = 0; iteration < 100; iteration++)
            {
                var (p, dp) = Legendre(n, x);
                double step = p / dp;
                x -= step;
                if (Math.Abs(step) < 1e-16) break;
            }
            double derivative = Legendre(n, x).Derivative;
            // [−1, 1] → [0, 1]: node (x + 1)/2, weight 2/((1 − x²)·P'²) halved; root i is the (i+1)-th largest.
            nodes[n - 1 - i] = (x + 1) / 2;
            weights[n - 1 - i] = 1 / ((1 - x * x) * derivative * derivative);
        }
        return (nodes, weights);
    }

    /// <summary>P_n(x) and P_n'(x) by the three-term recurrence.</summary>
    private static (double Value, double Derivative) Legendre(int n, double x)
    {
        double previous = 1, current = x;
        if (n == 0) return (1, 0);
        for (int k = 2; k <= n; k++) (previous, current) = (current, ((2 * k - 1) * x * current - (k - 1) * previous) / k);
        return (current, n * (x * current - previous) / (x * x - 1));
    }
}
