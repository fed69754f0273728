using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Kernels;
using Engine.Models.Bert;
using Engine.Reference;
using Engine.Training;

namespace Engine.Tests;

/// <summary>AdamW and the gradient norm on a training backend, against PyTorch's formulas in float64. One subclass per backend.</summary>
public abstract class OptimizerTests(Func<ITrainingBackend> createBackend)
{
    [Fact]
    public void AdamWFollowsPyTorchOverSeveralStepsDecayingOnlyTheFirstElements()
    {
        using var backend = createBackend();
        const int n = 257, decayed = 100; // an arena lays its decayed tensors first
        var p = OpCases.Random(n, 60).AsDoubles();
        var (m, v) = (new double[n], new double[n]);
        var buffers = new[] { p.Select(x => (float)x).ToArray(), new float[n], new float[n] }.Select(a =>
        {
            var b = backend.Allocate<float>(n);
            backend.Upload<float>(a, b);
            return b;
        }).ToArray();
        var gradient = backend.Allocate<float>(n);
        for (int t = 1; t <= 5; t++)
        {
            var g = OpCases.Random(n, 60 + t, 0.1f);
            backend.Upload<float>(g, gradient);
            var step = new AdamWStep(1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.5f, t);
            backend.AdamW(buffers[0], gradient, buffers[1], buffers[2], n, decayed, step);
            for (int i = 0; i < n; i++)
            {
                double gi = g[i] * 0.5;
                if (i < decayed) p[i] *= 1 - 1e-3 * 0.01;
                m[i] = 0.9 * m[i] + 0.1 * gi;
                v[i] = 0.999 * v[i] + 0.001 * gi * gi;
                p[i] -= 1e-3 / (1 - Math.Pow(0.9, t)) * m[i] / (Math.Sqrt(v[i]) / Math.Sqrt(1 - Math.Pow(0.999, t)) + 1e-8);
            }
        }
        var result = new float[n];
        backend.Download(buffers[0], result);
        var check = ParityCheck.Compare("adamw", "5 steps", p, result, new Tolerance(1e-6, 1e-5));
        Assert.True(check.Passed, check.ToString());
    }

    [Fact]
    public void ProductsUseTheWeightAsTheOptimizerLeftIt()
    {
        using var backend = createBackend();
        const int M = 4, K = 9, N = 5;
        var (input, weight) = (OpCases.Random(M * K, 80), OpCases.Random(N * K, 81));
        DeviceBuffer<float> Upload(float[] values)
        {
            var b = backend.Allocate<float>(values.Length);
            backend.Upload<float>(values, b);
            return b;
        }
        var (x, w, output) = (Upload(input), Upload(weight), backend.Allocate<float>(M * N));
        backend.Linear(output, x, w, null, M, K, N, Activation.None); // a first product (the CPU backend packs the weight)
        var (g, m, v) = (Upload(OpCases.Random(N * K, 82)), Upload(new float[N * K]), Upload(new float[N * K]));
        backend.AdamW(w, g, m, v, N * K, N * K, new AdamWStep(0.1f, 0.9f, 0.999f, 1e-8f, 0f, 1f, 1));
        var updated = new float[N * K];
        backend.Download(w, updated);
        Assert.NotEqual(weight, updated);
        backend.Linear(output, x, w, null, M, K, N, Activation.None);
        var actual = new float[M * N];
        backend.Download(output, actual);
        var check = ParityCheck.Compare("linear", "after AdamW", ReferenceOps.Linear(input.AsDoubles(), updated.AsDoubles(), null, M, K, N, "none"), actual, OpCases.LinearTolerance);
        Assert.True(check.Passed, check.ToString());
    }

    [Fact]
    public void SumOfSquaresIsExact()
    {
        using var backend = createBackend();
        var values = OpCases.Random(100_003, 70);
        var buffer = backend.Allocate<float>(values.Length);
        backend.Upload<float>(values, buffer);
        Assert.Equal(values.Sum(x => (double)x * x), backend.SumOfSquares(buffer, values.Length), 1e-3);
    }

    [Fact]
    public void OptimizerSkipsDecayOnBiasesAndLayerNormsClipsAndStopsOnNaN()
    {
        using var temp = new TempDirectory();
        TinyBert.Write(temp.Path);
        using var backend = createBackend();
        using var model = BertForSequenceClassification.Load(temp.Path, backend, numLabels: 2, seed: 1);
        var decaying = model.Arena.Entries.Where(e => e.Decays).Select(e => e.Name).ToList();
        Assert.Contains("bert.encoder.layer.0.intermediate.dense.weight", decaying);
        Assert.DoesNotContain(decaying, n => n.EndsWith(".bias", StringComparison.Ordinal) || n.Contains("LayerNorm"));
        Assert.Equal(decaying.Count, model.Arena.Entries.TakeWhile(e => e.Decays).Count()); // laid out first: one AdamW launch tells them apart
        Assert.Equal(model.Arena.Entries.Where(e => e.Decays).Sum(e => e.Length), model.Arena.DecayedLength);

        using var optimizer = new AdamWOptimizer(backend, model.Arena, new AdamWOptions { MaxGradNorm = 1e-3f });
        var batch = new BertBatch(2, 3, [2, 5, 7, 3, 4, 1], new int[6], [1, 1, 1, 1, 1, 0]);
        model.ZeroGradients();
        model.ForwardBackward(batch, [1, 0], DropoutSettings.None);
        var before = model.Classifier.Weight.ReadValue(backend);
        double norm = optimizer.Step(1e-2f);
        Assert.True(norm > 1e-3, "the tiny model's gradient norm should exceed the clip");
        var after = model.Classifier.Weight.ReadValue(backend);
        Assert.NotEqual(before, after);

        // A NaN gradient stops training with a message naming the step.
        var gradient = model.Classifier.Bias!.ReadGradient(backend);
        gradient[0] = float.NaN;
        backend.Upload<float>(gradient, model.Classifier.Bias.Gradient);
        var e = Assert.Throws<EngineException>(() => optimizer.Step(1e-2f));
        Assert.Contains("step 2: the gradient norm is NaN", e.Message);
    }
}

public sealed class CpuOptimizerTests() : OptimizerTests(() => new CpuBackend());

public sealed class IlgpuEmulatorOptimizerTests() : OptimizerTests(() => IlgpuBackend.Create(IlgpuDevice.CpuEmulator));

public sealed class LearningRateScheduleTests
{
    [Theory]
    // Hugging Face get_linear_schedule_with_warmup(warmup 2, total 10) at base 1.
    [InlineData(0, 0f)]
    [InlineData(1, 0.5f)]
    [InlineData(2, 1f)]
    [InlineData(6, 0.5f)]
    [InlineData(10, 0f)]
    [InlineData(12, 0f)]
    public void LinearWarmupThenDecay(int step, float expected) => Assert.Equal(expected, LearningRateSchedule.Linear(1f, step, 2, 10), 6);

    [Fact]
    public void ConstantAfterWarmup()
    {
        Assert.Equal(0.25f, LearningRateSchedule.Constant(1f, 1, 4));
        Assert.Equal(1f, LearningRateSchedule.Constant(1f, 100, 4));
    }
}
