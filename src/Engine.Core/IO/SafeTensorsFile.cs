using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;

namespace Engine.IO;

/// <summary>One tensor's entry in a safetensors header; offsets are absolute positions in the file.</summary>
public sealed record SafeTensorInfo(string Name, DType DType, long[] Shape, long Start, long End)
{
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// Reads a safetensors file (8-byte little-endian header length, JSON header, raw little-endian data),
/// validating the header against the file before any data is read: nothing is ever read outside the
/// file or outside a tensor's own byte range.
/// </summary>
/// <remarks>Format: https://github.com/huggingface/safetensors (README, "Format").</remarks>
public sealed class SafeTensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100_000_000; // the reference implementation's own limit
    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, SafeTensorInfo> _tensors;

    public string Path { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }
    public IReadOnlyCollection<SafeTensorInfo> Tensors => _tensors.Values;

    private SafeTensorsFile(string path, SafeFileHandle handle, Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _handle = handle;
        _tensors = tensors;
        Metadata = metadata;
    }

    public static SafeTensorsFile Open(string path)
    {
        SafeFileHandle handle;
        try { handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        { throw new EngineException($"{path}: cannot open safetensors file: {e.Message}", e); }
        try
        {
            var (tensors, metadata) = ReadHeader(path, handle);
            return new SafeTensorsFile(path, handle, tensors, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public bool TryGet(string name, out SafeTensorInfo info) => _tensors.TryGetValue(name, out info!);

    /// <summary>Reads a floating-point tensor (F32, F16, BF16 or F64) as float32.</summary>
    public float[] ReadFloat32(SafeTensorInfo info)
    {
        if (!DTypes.IsFloat(info.DType))
            throw new EngineException($"{Path}: tensor '{info.Name}' has dtype {info.DType}, expected a floating-point type");
        var raw = ReadRaw(info);
        var result = new float[info.ElementCount];
        DTypes.ToFloat32(info.DType, raw, result);
        return result;
    }

    /// <summary>Reads a tensor's bytes exactly as stored.</summary>
    public byte[] ReadRaw(SafeTensorInfo info)
    {
        var raw = new byte[info.End - info.Start];
        int read = RandomAccess.Read(_handle, raw, info.Start);
        if (read != raw.Length) throw new EngineException($"{Path}: tensor '{info.Name}' is truncated");
        return raw;
    }

    public void Dispose() => _handle.Dispose();

    private static (Dictionary<string, SafeTensorInfo>, Dictionary<string, string>) ReadHeader(string path, SafeFileHandle handle)
    {
        long fileLength = RandomAccess.GetLength(handle);
        if (fileLength < 8)
            throw new EngineException($"{path}: truncated safetensors file ({fileLength} bytes, less than the 8-byte header length)");
        Span<byte> prefix = stackalloc byte[8];
        RandomAccess.Read(handle, prefix, 0);
        ulong headerLength = BitConverter.ToUInt64(prefix);
        if (headerLength > (ulong)(fileLength - 8))
            throw new EngineException($"{path}: header length {headerLength} runs past the end of the file ({fileLength} bytes)");
        if (headerLength > MaxHeaderBytes)
            throw new EngineException($"{path}: header length {headerLength} exceeds the {MaxHeaderBytes}-byte limit");
        var header = new byte[headerLength];
        RandomAccess.Read(handle, header, 8);
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        using (var document = JsonInput.Parse(header, $"{path}: safetensors header"))
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new EngineException($"{path}: safetensors header is not a JSON object");
            var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                if (property.Name == "__metadata__")
                {
                    if (property.Value.ValueKind == JsonValueKind.Object)
                        foreach (var m in property.Value.EnumerateObject())
                            metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                tensors[property.Name] = ParseEntry(path, property.Name, property.Value, dataStart, dataLength);
            }
            CheckNoOverlap(path, tensors.Values);
            return (tensors, metadata);
        }
    }

    private static SafeTensorInfo ParseEntry(string path, string name, JsonElement entry, long dataStart, long dataLength)
    {
        string where = $"{path}: tensor '{name}'";
        if (entry.ValueKind != JsonValueKind.Object) throw new EngineException($"{where}: header entry is not an object");
        if (!entry.TryGetProperty("dtype", out var dtypeElement)) throw new EngineException($"{where}: missing 'dtype'");
        if (dtypeElement.ValueKind != JsonValueKind.String)
            throw new EngineException($"{where}: 'dtype' must be a string such as \"F32\", got {dtypeElement.GetRawText()}");
        if (!DTypes.TryParse(dtypeElement.GetString()!, out var dtype))
            throw new EngineException($"{where}: unknown dtype '{dtypeElement.GetString()}'");
        if (!entry.TryGetProperty("shape", out var shapeElement)) throw new EngineException($"{where}: missing 'shape'");
        if (shapeElement.ValueKind != JsonValueKind.Array) throw new EngineException($"{where}: 'shape' must be an array of sizes, got {shapeElement.GetRawText()}");
        var shape = new long[shapeElement.GetArrayLength()];
        int d = 0;
        foreach (var dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out shape[d]) || shape[d] < 0)
                throw new EngineException($"{where}: invalid shape {shapeElement.GetRawText()}");
            d++;
        }
        if (!entry.TryGetProperty("data_offsets", out var offsets)) throw new EngineException($"{where}: missing 'data_offsets'");
        if (offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2
            || offsets[0].ValueKind != JsonValueKind.Number || offsets[1].ValueKind != JsonValueKind.Number
            || !offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end))
            throw new EngineException($"{where}: 'data_offsets' must be two byte offsets [begin, end], got {offsets.GetRawText()}");
        if (begin < 0 || end < begin || end > dataLength)
            throw new EngineException($"{where}: data offsets [{begin}, {end}] are out of range (data section is {dataLength} bytes)");
        long elements = 1;
        try { foreach (long s in shape) elements = checked(elements * s); }
        catch (OverflowException) { throw new EngineException($"{where}: shape {shapeElement.GetRawText()} is too large"); }
        if (elements > int.MaxValue || elements * DTypes.Size(dtype) != end - begin)
            throw new EngineException($"{where}: {end - begin} bytes of data do not hold shape {shapeElement.GetRawText()} of {dtype}");
        return new SafeTensorInfo(name, dtype, shape, dataStart + begin, dataStart + end);
    }

    private static void CheckNoOverlap(string path, IEnumerable<SafeTensorInfo> tensors)
    {
        SafeTensorInfo? previous = null;
        foreach (var t in tensors.Where(t => t.End > t.Start).OrderBy(t => t.Start))
        {
            if (previous is not null && t.Start < previous.End)
                throw new EngineException($"{path}: tensors '{previous.Name}' and '{t.Name}' have overlapping data offsets");
            previous = t;
        }
    }
}

/// <summary>A tensor to write: raw little-endian bytes of <see cref="DType"/> in row-major order.</summary>
public sealed record SafeTensorData(string Name, DType DType, long[] Shape, byte[] Data)
{
    public static SafeTensorData FromFloats(string name, float[] values, params long[] shape) =>
        new(name, DType.F32, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());

    public static SafeTensorData FromInt64(string name, long[] values, params long[] shape) =>
        new(name, DType.I64, shape, MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
}

/// <summary>Writes safetensors files atomically: a temporary file beside the target, then a rename.</summary>
public static class SafeTensorsWriter
{
    public static void Write(string path, IEnumerable<SafeTensorData> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = tensors.ToList();
        using var headerStream = new MemoryStream();
        using (var json = new Utf8JsonWriter(headerStream))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) json.WriteString(k, v);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var t in list)
            {
                long expected = t.Shape.Aggregate(1L, (a, b) => a * b) * DTypes.Size(t.DType);
                if (expected != t.Data.Length)
                    throw new ArgumentException($"tensor '{t.Name}': {t.Data.Length} bytes do not match shape [{string.Join(", ", t.Shape)}] of {t.DType}");
                json.WriteStartObject(t.Name);
                json.WriteString("dtype", t.DType.ToString());
                json.WriteStartArray("shape");
                foreach (long s in t.Shape) json.WriteNumberValue(s);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + t.Data.Length);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += t.Data.Length;
            }
            json.WriteEndObject();
        }
        // The data section starts 8-byte aligned: pad the header with spaces, as the reference writer does.
        int padding = (int)((8 - headerStream.Length % 8) % 8);
        for (int i = 0; i < padding; i++) headerStream.WriteByte((byte)' ');

        AtomicFile.Write(path, stream =>
        {
            stream.Write(BitConverter.GetBytes((ulong)headerStream.Length));
            headerStream.Position = 0;
            headerStream.CopyTo(stream);
            foreach (var t in list) stream.Write(t.Data);
        });
    }
}
