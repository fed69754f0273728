using System.Text.Json;
using Engine.Cli;
using static Engine.Tests.CliRunner;

namespace Engine.Tests;

/// <summary>
/// --precision and --loss-scale on the command line (in-process runs share the console, hence the collection): reduced
/// Linears on the emulator device and refused on the CPU, fp16 fine-tuning's loss scale in the JSON log.
/// </summary>
[Collection("console")]
public sealed class ReducedPrecisionCliTests
{
    [Fact]
    public void PrecisionOptionRunsReducedLinearsOnAGpuDeviceAndIsRefusedElsewhere()
    {
        using var temp = new TempDirectory();
        string model = TinyBert.WriteWithVocabulary(temp["tiny"]);
        var fp32 = JsonSerializer.Deserialize<float[]>(Run("embed", "--model", model, "--device", "cpu", "good movie").Out)!;
        foreach (var precision in new[] { "tf32", "fp16", "bf16" })
        {
            var (code, output, error) = Run("embed", "--model", model, "--device", "ilgpu-cpu", "--precision", precision, "good movie");
            Assert.True(code == 0, error);
            var reduced = JsonSerializer.Deserialize<float[]>(output)!;
            double cosine = SentenceEmbedder.Cosine(fp32, reduced);
            Assert.InRange(cosine, 0.999, 1.0);
            Assert.NotEqual(fp32, reduced);

            (code, _, error) = Run("embed", "--model", model, "--device", "cpu", "--precision", precision, "good movie");
            Assert.Equal((int)ExitCode.Usage, code);
            Assert.Equal($"error: --precision {precision} runs on a GPU device (--device cuda, or ilgpu-cpu to check it); the CPU backend computes in fp32", error.Trim());
        }
        var (badCode, _, badError) = Run("embed", "--model", model, "--precision", "fp8", "good");
        Assert.Equal((int)ExitCode.Usage, badCode);
        Assert.Contains("--precision: 'fp8' is not one of fp32, tf32, fp16, bf16", badError);
    }

    /// <summary>
    /// finetune --precision fp16 scales its loss: with --loss-scale 16777216 injected, the JSON log shows the first step
    /// skipped and the scale halved, and the progress says so; --loss-scale is refused without fp16, and range-checked.
    /// </summary>
    [Fact]
    public void FinetuneInFp16LogsSkippedStepsAndTheScale()
    {
        using var temp = new TempDirectory();
        string model = TinyBert.WriteWithVocabulary(temp["tiny"]);
        File.WriteAllText(temp["train.tsv"], "text\tlabel\ngood movie\tpos\nbad movie\tneg\n");
        var (code, output, error) = Run("finetune", "--model", model, "--train", temp["train.tsv"], "--device", "ilgpu-cpu", "--precision", "fp16",
            "--loss-scale", "16777216", "--steps", "2", "--batch-size", "2", "--dropout", "0", "--log-json", "--no-checkpoint", "--output", temp["out"]);
        Assert.True(code == 0, error);
        var steps = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement)
            .Where(e => e.TryGetProperty("step", out _)).ToList();
        Assert.Equal(2, steps.Count);
        Assert.True(steps[0].GetProperty("skipped").GetBoolean());
        Assert.Equal(JsonValueKind.Null, steps[0].GetProperty("grad_norm").ValueKind);
        Assert.Equal(16777216f, steps[0].GetProperty("loss_scale").GetSingle());
        Assert.Equal(8388608f, steps[1].GetProperty("loss_scale").GetSingle());
        Assert.Contains("step 1: the gradients overflowed at loss scale 16777216; step skipped, scale halved", error);

        (code, _, error) = Run("finetune", "--model", model, "--train", temp["train.tsv"], "--device", "ilgpu-cpu", "--precision", "bf16", "--loss-scale", "1024", "--output", temp["out2"]);
        Assert.Equal((int)ExitCode.Usage, code);
        Assert.Equal("error: --loss-scale is for --precision fp16; bf16 needs no loss scaling", error.Trim());
        (code, _, error) = Run("finetune", "--model", model, "--train", temp["train.tsv"], "--loss-scale", "0.5", "--output", temp["out3"]);
        Assert.Equal((int)ExitCode.Usage, code);
        Assert.Contains("--loss-scale", error);
    }

    /// <summary>
    /// A model stored in F16: info says what its weights take by type (the Linears and word table in F16), embed runs it as
    /// stored on the CPU and in fp16 on the emulator, close to the F32 model.
    /// </summary>
    [Fact]
    public void AHalfCheckpointRunsAsStoredAndInfoShowsItsWeightTypes()
    {
        using var temp = new TempDirectory();
        string original = TinyBert.WriteWithVocabulary(temp["tiny"]);
        string model = Engine.Reference.HalfValues.ConvertCheckpoint(original, temp["tiny-f16"], Engine.IO.DType.F16);
        var (code, output, error) = Run("info", "--model", model, "--device", "cpu");
        Assert.True(code == 0, error);
        // Word table 11×8, per layer Q, K, V, attention output (8×8 each), intermediate 12×8 and output 8×12, pooler 8×8: 1,048 halves.
        Assert.Matches(@"weights:    F32 [0-9,]+ bytes, F16 2,096 bytes\n", output);
        var fp32 = JsonSerializer.Deserialize<float[]>(Run("embed", "--model", original, "--device", "cpu", "good movie").Out)!;
        foreach (var device in new[] { new[] { "--device", "cpu" }, new[] { "--device", "ilgpu-cpu", "--precision", "fp16" } })
        {
            (code, output, error) = Run(["embed", "--model", model, .. device, "good movie"]);
            Assert.True(code == 0, error);
            Assert.InRange(SentenceEmbedder.Cosine(fp32, JsonSerializer.Deserialize<float[]>(output)!), 0.999, 1.0);
        }
    }
}
