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
    private static readonly float[] Targets = [1.5f, -0.75f];

    [Fact]
    public void EveryParameterGradientMatchesFiniteDifferences() => CheckGradients(2, DropoutSettings.None);

    /// <summary>Dropout everywhere Hugging Face has it, the attention probabilities included, each site at its own rate.</summary>
    [Fact]
    public void EveryParameterGradientMatchesFiniteDifferencesWithDropout() => CheckGradients(2, new DropoutSettings(0.2f, 0.25f, 0.3f, 17, 3));

    /// <summary>A regression head (num_labels 1): the mean squared error's gradients through the whole model.</summary>
    [Fact]
    public void RegressionGradientsMatchFiniteDifferences() => CheckGradients(1, new DropoutSettings(0.1f, 0.1f, 0.1f, 5, 1));

    private void CheckGradients(int numLabels, DropoutSettings dropout)
    {
        using var temp = new TempDirectory();
        var tensors = TinyBert.Tensors(n => "bert." + n);
        tensors.Add(SafeTensorData.FromFloats("classifier.weight", OpCases.Random(numLabels * TinyBert.Hidden, 50, 0.5f), numLabels, TinyBert.Hidden));
        tensors.Add(SafeTensorData.FromFloats("classifier.bias", OpCases.Random(numLabels, 51), numLabels));
        TinyBert.Write(temp.Path, tensors);
        using var backend = createBackend();
        using var model = BertForSequenceClassification.Load(temp.Path, backend, numLabels: numLabels);
        Assert.Equal(numLabels == 1 ? ProblemType.Regression : ProblemType.SingleLabelClassification, model.ProblemType);
        model.ZeroGradients();
        double loss = numLabels == 1 ? model.ForwardBackward(Batch, Targets, dropout) : model.ForwardBackward(Batch, Labels, dropout);

        var weights = ReferenceBert.Weights(temp.Path);
        var config = model.Bert.Config;
        double ReferenceLoss() => numLabels == 1
            ? ReferenceBert.Loss(weights, config, Batch, Targets.AsDoubles(), dropout)
            : ReferenceBert.Loss(weights, config, Batch, Labels, dropout);
        Assert.Equal(ReferenceLoss(), loss, 1e-5);

        foreach (var parameter in model.Parameters)
        {
            var expected = parameter.Parts.SelectMany(part =>
                ReferenceBert.NumericGradient(weights, part.Name.StartsWith("bert.", StringComparison.Ordinal) ? part.Name[5..] : part.Name, ReferenceLoss)).ToArray();
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
        double first = model.ForwardBackward(Batch, Labels, DropoutSettings.Uniform(0.3f, 42, 1));
        double again = model.ForwardBackward(Batch, Labels, DropoutSettings.Uniform(0.3f, 42, 1));
        double otherStep = model.ForwardBackward(Batch, Labels, DropoutSettings.Uniform(0.3f, 42, 2));
        Assert.Equal(first, again);
        Assert.NotEqual(plain, first);
        Assert.NotEqual(first, otherStep);
    }
}

public sealed class IlgpuEmulatorClassificationGradientTests() : ClassificationGradientTests(() => IlgpuBackend.Create(IlgpuDevice.CpuEmulator));
