using Engine.Training;

namespace Engine.Tests;

/// <summary>The sweep runner with a stand-in for training: results files, the best model kept, divergence, resume.</summary>
public sealed class SweepTests
{
    private static readonly SearchDimension[] Grid = [new ChoiceDimension("lr", [5e-5, 3e-5, 2e-5]), new ChoiceDimension("batch-size", [16, 32])];

    /// <summary>F1 peaks at lr 3e-5, batch size 16; losses fall; the "model" is a file naming its point.</summary>
    private static TrialRun Train(SearchPoint point, string directory, List<string> calls)
    {
        calls.Add(point.ToString());
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "model.txt"), point.ToString());
        double f1 = 0.9 - Math.Abs(point["lr"] - 3e-5) * 1e3 - (point["batch-size"] == 16 ? 0 : 0.01);
        return new TrialRun(new EvaluationResult(1 - f1, 100, Accuracy: f1 + 0.05, F1: f1), [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]);
    }

    [Fact]
    public void AGridSweepRecordsEveryTrialAndKeepsTheBestModel()
    {
        using var temp = new TempDirectory();
        var calls = new List<string>();
        var trials = new Sweep(new GridSearch(Grid), "f1").Run(temp.Path, 100, (p, d) => Train(p, d, calls));
        Assert.Equal(6, trials.Count);
        Assert.Equal(6, calls.Distinct().Count());
        Assert.Equal(6, File.ReadAllLines(Path.Combine(temp.Path, Sweep.ResultsFile)).Length);
        var csv = File.ReadAllLines(Path.Combine(temp.Path, Sweep.TableFile));
        Assert.Equal("trial,lr,batch-size,status,eval_loss,accuracy,f1,seconds", csv[0]);
        Assert.Equal(7, csv.Length);
        Assert.Equal("lr=3E-05 batch-size=16", File.ReadAllText(Path.Combine(temp.Path, Sweep.BestDirectory, "model.txt")));
        Assert.Empty(Directory.EnumerateDirectories(temp.Path, "trial-*"));
    }

    /// <summary>A sweep stopped after 3 trials and run again runs only the other 3, and ends as the uninterrupted one.</summary>
    [Fact]
    public void AResumedSweepSkipsFinishedTrials()
    {
        using var temp = new TempDirectory();
        var (calls, again) = (new List<string>(), new List<string>());
        var tpe = (int seed) => new TreeParzenEstimator([new RangeDimension("lr", 1e-6, 1e-3, Log: true), new ChoiceDimension("batch-size", [16, 32])], seed) { StartupTrials = 2 };
        new Sweep(tpe(3), "f1").Run(temp["resumed"], 3, (p, d) => Train(p, d, calls));
        var resumed = new Sweep(tpe(3), "f1").Run(temp["resumed"], 6, (p, d) => Train(p, d, again));
        Assert.Equal(3, again.Count);
        var straight = new Sweep(tpe(3), "f1").Run(temp["straight"], 6, (p, d) => Train(p, d, []));
        Assert.Equal(straight.Select(t => t.Point.ToString()), resumed.Select(t => t.Point.ToString()));
        Assert.Equal(straight.Select(t => t.Result!.F1), resumed.Select(t => t.Result!.F1));
        Assert.Equal(File.ReadAllText(Path.Combine(temp["straight"], Sweep.BestDirectory, "model.txt")), File.ReadAllText(Path.Combine(temp["resumed"], Sweep.BestDirectory, "model.txt")));
    }

    /// <summary>A trial whose loss became NaN, and one whose loss did not fall, are recorded as diverged and never kept as best.</summary>
    [Fact]
    public void DivergedTrialsAreRecordedAndNeverBest()
    {
        using var temp = new TempDirectory();
        var sweep = new Sweep(new GridSearch(Grid), "f1");
        var trials = sweep.Run(temp.Path, 6, (p, d) =>
        {
            if (p["lr"] == 5e-5 && p["batch-size"] == 16) throw new TrainingDivergedException("step 3: the loss is NaN; training stopped");
            var run = Train(p, d, []);
            // The best point's loss rises: diverged, though its F1 is the highest.
            return p["lr"] == 3e-5 && p["batch-size"] == 16 ? run with { StepLosses = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8] } : run;
        });
        Assert.Equal(TrialStatus.Diverged, trials[0].Status);
        Assert.Contains("the loss is NaN", trials[0].Note);
        Assert.Equal(TrialStatus.Diverged, trials[2].Status);
        Assert.StartsWith("the loss did not fall", trials[2].Note);
        Assert.Equal(double.PositiveInfinity, sweep.Objective(trials[2]));
        Assert.Equal("lr=3E-05 batch-size=32", File.ReadAllText(Path.Combine(temp.Path, Sweep.BestDirectory, "model.txt")));
        Assert.Equal(trials.Select(t => t.Status), Sweep.Read(Path.Combine(temp.Path, Sweep.ResultsFile)).Select(t => t.Status));
    }

    [Fact]
    public void AMalformedResultsLineIsAnErrorNamingIt()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(Path.Combine(temp.Path, Sweep.ResultsFile), "{\"trial\": 0, \"params\": {\"lr\": 1e-5}, \"status\": \"finished\"}\n{\"trial\": 1, \"params\": 3}\n");
        var error = Assert.Throws<EngineException>(() => new Sweep(new GridSearch(Grid), "f1").Run(temp.Path, 6, (p, d) => Train(p, d, [])));
        Assert.StartsWith($"{Path.Combine(temp.Path, Sweep.ResultsFile)}:2: not a trial record", error.Message);
        Assert.Throws<ArgumentException>(() => new Sweep(new GridSearch(Grid), "bleu"));
    }
}
