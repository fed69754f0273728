using Engine.Backends;
using Engine.IO;

namespace Engine.Models;

/// <summary>
/// One tensor of a <see cref="ParameterArena"/>: its Hugging Face name, shape, element type (safetensors' <see cref="DType"/>:
/// F32; I8 for a quantized weight; F16 or BF16 for a weight kept as its checkpoint stores it), place in its type's
/// buffer and whether AdamW decays it.
/// </summary>
public sealed record ParameterEntry(string Name, long[] Shape, DType Type, long Offset, bool Decays)
{
    public int Length => (int)Shape.Aggregate(1L, (a, b) => a * b);
}

/// <summary>
/// What a module holds: a view of one arena entry, or of several consecutive ones that one op uses together
/// (the query, key and value weights as one (3C, C) product). Its gradient is the same view of the gradient arena.
/// A tied weight is one parameter held by two modules: both uses add to its gradient, and the optimizer steps it once.
/// A quantized weight (<see cref="DType.I8"/>) lives in the arena's int8 buffer with its per-row scales beside it in
/// <see cref="Scales"/> (an F32 parameter); a weight kept in its checkpoint's F16 or BF16 lives in the arena's 16-bit
/// buffer. Either runs in inference and is never trained.
/// </summary>
public sealed class Parameter
{
    private readonly ParameterArena _arena;
    private DeviceBuffer<float>? _value, _gradient;
    private Tensor? _tensor, _gradientTensor;

    internal Parameter(ParameterArena arena, ParameterEntry[] parts)
    {
        _arena = arena;
        Parts = parts;
    }

    /// <summary>The arena entries this parameter spans, in order (their offsets are final once the arena is built).</summary>
    public IReadOnlyList<ParameterEntry> Parts { get; internal set; }

    public string Name => string.Join("+", Parts.Select(p => p.Name));

    public int Length => Parts.Sum(p => p.Length);

    public bool Decays => Parts[0].Decays;

    /// <summary>F32; I8 for a quantized weight; F16 or BF16 for a weight kept in its checkpoint's format.</summary>
    public DType Type => Parts[0].Type;

    /// <summary>An int8 weight's scales, one per row (output channel, or token of an embedding table); null for F32.</summary>
    public Parameter? Scales { get; internal init; }

    internal DeviceBuffer<float> Value => _value ??= Type == DType.F32 ? _arena.Values.Slice(Parts[0].Offset, Length)
        : throw new InvalidOperationException($"{Name} is a {Type} parameter; it has no F32 values");

    /// <summary>The gradient view; the arena's gradients must exist (<see cref="ParameterArena.ZeroGradients"/>).</summary>
    internal DeviceBuffer<float> Gradient => _gradient ??= (_arena.Gradients
        ?? throw new InvalidOperationException($"parameter {Name} has no gradient: call ZeroGradients before a backward pass")).Slice(Parts[0].Offset, Length);

    /// <summary>
    /// The shape ops see: the entry's, or for stacked entries their rows stacked ((3C, C) for Q, K and V; (3C) for their biases).
    /// </summary>
    public long[] Shape => Parts.Count == 1 ? Parts[0].Shape : [Parts.Sum(p => p.Shape[0]), .. Parts[0].Shape[1..]];

    /// <summary>The value as the ops take it: typed and shaped from the table.</summary>
    internal Tensor Tensor => _tensor ??= Type switch
    {
        DType.I8 => Tensor.Int8(_arena.Int8Values.Slice(Parts[0].Offset, Length), Scales!.Value, Shape[0], Shape[1]),
        DType.F16 or DType.BF16 => Tensor.Halves(_arena.HalfValues.Slice(Parts[0].Offset, Length), Type, Shape),
        _ => new Tensor(Value, Shape),
    };

    /// <summary>The gradient as the ops take it.</summary>
    internal Tensor GradientTensor => _gradientTensor ??= Type == DType.F32 ? new Tensor(Gradient, Shape) : throw new EngineException(WhyNotTrainable);

    /// <summary>Why a weight that is not F32 cannot be trained, and what to do instead.</summary>
    internal string WhyNotTrainable => Type == DType.I8
        ? $"{Name} is quantized to int8 and cannot be trained; fine-tune the FP32 model, then quantize it"
        : $"{Name} is kept in its checkpoint's {Type} for inference and cannot be trained; training loads widen the weights to fp32 master weights";

    /// <summary>The values as F32 (an int8 weight dequantized: q · scale of its row; an F16 or BF16 one widened, exactly).</summary>
    public float[] ReadValue(IBackend backend)
    {
        if (Type == DType.F32) return Read(backend, Value);
        if (DTypes.IsHalf(Type))
        {
            var halves = new ushort[Length];
            backend.Download(_arena.HalfValues.Slice(Parts[0].Offset, Length), halves);
            var widened = new float[Length];
            DTypes.ToFloat32(Type, halves, widened);
            return widened;
        }
        var quantized = new sbyte[Length];
        backend.Download(_arena.Int8Values.Slice(Parts[0].Offset, Length), quantized);
        return Quantization.Int8Quantizer.Dequantize(quantized, Scales!.ReadValue(backend), (int)Shape[1]);
    }

    public float[] ReadGradient(IBackend backend) => Read(backend, Gradient);

    private float[] Read(IBackend backend, DeviceBuffer<float> buffer)
    {
        var values = new float[Length];
        backend.Download(buffer, values);
        return values;
    }
}

/// <summary>What a model load does with the weights its checkpoint stores in F16 or BF16.</summary>
public enum HalfWeights
{
    /// <summary>Widen every one to F32: fp32 master weights, which training needs (the default).</summary>
    Widen,

    /// <summary>
    /// Keep the Linear weights and the word-embedding table as stored: half the memory, and a backend computing in the
    /// same format reads them as they are (the CPU backend widens them as it packs them). Such a model runs, but does
    /// not train; the other tensors (biases, LayerNorm, position and token-type tables) widen to F32.
    /// </summary>
    Keep,
}

/// <summary>
/// A model's parameters in one buffer per element type, with a table name → (shape, type, offset): modules declare
/// their tensors while the model is built (checkpoint tensors as stored, not yet read), <see cref="Build"/> reads
/// them, lays them out and uploads them with one allocation. Gradients and the optimizer's moments are buffers of the same layout, so a step is one norm
/// reduction, one AdamW launch and one clear. Decayed tensors come first (<see cref="DecayedLength"/>), so the
/// AdamW launch needs only that boundary to tell weights from biases and LayerNorm weights.
/// </summary>
public sealed class ParameterArena : IDisposable
{
    private readonly IBackend _backend;
    private readonly Func<string, bool> _decays;
    private readonly List<(Parameter Parameter, Func<float[]>[] Values)> _pending = [];
    private readonly List<(Parameter Parameter, Func<sbyte[]>[] Values)> _pendingInt8 = [];
    private readonly List<(Parameter Parameter, Func<ushort[]>[] Values)> _pendingHalves = [];
    private readonly List<Parameter> _parameters = [];
    private DeviceBuffer<float>? _values;
    private DeviceBuffer<sbyte>? _int8Values;
    private DeviceBuffer<ushort>? _halfValues;

    /// <param name="decays">Which tensors, by name, AdamW decays (the model family's rule).</param>
    /// <param name="halfWeights">What becomes of matrices stored in F16 or BF16 (<see cref="ParameterScope.LoadMatrix"/>).</param>
    public ParameterArena(IBackend backend, Func<string, bool> decays, HalfWeights halfWeights = HalfWeights.Widen)
    {
        _backend = backend;
        _decays = decays;
        HalfWeights = halfWeights;
    }

    public HalfWeights HalfWeights { get; }

    /// <summary>The table, in layout order (decayed entries first); final once built.</summary>
    public IReadOnlyList<ParameterEntry> Entries { get; private set; } = [];

    /// <summary>Every parameter in declaration order (Hugging Face's module order); a tied one appears once.</summary>
    public IReadOnlyList<Parameter> Parameters => _parameters;

    /// <summary>Elements in all; the first <see cref="DecayedLength"/> take weight decay.</summary>
    public int Length { get; private set; }

    public int DecayedLength { get; private set; }

    public bool IsBuilt => _values is not null;

    internal DeviceBuffer<float> Values => _values ?? throw new InvalidOperationException("the parameter arena is not built yet");

    /// <summary>The quantized weights' values (one allocation, like <see cref="Values"/>; none for an F32 model).</summary>
    internal DeviceBuffer<sbyte> Int8Values => _int8Values ?? throw new InvalidOperationException("the parameter arena holds no int8 weights, or is not built yet");

    /// <summary>The F16 and BF16 weights' values (one allocation; none unless a weight is kept in a half format).</summary>
    internal DeviceBuffer<ushort> HalfValues => _halfValues ?? throw new InvalidOperationException("the parameter arena holds no F16 or BF16 weights, or is not built yet");

    /// <summary>Whether any weight is quantized (such a model runs, but does not train).</summary>
    public bool IsQuantized => _parameters.Any(p => p.Type == DType.I8);

    /// <summary>The first weight that is not F32 (int8, or kept in F16 or BF16), which a model cannot train; null when all can.</summary>
    public Parameter? FirstUntrainable => _parameters.FirstOrDefault(p => p.Type != DType.F32);

    /// <summary>Bytes of parameter values per element type, for <c>info</c>: what the arena holds on its backend.</summary>
    public IReadOnlyDictionary<DType, long> BytesByType => Entries.GroupBy(e => e.Type).ToDictionary(g => g.Key, g => g.Sum(e => (long)e.Length) * DTypes.Size(g.Key));

    internal DeviceBuffer<float>? Gradients { get; private set; }

    /// <summary>Declares a tensor (a new head's); its value is uploaded by <see cref="Build"/>.</summary>
    public Parameter Add(string name, long[] shape, float[] values) => AddStacked((name, shape, () => values));

    /// <summary>
    /// Declares tensors laid out next to each other, used as one parameter (all decayed, or none), whose values
    /// <see cref="Build"/> asks for: a checkpoint tensor is read then, as float32 (the arena's one element type today).
    /// </summary>
    public Parameter AddStacked(params (string Name, long[] Shape, Func<float[]> Values)[] parts)
    {
        if (IsBuilt) throw new InvalidOperationException("the parameter arena is already built");
        bool decays = _decays(parts[0].Name);
        if (parts.Any(p => _decays(p.Name) != decays)) throw new ArgumentException($"stacked tensors {string.Join(", ", parts.Select(p => p.Name))} differ in weight decay");
        var entries = parts.Select(p => new ParameterEntry(p.Name, p.Shape, DType.F32, -1, decays)).ToArray();
        var parameter = new Parameter(this, entries);
        _pending.Add((parameter, [.. parts.Select(p => p.Values)]));
        _parameters.Add(parameter);
        return parameter;
    }

    /// <summary>
    /// Declares int8 weights (rows, columns) with one scale per row, laid out next to each other and used as one
    /// parameter (the query, key and value weights); the scales, named <c>{name}_scale</c>, are an F32 parameter beside it.
    /// </summary>
    public Parameter AddStackedInt8(params (string Name, long[] Shape, Func<sbyte[]> Values, Func<float[]> Scales)[] parts)
    {
        if (IsBuilt) throw new InvalidOperationException("the parameter arena is already built");
        if (parts.Any(p => p.Shape.Length != 2)) throw new ArgumentException($"int8 tensors {string.Join(", ", parts.Select(p => p.Name))} must be matrices");
        var entries = parts.Select(p => new ParameterEntry(p.Name, p.Shape, DType.I8, -1, Decays: false)).ToArray();
        int index = _parameters.Count;
        var scales = AddStacked([.. parts.Select(p => (p.Name + Quantization.Int8Quantizer.ScaleSuffix, new[] { p.Shape[0] }, p.Scales))]);
        var parameter = new Parameter(this, entries) { Scales = scales };
        _pendingInt8.Add((parameter, [.. parts.Select(p => p.Values)]));
        _parameters.Insert(index, parameter); // the weight before its scales, as saved
        return parameter;
    }

    /// <summary>
    /// Declares weights kept in their checkpoint's F16 or BF16 (<paramref name="type"/>; 16-bit values as stored), laid out
    /// next to each other and used as one parameter; they run in inference and are never trained.
    /// </summary>
    public Parameter AddStackedHalves(DType type, params (string Name, long[] Shape, Func<ushort[]> Values)[] parts)
    {
        if (IsBuilt) throw new InvalidOperationException("the parameter arena is already built");
        if (!DTypes.IsHalf(type)) throw new ArgumentException($"{type} is not a 16-bit floating-point type");
        var parameter = new Parameter(this, [.. parts.Select(p => new ParameterEntry(p.Name, p.Shape, type, -1, Decays: false))]);
        _pendingHalves.Add((parameter, [.. parts.Select(p => p.Values)]));
        _parameters.Add(parameter);
        return parameter;
    }

    /// <summary>Lays the declared tensors out (decayed first, each group in declaration order) and uploads them in one allocation.</summary>
    public void Build()
    {
        if (IsBuilt) throw new InvalidOperationException("the parameter arena is already built");
        var table = new List<ParameterEntry>();
        long offset = 0;
        foreach (bool decayed in new[] { true, false })
            foreach (var (parameter, _) in _pending.Where(p => p.Parameter.Decays == decayed))
            {
                Place(parameter, ref offset, table);
                if (decayed) DecayedLength = (int)offset;
            }
        Length = (int)CheckLength(offset, "parameters");
        _values = _backend.Allocate<float>(Math.Max(Length, 1));
        _backend.Upload<float>(Gather(_pending, Length), _values);
        _pending.Clear();
        if (_pendingInt8.Count > 0)
        {
            // The quantized weights: their own buffer, allocated only for a quantized model.
            offset = 0;
            foreach (var (parameter, _) in _pendingInt8) Place(parameter, ref offset, table);
            _int8Values = _backend.Allocate<sbyte>((int)CheckLength(offset, "int8 weights"));
            _backend.Upload<sbyte>(Gather(_pendingInt8, _int8Values.Length), _int8Values);
            _pendingInt8.Clear();
        }
        if (_pendingHalves.Count > 0)
        {
            // The F16 and BF16 weights: their own buffer, each parameter on a 16-byte boundary (kernels copy its rows in
            // 16-byte pieces).
            offset = 0;
            foreach (var (parameter, _) in _pendingHalves)
            {
                offset = (offset + HalfAlignment - 1) / HalfAlignment * HalfAlignment;
                Place(parameter, ref offset, table);
            }
            _halfValues = _backend.Allocate<ushort>((int)CheckLength(offset, "F16 and BF16 weights"));
            _backend.Upload<ushort>(Gather(_pendingHalves, _halfValues.Length), _halfValues);
            _pendingHalves.Clear();
        }
        Entries = table;
    }

    /// <summary>Elements (8 × 2 bytes) on whose multiples every F16 or BF16 parameter starts.</summary>
    private const int HalfAlignment = 8;

    /// <summary>Gives <paramref name="parameter"/>'s entries consecutive offsets from <paramref name="offset"/> and adds them to the table.</summary>
    private static void Place(Parameter parameter, ref long offset, List<ParameterEntry> table)
    {
        var placed = new ParameterEntry[parameter.Parts.Count];
        for (int i = 0; i < placed.Length; i++)
        {
            placed[i] = parameter.Parts[i] with { Offset = offset };
            offset += placed[i].Length;
        }
        parameter.Parts = placed;
        table.AddRange(placed);
    }

    private static long CheckLength(long length, string what) => length <= Array.MaxLength ? length
        : throw new EngineException($"the model has {length:N0} {what}, more than one buffer holds ({Array.MaxLength:N0})");

    /// <summary>The placed tensors' values (read now: a checkpoint's, or new ones) in one host array of <paramref name="length"/>.</summary>
    private static T[] Gather<T>(List<(Parameter Parameter, Func<T[]>[] Values)> pending, int length)
    {
        var host = new T[length];
        foreach (var (parameter, values) in pending)
            for (int i = 0; i < values.Length; i++)
            {
                var part = values[i]();
                if (part.Length != parameter.Parts[i].Length)
                    throw new ArgumentException($"{parameter.Parts[i].Name}: {part.Length} values for shape [{string.Join(", ", parameter.Parts[i].Shape)}]");
                part.CopyTo(host, parameter.Parts[i].Offset);
            }
        return host;
    }

    /// <summary>Sets every gradient to zero (allocating the gradient arena on first use): the optimizer's step boundary.</summary>
    public void ZeroGradients(ITrainingBackend backend)
    {
        Gradients ??= backend.Allocate<float>(Math.Max(Length, 1));
        backend.Clear(Gradients);
    }

    /// <summary>The entry named <paramref name="name"/>, or null.</summary>
    public ParameterEntry? Find(string name) => Entries.FirstOrDefault(e => e.Name == name);

    /// <summary>Every entry with its name, shape and values, in declaration (Hugging Face module) order: what <c>save_pretrained</c> writes.</summary>
    public IEnumerable<SafeTensorData> ToSafeTensors() =>
        Parameters.SelectMany(p => p.Parts).Select(e => e.Type switch
        {
            DType.I8 => new SafeTensorData(e.Name, DType.I8, e.Shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(ReadInt8(e).AsSpan()).ToArray()),
            DType.F16 or DType.BF16 => new SafeTensorData(e.Name, e.Type, e.Shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(ReadHalves(e).AsSpan()).ToArray()),
            _ => SafeTensorData.FromFloats(e.Name, Read(e), e.Shape),
        });

    /// <summary>An F32 entry's values, downloaded.</summary>
    public float[] Read(ParameterEntry entry) => Download(entry, Values);

    /// <summary>An F32 entry's gradient, downloaded; the gradients must exist (<see cref="ZeroGradients"/>).</summary>
    public float[] ReadGradient(ParameterEntry entry) =>
        Download(entry, Gradients ?? throw new InvalidOperationException($"{entry.Name} has no gradient: call ZeroGradients before a backward pass"));

    private float[] Download(ParameterEntry entry, DeviceBuffer<float> buffer)
    {
        if (entry.Type != DType.F32) throw new ArgumentException($"{entry.Name} is a {entry.Type} entry");
        var values = new float[entry.Length];
        _backend.Download(buffer.Slice(entry.Offset, entry.Length), values);
        return values;
    }

    /// <summary>An int8 entry's values, downloaded.</summary>
    public sbyte[] ReadInt8(ParameterEntry entry)
    {
        if (entry.Type != DType.I8) throw new ArgumentException($"{entry.Name} is a {entry.Type} entry");
        var values = new sbyte[entry.Length];
        _backend.Download(Int8Values.Slice(entry.Offset, entry.Length), values);
        return values;
    }

    /// <summary>An F16 or BF16 entry's 16-bit values, downloaded.</summary>
    public ushort[] ReadHalves(ParameterEntry entry)
    {
        if (!DTypes.IsHalf(entry.Type)) throw new ArgumentException($"{entry.Name} is a {entry.Type} entry");
        var values = new ushort[entry.Length];
        _backend.Download(HalfValues.Slice(entry.Offset, entry.Length), values);
        return values;
    }

    public void Dispose()
    {
        _values?.Dispose();
        _int8Values?.Dispose();
        _halfValues?.Dispose();
        Gradients?.Dispose();
    }
}
