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

/// <summary>Facts about <see cref="DType"/>s and conversions of their raw values.</summary>
public static class DTypes
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

    /// <summary>The 16-bit floating-point types: IEEE half (F16) and bfloat16 (BF16, the top half of a float32).</summary>
    public static bool IsHalf(DType type) => type is DType.F16 or DType.BF16;

    /// <summary>
    /// The index of the first infinite or NaN value (its exponent bits all set) among 16-bit values of a half type, or −1;
    /// vectorised, as a checkpoint's tensors are checked whole at load.
    /// </summary>
    public static int IndexOfNonFiniteHalf(DType type, ReadOnlySpan<ushort> values)
    {
        ushort exponent = type == DType.F16 ? (ushort)0x7C00 : (ushort)0x7F80;
        var mask = new System.Numerics.Vector<ushort>(exponent);
        int i = 0;
        for (; i + System.Numerics.Vector<ushort>.Count <= values.Length; i += System.Numerics.Vector<ushort>.Count)
            if (System.Numerics.Vector.EqualsAny(new System.Numerics.Vector<ushort>(values[i..]) & mask, mask)) break;
        for (; i < values.Length; i++)
            if ((values[i] & exponent) == exponent) return i;
        return -1;
    }

    /// <summary>16-bit values of a half type as float32 (exactly: every F16 and BF16 value is a float32).</summary>
    public static void ToFloat32(DType type, ReadOnlySpan<ushort> values, Span<float> destination) =>
        ToFloat32(type, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values), destination);

    /// <summary>Converts little-endian raw elements of <paramref name="type"/> to float32.</summary>
    public static void ToFloat32(DType type, ReadOnlySpan<byte> raw, Span<float> destination)
    {
        switch (type)
        {
            case DType.F32:
                System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(raw).CopyTo(destination);
                break;
            case DType.F16:
                System.Numerics.Tensors.TensorPrimitives.ConvertToSingle(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, Half>(raw)[..destination.Length], destination);
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
