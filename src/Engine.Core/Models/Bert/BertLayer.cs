using Engine.Backends;
using Engine.IO;

namespace Engine.Models.Bert;

/// <summary>
/// <c>BertLayer</c>: attention (self + output), intermediate, output — the Hugging Face module tree, with
/// the self-attention's query, key and value linears fused into one (3C, C) product at load time.
/// </summary>
public sealed class BertLayer : IDisposable
{
    private readonly BertConfig _config;

    /// <summary><c>attention.self.{query,key,value}</c> stacked: (3C, C).</summary>
    public Linear QueryKeyValue { get; }
    /// <summary><c>attention.output.dense</c> and <c>attention.output.LayerNorm</c> (BertSelfOutput).</summary>
    public Linear AttentionOutputDense { get; }
    public LayerNorm AttentionOutputLayerNorm { get; }
    /// <summary><c>intermediate.dense</c> (BertIntermediate), followed by GELU.</summary>
    public Linear IntermediateDense { get; }
    /// <summary><c>output.dense</c> and <c>output.LayerNorm</c> (BertOutput).</summary>
    public Linear OutputDense { get; }
    public LayerNorm OutputLayerNorm { get; }

    internal BertLayer(WeightScope scope, BertConfig config, IBackend backend)
    {
        _config = config;
        int C = config.HiddenSize, I = config.IntermediateSize;
        var attention = scope.Sub("attention");
        var self = attention.Sub("self");
        QueryKeyValue = Linear.LoadStacked(backend, C, (self.Sub("query"), C), (self.Sub("key"), C), (self.Sub("value"), C));
        AttentionOutputDense = Linear.Load(attention.Sub("output").Sub("dense"), backend, C, C);
        AttentionOutputLayerNorm = LayerNorm.Load(attention.Sub("output").Sub("LayerNorm"), backend, C, config.LayerNormEps);
        IntermediateDense = Linear.Load(scope.Sub("intermediate").Sub("dense"), backend, C, I);
        OutputDense = Linear.Load(scope.Sub("output").Sub("dense"), backend, I, C);
        OutputLayerNorm = LayerNorm.Load(scope.Sub("output").Sub("LayerNorm"), backend, C, config.LayerNormEps);
    }

    /// <summary>hidden (B,T,C) in place; the arena supplies the intermediates.</summary>
    internal void Forward(IBackend backend, BertActivations a, int B, int T)
    {
        int rows = B * T;
        QueryKeyValue.Forward(backend, a.QueryKeyValue, a.Hidden, rows);                                 // (B,T,3C)
        backend.Attention(a.Context, a.QueryKeyValue, a.AttentionMask, B, T, _config.NumAttentionHeads, _config.HeadSize); // (B,T,C)
        AttentionOutputDense.Forward(backend, a.Projected, a.Context, rows);                             // (B,T,C)
        AttentionOutputLayerNorm.Forward(backend, a.AttentionOutput, a.Projected, a.Hidden, rows);       // (B,T,C)
        IntermediateDense.Forward(backend, a.Intermediate, a.AttentionOutput, rows, Activation.Gelu);    // (B,T,I)
        OutputDense.Forward(backend, a.Projected, a.Intermediate, rows);                                 // (B,T,C)
        OutputLayerNorm.Forward(backend, a.Hidden, a.Projected, a.AttentionOutput, rows);                // (B,T,C)
    }

    public long ParameterCount => QueryKeyValue.ParameterCount + AttentionOutputDense.ParameterCount + AttentionOutputLayerNorm.ParameterCount
        + IntermediateDense.ParameterCount + OutputDense.ParameterCount + OutputLayerNorm.ParameterCount;

    public void Dispose()
    {
        QueryKeyValue.Dispose();
        AttentionOutputDense.Dispose();
        AttentionOutputLayerNorm.Dispose();
        IntermediateDense.Dispose();
        OutputDense.Dispose();
        OutputLayerNorm.Dispose();
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
