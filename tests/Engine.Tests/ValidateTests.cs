using System.Text.Json.Nodes;
using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Cli;
using Engine.IO;
using Engine.Kernels;
using Engine.Validation;

namespace Engine.Tests;

/// <summary>
/// <c>validate</c> on the PyTorch fixtures' reference files (generate.py writes them in the documented format): every
/// output and gradient passes on both backends; a perturbed reference fails naming its tensor; malformed files are one
/// clear error.
/// </summary>
public abstract class ValidateTests(Func<ITrainingBackend> createBackend)
{
    public static TheoryData<string> References =>
        [.. Directory.EnumerateDirectories(PyTorchParityTests.Root).Where(d => File.Exists(Path.Combine(d, "reference.safetensors"))).Select(d => Path.GetFileName(d)!).Order()];

    internal static string Model(string fixture) => Path.Combine(PyTorchParityTests.Root, fixture, "model");
    internal static string Reference(string fixture) => Path.Combine(PyTorchParityTests.Root, fixture, "reference.safetensors");

    [Theory, MemberData(nameof(References))]
    public void EveryOutputAndGradientOfTheReferencePasses(string fixture)
    {
        using var backend = createBackend();
        var comparisons = ReferenceValidator.Validate(Model(fixture), Reference(fixture), backend, new ValidationOptions(Gradients: true));
        Assert.All(comparisons, c => Assert.True(c.Passed, $"{c.Name}: max |Δ| {c.MaxAbsolute:E2}, max rel {c.MaxRelative:E2}"));
        var names = comparisons.Select(c => c.Name).ToList();
        Assert.Contains("last_hidden_state", names);
        Assert.Contains("logits", names);
        Assert.Contains("loss", names);
        Assert.Contains("attentions.0", names);
        Assert.Contains(names, n => n.StartsWith("grad.bert.encoder.layer.0.", StringComparison.Ordinal));
        // Masked positions are left out: fewer hidden-state elements compared than the tensor holds (the fixtures are ragged).
        var hidden = comparisons.Single(c => c.Name == "last_hidden_state");
        Assert.InRange(hidden.Compared, 1, hidden.Shape.Aggregate(1L, (a, b) => a * b) - 1);
        Assert.True(comparisons.Count(c => c.Name.StartsWith("grad.", StringComparison.Ordinal)) > 10);
        // Without --grads the gradients are not compared.
        Assert.DoesNotContain(ReferenceValidator.Validate(Model(fixture), Reference(fixture), backend, new ValidationOptions()), c => c.Name.StartsWith("grad.", StringComparison.Ordinal));
    }
}

public sealed class CpuValidateTests() : ValidateTests(() => new CpuBackend());

public sealed class IlgpuEmulatorValidateTests() : ValidateTests(() => IlgpuBackend.Create(IlgpuDevice.CpuEmulator));

/// <summary>The validate verb: the table, --json, a perturbed reference, malformed files.</summary>
[Collection("console")]
public sealed class ValidateCliTests
{
    private const string Fixture = "tiny-3-labels";

    /// <summary>A copy of the fixture's reference with <paramref name="change"/> applied to its tensors (and metadata).</summary>
    private static string Rewritten(TempDirectory temp, Func<List<SafeTensorData>, List<SafeTensorData>> change, Dictionary<string, string>? metadata = null)
    {
        using var file = SafeTensorsFile.Open(ValidateTests.Reference(Fixture));
        var tensors = file.Tensors.OrderBy(t => t.Start).Select(t => new SafeTensorData(t.Name, t.DType, t.Shape, file.ReadRaw(t))).ToList();
        string path = temp["reference.safetensors"];
        SafeTensorsWriter.Write(path, change(tensors), metadata ?? file.Metadata.ToDictionary());
        return path;
    }

    [Fact]
    public void TheTablePassesAndAPerturbedTensorFailsByName()
    {
        var (code, output, error) = CliRunner.Run("validate", "--model", ValidateTests.Model(Fixture), "--reference", ValidateTests.Reference(Fixture), "--grads", "--device", "cpu");
        Assert.True(code == 0, error + output);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("tensor", lines[0]);
        Assert.Contains(lines, l => l.StartsWith("logits ", StringComparison.Ordinal) && l.EndsWith("pass", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.EndsWith("FAIL", StringComparison.Ordinal));

        using var temp = new TempDirectory();
        string perturbed = Rewritten(temp, tensors => [.. tensors.Select(t =>
        {
            if (t.Name != "grad.bert.encoder.layer.1.output.dense.weight") return t;
            var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.Data).ToArray();
            values[7] += 1e-2f;
            return SafeTensorData.FromFloats(t.Name, values, t.Shape);
        })]);
        (code, output, error) = CliRunner.Run("validate", "--model", ValidateTests.Model(Fixture), "--reference", perturbed, "--grads");
        Assert.Equal((int)ExitCode.Failure, code);
        Assert.Contains(output.Split('\n'), l => l.StartsWith("grad.bert.encoder.layer.1.output.dense.weight ", StringComparison.Ordinal) && l.TrimEnd().EndsWith("FAIL", StringComparison.Ordinal));
        Assert.EndsWith("tensors differ beyond the tolerance: grad.bert.encoder.layer.1.output.dense.weight", error.Trim());
        // Without --grads the perturbed gradient is not compared.
        Assert.Equal(0, CliRunner.Run("validate", "--model", ValidateTests.Model(Fixture), "--reference", perturbed).Code);

        (code, output, _) = CliRunner.Run("validate", "--model", ValidateTests.Model(Fixture), "--reference", perturbed, "--grads", "--json", "--atol", "0.02");
        Assert.Equal(0, code);
        var json = JsonNode.Parse(output)!;
        Assert.True((bool)json["passed"]!);
        Assert.Contains(json["tensors"]!.AsArray(), t => (string)t!["name"]! == "pooler_output" && (long)t["compared"]! == 3 * 16);
    }

    [Fact]
    public void MalformedReferencesAreOneClearError()
    {
        using var temp = new TempDirectory();
        string model = ValidateTests.Model(Fixture);
        string Error(string reference, params string[] extra)
        {
            var (code, _, error) = CliRunner.Run(["validate", "--model", model, "--reference", reference, .. extra]);
            Assert.Equal((int)ExitCode.Failure, code);
            var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Single(lines);
            return lines[0];
        }
        Assert.EndsWith("no 'input_ids' (the inputs are input_ids and attention_mask, (B,T))", Error(Rewritten(temp, t => [.. t.Where(x => x.Name != "input_ids")])));
        Assert.Contains("tensor 'logits' has shape [3, 2]; the engine's is [3, 3]", Error(Rewritten(temp, t => [.. t.Select(x => x.Name == "logits"
            ? SafeTensorData.FromFloats("logits", new float[6], 3, 2) : x)])));
        Assert.Contains("unknown architecture 'GPT2Model' in __metadata__", Error(Rewritten(temp, t => t, new() { ["architecture"] = "GPT2Model" })));
        Assert.Contains("made by a BertForMaskedLM, but the model is a BertForSequenceClassification", Error(Rewritten(temp, t => t, new() { ["architecture"] = "BertForMaskedLM" })));
        Assert.Contains("tensor 'hidden_states' is neither an input nor an output", Error(Rewritten(temp, t => [.. t, SafeTensorData.FromFloats("hidden_states", [1f], 1)])));
        Assert.Contains("'loss' and gradients need 'labels'", Error(Rewritten(temp, t => [.. t.Where(x => x.Name != "labels")])));
    }
}
