using System.Diagnostics;
using BenchmarkDotNet.Attributes;
using Engine.Backends.Cpu;
using Engine.Models.Bert;
using Engine.Quantization;
using Engine.Reference;

namespace Engine.Benchmarks;

/// <summary>
/// all-MiniLM-L6-v2 quantized to int8 (Linear weights per output channel, activations per token at run time) on the
/// CPU, in one run with its peers: the engine's FP32 model, and ONNX Runtime on an int8 graph of the same model
/// (the baseline: <c>benchmarks/onnx_int8.py</c>, ONNX Runtime's dynamic-quantization form) and on the original graph.
/// </summary>
[MemoryDiagnoser]
public class QuantizedEncoderBenchmarks
{
    private BertModel _fp32 = null!, _int8 = null!;
    private OnnxRuntimeOracle _onnxRuntime = null!, _onnxRuntimeInt8 = null!;
    private BertBatch _batch = null!;

    [Params("32x128", "1x16")]
    public string Shape { get; set; } = "32x128";

    [GlobalSetup]
    public void Setup()
    {
        var pretrained = PretrainedModels.MiniLM;
        var (B, T) = Dimensions;
        string work = Path.Combine(Path.GetTempPath(), "engine-benchmark-int8", Path.GetFileName(Path.GetDirectoryName(pretrained.Directory)!));
        string quantized = Path.Combine(work, "model"), onnxInt8 = Path.Combine(work, "model-int8.onnx");
        if (!File.Exists(Path.Combine(quantized, "config.json")))
            CheckpointQuantizer.Quantize(pretrained.Directory, quantized, new QuantizeOptions(IncludeEmbeddings: true));
        if (!File.Exists(onnxInt8)) RunScript("onnx_int8.py", pretrained.OnnxPath, onnxInt8);
        _fp32 = BertModel.Load(pretrained.Directory, new CpuBackend());
        _int8 = BertModel.Load(quantized, new CpuBackend());
        _onnxRuntime = new OnnxRuntimeOracle(pretrained.OnnxPath, threads: Environment.ProcessorCount);
        _onnxRuntimeInt8 = new OnnxRuntimeOracle(onnxInt8, threads: Environment.ProcessorCount);
        _batch = EncoderForwardBenchmarks.FullBatch(B, T);
    }

    private (int B, int T) Dimensions => Shape.Split('x') is [var b, var t] ? (int.Parse(b), int.Parse(t)) : throw new ArgumentException(Shape);

    /// <summary>The checkout the benchmark runs from (the folder holding Engine.sln above it).</summary>
    internal static string RepositoryRoot
    {
        get
        {
            string? folder = AppContext.BaseDirectory;
            while (folder is not null && !File.Exists(Path.Combine(folder, "Engine.sln"))) folder = Path.GetDirectoryName(folder);
            return folder ?? throw new InvalidOperationException("Engine.sln not found above the benchmark");
        }
    }

    /// <summary>Runs a script of the benchmarks folder with Debian's python3 (which has the onnx package).</summary>
    internal static void RunScript(string script, params string[] arguments)
    {
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(RepositoryRoot, "benchmarks", script));
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{script} failed (python3-onnx installed?): {error}");
    }

    [Benchmark(Baseline = true, Description = "OnnxRuntime int8 MiniLM")]
    public float[] OnnxRuntimeInt8() => _onnxRuntimeInt8.LastHiddenState(_batch.BatchSize, _batch.SequenceLength, _batch.InputIds, _batch.AttentionMask, _batch.TokenTypeIds);

    [Benchmark(Description = "Engine CPU int8 MiniLM")]
    public float[] EngineInt8() => _int8.Forward(_batch).LastHiddenState;

    [Benchmark(Description = "Engine CPU FP32 MiniLM")]
    public float[] EngineFp32() => _fp32.Forward(_batch).LastHiddenState;

    [Benchmark(Description = "OnnxRuntime FP32 MiniLM")]
    public float[] OnnxRuntimeFp32() => _onnxRuntime.LastHiddenState(_batch.BatchSize, _batch.SequenceLength, _batch.InputIds, _batch.AttentionMask, _batch.TokenTypeIds);

    [GlobalCleanup]
    public void Cleanup()
    {
        _fp32.Dispose();
        _int8.Dispose();
        _onnxRuntime.Dispose();
        _onnxRuntimeInt8.Dispose();
    }
}
