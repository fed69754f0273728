using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.IO;
using Engine.Interpretability;
using Engine.Kernels;
using Engine.Models.Bert;
using Engine.Reference;

namespace Engine.Tests;

/// <summary>
/// Token attributions of a tiny classifier: integrated gradients against a float64 reference (central differences of
/// the float64 model at every quadrature node) and its completeness, gradient × input against finite differences,
/// attention rollout against a hand computation, the same on every run and on both backends.
/// </summary>
public sealed class AttributionTests
{
    // [CLS] good movie s [SEP] in TinyBert's vocabulary, one segment.
    private static readonly int[] Ids = [2, 5, 7, 10, 3], Types = new int[5];
    private const int Pad = 0, Cls = 2, Sep = 3;

    /// <summary>A tiny three-class classifier whose head is large enough that the logits move with the input (a new head's 0.02 barely does).</summary>
    internal static string WriteClassifier(TempDirectory temp)
    {
        var tensors = TinyBert.Tensors(n => "bert." + n);
        tensors.Add(SafeTensorData.FromFloats("classifier.weight", OpCases.Random(3 * TinyBert.Hidden, 60, 3f), 3, TinyBert.Hidden));
        tensors.Add(SafeTensorData.FromFloats("classifier.bias", OpCases.Random(3, 61), 3));
        var config = TinyBert.Config();
        config["architectures"] = new System.Text.Json.Nodes.JsonArray("BertForSequenceClassification");
        config["num_labels"] = 3;
        return TinyBert.WriteWithVocabulary(temp["classifier"], tensors, config);
    }

    [Fact]
    public void GaussLegendreNodesIntegratePolynomialsExactly()
    {
        var (nodes, weights) = GaussLegendre.OnUnitInterval(1);
        Assert.Equal([0.5], nodes);
        Assert.Equal([1.0], weights);
        (nodes, weights) = GaussLegendre.OnUnitInterval(3);
        Assert.Equal(0.5 - Math.Sqrt(0.6) / 2, nodes[0], 1e-15);
        Assert.Equal(0.5, nodes[1], 1e-15);
        Assert.Equal([5 / 18.0, 8 / 18.0, 5 / 18.0], weights.Select(w => Math.Round(w, 15)).ToArray(), (a, b) => Math.Abs(a - b) < 1e-14);
        foreach (int n in new[] { 2, 7, 50 })
        {
            (nodes, weights) = GaussLegendre.OnUnitInterval(n);
            Assert.True(nodes.Zip(nodes.Skip(1)).All(p => p.First < p.Second) && nodes[0] > 0 && nodes[^1] < 1);
            // ∫₀¹ x^(2n−1) dx = 1/(2n), exact to rounding.
            Assert.Equal(1.0 / (2 * n), nodes.Zip(weights).Sum(p => p.Second * Math.Pow(p.First, 2 * n - 1)), 1e-13);
        }
    }

    /// <summary>
    /// Integrated gradients with 8 nodes equals the float64 model's: the same quadrature over central-difference gradients
    /// of the target logit at each node (relative to the largest score, 1e-4); gradient × input equals the float64
    /// finite-difference gradient times the input.
    /// </summary>
    [Fact]
    public void IntegratedGradientsAndGradientTimesInputEqualTheFloat64Reference()
    {
        using var temp = new TempDirectory();
        string directory = WriteClassifier(temp);
        using var model = BertForSequenceClassification.Load(directory, new CpuBackend());
        var explainer = new TokenAttributions(model, Pad, Cls, Sep);
        const int Steps = 8, Target = 2;
        var explanation = explainer.Explain(Ids, Types, new AttributionTarget(Target), [AttributionMethod.IntegratedGradients, AttributionMethod.GradientTimesInput], Steps);
        Assert.Equal(Target, explanation.Target.Output);

        var weights = ReferenceBert.Weights(directory);
        var config = model.Config;
        int T = Ids.Length, C = config.HiddenSize;
        int[] tokens = [.. Enumerable.Range(0, T)];
        var batch = new BertBatch(1, T, Ids, Types, [.. Enumerable.Repeat(1, T)]);
        var baselineBatch = batch with { InputIds = explainer.BaselineIds(Ids) };
        Assert.Equal([Cls, Pad, Pad, Pad, Sep], baselineBatch.InputIds);
        var x = ReferenceBert.EmbeddingsOutput(weights, config, batch, tokens);
        var baseline = ReferenceBert.EmbeddingsOutput(weights, config, baselineBatch, tokens);
        double F(double[] at) => ReferenceBert.LogitsFrom(weights, config, batch, tokens, at)[Target];
        double[] Gradient(double[] at)
        {
            var g = new double[at.Length];
            for (int i = 0; i < at.Length; i++)
            {
                var (plus, minus) = ((double[])at.Clone(), (double[])at.Clone());
                plus[i] += 1e-5;
                minus[i] -= 1e-5;
                g[i] = (F(plus) - F(minus)) / 2e-5;
            }
            return g;
        }
        var (nodes, quadrature) = GaussLegendre.OnUnitInterval(Steps);
        var integrated = new double[T * C];
        for (int k = 0; k < Steps; k++)
        {
            var g = Gradient([.. baseline.Select((b, i) => b + nodes[k] * (x[i] - b))]);
            for (int i = 0; i < integrated.Length; i++) integrated[i] += quadrature[k] * g[i] * (x[i] - baseline[i]);
        }
        var expectedIntegrated = Enumerable.Range(0, T).Select(t => Enumerable.Range(0, C).Sum(c => integrated[t * C + c])).ToArray();
        var xGradient = Gradient(x);
        var expectedGradientInput = Enumerable.Range(0, T).Select(t => Enumerable.Range(0, C).Sum(c => x[t * C + c] * xGradient[t * C + c])).ToArray();

        var ig = explanation.Scores.Single(s => s.Method == AttributionMethod.IntegratedGradients);
        var gi = explanation.Scores.Single(s => s.Method == AttributionMethod.GradientTimesInput);
        AssertClose(expectedIntegrated, ig.Scores);
        AssertClose(expectedGradientInput, gi.Scores);
        Assert.Equal(F(x), explanation.Output, 1e-5);
        Assert.Equal(F(baseline), explanation.BaselineOutput!.Value, 1e-5);
        Assert.True(expectedIntegrated.Any(v => Math.Abs(v) > 1e-3), "the scores are all near zero: the comparison would say nothing");
    }

    private static void AssertClose(double[] expected, double[] actual)
    {
        double scale = expected.Max(Math.Abs);
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-4 * scale, $"token {i}: {actual[i]} against {expected[i]} (largest {scale})");
    }

    /// <summary>Completeness: Σ scores approaches F(x) − F(baseline) as the nodes grow (|delta| small at 50, smaller than at 2).</summary>
    [Fact]
    public void IntegratedGradientsAreComplete()
    {
        using var temp = new TempDirectory();
        using var model = BertForSequenceClassification.Load(WriteClassifier(temp), new CpuBackend());
        var explainer = new TokenAttributions(model, Pad, Cls, Sep);
        double Delta(int steps) => explainer.Explain(Ids, Types, new AttributionTarget(1), [AttributionMethod.IntegratedGradients], steps).Scores[0].Delta!.Value;
        var fifty = explainer.Explain(Ids, Types, new AttributionTarget(1), [AttributionMethod.IntegratedGradients], 50);
        double difference = fifty.Output - fifty.BaselineOutput!.Value;
        Assert.True(Math.Abs(difference) > 1e-3, $"F(x) − F(baseline) = {difference}: too small to test completeness on");
        var (two, fiftyDelta) = (Delta(2), fifty.Scores[0].Delta!.Value);
        Assert.True(Math.Abs(fiftyDelta) <= 1e-4 * Math.Abs(difference) + 1e-6, $"delta {fiftyDelta} for F(x) − F(baseline) = {difference}");
        Assert.True(Math.Abs(fiftyDelta) < Math.Abs(two), $"delta at 50 nodes {fiftyDelta}, at 2 {two}");
    }

    /// <summary>Rollout of hand-made maps: two layers of one 2×2 map each, computed on paper.</summary>
    [Fact]
    public void AttentionRolloutFollowsTheHandComputation()
    {
        // Layer maps (heads averaged): L1 = [[0.2, 0.8], [0.6, 0.4]], L2 = [[1, 0], [0.5, 0.5]], given as two heads each.
        float[] layer1 = [0.4f, 0.6f, 0.7f, 0.3f, /* head 2 */ 0f, 1f, 0.5f, 0.5f];
        float[] layer2 = [1f, 0f, 0.5f, 0.5f, /* head 2 */ 1f, 0f, 0.5f, 0.5f];
        // Â1 = ½·L1 + ½·I = [[0.6, 0.4], [0.3, 0.7]]; Â2 = [[1, 0], [0.25, 0.75]]; rollout = Â2·Â1, [CLS] row = [0.6, 0.4].
        Assert.Equal([0.6, 0.4], TokenAttributions.Rollout([layer1, layer2], 2, 2).Select(v => Math.Round(v, 6)));
        // With the first row of layer 2 spreading its attention: Â2 = [[0.75, 0.25], …] → [0.75·0.6 + 0.25·0.3, 0.75·0.4 + 0.25·0.7].
        float[] spreading = [0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f];
        Assert.Equal([0.525, 0.475], TokenAttributions.Rollout([layer1, spreading], 2, 2).Select(v => Math.Round(v, 6)));
    }

    /// <summary>The same scores on every run, and on the emulator within float rounding of the CPU backend's.</summary>
    [Fact]
    public void AttributionsAreDeterministicAndAgreeAcrossBackends()
    {
        using var temp = new TempDirectory();
        string directory = WriteClassifier(temp);
        AttributionMethod[] all = [AttributionMethod.IntegratedGradients, AttributionMethod.GradientTimesInput, AttributionMethod.AttentionRollout];
        Explanation Explain(ITrainingBackend backend)
        {
            using var model = BertForSequenceClassification.Load(directory, backend);
            return new TokenAttributions(model, Pad, Cls, Sep) { BatchSize = 3 }.Explain(Ids, Types, new AttributionTarget(0), all, steps: 5);
        }
        var (first, second, emulated) = (Explain(new CpuBackend()), Explain(new CpuBackend()), Explain(IlgpuBackend.Create(IlgpuDevice.CpuEmulator)));
        for (int m = 0; m < all.Length; m++)
        {
            Assert.Equal(first.Scores[m].Scores, second.Scores[m].Scores);
            AssertClose(first.Scores[m].Scores, emulated.Scores[m].Scores);
        }
        Assert.Equal(first.Output, emulated.Output, 1e-5);
    }

    /// <summary>
    /// A masked-LM head's token at a [MASK] (the PyTorch fixture's tiny model): F equals fill-mask's logit there,
    /// integrated gradients are complete, and a target without a position is refused.
    /// </summary>
    [Fact]
    public void AMaskedTokensLogitIsExplainedAtItsPosition()
    {
        using var model = BertForMaskedLM.Load(Path.Combine(PyTorchParityTests.Root, "tiny-mlm", "model"), new CpuBackend());
        int[] ids = [2, 5, 9, 4, 12, 3], types = new int[6];
        var logits = model.MaskedLogits(new BertBatch(1, 6, ids, types, [1, 1, 1, 1, 1, 1]), [3]);
        int predicted = Array.IndexOf(logits, logits.Max());
        var explainer = new TokenAttributions(model, Pad, Cls, Sep);
        var explanation = explainer.Explain(ids, types, new AttributionTarget(predicted, 3), [AttributionMethod.IntegratedGradients, AttributionMethod.GradientTimesInput], 50);
        Assert.Equal(logits[predicted], explanation.Output, 1e-5);
        var integrated = explanation.Scores[0];
        double difference = explanation.Output - explanation.BaselineOutput!.Value;
        Assert.True(Math.Abs(difference) > 1e-2, $"F(x) − F(baseline) = {difference}");
        Assert.True(Math.Abs(integrated.Delta!.Value) <= 1e-4 * Math.Abs(difference) + 1e-6, $"delta {integrated.Delta} for {difference}");
        Assert.Throws<ArgumentOutOfRangeException>(() => explainer.Explain(ids, types, new AttributionTarget(predicted), [AttributionMethod.GradientTimesInput]));
    }
}
