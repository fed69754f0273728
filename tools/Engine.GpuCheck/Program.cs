using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.IO;
using Engine.Kernels;
using Engine.Models.Bert;
using Engine.Quantization;
using Engine.Reference;

// The engine's half of the GPU script (tools/gpu/run.sh), in order: the CUDA parity suite (the whole op
// catalogue, forward and backward, against the float64 reference; the int8 cases with dp4a too; the reduced-precision
// Linear cases in tf32, fp16 and bf16, with fp32 or kept F16/BF16 weights; flash attention in fp16 and bf16), whole
// random-weight models at MiniLM and BERT-base shapes on CUDA against the CPU backend (fp32, int8, stored in F16 and run in
// fp16, and with tf32, fp16 and bf16 Linears), kernel timings at BERT-base shapes (the Linears also in tf32, fp16 and bf16,
// and a 4096³ product in each precision), then forward (the F16-stored models too) and training-step timings at batch
// 32 × 128 in each precision.
// Writes engine.json and the models (for PyTorch's side) under --output; exits 1 on any parity failure.
// Usage: Engine.GpuCheck --output DIR [--device cuda|ilgpu-cpu]
string output = Argument("--output") ?? "gpu-results";
string device = Argument("--device") ?? "cuda";
Directory.CreateDirectory(output);
var report = new JsonObject { ["date"] = DateTime.UtcNow.ToString("u"), ["device_option"] = device };
ComputePrecision[] AllPrecisions = [ComputePrecision.Fp32, ComputePrecision.Tf32, ComputePrecision.Fp16, ComputePrecision.Bf16];

if (device == "cuda" && !IlgpuBackend.CudaAvailable())
{
    Console.WriteLine("no CUDA device found: the CUDA parity suite, model checks and timings are skipped");
    report["cuda"] = false;
    File.WriteAllText(Path.Combine(output, "engine.json"), report.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    return 0;
}
using var backend = IlgpuBackend.Create(device == "cuda" ? IlgpuDevice.Cuda : IlgpuDevice.CpuEmulator);
bool emulated = device != "cuda";
report["cuda"] = !emulated;
report["device"] = backend.Description;
Console.WriteLine($"device: {backend.Description}");

// 1. Parity of every op case, forward and backward (the emulator runs the cases within its budget).
int failures = 0;
var parity = new JsonArray();
void Record(ParityResult result)
{
    if (!result.Passed) failures++;
    Console.WriteLine((result.Passed ? "  " : "! ") + result);
    parity.Add(new JsonObject { ["op"] = result.Op, ["case"] = result.Case, ["max_abs_error"] = result.MaxError, ["passed"] = result.Passed });
}
double budget = emulated ? OpCases.EmulatorBudgetSeconds : double.MaxValue;
foreach (var c in OpCases.All)
{
    if (c.HasForward && c.EmulatorSeconds <= budget) Record(c.Forward(backend));
    if (c.HasBackward && c.EmulatorBackwardSeconds <= budget) Record(c.Backward(backend));
}
// The int8 cases again with the dp4a kernel (the default on sm_80 and later is the tensor-core one).
var ilgpu = backend;
ilgpu.Int8Product = Int8Kernel.Dp4a;
foreach (var c in OpCases.Int8Linear.Where(c => c.EmulatorSeconds <= budget))
{
    var result = c.Forward(backend);
    Record(result with { Case = result.Case + " (dp4a)" });
}
ilgpu.Int8Product = Int8Kernel.TensorCores;
// The reduced-precision Linear (tf32, fp16 and bf16 on tensor cores), forward and backward, each case with the backend set to its format.
foreach (var c in OpCases.ReducedPrecisionLinear)
{
    ilgpu.Precision = c.Precision;
    if (c.EmulatorSeconds <= budget) Record(c.Forward(backend));
    if (c.EmulatorBackwardSeconds <= budget) Record(c.Backward(backend));
}
// Linears with F16 and BF16 weights (a checkpoint's, kept as stored) in each reduced precision: read as they are, or widened.
foreach (var c in OpCases.HalfWeightReducedLinear.Where(c => c.EmulatorSeconds <= budget))
{
    ilgpu.Precision = c.Precision;
    Record(c.Forward(backend));
}
// Flash attention (fp16, bf16 on tensor cores), forward and backward, each case with the backend set to its format.
foreach (var c in OpCases.ReducedPrecisionAttention.Where(c => c.EmulatorSeconds <= budget))
{
    ilgpu.Precision = c.Precision;
    Record(c.Forward(backend));
    if (c.EmulatorBackwardSeconds <= budget) Record(c.Backward(backend));
}
ilgpu.Precision = ComputePrecision.Fp32;
report["parity"] = parity;
Console.WriteLine($"parity: {parity.Count - failures} of {parity.Count} cases passed");

// 2. Whole models: CUDA against the CPU backend on the same random weights and a ragged batch.
var models = new JsonArray();
foreach (var shape in emulated ? [] : new[] { BertShape.MiniLM, BertShape.BertBase })
{
    string directory = RandomBert.Write(Path.Combine(output, "models", shape.Name), shape);
    var batch = RandomBert.Batch(4, 96, shape.Vocab);
    using var cpuModel = BertModel.Load(directory, new CpuBackend());
    using var gpuModel = BertModel.Load(directory, backend);
    var expected = cpuModel.Forward(batch);
    var actual = gpuModel.Forward(batch);
    double worst = MaxDifferenceOnRealTokens(expected, actual, batch);
    bool passed = worst <= 1e-4;
    if (!passed) failures++;
    Console.WriteLine($"{(passed ? "  " : "! ")}model {shape.Name}: CUDA vs CPU backend, max |Δ| on real tokens {worst:E2}");
    SafeTensorsWriter.Write(Path.Combine(directory, "engine_outputs.safetensors"),
    [
        SafeTensorData.FromInt64("input_ids", [.. batch.InputIds.Select(v => (long)v)], batch.BatchSize, batch.SequenceLength),
        SafeTensorData.FromInt64("attention_mask", [.. batch.AttentionMask.Select(v => (long)v)], batch.BatchSize, batch.SequenceLength),
        SafeTensorData.FromFloats("last_hidden_state", actual.LastHiddenState, batch.BatchSize, batch.SequenceLength, shape.Hidden),
    ]);
    models.Add(new JsonObject { ["name"] = shape.Name, ["directory"] = Path.GetFullPath(directory), ["max_abs_error_vs_cpu"] = worst, ["passed"] = passed });

    // The same model quantized to int8: CUDA's int8 kernels against the CPU backend's (the integer products are exact on
    // both; rounding ties of the activations' quantization and float accumulation order may differ).
    string quantized = directory + "-int8";
    if (!Directory.Exists(quantized)) CheckpointQuantizer.Quantize(directory, quantized, new QuantizeOptions(IncludeEmbeddings: true));
    using var cpuInt8 = BertModel.Load(quantized, new CpuBackend());
    using var gpuInt8 = BertModel.Load(quantized, backend);
    var (expectedInt8, actualInt8) = (cpuInt8.Forward(batch), gpuInt8.Forward(batch));
    double worstInt8 = MaxDifferenceOnRealTokens(expectedInt8, actualInt8, batch);
    bool passedInt8 = worstInt8 <= 1e-3;
    if (!passedInt8) failures++;
    Console.WriteLine($"{(passedInt8 ? "  " : "! ")}model {shape.Name} int8: CUDA vs CPU backend, max |Δ| on real tokens {worstInt8:E2}");
    models.Add(new JsonObject { ["name"] = shape.Name + "-int8", ["directory"] = Path.GetFullPath(quantized), ["max_abs_error_vs_cpu"] = worstInt8, ["passed"] = passedInt8 });

    // The same model stored in F16 (its Linears and word table kept so): fp16 on CUDA, the weights read as stored, against
    // the CPU backend running the same F16 checkpoint (in fp32).
    string half = directory + "-f16";
    if (!Directory.Exists(half)) HalfValues.ConvertCheckpoint(directory, half, DType.F16);
    using (var cpuHalf = BertModel.Load(half, new CpuBackend()))
    {
        ilgpu.Precision = ComputePrecision.Fp16;
        using var gpuHalf = BertModel.Load(half, backend);
        var (expectedHalf, actualHalf) = (cpuHalf.Forward(batch), gpuHalf.Forward(batch));
        ilgpu.Precision = ComputePrecision.Fp32;
        double cosineHalf = MinCosineOnRealTokens(expectedHalf, actualHalf, batch);
        bool passedHalf = cosineHalf >= 0.999;
        if (!passedHalf) failures++;
        Console.WriteLine($"{(passedHalf ? "  " : "! ")}model {shape.Name}-f16 (fp16): CUDA vs CPU backend, least token cosine {cosineHalf:F6} (floor 0.999)");
        models.Add(new JsonObject { ["name"] = shape.Name + "-f16 (fp16)", ["min_token_cosine_vs_cpu"] = cosineHalf, ["passed"] = passedHalf });
    }

    // With reduced-precision Linears: within the format's rounding of the fp32 CPU backend, judged by the cosine of each real
    // token's hidden state (a max |Δ| over 96 × 384 or 768 values grows with depth and width; the cosine does not).
    foreach (var (precision, cosineFloor) in new[] { (ComputePrecision.Tf32, 0.999), (ComputePrecision.Fp16, 0.999), (ComputePrecision.Bf16, 0.99) })
    {
        ilgpu.Precision = precision;
        using var reduced = BertModel.Load(directory, backend);
        var reducedOutput = reduced.Forward(batch);
        ilgpu.Precision = ComputePrecision.Fp32;
        double worstReduced = MaxDifferenceOnRealTokens(expected, reducedOutput, batch), cosine = MinCosineOnRealTokens(expected, reducedOutput, batch);
        bool passedReduced = cosine >= cosineFloor;
        if (!passedReduced) failures++;
        string format = precision.ToString().ToLowerInvariant();
        Console.WriteLine($"{(passedReduced ? "  " : "! ")}model {shape.Name} {format}: CUDA vs CPU backend (fp32), least token cosine {cosine:F6} (floor {cosineFloor}), max |Δ| {worstReduced:E2}");
        models.Add(new JsonObject { ["name"] = $"{shape.Name} ({format})", ["max_abs_error_vs_cpu"] = worstReduced, ["min_token_cosine_vs_cpu"] = cosine, ["passed"] = passedReduced });
    }
}
report["models"] = models;

// 3. Kernel timings at BERT-base shapes; 4. forward timings.
if (!emulated)
{
    var kernels = new JsonArray();
    foreach (var c in OpCases.BertBase.All) Time(kernels, c.Id, c.Flops, c.Prepare(backend));
    ilgpu.Int8Product = Int8Kernel.Dp4a;
    foreach (var c in OpCases.BertBase.Int8Linear) Time(kernels, c.Id + " (dp4a)", c.Flops, c.Prepare(backend));
    ilgpu.Int8Product = Int8Kernel.TensorCores;
    foreach (var precision in new[] { ComputePrecision.Tf32, ComputePrecision.Fp16, ComputePrecision.Bf16 })
    {
        ilgpu.Precision = precision;
        foreach (var c in OpCases.BertBase.Linear) Time(kernels, $"{c.Id} ({precision.ToString().ToLowerInvariant()}, tensor cores)", c.Flops, c.Prepare(backend));
        if (precision != ComputePrecision.Tf32)
            Time(kernels, $"{OpCases.BertBase.Attention.Id} ({Name(precision)}, flash)", OpCases.BertBase.Attention.Flops, OpCases.BertBase.Attention.Prepare(backend));
    }
    ilgpu.Precision = ComputePrecision.Fp32;
    // One 4096³ product per precision (PyTorch's side times torch.matmul at the same size and dtype).
    {
        const int Size = 4096;
        var random = new Random(7);
        float[] Values() => [.. Enumerable.Range(0, Size * Size).Select(_ => (float)random.NextDouble() - 0.5f)];
        using var x = backend.UploadArray(Values());
        using var w = backend.UploadArray(Values());
        using var product = backend.Allocate<float>(Size * Size);
        foreach (var precision in AllPrecisions)
        {
            ilgpu.Precision = precision;
            Time(kernels, $"gemm-4096 ({Name(precision)})", 2.0 * Size * Size * Size, () => backend.Linear(product, x, w, null, Size, Size, Size, Activation.None));
        }
        ilgpu.Precision = ComputePrecision.Fp32;
    }
    report["kernels"] = kernels;

    var forwards = new JsonArray();
    var runs = new[] { BertShape.MiniLM, BertShape.BertBase }.SelectMany(s => AllPrecisions.Select(p => (s, "", p))
        .Append((s, "-int8", ComputePrecision.Fp32)).Append((s, "-f16", ComputePrecision.Fp16)));
    foreach (var (shape, suffix, precision) in runs)
    {
        ilgpu.Precision = precision;
        using var model = BertModel.Load(Path.Combine(output, "models", shape.Name + suffix), backend);
        var batch = RandomBert.Batch(32, 128, shape.Vocab);
        Array.Fill(batch.AttentionMask, 1);
        var milliseconds = Measure(() => model.Forward(batch), warmup: 3, runs: 20);
        string name = shape.Name + suffix + (precision == ComputePrecision.Fp32 ? "" : $" ({Name(precision)})");
        Console.WriteLine($"  forward {name} 32x128: {milliseconds:F2} ms ({shape.ForwardFlops(32, 128) / milliseconds / 1e9:F1} TFLOP/s, outputs copied to the host)");
        forwards.Add(new JsonObject { ["name"] = name, ["precision"] = Name(precision), ["batch"] = 32, ["tokens"] = 128, ["median_ms"] = milliseconds });
    }
    ilgpu.Precision = ComputePrecision.Fp32;
    report["forward"] = forwards;

    // 5. A fine-tuning step (forward, loss, backward, AdamW) of a two-class classifier on each model at 32 × 128, per
    // precision; fp16 with a loss scale, as PyTorch's autocast with GradScaler (its side trains the same head size).
    var steps = new JsonArray();
    foreach (var shape in new[] { BertShape.MiniLM, BertShape.BertBase })
        foreach (var precision in AllPrecisions)
        {
            ilgpu.Precision = precision;
            using var classifier = BertForSequenceClassification.Load(Path.Combine(output, "models", shape.Name), backend, numLabels: 2, seed: 1);
            using var optimizer = new Engine.Training.AdamWOptimizer(backend, classifier.Arena, new Engine.Training.AdamWOptions());
            var batch = RandomBert.Batch(32, 128, shape.Vocab);
            Array.Fill(batch.AttentionMask, 1);
            float[] labels = [.. Enumerable.Range(0, 32).Select(i => (float)(i % 2))];
            float? lossScale = precision == ComputePrecision.Fp16 ? 1024f : null;
            var dropout = DropoutSettings.FromConfig(classifier.Config, null, 1, 0);
            var milliseconds = Measure(() =>
            {
                classifier.ZeroGradients();
                classifier.ForwardBackward(batch, labels, dropout, lossScale ?? 1f);
                optimizer.Step(1e-5f, 1, lossScale);
                backend.Synchronize();
            }, warmup: 2, runs: 10);
            string name = shape.Name + (precision == ComputePrecision.Fp32 ? "" : $" ({Name(precision)})");
            Console.WriteLine($"  training step {name} 32x128: {milliseconds:F2} ms");
            steps.Add(new JsonObject { ["name"] = name, ["model"] = shape.Name, ["precision"] = Name(precision), ["batch"] = 32, ["tokens"] = 128, ["median_ms"] = milliseconds });
        }
    ilgpu.Precision = ComputePrecision.Fp32;
    report["training_step"] = steps;
}

report["failures"] = failures;
File.WriteAllText(Path.Combine(output, "engine.json"), report.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
Console.WriteLine(failures == 0 ? "engine: all checks passed" : $"engine: {failures} check(s) FAILED");
return failures == 0 ? 0 : 1;

// The least cosine between the two hidden states of a real token.
static double MinCosineOnRealTokens(BertModelOutput expected, BertModelOutput actual, BertBatch batch)
{
    double least = 1;
    int C = expected.HiddenSize;
    for (int i = 0; i < batch.BatchSize * batch.SequenceLength; i++)
        if (batch.AttentionMask[i] != 0)
            least = Math.Min(least, Engine.SentenceEmbedder.Cosine(expected.LastHiddenState.AsSpan(i * C, C).ToArray(), actual.LastHiddenState.AsSpan(i * C, C).ToArray()));
    return least;
}

static string Name(ComputePrecision precision) => precision.ToString().ToLowerInvariant();

// The largest |Δ| of the last hidden states over the tokens the mask keeps.
static double MaxDifferenceOnRealTokens(BertModelOutput expected, BertModelOutput actual, BertBatch batch)
{
    double worst = 0;
    for (int i = 0; i < batch.BatchSize * batch.SequenceLength; i++)
        if (batch.AttentionMask[i] != 0)
            for (int c = 0; c < expected.HiddenSize; c++)
                worst = Math.Max(worst, Math.Abs(expected.LastHiddenState[i * expected.HiddenSize + c] - actual.LastHiddenState[i * expected.HiddenSize + c]));
    return worst;
}

void Time(JsonArray results, string name, double flops, Action launch)
{
    double milliseconds = Measure(() => { launch(); backend.Synchronize(); }, warmup: 3, runs: 50);
    string rate = flops > 0 ? $", {flops / milliseconds / 1e9:F1} TFLOP/s" : "";
    Console.WriteLine($"  kernel {name}: {milliseconds:F3} ms{rate}");
    results.Add(new JsonObject { ["name"] = name, ["median_ms"] = milliseconds, ["flops"] = flops });
}

static double Measure(Action action, int warmup, int runs)
{
    for (int i = 0; i < warmup; i++) action();
    var times = new double[runs];
    for (int i = 0; i < runs; i++)
    {
        long start = Stopwatch.GetTimestamp();
        action();
        times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }
    Array.Sort(times);
    return times[runs / 2];
}

string? Argument(string name)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}
