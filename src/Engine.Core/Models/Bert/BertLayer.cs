using Engine.Backends;

namespace Engine.Models.Bert;

// The encoder's modules, as transformers' modeling_bert names them, each with its forward and its backward.
// A forward takes its inputs and writes its output; what its backward will read it keeps through the pass
// (pass.Kept), which in inference is scratch shared by every layer. A backward takes the gradient of the
// output, the forward's inputs again, and writes the gradient of its input; parameter gradients are added.

/// <summary>
/// <c>BertSelfAttention</c>: query, key and value projections (fused at load time into one (3C, C) product) and
/// scaled dot-product attention over the unmasked keys, with dropout on the probabilities.
/// </summary>
public sealed class BertSelfAttention
{
    private readonly int _heads, _headSize, _layer;

    /// <summary><c>query</c>, <c>key</c> and <c>value</c> stacked: (3C, C).</summary>
    public Linear QueryKeyValue { get; }

    internal BertSelfAttention(ParameterScope scope, BertConfig config, int layer)
    {
        (_heads, _headSize, _layer) = (config.NumAttentionHeads, config.HeadSize, layer);
        int C = config.HiddenSize;
        QueryKeyValue = Linear.LoadStacked(C, (scope.Sub("query"), C), (scope.Sub("key"), C), (scope.Sub("value"), C));
    }

    private int C => _heads * _headSize;

    /// <summary>context (rows,C) from hidden (rows,C); qkv (rows,3C) is kept.</summary>
    internal void Forward(ForwardPass pass, DeviceBuffer<float> context, DeviceBuffer<float> hidden)
    {
        var qkv = pass.Kept(this, "qkv", 3 * C);
        QueryKeyValue.Forward(pass.Backend, qkv, hidden, pass.Rows);
        pass.Backend.Attention(context, qkv, pass.Sequences, _heads, _headSize, pass.Dropout.AttentionProbabilitiesMask(_layer));
        if (pass.Attentions is not null) pass.CollectAttention(qkv, _heads, _headSize);
    }

    /// <summary>dHidden (rows,C) = ∂L/∂hidden through Q, K and V, from dContext (rows,C); probabilities recomputed.</summary>
    internal void Backward(ForwardPass pass, DeviceBuffer<float> dHidden, DeviceBuffer<float> dContext, DeviceBuffer<float> hidden)
    {
        var dQkv = pass.Scratch("dQkv", 3 * C);
        pass.Training.AttentionBackward(dQkv, dContext, pass.Kept(this, "qkv", 3 * C), pass.Sequences, _heads, _headSize,
            pass.Dropout.AttentionProbabilitiesMask(_layer));
        QueryKeyValue.Backward(pass.Training, dHidden, dQkv, hidden, pass.Rows);
    }

    public long ParameterCount => QueryKeyValue.ParameterCount;
}

/// <summary><c>BertSelfOutput</c> and <c>BertOutput</c>: dense projection, dropout, then LayerNorm with the residual.</summary>
public sealed class BertProjectionOutput
{
    private readonly Func<DropoutSettings, DropoutMask> _dropout;
    public Linear Dense { get; }
    public LayerNorm LayerNorm { get; }

    internal BertProjectionOutput(ParameterScope scope, BertConfig config, int inFeatures, Func<DropoutSettings, DropoutMask> dropout)
    {
        _dropout = dropout;
        Dense = Linear.Load(scope.Sub("dense"), inFeatures, config.HiddenSize);
        LayerNorm = LayerNorm.Load(scope.Sub("LayerNorm"), config.HiddenSize, config.LayerNormEps);
    }

    private int C => Dense.OutFeatures;

    /// <summary>output (rows,C) = LayerNorm(dropout(dense(input)) + residual); the projection (after dropout) is kept.</summary>
    internal void Forward(ForwardPass pass, DeviceBuffer<float> output, DeviceBuffer<float> input, DeviceBuffer<float> residual)
    {
        var projected = pass.Kept(this, "projected", C);
        Dense.Forward(pass.Backend, projected, input, pass.Rows);
        pass.ApplyDropout(projected, pass.Rows * C, _dropout(pass.Dropout));
        LayerNorm.Forward(pass.Backend, output, projected, residual, pass.Rows);
    }

    /// <summary>
    /// From dOutput (rows,C): dSum (rows,C) = ∂L/∂(projection + residual), which is also the residual's gradient, and
    /// dInput (rows,in) = ∂L/∂input.
    /// </summary>
    internal void Backward(ForwardPass pass, DeviceBuffer<float> dInput, DeviceBuffer<float> dSum, DeviceBuffer<float> dOutput,
        DeviceBuffer<float> input, DeviceBuffer<float> residual)
    {
        LayerNorm.Backward(pass.Training, dSum, dOutput, pass.Kept(this, "projected", C), residual, pass.Rows);
        var dProjected = pass.Scratch("dProjected", C);
        pass.Training.DropoutBackward(dProjected, dSum, pass.Rows * C, _dropout(pass.Dropout));
        Dense.Backward(pass.Training, dInput, dProjected, input, pass.Rows);
    }

    public long ParameterCount => Dense.ParameterCount + LayerNorm.ParameterCount;
}

/// <summary><c>BertIntermediate</c>: dense then GELU, fused into the product's epilogue; a recording pass has the epilogue keep the pre-activation too.</summary>
public sealed class BertIntermediate
{
    public Linear Dense { get; }

    internal BertIntermediate(ParameterScope scope, BertConfig config) =>
        Dense = Linear.Load(scope.Sub("dense"), config.HiddenSize, config.IntermediateSize);

    private int I => Dense.OutFeatures;

    /// <summary>output (rows,I) = GELU(dense(input (rows,C))).</summary>
    internal void Forward(ForwardPass pass, DeviceBuffer<float> output, DeviceBuffer<float> input) =>
        Dense.Forward(pass.Backend, output, input, pass.Rows, Activation.Gelu, pass.Records ? pass.Kept(this, "pre_gelu", I) : null);

    /// <summary>dInput (rows,C) from dOutput (rows,I), which this overwrites.</summary>
    internal void Backward(ForwardPass pass, DeviceBuffer<float> dInput, DeviceBuffer<float> dOutput, DeviceBuffer<float> input)
    {
        pass.Training.ActivateBackward(dOutput, dOutput, pass.Kept(this, "pre_gelu", I), pass.Rows * I, Activation.Gelu);
        Dense.Backward(pass.Training, dInput, dOutput, input, pass.Rows);
    }

    public long ParameterCount => Dense.ParameterCount;
}

/// <summary><c>BertAttention</c>: self-attention (<c>self</c>) and its output block (<c>output</c>).</summary>
public sealed class BertAttention
{
    public BertSelfAttention Self { get; }
    public BertProjectionOutput Output { get; }

    internal BertAttention(ParameterScope scope, BertConfig config, int layer)
    {
        Self = new BertSelfAttention(scope.Sub("self"), config, layer);
        Output = new BertProjectionOutput(scope.Sub("output"), config, config.HiddenSize, d => d.AttentionOutputMask(layer));
    }

    public long ParameterCount => Self.ParameterCount + Output.ParameterCount;
}

/// <summary><c>BertLayer</c>: attention, then intermediate and output.</summary>
public sealed class BertLayer
{
    private readonly int _hidden, _intermediate;
    public BertAttention Attention { get; }
    public BertIntermediate Intermediate { get; }
    public BertProjectionOutput Output { get; }

    internal BertLayer(ParameterScope scope, BertConfig config, int index)
    {
        (_hidden, _intermediate) = (config.HiddenSize, config.IntermediateSize);
        Attention = new BertAttention(scope.Sub("attention"), config, index);
        Intermediate = new BertIntermediate(scope.Sub("intermediate"), config);
        Output = new BertProjectionOutput(scope.Sub("output"), config, config.IntermediateSize, d => d.OutputMask(index));
    }

    /// <summary>output (rows,C) from input (rows,C); the same buffer when the pass records nothing (the residual stream in place).</summary>
    internal void Forward(ForwardPass pass, DeviceBuffer<float> output, DeviceBuffer<float> input)
    {
        var context = pass.Kept(this, "context", _hidden);
        var attentionOutput = pass.Kept(this, "attention_output", _hidden);
        var intermediate = pass.Kept(this, "intermediate", _intermediate);
        Attention.Self.Forward(pass, context, input);                                   // (rows,C)
        Attention.Output.Forward(pass, attentionOutput, context, input);                // (rows,C)
        Intermediate.Forward(pass, intermediate, attentionOutput);                      // (rows,I)
        Output.Forward(pass, output, intermediate, attentionOutput);                    // (rows,C)
    }

    /// <summary>dHidden (rows,C): ∂L/∂output in, ∂L/∂input out; <paramref name="input"/> is the forward's.</summary>
    internal void Backward(ForwardPass pass, DeviceBuffer<float> dHidden, DeviceBuffer<float> input)
    {
        var backend = pass.Training;
        int n = pass.Rows * _hidden;
        var (context, attentionOutput, intermediate) =
            (pass.Kept(this, "context", _hidden), pass.Kept(this, "attention_output", _hidden), pass.Kept(this, "intermediate", _intermediate));
        var (dResidual, dIntermediate, dContext) = (pass.Scratch("dResidual", _hidden), pass.Scratch("dIntermediate", _intermediate), pass.Scratch("dContext", _hidden));
        Output.Backward(pass, dIntermediate, dResidual, dHidden, intermediate, attentionOutput);
        Intermediate.Backward(pass, dHidden, dIntermediate, attentionOutput);
        backend.Accumulate(dResidual, dHidden, n);                                     // ∂L/∂attention_output from both of its uses
        Attention.Output.Backward(pass, dContext, dHidden, dResidual, context, input);
        Attention.Self.Backward(pass, dResidual, dContext, input);
        backend.Accumulate(dHidden, dResidual, n);                                     // ∂L/∂input through the residual and through Q, K, V
    }

    public long ParameterCount => Attention.ParameterCount + Intermediate.ParameterCount + Output.ParameterCount;
}

/// <summary><c>BertEncoder</c>: the stack of <c>layer.N</c>.</summary>
public sealed class BertEncoder
{
    public IReadOnlyList<BertLayer> Layers { get; }

    internal BertEncoder(ParameterScope scope, BertConfig config) =>
        Layers = [.. Enumerable.Range(0, config.NumHiddenLayers).Select(i => new BertLayer(scope.Sub($"layer.{i}"), config, i))];

    /// <summary>The last hidden state (rows,C) from <paramref name="input"/>: in place when the pass records nothing, else each layer's output kept.</summary>
    internal DeviceBuffer<float> Forward(ForwardPass pass, DeviceBuffer<float> input, int hidden)
    {
        var x = input;
        foreach (var layer in Layers)
        {
            var output = pass.Records ? pass.Kept(layer, "output", hidden) : x;
            layer.Forward(pass, output, x);
            x = output;
        }
        return x;
    }

    /// <summary>dHidden (rows,C): ∂L/∂last hidden state in, ∂L/∂input out; <paramref name="input"/> is the forward's.</summary>
    internal void Backward(ForwardPass pass, DeviceBuffer<float> dHidden, DeviceBuffer<float> input, int hidden)
    {
        for (int l = Layers.Count - 1; l >= 0; l--)
            Layers[l].Backward(pass, dHidden, l == 0 ? input : pass.Kept(Layers[l - 1], "output", hidden));
    }

    public long ParameterCount => Layers.Sum(l => l.ParameterCount);
}

/// <summary><c>BertPooler</c>: tanh(dense(hidden[:, 0])).</summary>
public sealed class BertPooler
{
    public Linear Dense { get; }

    internal BertPooler(ParameterScope scope, BertConfig config) =>
        Dense = Linear.Load(scope.Sub("dense"), config.HiddenSize, config.HiddenSize);

    private int C => Dense.OutFeatures;

    /// <summary>output (B,C) from hidden (rows,C); the [CLS] rows are kept, and a recording pass keeps the pre-activation.</summary>
    internal void Forward(ForwardPass pass, DeviceBuffer<float> output, DeviceBuffer<float> hidden)
    {
        var firstTokens = pass.Kept(this, "first_tokens", C, perToken: false);
        pass.Backend.GatherRows(firstTokens, hidden, FirstTokenRows(pass), pass.B, pass.Rows, C);
        Dense.Forward(pass.Backend, output, firstTokens, pass.B, Activation.Tanh, pass.Records ? pass.Kept(this, "pre_tanh", C, perToken: false) : null);
    }

    /// <summary>dHidden (rows,C) = ∂L/∂hidden (zero but at [CLS]) from dOutput (B,C), which this overwrites.</summary>
    internal void Backward(ForwardPass pass, DeviceBuffer<float> dHidden, DeviceBuffer<float> dOutput)
    {
        var backend = pass.Training;
        backend.ActivateBackward(dOutput, dOutput, pass.Kept(this, "pre_tanh", C, perToken: false), pass.B * C, Activation.Tanh);
        var dFirstTokens = pass.Scratch("dFirstTokens", C, perToken: false);
        Dense.Backward(backend, dFirstTokens, dOutput, pass.Kept(this, "first_tokens", C, perToken: false), pass.B);
        backend.GatherRowsBackward(dHidden, dFirstTokens, FirstTokenRows(pass), pass.B, pass.Rows, C);
    }

    /// <summary>The [CLS] rows of the (rows, C) hidden state, on the device (B integers, uploaded by forward and backward alike).</summary>
    private DeviceBuffer<int> FirstTokenRows(ForwardPass pass) =>
        pass.RowIndices(this, "first_token_rows", [.. Enumerable.Range(0, pass.B).Select(b => pass.Row(b, 0))]);

    public long ParameterCount => Dense.ParameterCount;
}
