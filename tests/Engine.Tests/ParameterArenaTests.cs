using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.IO;
using Engine.Kernels;
using Engine.Models;
using Engine.Models.Bert;
using Engine.Reference;
using Engine.Training;

namespace Engine.Tests;

/// <summary>
/// The parameter arena: a model's parameters in one allocation with a table of Hugging Face names and shapes; a
/// training step is one norm reduction, one AdamW launch and one clear; activations are reused across batch shapes;
/// a tied weight is one entry whose gradient both uses add to. One subclass per backend.
/// </summary>
public abstract class ParameterArenaTests(Func<ITrainingBackend> createBackend)
{
    private static BertBatch Batch(int B, int T, int seed)
    {
        var random = new Random(seed);
        var mask = new int[B * T];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < (b == 0 ? T : 1 + random.Next(T)); t++) mask[b * T + t] = 1; // ragged, the first row full
        return new BertBatch(B, T, [.. Enumerable.Range(0, B * T).Select(_ => random.Next(TinyBert.Vocab))], new int[B * T], mask);
    }

    /// <summary>What is counted does not depend on the backend: the CPU's run stands for both (the emulator's would take half a minute).</summary>
    [SkippableFact]
    public void ParametersAreOneAllocationAndAStepIsOneReductionOneLaunchOneClear()
    {
        using var temp = new TempDirectory();
        TinyBert.Write(temp.Path);
        var inner = createBackend();
        Skip.IfNot(inner is CpuBackend, "counted on the CPU backend");
        var backend = new CountingBackend(inner);
        using var model = BertForSequenceClassification.Load(temp.Path, backend, numLabels: 3, seed: 1);
        Assert.Equal(new Dictionary<Type, int> { [typeof(float)] = 1 }, backend.AllocationsByType); // every parameter, head included

        // The table holds every checkpoint tensor under its Hugging Face name and shape (Q, K, V apart), and the head.
        var expected = TinyBert.Parameters().Select(p => ("bert." + p.Name, p.Shape)).Append(("classifier.weight", [3, TinyBert.Hidden])).Append(("classifier.bias", [3]));
        Assert.Equal(expected.Select(e => $"{e.Item1} [{string.Join(",", e.Item2)}]").Order(),
            model.Arena.Entries.Select(e => $"{e.Name} [{string.Join(",", e.Shape)}]").Order());
        Assert.Equal(model.Arena.Entries.Sum(e => (long)e.Length), model.Arena.Length);

        using var optimizer = new AdamWOptimizer(backend, model.Arena, new AdamWOptions());
        model.ZeroGradients();
        Assert.Equal(4, backend.AllocationsByType[typeof(float)]); // values, gradients, two moments
        model.ForwardBackward(Batch(4, 9, 1), [0, 1, 2, 1], DropoutSettings.Uniform(0.1f, 7, 0)); // the largest batch of the run
        optimizer.Step(1e-3f);
        model.Logits(Batch(4, 9, 1));
        int allocations = backend.Allocations;
        foreach (var (B, T, step) in new[] { (2, 5, 1), (4, 9, 2), (3, 7, 3), (1, 2, 4) }) // ragged per-batch padding, as fine-tuning pads
        {
            var (launches, reductions, clears) = (backend.AdamWLaunches, backend.NormReductions, backend.Clears);
            model.ZeroGradients();
            model.ForwardBackward(Batch(B, T, step), [.. Enumerable.Range(0, B).Select(i => i % 3)], DropoutSettings.Uniform(0.1f, 7, step));
            optimizer.Step(1e-3f);
            Assert.Equal((launches + 1, reductions + 1, clears + 1), (backend.AdamWLaunches, backend.NormReductions, backend.Clears));
            model.Logits(Batch(B, T, step)); // evaluation between steps shares the arena too
        }
        Assert.Equal(allocations, backend.Allocations); // smaller batches reuse the activations: nothing freed and rebuilt
    }

    [Fact]
    public void ATiedWeightIsOneEntryWhoseGradientBothUsesAddTo()
    {
        const int rows = 3, C = 5;
        using var backend = createBackend();
        var (w, b1, b2) = (OpCases.Random(C * C, 1, 0.5f), OpCases.Random(C, 2), OpCases.Random(C, 3));
        var (x, r) = (OpCases.Random(rows * C, 4), OpCases.Random(rows * C, 5));
        using var arena = new ParameterArena(backend, ModelFamily.Bert.Decays);
        var tied = arena.Add("tied.weight", [C, C], w);
        var first = new Linear(tied, arena.Add("first.bias", [C], b1), C, C);
        var second = new Linear(tied, arena.Add("second.bias", [C], b2), C, C); // y = (x·Wᵀ + b1)·Wᵀ + b2
        arena.Build();
        Assert.Equal(["tied.weight", "first.bias", "second.bias"], arena.Entries.Select(e => e.Name));
        Assert.Equal(C * C + 2 * C, arena.Length); // stored once

        var (input, hidden, output) = (backend.UploadArray(x), backend.Allocate<float>(rows * C), backend.Allocate<float>(rows * C));
        first.Forward(backend, hidden, input, rows);
        second.Forward(backend, output, hidden, rows);
        arena.ZeroGradients(backend);
        var dHidden = backend.Allocate<float>(rows * C);
        second.Backward(backend, dHidden, backend.UploadArray(r), hidden, rows); // loss = Σ y ⊙ r
        first.Backward(backend, null, dHidden, input, rows);

        // Finite differences of the float64 loss in W, which both products use.
        double Loss(double[] weight) => ReferenceOps.Linear(ReferenceOps.Linear(x.AsDoubles(), weight, b1.AsDoubles(), rows, C, C, "none"),
            weight, b2.AsDoubles(), rows, C, C, "none").Zip(r, (y, g) => y * g).Sum();
        var numeric = new double[C * C];
        for (int i = 0; i < numeric.Length; i++)
        {
            var (plus, minus) = (w.AsDoubles(), w.AsDoubles());
            (plus[i], minus[i]) = (plus[i] + 1e-4, minus[i] - 1e-4);
            numeric[i] = (Loss(plus) - Loss(minus)) / 2e-4;
        }
        var check = ParityCheck.Compare("tied-linear", "dW from both uses", numeric, tied.ReadGradient(backend), OpCases.FiniteDifferenceTolerance);
        Assert.True(check.Passed, check.ToString());

        // One AdamW launch steps the tied weight once: by the update of its summed gradient, not twice.
        var gradient = tied.ReadGradient(backend);
        using var optimizer = new AdamWOptimizer(backend, arena, new AdamWOptions { WeightDecay = 0, MaxGradNorm = null });
        optimizer.Step(0.1f);
        var stepped = tied.ReadValue(backend);
        for (int i = 0; i < w.Length; i++)
            Assert.Equal(w[i] - 0.1 * Math.Sign(gradient[i]), stepped[i], 1e-4); // Adam's first step moves each element by lr·sign(g)
    }

    [Fact]
    public void EncodeRunsTheEncoderOncePerBatchWhateverTheHead()
    {
        using var temp = new TempDirectory();
        string directory = TinyBert.WriteClassifier(temp["classifier"]);
        var backend = new CountingBackend(createBackend());
        using var model = BertForSequenceClassification.Load(directory, backend);
        var tokenizer = Engine.Tokenization.BertTokenizer.Load(directory, model.Config);
        var encodings = new[] { "good movie", "bad", "the movies", "a good bad movie", "movie" }.Select(t => tokenizer.Encode(t)).ToList();
        var tensors = Engine.Cli.EncodeInput.Run(model.Bert, tokenizer, encodings, batchSize: 2, new Engine.Cli.LogitsHead(model.Run, model.NumLabels, PerToken: false));
        Assert.Equal(3, backend.EncoderPasses);
        Assert.Contains(tensors, t => t.Name == "logits");
    }
}

public sealed class CpuParameterArenaTests() : ParameterArenaTests(() => new CpuBackend());

public sealed class IlgpuEmulatorParameterArenaTests() : ParameterArenaTests(() => IlgpuBackend.Create(IlgpuDevice.CpuEmulator));

/// <summary>Typed tensors at the op interface: parameters reach the ops with their table's type and shape, and a type without a kernel is refused by operand.</summary>
public sealed class TensorTests
{
    public static TheoryData<string> Backends => ["cpu", "emulator"];

    private static ITrainingBackend Create(string name) => name == "cpu" ? new CpuBackend() : IlgpuBackend.Create(IlgpuDevice.CpuEmulator);

    [Theory, MemberData(nameof(Backends))]
    public void AnOpRefusesATypeItHasNoKernelForNamingTheOperand(string name)
    {
        using var backend = Create(name);
        const int M = 2, K = 3, N = 4;
        // F16 has Linear and embedding kernels, not a matrix-product one.
        var half = Tensor.Halves(backend.Allocate<ushort>(N * K), Engine.IO.DType.F16, N, K);
        var e = Assert.Throws<NotSupportedException>(() => backend.MatMul(backend.Allocate<float>(M * N), backend.Allocate<float>(M * K), half,
            MatMulShape.Contiguous(1, M, K, N, false, true)));
        Assert.Equal("b is a F16 tensor; this op has no F16 kernel (F32 only)", e.Message);
        // Int8 has a Linear kernel, not a layer-norm one.
        var int8Weight = Tensor.Int8(backend.Allocate<sbyte>(K), backend.Allocate<float>(1), 1, K);
        e = Assert.Throws<NotSupportedException>(() => backend.LayerNorm(backend.Allocate<float>(M * K), backend.Allocate<float>(M * K), null, int8Weight, backend.Allocate<float>(K), M, K, 1e-12f));
        Assert.Equal("weight is a I8 tensor; this op has no I8 kernel (F32 only)", e.Message);
    }

    [Fact]
    public void ParametersCarryTheirTablesShapeAndType()
    {
        using var temp = new TempDirectory();
        TinyBert.Write(temp.Path);
        using var model = BertForSequenceClassification.Load(temp.Path, new CpuBackend(), numLabels: 3, seed: 1);
        var qkv = model.Bert.Encoder.Layers[0].Attention.Self.QueryKeyValue;
        Assert.Equal([3L * TinyBert.Hidden, TinyBert.Hidden], qkv.Weight.Tensor.Shape);
        Assert.Equal([3L * TinyBert.Hidden], qkv.Bias!.Tensor.Shape);
        Assert.Equal([3L, TinyBert.Hidden], model.Classifier.Weight.Tensor.Shape);
        Assert.All(model.Arena.Entries, e => Assert.Equal(Engine.IO.DType.F32, e.Type));
        Assert.Throws<ArgumentException>(() => new Tensor(new CpuBackend().Allocate<float>(5), 2, 3)); // a shape larger than its storage
    }

    [Fact]
    public void CheckpointTensorsKeepTheirStoredTypeUntilTheModelConvertsThem()
    {
        using var temp = new TempDirectory();
        var half = TinyBert.Tensors().Select(t => new SafeTensorData(t.Name, DType.F16, t.Shape,
            [.. System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.Data).ToArray().SelectMany(f => BitConverter.GetBytes((Half)f))])).ToList();
        TinyBert.Write(temp.Path, half);
        using (var checkpoint = Checkpoint.Open(temp.Path))
        {
            var stored = checkpoint.Get("pooler.dense.bias", [TinyBert.Hidden]);
            Assert.Equal(DType.F16, stored.Type);
            Assert.Empty(checkpoint.Names.Except(checkpoint.UnusedNames)); // declared, not read
            Assert.Equal(TinyBert.Hidden, stored.ToFloat32().Length);
        }
        using var model = BertForSequenceClassification.Load(temp.Path, new CpuBackend(), numLabels: 2, seed: 1);
        var entry = model.Arena.Find("bert.pooler.dense.bias")!;
        Assert.Equal(DType.F32, entry.Type); // the model decided: float32
        var expected = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(half.Single(t => t.Name == "pooler.dense.bias").Data).ToArray().Select(h => (float)h);
        Assert.Equal(expected, model.Arena.Read(entry));
    }
}
