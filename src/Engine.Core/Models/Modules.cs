using Engine.Backends;
using Engine.IO;

namespace Engine.Models;

/// <summary>
/// Where a module's parameters come from and what they are called: the checkpoint scope they are read from
/// (whatever prefix and legacy names the checkpoint uses) or, for a model or head trained from scratch, a
/// <see cref="WeightInitializer"/>; the canonical Hugging Face name they get in the arena (what is saved); and the
/// arena itself. Built one module at a time: <c>scope.Sub("encoder").Sub("layer.0")</c>.
/// </summary>
public sealed class ParameterScope
{
    private readonly WeightScope? _source;
    private readonly WeightInitializer? _initializer;
    private readonly string _name;

    public ParameterArena Arena { get; }

    public ParameterScope(ParameterArena arena, WeightScope source, string name) : this(arena, source, null, name) { }

    /// <summary>A scope whose every tensor is new, drawn by <paramref name="initializer"/> (pre-training from scratch, a fresh head).</summary>
    public ParameterScope(ParameterArena arena, WeightInitializer initializer, string name) : this(arena, null, initializer, name) { }

    private ParameterScope(ParameterArena arena, WeightScope? source, WeightInitializer? initializer, string name)
    {
        Arena = arena;
        _source = source;
        _initializer = initializer;
        _name = name;
    }

    public ParameterScope Sub(string name) => new(Arena, _source?.Sub(name), _initializer, _name + name + ".");

    /// <summary>The same names, every tensor new from <paramref name="initializer"/> (a head the checkpoint lacks).</summary>
    public ParameterScope Fresh(WeightInitializer initializer) => new(Arena, null, initializer, _name);

    /// <summary>The canonical name of <paramref name="leaf"/> here (e.g. <c>bert.encoder.layer.0.output.dense.weight</c>).</summary>
    public string NameOf(string leaf) => _name + leaf;

    /// <summary>Whether the checkpoint holds <paramref name="leaf"/> here (a new scope has every tensor it is asked for).</summary>
    public bool Has(string leaf) => _source?.Has(leaf) ?? true;

    /// <summary>
    /// Declares <paramref name="leaf"/> in the arena, which reads it when built: the checkpoint's (its shape checked against
    /// <paramref name="shape"/>; an I8 matrix with its <c>{leaf}_scale</c> stays quantized), or a new one.
    /// </summary>
    public Parameter Load(string leaf, params long[] shape) => LoadStacked(leaf, halvesKept: false, [(this, shape)]);

    /// <summary>
    /// Declares a matrix whose ops also read F16 and BF16 (a Linear weight, the word-embedding table): as <see cref="Load"/>,
    /// but stored in F16 or BF16 it stays so when the arena keeps half weights (<see cref="HalfWeights.Keep"/>).
    /// </summary>
    public Parameter LoadMatrix(string leaf, params long[] shape) => LoadStacked(leaf, halvesKept: true, [(this, shape)]);

    /// <summary>
    /// Declares the same leaf of several scopes side by side, as one parameter: int8 when every part is stored
    /// quantized; F32 otherwise (a quantized part beside an F32 one is dequantized, so that they stack).
    /// </summary>
    public static Parameter LoadStacked(string leaf, params (ParameterScope Scope, long[] Shape)[] parts) => LoadStacked(leaf, halvesKept: false, parts);

    /// <summary>
    /// <see cref="LoadStacked(string, ValueTuple{ParameterScope, long[]}[])"/> for matrices whose ops also read F16 and BF16:
    /// parts all stored in the same half format stay in it when the arena keeps half weights.
    /// </summary>
    public static Parameter LoadStackedMatrix(string leaf, params (ParameterScope Scope, long[] Shape)[] parts) => LoadStacked(leaf, halvesKept: true, parts);

    private static Parameter LoadStacked(string leaf, bool halvesKept, (ParameterScope Scope, long[] Shape)[] parts)
    {
        var arena = parts[0].Scope.Arena;
        var quantized = parts.Select(p => p.Scope.Int8Tensor(leaf, p.Shape)).ToArray();
        if (quantized.All(q => q is not null)) return arena.AddStackedInt8([.. quantized.Select(q => q!.Value)]);
        if (halvesKept && arena.HalfWeights == HalfWeights.Keep && quantized.All(q => q is null))
        {
            var stored = parts.Select(p => p.Scope._source?.Tensor(leaf, p.Shape)).ToArray();
            if (stored[0] is { } first && DTypes.IsHalf(first.Type) && stored.All(t => t?.Type == first.Type))
                return arena.AddStackedHalves(first.Type, [.. stored.Select((t, i) => (parts[i].Scope.NameOf(leaf), t!.Shape, (Func<ushort[]>)t.ToHalves))]);
        }
        return arena.AddStacked([.. parts.Select((p, i) => quantized[i] is { } q
            ? (q.Name, q.Shape, () => Quantization.Int8Quantizer.Dequantize(q.Values(), q.Scales(), (int)q.Shape[1]))
            : p.Scope.Tensor(leaf, p.Shape))]);
    }

    private (string Name, long[] Shape, Func<float[]> Values) Tensor(string leaf, long[] shape)
    {
        string name = NameOf(leaf);
        if (_source is null) return (name, shape, () => _initializer!.Values(name, shape));
        var stored = _source.Tensor(leaf, shape);
        return (name, stored.Shape, stored.ToFloat32);
    }

    /// <summary>
    /// The checkpoint's int8 form of <paramref name="leaf"/>, or null when it is stored as floats. An I8 tensor needs its
    /// scales (one per row, finite and not negative), and scales need an I8 tensor: anything else is one clear error.
    /// </summary>
    private (string Name, long[] Shape, Func<sbyte[]> Values, Func<float[]> Scales)? Int8Tensor(string leaf, long[] shape)
    {
        if (_source is null) return null;
        string scaleLeaf = leaf + Quantization.Int8Quantizer.ScaleSuffix;
        bool hasScales = _source.Has(scaleLeaf);
        var stored = _source.Tensor(leaf, shape);
        if (stored.Type != DType.I8)
            return hasScales ? throw new EngineException($"tensor '{stored.Name}' is {stored.Type} but has int8 scales '{_source.NameOf(scaleLeaf)}'") : null;
        if (!hasScales) throw new EngineException($"tensor '{stored.Name}' is int8 but its scales '{_source.NameOf(scaleLeaf)}' are missing");
        if (shape.Length != 2) throw new EngineException($"tensor '{stored.Name}' is int8 but is not a matrix");
        var scales = _source.Tensor(scaleLeaf, shape[0]);
        return (NameOf(leaf), shape, stored.ToInt8, () =>
        {
            var values = scales.ToFloat32();
            int bad = Array.FindIndex(values, v => v < 0);
            return bad < 0 ? values : throw new EngineException($"tensor '{scales.Name}' holds a negative scale at row {bad}");
        });
    }
}

/// <summary><c>torch.nn.Linear</c>: y = x·Wᵀ + b with W (out, in).</summary>
public sealed class Linear
{
    public int InFeatures { get; }
    public int OutFeatures { get; }
    public Parameter Weight { get; }
    public Parameter? Bias { get; }

    public Linear(Parameter weight, Parameter? bias, int inFeatures, int outFeatures)
    {
        if (weight.Length != (long)inFeatures * outFeatures || bias is not null && bias.Length != outFeatures)
            throw new ArgumentException($"{weight.Name}: {weight.Length} weights and {bias?.Length} biases for a {inFeatures}→{outFeatures} linear");
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = weight;
        Bias = bias;
    }

    /// <summary>Loads <c>weight</c> (out, in) and <c>bias</c> (out) from <paramref name="scope"/>.</summary>
    public static Linear Load(ParameterScope scope, int inFeatures, int outFeatures) =>
        new(scope.LoadMatrix("weight", outFeatures, inFeatures), scope.Load("bias", outFeatures), inFeatures, outFeatures);

    /// <summary>Several linears over the same input fused into one (their output rows stacked), e.g. Q, K and V.</summary>
    public static Linear LoadStacked(int inFeatures, params (ParameterScope Scope, int OutFeatures)[] parts) =>
        new(ParameterScope.LoadStackedMatrix("weight", [.. parts.Select(p => (p.Scope, new long[] { p.OutFeatures, inFeatures }))]),
            ParameterScope.LoadStacked("bias", [.. parts.Select(p => (p.Scope, new long[] { p.OutFeatures }))]),
            inFeatures, parts.Sum(p => p.OutFeatures));

    /// <summary>A new layer with weights from N(0, std²) (seeded, <see cref="Training.SeedStreams.HeadWeights"/>) and zero bias, as Hugging Face initialises heads.</summary>
    public static Linear CreateRandom(ParameterScope scope, int inFeatures, int outFeatures, double std, int seed) =>
        new(scope.Arena.Add(scope.NameOf("weight"), [outFeatures, inFeatures], Training.SeedStreams.HeadWeights(outFeatures * inFeatures, std, (ulong)seed)),
            scope.Arena.Add(scope.NameOf("bias"), [outFeatures], new float[outFeatures]), inFeatures, outFeatures);

    /// <summary>
    /// output (rows, out) = activation(input (rows, in)·Wᵀ + b), the activation fused into the product's epilogue;
    /// <paramref name="preActivation"/> (rows, out), when given, keeps input·Wᵀ + b for the activation's backward.
    /// </summary>
    public void Forward(IBackend backend, DeviceBuffer<float> output, DeviceBuffer<float> input, int rows, Activation activation = Activation.None,
        DeviceBuffer<float>? preActivation = null) =>
        backend.Linear(output, input, Weight.Tensor, Bias?.Tensor, rows, InFeatures, OutFeatures, activation, preActivation);

    /// <summary>Parameter gradients +=; dInput (rows, in) = (null: not needed). <paramref name="input"/> is the forward's.</summary>
    public void Backward(ITrainingBackend backend, DeviceBuffer<float>? dInput, DeviceBuffer<float> dOutput, DeviceBuffer<float> input, int rows) =>
        backend.LinearBackward(dInput, Weight.GradientTensor, Bias?.GradientTensor, dOutput, input, Weight.Tensor, rows, InFeatures, OutFeatures);

    public long ParameterCount => (long)InFeatures * OutFeatures + (Bias is null ? 0 : OutFeatures);
}

/// <summary><c>torch.nn.LayerNorm</c> over the last dimension, with an optional residual added first.</summary>
public sealed class LayerNorm
{
    public int Channels { get; }
    public float Eps { get; }
    public Parameter Weight { get; }
    public Parameter Bias { get; }

    private LayerNorm(Parameter weight, Parameter bias, float eps)
    {
        Channels = weight.Length;
        Eps = eps;
        Weight = weight;
        Bias = bias;
    }

    public static LayerNorm Load(ParameterScope scope, int channels, double eps) =>
        new(scope.Load("weight", channels), scope.Load("bias", channels), (float)eps);

    /// <summary>output (rows, C) = LayerNorm(input + residual).</summary>
    public void Forward(IBackend backend, DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<float>? residual, int rows) =>
        backend.LayerNorm(output, input, residual, Weight.Tensor, Bias.Tensor, rows, Channels, Eps);

    /// <summary>Parameter gradients +=; dInput (rows, C) = ∂L/∂(input + residual), the forward's input and residual given again.</summary>
    public void Backward(ITrainingBackend backend, DeviceBuffer<float> dInput, DeviceBuffer<float> dOutput, DeviceBuffer<float> input,
        DeviceBuffer<float>? residual, int rows) =>
        backend.LayerNormBackward(dInput, Weight.GradientTensor, Bias.GradientTensor, dOutput, input, residual, Weight.Tensor, rows, Channels, Eps);

    public long ParameterCount => 2L * Channels;
}
