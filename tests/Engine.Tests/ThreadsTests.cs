using Engine.Backends.Cpu;
using Engine.Models.Bert;
using Engine.Quantization;

namespace Engine.Tests;

/// <summary>The CPU backend's thread limit: its loops keep to it, outputs do not depend on it, and the command line takes it.</summary>
[Collection("console")]
public sealed class ThreadsTests
{
    [Fact]
    public void OneThreadRunsEveryIterationOnTheCallingThread()
    {
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<int, bool>();
        using (CpuParallel.Use(new ParallelOptions { MaxDegreeOfParallelism = 1 }))
            CpuParallel.For(0, 256, _ =>
            {
                seen[Environment.CurrentManagedThreadId] = true;
                Thread.SpinWait(2000);
            });
        Assert.Equal([Environment.CurrentManagedThreadId], seen.Keys);
        Assert.Equal(-1, CpuParallel.Options.MaxDegreeOfParallelism); // the scope ended: every core again
    }

    [Fact]
    public void OutputsDoNotDependOnTheThreadCount()
    {
        using var temp = new TempDirectory();
        TinyBert.WriteWithVocabulary(temp["tiny"]);
        CheckpointQuantizer.Quantize(temp["tiny"], temp["int8"], new QuantizeOptions(IncludeEmbeddings: true));
        var batch = new BertBatch(3, 6, [2, 5, 7, 3, 0, 0, 2, 9, 3, 6, 8, 3, 2, 3, 0, 0, 0, 0], new int[18], [1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]);
        foreach (string directory in new[] { temp["tiny"], temp["int8"] })
        {
            var outputs = new[] { 1, 2, 3 }.Select(threads =>
            {
                using var model = BertModel.Load(directory, new CpuBackend(threads));
                return model.Forward(batch).LastHiddenState;
            }).ToArray();
            Assert.Equal(outputs[0], outputs[1]);
            Assert.Equal(outputs[0], outputs[2]);
        }
    }

    [Fact]
    public void TheThreadCountIsCheckedAndShown()
    {
        Assert.Equal("threads", Assert.Throws<ArgumentOutOfRangeException>(() => new CpuBackend(-1)).ParamName);
        Assert.Throws<ArgumentOutOfRangeException>(() => new CpuBackend(CpuBackend.MaxThreads + 1));
        Assert.EndsWith(", 1 thread", new CpuBackend(1).Description);
        Assert.Equal(Environment.ProcessorCount, new CpuBackend().Threads);

        using var temp = new TempDirectory();
        string model = TinyBert.WriteWithVocabulary(temp["tiny"]);
        var (code, output, error) = CliRunner.Run("embed", "--model", model, "--device", "cpu", "--threads", "1", "--verbose", "good movie");
        Assert.True(code == 0, error);
        Assert.Contains(", 1 thread", error);
        Assert.StartsWith("[", output);
    }
}
