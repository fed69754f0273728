using Engine.Backends.Cpu;
using Engine.Models.Bert;
using Engine.Quantization;
using Engine.Reference;

namespace Engine.Benchmarks;

/// <summary>
/// The accuracy half of the int8 comparison (`dotnet run -c Release --project benchmarks/Engine.Benchmarks -- int8-accuracy`):
/// all-MiniLM-L6-v2 sentence embeddings (mean pooling, normalised) of the tests' 120 sentences from the engine's int8 model
/// against its FP32 model, and from ONNX Runtime's int8 graph (<c>onnx_int8.py</c>) against ONNX Runtime's FP32 graph.
/// </summary>
internal static class Int8Accuracy
{
    public static void Run()
    {
        var pretrained = PretrainedModels.MiniLM;
        string work = Path.Combine(Path.GetTempPath(), "engine-benchmark-int8", Path.GetFileName(Path.GetDirectoryName(pretrained.Directory)!));
        string quantized = Path.Combine(work, "model"), onnxInt8 = Path.Combine(work, "model-int8.onnx");
        if (!File.Exists(Path.Combine(quantized, "config.json")))
            CheckpointQuantizer.Quantize(pretrained.Directory, quantized, new QuantizeOptions(IncludeEmbeddings: true));
        if (!File.Exists(onnxInt8)) QuantizedEncoderBenchmarks.RunScript("onnx_int8.py", pretrained.OnnxPath, onnxInt8);
        string sentencesFile = Path.Combine(QuantizedEncoderBenchmarks.RepositoryRoot, "tests", "Engine.Tests", "Fixtures", "quantization", "sentences.txt");
        var sentences = File.ReadAllLines(sentencesFile);

        using var fp32 = SentenceEmbedder.Load(pretrained.Directory, new CpuBackend());
        using var int8 = SentenceEmbedder.Load(quantized, new CpuBackend());
        Report("engine int8 vs engine FP32", fp32.Embed(sentences), int8.Embed(sentences));

        var encodings = fp32.Tokenize(sentences);
        using var onnxFp32 = new OnnxRuntimeOracle(pretrained.OnnxPath);
        using var onnxInt8Oracle = new OnnxRuntimeOracle(onnxInt8);
        float[][] OnnxEmbeddings(OnnxRuntimeOracle oracle) => [.. encodings.Select(e =>
        {
            var batch = fp32.Tokenizer.Pad([e]);
            var hidden = oracle.LastHiddenState(1, batch.SequenceLength, batch.InputIds, batch.AttentionMask, batch.TokenTypeIds);
            int C = hidden.Length / batch.SequenceLength;
            var pooled = new double[C];
            for (int t = 0; t < batch.SequenceLength; t++)
                for (int c = 0; c < C; c++) pooled[c] += hidden[t * C + c];
            double norm = Math.Sqrt(pooled.Sum(v => v * v));
            return pooled.Select(v => (float)(v / norm)).ToArray();
        })];
        Report("ONNX Runtime int8 vs ONNX Runtime FP32", OnnxEmbeddings(onnxFp32), OnnxEmbeddings(onnxInt8Oracle));
    }

    private static void Report(string what, float[][] reference, float[][] quantized)
    {
        var cosines = reference.Zip(quantized, (a, b) => SentenceEmbedder.Cosine(a, b)).ToArray();
        Console.WriteLine($"{what}: {cosines.Length} sentences, cosine mean {cosines.Average():F4}, min {cosines.Min():F4}");
    }
}
