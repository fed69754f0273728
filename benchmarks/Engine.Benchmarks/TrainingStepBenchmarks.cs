using BenchmarkDotNet.Attributes;
using Engine.Backends.Cpu;
using Engine.Models.Bert;
using Engine.Reference;

namespace Engine.Benchmarks;

/// <summary>
/// One fine-tuning pass of all-MiniLM-L6-v2 as a two-class classifier at batch 32 × 128 tokens on the CPU
/// backend: the forward in evaluation mode (the baseline) and the training forward + backward with
/// Hugging Face's dropout (0.1 everywhere), so the ratio is the backward's cost in forwards. PyTorch's
/// figure for the same step comes from benchmarks/pytorch_training_step.py (recorded beside it in RESULTS.md).
/// </summary>
[MemoryDiagnoser]
public class TrainingStepBenchmarks
{
    private const int B = 32, T = 128;
    private BertForSequenceClassification _model = null!;
    private BertBatch _batch = null!;
    private readonly int[] _labels = [.. Enumerable.Range(0, B).Select(i => i % 2)];
    private long _step;

    [GlobalSetup]
    public void Setup()
    {
        _model = BertForSequenceClassification.Load(PretrainedModels.MiniLM.Directory, new CpuBackend(), numLabels: 2, seed: 1);
        _batch = EncoderForwardBenchmarks.FullBatch(B, T);
    }

    [Benchmark(Baseline = true, Description = "Engine CPU MiniLM 32x128 eval forward")]
    public float[] Forward() => _model.Logits(_batch);

    [Benchmark(Description = "Engine CPU MiniLM 32x128 train forward+backward")]
    public double ForwardBackward()
    {
        _model.ZeroGradients();
        return _model.ForwardBackward(_batch, _labels, DropoutSettings.Uniform(0.1f, 42, ++_step));
    }

    [GlobalCleanup]
    public void Cleanup() => _model.Dispose();
}
