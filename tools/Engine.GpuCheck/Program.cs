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
// Linear cases in tf32, fp16 and bf16), whole random-weight models at MiniLM and BERT-base shapes on
// CUDA against the CPU backend, kernel timings at BERT-base shapes (the Linears also in tf32, fp16 and bf16), then forward timings at batch 32 × 128.
// Writes engine.json and the models (for PyTorch's side) under --output; exits 1 on any parity failure.
// Usage: Engine.GpuCheck --output DIR [--device cuda|ilgpu-cpu]
string output = Argument("--output") ?? "gpu-results";
string device = Argument("--device") ?? "cuda";
Directory.CreateDirectory(output);
var report = new JsonObject { ["date"] = DateTime.UtcNow.ToString("u"), ["device_option"] = device };

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
    }
    ilgpu.Precision = ComputePrecision.Fp32;
    report["kernels"] = kernels;

    var forwards = new JsonArray();
    foreach (var (shape, suffix) in new[] { BertShape.MiniLM, BertShape.BertBase }.SelectMany(s => new[] { (s, ""), (s, "-int8") }))
    {
        using var model = BertModel.Load(Path.Combine(output, "models", shape.Name + suffix), backend);
        var batch = RandomBert.Batch(32, 128, shape.Vocab);
        Array.Fill(batch.AttentionMask, 1);
        var milliseconds = Measure(() => model.Forward(batch), warmup: 3, runs: 20);
        Console.WriteLine($"  forward {shape.Name}{suffix} 32x128: {milliseconds:F2} ms ({shape.ForwardFlops(32, 128) / milliseconds / 1e9:F1} TFLOP/s, outputs copied to the host)");
        forwards.Add(new JsonObject { ["name"] = shape.Name + suffix, ["batch"] = 32, ["tokens"] = 128, ["median_ms"] = milliseconds });
    }
    report["forward"] = forwards;
}

report["failures"] = failures;
File.WriteAllText(Path.Combine(output, "engine.json"), report.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
Console.WriteLine(failures == 0 ? "engine: all checks passed" : $"engine: {failures} check(s) FAILED");
return failures == 0 ? 0 : 1;

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
