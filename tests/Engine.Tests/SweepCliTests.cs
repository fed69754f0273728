using Engine.Cli;
using Engine.Training;
using static Engine.Tests.CliRunner;

namespace Engine.Tests;

/// <summary>The sweep verb on a tiny classifier: trials, results files, plot, best model, resume, bad spaces.</summary>
[Collection("console")]
public sealed class SweepCliTests
{
    private static (string Model, string Train, string Eval) Data(TempDirectory temp)
    {
        string model = TinyBert.WriteWithVocabulary(temp["tiny"]);
        File.WriteAllLines(temp["train.csv"], ["text,label", "good movie,pos", "bad movie,neg", "the good movies,pos", "a bad movie,neg"]);
        return (model, temp["train.csv"], temp["train.csv"]);
    }

    [Fact]
    public void AGridSweepWritesItsTablePlotAndBestModelAndResumes()
    {
        using var temp = new TempDirectory();
        var (model, train, eval) = Data(temp);
        string[] args = ["sweep", "--model", model, "--train", train, "--eval", eval, "--grid", "lr=1e-3,1e-4", "epochs=1", "--output", temp["out"]];
        var (code, output, error) = Run(args);
        Assert.True(code == 0, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("trial 0: lr=0.001 epochs=1 -> f1 ", lines[0]);
        Assert.StartsWith("trial 1: lr=0.0001 epochs=1 -> f1 ", lines[1]);
        Assert.StartsWith("best: trial ", lines[2]);
        Assert.Equal(2, File.ReadAllLines(Path.Combine(temp["out"], Sweep.ResultsFile)).Length);
        Assert.Equal(3, File.ReadAllLines(Path.Combine(temp["out"], Sweep.TableFile)).Length);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], File.ReadAllBytes(Path.Combine(temp["out"], "sweep.png"))[..4]);
        Assert.True(File.Exists(Path.Combine(temp["out"], Sweep.BestDirectory, "model.safetensors")));
        Assert.True(File.Exists(Path.Combine(temp["out"], Sweep.BestDirectory, "vocab.txt")));
        // The best model classifies.
        Assert.Equal(0, Run("classify", "--model", Path.Combine(temp["out"], Sweep.BestDirectory), "good movie").Code);

        (code, output, error) = Run(args);
        Assert.True(code == 0, error);
        Assert.Contains("2 trials already recorded", error);
        Assert.StartsWith("best: trial ", output.Trim());
    }

    [Fact]
    public void TpeOverAGridsValuesAndBadSpacesAreRefused()
    {
        using var temp = new TempDirectory();
        var (model, train, eval) = Data(temp);
        var (code, output, error) = Run("sweep", "--model", model, "--train", train, "--eval", eval, "--grid", "lr=1e-3,1e-4", "epochs=1", "--strategy", "tpe",
            "--trials", "3", "--metric", "eval_loss", "--output", temp["tpe"]);
        Assert.True(code == 0, error);
        Assert.Equal(3, output.Split('\n').Count(l => l.StartsWith("trial ", StringComparison.Ordinal)));
        Assert.Contains("-> eval_loss ", output);

        Assert.Equal("error: --grid: 'momentum' is not one of lr, batch-size, epochs, warmup, weight-decay, dropout",
            Run("sweep", "--model", model, "--train", train, "--eval", eval, "--grid", "momentum=0.9").Error.Trim());
        Assert.Equal((int)ExitCode.Usage, Run("sweep", "--model", model, "--train", train, "--eval", eval, "--grid", "lr=fast").Code);
        File.WriteAllText(temp["space.json"], "{\"lr\": {\"low\": 0, \"high\": 1e-3, \"log\": true}}");
        (code, _, error) = Run("sweep", "--model", model, "--train", train, "--eval", eval, "--space", temp["space.json"], "--strategy", "random");
        Assert.Equal((int)ExitCode.Failure, code);
        Assert.Contains("'lr' is on a log scale but its low end 0 is not positive", error);
        Assert.Equal((int)ExitCode.Failure, Run("sweep", "--model", model, "--train", train, "--eval", eval, "--space", temp["space.json"], "--strategy", "grid").Code);
    }
}
