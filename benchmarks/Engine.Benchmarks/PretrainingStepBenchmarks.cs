using BenchmarkDotNet.Attributes;
using Engine.Backends.Cpu;
using Engine.Models.Bert;
using Engine.Reference;
using Engine.Tokenization;
using Engine.Training;

namespace Engine.Benchmarks;

/// <summary>
/// One masked-LM pre-training pass of all-MiniLM-L6-v2 (a new masked-LM head, decoder tied to its 30,522 × 384 word
/// embeddings) at batch 32 × 128 tokens on the CPU backend, masked as training masks (15%, 80/10/10): the forward,
/// the vocabulary product at the masked rows only, the backward, with Hugging Face's dropout; and, for scale, the
/// same batch with the sentence-order head too.
/// </summary>
[MemoryDiagnoser]
public class PretrainingStepBenchmarks
{
    private const int B = 32, T = 128;
    private BertForMaskedLM _masked = null!, _withSentences = null!;
    private TrainingBatch _batch = null!;
    private long _step;

    [GlobalSetup]
    public void Setup()
    {
        string directory = PretrainedModels.MiniLM.Directory;
        _masked = BertForMaskedLM.Load(directory, new CpuBackend(), SentenceObjective.None, seed: 1);
        _withSentences = BertForMaskedLM.Load(directory, new CpuBackend(), SentenceObjective.SentenceOrder, seed: 1);
        var batch = EncoderForwardBenchmarks.FullBatch(B, T);
        var masker = new TokenMasker(BertTokenizer.Load(directory), 0.15, wholeWord: false);
        var labels = masker.Mask(batch.InputIds, batch.AttentionMask, B, T, [.. Enumerable.Range(0, B)], seed: 1, step: 0);
        _batch = new TrainingBatch(batch, labels);
    }

    [Benchmark(Baseline = true, Description = "Engine CPU MiniLM 32x128 masked-LM forward+backward")]
    public double MaskedLM()
    {
        _masked.Arena.ZeroGradients(_masked.Backend);
        return _masked.ForwardBackward(_batch.Batch, _batch.Targets, DropoutSettings.Uniform(0.1f, 42, ++_step));
    }

    [Benchmark(Description = "Engine CPU MiniLM 32x128 masked-LM + sentence-order forward+backward")]
    public double MaskedLMAndSentenceOrder()
    {
        _withSentences.Arena.ZeroGradients(_withSentences.Backend);
        return _withSentences.ForwardBackward(_batch.Batch, [.. _batch.Targets, .. Enumerable.Range(0, B).Select(i => (float)(i % 2))],
            DropoutSettings.Uniform(0.1f, 42, ++_step));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _masked.Dispose();
        _withSentences.Dispose();
    }
}
