using BenchmarkDotNet.Attributes;
using Engine.Backends.Cpu;
using Engine.Models.Bert;
using Engine.Reference;

namespace Engine.Benchmarks;

/// <summary>
/// The whole encoder forward of all-MiniLM-L6-v2 at batch 32 × 128 tokens: the engine's CPU backend and
/// ONNX Runtime on the original graph, both on all cores, in the same run (ONNX Runtime is the baseline,
/// so BenchmarkDotNet prints the ratio).
/// </summary>
[MemoryDiagnoser]
public class EncoderForwardBenchmarks
{
    private const int B = 32, T = 128;
    private BertModel _model = null!;
    private OnnxRuntimeOracle _onnxRuntime = null!;
    private BertBatch _batch = null!;

    [GlobalSetup]
    public void Setup()
    {
        var pretrained = PretrainedModels.MiniLM;
        _model = BertModel.Load(pretrained.Directory, new CpuBackend());
        _onnxRuntime = new OnnxRuntimeOracle(pretrained.OnnxPath, threads: Environment.ProcessorCount);
        _batch = FullBatch(B, T);
    }

    /// <summary>B rows of T tokens, none padded: [CLS], word-piece ids drawn from a fixed seed, [SEP].</summary>
    internal static BertBatch FullBatch(int B, int T)
    {
        var random = new Random(1);
        var ids = new int[B * T];
        for (int b = 0; b < B; b++)
        {
            ids[b * T] = 101;
            for (int t = 1; t < T - 1; t++) ids[b * T + t] = random.Next(1996, 29612);
            ids[b * T + T - 1] = 102;
        }
        return new BertBatch(B, T, ids, new int[B * T], Enumerable.Repeat(1, B * T).ToArray());
    }

    [Benchmark(Baseline = true, Description = "OnnxRuntime MiniLM 32x128")]
    public float[] OnnxRuntime() => _onnxRuntime.LastHiddenState(B, T, _batch.InputIds, _batch.AttentionMask, _batch.TokenTypeIds);

    [Benchmark(Description = "Engine CPU MiniLM 32x128")]
    public float[] Engine() => _model.Forward(_batch).LastHiddenState;

    [GlobalCleanup]
    public void Cleanup()
    {
        _model.Dispose();
        _onnxRuntime.Dispose();
    }
}
