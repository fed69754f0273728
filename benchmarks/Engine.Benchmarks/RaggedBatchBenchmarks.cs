using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Engine.Backends.Cpu;
using Engine.Models.Bert;
using Engine.Reference;
using Engine.Tokenization;

namespace Engine.Benchmarks;

/// <summary>
/// One ragged batch of real text in file order, truncated at all-MiniLM-L6-v2's max_seq_length 256 and padded to the
/// longest, from the SpamAssassin data (ENGINE_SPAM_DATA, default /tmp/spamdata, from <c>python3 tools/spam/prepare.py DIR</c>):
/// <c>messages</c>, the first 32 messages of test.tsv (most reach 256 tokens), or <c>lines</c>, the first 32 non-empty
/// lines of corpus.txt (paragraphs of a few to a few hundred tokens). Each runs through the encoder packed (padding removed,
/// the default) and padded (<see cref="BertModel.PackSequences"/> off, as Hugging Face runs it): the evaluation forward,
/// and the training forward + backward with dropout 0.1. Each pair is a category whose baseline is the padded run; the
/// setup prints the share of real tokens.
/// </summary>
[MemoryDiagnoser, GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory), CategoriesColumn]
public class RaggedBatchBenchmarks
{
    private const int Batch = 32, MaxLength = 256;
    private BertForSequenceClassification _model = null!;
    private BertBatch _batch = null!;
    private readonly int[] _labels = [.. Enumerable.Range(0, Batch).Select(i => i % 2)];
    private long _step;

    [Params("messages", "lines")]
    public string Texts { get; set; } = "messages";

    [GlobalSetup]
    public void Setup()
    {
        string data = Path.Combine(Environment.GetEnvironmentVariable("ENGINE_SPAM_DATA") ?? "/tmp/spamdata", Texts == "messages" ? "test.tsv" : "corpus.txt");
        if (!File.Exists(data)) throw new FileNotFoundException($"{data}: run python3 tools/spam/prepare.py first");
        var texts = Texts == "messages" ? File.ReadLines(data).Skip(1).Select(line => line.Split('\t')[0]) : File.ReadLines(data).Where(line => line.Trim().Length > 0);
        var tokenizer = BertTokenizer.Load(PretrainedModels.MiniLM.Directory);
        var encodings = texts.Take(Batch).Select(text => tokenizer.Encode(text, maxLength: MaxLength)).ToList();
        _batch = BertBatch.Pad(encodings);
        int real = _batch.AttentionMask.Sum();
        Console.WriteLine($"// ragged batch: {Batch} × {_batch.SequenceLength}, {real} real tokens ({100.0 * real / _batch.AttentionMask.Length:F1}%), " +
            $"lengths {string.Join(' ', encodings.Select(e => e.InputIds.Length).Order())}");
        _model = BertForSequenceClassification.Load(PretrainedModels.MiniLM.Directory, new CpuBackend(), numLabels: 2, seed: 1);
    }

    [Benchmark(Baseline = true, Description = "padded eval forward"), BenchmarkCategory("forward")]
    public float[] PaddedForward() => Forward(packed: false);

    [Benchmark(Description = "packed eval forward"), BenchmarkCategory("forward")]
    public float[] PackedForward() => Forward(packed: true);

    [Benchmark(Baseline = true, Description = "padded train forward+backward"), BenchmarkCategory("training")]
    public double PaddedTraining() => Train(packed: false);

    [Benchmark(Description = "packed train forward+backward"), BenchmarkCategory("training")]
    public double PackedTraining() => Train(packed: true);

    private float[] Forward(bool packed)
    {
        _model.Bert.PackSequences = packed;
        return _model.Logits(_batch);
    }

    private double Train(bool packed)
    {
        _model.Bert.PackSequences = packed;
        _model.ZeroGradients();
        return _model.ForwardBackward(_batch, _labels, DropoutSettings.Uniform(0.1f, 42, ++_step));
    }

    [GlobalCleanup]
    public void Cleanup() => _model.Dispose();
}
