using System.Runtime.InteropServices;

namespace Engine.Onnx;

/// <summary>An ONNX initializer: name, dims, and its data as float32 (ints converted, for shape constants).</summary>
public sealed record OnnxTensor(string Name, long[] Dims, int DataType, float[] Values);

/// <summary>An ONNX node: operator, inputs and outputs by name, and the tensor of a <c>Constant</c> node.</summary>
public sealed record OnnxNode(string Name, string OpType, string[] Inputs, string[] Outputs, OnnxTensor? Value);

/// <summary>
/// The parts of an ONNX <c>ModelProto</c> that weight import needs: the graph's nodes, initializers and
/// input names. Field numbers follow <c>onnx/onnx.proto</c>.
/// </summary>
public sealed class OnnxGraph
{
    private const int Float = 1, Int32 = 6, Int64 = 7, Float16 = 10, Double = 11, BFloat16 = 16;

    public IReadOnlyList<OnnxNode> Nodes { get; }
    public IReadOnlyDictionary<string, OnnxTensor> Initializers { get; }
    public IReadOnlyList<string> Inputs { get; }

    private OnnxGraph(List<OnnxNode> nodes, Dictionary<string, OnnxTensor> initializers, List<string> inputs)
    {
        Nodes = nodes;
        Initializers = initializers;
        Inputs = inputs;
    }

    public static OnnxGraph Load(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (IOException e) { throw new EngineException($"{path}: cannot read: {e.Message}", e); }
        return Parse(bytes, path);
    }

    public static OnnxGraph Parse(ReadOnlySpan<byte> model, string source)
    {
        var reader = new ProtobufReader(model, source);
        while (!reader.End)
        {
            var (field, wire) = reader.ReadTag();
            if (field == 7 && wire == 2) return ParseGraph(reader.ReadBytes(), source); // ModelProto.graph
            reader.Skip(wire);
        }
        throw new EngineException($"{source}: no graph in ONNX model");
    }

    private static OnnxGraph ParseGraph(ReadOnlySpan<byte> graph, string source)
    {
        var nodes = new List<OnnxNode>();
        var initializers = new Dictionary<string, OnnxTensor>(StringComparer.Ordinal);
        var inputs = new List<string>();
        var reader = new ProtobufReader(graph, source);
        while (!reader.End)
        {
            var (field, wire) = reader.ReadTag();
            switch (field, wire)
            {
                case (1, 2): nodes.Add(ParseNode(reader.ReadBytes(), source)); break;
                case (5, 2):
                    var tensor = ParseTensor(reader.ReadBytes(), source);
                    initializers[tensor.Name] = tensor;
                    break;
                case (11, 2): inputs.Add(ParseValueInfoName(reader.ReadBytes(), source)); break;
                default: reader.Skip(wire); break;
            }
        }
        return new OnnxGraph(nodes, initializers, inputs);
    }

    private static OnnxNode ParseNode(ReadOnlySpan<byte> node, string source)
    {
        var inputs = new List<string>();
        var outputs = new List<string>();
        string name = "", opType = "";
        OnnxTensor? value = null;
        var reader = new ProtobufReader(node, source);
        while (!reader.End)
        {
            var (field, wire) = reader.ReadTag();
            switch (field, wire)
            {
                case (1, 2): inputs.Add(reader.ReadString()); break;
                case (2, 2): outputs.Add(reader.ReadString()); break;
                case (3, 2): name = reader.ReadString(); break;
                case (4, 2): opType = reader.ReadString(); break;
                case (5, 2): value = ParseAttributeTensor(reader.ReadBytes(), source) ?? value; break;
                default: reader.Skip(wire); break;
            }
        }
        return new OnnxNode(name, opType, [.. inputs], [.. outputs], value);
    }

    /// <summary>The tensor of an AttributeProto named <c>value</c> (a Constant node's), else null.</summary>
    private static OnnxTensor? ParseAttributeTensor(ReadOnlySpan<byte> attribute, string source)
    {
        string name = "";
        OnnxTensor? tensor = null;
        var reader = new ProtobufReader(attribute, source);
        while (!reader.End)
        {
            var (field, wire) = reader.ReadTag();
            switch (field, wire)
            {
                case (1, 2): name = reader.ReadString(); break;
                case (5, 2): tensor = ParseTensor(reader.ReadBytes(), source); break;
                default: reader.Skip(wire); break;
            }
        }
        return name == "value" ? tensor : null;
    }

    private static string ParseValueInfoName(ReadOnlySpan<byte> valueInfo, string source)
    {
        var reader = new ProtobufReader(valueInfo, source);
        while (!reader.End)
        {
            var (field, wire) = reader.ReadTag();
            if (field == 1 && wire == 2) return reader.ReadString();
            reader.Skip(wire);
        }
        return "";
    }

    private static OnnxTensor ParseTensor(ReadOnlySpan<byte> tensor, string source)
    {
        var dims = new List<long>();
        var floats = new List<float>();
        var longs = new List<long>();
        int dataType = 0;
        string name = "";
        ReadOnlySpan<byte> raw = default;
        bool external = false;
        var reader = new ProtobufReader(tensor, source);
        while (!reader.End)
        {
            var (field, wire) = reader.ReadTag();
            switch (field, wire)
            {
                case (1, 0): dims.Add((long)reader.ReadVarint()); break;
                case (1, 2): ReadPackedVarints(reader.ReadBytes(), dims, source); break;
                case (2, 0): dataType = (int)reader.ReadVarint(); break;
                case (4, 2): floats.AddRange(MemoryMarshal.Cast<byte, float>(reader.ReadBytes())); break;
                case (5, 2) or (7, 2): ReadPackedVarints(reader.ReadBytes(), longs, source); break;
                case (5, 0) or (7, 0): longs.Add((long)reader.ReadVarint()); break;
                case (8, 2): name = reader.ReadString(); break;
                case (9, 2): raw = reader.ReadBytes(); break;
                case (13, 2): external = true; reader.Skip(wire); break;
                default: reader.Skip(wire); break;
            }
        }
        string where = $"{source}: initializer '{name}'";
        if (external) throw new EngineException($"{where} uses external data, which is not supported");
        long count = 1;
        foreach (long d in dims)
        {
            if (d < 0 || d > int.MaxValue) throw new EngineException($"{where} has invalid dims [{string.Join(", ", dims)}]");
            count *= d;
            if (count > int.MaxValue) throw new EngineException($"{where} is too large");
        }
        // The data must be there before anything is allocated for it: dims alone never size an allocation.
        if (raw.IsEmpty && floats.Count != count && longs.Count != count && count != 0)
            throw new EngineException($"{where}: data does not match dims [{string.Join(", ", dims)}]");
        int size = dataType switch { Float or Int32 => 4, Int64 or Double => 8, Float16 or BFloat16 => 2, _ => 0 };
        if (!raw.IsEmpty && size == 0) throw new EngineException($"{where} has unsupported data type {dataType}");
        if (!raw.IsEmpty && raw.Length != count * size) throw new EngineException($"{where}: {raw.Length} bytes do not hold dims [{string.Join(", ", dims)}]");
        var values = new float[count];
        if (!raw.IsEmpty)
        {
            switch (dataType)
            {
                case Float: MemoryMarshal.Cast<byte, float>(raw).CopyTo(values); break;
                case Int32: { var s = MemoryMarshal.Cast<byte, int>(raw); for (int i = 0; i < values.Length; i++) values[i] = s[i]; break; }
                case Int64: { var s = MemoryMarshal.Cast<byte, long>(raw); for (int i = 0; i < values.Length; i++) values[i] = s[i]; break; }
                case Double: { var s = MemoryMarshal.Cast<byte, double>(raw); for (int i = 0; i < values.Length; i++) values[i] = (float)s[i]; break; }
                case Float16: { var s = MemoryMarshal.Cast<byte, Half>(raw); for (int i = 0; i < values.Length; i++) values[i] = (float)s[i]; break; }
                case BFloat16: { var s = MemoryMarshal.Cast<byte, ushort>(raw); for (int i = 0; i < values.Length; i++) values[i] = BitConverter.Int32BitsToSingle(s[i] << 16); break; }
            }
        }
        else if (floats.Count == count) floats.CopyTo(values);
        else if (longs.Count == count) for (int i = 0; i < values.Length; i++) values[i] = longs[i];
        return new OnnxTensor(name, [.. dims], dataType, values);
    }

    private static void ReadPackedVarints(ReadOnlySpan<byte> packed, List<long> output, string source)
    {
        var reader = new ProtobufReader(packed, source);
        while (!reader.End) output.Add((long)reader.ReadVarint());
    }
}
