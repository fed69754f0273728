using Engine.Backends;

namespace Engine.Reference;

/// <summary>
/// The one catalogue of op cases (<see cref="OpCase"/> objects): the parity matrix runs every case's forward and
/// backward on every backend against the float64 reference, the gradient tests hold each small case's reference
/// backward to finite differences, the ILGPU CPU emulator runs the cases within its budget, and the benchmarks and
/// the GPU check time <see cref="BertBase"/>. A new op or kernel ships with its cases here. Odd sizes (not
/// multiples of any SIMD width or tile) and ragged masks (including an all-padding row) are deliberate.
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

    /// <summary>The largest case (by work) whose gradients are checked by finite differences: each input costs two forwards.</summary>
    public const long FiniteDifferenceWork = 20_000;

    /// <summary>The most estimated seconds a case's forward or backward may take to run on the ILGPU CPU emulator in the tests.</summary>
    public const double EmulatorBudgetSeconds = 3;

    public static readonly LinearCase[] Linear =
    [
        new("1x1x1", 1, 1, 1, true, "none"),
        new("odd", 7, 13, 5, true, "none"),
        new("odd-gelu", 13, 37, 33, true, "gelu"),
        new("odd-tanh", 5, 31, 67, true, "tanh"),
        new("no-bias", 19, 64, 48, false, "none"),
        new("tall", 101, 17, 3, true, "gelu"),
        new("many-rows", 601, 9, 7, true, "none"), // rows in several of the bias gradient's 256-row blocks, the last one partial
        new("odd-gelu-kept", 13, 37, 33, true, "gelu", keepPreActivation: true),
        new("odd-tanh-kept", 5, 31, 67, true, "tanh", keepPreActivation: true),
        new("tall-none-kept", 70, 17, 3, false, "none", keepPreActivation: true),
        new("minilm-qkv", 64, 384, 1152, true, "none"),
        new("minilm-ffn", 50, 384, 1536, true, "gelu"),
        new("vocab-decoder", 23, 64, 1031, true, "none"), // a masked-LM decoder: few gathered rows, a wide vocabulary
        new("deep-k-gelu-kept", 19, 1003, 45, true, "gelu", keepPreActivation: true), // K in several cache blocks at every vector width
    ];

    public static readonly Int8LinearCase[] Int8Linear =
    [
        new("1x1x1", 1, 1, 1, true, "none"),
        new("odd", 7, 13, 5, true, "none"),
        new("odd-gelu", 13, 37, 33, true, "gelu"),
        new("odd-tanh-kept", 5, 31, 67, true, "tanh", keepPreActivation: true),
        new("no-bias-k70", 37, 70, 45, false, "none"), // K past two tensor-core steps, N past a 32-column tile
        new("over-tiles", 70, 97, 70, true, "gelu"),
        new("minilm-ffn-out", 9, 1536, 384, true, "none"),
    ];

    /// <summary>Linears with an F16 or BF16 weight on an fp32 backend (the CPU backend widens it as it packs it; ILGPU widens it in scratch).</summary>
    public static readonly HalfWeightLinearCase[] HalfWeightLinear =
    [
        .. new[] { Engine.IO.DType.F16, Engine.IO.DType.BF16 }.SelectMany(t => new HalfWeightLinearCase[]
        {
            new("odd", 7, 13, 5, true, "none", t),
            new("odd-gelu-kept", 13, 37, 33, true, "gelu", t, keepPreActivation: true),
            new("k64-tanh", 9, 64, 40, false, "tanh", t),
        }),
    ];

    /// <summary>
    /// Linears with an F16 or BF16 weight in a reduced precision: of the product's own format with K a multiple of 16 (read as
    /// it is: its rows are the kernel's words), of its format with another K, and of another format (both widened first).
    /// </summary>
    public static readonly HalfWeightLinearCase[] HalfWeightReducedLinear =
    [
        new("k32", 13, 32, 33, true, "gelu", Engine.IO.DType.F16, ComputePrecision.Fp16, keepPreActivation: true),
        new("over-tiles-k48", 70, 48, 37, false, "none", Engine.IO.DType.F16, ComputePrecision.Fp16),
        new("odd", 7, 13, 5, true, "none", Engine.IO.DType.F16, ComputePrecision.Fp16),
        new("k32", 13, 32, 33, true, "tanh", Engine.IO.DType.BF16, ComputePrecision.Bf16),
        new("k32", 13, 32, 33, true, "none", Engine.IO.DType.F16, ComputePrecision.Bf16),
        new("k32", 13, 32, 33, true, "none", Engine.IO.DType.BF16, ComputePrecision.Tf32),
    ];

    /// <summary>
    /// A reduced-precision product against the fp32-operand product: each operand's relative rounding error is at most half
    /// an ulp (2⁻¹¹ for fp16 and tf32, 2⁻⁸ for bf16), so a sum of K products errs by about that times √K times a product's size.
    /// </summary>
    public static Tolerance RoundingTolerance(ComputePrecision precision, int K)
    {
        double unit = precision == ComputePrecision.Bf16 ? 1.0 / 256 : 1.0 / 2048;
        return new(4 * unit * Math.Sqrt(K), 4 * unit);
    }

    /// <summary>
    /// Flash attention in fp16 and bf16: a ragged key mask, a sequence over two query and key tiles with dropout, packed
    /// sequences, and each head size the kernel takes (32, 64, 128).
    /// </summary>
    public static readonly ReducedPrecisionAttentionCase[] ReducedPrecisionAttention =
    [
        .. new[] { ComputePrecision.Fp16, ComputePrecision.Bf16 }.SelectMany(p => new ReducedPrecisionAttentionCase[]
        {
            new("ragged-hs32", 2, 13, 2, 32, [13, 5], p),
            new("over-tiles-dropout-hs32", 1, 70, 1, 32, [70], p, dropout: 0.1f),
            new("packed-hs64", 2, 20, 1, 64, [20, 7], p, packed: true),
            new("hs128", 1, 9, 1, 128, [9], p),
        }),
    ];

    /// <summary>Each shape in tf32, fp16 and bf16: a K below one tensor-core step, several steps, N and M past one 64×32 tile.</summary>
    public static readonly ReducedPrecisionLinearCase[] ReducedPrecisionLinear =
    [
        .. new[] { ComputePrecision.Tf32, ComputePrecision.Fp16, ComputePrecision.Bf16 }.SelectMany(p => new ReducedPrecisionLinearCase[]
        {
            new("1x1x1", 1, 1, 1, true, "none", p),
            new("odd", 7, 13, 5, true, "none", p),
            new("odd-gelu-kept", 13, 37, 33, true, "gelu", p, keepPreActivation: true),
            new("over-tiles-tanh", 70, 21, 37, false, "tanh", p),
        }),
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
        new("tn-deep", Engine.Backends.MatMulShape.Contiguous(1, 37, 1003, 45, true, false)), // a weight gradient: A transposed, K in several blocks
    ];

    public static readonly ActivationCase[] Activations =
        [.. new[] { 1, 15, 16, 17, 1000, 4099 }.SelectMany(n => new[] { "gelu", "tanh" }.Select(a => new ActivationCase(n, a)))];

    public static readonly SoftmaxCase[] Softmax =
    [
        new("1x1", 1, 1),
        new("two-classes", 9, 2),
        new("odd", 5, 37),
        new("wide", 3, 1000),
        new("vocabulary", 2, 30522),
        new("large-logits", 4, 37, scale: 400f), // exp overflows float unless the maximum is subtracted
    ];

    public static readonly CrossEntropyCase[] CrossEntropy =
    [
        new("binary", 5, 2, [0, 1, 1, 0, 1]),
        new("odd-with-ignored", 4, 7, [3, -100, 6, 0]),
        new("vocabulary", 3, 30522, [2023, 7, 30521]),
        new("large-logits", 3, 29, [5, -100, 28], scale: 400f),
    ];

    public static readonly MeanSquaredErrorCase[] MeanSquaredError =
    [
        new("one", 1),
        new("batch", 7),
        new("multi-output", 5 * 3),
        new("large", 4099),
    ];

    public static readonly AttentionCase[] Attention =
    [
        new("single", 1, 1, 1, 4, [1]),
        new("ragged", 3, 7, 2, 5, [7, 3, 1]),
        new("odd-head", 2, 5, 2, 17, [5, 3]),
        new("ragged-odd-head", 2, 13, 3, 17, [13, 6]),
        new("all-padding-row", 2, 5, 2, 8, [5, 0]),
        new("minilm-heads", 2, 33, 12, 32, [33, 20]),
        new("ragged-dropout", 3, 7, 2, 5, [7, 3, 1], 0.3f),
        new("large-scores", 2, 6, 2, 8, [6, 4], scale: 12f), // q·k/√8 up to ~400: the backward's recomputed softmax must not overflow
        new("minilm-heads-dropout", 2, 33, 12, 32, [33, 20], 0.1f),
        new("packed-ragged", 3, 7, 2, 5, [7, 3, 1], packed: true),
        new("packed-ragged-odd-head", 2, 13, 3, 17, [13, 6], packed: true),
        new("packed-empty-sequence", 3, 5, 2, 8, [5, 0, 3], packed: true),
        new("packed-ragged-dropout", 3, 7, 2, 5, [7, 3, 1], 0.3f, packed: true),
        new("packed-minilm-heads-dropout", 3, 33, 12, 32, [20, 33, 7], 0.1f, packed: true),
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
        new("many-rows", 2, 5, 3, 700, 2, 600), // tables of several row blocks in the GPU backward, at emulator cost
        new("minilm", 2, 40, 384, 1000, 2, 512),
        new("odd-int8-words", 3, 7, 19, 31, 2, 9, Engine.IO.DType.I8),
        new("minilm-int8-words", 2, 40, 384, 1000, 2, 512, Engine.IO.DType.I8),
        new("odd-f16-words", 3, 7, 19, 31, 2, 9, Engine.IO.DType.F16),
        new("odd-bf16-words", 3, 7, 19, 31, 2, 9, Engine.IO.DType.BF16),
        new("minilm-f16-words", 2, 40, 384, 1000, 2, 512, Engine.IO.DType.F16),
    ];

    /// <summary>Every case of the catalogue, in op order.</summary>
    public static readonly OpCase[] All =
    [
        .. Linear, new LinearWeightUpdateCase(), .. Int8Linear, .. HalfWeightLinear, .. MatMul, .. Activations, .. Softmax, .. CrossEntropy, .. MeanSquaredError,
        .. Attention, new PaddedKeysCase(), .. Attention.Where(c => c.DropoutMask.Probability == 0).Select(c => new AttentionProbabilitiesCase(c)), .. LayerNorm, .. Embeddings, new GatherRowsCase("first-tokens-3x5x7", 15, 7, [0, 5, 10]),
        new GatherRowsCase("masked-41-of-97x33", 97, 33, [.. Enumerable.Range(0, 97).Where(i => i % 7 == 3 || i % 5 == 1).Reverse()]), new AccumulateCase(), new ScaleCase(),
    ];

    /// <summary>The case with id "op/name".</summary>
    public static OpCase Find(string id) => All.Single(c => c.Id == id);

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
            new("bert-base-mlm-decoder", Tokens * 15 / 100, C, 30522, true, "none"), // the masked rows (15%) × the vocabulary
        ];

        public static readonly AttentionCase Attention = new("bert-base-attention", B, T, NH, HS, [.. Enumerable.Repeat(T, B)]);
        public static readonly LayerNormCase LayerNorm = new("bert-base-layernorm", Tokens, C, true);
        public static readonly EmbeddingsCase Embeddings = new("bert-base-embeddings", B, T, C, 30522, 2, 512);

        /// <summary>The same Linears with int8 weights (a quantized checkpoint), for the int8 kernels' timings.</summary>
        public static readonly Int8LinearCase[] Int8Linear =
        [
            new("bert-base-qkv", Tokens, C, 3 * C, true, "none"),
            new("bert-base-ffn-in-gelu", Tokens, C, I, true, "gelu"),
            new("bert-base-ffn-out", Tokens, I, C, true, "none"),
        ];

        /// <summary>Every timed case.</summary>
        public static readonly OpCase[] All = [.. Linear, .. Int8Linear, Attention, LayerNorm, Embeddings];
    }

    /// <summary>Warp-synchronous steps of the tiled GEMM: per 64×64 tile of a batch item, two group barriers (8 warps each) per slice of 16 along K.</summary>
    public static double GemmRounds(int batch, int M, int K, int N) =>
        (double)batch * Math.Ceiling(M / 64.0) * Math.Ceiling(N / 64.0) * Math.Ceiling(K / 16.0) * 2 * 8;

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
