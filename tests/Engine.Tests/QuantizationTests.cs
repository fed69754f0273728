using System.Text.Json.Nodes;
using Engine.Backends.Cpu;
using Engine.IO;
using Engine.Kernels;
using Engine.Models.Bert;
using Engine.Quantization;
using Engine.Reference;
using Engine.Training;

namespace Engine.Tests;

/// <summary>
/// Int8 quantization: the per-row quantizer's error bound, the CPU int8 Linear's two paths, the dp4a kernel on the
/// emulator (the tensor-core kernel runs in the op parity matrix), quantized checkpoints written, read back, refused
/// when malformed, never trained, and all-MiniLM-L6-v2's int8 embeddings against its FP32 ones.
/// </summary>
public sealed class QuantizationTests
{
    [Fact]
    public void QuantizedValuesAreWithinHalfAScaleOfTheOriginals()
    {
        var values = OpCases.Random(7 * 33, 5, 3f);
        Array.Clear(values, 33, 33); // a row of zeros: scale 0, values 0
        values[2 * 33 + 4] = -1e4f; // a row dominated by one outlier
        var (quantized, scales) = Int8Quantizer.QuantizeRows(values, 33);
        var restored = Int8Quantizer.Dequantize(quantized, scales, 33);
        Assert.Equal(0f, scales[1]);
        for (int i = 0; i < values.Length; i++)
        {
            int row = i / 33;
            Assert.InRange((int)quantized[i], -127, 127);
            Assert.True(Math.Abs(values[i] - restored[i]) <= scales[row] * 0.5f * (1 + 1e-5f) + 1e-12f,
                $"element {i}: {values[i]} came back as {restored[i]}; the scale {scales[row]} bounds the error by half of it");
        }
        for (int row = 0; row < 7; row++)
        {
            if (scales[row] == 0) continue;
            // The largest magnitude of a row maps to ±127 exactly.
            Assert.Equal(127, quantized.Skip(row * 33).Take(33).Max(q => Math.Abs((int)q)));
        }
    }

    [Fact]
    public void VnniAndPortableLinearsGiveTheSameOutputs()
    {
        int M = 29, K = 70, N = 45;
        var input = OpCases.Random(M * K, 1);
        var (weight, scales) = Int8Quantizer.QuantizeRows(OpCases.Random(N * K, 2), K);
        var bias = OpCases.Random(N, 3);
        var packed = CpuInt8Gemm.Pack(weight, N, K);
        var shifted = new byte[CpuInt8Gemm.ShiftedLength(M, K)];
        var rowScales = new float[M];
        CpuInt8Gemm.QuantizeRows(input, M, K, shifted, rowScales);
        var outputs = new[] { true, false }.Select(vnni =>
        {
            var output = new float[M * N];
            CpuInt8Gemm.Linear(output, shifted, rowScales, packed, scales, bias, M, Engine.Backends.Activation.Gelu, useVnni: vnni);
            return output;
        }).ToArray();
        Assert.Equal(outputs[0], outputs[1]);
    }

    public static TheoryData<string> EmulatorCases => [.. OpCases.Int8Linear.Where(c => c.EmulatorSeconds <= OpCases.EmulatorBudgetSeconds).Select(c => c.Id)];

    [Theory, MemberData(nameof(EmulatorCases))]
    public void Dp4aKernelOnTheEmulatorEqualsTheReference(string id)
    {
        using var backend = IlgpuBackend.Create(IlgpuDevice.CpuEmulator);
        backend.Int8Product = Int8Kernel.Dp4a;
        var result = OpCases.Find(id).Forward(backend);
        Assert.True(result.Passed, result.ToString());
    }

    [Fact]
    public void AQuantizedCheckpointIsWrittenAsDocumentedAndReadsBackToTheSameOutputs()
    {
        using var temp = new TempDirectory();
        string original = TinyBert.WriteClassifier(temp["classifier"]), quantized = temp["int8"], saved = temp["saved"];
        var result = CheckpointQuantizer.Quantize(original, quantized, new QuantizeOptions(IncludeEmbeddings: true));

        using (var checkpoint = Checkpoint.Open(quantized))
        {
            foreach (string name in new[] { "bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.1.output.dense.weight", "bert.pooler.dense.weight",
                "classifier.weight", "bert.embeddings.word_embeddings.weight" })
            {
                var info = checkpoint.Info(name);
                Assert.Equal(DType.I8, info.DType);
                Assert.Equal([info.Shape[0]], checkpoint.Info(name + Int8Quantizer.ScaleSuffix).Shape);
                Assert.Equal(DType.F32, checkpoint.Info(name + Int8Quantizer.ScaleSuffix).DType);
                Assert.Contains(name, result.Quantized);
            }
            foreach (string name in new[] { "bert.embeddings.position_embeddings.weight", "bert.embeddings.LayerNorm.weight", "bert.encoder.layer.0.output.dense.bias", "classifier.bias" })
                Assert.Equal(DType.F32, checkpoint.Info(name).DType);
        }
        var config = (JsonObject)JsonNode.Parse(File.ReadAllText(Path.Combine(quantized, "config.json")))!;
        Assert.Equal("dynamic-int8", (string?)config["quantization"]!["method"]);
        Assert.True((bool?)config["quantization"]!["embeddings"]);
        Assert.True(File.Exists(Path.Combine(quantized, "vocab.txt")));
        Assert.Throws<EngineException>(() => CheckpointQuantizer.Quantize(quantized, temp["twice"], new QuantizeOptions()));

        var batch = new BertBatch(2, 4, [2, 5, 7, 3, 2, 6, 3, 0], new int[8], [1, 1, 1, 1, 1, 1, 1, 0]);
        float[] logits, fp32;
        using (var model = BertForSequenceClassification.LoadWithHead(quantized, new CpuBackend()))
        {
            Assert.True(model.Arena.IsQuantized);
            logits = model.Logits(batch);
            model.Save(saved);
        }
        using (var model = BertForSequenceClassification.LoadWithHead(saved, new CpuBackend()))
            Assert.Equal(logits, model.Logits(batch)); // saved as int8 again: bit for bit the same model
        using (var model = BertForSequenceClassification.LoadWithHead(original, new CpuBackend()))
            fp32 = model.Logits(batch);
        for (int i = 0; i < logits.Length; i++) Assert.Equal(fp32[i], logits[i], 0.05f);
    }

    public static TheoryData<string> Malformations => ["scales missing", "scales of the wrong shape", "scales on a float tensor", "a negative scale", "int8 without scales"];

    [Theory, MemberData(nameof(Malformations))]
    public void AMalformedQuantizedCheckpointGetsOneClearError(string malformation)
    {
        using var temp = new TempDirectory();
        string original = TinyBert.WriteWithVocabulary(temp["tiny"]), quantized = temp["int8"];
        CheckpointQuantizer.Quantize(original, quantized, new QuantizeOptions());
        const string Weight = "encoder.layer.0.intermediate.dense.weight";
        List<SafeTensorData> tensors;
        using (var file = SafeTensorsFile.Open(Path.Combine(quantized, "model.safetensors")))
            tensors = [.. file.Tensors.Select(t => new SafeTensorData(t.Name, t.DType, t.Shape, file.ReadRaw(t)))];
        var scale = tensors.Single(t => t.Name == Weight + Int8Quantizer.ScaleSuffix);
        string expected;
        switch (malformation)
        {
            case "scales missing":
                tensors.Remove(scale);
                expected = $"'{Weight}' is int8 but its scales '{Weight}_scale' are missing";
                break;
            case "scales of the wrong shape":
                tensors[tensors.IndexOf(scale)] = SafeTensorData.FromFloats(scale.Name, new float[3], 3);
                expected = $"tensor '{Weight}_scale' has shape [3]";
                break;
            case "scales on a float tensor":
                tensors.Add(SafeTensorData.FromFloats("encoder.layer.0.output.dense.bias" + Int8Quantizer.ScaleSuffix, new float[TinyBert.Hidden], TinyBert.Hidden));
                expected = "'encoder.layer.0.output.dense.bias' is F32 but has int8 scales";
                break;
            case "a negative scale":
                var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(scale.Data).ToArray();
                values[1] = -values[1];
                tensors[tensors.IndexOf(scale)] = SafeTensorData.FromFloats(scale.Name, values, scale.Shape);
                expected = $"'{Weight}_scale' holds a negative scale at row 1";
                break;
            default:
                int index = tensors.FindIndex(t => t.Name == "encoder.layer.0.output.LayerNorm.weight");
                tensors[index] = new SafeTensorData(tensors[index].Name, DType.I8, tensors[index].Shape, new byte[TinyBert.Hidden]);
                expected = "'encoder.layer.0.output.LayerNorm.weight' is int8 but its scales";
                break;
        }
        SafeTensorsWriter.Write(Path.Combine(quantized, "model.safetensors"), tensors);
        var error = Assert.Throws<EngineException>(() => BertModel.Load(quantized, new CpuBackend()));
        Assert.Contains(expected, error.Message);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Fact]
    public void AQuantizedModelIsNotTrained()
    {
        using var temp = new TempDirectory();
        CheckpointQuantizer.Quantize(TinyBert.WriteClassifier(temp["classifier"]), temp["int8"], new QuantizeOptions());
        var backend = new CpuBackend();
        using var model = BertForSequenceClassification.LoadWithHead(temp["int8"], backend);
        var error = Assert.Throws<EngineException>(() => new AdamWOptimizer(backend, model.Arena, new AdamWOptions()));
        Assert.Contains("fine-tune the FP32 model, then quantize it", error.Message);
    }

    [Fact]
    public void ExcludedLayersStayFp32AndAPatternMatchingNothingIsRefused()
    {
        using var temp = new TempDirectory();
        string original = TinyBert.WriteWithVocabulary(temp["tiny"]);
        var result = CheckpointQuantizer.Quantize(original, temp["int8"], new QuantizeOptions(Exclude: ["encoder.layer.1.*", "*.attention.self.key"]));
        Assert.Equal(["encoder.layer.0.attention.self.key.weight", "encoder.layer.1.attention.output.dense.weight", "encoder.layer.1.attention.self.key.weight",
            "encoder.layer.1.attention.self.query.weight", "encoder.layer.1.attention.self.value.weight", "encoder.layer.1.intermediate.dense.weight",
            "encoder.layer.1.output.dense.weight"], result.Excluded.Order(StringComparer.Ordinal));
        using (var checkpoint = Checkpoint.Open(temp["int8"]))
        {
            Assert.Equal(DType.F32, checkpoint.Info("encoder.layer.1.output.dense.weight").DType);
            Assert.Equal(DType.I8, checkpoint.Info("encoder.layer.0.output.dense.weight").DType);
            Assert.False(checkpoint.Contains("encoder.layer.1.output.dense.weight_scale"));
        }
        // Layer 0's key stays FP32 while its query and value are int8: the fused QKV product loads as FP32, the others as int8.
        using var model = BertModel.Load(temp["int8"], new CpuBackend());
        Assert.Equal(DType.F32, model.Encoder.Layers[0].Attention.Self.QueryKeyValue.Weight.Type);
        Assert.Equal(DType.I8, model.Encoder.Layers[0].Intermediate.Dense.Weight.Type);
        var error = Assert.Throws<EngineException>(() => CheckpointQuantizer.Quantize(original, temp["none"], new QuantizeOptions(Exclude: ["encoder.layer.9.*"])));
        Assert.Contains("--exclude 'encoder.layer.9.*' matches no Linear weight", error.Message);
        Assert.False(Directory.Exists(temp["none"]));
    }

    [Fact]
    public void AQuantizedTinyBertOnTheEmulatorEqualsTheCpuBackend()
    {
        using var temp = new TempDirectory();
        CheckpointQuantizer.Quantize(TinyBert.WriteWithVocabulary(temp["tiny"]), temp["int8"], new QuantizeOptions(IncludeEmbeddings: true));
        IlgpuModelTests.EmulatorAgreesWithTheCpuBackend(temp["int8"], 1e-4f);
    }

    /// <summary>The accuracy bar on 120 varied sentences (written ones and SpamAssassin lines): cosine to FP32 mean ≥ 0.99, minimum ≥ 0.97.</summary>
    [Fact]
    public void AllMiniLMInt8EmbeddingsStayCloseToFp32AndTheCheckpointShrinks()
    {
        using var temp = new TempDirectory();
        var pretrained = PretrainedModels.MiniLM;
        var result = CheckpointQuantizer.Quantize(pretrained.Directory, temp["int8"], new QuantizeOptions(IncludeEmbeddings: true));
        Assert.True(result.Ratio <= 0.30, $"the int8 checkpoint is {result.Ratio:P1} of the FP32 one");
        var sentences = File.ReadAllLines(Path.Combine(AppContext.BaseDirectory, "Fixtures", "quantization", "sentences.txt"));
        Assert.True(sentences.Length >= 100);
        float[][] Embed(string directory)
        {
            using var embedder = SentenceEmbedder.Load(directory, new CpuBackend());
            return embedder.Embed(sentences);
        }
        var (fp32, int8) = (Embed(pretrained.Directory), Embed(temp["int8"]));
        var cosines = fp32.Zip(int8, (a, b) => SentenceEmbedder.Cosine(a, b)).ToArray();
        Assert.True(cosines.Average() >= 0.99, $"mean cosine {cosines.Average():F4}");
        Assert.True(cosines.Min() >= 0.97, $"minimum cosine {cosines.Min():F4} (sentence {Array.IndexOf(cosines, cosines.Min()) + 1})");
    }
}
