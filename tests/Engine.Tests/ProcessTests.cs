using System.Diagnostics;
using System.Text.Json.Nodes;
using Engine.Backends.Cpu;
using Engine.IO;
using Engine.Models.Bert;
using Engine.Training;
using Xunit.Abstractions;

namespace Engine.Tests;

/// <summary>
/// What only separate processes show: a seed gives the same run in any process, and a run killed with SIGKILL at
/// any moment — during a checkpoint's write included — leaves a whole checkpoint that a fresh process resumes to
/// the same weights, bit for bit, as a run that was never interrupted.
/// </summary>
public sealed class ProcessTests(ITestOutputHelper log)
{
    // Epochs of 12 steps: long enough that a kill a few milliseconds after an epoch's last step stays within the next epoch.
    private const int Epochs = 8, Rows = 48, BatchSize = 4, StepsPerEpoch = Rows / BatchSize;

    private static string[] Data(TempDirectory temp)
    {
        string model = TinyBert.WriteWithVocabulary(temp["tiny"]);
        string[] words = ["good", "bad", "movie", "the", "a", "goods", "bads", "movies"];
        var random = new Random(5);
        var lines = new List<string> { "text,label" };
        for (int i = 0; i < Rows; i++)
            lines.Add($"{string.Join(' ', Enumerable.Range(0, 2 + i % 4).Select(_ => words[random.Next(words.Length)]))},{(i % 2 == 0 ? "pos" : "neg")}");
        File.WriteAllLines(temp["train.csv"], lines);
        return ["finetune", "--model", model, "--train", temp["train.csv"], "--batch-size", BatchSize.ToString(), "--dropout", "0.1", "--lr", "1e-3",
            "--warmup", "0.2", "--log-json", "--quiet"];
    }

    private static List<string> StepLosses(string output) =>
        [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).Where(e => e["step"] is not null).Select(e => e["loss"]!.ToJsonString())];

    [Fact]
    public void TheSameSeedGivesTheSameRunInAnyProcess()
    {
        using var temp = new TempDirectory();
        var args = Data(temp);
        var first = EngineProcess.Run([.. args, "--epochs", "2", "--seed", "5", "--output", temp["a"]]);
        var second = EngineProcess.Run([.. args, "--epochs", "2", "--seed", "5", "--output", temp["b"]]);
        var other = EngineProcess.Run([.. args, "--epochs", "2", "--seed", "6", "--output", temp["c"]]);
        Assert.True(first.Code == 0 && second.Code == 0 && other.Code == 0, first.Error + second.Error + other.Error);
        var (a, b, c) = (StepLosses(first.Out), StepLosses(second.Out), StepLosses(other.Out));
        Assert.Equal(2 * StepsPerEpoch, a.Count);
        Assert.Equal(a, b); // shuffling, dropout and the new head all derive from the seed alone
        Assert.NotEqual(a, c);
        Assert.Equal(File.ReadAllBytes(temp["a/model.safetensors"]), File.ReadAllBytes(temp["b/model.safetensors"]));
    }

    [Fact]
    public void KilledRunsLeaveAWholeCheckpointThatAFreshProcessResumesBitIdentically()
    {
        using var temp = new TempDirectory();
        var args = Data(temp);
        string[] Run(string output) => [.. args, "--epochs", Epochs.ToString(), "--seed", "3", "--output", output];
        var reference = EngineProcess.Run(Run(temp["reference"]));
        Assert.True(reference.Code == 0, reference.Error);
        string[] compared = ["model.safetensors", "last/model.safetensors", "last/optimizer.safetensors", "last/trainer_state.json"];

        // Kill after the last step of an epoch and a delay: early delays fall into that epoch's checkpoint write.
        int midSave = 0, trials = 0;
        double[] delaysMs = [0, 0.2, 0.5, 1, 2, 4];
        for (; trials < 24 && (trials < 6 || midSave == 0); trials++)
        {
            int epoch = 2 + trials % (Epochs - 3); // after epoch 1's checkpoint, so that one always exists
            double delay = delaysMs[trials % delaysMs.Length];
            string output = temp[$"run{trials}"];
            bool killed = EngineProcess.RunUntil(Run(output), line =>
            {
                if (JsonNode.Parse(line)!["step"] is not { } step || (int)step != epoch * StepsPerEpoch) return false;
                var clock = Stopwatch.StartNew();
                while (clock.Elapsed.TotalMilliseconds < delay) Thread.SpinWait(10);
                return true;
            });
            Assert.True(killed, $"trial {trials}: the run ended before it could be killed");
            bool interruptedSave = Directory.EnumerateDirectories(output, "last.saving-*").Any() || Directory.Exists(Path.Combine(output, "last.previous"));
            midSave += interruptedSave ? 1 : 0;

            // What the kill left loads whole: the epoch before, the one being saved, or - where a busy machine let the
            // run go on before SIGKILL landed - a later one; never none, never a part of one.
            string checkpoint = Trainer.ResolveCheckpoint(Path.Combine(output, "last"))
                ?? throw new Xunit.Sdk.XunitException($"trial {trials}: no checkpoint to resume from after a kill in epoch {epoch}");
            var state = TrainerState.Read(Path.Combine(checkpoint, Trainer.StateFile));
            Assert.InRange(state.Epoch, epoch - 1, Epochs);
            Assert.Equal(state.Epoch * StepsPerEpoch, state.OptimizerSteps);
            using (var model = BertForSequenceClassification.Load(checkpoint, new CpuBackend())) Assert.Empty(model.UnusedTensors);
            using (var optimizer = SafeTensorsFile.Open(Path.Combine(checkpoint, Trainer.OptimizerFile))) Assert.NotEmpty(optimizer.Tensors);
            log.WriteLine($"trial {trials}: killed {delay} ms after epoch {epoch}'s last step; {(interruptedSave ? "during the checkpoint's write" : "outside a write")}; resuming from epoch {state.Epoch} ({Path.GetFileName(checkpoint)})");

            var resumed = EngineProcess.Run([.. Run(output), "--resume", Path.Combine(output, "last")]);
            Assert.True(resumed.Code == 0, resumed.Error);
            foreach (string file in compared)
                Assert.True(File.ReadAllBytes(Path.Combine(temp["reference"], file)).AsSpan().SequenceEqual(File.ReadAllBytes(Path.Combine(output, file))),
                    $"trial {trials}: {file} differs from the uninterrupted run's");
            Assert.Equal([Path.Combine(output, "last")], Directory.EnumerateDirectories(output, "last*")); // nothing stale left beside it
        }
        log.WriteLine($"{trials} kills, {midSave} during a checkpoint's write");
        Assert.True(midSave > 0, $"none of {trials} kills fell during a checkpoint's write");
    }
}
