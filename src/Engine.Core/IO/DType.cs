namespace Engine.IO;

/// <summary>Element types of safetensors tensors, spelled as in the safetensors header.</summary>
public enum DType
{
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I8,
    U8,
}

internal static class DTypes
{
    public static int Size(DType type) => type switch
    {
        DType.F64 or DType.I64 => 8,
        DType.F32 or DType.I32 => 4,
        DType.F16 or DType.BF16 => 2,
        _ => 1,
    };

    public static bool TryParse(string name, out DType type) =>
        Enum.TryParse(name, ignoreCase: false, out type) && Enum.IsDefined(type);

    public static bool IsFloat(DType type) => type is DType.F32 or DType.F16 or DType.BF16 or DType.F64;

    /// <summary>Converts little-endian raw elements of <paramref name="type"/> to float32.</summary>
    public static void ToFloat32(DType type, ReadOnlySpan<byte> raw, Span<float> destination)
    {
        switch (type)
        {
            case DType.F32:
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw).CopyTo(destination);
                break;
            case DType.F16:
                var halves = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(raw);
                for (int i = 0; i < destination.Length; i++) destination[i] = (float)halves[i];
                break;
            case DType.BF16:
                var words = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(raw);
                // bfloat16 is the top half of a float32.
                for (int i = 0; i < destination.Length; i++) destination[i] = BitConverter.Int32BitsToSingle(words[i] << 16);
                break;
            case DType.F64:
                var doubles = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(raw);
                for (int i = 0; i < destination.Length; i++) destination[i] = (float)doubles[i];
                break;
            default:
                throw new InvalidOperationException($"{type} is not a floating-point type");
        }
    }
}
