using Engine.Backends;
using Engine.IO;

namespace Engine.Models.Bert;

/// <summary><c>BertEmbeddings</c>: word + absolute position + token-type embeddings, then LayerNorm.</summary>
public sealed class BertEmbeddings : IDisposable
{
    private readonly BertConfig _config;
    internal DeviceBuffer<float> WordEmbeddings { get; }
    internal DeviceBuffer<float> PositionEmbeddings { get; }
    internal DeviceBuffer<float> TokenTypeEmbeddings { get; }
    public LayerNorm LayerNorm { get; }

    internal BertEmbeddings(WeightScope scope, BertConfig config, IBackend backend)
    {
        _config = config;
        int C = config.HiddenSize;
        WordEmbeddings = Weights.Upload(backend, scope.Sub("word_embeddings").Tensor("weight", config.VocabSize, C));
        PositionEmbeddings = Weights.Upload(backend, scope.Sub("position_embeddings").Tensor("weight", config.MaxPositionEmbeddings, C));
        TokenTypeEmbeddings = Weights.Upload(backend, scope.Sub("token_type_embeddings").Tensor("weight", config.TypeVocabSize, C));
        LayerNorm = LayerNorm.Load(scope.Sub("LayerNorm"), backend, C, config.LayerNormEps);
    }

    /// <summary>output (B,T,C): the three embeddings summed and normalised in one op.</summary>
    internal void Forward(IBackend backend, DeviceBuffer<float> output, DeviceBuffer<int> inputIds, DeviceBuffer<int> tokenTypeIds, int B, int T) =>
        backend.Embeddings(output, null, inputIds, tokenTypeIds, WordEmbeddings, PositionEmbeddings, TokenTypeEmbeddings,
            LayerNorm.Weight, LayerNorm.Bias, B, T, _config.HiddenSize, LayerNorm.Eps);

    public long ParameterCount => (long)(_config.VocabSize + _config.MaxPositionEmbeddings + _config.TypeVocabSize) * _config.HiddenSize + LayerNorm.ParameterCount;

    public void Dispose()
    {
        WordEmbeddings.Dispose();
        PositionEmbeddings.Dispose();
        TokenTypeEmbeddings.Dispose();
        LayerNorm.Dispose();
    }
}
