using BenchmarkDotNet.Attributes;
using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Kernels;
using Engine.Reference;

namespace Engine.Benchmarks;

/// <summary>
/// Each op at BERT-base shapes (batch 32 × 128 tokens, hidden 768, 12 heads of 64, FFN 3072; the cases of
/// <see cref="OpCases.BertBase"/>) on every accelerator present: the CPU backend always, CUDA when there
/// is a GPU. (The ILGPU CPU emulator is for correctness only: these shapes would take it hours.)
/// </summary>
public class KernelBenchmarks
{
    private IBackend _backend = null!;
    private Action _run = null!;

    public static IEnumerable<string> Backends => IlgpuBackend.CudaAvailable() ? ["cpu", "cuda"] : ["cpu"];

    public static IEnumerable<string> Cases => OpCases.BertBase.All.Select(c => c.Id);

    [ParamsSource(nameof(Backends))]
    public string Backend { get; set; } = "cpu";

    [ParamsSource(nameof(Cases))]
    public string Case { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        _backend = Backend == "cuda" ? IlgpuBackend.Create(IlgpuDevice.Cuda) : new CpuBackend();
        var launch = OpCases.BertBase.All.Single(c => c.Id == Case).Prepare(_backend);
        _run = _backend is IlgpuBackend device ? () => { launch(); device.Synchronize(); } : launch;
        _run(); // packs CPU weights, compiles GPU kernels
    }

    [Benchmark]
    public void Op() => _run();

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();
}
