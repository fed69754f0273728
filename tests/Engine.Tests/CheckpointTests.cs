using System.Text;
using System.Text.Json.Nodes;
using Engine.Backends.Cpu;
using Engine.IO;
using Engine.Models.Bert;

namespace Engine.Tests;

/// <summary>Loading Hugging Face checkpoints: the accepted variants, and one clear error per malformed case.</summary>
public sealed class CheckpointTests
{
    private static BertBatch SampleBatch() => new(2, 5, [2, 5, 7, 3, 0, 2, 9, 3, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0, 0, 0], [1, 1, 1, 1, 0, 1, 1, 1, 0, 0]);

    private static BertModelOutput Run(string directory)
    {
        using var model = BertModel.Load(directory, new CpuBackend());
        return model.Forward(SampleBatch());
    }

    private static EngineException LoadFails(string directory) =>
        Assert.Throws<EngineException>(() => BertModel.Load(directory, new CpuBackend()).Dispose());

    [Fact]
    public void BertPrefixAndLegacyLayerNormNamesLoadTheSameModel()
    {
        using var temp = new TempDirectory();
        var plain = Run(TinyBert.Write(temp["plain"]));
        var prefixed = Run(TinyBert.Write(temp["prefixed"], TinyBert.Tensors(n => "bert." + n)));
        var legacy = Run(TinyBert.Write(temp["legacy"], TinyBert.Tensors(n => n.Replace("LayerNorm.weight", "LayerNorm.gamma").Replace("LayerNorm.bias", "LayerNorm.beta"))));
        Assert.Equal(plain.LastHiddenState, prefixed.LastHiddenState);
        Assert.Equal(plain.LastHiddenState, legacy.LastHiddenState);
        Assert.Equal(plain.PoolerOutput, legacy.PoolerOutput);
        Assert.All(plain.LastHiddenState, v => Assert.True(float.IsFinite(v)));
    }

    [Fact]
    public void HalfPrecisionTensorsAreConvertedToFloat32()
    {
        using var temp = new TempDirectory();
        var f32 = TinyBert.Tensors();
        TinyBert.Write(temp["f32"], f32);
        var f16 = f32.Select(t => new SafeTensorData(t.Name, DType.F16, t.Shape, ToHalfBytes(t.Data))).ToList();
        var bf16 = f32.Select(t => new SafeTensorData(t.Name, DType.BF16, t.Shape, ToBFloat16Bytes(t.Data))).ToList();
        using (var file = SafeTensorsFile.Open(TinyBert.Write(temp["f16"], f16) + "/model.safetensors"))
        {
            var info = file.Tensors.Single(t => t.Name == "pooler.dense.bias");
            var expected = BytesToFloats(f32.Single(t => t.Name == info.Name).Data);
            var got = file.ReadFloat32(info);
            for (int i = 0; i < got.Length; i++) Assert.Equal((float)(Half)expected[i], got[i]);
        }
        using (var file = SafeTensorsFile.Open(TinyBert.Write(temp["bf16"], bf16) + "/model.safetensors"))
        {
            var info = file.Tensors.Single(t => t.Name == "pooler.dense.bias");
            var expected = BytesToFloats(f32.Single(t => t.Name == info.Name).Data);
            var got = file.ReadFloat32(info);
            for (int i = 0; i < got.Length; i++) Assert.Equal(BitConverter.Int32BitsToSingle(BitConverter.SingleToInt32Bits(expected[i]) & unchecked((int)0xFFFF0000)), got[i]);
        }
        var a = Run(temp["f32"]).LastHiddenState;
        var b = Run(temp["f16"]).LastHiddenState;
        Assert.True(a.Zip(b).Max(p => Math.Abs(p.First - p.Second)) < 1e-2);
    }

    [Fact]
    public void ShardedCheckpointLoadsLikeASingleFile()
    {
        using var temp = new TempDirectory();
        var tensors = TinyBert.Tensors();
        var single = Run(TinyBert.Write(temp["single"], tensors));
        string sharded = temp["sharded"];
        Directory.CreateDirectory(sharded);
        File.WriteAllText(Path.Combine(sharded, "config.json"), TinyBert.Config().ToJsonString());
        var first = tensors.Take(tensors.Count / 2).ToList();
        var second = tensors.Skip(tensors.Count / 2).ToList();
        SafeTensorsWriter.Write(Path.Combine(sharded, "model-00001-of-00002.safetensors"), first);
        SafeTensorsWriter.Write(Path.Combine(sharded, "model-00002-of-00002.safetensors"), second);
        var map = new JsonObject();
        foreach (var t in first) map[t.Name] = "model-00001-of-00002.safetensors";
        foreach (var t in second) map[t.Name] = "model-00002-of-00002.safetensors";
        File.WriteAllText(Path.Combine(sharded, Checkpoint.IndexFileName), new JsonObject { ["metadata"] = new JsonObject(), ["weight_map"] = map }.ToJsonString());
        Assert.Equal(single.LastHiddenState, Run(sharded).LastHiddenState);
    }

    [Fact]
    public void UnusedTensorsAreReported()
    {
        using var temp = new TempDirectory();
        var tensors = TinyBert.Tensors(n => "bert." + n);
        tensors.Add(SafeTensorData.FromFloats("cls.predictions.bias", new float[TinyBert.Vocab], TinyBert.Vocab));
        using var model = BertModel.Load(TinyBert.Write(temp.Path, tensors), new CpuBackend());
        Assert.Equal(["cls.predictions.bias"], model.UnusedTensors);
    }

    [Fact]
    public void CheckpointWithoutPoolerHasNoPoolerOutput()
    {
        using var temp = new TempDirectory();
        var output = Run(TinyBert.Write(temp.Path, TinyBert.Tensors(pooler: false)));
        Assert.Null(output.PoolerOutput);
    }

    [Fact]
    public void MissingTensorIsNamed()
    {
        using var temp = new TempDirectory();
        var e = LoadFails(TinyBert.Write(temp.Path, TinyBert.Tensors().Where(t => t.Name != "encoder.layer.1.attention.self.key.weight")));
        Assert.Contains("missing tensor 'encoder.layer.1.attention.self.key.weight'", e.Message);
    }

    [Fact]
    public void ShapeMismatchIsNamed()
    {
        using var temp = new TempDirectory();
        var tensors = TinyBert.Tensors();
        int i = tensors.FindIndex(t => t.Name == "encoder.layer.0.intermediate.dense.weight");
        tensors[i] = SafeTensorData.FromFloats(tensors[i].Name, new float[TinyBert.Hidden * TinyBert.Intermediate], TinyBert.Hidden, TinyBert.Intermediate);
        var e = LoadFails(TinyBert.Write(temp.Path, tensors));
        Assert.Contains("'encoder.layer.0.intermediate.dense.weight' has shape [8, 12], expected [12, 8]", e.Message);
    }

    [Fact]
    public void MissingRequiredConfigFieldIsNamed()
    {
        using var temp = new TempDirectory();
        var config = TinyBert.Config();
        config.Remove("num_attention_heads");
        var e = LoadFails(TinyBert.Write(temp.Path, config: config));
        Assert.Contains("missing required field 'num_attention_heads'", e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void InvalidConfigJsonNamesTheFile()
    {
        using var temp = new TempDirectory();
        TinyBert.Write(temp.Path);
        File.WriteAllText(temp["config.json"], "{\"vocab_size\": 11,");
        var e = LoadFails(temp.Path);
        Assert.Contains("config.json: invalid JSON", e.Message);
    }

    [Fact]
    public void MissingWeightsFileIsNamed()
    {
        using var temp = new TempDirectory();
        File.WriteAllText(temp["config.json"], TinyBert.Config().ToJsonString());
        Assert.Contains("no model.safetensors", LoadFails(temp.Path).Message);
    }

    // --- malformed safetensors files ---

    private static byte[] ValidFile()
    {
        using var temp = new TempDirectory();
        SafeTensorsWriter.Write(temp["valid.safetensors"], [SafeTensorData.FromFloats("a", [1, 2, 3, 4], 2, 2), SafeTensorData.FromFloats("b", [5, 6], 2)]);
        return File.ReadAllBytes(temp["valid.safetensors"]);
    }

    private static byte[] WithHeader(string header, int dataBytes)
    {
        var json = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + json.Length + dataBytes];
        BitConverter.GetBytes((ulong)json.Length).CopyTo(bytes, 0);
        json.CopyTo(bytes, 8);
        return bytes;
    }

    private static string OpenFails(byte[] bytes)
    {
        using var temp = new TempDirectory();
        string path = temp["model.safetensors"];
        File.WriteAllBytes(path, bytes);
        var e = Assert.Throws<EngineException>(() => SafeTensorsFile.Open(path).Dispose());
        Assert.Contains(path, e.Message);
        return e.Message;
    }

    [Fact]
    public void ValidFileRoundTrips()
    {
        using var temp = new TempDirectory();
        File.WriteAllBytes(temp["valid.safetensors"], ValidFile());
        using var file = SafeTensorsFile.Open(temp["valid.safetensors"]);
        Assert.True(file.TryGet("a", out var a));
        Assert.Equal([1f, 2, 3, 4], file.ReadFloat32(a));
        Assert.Equal([2L, 2], a.Shape);
    }

    [Fact]
    public void TruncatedFile()
    {
        var bytes = ValidFile();
        Assert.Contains("truncated", OpenFails(bytes[..5]));
        Assert.Contains("out of range", OpenFails(bytes[..^4]));
    }

    [Fact]
    public void HeaderLengthBeyondTheFile()
    {
        var bytes = ValidFile();
        BitConverter.GetBytes((ulong)bytes.Length).CopyTo(bytes, 0);
        Assert.Contains("runs past the end of the file", OpenFails(bytes));
        BitConverter.GetBytes(ulong.MaxValue).CopyTo(bytes, 0);
        Assert.Contains("runs past the end of the file", OpenFails(bytes));
    }

    [Fact]
    public void OutOfRangeDataOffsets() =>
        Assert.Contains("tensor 'x': data offsets [0, 400] are out of range", OpenFails(WithHeader("{\"x\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}", 16)));

    [Fact]
    public void NegativeOrReversedDataOffsets()
    {
        Assert.Contains("out of range", OpenFails(WithHeader("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 16)));
        Assert.Contains("out of range", OpenFails(WithHeader("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 16)));
    }

    [Fact]
    public void OverlappingDataOffsets() =>
        Assert.Contains("'x' and 'y' have overlapping data offsets", OpenFails(WithHeader(
            "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 16)));

    [Fact]
    public void SizeNotMatchingShape() =>
        Assert.Contains("do not hold shape [3]", OpenFails(WithHeader("{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 16)));

    [Fact]
    public void UnknownDtype() =>
        Assert.Contains("tensor 'x': unknown dtype 'F8_E9M9'", OpenFails(WithHeader("{\"x\":{\"dtype\":\"F8_E9M9\",\"shape\":[1],\"data_offsets\":[0,1]}}", 8)));

    [Fact]
    public void InvalidHeaderJson() =>
        Assert.Contains("invalid JSON", OpenFails(WithHeader("{\"x\":{\"dtype\":", 8)));

    /// <summary>A field of the wrong type is named as such, not as missing; a name given twice or not valid Unicode is refused.</summary>
    [Fact]
    public void MistypedHeaderFieldsAreNamed()
    {
        Assert.Contains("tensor 'x': 'dtype' must be a string such as \"F32\", got 7", OpenFails(WithHeader("{\"x\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 8)));
        Assert.Contains("tensor 'x': missing 'dtype'", OpenFails(WithHeader("{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 8)));
        Assert.Contains("tensor 'x': 'shape' must be an array of sizes, got \"1\"", OpenFails(WithHeader("{\"x\":{\"dtype\":\"F32\",\"shape\":\"1\",\"data_offsets\":[0,4]}}", 8)));
        Assert.Contains("'data_offsets' must be two byte offsets [begin, end], got [\"0\",4]", OpenFails(WithHeader("{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", 8)));
        Assert.Contains("safetensors header: invalid JSON: Duplicate property 'x'", OpenFails(WithHeader(
            "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8)));
        Assert.Contains("safetensors header: a property name is not valid Unicode", OpenFails(WithHeader("{\"\\ud800\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8)));
    }

    [Fact]
    public void AtomicWriteLeavesNoTemporaryFiles()
    {
        using var temp = new TempDirectory();
        SafeTensorsWriter.Write(temp["out.safetensors"], [SafeTensorData.FromFloats("a", [1f], 1)]);
        Assert.Throws<ArgumentException>(() => SafeTensorsWriter.Write(temp["out.safetensors"], [new SafeTensorData("bad", DType.F32, [3], new byte[4])]));
        Assert.Equal(["out.safetensors"], Directory.GetFiles(temp.Path).Select(Path.GetFileName));
        using var file = SafeTensorsFile.Open(temp["out.safetensors"]);
        Assert.True(file.TryGet("a", out _));
    }

    private static byte[] ToHalfBytes(byte[] floats) =>
        [.. BytesToFloats(floats).SelectMany(f => BitConverter.GetBytes((Half)f))];

    private static byte[] ToBFloat16Bytes(byte[] floats) =>
        [.. BytesToFloats(floats).SelectMany(f => BitConverter.GetBytes((ushort)(BitConverter.SingleToInt32Bits(f) >>> 16)))];

    private static float[] BytesToFloats(byte[] bytes) => [.. Enumerable.Range(0, bytes.Length / 4).Select(i => BitConverter.ToSingle(bytes, i * 4))];
}
