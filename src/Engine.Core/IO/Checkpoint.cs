using System.Text.Json;

namespace Engine.IO;

/// <summary>
/// The tensors of a Hugging Face model directory: <c>model.safetensors</c>, or the shards named by
/// <c>model.safetensors.index.json</c>. Records which tensors were read so unused ones can be reported.
/// </summary>
public sealed class Checkpoint : IDisposable
{
    public const string SingleFileName = "model.safetensors";
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly List<SafeTensorsFile> _files;
    private readonly Dictionary<string, (SafeTensorsFile File, SafeTensorInfo Info)> _tensors = new(StringComparer.Ordinal);
    private readonly HashSet<string> _used = new(StringComparer.Ordinal);

    private Checkpoint(List<SafeTensorsFile> files, IReadOnlyDictionary<string, string>? weightMap)
    {
        _files = files;
        foreach (var file in files)
            foreach (var info in file.Tensors)
            {
                if (weightMap is not null && (!weightMap.TryGetValue(info.Name, out var shard) || Path.GetFileName(file.Path) != shard))
                    continue; // the index decides which shard owns a name
                if (!_tensors.TryAdd(info.Name, (file, info)))
                    throw new EngineException($"{file.Path}: tensor '{info.Name}' also appears in {_tensors[info.Name].File.Path}");
            }
        if (weightMap is not null)
            foreach (var (name, shard) in weightMap)
                if (!_tensors.ContainsKey(name))
                    throw new EngineException($"{IndexFileName}: tensor '{name}' is not in shard '{shard}'");
    }

    public IEnumerable<string> Names => _tensors.Keys;

    /// <summary>Names never read through <see cref="ReadFloat32"/>, in order.</summary>
    public IReadOnlyList<string> UnusedNames => _tensors.Keys.Where(n => !_used.Contains(n)).Order(StringComparer.Ordinal).ToList();

    public static Checkpoint Open(string directory)
    {
        string index = Path.Combine(directory, IndexFileName);
        string single = Path.Combine(directory, SingleFileName);
        if (File.Exists(index)) return OpenSharded(directory, index);
        if (!File.Exists(single))
            throw new EngineException($"{directory}: no {SingleFileName} or {IndexFileName}");
        return new Checkpoint([SafeTensorsFile.Open(single)], null);
    }

    private static Checkpoint OpenSharded(string directory, string index)
    {
        Dictionary<string, string> weightMap;
        using (var document = JsonInput.Parse(File.ReadAllBytes(index), index))
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object || !document.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new EngineException($"{index}: missing 'weight_map'");
            weightMap = map.EnumerateObject().ToDictionary(p => p.Name,
                p => p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()! : throw new EngineException($"{index}: 'weight_map.{p.Name}' is not a file name"),
                StringComparer.Ordinal);
        }

        var files = new List<SafeTensorsFile>();
        try
        {
            foreach (string shard in weightMap.Values.Distinct().Order(StringComparer.Ordinal))
            {
                if (shard.Length == 0 || shard != Path.GetFileName(shard) || shard.IndexOfAny(['\0', '/', '\\']) >= 0 || shard is "." or "..")
                    throw new EngineException($"{index}: shard name '{shard}' is not a plain file name");
                files.Add(SafeTensorsFile.Open(Path.Combine(directory, shard)));
            }
            return new Checkpoint(files, weightMap);
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    public bool Contains(string name) => _tensors.ContainsKey(name);

    public SafeTensorInfo Info(string name) =>
        _tensors.TryGetValue(name, out var entry) ? entry.Info : throw new EngineException($"checkpoint has no tensor '{name}'");

    /// <summary>
    /// The tensor <paramref name="name"/>, its shape checked, not yet read: it keeps its stored element type until the
    /// model decides what to make of it (<see cref="StoredTensor.ToFloat32"/>, while this checkpoint is open).
    /// </summary>
    public StoredTensor Get(string name, ReadOnlySpan<long> expectedShape)
    {
        if (!_tensors.TryGetValue(name, out var entry))
            throw new EngineException($"missing tensor '{name}' in {string.Join(", ", _files.Select(f => Path.GetFileName(f.Path)))}");
        if (!entry.Info.Shape.AsSpan().SequenceEqual(expectedShape))
            throw new EngineException($"{entry.File.Path}: tensor '{name}' has shape [{string.Join(", ", entry.Info.Shape)}], expected [{string.Join(", ", expectedShape.ToArray())}]");
        return new StoredTensor(this, name, entry.Info);
    }

    /// <summary>Reads a floating-point tensor as float32, checking its shape and that every value is finite.</summary>
    /// <remarks>A NaN or infinite weight would only show up as NaN outputs (and "NaN" is not valid JSON), so it is refused here, by name.</remarks>
    public float[] ReadFloat32(string name, ReadOnlySpan<long> expectedShape)
    {
        if (!_tensors.TryGetValue(name, out var entry))
            throw new EngineException($"missing tensor '{name}' in {string.Join(", ", _files.Select(f => Path.GetFileName(f.Path)))}");
        if (!entry.Info.Shape.AsSpan().SequenceEqual(expectedShape))
            throw new EngineException($"{entry.File.Path}: tensor '{name}' has shape [{string.Join(", ", entry.Info.Shape)}], expected [{string.Join(", ", expectedShape.ToArray())}]");
        _used.Add(name);
        var values = entry.File.ReadFloat32(entry.Info);
        int bad = IndexOfNonFinite(values);
        if (bad >= 0)
            throw new EngineException($"{entry.File.Path}: tensor '{name}' holds {values[bad].ToString(System.Globalization.CultureInfo.InvariantCulture)} at element {bad}; the checkpoint is damaged (a diverged training run?)");
        return values;
    }

    /// <summary>A tensor's bytes exactly as stored (copied unchanged into another checkpoint).</summary>
    public byte[] ReadRaw(string name)
    {
        if (!_tensors.TryGetValue(name, out var entry)) throw new EngineException($"checkpoint has no tensor '{name}'");
        _used.Add(name);
        return entry.File.ReadRaw(entry.Info);
    }

    /// <summary>Reads an I8 tensor, checking its shape; any other stored type is an error naming the tensor.</summary>
    public sbyte[] ReadInt8(string name, ReadOnlySpan<long> expectedShape)
    {
        var info = Get(name, expectedShape);
        var entry = _tensors[name];
        if (info.Type != DType.I8)
            throw new EngineException($"{entry.File.Path}: tensor '{name}' has dtype {info.Type}, expected I8 (it has scales '{name}{Quantization.Int8Quantizer.ScaleSuffix}')");
        _used.Add(name);
        return System.Runtime.InteropServices.MemoryMarshal.Cast<byte, sbyte>(entry.File.ReadRaw(entry.Info)).ToArray();
    }

    /// <summary>
    /// Reads an F16 or BF16 tensor's 16-bit values as stored (not widened), checking its shape and that every value is
    /// finite; any other stored type is an error naming the tensor.
    /// </summary>
    public ushort[] ReadHalves(string name, ReadOnlySpan<long> expectedShape)
    {
        var info = Get(name, expectedShape);
        var entry = _tensors[name];
        if (!DTypes.IsHalf(info.Type))
            throw new EngineException($"{entry.File.Path}: tensor '{name}' has dtype {info.Type}, expected F16 or BF16");
        _used.Add(name);
        var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, ushort>(entry.File.ReadRaw(entry.Info)).ToArray();
        int bad = DTypes.IndexOfNonFiniteHalf(info.Type, values);
        if (bad >= 0)
            throw new EngineException($"{entry.File.Path}: tensor '{name}' holds a value that is not finite ({info.Type} bits 0x{values[bad]:X4}) at element {bad}; the checkpoint is damaged (a diverged training run?)");
        return values;
    }

    private static int IndexOfNonFinite(ReadOnlySpan<float> values)
    {
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i])) return i;
        return -1;
    }

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}

/// <summary>A checkpoint tensor as stored (element type, shape), read when the model asks for its values.</summary>
public sealed class StoredTensor(Checkpoint checkpoint, string name, SafeTensorInfo info)
{
    public string Name => name;
    public DType Type => info.DType;
    public long[] Shape => info.Shape;

    /// <summary>The values as float32 (F16, BF16 and F64 converted), every one finite; the checkpoint must still be open.</summary>
    public float[] ToFloat32() => checkpoint.ReadFloat32(name, info.Shape);

    /// <summary>The values of an I8 tensor; the checkpoint must still be open.</summary>
    public sbyte[] ToInt8() => checkpoint.ReadInt8(name, info.Shape);

    /// <summary>The 16-bit values of an F16 or BF16 tensor as stored, every one finite; the checkpoint must still be open.</summary>
    public ushort[] ToHalves() => checkpoint.ReadHalves(name, info.Shape);
}
