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

/// <summary><c>torch.nn.Linear</c>: y = x·Wᵀ + b with W (out, in).</summary>
public sealed class Linear : IDisposable
{
    public int InFeatures { get; }
    public int OutFeatures { get; }
    internal DeviceBuffer<float> Weight { get; }
    internal DeviceBuffer<float> Bias { get; }

    internal Linear(IBackend backend, float[] weight, float[] bias, int inFeatures, int outFeatures)
    {
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        Weight = Weights.Upload(backend, weight);
        Bias = Weights.Upload(backend, bias);
    }

    /// <summary>Loads <c>weight</c> (out, in) and <c>bias</c> (out) from <paramref name="scope"/>.</summary>
    public static Linear Load(WeightScope scope, IBackend backend, int inFeatures, int outFeatures) =>
        new(backend, scope.Tensor("weight", outFeatures, inFeatures), scope.Tensor("bias", outFeatures), inFeatures, outFeatures);

    /// <summary>Several linears over the same input fused into one (their output rows stacked), e.g. Q, K and V.</summary>
    public static Linear LoadStacked(IBackend backend, int inFeatures, params (WeightScope Scope, int OutFeatures)[] parts)
    {
        var weights = parts.SelectMany(p => p.Scope.Tensor("weight", p.OutFeatures, inFeatures)).ToArray();
        var biases = parts.SelectMany(p => p.Scope.Tensor("bias", p.OutFeatures)).ToArray();
        return new Linear(backend, weights, biases, inFeatures, parts.Sum(p => p.OutFeatures));
    }

    /// <summary>output (rows, out) = activation(input (rows, in)·Wᵀ + b).</summary>
    public void Forward(IBackend backend, DeviceBuffer<float> output, DeviceBuffer<float> input, int rows, Activation activation = Activation.None) =>
        backend.Linear(output, input, Weight, Bias, rows, InFeatures, OutFeatures, activation);

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
    internal DeviceBuffer<float> Weight { get; }
    internal DeviceBuffer<float> Bias { get; }

    private LayerNorm(IBackend backend, float[] weight, float[] bias, float eps)
    {
        Channels = weight.Length;
        Eps = eps;
        Weight = Weights.Upload(backend, weight);
        Bias = Weights.Upload(backend, bias);
    }

    public static LayerNorm Load(WeightScope scope, IBackend backend, int channels, double eps) =>
        new(backend, scope.Tensor("weight", channels), scope.Tensor("bias", channels), (float)eps);

    /// <summary>output (rows, C) = LayerNorm(input + residual).</summary>
    public void Forward(IBackend backend, DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<float>? residual, int rows) =>
        backend.LayerNorm(output, input, residual, Weight, Bias, rows, Channels, Eps);

    public long ParameterCount => 2L * Channels;

    public void Dispose()
    {
        Weight.Dispose();
        Bias.Dispose();
    }
}
