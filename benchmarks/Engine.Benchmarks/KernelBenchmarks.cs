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

    public static IEnumerable<string> Cases =>
        [.. OpCases.BertBase.Linear.Select(c => c.Name), OpCases.BertBase.Attention.Name, OpCases.BertBase.LayerNorm.Name, OpCases.BertBase.Embeddings.Name];

    [ParamsSource(nameof(Backends))]
    public string Backend { get; set; } = "cpu";

    [ParamsSource(nameof(Cases))]
    public string Case { get; set; } = "";

    [GlobalSetup]
    public void Setup()
    {
        _backend = Backend == "cuda" ? IlgpuBackend.Create(IlgpuDevice.Cuda) : new CpuBackend();
        Action launch = Case switch
        {
            _ when OpCases.BertBase.Linear.FirstOrDefault(c => c.Name == Case) is { } c => PrepareLinear(c),
            _ when Case == OpCases.BertBase.Attention.Name => PrepareAttention(OpCases.BertBase.Attention),
            _ when Case == OpCases.BertBase.LayerNorm.Name => PrepareLayerNorm(OpCases.BertBase.LayerNorm),
            _ => PrepareEmbeddings(OpCases.BertBase.Embeddings),
        };
        _run = _backend is IlgpuBackend device ? () => { launch(); device.Synchronize(); } : launch;
        _run(); // packs CPU weights, compiles GPU kernels
    }

    [Benchmark]
    public void Op() => _run();

    [GlobalCleanup]
    public void Cleanup() => _backend.Dispose();

    private Action PrepareLinear(LinearCase c)
    {
        var (input, weight, bias) = OpCases.LinearInputs(c);
        var (a, w, b, o) = (Upload(input), Upload(weight), bias is null ? null : Upload(bias), _backend.Allocate<float>(c.M * c.N));
        var activation = OpCases.ParseActivation(c.Activation);
        return () => _backend.Linear(o, a, w, b, c.M, c.K, c.N, activation);
    }

    private Action PrepareAttention(AttentionCase c)
    {
        int C = c.NH * c.HS;
        var (qkv, mask, o) = (Upload(OpCases.Random(c.B * c.T * 3 * C, 5)), Upload(OpCases.Mask(c.Lengths, c.T)), _backend.Allocate<float>(c.B * c.T * C));
        return () => _backend.Attention(o, qkv, mask, c.B, c.T, c.NH, c.HS, DropoutMask.None);
    }

    private Action PrepareLayerNorm(LayerNormCase c)
    {
        var (x, r, g, b, o) = (Upload(OpCases.Random(c.N * c.C, 7)), Upload(OpCases.Random(c.N * c.C, 8)), Upload(OpCases.Random(c.C, 9)),
            Upload(OpCases.Random(c.C, 10)), _backend.Allocate<float>(c.N * c.C));
        return () => _backend.LayerNorm(o, x, r, g, b, c.N, c.C, 1e-12f);
    }

    private Action PrepareEmbeddings(EmbeddingsCase c)
    {
        var random = new Random(11);
        var ids = Upload(Enumerable.Range(0, c.B * c.T).Select(_ => random.Next(c.V)).ToArray());
        var types = Upload(new int[c.B * c.T]);
        var positions = Upload(c.PositionIds());
        var (word, position, tokenType) = (Upload(OpCases.Random(c.V * c.C, 12)), Upload(OpCases.Random(c.Positions * c.C, 13)), Upload(OpCases.Random(c.TypeVocab * c.C, 14)));
        var (weight, bias, o) = (Upload(OpCases.Random(c.C, 18)), Upload(OpCases.Random(c.C, 19)), _backend.Allocate<float>(c.B * c.T * c.C));
        return () => _backend.Embeddings(o, null, ids, positions, types, word, position, tokenType, weight, bias, c.B, c.T, c.C, 1e-12f);
    }

    private DeviceBuffer<T> Upload<T>(T[] values) where T : unmanaged
    {
        var buffer = _backend.Allocate<T>(values.Length);
        _backend.Upload<T>(values, buffer);
        return buffer;
    }
}
