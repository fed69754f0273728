namespace Engine.Reference;

/// <summary>Tolerance of an op against its float64 reference: |got − ref| ≤ Absolute + Relative·|ref|.</summary>
public sealed record Tolerance(double Absolute, double Relative);

/// <summary>A case of the catalogue; <c>Work</c> (multiply-adds or elements) sizes it, so that the ILGPU
/// CPU emulator, about 1,000× slower than plain C#, runs only the small ones.</summary>
public interface IOpCase
{
    string Name { get; }
    long Work { get; }
}

public sealed record LinearCase(string Name, int M, int K, int N, bool Bias, string Activation) : IOpCase
{
    public long Work => (long)M * K * N;
}

public sealed record MatMulCase(string Name, Engine.Backends.MatMulShape Shape) : IOpCase
{
    public long Work => (long)Shape.Batch * Shape.M * Shape.K * Shape.N;
}

public sealed record SoftmaxCase(string Name, int Rows, int N) : IOpCase
{
    public long Work => (long)Rows * N;
}

public sealed record CrossEntropyCase(string Name, int B, int V, int[] Labels) : IOpCase
{
    public long Work => (long)B * V;
}

/// <summary>A mean-squared-error case over N predictions (a batch × num_labels regression head).</summary>
public sealed record MeanSquaredErrorCase(string Name, int N) : IOpCase
{
    public long Work => N;
}

/// <summary>An attention case; <paramref name="Dropout"/> &gt; 0 drops probabilities on a fixed Philox stream.</summary>
public sealed record AttentionCase(string Name, int B, int T, int NH, int HS, int[] Lengths, float Dropout = 0f) : IOpCase
{
    public long Work => (long)B * NH * T * T * HS;
    public Engine.Backends.DropoutMask DropoutMask => new(Dropout, 1234, 7);
}

public sealed record LayerNormCase(string Name, int N, int C, bool Residual) : IOpCase
{
    public long Work => (long)N * C;
}

/// <summary>An embeddings case over a position table of <paramref name="Positions"/> rows; its position ids repeat and skip (any family's rule).</summary>
public sealed record EmbeddingsCase(string Name, int B, int T, int C, int V, int TypeVocab, int Positions) : IOpCase
{
    public long Work => (long)B * T * C;

    /// <summary>(B,T) ids in [0, Positions), seeded, with repeats (a scatter-add must sum them).</summary>
    public int[] PositionIds()
    {
        var random = new Random(15);
        return [.. Enumerable.Range(0, B * T).Select(_ => random.Next(Positions))];
    }
}

/// <summary>
/// The one catalogue of op cases: parity tests run every case on every backend against
/// <see cref="ReferenceOps"/>; benchmarks time the cases named <c>bert-base</c>/<c>minilm</c>. A new op or
/// kernel ships with its cases here. Odd sizes (not multiples of any SIMD width or tile) and ragged
/// masks (including an all-padding row) are deliberate.
/// </summary>
public static class OpCases
{
    public static readonly Tolerance LinearTolerance = new(1e-5, 1e-4);
    public static readonly Tolerance SoftmaxTolerance = new(1e-7, 1e-5);
    /// <summary>Analytic float64 gradients against central differences (h = 1e-6) of the float64 forward.</summary>
    public static readonly Tolerance FiniteDifferenceTolerance = new(1e-7, 1e-5);
    /// <summary>A backend's float32 backward against the float64 one.</summary>
    public static readonly Tolerance BackwardTolerance = new(1e-5, 1e-4);
    public static readonly Tolerance AttentionTolerance = new(1e-5, 1e-4);
    public static readonly Tolerance LayerNormTolerance = new(1e-5, 1e-4);
    public static readonly Tolerance EmbeddingsTolerance = new(1e-6, 1e-6);
    /// <summary>GELU's erfc is a fit with relative error 1.2e-7; tanh is TensorPrimitives'.</summary>
    public static readonly Tolerance ActivationTolerance = new(1e-7, 2e-6);

    public static readonly LinearCase[] Linear =
    [
        new("1x1x1", 1, 1, 1, true, "none"),
        new("odd", 7, 13, 5, true, "none"),
        new("odd-gelu", 13, 37, 33, true, "gelu"),
        new("odd-tanh", 5, 31, 67, true, "tanh"),
        new("no-bias", 19, 64, 48, false, "none"),
        new("tall", 101, 17, 3, true, "gelu"),
        new("minilm-qkv", 64, 384, 1152, true, "none"),
        new("minilm-ffn", 50, 384, 1536, true, "gelu"),
    ];

    public static readonly MatMulCase[] MatMul =
    [
        new("nt-odd", Engine.Backends.MatMulShape.Contiguous(1, 7, 13, 5, false, true)),
        new("nn-odd", Engine.Backends.MatMulShape.Contiguous(1, 9, 17, 11, false, false)),
        new("tn-odd", Engine.Backends.MatMulShape.Contiguous(1, 11, 7, 13, true, false)),
        new("tt-odd", Engine.Backends.MatMulShape.Contiguous(1, 5, 9, 7, true, true)),
        new("over-one-tile", Engine.Backends.MatMulShape.Contiguous(1, 67, 19, 70, false, false)),
        new("batched-scores", Engine.Backends.MatMulShape.Contiguous(6, 13, 8, 13, false, true)),
        new("batched-strided-gaps", new(3, 5, 6, 7, false, false, 5 * 6 + 3, 6 * 7 + 5, 5 * 7 + 2)),
        new("minilm-scores", Engine.Backends.MatMulShape.Contiguous(24, 128, 32, 128, false, true)),
    ];

    public static readonly SoftmaxCase[] Softmax =
    [
        new("1x1", 1, 1),
        new("two-classes", 9, 2),
        new("odd", 5, 37),
        new("wide", 3, 1000),
        new("vocabulary", 2, 30522),
    ];

    public static readonly CrossEntropyCase[] CrossEntropy =
    [
        new("binary", 5, 2, [0, 1, 1, 0, 1]),
        new("odd-with-ignored", 4, 7, [3, -100, 6, 0]),
        new("vocabulary", 3, 30522, [2023, 7, 30521]),
    ];

    public static readonly MeanSquaredErrorCase[] MeanSquaredError =
    [
        new("one", 1),
        new("batch", 7),
        new("multi-output", 5 * 3),
        new("large", 4099),
    ];

    /// <summary>The largest case (by work) whose gradients are checked by finite differences: each parameter costs two forwards.</summary>
    public const long FiniteDifferenceWork = 20_000;

    public static readonly AttentionCase[] Attention =
    [
        new("single", 1, 1, 1, 4, [1]),
        new("ragged", 3, 7, 2, 5, [7, 3, 1]),
        new("ragged-odd-head", 2, 13, 3, 17, [13, 6]),
        new("all-padding-row", 2, 5, 2, 8, [5, 0]),
        new("minilm-heads", 2, 33, 12, 32, [33, 20]),
        new("ragged-dropout", 3, 7, 2, 5, [7, 3, 1], 0.3f),
        new("minilm-heads-dropout", 2, 33, 12, 32, [33, 20], 0.1f),
    ];

    public static readonly LayerNormCase[] LayerNorm =
    [
        new("1x1", 1, 1, false),
        new("odd", 7, 37, false),
        new("odd-residual", 9, 65, true),
        new("minilm", 33, 384, true),
    ];

    public static readonly EmbeddingsCase[] Embeddings =
    [
        new("tiny", 1, 1, 3, 5, 1, 1),
        new("odd", 3, 7, 19, 31, 2, 9),
        new("minilm", 2, 40, 384, 1000, 2, 512),
    ];

    /// <summary>
    /// BERT-base shapes (batch 32 × 128 tokens, hidden 768, 12 heads of 64, intermediate 3072) for the
    /// benchmarks and the GPU timings: too large for the float64 reference, so not in the parity lists.
    /// </summary>
    public static class BertBase
    {
        public const int B = 32, T = 128, C = 768, NH = 12, HS = 64, I = 3072, Tokens = B * T;

        public static readonly LinearCase[] Linear =
        [
            new("bert-base-qkv", Tokens, C, 3 * C, true, "none"),
            new("bert-base-attn-out", Tokens, C, C, true, "none"),
            new("bert-base-ffn-in-gelu", Tokens, C, I, true, "gelu"),
            new("bert-base-ffn-out", Tokens, I, C, true, "none"),
        ];

        public static readonly AttentionCase Attention = new("bert-base-attention", B, T, NH, HS, [.. Enumerable.Repeat(T, B)]);
        public static readonly LayerNormCase LayerNorm = new("bert-base-layernorm", Tokens, C, true);
        public static readonly EmbeddingsCase Embeddings = new("bert-base-embeddings", B, T, C, 30522, 2, 512);
    }

    /// <summary>The most work a case may have to run on the ILGPU CPU emulator.</summary>
    public const long EmulatorWork = 300_000;

    /// <summary>Element counts for the activation cases.</summary>
    public static readonly int[] ActivationLengths = [1, 15, 16, 17, 1000, 4099];

    /// <summary>A Linear case's inputs: A (M,K), W (N,K), bias (N) or null.</summary>
    public static (float[] Input, float[] Weight, float[]? Bias) LinearInputs(LinearCase c) =>
        (Random(c.M * c.K, 1), Random(c.N * c.K, 2, 0.5f), c.Bias ? Random(c.N, 3) : null);

    public static Engine.Backends.Activation ParseActivation(string activation) => activation switch
    {
        "none" => Engine.Backends.Activation.None,
        "gelu" => Engine.Backends.Activation.Gelu,
        "tanh" => Engine.Backends.Activation.Tanh,
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };

    /// <summary>Uniform values in [-scale, scale] from a fixed seed.</summary>
    public static float[] Random(int length, int seed, float scale = 1f)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++) values[i] = (float)(random.NextDouble() * 2 - 1) * scale;
        return values;
    }

    /// <summary>(B,T) mask with the first Lengths[b] tokens of each row real.</summary>
    public static int[] Mask(int[] lengths, int T)
    {
        var mask = new int[lengths.Length * T];
        for (int b = 0; b < lengths.Length; b++)
            for (int t = 0; t < lengths[b]; t++) mask[b * T + t] = 1;
        return mask;
    }
}
