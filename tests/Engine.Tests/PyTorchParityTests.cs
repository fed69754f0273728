using System.Text.Json.Nodes;
using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.IO;
using Engine.Kernels;
using Engine.Models.Bert;
using Engine.Reference;
using Engine.Training;

namespace Engine.Tests;

/// <summary>
/// The fine-tuning stack against PyTorch's autograd and AdamW on the fixtures of
/// Fixtures/pytorch/generate.py (listed in its fixtures.json): logits, loss, every parameter's gradient,
/// and the losses of 10 AdamW steps with clipping; classifiers (cross-entropy) and a regression head (mean
/// squared error). One subclass per training backend.
/// </summary>
public abstract class PyTorchParityTests(Func<ITrainingBackend> createBackend)
{
    internal static readonly string Root = Path.Combine(AppContext.BaseDirectory, "Fixtures", "pytorch");
    internal static readonly JsonNode Index = JsonNode.Parse(File.ReadAllText(Path.Combine(Root, "fixtures.json")))!;

    public static TheoryData<string> Fixtures => [.. Index["fixtures"]!.AsArray().Select(f => (string)f!["name"]!)];

    /// <summary>The fixture's batch, a training pass on its labels (class ids, or float targets for regression), and PyTorch's results.</summary>
    private static (BertBatch Batch, Func<BertForSequenceClassification, double> ForwardBackward, SafeTensorsFile Expected) Load(string name)
    {
        var entry = Index["fixtures"]!.AsArray().Single(f => (string)f!["name"]! == name)!;
        var problemType = (string)entry["problem_type"]! == "regression" ? ProblemType.Regression : ProblemType.SingleLabelClassification;
        using var inputs = SafeTensorsFile.Open(Path.Combine(Root, name, "inputs.safetensors"));
        int[] Ints(string tensor)
        {
            inputs.TryGet(tensor, out var info);
            return [.. System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(inputs.ReadRaw(info)).ToArray().Select(v => (int)v)];
        }
        inputs.TryGet("input_ids", out var ids);
        int B = (int)ids.Shape[0], T = (int)ids.Shape[1];
        var batch = new BertBatch(B, T, Ints("input_ids"), Ints("token_type_ids"), Ints("attention_mask"));
        Func<BertForSequenceClassification, double> forwardBackward;
        if (problemType == ProblemType.Regression)
        {
            var targets = Tensor(inputs, "labels");
            forwardBackward = model => model.ForwardBackward(batch, targets, DropoutSettings.None);
        }
        else
        {
            var labels = Ints("labels");
            forwardBackward = model => model.ForwardBackward(batch, labels, DropoutSettings.None);
        }
        return (batch, model =>
        {
            Assert.Equal(problemType, model.ProblemType);
            return forwardBackward(model);
        }, SafeTensorsFile.Open(Path.Combine(Root, name, "expected.safetensors")));
    }

    internal static float[] Tensor(SafeTensorsFile file, string name) =>
        file.TryGet(name, out var info) ? file.ReadFloat32(info) : throw new InvalidOperationException($"fixture has no '{name}'");

    internal static void AssertClose(string what, double[] expected, float[] actual, Tolerance tolerance)
    {
        var result = ParityCheck.Compare("pytorch", what, expected, actual, tolerance);
        Assert.True(result.Passed, result.ToString());
    }

    /// <summary>
    /// Each layer's attention probabilities (output_attentions) equal PyTorch's on every real query's row, rows sum to 1
    /// over the real keys, and padding queries' rows are zero (the engine's convention; PyTorch fills them); the forward
    /// with maps gives the same hidden states as without.
    /// </summary>
    [Theory, MemberData(nameof(Fixtures))]
    public void AttentionMapsEqualPyTorch(string name)
    {
        var (batch, _, expected) = Load(name);
        using (expected)
        {
            using var backend = createBackend();
            using var model = BertForSequenceClassification.Load(Path.Combine(Root, name, "model"), backend);
            var (withMaps, plain) = (model.Bert.Forward(batch, outputAttentions: true), model.Bert.Forward(batch));
            Assert.Equal(plain.LastHiddenState, withMaps.LastHiddenState);
            Assert.Null(plain.Attentions);
            int B = batch.BatchSize, T = batch.SequenceLength, NH = model.Config.NumAttentionHeads;
            Assert.Equal(model.Config.NumHiddenLayers, withMaps.Attentions!.Count);
            for (int layer = 0; layer < withMaps.Attentions.Count; layer++)
            {
                var (reference, maps) = (Tensor(expected, $"attentions.{layer}"), withMaps.Attentions[layer]);
                Assert.Equal(B * NH * T * T, maps.Length);
                var realRows = Enumerable.Range(0, B * NH * T).Where(row => batch.AttentionMask[row / (NH * T) * T + row % T] == 1).ToList();
                AssertClose($"attentions.{layer}", [.. realRows.SelectMany(row => reference.AsSpan(row * T, T).ToArray().AsDoubles())],
                    [.. realRows.SelectMany(row => maps.AsSpan(row * T, T).ToArray())], OpCases.AttentionTolerance);
                foreach (int row in realRows) Assert.Equal(1.0, maps.AsSpan(row * T, T).ToArray().Sum(v => (double)v), 1e-5);
                Assert.All(Enumerable.Range(0, B * NH * T).Except(realRows), row => Assert.All(maps.AsSpan(row * T, T).ToArray(), v => Assert.Equal(0f, v)));
            }
        }
    }

    [Theory, MemberData(nameof(Fixtures))]
    public void LogitsLossAndEveryGradientEqualPyTorch(string name)
    {
        var (batch, forwardBackward, expected) = Load(name);
        using (expected)
        {
            using var backend = createBackend();
            using var model = BertForSequenceClassification.Load(Path.Combine(Root, name, "model"), backend);
            var gradientTolerance = new Tolerance(1e-5, 1e-3);
            AssertClose("logits", Tensor(expected, "logits").AsDoubles(), model.Logits(batch), new Tolerance(1e-5, 1e-4));
            model.ZeroGradients();
            double loss = forwardBackward(model);
            Assert.Equal(Tensor(expected, "loss")[0], loss, 1e-5);
            foreach (var parameter in model.Parameters)
                AssertClose(parameter.Name, [.. parameter.Parts.SelectMany(p => Tensor(expected, "grad." + p.Name).AsDoubles())],
                    parameter.ReadGradient(backend), gradientTolerance);
        }
    }

    [Theory, MemberData(nameof(Fixtures))]
    public void TenAdamWStepsGiveThePyTorchLosses(string name)
    {
        var (batch, forwardBackward, expected) = Load(name);
        using (expected)
        {
            var adamw = Index["adamw"]!;
            using var backend = createBackend();
            using var model = BertForSequenceClassification.Load(Path.Combine(Root, name, "model"), backend);
            using var optimizer = new AdamWOptimizer(backend, model.Arena, new AdamWOptions
            {
                Beta1 = (float)adamw["betas"]![0]!, Beta2 = (float)adamw["betas"]![1]!, Eps = (float)adamw["eps"]!,
                WeightDecay = (float)adamw["weight_decay"]!, MaxGradNorm = (float)adamw["max_grad_norm"]!,
            });
            var losses = new double[(int)adamw["steps"]!];
            for (int step = 0; step < losses.Length; step++)
            {
                model.ZeroGradients();
                losses[step] = forwardBackward(model);
                optimizer.Step((float)adamw["lr"]!);
            }
            var reference = Tensor(expected, "adamw_losses");
            for (int step = 0; step < losses.Length; step++)
                Assert.True(Math.Abs(losses[step] - reference[step]) <= 1e-4, $"step {step + 1}: loss {losses[step]}, PyTorch {reference[step]}");
        }
    }
}

public sealed class CpuPyTorchParityTests() : PyTorchParityTests(() => new CpuBackend());

public sealed class IlgpuEmulatorPyTorchParityTests() : PyTorchParityTests(() => IlgpuBackend.Create(IlgpuDevice.CpuEmulator));
