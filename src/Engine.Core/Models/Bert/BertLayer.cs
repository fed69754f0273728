using Engine.Backends;
using Engine.IO;

namespace Engine.Models.Bert;

/// <summary>
/// <c>BertSelfAttention</c>: query, key and value projections and scaled dot-product attention over the
/// unmasked keys. The three linears are fused into one (3C, C) product at load time.
/// </summary>
public sealed class BertSelfAttention : IDisposable
{
    private readonly int _heads, _headSize;

    /// <summary><c>query</c>, <c>key</c> and <c>value</c> stacked: (3C, C).</summary>
    public Linear QueryKeyValue { get; }

    internal BertSelfAttention(WeightScope scope, BertConfig config, IBackend backend)
    {
        _heads = config.NumAttentionHeads;
        _headSize = config.HeadSize;
        int C = config.HiddenSize;
        QueryKeyValue = Linear.LoadStacked(backend, C, (scope.Sub("query"), C), (scope.Sub("key"), C), (scope.Sub("value"), C));
    }

    /// <summary>context (B,T,C) from hidden (B,T,C), with <paramref name="dropout"/> on the probabilities; qkv (B,T,3C) is kept.</summary>
    internal void Forward(IBackend backend, DeviceBuffer<float> context, DeviceBuffer<float> qkv, DeviceBuffer<float> hidden,
        DeviceBuffer<int> attentionMask, int B, int T, DropoutMask dropout)
    {
        QueryKeyValue.Forward(backend, qkv, hidden, B * T);
        backend.Attention(context, qkv, attentionMask, B, T, _heads, _headSize, dropout);
    }

    public long ParameterCount => QueryKeyValue.ParameterCount;

    public void Dispose() => QueryKeyValue.Dispose();
}

/// <summary><c>BertSelfOutput</c> and <c>BertOutput</c>: dense projection, then LayerNorm with the residual.</summary>
public sealed class BertProjectionOutput : IDisposable
{
    public Linear Dense { get; }
    public LayerNorm LayerNorm { get; }

    internal BertProjectionOutput(WeightScope scope, BertConfig config, IBackend backend, int inFeatures)
    {
        Dense = Linear.Load(scope.Sub("dense"), backend, inFeatures, config.HiddenSize);
        LayerNorm = LayerNorm.Load(scope.Sub("LayerNorm"), backend, config.HiddenSize, config.LayerNormEps);
    }

    /// <summary>output (rows,C) = LayerNorm(dense(input) + residual); projected (rows,C) is scratch.</summary>
    internal void Forward(IBackend backend, DeviceBuffer<float> output, DeviceBuffer<float> projected, DeviceBuffer<float> input,
        DeviceBuffer<float> residual, int rows)
    {
        Dense.Forward(backend, projected, input, rows);
        LayerNorm.Forward(backend, output, projected, residual, rows);
    }

    public long ParameterCount => Dense.ParameterCount + LayerNorm.ParameterCount;

    public void Dispose()
    {
        Dense.Dispose();
        LayerNorm.Dispose();
    }
}

/// <summary><c>BertAttention</c>: self-attention (<c>self</c>) and its output block (<c>output</c>).</summary>
public sealed class BertAttention : IDisposable
{
    public BertSelfAttention Self { get; }
    public BertProjectionOutput Output { get; }

    internal BertAttention(WeightScope scope, BertConfig config, IBackend backend)
    {
        Self = new BertSelfAttention(scope.Sub("self"), config, backend);
        Output = new BertProjectionOutput(scope.Sub("output"), config, backend, config.HiddenSize);
    }

    public long ParameterCount => Self.ParameterCount + Output.ParameterCount;

    public void Dispose()
    {
        Self.Dispose();
        Output.Dispose();
    }
}

/// <summary>
/// <c>BertLayer</c>: attention, then intermediate (<c>intermediate.dense</c> with GELU) and output.
/// </summary>
public sealed class BertLayer : IDisposable
{
    public BertAttention Attention { get; }
    /// <summary><c>intermediate.dense</c> (BertIntermediate), followed by GELU (fused into the product).</summary>
    public Linear Intermediate { get; }
    public BertProjectionOutput Output { get; }

    internal BertLayer(WeightScope scope, BertConfig config, IBackend backend)
    {
        Attention = new BertAttention(scope.Sub("attention"), config, backend);
        Intermediate = Linear.Load(scope.Sub("intermediate").Sub("dense"), backend, config.HiddenSize, config.IntermediateSize);
        Output = new BertProjectionOutput(scope.Sub("output"), config, backend, config.IntermediateSize);
    }

    /// <summary>The residual stream a.Hidden (B,T,C) in place; the arena supplies the intermediates.</summary>
    internal void Forward(IBackend backend, BertActivations a, int B, int T)
    {
        int rows = B * T;
        Attention.Self.Forward(backend, a.Context, a.QueryKeyValue, a.Hidden, a.AttentionMask, B, T, DropoutMask.None); // (B,T,C)
        Attention.Output.Forward(backend, a.AttentionOutput, a.Projected, a.Context, a.Hidden, rows);       // (B,T,C)
        Intermediate.Forward(backend, a.Intermediate, a.AttentionOutput, rows, Activation.Gelu);             // (B,T,I)
        Output.Forward(backend, a.Hidden, a.Projected, a.Intermediate, a.AttentionOutput, rows);             // (B,T,C)
    }

    public long ParameterCount => Attention.ParameterCount + Intermediate.ParameterCount + Output.ParameterCount;

    /// <summary>In Hugging Face's order: Q/K/V, attention output dense and LayerNorm, intermediate, output dense and LayerNorm.</summary>
    public IEnumerable<Parameter> Parameters =>
    [
        .. Attention.Self.QueryKeyValue.Parameters, .. Attention.Output.Dense.Parameters, .. Attention.Output.LayerNorm.Parameters,
        .. Intermediate.Parameters, .. Output.Dense.Parameters, .. Output.LayerNorm.Parameters,
    ];

    public void Dispose()
    {
        Attention.Dispose();
        Intermediate.Dispose();
        Output.Dispose();
    }
}

/// <summary><c>BertEncoder</c>: the stack of <c>layer.N</c>.</summary>
public sealed class BertEncoder : IDisposable
{
    public IReadOnlyList<BertLayer> Layers { get; }

    internal BertEncoder(WeightScope scope, BertConfig config, IBackend backend)
    {
        var layers = new List<BertLayer>(config.NumHiddenLayers);
        try
        {
            for (int i = 0; i < config.NumHiddenLayers; i++) layers.Add(new BertLayer(scope.Sub($"layer.{i}"), config, backend));
        }
        catch
        {
            foreach (var layer in layers) layer.Dispose();
            throw;
        }
        Layers = layers;
    }

    internal void Forward(IBackend backend, BertActivations a, int B, int T)
    {
        foreach (var layer in Layers) layer.Forward(backend, a, B, T);
    }

    public long ParameterCount => Layers.Sum(l => l.ParameterCount);

    public void Dispose()
    {
        foreach (var layer in Layers) layer.Dispose();
    }
}

/// <summary><c>BertPooler</c>: tanh(dense(hidden[:, 0])).</summary>
public sealed class BertPooler : IDisposable
{
    private readonly int _hidden;
    public Linear Dense { get; }

    internal BertPooler(WeightScope scope, BertConfig config, IBackend backend)
    {
        _hidden = config.HiddenSize;
        Dense = Linear.Load(scope.Sub("dense"), backend, _hidden, _hidden);
    }

    /// <summary>output (B,C) from hidden (B,T,C); firstTokens (B,C) is scratch.</summary>
    internal void Forward(IBackend backend, DeviceBuffer<float> output, DeviceBuffer<float> firstTokens, DeviceBuffer<float> hidden, int B, int T)
    {
        backend.FirstToken(firstTokens, hidden, B, T, _hidden);
        Dense.Forward(backend, output, firstTokens, B, Activation.Tanh);
    }

    public void Dispose() => Dense.Dispose();
}
