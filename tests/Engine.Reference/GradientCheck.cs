using Engine.Backends;

namespace Engine.Reference;

/// <summary>
/// Gradient checks over the <see cref="OpCases"/> catalogue. The static <c>Reference…</c> checks prove the
/// float64 backward (<see cref="ReferenceGradients"/>) against central finite differences of the float64
/// forward (<see cref="ReferenceOps"/>); the instance checks hold a backend's backward to that reference,
/// with activation gradients poisoned beforehand (they must be written, =) and parameter gradients
/// pre-filled (they must be added to, +=).
/// </summary>
public sealed class GradientCheck(ITrainingBackend backend)
{
    private const double H = 1e-6;

    /// <summary>Every gradient case of the catalogue, for the backend.</summary>
    public IEnumerable<ParityResult> All(long maxWork = long.MaxValue)
    {
        foreach (var c in OpCases.Linear.Where(c => c.Work <= maxWork)) yield return Linear(c);
        foreach (int n in OpCases.ActivationLengths)
            foreach (string activation in new[] { "gelu", "tanh" }) yield return Activate(n, activation);
        foreach (var c in OpCases.LayerNorm.Where(c => c.Work <= maxWork)) yield return LayerNorm(c);
        foreach (var c in OpCases.Softmax.Where(c => c.Work <= maxWork)) yield return Softmax(c);
        foreach (var c in OpCases.Attention.Where(c => c.Work <= maxWork)) yield return Attention(c);
        foreach (var c in OpCases.CrossEntropy.Where(c => c.Work <= maxWork)) yield return CrossEntropy(c);
        foreach (var c in OpCases.MeanSquaredError.Where(c => c.Work <= maxWork)) yield return MeanSquaredError(c);
        foreach (var c in OpCases.Embeddings.Where(c => c.Work <= maxWork)) yield return Embeddings(c);
        yield return FirstToken();
        yield return Accumulate();
    }

    // ---- the float64 reference against finite differences ----

    public static ParityResult ReferenceLinear(LinearCase c)
    {
        var (floatInput, floatWeight, floatBias) = OpCases.LinearInputs(c);
        var (input, weight, bias) = (floatInput.AsDoubles(), floatWeight.AsDoubles(), floatBias?.AsDoubles() ?? new double[c.N]);
        var g = OpCases.Random(c.M * c.N, 21).AsDoubles();
        double Loss(double[] x, double[] w, double[] b) => Dot(g, ReferenceOps.Linear(x, w, b, c.M, c.K, c.N, "none"));
        var (dInput, dWeight, dBias) = ReferenceGradients.Linear(g, input, weight, c.M, c.K, c.N);
        var numeric = Numeric(x => Loss(x, weight, bias), input).Concat(Numeric(w => Loss(input, w, bias), weight)).Concat(Numeric(b => Loss(input, weight, b), bias));
        return ParityCheck.Compare("linear-backward-reference", c.Name, [.. numeric], [.. dInput.Concat(dWeight).Concat(dBias)], OpCases.FiniteDifferenceTolerance);
    }

    public static ParityResult ReferenceActivation(int n, string activation)
    {
        var x = OpCases.Random(n, 4, 6f).AsDoubles();
        var numeric = x.Select(v => (ReferenceOps.Activate(v + H, activation) - ReferenceOps.Activate(v - H, activation)) / (2 * H)).ToArray();
        return ParityCheck.Compare("activate-backward-reference", $"{activation}-{n}", numeric, [.. x.Select(v => ReferenceGradients.ActivateDerivative(v, activation))], OpCases.FiniteDifferenceTolerance);
    }

    public static ParityResult ReferenceLayerNorm(LayerNormCase c)
    {
        var (input, residual, weight, bias) = LayerNormInputs(c);
        var g = OpCases.Random(c.N * c.C, 22).AsDoubles();
        // eps 1e-5 here: with 1e-12 a row of near-equal values would make the finite differences ill-conditioned.
        const double eps = 1e-5;
        double Loss(double[] x, double[] w, double[] b) => Dot(g, ReferenceOps.LayerNorm(x, residual, w, b, c.N, c.C, eps));
        var (dInput, dWeight, dBias) = ReferenceGradients.LayerNorm(g, input, residual, weight, c.N, c.C, eps);
        var numeric = Numeric(x => Loss(x, weight, bias), input).Concat(Numeric(w => Loss(input, w, bias), weight)).Concat(Numeric(b => Loss(input, weight, b), bias));
        return ParityCheck.Compare("layernorm-backward-reference", c.Name, [.. numeric], [.. dInput.Concat(dWeight).Concat(dBias)], OpCases.FiniteDifferenceTolerance);
    }

    public static ParityResult ReferenceSoftmax(SoftmaxCase c)
    {
        var x = OpCases.Random(c.Rows * c.N, 20, 8f).AsDoubles();
        var g = OpCases.Random(c.Rows * c.N, 23).AsDoubles();
        var numeric = Numeric(v => Dot(g, ReferenceOps.Softmax(v, c.Rows, c.N)), x);
        return ParityCheck.Compare("softmax-backward-reference", c.Name, numeric, [.. ReferenceGradients.Softmax(g, ReferenceOps.Softmax(x, c.Rows, c.N), c.Rows, c.N)], OpCases.FiniteDifferenceTolerance);
    }

    public static ParityResult ReferenceAttention(AttentionCase c)
    {
        int C = c.NH * c.HS;
        var qkv = OpCases.Random(c.B * c.T * 3 * C, 5, 2f).AsDoubles();
        var mask = OpCases.Mask(c.Lengths, c.T);
        var g = OpCases.Random(c.B * c.T * C, 30).AsDoubles();
        var numeric = Numeric(x => Dot(g, ReferenceOps.Attention(x, mask, c.B, c.T, c.NH, c.HS, c.DropoutMask)), qkv);
        return ParityCheck.Compare("attention-backward-reference", c.Name, numeric, ReferenceGradients.Attention(g, qkv, mask, c.B, c.T, c.NH, c.HS, c.DropoutMask), OpCases.FiniteDifferenceTolerance);
    }

    public static ParityResult ReferenceEmbeddings(EmbeddingsCase c)
    {
        var (ids, types) = EmbeddingIds(c);
        var positions = c.PositionIds();
        var (word, position, tokenType) = (OpCases.Random(c.V * c.C, 12).AsDoubles(), OpCases.Random(c.Positions * c.C, 13).AsDoubles(), OpCases.Random(c.TypeVocab * c.C, 14).AsDoubles());
        var g = OpCases.Random(c.B * c.T * c.C, 31).AsDoubles();
        var expected = ReferenceGradients.Embeddings(g, ids, positions, types, c.B, c.T, c.C, c.V, c.Positions, c.TypeVocab);
        double Loss(double[] w, double[] p, double[] t) => Dot(g, ReferenceOps.Embeddings(ids, positions, types, w, p, t, c.B, c.T, c.C));
        var numeric = Numeric(w => Loss(w, position, tokenType), word).Concat(Numeric(p => Loss(word, p, tokenType), position)).Concat(Numeric(t => Loss(word, position, t), tokenType));
        return ParityCheck.Compare("embeddings-backward-reference", c.Name, [.. numeric], [.. expected.DWord, .. expected.DPosition, .. expected.DTokenType], OpCases.FiniteDifferenceTolerance);
    }

    public static ParityResult ReferenceCrossEntropy(CrossEntropyCase c)
    {
        var logits = OpCases.Random(c.B * c.V, 24, 4f).AsDoubles();
        int counted = c.Labels.Count(l => l >= 0);
        var numeric = Numeric(z => ReferenceGradients.CrossEntropy(z, c.Labels, c.B, c.V).Losses.Sum() / counted, logits);
        return ParityCheck.Compare("cross-entropy-backward-reference", c.Name, numeric, [.. ReferenceGradients.CrossEntropy(logits, c.Labels, c.B, c.V).DLogits], OpCases.FiniteDifferenceTolerance);
    }

    public static ParityResult ReferenceMeanSquaredError(MeanSquaredErrorCase c)
    {
        var (predictions, targets) = MeanSquaredErrorInputs(c);
        var numeric = Numeric(p => ReferenceGradients.MeanSquaredError(p, targets).Losses.Average(), predictions);
        return ParityCheck.Compare("mse-backward-reference", c.Name, numeric, ReferenceGradients.MeanSquaredError(predictions, targets).DPredictions, OpCases.FiniteDifferenceTolerance);
    }

    // ---- a backend against the reference ----

    public ParityResult Linear(LinearCase c)
    {
        var (input, weight, _) = OpCases.LinearInputs(c);
        var dOutput = OpCases.Random(c.M * c.N, 21);
        var (previousWeight, previousBias) = (OpCases.Random(c.N * c.K, 25), OpCases.Random(c.N, 26));
        var (dInput, dWeight, dBias) = (backend.Poisoned(c.M * c.K), backend.UploadArray(previousWeight), backend.UploadArray(previousBias));
        backend.LinearBackward(dInput, dWeight, dBias, backend.UploadArray(dOutput), backend.UploadArray(input), backend.UploadArray(weight), c.M, c.K, c.N);
        var expected = ReferenceGradients.Linear(dOutput.AsDoubles(), input.AsDoubles(), weight.AsDoubles(), c.M, c.K, c.N);
        return Compare("linear-backward", c.Name,
            [.. expected.DInput, .. expected.DWeight.Select((v, i) => v + previousWeight[i]), .. expected.DBias.Select((v, i) => v + previousBias[i])],
            [.. backend.DownloadArray(dInput), .. backend.DownloadArray(dWeight), .. backend.DownloadArray(dBias)]);
    }

    public ParityResult Activate(int n, string activation)
    {
        var x = OpCases.Random(n, 4, 6f);
        var dOutput = OpCases.Random(n, 27);
        var dInput = backend.Poisoned(n);
        backend.ActivateBackward(dInput, backend.UploadArray(dOutput), backend.UploadArray(x), n, OpCases.ParseActivation(activation));
        return Compare("activate-backward", $"{activation}-{n}", [.. x.Select((v, i) => dOutput[i] * ReferenceGradients.ActivateDerivative(v, activation))], backend.DownloadArray(dInput));
    }

    public ParityResult LayerNorm(LayerNormCase c)
    {
        var (input, residual, weight, _) = LayerNormInputs(c);
        var (x, r, w) = (input.Select(v => (float)v).ToArray(), residual?.Select(v => (float)v).ToArray(), weight.Select(v => (float)v).ToArray());
        var dOutput = OpCases.Random(c.N * c.C, 22);
        var (previousWeight, previousBias) = (OpCases.Random(c.C, 28), OpCases.Random(c.C, 29));
        var (dInput, dWeight, dBias) = (backend.Poisoned(c.N * c.C), backend.UploadArray(previousWeight), backend.UploadArray(previousBias));
        backend.LayerNormBackward(dInput, dWeight, dBias, backend.UploadArray(dOutput), backend.UploadArray(x), r is null ? null : backend.UploadArray(r), backend.UploadArray(w), c.N, c.C, 1e-5f);
        var expected = ReferenceGradients.LayerNorm(dOutput.AsDoubles(), x.AsDoubles(), r?.AsDoubles(), w.AsDoubles(), c.N, c.C, 1e-5);
        return Compare("layernorm-backward", c.Name,
            [.. expected.DInput, .. expected.DWeight.Select((v, i) => v + previousWeight[i]), .. expected.DBias.Select((v, i) => v + previousBias[i])],
            [.. backend.DownloadArray(dInput), .. backend.DownloadArray(dWeight), .. backend.DownloadArray(dBias)]);
    }

    public ParityResult Softmax(SoftmaxCase c)
    {
        var x = OpCases.Random(c.Rows * c.N, 20, 8f);
        var y = ReferenceOps.Softmax(x.AsDoubles(), c.Rows, c.N);
        var dOutput = OpCases.Random(c.Rows * c.N, 23);
        var dInput = backend.Poisoned(c.Rows * c.N);
        backend.SoftmaxBackward(dInput, backend.UploadArray(dOutput), backend.UploadArray(y.Select(v => (float)v).ToArray()), c.Rows, c.N);
        return Compare("softmax-backward", c.Name, ReferenceGradients.Softmax(dOutput.AsDoubles(), [.. y.Select(v => (double)(float)v)], c.Rows, c.N), backend.DownloadArray(dInput));
    }

    public ParityResult Attention(AttentionCase c)
    {
        int C = c.NH * c.HS;
        var qkv = OpCases.Random(c.B * c.T * 3 * C, 5, 2f);
        var mask = OpCases.Mask(c.Lengths, c.T);
        var dOutput = OpCases.Random(c.B * c.T * C, 30);
        var dQkv = backend.Poisoned(c.B * c.T * 3 * C);
        backend.AttentionBackward(dQkv, backend.UploadArray(dOutput), backend.UploadArray(qkv), backend.UploadArray(mask), c.B, c.T, c.NH, c.HS, c.DropoutMask);
        return Compare("attention-backward", c.Name, ReferenceGradients.Attention(dOutput.AsDoubles(), qkv.AsDoubles(), mask, c.B, c.T, c.NH, c.HS, c.DropoutMask), backend.DownloadArray(dQkv));
    }

    public ParityResult Embeddings(EmbeddingsCase c)
    {
        var (ids, types) = EmbeddingIds(c);
        var dSum = OpCases.Random(c.B * c.T * c.C, 31);
        var positions = c.PositionIds();
        var (previousWord, previousPosition, previousType) = (OpCases.Random(c.V * c.C, 32), OpCases.Random(c.Positions * c.C, 33), OpCases.Random(c.TypeVocab * c.C, 34));
        var (dWord, dPosition, dType) = (backend.UploadArray(previousWord), backend.UploadArray(previousPosition), backend.UploadArray(previousType));
        backend.EmbeddingsBackward(dWord, dPosition, dType, backend.UploadArray(dSum), backend.UploadArray(ids), backend.UploadArray(positions), backend.UploadArray(types), c.B, c.T, c.C);
        var expected = ReferenceGradients.Embeddings(dSum.AsDoubles(), ids, positions, types, c.B, c.T, c.C, c.V, c.Positions, c.TypeVocab);
        return Compare("embeddings-backward", c.Name,
            [.. expected.DWord.Select((v, i) => v + previousWord[i]), .. expected.DPosition.Select((v, i) => v + previousPosition[i]), .. expected.DTokenType.Select((v, i) => v + previousType[i])],
            [.. backend.DownloadArray(dWord), .. backend.DownloadArray(dPosition), .. backend.DownloadArray(dType)]);
    }

    public ParityResult FirstToken()
    {
        const int B = 3, T = 5, C = 7;
        var dOutput = OpCases.Random(B * C, 35);
        var dInput = backend.Poisoned(B * T * C);
        backend.FirstTokenBackward(dInput, backend.UploadArray(dOutput), B, T, C);
        var expected = new double[B * T * C];
        for (int b = 0; b < B; b++)
            for (int c = 0; c < C; c++) expected[b * T * C + c] = dOutput[b * C + c];
        return Compare("first-token-backward", "3x5x7", expected, backend.DownloadArray(dInput));
    }

    public ParityResult Accumulate()
    {
        const int n = 1001;
        var (a, b) = (OpCases.Random(n, 36), OpCases.Random(n, 37));
        var destination = backend.UploadArray(a);
        backend.Accumulate(destination, backend.UploadArray(b), n);
        return Compare("accumulate", "1001", [.. a.Select((v, i) => (double)v + b[i])], backend.DownloadArray(destination));
    }

    public ParityResult CrossEntropy(CrossEntropyCase c)
    {
        var logits = OpCases.Random(c.B * c.V, 24, 4f);
        var (losses, dLogits) = (backend.Poisoned(c.B), backend.Poisoned(c.B * c.V));
        backend.CrossEntropy(losses, dLogits, backend.UploadArray(logits), backend.UploadArray(c.Labels), c.B, c.V);
        var expected = ReferenceGradients.CrossEntropy(logits.AsDoubles(), c.Labels, c.B, c.V);
        return Compare("cross-entropy", c.Name, [.. expected.Losses, .. expected.DLogits], [.. backend.DownloadArray(losses), .. backend.DownloadArray(dLogits)]);
    }

    public ParityResult MeanSquaredError(MeanSquaredErrorCase c)
    {
        var (predictions, targets) = (OpCases.Random(c.N, 42, 3f), OpCases.Random(c.N, 43, 3f));
        var (losses, dPredictions) = (backend.Poisoned(c.N), backend.Poisoned(c.N));
        backend.MeanSquaredError(losses, dPredictions, backend.UploadArray(predictions), backend.UploadArray(targets), c.N);
        var expected = ReferenceGradients.MeanSquaredError(predictions.AsDoubles(), targets.AsDoubles());
        return Compare("mse", c.Name, [.. expected.Losses, .. expected.DPredictions], [.. backend.DownloadArray(losses), .. backend.DownloadArray(dPredictions)]);
    }

    private static (double[] Predictions, double[] Targets) MeanSquaredErrorInputs(MeanSquaredErrorCase c) =>
        (OpCases.Random(c.N, 42, 3f).AsDoubles(), OpCases.Random(c.N, 43, 3f).AsDoubles());

    private static ParityResult Compare(string op, string name, double[] expected, float[] actual) =>
        ParityCheck.Compare(op, name, expected, actual, OpCases.BackwardTolerance);

    /// <summary>Central differences of a scalar function at every element of <paramref name="at"/>.</summary>
    private static double[] Numeric(Func<double[], double> loss, double[] at)
    {
        var x = (double[])at.Clone();
        var gradient = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            double saved = x[i];
            x[i] = saved + H;
            double plus = loss(x);
            x[i] = saved - H;
            double minus = loss(x);
            x[i] = saved;
            gradient[i] = (plus - minus) / (2 * H);
        }
        return gradient;
    }

    /// <summary>The ids of an embeddings case, with repeats (a scatter-add must sum them).</summary>
    private static (int[] Ids, int[] Types) EmbeddingIds(EmbeddingsCase c)
    {
        var random = new Random(11);
        var ids = Enumerable.Range(0, c.B * c.T).Select(_ => random.Next(Math.Min(c.V, 5))).ToArray();
        var types = Enumerable.Range(0, c.B * c.T).Select(_ => random.Next(c.TypeVocab)).ToArray();
        return (ids, types);
    }

    private static double Dot(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum();

    private static (double[] Input, double[]? Residual, double[] Weight, double[] Bias) LayerNormInputs(LayerNormCase c) =>
        (OpCases.Random(c.N * c.C, 7, 3f).AsDoubles(), c.Residual ? OpCases.Random(c.N * c.C, 8).AsDoubles() : null,
            OpCases.Random(c.C, 9).AsDoubles(), OpCases.Random(c.C, 10).AsDoubles());
}
