using System.Diagnostics.CodeAnalysis;
using Engine.IO;

namespace Engine.Backends;

/// <summary>
/// What an op takes: a view of backend memory with its element type (safetensors' <see cref="DType"/>) and shape.
/// A float buffer converts implicitly into a flat F32 tensor; another element type reaches an op as a tensor of that
/// type, where a backend either has a kernel for it or refuses it naming the operand — so int8 and half types add
/// kernels, not new op signatures. An <see cref="DType.I8"/> tensor is a quantized matrix: int8 values (rows, columns)
/// and one F32 scale per row (a Linear weight's output channel, an embedding's token), value ≈ q · scale[row].
/// An <see cref="DType.F16"/> or <see cref="DType.BF16"/> tensor holds 16-bit values as a checkpoint stores them (a
/// Linear weight or word-embedding table kept in its format): kernels read them as they are, or widen them exactly.
/// Sizes are still passed to the ops beside their tensors.
/// </summary>
public sealed class Tensor
{
    private readonly object _storage;

    /// <summary>An F32 tensor over <paramref name="values"/>; a flat vector when no shape is given.</summary>
    public Tensor(DeviceBuffer<float> values, params long[] shape)
        : this(values, DType.F32, shape.Length == 0 ? [values.Length] : shape, values.Length) { }

    /// <summary>A tensor of <paramref name="type"/> over <paramref name="storage"/> (a type's kernels know its layout).</summary>
    internal Tensor(object storage, DType type, long[] shape, long capacity)
    {
        long elements = shape.Aggregate(1L, (a, b) => a * b);
        if (shape.Any(d => d < 0) || elements > capacity)
            throw new ArgumentException($"a [{string.Join(", ", shape)}] tensor over {capacity} elements");
        _storage = storage;
        Type = type;
        Shape = shape;
    }

    /// <summary>A quantized (rows, columns) matrix: <paramref name="values"/> int8, <paramref name="scales"/> (rows).</summary>
    public static Tensor Int8(DeviceBuffer<sbyte> values, DeviceBuffer<float> scales, long rows, long columns)
    {
        if (scales.Length < rows) throw new ArgumentException($"{scales.Length} scales for {rows} rows of int8 values");
        return new Tensor(new Int8Storage(values, scales), DType.I8, [rows, columns], values.Length);
    }

    /// <summary>An F16 or BF16 tensor over <paramref name="values"/>, 16-bit values as stored (IEEE half, or bfloat16 bits).</summary>
    public static Tensor Halves(DeviceBuffer<ushort> values, DType type, params long[] shape)
    {
        if (!DTypes.IsHalf(type)) throw new ArgumentException($"a {type} tensor over 16-bit values (F16 or BF16 expected)");
        return new Tensor(values, type, shape.Length == 0 ? [values.Length] : shape, values.Length);
    }

    private sealed record Int8Storage(DeviceBuffer<sbyte> Values, DeviceBuffer<float> Scales);

    public DType Type { get; }
    public long[] Shape { get; }
    public long Length => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Throws unless the tensor holds at least <paramref name="needed"/> elements (buffers are reused for smaller batches).</summary>
    public void RequireLength(long needed, string name) => OpShapes.Require(Length, needed, name);

    /// <summary>The F32 values; any other type is refused naming the operand, until a kernel for it exists.</summary>
    public DeviceBuffer<float> F32(string operand) =>
        Type == DType.F32 ? (DeviceBuffer<float>)_storage : throw new NotSupportedException($"{operand} is a {Type} tensor; this op has no {Type} kernel (F32 only)");

    /// <summary>The int8 values and per-row scales; any other type is refused naming the operand.</summary>
    public (DeviceBuffer<sbyte> Values, DeviceBuffer<float> Scales) I8(string operand) =>
        _storage is Int8Storage q ? (q.Values, q.Scales) : throw new NotSupportedException($"{operand} is a {Type} tensor where an int8 one is needed");

    /// <summary>The 16-bit values of an F16 or BF16 tensor; any other type is refused naming the operand.</summary>
    public DeviceBuffer<ushort> HalfValues(string operand) =>
        DTypes.IsHalf(Type) ? (DeviceBuffer<ushort>)_storage : throw new NotSupportedException($"{operand} is a {Type} tensor where an F16 or BF16 one is needed");

    [return: NotNullIfNotNull(nameof(buffer))]
    public static implicit operator Tensor?(DeviceBuffer<float>? buffer) => buffer is null ? null : new Tensor(buffer);
}
