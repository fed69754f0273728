using BenchmarkDotNet.Attributes;
using Engine.Backends.Cpu;
using Engine.Models.Bert;
using Engine.Reference;
using Engine.Tokenization;
using Engine.Training;

namespace Engine.Benchmarks;

/// <summary>
/// A fine-tuning epoch of all-MiniLM-L6-v2 on real, ragged batches: the first 256 messages of the SpamAssassin
/// split (<c>python3 tools/spam/prepare.py DIR</c>; the directory is ENGINE_SPAM_DATA, default /tmp/spamdata) at
/// max length 128, batch 32, each batch padded to its own longest message as the fine-tuner pads: 8 optimizer
/// steps of forward, backward and AdamW, evaluation off, no checkpoint.
/// </summary>
[MemoryDiagnoser]
public class FineTuneEpochBenchmarks
{
    private const int Examples = 256;
    private List<LabelledExample> _train = null!;
    private BertForSequenceClassification _model = null!;

    [GlobalSetup]
    public void Setup()
    {
        string data = Path.Combine(Environment.GetEnvironmentVariable("ENGINE_SPAM_DATA") ?? "/tmp/spamdata", "train.tsv");
        if (!File.Exists(data)) throw new FileNotFoundException($"{data}: run python3 tools/spam/prepare.py first");
        var tokenizer = BertTokenizer.Load(PretrainedModels.MiniLM.Directory);
        _train = [.. File.ReadLines(data).Skip(1).Take(Examples).Select(line => line.Split('\t'))
            .Select(f => new LabelledExample(tokenizer.Encode(f[0], maxLength: 128), f[1] == "spam" ? 1 : 0))];
        _model = BertForSequenceClassification.Load(PretrainedModels.MiniLM.Directory, new CpuBackend(), numLabels: 2, seed: 1);
    }

    [Benchmark(Description = "Engine CPU MiniLM fine-tuning epoch, 256 SpamAssassin messages, ragged batches of 32")]
    public EvaluationResult? Epoch() =>
        new Trainer(_model, new TrainingOptions { Epochs = 1, BatchSize = 32, LearningRate = 1e-5f, KeepCheckpoint = false }).Train(_train, null, _ => { });

    [GlobalCleanup]
    public void Cleanup() => _model.Dispose();
}
