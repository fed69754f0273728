using System.Reflection;
using ILGPU;
using ILGPU.Runtime;

namespace Engine.Kernels;

/// <summary>One kernel as the engine launches it, for offline compilation (the PTX check).</summary>
/// <param name="Name">Kernel and specialization, e.g. "attention hs=64".</param>
/// <param name="Method">The kernel method (specializations fixed by a wrapper).</param>
/// <param name="ExplicitlyGrouped">Launched with a KernelConfig (shared memory, barriers) rather than auto-grouped.</param>
/// <param name="NoSpills">Whether spilling to local memory is a failure for this kernel.</param>
/// <param name="RequiredSass">Instructions its SASS must hold, by their full name (<c>IDP.4A.S8.S8</c>, <c>HMMA.16816.F32.BF16</c>): inline PTX that ptxas kept as the instruction meant.</param>
public sealed record KernelEntry(string Name, MethodInfo Method, bool ExplicitlyGrouped, bool NoSpills, params string[] RequiredSass);

/// <summary>
/// Every kernel with every specialization the engine uses: the attention kernel's head size is a
/// specialization constant (32 in MiniLM-class models, 64 in BERT-base/large, 128 the largest supported);
/// the wrappers below fix it the way a launch with <see cref="SpecializedValue{T}"/> does.
/// </summary>
public static class KernelCatalog
{
    public static IReadOnlyList<KernelEntry> All { get; } =
    [
        new("gemm", Method(nameof(GemmKernels), nameof(GemmKernels.Kernel)), true, true),
        new("attention hs=32", Method(nameof(KernelCatalog), nameof(AttentionHeadSize32)), true, true),
        new("attention hs=64", Method(nameof(KernelCatalog), nameof(AttentionHeadSize64)), true, true),
        new("attention hs=128", Method(nameof(KernelCatalog), nameof(AttentionHeadSize128)), true, true),
        new("softmax", Method(nameof(SoftmaxKernels), nameof(SoftmaxKernels.Kernel)), true, false),
        new("layernorm", Method(nameof(LayerNormKernels), nameof(LayerNormKernels.Kernel)), true, true),
        new("attention-probabilities", Method(nameof(AttentionKernels), nameof(AttentionKernels.ProbabilitiesKernel)), false, false),
        new("embeddings", Method(nameof(EmbeddingsKernels), nameof(EmbeddingsKernels.Kernel)), true, true),
        new("gather-rows", Method(nameof(EmbeddingsKernels), nameof(EmbeddingsKernels.GatherRowsKernel)), false, false),
        new("activate", Method(nameof(ActivationKernels), nameof(ActivationKernels.ActivateKernel)), false, false),
        new("int8-quantize-rows", Method(nameof(Int8GemmKernels), nameof(Int8GemmKernels.QuantizeRowsKernel)), true, true),
        new("int8-pack-weights", Method(nameof(Int8GemmKernels), nameof(Int8GemmKernels.PackWeightsKernel)), false, false),
        new("int8-gemm-dp4a", Method(nameof(Int8GemmKernels), nameof(Int8GemmKernels.Dp4aKernel)), true, true, "IDP.4A.S8.S8"),
        new("int8-gemm-mma", Method(nameof(Int8GemmKernels), nameof(Int8GemmKernels.TensorCoreKernel)), true, true, "IMMA.16832.S8.S8"),
        new("to-words", Method(nameof(ReducedPrecisionGemmKernels), nameof(ReducedPrecisionGemmKernels.ToWordsKernel)), false, false),
        new("widen", Method(nameof(ReducedPrecisionGemmKernels), nameof(ReducedPrecisionGemmKernels.WidenKernel)), false, false),
        new("reduced-gemm-mma fp16", Method(nameof(KernelCatalog), nameof(ReducedGemmFp16)), true, true, "HMMA.16816.F32", "LDSM.16.M88.2", "LDGSTS.E.BYPASS.128"),
        new("reduced-gemm-mma bf16", Method(nameof(KernelCatalog), nameof(ReducedGemmBf16)), true, true, "HMMA.16816.F32.BF16", "LDSM.16.M88.2", "LDGSTS.E.BYPASS.128"),
        new("reduced-gemm-mma tf32", Method(nameof(KernelCatalog), nameof(ReducedGemmTf32)), true, true, "HMMA.1688.F32.TF32", "LDSM.16.M88.2", "LDGSTS.E.BYPASS.128"),
        new("flash-attention fp16 hs=32", Method(nameof(KernelCatalog), nameof(FlashAttentionFp16HeadSize32)), true, true, "HMMA.16816.F32", "LDSM.16.M88.2", "LDSM.16.MT88.2", "LDGSTS.E.BYPASS.128"),
        new("flash-attention fp16 hs=64", Method(nameof(KernelCatalog), nameof(FlashAttentionFp16HeadSize64)), true, true, "HMMA.16816.F32", "LDSM.16.M88.2", "LDSM.16.MT88.2", "LDGSTS.E.BYPASS.128"),
        new("flash-attention fp16 hs=128", Method(nameof(KernelCatalog), nameof(FlashAttentionFp16HeadSize128)), true, true, "HMMA.16816.F32", "LDSM.16.M88.2", "LDSM.16.MT88.2", "LDGSTS.E.BYPASS.128"),
        new("flash-attention bf16 hs=64", Method(nameof(KernelCatalog), nameof(FlashAttentionBf16HeadSize64)), true, true, "HMMA.16816.F32.BF16", "LDSM.16.M88.2", "LDSM.16.MT88.2", "LDGSTS.E.BYPASS.128"),
        new("flash-attention-query-backward fp16 hs=64", Method(nameof(KernelCatalog), nameof(FlashAttentionQueryBackwardFp16HeadSize64)), true, true, "HMMA.16816.F32", "LDSM.16.M88.2", "LDSM.16.MT88.2", "LDGSTS.E.BYPASS.128"),
        new("flash-attention-key-backward fp16 hs=64", Method(nameof(KernelCatalog), nameof(FlashAttentionKeyBackwardFp16HeadSize64)), true, true, "HMMA.16816.F32", "LDSM.16.M88.2", "LDSM.16.MT88.2", "LDGSTS.E.BYPASS.128"),
        new("flash-attention-key-backward bf16 hs=128", Method(nameof(KernelCatalog), nameof(FlashAttentionKeyBackwardBf16HeadSize128)), true, true, "HMMA.16816.F32.BF16", "LDSM.16.M88.2", "LDSM.16.MT88.2", "LDGSTS.E.BYPASS.128"),
        // Backward passes.
        new("activate-backward", Method(nameof(ActivationKernels), nameof(ActivationKernels.BackwardKernel)), false, false),
        new("dropout", Method(nameof(ActivationKernels), nameof(ActivationKernels.DropoutKernel)), false, false),
        new("adamw", Method(nameof(OptimizerKernels), nameof(OptimizerKernels.AdamWKernel)), false, false),
        new("sum-of-squares", Method(nameof(OptimizerKernels), nameof(OptimizerKernels.SumOfSquaresKernel)), true, false),
        new("accumulate", Method(nameof(ReductionKernels), nameof(ReductionKernels.AccumulateKernel)), false, false),
        new("scale", Method(nameof(ReductionKernels), nameof(ReductionKernels.ScaleKernel)), false, false),
        new("column-partials", Method(nameof(ReductionKernels), nameof(ReductionKernels.ColumnPartialsKernel)), false, false),
        new("column-finish", Method(nameof(ReductionKernels), nameof(ReductionKernels.ColumnFinishKernel)), false, false),
        new("scatter-rows", Method(nameof(EmbeddingsKernels), nameof(EmbeddingsKernels.ScatterRowsKernel)), false, false),
        new("layernorm-backward", Method(nameof(LayerNormKernels), nameof(LayerNormKernels.BackwardKernel)), true, true),
        new("layernorm-param-partials", Method(nameof(LayerNormKernels), nameof(LayerNormKernels.ParameterPartialsKernel)), false, true),
        new("attn-q-backward hs=64", Method(nameof(KernelCatalog), nameof(AttentionQueryBackwardHeadSize64)), true, true),
        new("attn-kv-backward hs=64", Method(nameof(KernelCatalog), nameof(AttentionKeyBackwardHeadSize64)), true, true),
        new("softmax-backward", Method(nameof(SoftmaxKernels), nameof(SoftmaxKernels.BackwardKernel)), true, false),
        new("cross-entropy", Method(nameof(SoftmaxKernels), nameof(SoftmaxKernels.CrossEntropyKernel)), true, false),
        new("embeddings-backward", Method(nameof(EmbeddingsKernels), nameof(EmbeddingsKernels.TableBackwardKernel)), false, false),
        new("mean-squared-error", Method(nameof(LossKernels), nameof(LossKernels.MeanSquaredErrorKernel)), false, false),
    ];

    internal static void AttentionQueryBackwardHeadSize64(ArrayView<float> dQkv, ArrayView<float> statistics, ArrayView<float> dOutput, ArrayView<float> qkv,
        ArrayView<int> keyMask, AttentionKernels.Shape s) =>
        AttentionKernels.QueryBackwardKernel(dQkv, statistics, dOutput, qkv, keyMask, s, new SpecializedValue<int>(64));

    internal static void AttentionKeyBackwardHeadSize64(ArrayView<float> dQkv, ArrayView<float> statistics, ArrayView<float> dOutput, ArrayView<float> qkv,
        ArrayView<int> keyMask, AttentionKernels.Shape s) =>
        AttentionKernels.KeyBackwardKernel(dQkv, statistics, dOutput, qkv, keyMask, s, new SpecializedValue<int>(64));

    internal static void AttentionHeadSize32(ArrayView<float> output, ArrayView<float> qkv, ArrayView<int> keyMask, AttentionKernels.Shape s) =>
        AttentionKernels.Kernel(output, qkv, keyMask, s, new SpecializedValue<int>(32));

    internal static void AttentionHeadSize64(ArrayView<float> output, ArrayView<float> qkv, ArrayView<int> keyMask, AttentionKernels.Shape s) =>
        AttentionKernels.Kernel(output, qkv, keyMask, s, new SpecializedValue<int>(64));

    internal static void AttentionHeadSize128(ArrayView<float> output, ArrayView<float> qkv, ArrayView<int> keyMask, AttentionKernels.Shape s) =>
        AttentionKernels.Kernel(output, qkv, keyMask, s, new SpecializedValue<int>(128));

    internal static void ReducedGemmFp16(ArrayView<float> output, ArrayView<float> pre, ArrayView<uint> a, ArrayView<uint> w, ArrayView<float> bias,
        ReducedPrecisionGemmKernels.Shape s, long aAddress, long wAddress) =>
        ReducedPrecisionGemmKernels.TensorCoreKernel(output, pre, a, w, bias, s, aAddress, wAddress, new SpecializedValue<int>(ReducedPrecisionGemmKernels.Fp16));

    internal static void ReducedGemmBf16(ArrayView<float> output, ArrayView<float> pre, ArrayView<uint> a, ArrayView<uint> w, ArrayView<float> bias,
        ReducedPrecisionGemmKernels.Shape s, long aAddress, long wAddress) =>
        ReducedPrecisionGemmKernels.TensorCoreKernel(output, pre, a, w, bias, s, aAddress, wAddress, new SpecializedValue<int>(ReducedPrecisionGemmKernels.Bf16));

    internal static void ReducedGemmTf32(ArrayView<float> output, ArrayView<float> pre, ArrayView<uint> a, ArrayView<uint> w, ArrayView<float> bias,
        ReducedPrecisionGemmKernels.Shape s, long aAddress, long wAddress) =>
        ReducedPrecisionGemmKernels.TensorCoreKernel(output, pre, a, w, bias, s, aAddress, wAddress, new SpecializedValue<int>(ReducedPrecisionGemmKernels.Tf32));

    internal static void FlashAttentionFp16HeadSize32(ArrayView<float> output, ArrayView<uint> words, ArrayView<int> indices, AttentionKernels.Shape s, long address) =>
        FlashAttentionKernels.ForwardKernel(output, words, indices, s, address, new SpecializedValue<int>(32), new SpecializedValue<int>(ReducedPrecisionGemmKernels.Fp16));

    internal static void FlashAttentionFp16HeadSize64(ArrayView<float> output, ArrayView<uint> words, ArrayView<int> indices, AttentionKernels.Shape s, long address) =>
        FlashAttentionKernels.ForwardKernel(output, words, indices, s, address, new SpecializedValue<int>(64), new SpecializedValue<int>(ReducedPrecisionGemmKernels.Fp16));

    internal static void FlashAttentionFp16HeadSize128(ArrayView<float> output, ArrayView<uint> words, ArrayView<int> indices, AttentionKernels.Shape s, long address) =>
        FlashAttentionKernels.ForwardKernel(output, words, indices, s, address, new SpecializedValue<int>(128), new SpecializedValue<int>(ReducedPrecisionGemmKernels.Fp16));

    internal static void FlashAttentionBf16HeadSize64(ArrayView<float> output, ArrayView<uint> words, ArrayView<int> indices, AttentionKernels.Shape s, long address) =>
        FlashAttentionKernels.ForwardKernel(output, words, indices, s, address, new SpecializedValue<int>(64), new SpecializedValue<int>(ReducedPrecisionGemmKernels.Bf16));

    internal static void FlashAttentionQueryBackwardFp16HeadSize64(ArrayView<float> dQkv, ArrayView<float> statistics, ArrayView<float> dOutput, ArrayView<uint> words,
        ArrayView<uint> dWords, ArrayView<int> indices, AttentionKernels.Shape s, long address) =>
        FlashAttentionKernels.QueryBackwardKernel(dQkv, statistics, dOutput, words, dWords, indices, s, address, new SpecializedValue<int>(64),
            new SpecializedValue<int>(ReducedPrecisionGemmKernels.Fp16));

    internal static void FlashAttentionKeyBackwardFp16HeadSize64(ArrayView<float> dQkv, ArrayView<float> statistics, ArrayView<uint> words, ArrayView<uint> dWords,
        ArrayView<int> indices, AttentionKernels.Shape s, long address, long dAddress) =>
        FlashAttentionKernels.KeyBackwardKernel(dQkv, statistics, words, dWords, indices, s, address, dAddress, new SpecializedValue<int>(64),
            new SpecializedValue<int>(ReducedPrecisionGemmKernels.Fp16));

    internal static void FlashAttentionKeyBackwardBf16HeadSize128(ArrayView<float> dQkv, ArrayView<float> statistics, ArrayView<uint> words, ArrayView<uint> dWords,
        ArrayView<int> indices, AttentionKernels.Shape s, long address, long dAddress) =>
        FlashAttentionKernels.KeyBackwardKernel(dQkv, statistics, words, dWords, indices, s, address, dAddress, new SpecializedValue<int>(128),
            new SpecializedValue<int>(ReducedPrecisionGemmKernels.Bf16));

    private static MethodInfo Method(string type, string name) =>
        typeof(KernelCatalog).Assembly.GetType($"{typeof(KernelCatalog).Namespace}.{type}")!
            .GetMethod(name, BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static)!;
}
