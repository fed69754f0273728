using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Engine.Reference;

/// <summary>ONNX Runtime running an original ONNX graph: the third-party forward-pass reference.</summary>
public sealed class OnnxRuntimeOracle : IDisposable
{
    private readonly InferenceSession _session;

    public OnnxRuntimeOracle(string onnxPath, int threads = 0)
    {
        var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        if (threads > 0)
        {
            options.IntraOpNumThreads = threads;
            options.InterOpNumThreads = 1;
        }
        _session = new InferenceSession(onnxPath, options);
    }

    /// <summary>last_hidden_state (B,T,C) for (B,T) ids, mask and token types.</summary>
    public float[] LastHiddenState(int B, int T, int[] inputIds, int[] attentionMask, int[] tokenTypeIds)
    {
        var inputs = new List<NamedOnnxValue>();
        foreach (var (name, values) in new[] { ("input_ids", inputIds), ("attention_mask", attentionMask), ("token_type_ids", tokenTypeIds) })
            if (_session.InputMetadata.ContainsKey(name))
                inputs.Add(NamedOnnxValue.CreateFromTensor(name, new DenseTensor<long>(values.Select(v => (long)v).ToArray(), [B, T])));
        using var results = _session.Run(inputs);
        var hidden = results.First(r => r.AsTensor<float>().Dimensions.Length == 3);
        return hidden.AsTensor<float>().ToArray();
    }

    public void Dispose() => _session.Dispose();
}
