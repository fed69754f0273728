using Engine.Backends;

namespace Engine.Reference;

/// <summary>The outcome of one op case against its float64 reference.</summary>
public sealed record ParityResult(string Op, string Case, double MaxError, int WorstIndex, double Expected, double Actual, Tolerance Tolerance, bool Passed)
{
    public override string ToString() => Passed
        ? $"{Op} {Case}: ok (max |Δ| {MaxError:E2})"
        : $"{Op} {Case}: element {WorstIndex} is {Actual}, reference {Expected} (|Δ| {MaxError:E2}, tolerance {Tolerance.Absolute:E0} + {Tolerance.Relative:E0}·|ref|)";
}

/// <summary>
/// Runs the <see cref="OpCases"/> catalogue on a backend against <see cref="ReferenceOps"/>: random inputs
/// from fixed seeds, outputs poisoned with NaN beforehand (an unwritten element fails), every element
/// compared. The xunit parity suites and the GPU script both drive it.
/// </summary>
public sealed class ParityCheck(IBackend backend)
{
    /// <summary>Every case of the catalogue whose work is at most <paramref name="maxWork"/>.</summary>
    public IEnumerable<ParityResult> All(long maxWork = long.MaxValue)
    {
        foreach (var c in OpCases.Linear.Where(c => c.Work <= maxWork)) yield return Linear(c);
        yield return LinearAfterWeightUpdate();
        foreach (var c in OpCases.MatMul.Where(c => c.Work <= maxWork)) yield return MatMul(c);
        foreach (int n in OpCases.ActivationLengths)
            foreach (string activation in new[] { "gelu", "tanh" }) yield return Activate(n, activation);
        foreach (var c in OpCases.Softmax.Where(c => c.Work <= maxWork)) yield return Softmax(c);
        foreach (var c in OpCases.Attention.Where(c => c.Work <= maxWork)) yield return Attention(c);
        yield return AttentionIgnoresPaddedKeys();
        foreach (var c in OpCases.LayerNorm.Where(c => c.Work <= maxWork)) yield return LayerNorm(c);
        foreach (var c in OpCases.Embeddings.Where(c => c.Work <= maxWork)) yield return Embeddings(c);
        yield return FirstToken();
    }

    public ParityResult Linear(LinearCase c)
    {
        var (input, weight, bias) = OpCases.LinearInputs(c);
        var output = backend.Poisoned(c.M * c.N);
        backend.Linear(output, backend.UploadArray(input), backend.UploadArray(weight), bias is null ? null : backend.UploadArray(bias), c.M, c.K, c.N, OpCases.ParseActivation(c.Activation));
        return Compare("linear", c.Name, ReferenceOps.Linear(input.AsDoubles(), weight.AsDoubles(), bias?.AsDoubles(), c.M, c.K, c.N, c.Activation), backend.DownloadArray(output), OpCases.LinearTolerance);
    }

    /// <summary>Compares only the batch items' elements: gaps between strided items are not the op's.</summary>
    public ParityResult MatMul(MatMulCase c)
    {
        var s = c.Shape;
        var a = OpCases.Random((int)s.ElementsA, 16);
        var b = OpCases.Random((int)s.ElementsB, 17);
        var output = backend.Poisoned((int)s.ElementsC);
        backend.MatMul(output, backend.UploadArray(a), backend.UploadArray(b), s);
        var expected = ReferenceOps.MatMul(a, b, s);
        var actual = backend.DownloadArray(output);
        var items = Enumerable.Range(0, s.Batch).SelectMany(i => Enumerable.Range((int)(i * s.StrideC), s.M * s.N)).ToArray();
        return Compare("matmul", c.Name, [.. items.Select(i => expected[i])], [.. items.Select(i => actual[i])], OpCases.LinearTolerance);
    }

    /// <summary>A weight re-uploaded after a first product must be used as it is now (no stale cache).</summary>
    public ParityResult LinearAfterWeightUpdate()
    {
        var input = OpCases.Random(6 * 9, 1);
        var weightBuffer = backend.UploadArray(OpCases.Random(5 * 9, 2));
        var output = backend.Poisoned(6 * 5);
        backend.Linear(output, backend.UploadArray(input), weightBuffer, null, 6, 9, 5, Activation.None);
        var weight = OpCases.Random(5 * 9, 3);
        backend.Upload<float>(weight, weightBuffer);
        backend.Linear(output, backend.UploadArray(input), weightBuffer, null, 6, 9, 5, Activation.None);
        return Compare("linear", "weight-updated", ReferenceOps.Linear(input.AsDoubles(), weight.AsDoubles(), null, 6, 9, 5, "none"), backend.DownloadArray(output), OpCases.LinearTolerance);
    }

    public ParityResult Activate(int n, string activation)
    {
        var input = OpCases.Random(n, 4, 6f);
        var output = backend.Poisoned(n);
        backend.Activate(output, backend.UploadArray(input), n, OpCases.ParseActivation(activation));
        return Compare("activate", $"{activation}-{n}", [.. input.Select(x => ReferenceOps.Activate(x, activation))], backend.DownloadArray(output), OpCases.ActivationTolerance);
    }

    public ParityResult Softmax(SoftmaxCase c)
    {
        var input = OpCases.Random(c.Rows * c.N, 20, 8f);
        var output = backend.Poisoned(c.Rows * c.N);
        backend.Softmax(output, backend.UploadArray(input), c.Rows, c.N);
        return Compare("softmax", c.Name, ReferenceOps.Softmax(input.AsDoubles(), c.Rows, c.N), backend.DownloadArray(output), OpCases.SoftmaxTolerance);
    }

    public ParityResult Attention(AttentionCase c)
    {
        int C = c.NH * c.HS;
        var qkv = OpCases.Random(c.B * c.T * 3 * C, 5, 2f);
        var mask = OpCases.Mask(c.Lengths, c.T);
        var output = backend.Poisoned(c.B * c.T * C);
        backend.Attention(output, backend.UploadArray(qkv), backend.UploadArray(mask), c.B, c.T, c.NH, c.HS, c.DropoutMask);
        return Compare("attention", c.Name, ReferenceOps.Attention(qkv.AsDoubles(), mask, c.B, c.T, c.NH, c.HS, c.DropoutMask), backend.DownloadArray(output), OpCases.AttentionTolerance);
    }

    /// <summary>What padded keys and values hold must not reach real outputs (compared bit for bit).</summary>
    public ParityResult AttentionIgnoresPaddedKeys()
    {
        const int B = 1, T = 6, NH = 2, HS = 3, C = NH * HS, Real = 4;
        var qkv = OpCases.Random(B * T * 3 * C, 6);
        var mask = OpCases.Mask([Real], T);
        var first = backend.Poisoned(B * T * C);
        backend.Attention(first, backend.UploadArray(qkv), backend.UploadArray(mask), B, T, NH, HS, Engine.Backends.DropoutMask.None);
        for (int t = Real; t < T; t++)
            for (int i = 0; i < 3 * C; i++) qkv[t * 3 * C + i] = 1e4f;
        var second = backend.Poisoned(B * T * C);
        backend.Attention(second, backend.UploadArray(qkv), backend.UploadArray(mask), B, T, NH, HS, Engine.Backends.DropoutMask.None);
        return Compare("attention", "padded-keys-ignored", [.. backend.DownloadArray(first).Take(Real * C).Select(v => (double)v)],
            [.. backend.DownloadArray(second).Take(Real * C)], new Tolerance(0, 0));
    }

    public ParityResult LayerNorm(LayerNormCase c)
    {
        var input = OpCases.Random(c.N * c.C, 7, 3f);
        var residual = c.Residual ? OpCases.Random(c.N * c.C, 8) : null;
        var weight = OpCases.Random(c.C, 9);
        var bias = OpCases.Random(c.C, 10);
        var output = backend.Poisoned(c.N * c.C);
        backend.LayerNorm(output, backend.UploadArray(input), residual is null ? null : backend.UploadArray(residual), backend.UploadArray(weight), backend.UploadArray(bias), c.N, c.C, 1e-12f);
        return Compare("layernorm", c.Name, ReferenceOps.LayerNorm(input.AsDoubles(), residual?.AsDoubles(), weight.AsDoubles(), bias.AsDoubles(), c.N, c.C, 1e-12), backend.DownloadArray(output), OpCases.LayerNormTolerance);
    }

    public ParityResult Embeddings(EmbeddingsCase c)
    {
        var random = new Random(11);
        var ids = Enumerable.Range(0, c.B * c.T).Select(_ => random.Next(c.V)).ToArray();
        var types = Enumerable.Range(0, c.B * c.T).Select(_ => random.Next(c.TypeVocab)).ToArray();
        var word = OpCases.Random(c.V * c.C, 12);
        var position = OpCases.Random(c.Positions * c.C, 13);
        var positions = c.PositionIds();
        var tokenType = OpCases.Random(c.TypeVocab * c.C, 14);
        var weight = OpCases.Random(c.C, 18);
        var bias = OpCases.Random(c.C, 19);
        var (output, sum) = (backend.Poisoned(c.B * c.T * c.C), backend.Poisoned(c.B * c.T * c.C));
        backend.Embeddings(output, sum, backend.UploadArray(ids), backend.UploadArray(positions), backend.UploadArray(types), backend.UploadArray(word), backend.UploadArray(position), backend.UploadArray(tokenType), backend.UploadArray(weight), backend.UploadArray(bias), c.B, c.T, c.C, 1e-12f);
        var expectedSum = ReferenceOps.Embeddings(ids, positions, types, word.AsDoubles(), position.AsDoubles(), tokenType.AsDoubles(), c.B, c.T, c.C);
        var sumResult = Compare("embeddings-sum", c.Name, expectedSum, backend.DownloadArray(sum), OpCases.EmbeddingsTolerance);
        if (!sumResult.Passed) return sumResult;
        // The normalisation sees the float32 sum, as every backend does.
        var expected = ReferenceOps.LayerNorm([.. expectedSum.Select(v => (double)(float)v)], null, weight.AsDoubles(), bias.AsDoubles(), c.B * c.T, c.C, 1e-12);
        var normalised = Compare("embeddings", c.Name, expected, backend.DownloadArray(output), OpCases.LayerNormTolerance);
        // Without a sum buffer the op must give the same output.
        var alone = backend.Poisoned(c.B * c.T * c.C);
        backend.Embeddings(alone, null, backend.UploadArray(ids), backend.UploadArray(positions), backend.UploadArray(types), backend.UploadArray(word), backend.UploadArray(position), backend.UploadArray(tokenType), backend.UploadArray(weight), backend.UploadArray(bias), c.B, c.T, c.C, 1e-12f);
        var aloneResult = Compare("embeddings", c.Name + " without sum", expected, backend.DownloadArray(alone), OpCases.LayerNormTolerance);
        return normalised.Passed ? aloneResult : normalised;
    }

    public ParityResult FirstToken()
    {
        const int B = 3, T = 5, C = 7;
        var input = OpCases.Random(B * T * C, 15);
        var output = backend.Poisoned(B * C);
        backend.FirstToken(output, backend.UploadArray(input), B, T, C);
        return Compare("first-token", "3x5x7", ReferenceOps.FirstToken(input, B, T, C), backend.DownloadArray(output), new Tolerance(0, 0));
    }

    /// <summary>Every element within tolerance; the worst one reported.</summary>
    public static ParityResult Compare(string op, string name, double[] expected, float[] actual, Tolerance tolerance) =>
        Compare(op, name, expected, actual.AsDoubles(), tolerance);

    public static ParityResult Compare(string op, string name, double[] expected, double[] actual, Tolerance tolerance)
    {
        if (expected.Length != actual.Length)
            return new ParityResult(op, name, double.PositiveInfinity, -1, expected.Length, actual.Length, tolerance, false);
        double worstExcess = double.NegativeInfinity, maxError = 0;
        int worst = 0;
        bool passed = true;
        for (int i = 0; i < expected.Length; i++)
        {
            double error = Math.Abs(actual[i] - expected[i]);
            double allowed = tolerance.Absolute + tolerance.Relative * Math.Abs(expected[i]);
            if (!(error <= allowed)) passed = false; // NaN fails too
            double excess = double.IsNaN(error) ? double.PositiveInfinity : error - allowed;
            if (excess > worstExcess)
            {
                worstExcess = excess;
                worst = i;
            }
            if (!(error <= maxError)) maxError = error;
        }
        return new ParityResult(op, name, maxError, worst, expected.Length > 0 ? expected[worst] : 0, actual.Length > 0 ? actual[worst] : 0, tolerance, passed);
    }
}
