namespace Engine.Onnx;

/// <summary>
/// A minimal reader of the protocol-buffers wire format (varints, 64/32-bit fixed, length-delimited),
/// enough for ONNX's <c>ModelProto</c>. Every length is checked against the buffer.
/// </summary>
internal ref struct ProtobufReader
{
    private readonly ReadOnlySpan<byte> _data;
    private int _position;
    private readonly string _source;

    public ProtobufReader(ReadOnlySpan<byte> data, string source)
    {
        _data = data;
        _source = source;
    }

    public readonly bool End => _position >= _data.Length;

    /// <summary>The next field's number and wire type (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).</summary>
    public (int Field, int WireType) ReadTag()
    {
        ulong tag = ReadVarint();
        return ((int)(tag >> 3), (int)(tag & 7));
    }

    public ulong ReadVarint()
    {
        ulong result = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (_position >= _data.Length) throw Truncated();
            byte b = _data[_position++];
            result |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80) return result;
        }
        throw new EngineException($"{_source}: malformed protobuf varint at byte {_position}");
    }

    public ReadOnlySpan<byte> ReadBytes()
    {
        ulong length = ReadVarint();
        if (length > (ulong)(_data.Length - _position)) throw Truncated();
        var bytes = _data.Slice(_position, (int)length);
        _position += (int)length;
        return bytes;
    }

    public string ReadString() => System.Text.Encoding.UTF8.GetString(ReadBytes());

    public void Skip(int wireType)
    {
        switch (wireType)
        {
            case 0: ReadVarint(); break;
            case 1: Advance(8); break;
            case 2: ReadBytes(); break;
            case 5: Advance(4); break;
            default: throw new EngineException($"{_source}: unsupported protobuf wire type {wireType} at byte {_position}");
        }
    }

    private void Advance(int count)
    {
        if (count > _data.Length - _position) throw Truncated();
        _position += count;
    }

    private readonly EngineException Truncated() => new($"{_source}: truncated protobuf message at byte {_position}");
}
