using System.Text.Json;
using Engine.IO;
using Engine.Reference;

namespace Engine.Tests;

/// <summary>The <c>engine</c> verbs, run in-process on the real imported MiniLM.</summary>
[Collection("console")]
public sealed class CliTests
{
    private static (int Code, string Out, string Error) Run(params string[] args) => CliRunner.Run(args);

    private static string MiniLM => PretrainedModels.MiniLM.Directory;

    [Fact]
    public void SimilarityPrintsThePublishedValue()
    {
        var (code, output, _) = Run("similarity", "A man is eating food.", "A man is eating a piece of bread.", "--model", MiniLM);
        Assert.Equal(0, code);
        Assert.StartsWith("0.7553\t", output);
    }

    [Fact]
    public void EncodeWritesTheValidationTensors()
    {
        using var temp = new TempDirectory();
        File.WriteAllLines(temp["in.txt"], ["A man is eating food.", "Hi", "{\"input_ids\": [101, 7592, 102], \"attention_mask\": [1, 1, 1]}"]);
        var (code, _, error) = Run("encode", "--input", temp["in.txt"], "--output", temp["out.safetensors"], "--model", MiniLM, "--batch-size", "2");
        Assert.True(code == 0, error);
        using var file = SafeTensorsFile.Open(temp["out.safetensors"]);
        Assert.True(file.TryGet("input_ids", out var ids));
        Assert.Equal(DType.I64, ids.DType);
        Assert.Equal([3L, 8], ids.Shape);
        Assert.True(file.TryGet("attention_mask", out var mask));
        Assert.Equal([3L, 8], mask.Shape);
        Assert.True(file.TryGet("last_hidden_state", out var hidden));
        Assert.Equal([3L, 8, 384], hidden.Shape);
        Assert.True(file.TryGet("pooler_output", out var pooled));
        Assert.Equal([3L, 384], pooled.Shape);
        var idValues = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(file.ReadRaw(ids)).ToArray();
        Assert.Equal([101L, 7592, 102, 0, 0, 0, 0, 0], idValues[16..]);
        // Row 2 was given pre-tokenized: "hello" alone, the same ids the tokenizer gives for "Hello".
        var values = file.ReadFloat32(hidden);
        var alone = Run("encode", "--input", WriteLine(temp["hello.txt"], "Hello"), "--output", temp["hello.safetensors"], "--model", MiniLM);
        Assert.Equal(0, alone.Code);
        using var helloFile = SafeTensorsFile.Open(temp["hello.safetensors"]);
        helloFile.TryGet("last_hidden_state", out var helloHidden);
        var hello = helloFile.ReadFloat32(helloHidden);
        for (int i = 0; i < 3 * 384; i++) Assert.Equal(hello[i], values[2 * 8 * 384 + i], 1e-5f);
    }

    /// <summary>
    /// --output-attentions writes each layer's (N, heads, T, T) maps: an input from a shorter batch fills the start of its
    /// rows (zeros past its length), equal to the library's maps of that input alone; rows sum to 1. Without the flag none.
    /// </summary>
    [Fact]
    public void EncodeWritesAttentionMapsWhenAsked()
    {
        using var temp = new TempDirectory();
        File.WriteAllLines(temp["in.txt"], ["A man is eating food.", "Hello"]);
        var (code, _, error) = Run("encode", "--input", temp["in.txt"], "--output", temp["maps.safetensors"], "--model", MiniLM, "--batch-size", "1", "--output-attentions");
        Assert.True(code == 0, error);
        using var file = SafeTensorsFile.Open(temp["maps.safetensors"]);
        const int NH = 12, T = 8;
        using var model = Engine.Models.Bert.BertModel.Load(MiniLM, new Engine.Backends.Cpu.CpuBackend());
        var hello = model.Forward(new Engine.Models.Bert.BertBatch(1, 3, [101, 7592, 102], new int[3], [1, 1, 1]), outputAttentions: true);
        for (int layer = 0; layer < 6; layer++)
        {
            Assert.True(file.TryGet($"attentions.{layer}", out var info));
            Assert.Equal([2L, NH, T, T], info.Shape);
            var maps = file.ReadFloat32(info);
            for (int h = 0; h < NH; h++)
            {
                for (int i = 0; i < T; i++)
                {
                    var row = maps.AsSpan(((0 * NH + h) * T + i) * T, T).ToArray();
                    Assert.Equal(1.0, row.Sum(v => (double)v), 1e-5);
                    var helloRow = maps.AsSpan(((1 * NH + h) * T + i) * T, T).ToArray();
                    if (i >= 3) Assert.All(helloRow, v => Assert.Equal(0f, v));
                    else Assert.Equal([.. hello.Attentions![layer].AsSpan((h * 3 + i) * 3, 3).ToArray(), 0f, 0f, 0f, 0f, 0f], helloRow);
                }
            }
        }
        Assert.False(file.TryGet("attentions.6", out _));
        Assert.Equal(0, Run("encode", "--input", temp["in.txt"], "--output", temp["plain.safetensors"], "--model", MiniLM).Code);
        using var plain = SafeTensorsFile.Open(temp["plain.safetensors"]);
        Assert.False(plain.TryGet("attentions.0", out _));
    }

    [Fact]
    public void EmbedPrintsOneNormalisedArrayPerText()
    {
        var (code, output, _) = Run("embed", "first text", "second", "--model", MiniLM);
        Assert.Equal(0, code);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        var vector = JsonSerializer.Deserialize<float[]>(lines[0])!;
        Assert.Equal(384, vector.Length);
        Assert.Equal(1.0, Math.Sqrt(vector.Sum(v => (double)v * v)), 5);
        var raw = JsonSerializer.Deserialize<float[]>(Run("embed", "first text", "--model", MiniLM, "--no-normalize", "--pooling", "cls").Out)!;
        Assert.NotEqual(1.0, Math.Sqrt(raw.Sum(v => (double)v * v)), 3);
    }

    [Fact]
    public void InfoListsTensorsAndParameters()
    {
        var (code, output, _) = Run("info", "--model", MiniLM);
        Assert.Equal(0, code);
        Assert.Contains("parameters: 22,713,216", output);
        Assert.Contains("encoder.layer.5.output.LayerNorm.bias  F32 [384]", output);
        Assert.Contains("cpu:", output);
    }

    [Fact]
    public void ErrorsAreOneLineAndNonZero()
    {
        var (code, _, error) = Run("info", "--model", "/no/such/model");
        Assert.Equal(1, code);
        Assert.Equal("error: --model /no/such/model: directory not found", error.Trim());
        using var temp = new TempDirectory();
        File.WriteAllText(temp["bad.jsonl"], "{\"input_ids\": [101, 999999, 102]}\n");
        (code, _, error) = Run("encode", "--input", temp["bad.jsonl"], "--output", temp["o.safetensors"], "--model", MiniLM);
        Assert.Equal(1, code);
        Assert.Contains("bad.jsonl:1: 'input_ids'[1] = 999999 is outside the vocabulary (vocab_size 30522)", error);
        Assert.Single(error.Trim().Split('\n'));
        Assert.False(File.Exists(temp["o.safetensors"]));
    }

    [Fact]
    public void ImportOnnxWritesAHuggingFaceDirectory()
    {
        using var temp = new TempDirectory();
        var (code, output, error) = Run("import-onnx", "--onnx", PretrainedModels.ArcticXs.OnnxPath, "--vocab", Path.Combine(Path.GetDirectoryName(PretrainedModels.ArcticXs.OnnxPath)!, "vocab.txt"), "--output", temp["arctic"]);
        Assert.True(code == 0, error);
        Assert.Contains("6 layers, hidden 384, 12 heads", output);
        foreach (string file in new[] { "config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json" })
            Assert.True(File.Exists(Path.Combine(temp["arctic"], file)), file);
    }

    [Fact]
    public void DeviceOptionPicksTheBackend()
    {
        var (code, output, _) = Run("info", "--model", MiniLM, "--device", "cpu");
        Assert.Equal(0, code);
        Assert.Contains("device:     cpu:", output);
        (code, output, _) = Run("info", "--model", MiniLM, "--device", "ilgpu-cpu");
        Assert.Equal(0, code);
        Assert.Contains("device:     ilgpu CPU emulator", output);
        if (!Engine.Kernels.IlgpuBackend.CudaAvailable())
        {
            var (cudaCode, _, error) = Run("info", "--model", MiniLM, "--device", "cuda");
            Assert.Equal(1, cudaCode);
            Assert.Equal("error: no CUDA device found", error.Trim());
            // auto falls back to the CPU backend.
            (code, output, _) = Run("info", "--model", MiniLM);
            Assert.Contains("device:     cpu:", output);
        }
    }

    private static string WriteLine(string path, string line)
    {
        File.WriteAllText(path, line + "\n");
        return path;
    }
}
