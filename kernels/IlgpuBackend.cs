using System.Runtime.InteropServices;
using Engine.Backends;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.OpenCL;

namespace Engine.Kernels;

/// <summary>Device memory of the ILGPU backend.</summary>
internal sealed class IlgpuBuffer<T>(MemoryBuffer1D<T, Stride1D.Dense> buffer) : DeviceBuffer<T> where T : unmanaged
{
    public MemoryBuffer1D<T, Stride1D.Dense> Buffer { get; } = buffer;

    public ArrayView<T> View => Buffer.View;

    public override int Length => (int)Buffer.Length;

    public override void Dispose()
    {
        Buffer.Dispose();
        base.Dispose();
    }
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
public sealed class IlgpuBackend : IBackend
{
    private readonly Context _context;
    private readonly Accelerator _accelerator;
    private readonly MemoryBuffer1D<float, Stride1D.Dense> _none; // stands for an absent bias or residual
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmKernels.Shape> _gemm;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionKernels.Shape, SpecializedValue<int>> _attention;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormKernels.Shape> _layerNorm;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, EmbeddingsKernels.Shape> _embeddings;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int, int> _firstToken;
    private readonly Action<Index1D, ArrayView<float>, ArrayView<float>, int> _activate;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, int, int> _softmax;

    private IlgpuBackend(Context context, Accelerator accelerator)
    {
        _context = context;
        _accelerator = accelerator;
        _none = accelerator.Allocate1D<float>(1);
        _gemm = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmKernels.Shape>(GemmKernels.Kernel);
        _attention = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, AttentionKernels.Shape, SpecializedValue<int>>(AttentionKernels.Kernel);
        _layerNorm = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, LayerNormKernels.Shape>(LayerNormKernels.Kernel);
        _embeddings = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, EmbeddingsKernels.Shape>(EmbeddingsKernels.Kernel);
        _firstToken = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int, int>(EmbeddingsKernels.FirstTokenKernel);
        _activate = accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>, int>(ActivationKernels.ActivateKernel);
        _softmax = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, int, int>(SoftmaxKernels.Kernel);
    }

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

    public DeviceBuffer<T> Allocate<T>(int length) where T : unmanaged => new IlgpuBuffer<T>(_accelerator.Allocate1D<T>(length));

    public void Upload<T>(ReadOnlySpan<T> source, DeviceBuffer<T> destination) where T : unmanaged
    {
        var buffer = Device(destination);
        if (source.Length > buffer.Length) throw new ArgumentException($"upload of {source.Length} elements into a buffer of {buffer.Length}");
        if (source.IsEmpty) return;
        buffer.Buffer.View.SubView(0, source.Length).CopyFromCPU(ref MemoryMarshal.GetReference(source), source.Length);
    }

    public void Download<T>(DeviceBuffer<T> source, Span<T> destination) where T : unmanaged
    {
        var buffer = Device(source);
        if (destination.Length > buffer.Length) throw new ArgumentException($"download of {destination.Length} elements from a buffer of {buffer.Length}");
        _accelerator.Synchronize();
        if (destination.IsEmpty) return;
        buffer.Buffer.View.SubView(0, destination.Length).CopyToCPU(ref MemoryMarshal.GetReference(destination), destination.Length);
    }

    public void Linear(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<float> weight, DeviceBuffer<float>? bias,
        int M, int K, int N, Activation activation)
    {
        CheckSize(output, (long)M * N, nameof(output));
        CheckSize(input, (long)M * K, nameof(input));
        CheckSize(weight, (long)N * K, nameof(weight));
        if (bias is not null) CheckSize(bias, N, nameof(bias));
        var shape = GemmKernels.Linear(M, K, N, bias is not null, ActivationKernels.Code(activation));
        _gemm(GemmKernels.Config(shape), View(output), View(input), View(weight), bias is null ? _none.View : View(bias), shape);
    }

    public void MatMul(DeviceBuffer<float> output, DeviceBuffer<float> a, DeviceBuffer<float> b, MatMulShape shape)
    {
        CheckSize(output, shape.ElementsC, nameof(output));
        CheckSize(a, shape.ElementsA, nameof(a));
        CheckSize(b, shape.ElementsB, nameof(b));
        if (shape.Batch == 0) return;
        var kernelShape = new GemmKernels.Shape(shape.Batch, shape.M, shape.K, shape.N, shape.TransposeA ? 1 : 0, shape.TransposeB ? 1 : 0,
            shape.StrideA, shape.StrideB, shape.StrideC, 0, ActivationKernels.None);
        _gemm(GemmKernels.Config(kernelShape), View(output), View(a), View(b), _none.View, kernelShape);
    }

    public void Activate(DeviceBuffer<float> output, DeviceBuffer<float> input, int n, Activation activation)
    {
        CheckSize(output, n, nameof(output));
        CheckSize(input, n, nameof(input));
        if (n > 0) _activate(n, View(output), View(input), ActivationKernels.Code(activation));
    }

    public void Softmax(DeviceBuffer<float> output, DeviceBuffer<float> input, int rows, int N)
    {
        CheckSize(output, (long)rows * N, nameof(output));
        CheckSize(input, (long)rows * N, nameof(input));
        if (rows > 0 && N > 0) _softmax(SoftmaxKernels.Config(rows, _accelerator.WarpSize), View(output), View(input), rows, N);
    }

    public void Attention(DeviceBuffer<float> output, DeviceBuffer<float> qkv, DeviceBuffer<int> keyMask, int B, int T, int NH, int HS)
    {
        if (HS > AttentionKernels.MaxHeadSize) throw new NotSupportedException($"head size {HS} exceeds the attention kernel's {AttentionKernels.MaxHeadSize}");
        long C = (long)NH * HS;
        CheckSize(output, B * T * C, nameof(output));
        CheckSize(qkv, B * T * 3 * C, nameof(qkv));
        CheckSize(keyMask, (long)B * T, nameof(keyMask));
        var shape = new AttentionKernels.Shape(B, T, NH, 1f / MathF.Sqrt(HS));
        _attention(AttentionKernels.Config(shape, _accelerator.WarpSize), View(output), View(qkv), View(keyMask), shape, SpecializedValue.New(HS));
    }

    public void LayerNorm(DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<float>? residual,
        DeviceBuffer<float> weight, DeviceBuffer<float> bias, int N, int C, float eps)
    {
        CheckSize(output, (long)N * C, nameof(output));
        CheckSize(input, (long)N * C, nameof(input));
        if (residual is not null) CheckSize(residual, (long)N * C, nameof(residual));
        CheckSize(weight, C, nameof(weight));
        CheckSize(bias, C, nameof(bias));
        var shape = new LayerNormKernels.Shape(N, C, eps, residual is null ? 0 : 1);
        _layerNorm(LayerNormKernels.Config(shape, _accelerator.WarpSize), View(output), View(input),
            residual is null ? _none.View : View(residual), View(weight), View(bias), shape);
    }

    public void Embeddings(DeviceBuffer<float> output, DeviceBuffer<float>? sum, DeviceBuffer<int> inputIds, DeviceBuffer<int> tokenTypeIds,
        DeviceBuffer<float> wordEmbeddings, DeviceBuffer<float> positionEmbeddings, DeviceBuffer<float> tokenTypeEmbeddings,
        DeviceBuffer<float> weight, DeviceBuffer<float> bias, int B, int T, int C, float eps)
    {
        CheckSize(output, (long)B * T * C, nameof(output));
        if (sum is not null) CheckSize(sum, (long)B * T * C, nameof(sum));
        CheckSize(weight, C, nameof(weight));
        CheckSize(bias, C, nameof(bias));
        CheckSize(inputIds, (long)B * T, nameof(inputIds));
        CheckSize(tokenTypeIds, (long)B * T, nameof(tokenTypeIds));
        CheckSize(positionEmbeddings, (long)T * C, nameof(positionEmbeddings));
        var shape = new EmbeddingsKernels.Shape(B, T, C, eps);
        _embeddings(EmbeddingsKernels.Config(shape, _accelerator.WarpSize), View(output), View(sum ?? output), View(inputIds), View(tokenTypeIds),
            View(wordEmbeddings), View(positionEmbeddings), View(tokenTypeEmbeddings), View(weight), View(bias), shape);
    }

    public void FirstToken(DeviceBuffer<float> output, DeviceBuffer<float> input, int B, int T, int C)
    {
        CheckSize(output, (long)B * C, nameof(output));
        CheckSize(input, (long)B * T * C, nameof(input));
        _firstToken(B * C, View(output), View(input), T, C);
    }

    public void Dispose()
    {
        _none.Dispose();
        _accelerator.Dispose();
        _context.Dispose();
    }

    private static IlgpuBuffer<T> Device<T>(DeviceBuffer<T> buffer) where T : unmanaged =>
        buffer as IlgpuBuffer<T> ?? throw new ArgumentException($"buffer of type {buffer.GetType().Name} does not belong to the ILGPU backend");

    private static ArrayView<T> View<T>(DeviceBuffer<T> buffer) where T : unmanaged => Device(buffer).View;

    private static void CheckSize<T>(DeviceBuffer<T> buffer, long needed, string name) where T : unmanaged
    {
        if (buffer.Length < needed) throw new ArgumentException($"{name} holds {buffer.Length} elements, the op needs {needed}");
    }
}
