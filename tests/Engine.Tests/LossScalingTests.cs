using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Kernels;
using Engine.Models.Bert;
using Engine.Tokenization;
using Engine.Training;

namespace Engine.Tests;

/// <summary>
/// Dynamic loss scaling (fp16 training): the scaler's rule, the optimizer's skipped step, the trainer's skips, scale and
/// checkpoint, and fp16 fine-tuning on the emulator's tensor-core path tracking fp32 through an injected overflow.
/// </summary>
public sealed class LossScalingTests
{
    [Fact]
    public void TheScaleHalvesOnAnOverflowAndDoublesAfterTheGrowthInterval()
    {
        var scaler = new DynamicLossScaler(new LossScaleOptions { InitialScale = 1024, GrowthInterval = 3 });
        Assert.True(scaler.Update(finite: true));
        Assert.True(scaler.Update(finite: true));
        Assert.Equal(1024, scaler.Scale);
        Assert.True(scaler.Update(finite: true));
        Assert.Equal((2048f, 0), (scaler.Scale, scaler.GoodSteps));
        Assert.True(scaler.Update(finite: true));
        Assert.False(scaler.Update(finite: false));
        Assert.Equal((1024f, 0), (scaler.Scale, scaler.GoodSteps));
        Assert.False(scaler.Update(finite: false));
        Assert.Equal(512, scaler.Scale);

        var top = new DynamicLossScaler(new LossScaleOptions { InitialScale = float.MaxValue, GrowthInterval = 1 });
        top.Update(finite: true);
        Assert.Equal(float.MaxValue, top.Scale); // never grows to infinity
        var bottom = new DynamicLossScaler(new LossScaleOptions { InitialScale = float.Epsilon });
        bottom.Update(finite: false);
        Assert.Equal(float.Epsilon, bottom.Scale); // never shrinks to zero

        Assert.Contains("GrowthFactor = 1", Assert.Throws<EngineException>(() => new DynamicLossScaler(new LossScaleOptions { GrowthFactor = 1 })).Message);
        Assert.Contains("BackoffFactor = 1", Assert.Throws<EngineException>(() => new DynamicLossScaler(new LossScaleOptions { BackoffFactor = 1 })).Message);
        Assert.Contains("InitialScale = ", Assert.Throws<EngineException>(() => new DynamicLossScaler(new LossScaleOptions { InitialScale = float.PositiveInfinity })).Message);
        Assert.Throws<EngineException>(() => new DynamicLossScaler(new LossScaleOptions(), scale: 0));
        Assert.Throws<EngineException>(() => new DynamicLossScaler(new LossScaleOptions { GrowthInterval = 5 }, goodSteps: 5));
    }

    private static readonly BertBatch Batch = new(2, 5, [2, 5, 7, 3, 0, 2, 9, 3, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 1, 1, 1, 0, 0]);
    private static readonly float[] Labels = [2, 0];

    /// <summary>
    /// Gradients computed under a loss scale and divided by it in the step update the weights as unscaled ones do (the scale
    /// is a power of two: exactly); an overflowed loss-scaled step (the overflow injected: fp32 gradients do not overflow at
    /// any scale a float holds) returns its non-finite norm and changes nothing, where an unscaled one stops training.
    /// </summary>
    [Fact]
    public void TheOptimizerUnscalesGradientsAndSkipsAnOverflowedStep()
    {
        using var temp = new TempDirectory();
        string directory = TinyBert.WriteClassifier(temp["classifier"]);
        float[][] Step(float? lossScale)
        {
            using var model = BertForSequenceClassification.Load(directory, new CpuBackend());
            using var optimizer = new AdamWOptimizer(model.Backend, model.Arena, new AdamWOptions());
            model.ZeroGradients();
            model.ForwardBackward(Batch, Labels, DropoutSettings.None, lossScale ?? 1f);
            double norm = optimizer.Step(1e-2f, 1, lossScale);
            Assert.True(double.IsFinite(norm));
            Assert.Equal(1, optimizer.StepCount);
            return [.. model.Parameters.Select(p => p.ReadValue(model.Backend))];
        }
        var (plain, scaled) = (Step(null), Step(1024f));
        for (int i = 0; i < plain.Length; i++) Assert.Equal(plain[i], scaled[i]);

        using var overflowing = BertForSequenceClassification.Load(directory, new CountingBackend(new CpuBackend()) { OverflowingNorms = [1, 2] });
        using var adamW = new AdamWOptimizer(overflowing.Backend, overflowing.Arena, new AdamWOptions());
        var before = overflowing.Parameters.Select(p => p.ReadValue(overflowing.Backend)).ToArray();
        overflowing.ZeroGradients();
        overflowing.ForwardBackward(Batch, Labels, DropoutSettings.None, 1024f);
        Assert.False(double.IsFinite(adamW.Step(1e-2f, 1, 1024f)));
        Assert.Equal(0, adamW.StepCount);
        var after = overflowing.Parameters.Select(p => p.ReadValue(overflowing.Backend)).ToArray();
        for (int i = 0; i < before.Length; i++) Assert.Equal(before[i], after[i]);
        Assert.Contains("step 1: the gradient norm is", Assert.Throws<EngineException>(() => adamW.Step(1e-2f)).Message);
    }

    /// <summary>
    /// Every head's loss gradient carries the loss scale: with a power-of-two scale every parameter's gradient is exactly the
    /// scale times the unscaled one (the classifier; the masked-LM fixtures, sentence-order and next-sentence heads
    /// included), and the loss returned is the unscaled loss.
    /// </summary>
    [Fact]
    public void EveryHeadsGradientsCarryTheLossScaleExactly()
    {
        const float Scale = 4096;
        void AssertScaled(Engine.Models.ITaskModel model, BertBatch batch, float[] targets, string what)
        {
            float[] Gradients()
            {
                var values = new float[model.Arena.Length];
                model.Backend.Download(model.Arena.Gradients!, values);
                return values;
            }
            model.Arena.ZeroGradients(model.Backend);
            double loss = model.ForwardBackward(batch, targets, DropoutSettings.None);
            var plain = Gradients();
            model.Arena.ZeroGradients(model.Backend);
            Assert.Equal(loss, model.ForwardBackward(batch, targets, DropoutSettings.None, Scale));
            var scaled = Gradients();
            Assert.Contains(plain, v => v != 0);
            int wrong = Enumerable.Range(0, plain.Length).FirstOrDefault(i => plain[i] * Scale != scaled[i], -1);
            Assert.True(wrong < 0, $"{what}: {model.Arena.Entries.LastOrDefault(e => e.Offset <= wrong)?.Name} differs: {plain[Math.Max(wrong, 0)]} · {Scale} against {scaled[Math.Max(wrong, 0)]}");
        }
        using var temp = new TempDirectory();
        using (var classifier = BertForSequenceClassification.Load(TinyBert.WriteClassifier(temp["classifier"]), new CpuBackend()))
            AssertScaled(classifier, Batch, Labels, "classifier");
        foreach (string name in MaskedLMParityTests.Index["masked_lm"]!.AsArray().Select(f => (string)f!["name"]!))
        {
            var (batch, targets) = MaskedLMParityTests.Inputs(name);
            using var model = BertForMaskedLM.Load(Path.Combine(MaskedLMParityTests.Root, name, "model"), new CpuBackend());
            AssertScaled(model, batch, targets, name);
        }
    }

    private static List<LabelledExample> Examples(int count)
    {
        var random = new Random(3);
        return [.. Enumerable.Range(0, count).Select(i =>
        {
            int[] ids = [2, .. Enumerable.Range(0, 3 + i % 3).Select(_ => random.Next(4, TinyBert.Vocab)), 3];
            return new LabelledExample(new Encoding(ids, new int[ids.Length], [.. ids.Select(_ => 1)]), i % 3);
        })];
    }

    /// <summary>
    /// fp16 fine-tuning on the emulator (the tensor-core kernel's software path, forward and backward, operands rounded to
    /// fp16) with an injected overflow: a first loss scale of 2¹⁸ makes the classifier's scaled logit gradients (up to
    /// 2¹⁸/3) overflow fp16 (above 65,504), so the first step is skipped, halving the scale each time, with the weights untouched
    /// (each skipped step's loss is the first one's, bit for bit); the steps that follow track fp32 on the CPU backend
    /// step for step (AdamW's bias correction counting updates, not skips), within fp16's rounding.
    /// </summary>
    [Fact]
    public void Fp16FineTuningOnTheEmulatorSkipsOverflowsAndTracksFp32()
    {
        using var temp = new TempDirectory();
        string directory = TinyBert.WriteClassifier(temp["classifier"]);
        var examples = Examples(2);
        List<StepEvent> Train(ITrainingBackend backend, int steps, LossScaleOptions? scaling)
        {
            using var model = BertForSequenceClassification.Load(directory, backend);
            var events = new List<StepEvent>();
            var options = new TrainingOptions { MaxSteps = steps, Epochs = 100, BatchSize = 2, LearningRate = 1e-2f, Schedule = Schedule.Constant, Dropout = 0, Shuffle = false, LossScaling = scaling };
            new Trainer(model, options).Train(examples, null, e => { if (e is StepEvent s) events.Add(s); });
            return events;
        }
        var fp32 = Train(new CpuBackend(), 3, null);
        var emulator = IlgpuBackend.Create(IlgpuDevice.CpuEmulator);
        emulator.Precision = ComputePrecision.Fp16;
        const float Injected = 1 << 18;
        var fp16 = Train(emulator, 4, new LossScaleOptions { InitialScale = Injected });

        int skipped = fp16.TakeWhile(s => s.Skipped).Count();
        Assert.InRange(skipped, 1, fp16.Count - 3);
        for (int i = 0; i < fp16.Count; i++)
            Assert.Equal(i <= skipped ? Injected / (1 << i) : Injected / (1 << skipped), fp16[i].LossScale);
        Assert.All(fp16.Take(skipped), s => Assert.False(double.IsFinite(s.GradientNorm)));
        Assert.All(fp16.Skip(skipped), s => Assert.False(s.Skipped));
        Assert.All(fp16.Take(skipped + 1), s => Assert.Equal(fp16[0].Loss, s.Loss));
        for (int step = 0; step < fp32.Count; step++)
        {
            double expected = fp32[step].Loss, actual = fp16[skipped + step].Loss;
            Assert.True(Math.Abs(actual - expected) <= 5e-4 * Math.Max(1, Math.Abs(expected)), $"update {step + 1}: {actual} against fp32's {expected}");
        }
        Assert.True(fp16[^1].Loss < fp16[0].Loss, "the loss did not fall");
    }

    /// <summary>
    /// Loss scaling works on any backend: a run whose first step overflows (injected) resumes from its checkpoint to the
    /// same weights as straight through, the checkpoint keeping the steps taken, the optimizer's updates, the scale and
    /// its good steps.
    /// </summary>
    [Fact]
    public void ALossScaledRunResumesWithItsScaleAndSkippedSteps()
    {
        using var temp = new TempDirectory();
        TinyBert.Write(temp["base"]);
        var examples = Examples(12);
        var options = new TrainingOptions { Epochs = 3, BatchSize = 4, LearningRate = 1e-2f, Dropout = 0.2f, Seed = 11,
            LossScaling = new LossScaleOptions { InitialScale = 1024, GrowthInterval = 4 } };
        float[][] Weights(BertForSequenceClassification m) => [.. m.Parameters.Select(p => p.ReadValue(m.Backend))];
        var events = new List<StepEvent>();
        float[][] straight;
        using (var model = BertForSequenceClassification.Load(temp["base"], new CountingBackend(new CpuBackend()) { OverflowingNorms = [1] }, seed: 1, labelNames: ["a", "b", "c"]))
        {
            new Trainer(model, options).Train(examples, null, e =>
            {
                if (e is StepEvent s) events.Add(s);
                if (e is CheckpointEvent { Epoch: 1 }) CopyDirectory(temp["run/last"], temp["after-epoch-1"]);
            }, temp["run"], temp["base"]);
            straight = Weights(model);
        }
        // One skip, then the scale doubles after every 4 good steps.
        Assert.Equal([true, false, false, false, false, false, false, false, false], events.Select(s => s.Skipped));
        Assert.Equal([1024f, 512, 512, 512, 512, 1024, 1024, 1024, 1024], events.Select(s => s.LossScale!.Value));
        var state = TrainerState.Read(Path.Combine(temp["after-epoch-1"], Trainer.StateFile));
        Assert.Equal((3, 2, 512f, 2), (state.Steps, state.OptimizerSteps, state.LossScale, state.GoodSteps));

        using var resumed = BertForSequenceClassification.Load(temp["after-epoch-1"], new CpuBackend());
        new Trainer(resumed, options).Train(examples, null, _ => { }, temp["resumed-run"], temp["base"], resumeFrom: temp["after-epoch-1"]);
        var after = Weights(resumed);
        for (int i = 0; i < straight.Length; i++) Assert.Equal(straight[i], after[i]);
    }

    [Fact]
    public void TheTrainerStateKeepsTheScaleAndRefusesABadOne()
    {
        using var temp = new TempDirectory();
        string path = temp["trainer_state.json"];
        new TrainerState(2, 5, null, 0, 0, 7, 2048f, 3).Write(path);
        Assert.Equal(new TrainerState(2, 5, null, 0, 0, 7, 2048f, 3), TrainerState.Read(path));
        // A state from before loss scaling: every step was an update.
        File.WriteAllText(path, """{"epoch":1,"optimizer_steps":4,"best":null,"epochs_without_improvement":0}""");
        var old = TrainerState.Read(path);
        Assert.Equal((4, null, 0), (old.Steps, old.LossScale, old.GoodSteps));
        foreach (var (json, message) in new[]
        {
            ("""{"epoch":1,"optimizer_steps":4,"steps":3,"best":null,"epochs_without_improvement":0}""", "'steps' (3) must be at least 'optimizer_steps' (4)"),
            ("""{"epoch":1,"optimizer_steps":4,"loss_scale":0,"best":null,"epochs_without_improvement":0}""", "'loss_scale' must be a finite number above 0, or null"),
            ("""{"epoch":1,"optimizer_steps":4,"loss_scale":"big","best":null,"epochs_without_improvement":0}""", "'loss_scale' must be a finite number above 0, or null"),
            ("""{"epoch":1,"optimizer_steps":4,"good_steps":-1,"best":null,"epochs_without_improvement":0}""", "'good_steps' must be a whole number ≥ 0"),
        })
        {
            File.WriteAllText(path, json);
            Assert.Equal($"{path}: {message}", Assert.Throws<EngineException>(() => TrainerState.Read(path)).Message);
        }
    }

    private static void CopyDirectory(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)), overwrite: true);
    }
}
