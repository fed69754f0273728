using Engine.Backends;
using Engine.IO;

namespace Engine.Models;

/// <summary>A weight tensor on a backend, uploaded once at load time.</summary>
internal static class Weights
{
    public static DeviceBuffer<float> Upload(IBackend backend, float[] values)
    {
        var buffer = backend.Allocate<float>(values.Length);
        backend.Upload<float>(values, buffer);
        return buffer;
    }
}

/// <summary>
/// A trainable tensor on a backend: its value and, once training starts, its gradient (same length).
/// <see cref="Parts"/> names the checkpoint tensors it holds, in order (one, or several stacked, such as
/// the query, key and value weights fused into one product).
/// </summary>
public sealed class Parameter : IDisposable
{
    public IReadOnlyList<(string Name, int Length)> Parts { get; }
    internal DeviceBuffer<float> Value { get; }
    internal DeviceBuffer<float>? Gradient { get; private set; }

    internal Parameter(IBackend backend, float[] values, params (string Name, int Length)[] parts)
    {
        Parts = parts;
        Value = Weights.Upload(backend, values);
    }

    public string Name => string.Join("+", Parts.Select(p => p.Name));

    public int Length => Value.Length;

    /// <summary>Allocates the gradient on first use and sets it to zero (the optimizer's step boundary).</summary>
    public void ZeroGradient(ITrainingBackend backend)
    {
        Gradient ??= backend.Allocate<float>(Length);
        backend.Clear(Gradient);
    }

    public float[] ReadValue(IBackend backend) => Read(backend, Value);

    public float[] ReadGradient(IBackend backend) =>
        Read(backend, Gradient ?? throw new InvalidOperationException($"parameter {Name} has no gradient yet"));

    private float[] Read(IBackend backend, DeviceBuffer<float> buffer)
    {
        var values = new float[Length];
        backend.Download(buffer, values);
        return values;
    }

    public void Dispose()
    {
        Value.Dispose();
        Gradient?.Dispose();
    }
}

/// <summary><c>torch.nn.Linear</c>: y = x·Wᵀ + b with W (out, in).</summary>
public sealed class Linear : IDisposable
{
    public int InFeatures { get; }
    public int OutFeatures { get; }
    public Parameter Weight { get; }
    public Parameter Bias { get; }

    internal Linear(Parameter weight, Parameter bias, int inFeatures, int outFeatures)
    {
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = weight;
        Bias = bias;
    }

    /// <summary>Loads <c>weight</c> (out, in) and <c>bias</c> (out) from <paramref name="scope"/>.</summary>
    public static Linear Load(WeightScope scope, IBackend backend, int inFeatures, int outFeatures) =>
        LoadStacked(backend, inFeatures, (scope, outFeatures));

    /// <summary>Several linears over the same input fused into one (their output rows stacked), e.g. Q, K and V.</summary>
    public static Linear LoadStacked(IBackend backend, int inFeatures, params (WeightScope Scope, int OutFeatures)[] parts)
    {
        var weights = parts.SelectMany(p => p.Scope.Tensor("weight", p.OutFeatures, inFeatures)).ToArray();
        var biases = parts.SelectMany(p => p.Scope.Tensor("bias", p.OutFeatures)).ToArray();
        return new Linear(
            new Parameter(backend, weights, [.. parts.Select(p => (p.Scope.NameOf("weight"), p.OutFeatures * inFeatures))]),
            new Parameter(backend, biases, [.. parts.Select(p => (p.Scope.NameOf("bias"), p.OutFeatures))]),
            inFeatures, parts.Sum(p => p.OutFeatures));
    }

    /// <summary>A new layer with weights from N(0, std²) (seeded, <see cref="Training.SeedStreams.HeadWeights"/>) and zero bias, as Hugging Face initialises heads.</summary>
    public static Linear CreateRandom(IBackend backend, string name, int inFeatures, int outFeatures, double std, int seed)
    {
        var weights = Training.SeedStreams.HeadWeights(outFeatures * inFeatures, std, (ulong)seed);
        return new Linear(new Parameter(backend, weights, (name + ".weight", weights.Length)),
            new Parameter(backend, new float[outFeatures], (name + ".bias", outFeatures)), inFeatures, outFeatures);
    }

    /// <summary>output (rows, out) = activation(input (rows, in)·Wᵀ + b).</summary>
    public void Forward(IBackend backend, DeviceBuffer<float> output, DeviceBuffer<float> input, int rows, Activation activation = Activation.None) =>
        backend.Linear(output, input, Weight.Value, Bias.Value, rows, InFeatures, OutFeatures, activation);

    /// <summary>Parameter gradients +=; dInput (rows, in) = (null: not needed).</summary>
    public void Backward(ITrainingBackend backend, DeviceBuffer<float>? dInput, DeviceBuffer<float> dOutput, DeviceBuffer<float> input, int rows) =>
        backend.LinearBackward(dInput, Gradient(Weight), Gradient(Bias), dOutput, input, Weight.Value, rows, InFeatures, OutFeatures);

    internal static DeviceBuffer<float> Gradient(Parameter parameter) =>
        parameter.Gradient ?? throw new InvalidOperationException($"parameter {parameter.Name} has no gradient: call ZeroGradients before a backward pass");

    public IEnumerable<Parameter> Parameters => [Weight, Bias];

    public long ParameterCount => (long)InFeatures * OutFeatures + OutFeatures;

    public void Dispose()
    {
        Weight.Dispose();
        Bias.Dispose();
    }
}

/// <summary><c>torch.nn.LayerNorm</c> over the last dimension, with an optional residual added first.</summary>
public sealed class LayerNorm : IDisposable
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

    public static LayerNorm Load(WeightScope scope, IBackend backend, int channels, double eps) =>
        new(new Parameter(backend, scope.Tensor("weight", channels), (scope.NameOf("weight"), channels)),
            new Parameter(backend, scope.Tensor("bias", channels), (scope.NameOf("bias"), channels)), (float)eps);

    /// <summary>output (rows, C) = LayerNorm(input + residual).</summary>
    public void Forward(IBackend backend, DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<float>? residual, int rows) =>
        backend.LayerNorm(output, input, residual, Weight.Value, Bias.Value, rows, Channels, Eps);

    /// <summary>Parameter gradients +=; dInput (rows, C) = ∂L/∂(input + residual).</summary>
    public void Backward(ITrainingBackend backend, DeviceBuffer<float> dInput, DeviceBuffer<float> dOutput, DeviceBuffer<float> input,
        DeviceBuffer<float>? residual, int rows) =>
        backend.LayerNormBackward(dInput, Linear.Gradient(Weight), Linear.Gradient(Bias), dOutput, input, residual, Weight.Value, rows, Channels, Eps);

    public IEnumerable<Parameter> Parameters => [Weight, Bias];

    public long ParameterCount => 2L * Channels;

    public void Dispose()
    {
        Weight.Dispose();
        Bias.Dispose();
    }
}
