using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.IO;
using Engine.Kernels;
using Engine.Models.Bert;
using Engine.Reference;

namespace Engine.Tests;

/// <summary>
/// The whole classification model's gradients on a tiny config, every parameter against central
/// differences of the float64 reference model (<see cref="ReferenceBert"/>) on the same weights and a
/// ragged batch. One subclass per training backend.
/// </summary>
public abstract class ClassificationGradientTests(Func<ITrainingBackend> createBackend)
{
    private static readonly BertBatch Batch = new(2, 5, [2, 5, 7, 3, 0, 2, 9, 3, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 1, 1, 1, 0, 0]);
    private static readonly int[] Labels = [1, 0];

    [Fact]
    public void EveryParameterGradientMatchesFiniteDifferences()
    {
        using var temp = new TempDirectory();
        var tensors = TinyBert.Tensors(n => "bert." + n);
        tensors.Add(SafeTensorData.FromFloats("classifier.weight", OpCases.Random(2 * TinyBert.Hidden, 50, 0.5f), 2, TinyBert.Hidden));
        tensors.Add(SafeTensorData.FromFloats("classifier.bias", OpCases.Random(2, 51), 2));
        TinyBert.Write(temp.Path, tensors);
        using var backend = createBackend();
        using var model = BertForSequenceClassification.Load(temp.Path, backend, numLabels: 2);
        model.ZeroGradients();
        double loss = model.ForwardBackward(Batch, Labels, DropoutSettings.None);

        var weights = new Dictionary<string, double[]>();
        using (var file = SafeTensorsFile.Open(Path.Combine(temp.Path, "model.safetensors")))
            foreach (var info in file.Tensors) weights[info.Name.StartsWith("bert.", StringComparison.Ordinal) ? info.Name[5..] : info.Name] = file.ReadFloat32(info).AsDoubles();
        var config = model.Bert.Config;
        Assert.Equal(ReferenceBert.Loss(weights, config, Batch, Labels), loss, 1e-5);

        foreach (var parameter in model.Parameters)
        {
            var expected = parameter.Parts.SelectMany(part => ReferenceBert.NumericGradient(weights, part.Name.StartsWith("bert.", StringComparison.Ordinal) ? part.Name[5..] : part.Name, config, Batch, Labels)).ToArray();
            var result = ParityCheck.Compare("model-gradient", parameter.Name, expected, parameter.ReadGradient(backend), new Tolerance(2e-5, 2e-3));
            Assert.True(result.Passed, result.ToString());
        }
    }
}

public sealed class CpuClassificationGradientTests() : ClassificationGradientTests(() => new CpuBackend())
{
    private static readonly BertBatch Batch = new(2, 5, [2, 5, 7, 3, 0, 2, 9, 3, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 1, 1, 1, 0, 0]);
    private static readonly int[] Labels = [1, 0];
    [Fact]
    public void GradientsAccumulateAcrossPassesUntilZeroed()
    {
        using var temp = new TempDirectory();
        TinyBert.Write(temp.Path);
        using var backend = new CpuBackend();
        using var model = BertForSequenceClassification.Load(temp.Path, backend, numLabels: 3, seed: 7);
        model.ZeroGradients();
        model.ForwardBackward(Batch, [2, 0], DropoutSettings.None);
        var once = model.Classifier.Weight.ReadGradient(backend);
        model.ForwardBackward(Batch, [2, 0], DropoutSettings.None);
        var twice = model.Classifier.Weight.ReadGradient(backend);
        for (int i = 0; i < once.Length; i++) Assert.Equal(2 * once[i], twice[i], 1e-6f);
        model.ZeroGradients();
        Assert.All(model.Classifier.Weight.ReadGradient(backend), g => Assert.Equal(0f, g));
    }

    [Fact]
    public void DropoutIsReproducibleFromItsSeedAndChangesTheLoss()
    {
        using var temp = new TempDirectory();
        TinyBert.Write(temp.Path);
        using var backend = new CpuBackend();
        using var model = BertForSequenceClassification.Load(temp.Path, backend, numLabels: 2, seed: 3);
        model.ZeroGradients();
        double plain = model.ForwardBackward(Batch, Labels, DropoutSettings.None);
        double first = model.ForwardBackward(Batch, Labels, new DropoutSettings(0.3f, 42, 1));
        double again = model.ForwardBackward(Batch, Labels, new DropoutSettings(0.3f, 42, 1));
        double otherStep = model.ForwardBackward(Batch, Labels, new DropoutSettings(0.3f, 42, 2));
        Assert.Equal(first, again);
        Assert.NotEqual(plain, first);
        Assert.NotEqual(first, otherStep);
    }
}

public sealed class IlgpuEmulatorClassificationGradientTests() : ClassificationGradientTests(() => IlgpuBackend.Create(IlgpuDevice.CpuEmulator));
