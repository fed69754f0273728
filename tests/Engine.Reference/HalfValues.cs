using Engine.IO;

namespace Engine.Reference;

/// <summary>
/// Floats as the 16-bit values of an F16 or BF16 tensor (rounded to nearest even, as PyTorch's <c>.half()</c> and
/// <c>.bfloat16()</c> do) and back: for op cases with half tensors, and checkpoints written in a half format.
/// </summary>
public static class HalfValues
{
    public static ushort[] Bits(float[] values, DType type) => [.. values.Select(v => type switch
    {
        DType.F16 => BitConverter.HalfToUInt16Bits((Half)v),
        DType.BF16 => Bf16Bits(v),
        _ => throw new ArgumentException($"{type} is not a half type"),
    })];

    public static float[] Widen(ushort[] bits, DType type)
    {
        var values = new float[bits.Length];
        DTypes.ToFloat32(type, bits, values);
        return values;
    }

    private static ushort Bf16Bits(float value)
    {
        if (!float.IsFinite(value)) throw new ArgumentException($"{value} has no finite bf16 value");
        uint bits = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
    }

    /// <summary>
    /// A copy of the model directory <paramref name="source"/> (config, vocabulary, …) whose every floating-point tensor is
    /// stored in <paramref name="type"/>, as <c>model.half().save_pretrained()</c> writes one.
    /// </summary>
    public static string ConvertCheckpoint(string source, string destination, DType type)
    {
        foreach (string file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories)
            .Where(f => !f.EndsWith(".safetensors", StringComparison.Ordinal) && !f.EndsWith(".index.json", StringComparison.Ordinal)))
        {
            string target = Path.Combine(destination, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target, overwrite: true);
        }
        using var checkpoint = Checkpoint.Open(source);
        var tensors = checkpoint.Names.Select(name =>
        {
            var info = checkpoint.Info(name);
            if (!DTypes.IsFloat(info.DType)) return new SafeTensorData(name, info.DType, info.Shape, checkpoint.ReadRaw(name));
            var bits = Bits(checkpoint.ReadFloat32(name, info.Shape), type);
            return new SafeTensorData(name, type, info.Shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(bits.AsSpan()).ToArray());
        }).ToList();
        SafeTensorsWriter.Write(Path.Combine(destination, Checkpoint.SingleFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        return destination;
    }
}
