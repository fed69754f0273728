using System.Runtime.InteropServices;
using Engine.Backends;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace Engine.Kernels;

/// <summary>Device memory of the ILGPU backend: an allocation, or a view of part of one (<see cref="DeviceBuffer{T}.Slice"/>).</summary>
internal sealed class IlgpuBuffer<T>(ArrayView<T> view, MemoryBuffer1D<T, Stride1D.Dense>? owned) : DeviceBuffer<T> where T : unmanaged
{
    public ArrayView<T> View { get; } = view;

    public override int Length => (int)View.Length;

    public override DeviceBuffer<T> Slice(long offset, int length)
    {
        CheckSlice(offset, length, Length);
        return new IlgpuBuffer<T>(View.SubView(offset, length), owned: null);
    }

    public override void Dispose()
    {
        owned?.Dispose();
        base.Dispose();
    }
}

/// <summary>The ILGPU backend's int8 products: dp4a (sm_61 and later), or mma.sync on tensor cores (sm_80 and later).</summary>
internal enum Int8Kernel
{
    Dp4a,
    TensorCores,
}

/// <summary>Which ILGPU accelerator to run the kernels on.</summary>
public enum IlgpuDevice
{
    Cuda,
    OpenCL,
    /// <summary>ILGPU's CPU accelerator emulating an NVIDIA GPU (warp 32): for tests, about 1,000× slower than the CPU backend.</summary>
    CpuEmulator,
}

/// <summary>
/// The encoder's ops as ILGPU kernels (C# compiled to PTX for CUDA, or to OpenCL C, or emulated on the
/// CPU). Kernels are compiled once per backend and reused; every op is asynchronous on the accelerator's
/// default stream, and <see cref="Download"/> synchronises.
/// </summary>
public sealed class IlgpuBackend : ITrainingBackend
{
    private readonly Context _context;
    private readonly Accelerator _accelerator;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _none; // stands for an absent bias or residual
    private readonly MemoryBuffer1D<sbyte, Stride1D.Dense> _noneInt8; // stands for an absent int8 table
    private readonly MemoryBuffer1D<ushort, Stride1D.Dense> _noneHalves; // stands for an absent F16 or BF16 table
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmKernels.Shape> _gemm;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionKernels.Shape, SpecializedValue<int>> _attention;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionKernels.Shape, int> _attentionProbabilities;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormKernels.Shape> _layerNorm;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<sbyte>, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, EmbeddingsKernels.Shape> _embeddings;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int> _gatherRows;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int> _activate;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int> _softmax;
    // Backward passes.
    private readonly Action<Index2D, ArrayView<float>, ArrayView<float>, int, int> _columnPartials;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int, int> _columnFinish;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int> _activateBackward;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, DropoutMask> _dropout;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormKernels.Shape> _layerNormBackward;
    private readonly Action<Index2D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormKernels.Shape> _layerNormParameterPartials;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionKernels.Shape, SpecializedValue<int>> _attentionQueryBackward;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionKernels.Shape, SpecializedValue<int>> _attentionKeyBackward;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int> _softmaxBackward;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int> _crossEntropy;
    private readonly Action<Index2D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int> _embeddingsBackward;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int> _scatterRows;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _accumulate;
    private readonly Action<Index1D, ArrayView<float>, float> _scale;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, OptimizerKernels.AdamWConstants> _adamW;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int> _sumOfSquares;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, float> _meanSquaredError;
    private readonly Action<KernelConfig, ArrayView<int>, ArrayView<float>, ArrayView<float>, Int8GemmKernels.Shape> _quantizeRows;
    private readonly Action<Index1D, ArrayView<int>, ArrayView<sbyte>, Int8GemmKernels.Shape> _packInt8Weights;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, Int8GemmKernels.Shape> _int8Dp4a, _int8TensorCores;
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<DeviceBuffer<sbyte>, MemoryBuffer1D<int, Stride1D.Dense>> _packedInt8 = [];
    private MemoryBuffer1D<int, Stride1D.Dense> _quantizedRows; // an int8 Linear's activations, grown on demand
    private MemoryBuffer1D<float, Stride1D.Dense> _rowScales;
    private MemoryBuffer1D<float, Stride1D.Dense> _scratch; // per-row statistics of backward passes, grown on demand
    private readonly Action<Index1D, ArrayView<uint>, ArrayView<float>, ReducedPrecisionGemmKernels.Operand> _toWords;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<ushort>, int> _widen;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<uint>, ArrayView<int>, AttentionKernels.Shape, long, SpecializedValue<int>, SpecializedValue<int>> _flashAttention;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<uint>, ArrayView<uint>, ArrayView<int>, AttentionKernels.Shape, long,
        SpecializedValue<int>, SpecializedValue<int>> _flashAttentionQueryBackward;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<uint>, ArrayView<uint>, ArrayView<int>, AttentionKernels.Shape, long, long,
        SpecializedValue<int>, SpecializedValue<int>> _flashAttentionKeyBackward;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<uint>, ArrayView<uint>, ArrayView<float>, ReducedPrecisionGemmKernels.Shape, long, long, SpecializedValue<int>> _reducedTensorCores;
    private MemoryBuffer1D<uint, Stride1D.Dense> _reducedWords; // a reduced-precision Linear's operands, grown on demand
    private ComputePrecision _precision;

    private IlgpuBackend(Context context, Accelerator accelerator)
    {
        _context = context;
        _accelerator = accelerator;
        _none = accelerator.Allocate1D<float>(1);
        _noneInt8 = accelerator.Allocate1D<sbyte>(1);
        _noneHalves = accelerator.Allocate1D<ushort>(1);
        _gemm = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmKernels.Shape>(GemmKernels.Kernel);
        _attention = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionKernels.Shape, SpecializedValue<int>>(AttentionKernels.Kernel);
        _attentionProbabilities = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionKernels.Shape, int>(AttentionKernels.ProbabilitiesKernel);
        _layerNorm = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormKernels.Shape>(LayerNormKernels.Kernel);
        _embeddings = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<sbyte>, ArrayView<float>, ArrayView<ushort>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, EmbeddingsKernels.Shape>(EmbeddingsKernels.Kernel);
        _gatherRows = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>(EmbeddingsKernels.GatherRowsKernel);
        _activate = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(ActivationKernels.ActivateKernel);
        _softmax = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int>(SoftmaxKernels.Kernel);
        _columnPartials = accelerator.LoadAutoGroupedStreamKernel<Index2D, ArrayView<float>, ArrayView<float>, int, int>(ReductionKernels.ColumnPartialsKernel);
        _columnFinish = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(ReductionKernels.ColumnFinishKernel);
        _activateBackward = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, int>(ActivationKernels.BackwardKernel);
        _dropout = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, DropoutMask>(ActivationKernels.DropoutKernel);
        _layerNormBackward = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormKernels.Shape>(LayerNormKernels.BackwardKernel);
        _layerNormParameterPartials = accelerator.LoadAutoGroupedStreamKernel<Index2D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormKernels.Shape>(LayerNormKernels.ParameterPartialsKernel);
        _attentionQueryBackward = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionKernels.Shape, SpecializedValue<int>>(AttentionKernels.QueryBackwardKernel);
        _attentionKeyBackward = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionKernels.Shape, SpecializedValue<int>>(AttentionKernels.KeyBackwardKernel);
        _softmaxBackward = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int>(SoftmaxKernels.BackwardKernel);
        _crossEntropy = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>(SoftmaxKernels.CrossEntropyKernel);
        _embeddingsBackward = accelerator.LoadAutoGroupedStreamKernel<Index2D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int, int, int>(EmbeddingsKernels.TableBackwardKernel);
        _scatterRows = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<int>, int, int>(EmbeddingsKernels.ScatterRowsKernel);
        _accumulate = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(ReductionKernels.AccumulateKernel);
        _scale = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, float>(ReductionKernels.ScaleKernel);
        _adamW = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, OptimizerKernels.AdamWConstants>(OptimizerKernels.AdamWKernel);
        _sumOfSquares = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int>(OptimizerKernels.SumOfSquaresKernel);
        _meanSquaredError = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, float>(LossKernels.MeanSquaredErrorKernel);
        _quantizeRows = accelerator.LoadStreamKernel<ArrayView<int>, ArrayView<float>, ArrayView<float>, Int8GemmKernels.Shape>(Int8GemmKernels.QuantizeRowsKernel);
        _packInt8Weights = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<int>, ArrayView<sbyte>, Int8GemmKernels.Shape>(Int8GemmKernels.PackWeightsKernel);
        _int8Dp4a = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, Int8GemmKernels.Shape>(Int8GemmKernels.Dp4aKernel);
        _int8TensorCores = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, Int8GemmKernels.Shape>(Int8GemmKernels.TensorCoreKernel);
        _toWords = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<uint>, ArrayView<float>, ReducedPrecisionGemmKernels.Operand>(ReducedPrecisionGemmKernels.ToWordsKernel);
        _widen = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<ushort>, int>(ReducedPrecisionGemmKernels.WidenKernel);
        _flashAttention = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<uint>, ArrayView<int>, AttentionKernels.Shape, long, SpecializedValue<int>, SpecializedValue<int>>(FlashAttentionKernels.ForwardKernel);
        _flashAttentionQueryBackward = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<uint>, ArrayView<uint>, ArrayView<int>,
            AttentionKernels.Shape, long, SpecializedValue<int>, SpecializedValue<int>>(FlashAttentionKernels.QueryBackwardKernel);
        _flashAttentionKeyBackward = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<uint>, ArrayView<uint>, ArrayView<int>,
            AttentionKernels.Shape, long, long, SpecializedValue<int>, SpecializedValue<int>>(FlashAttentionKernels.KeyBackwardKernel);
        _reducedTensorCores = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<uint>, ArrayView<uint>, ArrayView<float>, ReducedPrecisionGemmKernels.Shape, long, long, SpecializedValue<int>>(ReducedPrecisionGemmKernels.TensorCoreKernel);
        _reducedWords = accelerator.Allocate1D<uint>(1);
        _scratch = accelerator.Allocate1D<float>(1);
        _quantizedRows = accelerator.Allocate1D<int>(1);
        _rowScales = accelerator.Allocate1D<float>(1);
        // mma.sync with int8 operands needs sm_80; older CUDA devices and other accelerators take dp4a (or its plain
        // form); the emulator runs the tensor-core kernel's software path, which follows the mma fragment layout.
        Int8Product = accelerator is CudaAccelerator cuda && cuda.Architecture is { } architecture && architecture.Major < 8 || accelerator.AcceleratorType == AcceleratorType.OpenCL
            ? Int8Kernel.Dp4a : Int8Kernel.TensorCores;
    }

    /// <summary>
    /// The operands' format in Linear products, forward and backward: fp32 (the default), or tf32, fp16 or bf16 on tensor
    /// cores (mma.sync, sm_80 and later; the software fragment path on other accelerators), the sums in fp32; in fp16 and
    /// bf16 attention too, forward and backward (flash attention, for head sizes 32, 64 and 128). Other ops, the
    /// parameters, their gradients and the optimizer stay fp32.
    /// </summary>
    /// <exception cref="EngineException">A reduced format on a CUDA device older than sm_80.</exception>
    public ComputePrecision Precision
    {
        get => _precision;
        set
        {
            if (value != ComputePrecision.Fp32 && _accelerator is CudaAccelerator { Architecture: { } architecture } && architecture.Major < 8)
                throw new EngineException($"precision {value.ToString().ToLowerInvariant()} needs tensor cores with its mma.sync (sm_80 or later); this device is sm_{architecture.Major}{architecture.Minor}");
            _precision = value;
        }
    }

    /// <summary>
    /// Linears whose F16 or BF16 weight was widened into scratch (not read as it is); tests check that a weight of the
    /// precision's own format with K a multiple of 16 never is.
    /// </summary>
    internal long HalfWeightsWidened { get; private set; }

    /// <summary>Which kernel multiplies int8 operands; tests set it to check both on the emulator.</summary>
    internal Int8Kernel Int8Product { get; set; }

    /// <summary>Opens the first device of the given kind; throws <see cref="EngineException"/> when there is none.</summary>
    public static IlgpuBackend Create(IlgpuDevice device)
    {
        var context = device switch
        {
            IlgpuDevice.Cuda => Context.Create(b => b.Cuda().Math(MathMode.Default).EnableAlgorithms()),
            IlgpuDevice.OpenCL => Context.Create(b => b.OpenCL().Math(MathMode.Default).EnableAlgorithms()),
            _ => Context.Create(b => b.CPU(CPUDeviceKind.Nvidia).Math(MathMode.Default).EnableAlgorithms()),
        };
        try
        {
            Accelerator accelerator = device switch
            {
                IlgpuDevice.Cuda => context.GetCudaDevices() is { Count: > 0 } cuda ? cuda[0].CreateAccelerator(context) : throw new EngineException("no CUDA device found"),
                IlgpuDevice.OpenCL => context.GetCLDevices() is { Count: > 0 } cl ? cl[0].CreateAccelerator(context) : throw new EngineException("no OpenCL device found"),
                _ => context.CreateCPUAccelerator(0),
            };
            return new IlgpuBackend(context, accelerator);
        }
        catch
        {
            context.Dispose();
            throw;
        }
    }

    /// <summary>Whether a CUDA device is present (and its driver loads).</summary>
    public static bool CudaAvailable()
    {
        try
        {
            using var context = Context.Create(b => b.Cuda());
            return context.GetCudaDevices().Count > 0;
        }
        catch (Exception e) when (e is DllNotFoundException or TypeInitializationException or InvalidOperationException or NotSupportedException)
        {
            return false;
        }
    }

    public string Description => _accelerator.AcceleratorType == AcceleratorType.CPU
        ? $"ilgpu CPU emulator: {_accelerator.Name}, warp {_accelerator.WarpSize}"
        : $"ilgpu {_accelerator.AcceleratorType}: {_accelerator.Name}, {_accelerator.MemorySize >> 20:N0} MiB, warp {_accelerator.WarpSize}";

    /// <summary>Waits for every queued kernel: for timings.</summary>
    public void Synchronize() => _accelerator.Synchronize();

    public DeviceBuffer<T> Allocate<T>(int length) where T : unmanaged
    {
        var buffer = _accelerator.Allocate1D<T>(length);
        return new IlgpuBuffer<T>(buffer.View, buffer);
    }

    public void Upload<T>(ReadOnlySpan<T> source, DeviceBuffer<T> destination) where T : unmanaged
    {
        var buffer = Device(destination);
        if (source.Length > buffer.Length) throw new ArgumentException($"upload of {source.Length} elements into a buffer of {buffer.Length}");
        if (source.IsEmpty) return;
        buffer.View.SubView(0, source.Length).CopyFromCPU(ref MemoryMarshal.GetReference(source), source.Length);
    }

    public void Download<T>(DeviceBuffer<T> source, Span<T> destination) where T : unmanaged
    {
        var buffer = Device(source);
        if (destination.Length > buffer.Length) throw new ArgumentException($"download of {destination.Length} elements from a buffer of {buffer.Length}");
        _accelerator.Synchronize();
        if (destination.IsEmpty) return;
        buffer.View.SubView(0, destination.Length).CopyToCPU(ref MemoryMarshal.GetReference(destination), destination.Length);
    }

    public void Linear(Tensor output, Tensor input, Tensor weight, Tensor? bias,
        int M, int K, int N, Activation activation, Tensor? preActivation = null)
    {
        OpShapes.Linear(output, input, weight, bias, M, K, N, preActivation);
        if (weight.Type == IO.DType.I8)
        {
            LinearInt8(output, input, weight, bias, M, K, N, activation, preActivation);
            return;
        }
        var (outputView, preView, inputView, biasView) = (View(output), preActivation is null ? (ArrayView<float>?)null : View(preActivation), View(input),
            bias is null ? (ArrayView<float>?)null : View(bias));
        if (IO.DTypes.IsHalf(weight.Type))
        {
            var halves = View(weight.HalfValues(nameof(weight)));
            int stored = weight.Type == IO.DType.F16 ? ReducedPrecisionGemmKernels.Fp16 : ReducedPrecisionGemmKernels.Bf16;
            if (_precision is ComputePrecision.Fp16 or ComputePrecision.Bf16 && ReducedFormat == stored && K % 16 == 0 && ((IContiguousArrayView)halves).IndexInBytes % 16 == 0)
            {
                // Rows of K values of the product's own format are its padded words as they are (K/2 words per row).
                ReducedPrecisionProduct(outputView, preView, new(inputView, false), new(default, false, halves.SubView(0, (long)N * K).Cast<uint>()), biasView,
                    M, K, N, activation, accumulate: false);
                return;
            }
            // Another format, or rows that are not whole words: the weight widened (exactly) into scratch, then as an F32 one.
            HalfWeightsWidened++;
            var widened = Scratch((long)N * K);
            if (N > 0 && K > 0) _widen(N * K, widened, halves, stored);
            LinearOfViews(outputView, preView, inputView, widened, biasView, M, K, N, activation);
            return;
        }
        LinearOfViews(outputView, preView, inputView, View(weight), biasView, M, K, N, activation);
    }

    /// <summary>An F32 weight's Linear: the fp32 GEMM, or the tensor-core product in the backend's reduced <see cref="Precision"/>.</summary>
    private void LinearOfViews(ArrayView<float> output, ArrayView<float>? preActivation, ArrayView<float> input, ArrayView<float> weight, ArrayView<float>? bias,
        int M, int K, int N, Activation activation)
    {
        if (_precision != ComputePrecision.Fp32)
        {
            // Input and weight rounded into padded words in scratch (the weight every call, so a weight changed by training
            // or an upload is never stale: N·K conversions against M·N·K multiply-adds), then the product, fp32 epilogue.
            ReducedPrecisionProduct(output, preActivation, new(input, false), new(weight, false), bias, M, K, N, activation, accumulate: false);
            return;
        }
        var shape = GemmKernels.Linear(M, K, N, bias is not null, ActivationKernels.Code(activation), preActivation is not null);
        _gemm(GemmKernels.Config(shape), output, preActivation ?? _none.View, input, weight, bias ?? _none.View, shape);
    }

    /// <summary>The int8 Linear: the input quantized per row into scratch, then the dp4a or tensor-core product with its dequantizing epilogue.</summary>
    private void LinearInt8(Tensor output, Tensor input, Tensor weight, Tensor? bias, int M, int K, int N, Activation activation, Tensor? preActivation)
    {
        if (M == 0 || N == 0) return;
        var (values, scales) = weight.I8(nameof(weight));
        var shape = new Int8GemmKernels.Shape(M, K, N, Int8GemmKernels.Shape.WordsFor(K), bias is null ? 0 : 1, ActivationKernels.Code(activation), preActivation is null ? 0 : 1);
        var packed = PackedInt8(values, shape);
        if (_quantizedRows.Length < (long)M * shape.Words || _rowScales.Length < M)
        {
            _accelerator.Synchronize(); // kernels still queued may read the old buffers
            _quantizedRows.Dispose();
            _rowScales.Dispose();
            _quantizedRows = _accelerator.Allocate1D<int>((long)M * shape.Words);
            _rowScales = _accelerator.Allocate1D<float>(M);
        }
        _quantizeRows(Int8GemmKernels.QuantizeConfig(shape, _accelerator.WarpSize), _quantizedRows.View, _rowScales.View, View(input), shape);
        var (product, config) = Int8Product == Int8Kernel.Dp4a
            ? (_int8Dp4a, Int8GemmKernels.Dp4aConfig(shape))
            : (_int8TensorCores, Int8GemmKernels.TensorCoreConfig(shape, _accelerator.WarpSize));
        product(config, View(output), preActivation is null ? _none.View : View(preActivation), _quantizedRows.View, _rowScales.View, packed,
            View(scales), bias is null ? _none.View : View(bias), shape);
    }

    /// <summary>
    /// An operand of <see cref="ReducedPrecisionProduct"/>: fp32 values as stored (row-major, or transposed: (depth, rows)),
    /// rounded into scratch words; or, when <paramref name="Words"/> is valid, its padded words already in the format.
    /// </summary>
    private readonly record struct ProductOperand(ArrayView<float> Values, bool Transposed, ArrayView<uint> Words = default);

    /// <summary>
    /// C (rows, cols) = act(A (rows, depth) · B (cols, depth)ᵀ + bias), or C += A · Bᵀ, with both operands rounded to the
    /// backend's <see cref="Precision"/>.
    /// </summary>
    private void ReducedPrecisionProduct(ArrayView<float> output, ArrayView<float>? preActivation, ProductOperand a, ProductOperand b,
        ArrayView<float>? bias, int rows, int depth, int cols, Activation activation, bool accumulate)
    {
        if (rows == 0 || cols == 0) return;
        int format = ReducedFormat;
        int words = ReducedPrecisionGemmKernels.Shape.WordsFor(depth, format);
        var shape = new ReducedPrecisionGemmKernels.Shape(rows, depth, cols, words, bias is null ? 0 : 1, ActivationKernels.Code(activation),
            preActivation is null ? 0 : 1, accumulate ? 1 : 0);
        long aWords = a.Words.IsValid ? 0 : (long)rows * words, bWords = b.Words.IsValid ? 0 : (long)cols * words;
        if (aWords + bWords > int.MaxValue) throw new EngineException($"a {_precision.ToString().ToLowerInvariant()} product of ({rows},{depth}) by ({cols},{depth}) is too large for one launch");
        var scratch = ReducedWords(Math.Max(aWords + bWords, 1));
        var (aView, bView) = (a.Words.IsValid ? a.Words : scratch.SubView(0, aWords), b.Words.IsValid ? b.Words : scratch.SubView(aWords, bWords));
        if (!a.Words.IsValid) _toWords((int)aWords, aView, a.Values, new ReducedPrecisionGemmKernels.Operand(rows, depth, words, format, a.Transposed ? 1 : 0));
        if (!b.Words.IsValid) _toWords((int)bWords, bView, b.Values, new ReducedPrecisionGemmKernels.Operand(cols, depth, words, format, b.Transposed ? 1 : 0));
        _reducedTensorCores(ReducedPrecisionGemmKernels.TensorCoreConfig(shape, _accelerator.WarpSize), output, preActivation ?? _none.View,
            aView, bView, bias ?? _none.View, shape, DeviceAddress<uint>(aView), DeviceAddress<uint>(bView), SpecializedValue.New(format));
    }

    /// <summary>
    /// Scratch for operands in a reduced format, grown on demand. One stream runs kernels in order, so the next product or
    /// attention may reuse the words once this one has read them.
    /// </summary>
    private ArrayView<uint> ReducedWords(long length) => Grown(ref _reducedWords, length);

    /// <summary>The format code of the backend's reduced <see cref="Precision"/> for the tensor-core kernels.</summary>
    private int ReducedFormat => _precision switch
    {
        ComputePrecision.Bf16 => ReducedPrecisionGemmKernels.Bf16,
        ComputePrecision.Tf32 => ReducedPrecisionGemmKernels.Tf32,
        _ => ReducedPrecisionGemmKernels.Fp16,
    };

    /// <summary>Where a view's first element lives in device memory, for kernels that take addresses (cp.async); 0 off CUDA, where none is used.</summary>
    private long DeviceAddress<T>(ArrayView<T> view) where T : unmanaged =>
        _accelerator is ILGPU.Runtime.Cuda.CudaAccelerator ? ((IArrayView)view).Buffer.NativePtr.ToInt64() + ((IContiguousArrayView)view).IndexInBytes : 0;

    /// <summary>The weight's words, padded rows of 4 bytes, packed on first use (int8 weights do not change: they are never trained).</summary>
    private ArrayView<int> PackedInt8(DeviceBuffer<sbyte> weight, Int8GemmKernels.Shape shape)
    {
        lock (_packedInt8)
        {
            if (_packedInt8.TryGetValue(weight, out var packed)) return packed.View;
            packed = _accelerator.Allocate1D<int>((long)shape.N * shape.Words);
            _packInt8Weights((int)packed.Length, packed.View, View(weight), shape);
            _packedInt8.Add(weight, packed); // kept while the weight's buffer lives (the model's arena)
            return packed.View;
        }
    }

    public void MatMul(Tensor output, Tensor a, Tensor b, MatMulShape shape)
    {
        OpShapes.MatMul(output, a, b, shape);
        if (shape.Batch == 0) return;
        var kernelShape = GemmKernels.Product(shape, accumulate: false);
        _gemm(GemmKernels.Config(kernelShape), View(output), _none.View, View(a), View(b), _none.View, kernelShape);
    }

    public void LinearBackward(Tensor? dInput, Tensor dWeight, Tensor? dBias,
        Tensor dOutput, Tensor input, Tensor weight, int M, int K, int N)
    {
        OpShapes.LinearBackward(dInput, dWeight, dBias, dOutput, input, weight, M, K, N);
        if (_precision != ComputePrecision.Fp32)
        {
            // The same tensor-core product over transposed operands: dX (M,K) = dOut (M,N) · Wᵀ, with W stored (N,K) = (depth, rows);
            // dW (N,K) += dOutᵀ · X, with dOut stored (M,N) and X (M,K) both (depth, rows).
            if (dInput is not null)
                ReducedPrecisionProduct(View(dInput), null, new(View(dOutput), false), new(View(weight), true), null, M, N, K, Activation.None, accumulate: false);
            ReducedPrecisionProduct(View(dWeight), null, new(View(dOutput), true), new(View(input), true), null, N, M, K, Activation.None, accumulate: true);
        }
        else
        {
            if (dInput is not null)
            {
                var shape = GemmKernels.Product(MatMulShape.Contiguous(1, M, N, K, false, false), accumulate: false); // dOut (M,N) · W (N,K)
                _gemm(GemmKernels.Config(shape), View(dInput), _none.View, View(dOutput), View(weight), _none.View, shape);
            }
            var weightShape = GemmKernels.Product(MatMulShape.Contiguous(1, N, M, K, true, false), accumulate: true); // dW += dOutᵀ · X
            _gemm(GemmKernels.Config(weightShape), View(dWeight), _none.View, View(dOutput), View(input), _none.View, weightShape);
        }
        if (dBias is not null && M > 0 && N > 0)
        {
            int chunks = ReductionKernels.Chunks(M);
            var partials = Scratch((long)chunks * N);
            _columnPartials(new Index2D(N, chunks), partials, View(dOutput), M, N);
            _columnFinish(N, View(dBias), partials, chunks, N);
        }
    }

    public void ActivateBackward(Tensor dInput, Tensor dOutput, Tensor input, int n, Activation activation)
    {
        OpShapes.Elementwise(n, (dInput, nameof(dInput)), (dOutput, nameof(dOutput)), (input, nameof(input)));
        if (n > 0) _activateBackward(n, View(dInput), View(dOutput), View(input), ActivationKernels.Code(activation));
    }

    public void LayerNormBackward(Tensor dInput, Tensor dWeight, Tensor dBias,
        Tensor dOutput, Tensor input, Tensor? residual, Tensor weight, int N, int C, float eps)
    {
        OpShapes.LayerNormBackward(dInput, dWeight, dBias, dOutput, input, residual, weight, N, C);
        var shape = new LayerNormKernels.Shape(N, C, eps, residual is null ? 0 : 1);
        if (N == 0 || C == 0) return;
        int chunks = ReductionKernels.Chunks(N);
        var scratch = Scratch(2L * N + 2L * chunks * C); // row statistics, then the two gradients' partials
        var (statistics, partialW, partialB) = (scratch.SubView(0, 2L * N), scratch.SubView(2L * N, (long)chunks * C), scratch.SubView(2L * N + (long)chunks * C, (long)chunks * C));
        ArrayView<float> residualView = residual is null ? _none.View : View(residual);
        _layerNormBackward(LayerNormKernels.Config(shape, _accelerator.WarpSize), View(dInput), statistics, View(dOutput), View(input), residualView, View(weight), shape);
        _layerNormParameterPartials(new Index2D(C, chunks), partialW, partialB, statistics, View(dOutput), View(input), residualView, shape);
        _columnFinish(C, View(dWeight), partialW, chunks, C);
        _columnFinish(C, View(dBias), partialB, chunks, C);
    }

    public void AttentionBackward(Tensor dQkv, Tensor dOutput, Tensor qkv, SequenceLayout sequences, int NH, int HS, DropoutMask dropout)
    {
        OpShapes.AttentionBackward(dQkv, dOutput, qkv, sequences, NH, HS, dropout);
        var shape = AttentionShape(sequences, NH, HS, dropout);
        var statistics = Scratch(3L * sequences.B * NH * sequences.T);
        if (_precision is ComputePrecision.Fp16 or ComputePrecision.Bf16 && FlashAttentionKernels.Supports(HS))
        {
            // Flash attention's backward over qkv's and dOutput's values in the format.
            int rows = sequences.Rows, C = NH * HS, format = ReducedFormat;
            var scratch = ReducedWords((long)rows * 2 * C);
            var (words, dWords) = (scratch.SubView(0, (long)rows * 3 * C / 2), scratch.SubView((long)rows * 3 * C / 2, (long)rows * C / 2));
            _toWords((int)words.Length, words, View(qkv), new ReducedPrecisionGemmKernels.Operand(rows, 3 * C, 3 * C / 2, format, 0));
            _toWords((int)dWords.Length, dWords, View(dOutput), new ReducedPrecisionGemmKernels.Operand(rows, C, C / 2, format, 0));
            var flash = FlashAttentionKernels.Config(shape, HS, _accelerator.WarpSize);
            _flashAttentionQueryBackward(flash, View(dQkv), statistics, View(dOutput), words, dWords, View(sequences.Indices), shape, DeviceAddress<uint>(words),
                SpecializedValue.New(HS), SpecializedValue.New(format));
            _flashAttentionKeyBackward(flash, View(dQkv), statistics, words, dWords, View(sequences.Indices), shape, DeviceAddress<uint>(words), DeviceAddress<uint>(dWords),
                SpecializedValue.New(HS), SpecializedValue.New(format));
            return;
        }
        var config = AttentionKernels.Config(shape, _accelerator.WarpSize);
        _attentionQueryBackward(config, View(dQkv), statistics, View(dOutput), View(qkv), View(sequences.Indices), shape, SpecializedValue.New(HS));
        _attentionKeyBackward(config, View(dQkv), statistics, View(dOutput), View(qkv), View(sequences.Indices), shape, SpecializedValue.New(HS));
    }

    private static AttentionKernels.Shape AttentionShape(SequenceLayout sequences, int NH, int HS, DropoutMask dropout)
    {
        if (HS > AttentionKernels.MaxHeadSize) throw new NotSupportedException($"head size {HS} exceeds the attention kernel's {AttentionKernels.MaxHeadSize}");
        return new AttentionKernels.Shape(sequences.B, sequences.T, NH, 1f / MathF.Sqrt(HS), dropout, sequences.IsPacked ? 1 : 0);
    }

    public void EmbeddingsBackward(Tensor dWord, Tensor dPosition, Tensor dTokenType,
        Tensor dSum, DeviceBuffer<int> inputIds, DeviceBuffer<int> positionIds, DeviceBuffer<int> tokenTypeIds, int B, int T, int C)
    {
        OpShapes.EmbeddingsBackward(dSum, inputIds, positionIds, tokenTypeIds, B, T, C);
        if (B * T == 0 || C == 0) return;
        foreach (var (table, ids) in new[] { (dWord, inputIds), (dPosition, positionIds), (dTokenType, tokenTypeIds) })
        {
            int rows = (int)(table.Length / C), blocks = EmbeddingsKernels.Blocks(rows);
            _embeddingsBackward(new Index2D(C, blocks), View(table), View(dSum), View(ids), B * T, C, rows, blocks);
        }
    }

    public void GatherRowsBackward(Tensor dInput, Tensor dOutput, DeviceBuffer<int> rows, int R, int N, int C)
    {
        OpShapes.GatherRows(dOutput, dInput, rows, R, N, C, nameof(dOutput), nameof(dInput));
        Clear(dInput);
        if (R > 0) _scatterRows(R * C, View(dInput), View(dOutput), View(rows), N, C);
    }

    public void Dropout(Tensor output, Tensor input, int n, DropoutMask mask)
    {
        OpShapes.Dropout(output, input, n, mask);
        if (n > 0) _dropout(n, View(output), View(input), mask);
    }

    public void DropoutBackward(Tensor dInput, Tensor dOutput, int n, DropoutMask mask) =>
        Dropout(dInput, dOutput, n, mask);

    public double SumOfSquares(Tensor values, int n)
    {
        OpShapes.Elementwise(n, (values, nameof(values)));
        if (n == 0) return 0;
        // Enough groups to fill a GPU, but no more than the data needs (the CPU emulator pays for every thread).
        int maxGroups = _accelerator.AcceleratorType == AcceleratorType.CPU ? 2 : OptimizerKernels.Groups;
        int groups = (int)Math.Clamp((n + 8L * OptimizerKernels.Threads - 1) / (8L * OptimizerKernels.Threads), 1, maxGroups);
        int partialCount = groups * OptimizerKernels.Threads / _accelerator.WarpSize;
        var partials = Scratch(partialCount);
        _sumOfSquares(new KernelConfig(groups, OptimizerKernels.Threads), partials, View(values), n);
        var host = new float[partialCount];
        _accelerator.Synchronize();
        partials.CopyToCPU(ref host[0], partialCount);
        return host.Sum(p => (double)p);
    }

    public void AdamW(Tensor parameter, Tensor gradient, Tensor m, Tensor v, int n, int decayed, AdamWStep step)
    {
        OpShapes.Elementwise(n, (parameter, nameof(parameter)), (gradient, nameof(gradient)), (m, nameof(m)), (v, nameof(v)));
        OpShapes.Count(decayed, n, nameof(decayed));
        var (decay, stepSize, sqrtCorrection2) = Training.AdamWMath.Constants(step);
        var constants = new OptimizerKernels.AdamWConstants(step.LearningRate, step.Beta1, step.Beta2, step.Eps, step.GradientScale, decay, decayed,
            stepSize, sqrtCorrection2);
        if (n > 0) _adamW(n, View(parameter), View(gradient), View(m), View(v), constants);
    }

    public void Clear(Tensor buffer) => View(buffer).MemSetToZero();

    public void Accumulate(Tensor destination, Tensor source, int n)
    {
        OpShapes.Elementwise(n, (destination, nameof(destination)), (source, nameof(source)));
        if (n > 0) _accumulate(n, View(destination), View(source));
    }

    public void Scale(Tensor values, int n, float factor)
    {
        OpShapes.Elementwise(n, (values, nameof(values)));
        if (n > 0) _scale(n, View(values), factor);
    }

    public void SoftmaxBackward(Tensor dInput, Tensor dOutput, Tensor output, int rows, int N)
    {
        OpShapes.Rows(rows, N, (dInput, nameof(dInput)), (dOutput, nameof(dOutput)), (output, nameof(output)));
        if (rows > 0 && N > 0) _softmaxBackward(SoftmaxKernels.Config(rows, _accelerator.WarpSize), View(dInput), View(dOutput), View(output), rows, N);
    }

    public void MeanSquaredError(Tensor losses, Tensor dPredictions, Tensor predictions, Tensor targets, int n)
    {
        OpShapes.Elementwise(n, (losses, nameof(losses)), (dPredictions, nameof(dPredictions)), (predictions, nameof(predictions)), (targets, nameof(targets)));
        if (n > 0) _meanSquaredError(n, View(losses), View(dPredictions), View(predictions), View(targets), 2f / n);
    }

    public void CrossEntropy(Tensor losses, Tensor dLogits, Tensor logits, DeviceBuffer<int> labels, int B, int V)
    {
        OpShapes.CrossEntropy(losses, dLogits, logits, labels, B, V);
        if (B > 0) _crossEntropy(SoftmaxKernels.Config(B, _accelerator.WarpSize), View(losses), View(dLogits), View(logits), View(labels), B, V);
    }

    /// <summary>The scratch buffer's first <paramref name="length"/> elements, growing it when needed.</summary>
    private ArrayView<float> Scratch(long length) => Grown(ref _scratch, length);

    /// <summary>A scratch buffer's first <paramref name="length"/> elements, replacing it by a larger one when it is too small.</summary>
    private ArrayView<T> Grown<T>(ref MemoryBuffer1D<T, Stride1D.Dense> buffer, long length) where T : unmanaged
    {
        if (buffer.Length < length)
        {
            _accelerator.Synchronize(); // kernels still queued may read the old buffer
            buffer.Dispose();
            buffer = _accelerator.Allocate1D<T>(length);
        }
        return buffer.View.SubView(0, length);
    }

    public void Activate(Tensor output, Tensor input, int n, Activation activation)
    {
        OpShapes.Elementwise(n, (output, nameof(output)), (input, nameof(input)));
        if (n > 0) _activate(n, View(output), View(input), ActivationKernels.Code(activation));
    }

    public void Softmax(Tensor output, Tensor input, int rows, int N)
    {
        OpShapes.Rows(rows, N, (output, nameof(output)), (input, nameof(input)));
        if (rows > 0 && N > 0) _softmax(SoftmaxKernels.Config(rows, _accelerator.WarpSize), View(output), View(input), rows, N);
    }

    public void Attention(Tensor output, Tensor qkv, SequenceLayout sequences, int NH, int HS, DropoutMask dropout)
    {
        OpShapes.Attention(output, qkv, sequences, NH, HS, dropout);
        var shape = AttentionShape(sequences, NH, HS, dropout);
        if (_precision is ComputePrecision.Fp16 or ComputePrecision.Bf16 && FlashAttentionKernels.Supports(HS))
        {
            // Flash attention on tensor cores over qkv's values in the format (tf32 and other head sizes keep the fp32 kernel).
            int rows = sequences.Rows, width = 3 * NH * HS;
            var words = ReducedWords((long)rows * width / 2);
            _toWords((int)words.Length, words, View(qkv), new ReducedPrecisionGemmKernels.Operand(rows, width, width / 2, ReducedFormat, 0));
            _flashAttention(FlashAttentionKernels.Config(shape, HS, _accelerator.WarpSize), View(output), words, View(sequences.Indices), shape,
                DeviceAddress<uint>(words), SpecializedValue.New(HS), SpecializedValue.New(ReducedFormat));
            return;
        }
        _attention(AttentionKernels.Config(shape, _accelerator.WarpSize), View(output), View(qkv), View(sequences.Indices), shape, SpecializedValue.New(HS));
    }

    public void AttentionProbabilities(Tensor probabilities, Tensor qkv, SequenceLayout sequences, int NH, int HS)
    {
        OpShapes.AttentionProbabilities(probabilities, qkv, sequences, NH, HS);
        var shape = AttentionShape(sequences, NH, HS, DropoutMask.None);
        long rows = (long)sequences.B * NH * sequences.T;
        if (rows > int.MaxValue) throw new EngineException($"attention maps of {rows:N0} rows are too many for one launch; use smaller batches");
        if (rows > 0) _attentionProbabilities((int)rows, View(probabilities), View(qkv), View(sequences.Indices), shape, HS);
    }

    public void LayerNorm(Tensor output, Tensor input, Tensor? residual,
        Tensor weight, Tensor bias, int N, int C, float eps)
    {
        OpShapes.LayerNorm(output, input, residual, weight, bias, N, C);
        var shape = new LayerNormKernels.Shape(N, C, eps, residual is null ? 0 : 1);
        _layerNorm(LayerNormKernels.Config(shape, _accelerator.WarpSize), View(output), View(input),
            residual is null ? _none.View : View(residual), View(weight), View(bias), shape);
    }

    public void Embeddings(Tensor output, Tensor? sum, DeviceBuffer<int> inputIds, DeviceBuffer<int> positionIds, DeviceBuffer<int> tokenTypeIds,
        Tensor wordEmbeddings, Tensor positionEmbeddings, Tensor tokenTypeEmbeddings,
        Tensor weight, Tensor bias, int B, int T, int C, float eps)
    {
        OpShapes.Embeddings(output, sum, inputIds, positionIds, tokenTypeIds, weight, bias, B, T, C);
        int format = wordEmbeddings.Type switch
        {
            IO.DType.I8 => EmbeddingsKernels.Int8Words,
            IO.DType.F16 => EmbeddingsKernels.F16Words,
            IO.DType.BF16 => EmbeddingsKernels.Bf16Words,
            _ => EmbeddingsKernels.F32Words,
        };
        var shape = new EmbeddingsKernels.Shape(B, T, C, eps, format);
        (ArrayView<sbyte> words, ArrayView<float> wordScales) = format == EmbeddingsKernels.Int8Words
            ? (View(wordEmbeddings.I8(nameof(wordEmbeddings)).Values), View(wordEmbeddings.I8(nameof(wordEmbeddings)).Scales))
            : ((ArrayView<sbyte>)_noneInt8.View, (ArrayView<float>)_none.View);
        var halves = format is EmbeddingsKernels.F16Words or EmbeddingsKernels.Bf16Words ? View(wordEmbeddings.HalfValues(nameof(wordEmbeddings))) : (ArrayView<ushort>)_noneHalves.View;
        _embeddings(EmbeddingsKernels.Config(shape, _accelerator.WarpSize), View(output), View(sum ?? output), View(inputIds), View(positionIds), View(tokenTypeIds),
            format == EmbeddingsKernels.F32Words ? View(wordEmbeddings) : _none.View, words, wordScales, halves, View(positionEmbeddings), View(tokenTypeEmbeddings),
            View(weight), View(bias), shape);
    }

    public void GatherRows(Tensor output, Tensor input, DeviceBuffer<int> rows, int R, int N, int C)
    {
        OpShapes.GatherRows(output, input, rows, R, N, C, nameof(output), nameof(input));
        if (R > 0) _gatherRows(R * C, View(output), View(input), View(rows), N, C);
    }

    public void Dispose()
    {
        _scratch.Dispose();
        _quantizedRows.Dispose();
        _rowScales.Dispose();
        foreach (var (_, packed) in _packedInt8) packed.Dispose();
        _none.Dispose();
        _noneInt8.Dispose();
        _noneHalves.Dispose();
        _reducedWords.Dispose();
        _accelerator.Dispose();
        _context.Dispose();
    }

    private static IlgpuBuffer<T> Device<T>(DeviceBuffer<T> buffer) where T : unmanaged =>
        buffer as IlgpuBuffer<T> ?? throw new ArgumentException($"buffer of type {buffer.GetType().Name} does not belong to the ILGPU backend");

    private static ArrayView<T> View<T>(DeviceBuffer<T> buffer) where T : unmanaged => Device(buffer).View;

    private static ArrayView<float> View(Tensor tensor, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(tensor))] string operand = "") =>
        View(tensor.F32(operand));
}
