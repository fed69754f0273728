using Engine.Backends;
using Engine.IO;

namespace Engine.Models.Bert;

/// <summary><c>BertEmbeddings</c>: word + absolute position + token-type embeddings, then LayerNorm.</summary>
public sealed class BertEmbeddings : IDisposable
{
    private readonly BertConfig _config;
    public Parameter WordEmbeddings { get; }
    public Parameter PositionEmbeddings { get; }
    public Parameter TokenTypeEmbeddings { get; }
    public LayerNorm LayerNorm { get; }

    internal BertEmbeddings(WeightScope scope, BertConfig config, IBackend backend)
    {
        _config = config;
        int C = config.HiddenSize;
        Parameter Table(string name, int rows) =>
            new(backend, scope.Sub(name).Tensor("weight", rows, C), (scope.Sub(name).NameOf("weight"), rows * C));
        WordEmbeddings = Table("word_embeddings", config.VocabSize);
        PositionEmbeddings = Table("position_embeddings", config.MaxPositionEmbeddings);
        TokenTypeEmbeddings = Table("token_type_embeddings", config.TypeVocabSize);
        LayerNorm = LayerNorm.Load(scope.Sub("LayerNorm"), backend, C, config.LayerNormEps);
    }

    /// <summary>output (B,T,C): the three embeddings summed and normalised in one op.</summary>
    internal void Forward(IBackend backend, DeviceBuffer<float> output, DeviceBuffer<int> inputIds, DeviceBuffer<int> tokenTypeIds, int B, int T) =>
        Forward(backend, output, null, inputIds, tokenTypeIds, B, T);

    /// <summary>output (B,T,C); sum (B,T,C), when given, keeps the pre-norm sum for the backward pass.</summary>
    internal void Forward(IBackend backend, DeviceBuffer<float> output, DeviceBuffer<float>? sum, DeviceBuffer<int> inputIds, DeviceBuffer<int> tokenTypeIds, int B, int T) =>
        backend.Embeddings(output, sum, inputIds, tokenTypeIds, WordEmbeddings.Value, PositionEmbeddings.Value, TokenTypeEmbeddings.Value,
            LayerNorm.Weight.Value, LayerNorm.Bias.Value, B, T, _config.HiddenSize, LayerNorm.Eps);

    /// <summary>Parameter gradients += from dOutput (B,T,C) (scratch: dSum (B,T,C)).</summary>
    internal void Backward(ITrainingBackend backend, DeviceBuffer<float> dSum, DeviceBuffer<float> dOutput, DeviceBuffer<float> sum,
        DeviceBuffer<int> inputIds, DeviceBuffer<int> tokenTypeIds, int B, int T)
    {
        LayerNorm.Backward(backend, dSum, dOutput, sum, null, B * T);
        backend.EmbeddingsBackward(Linear.Gradient(WordEmbeddings), Linear.Gradient(PositionEmbeddings), Linear.Gradient(TokenTypeEmbeddings),
            dSum, inputIds, tokenTypeIds, B, T, _config.HiddenSize);
    }

    public IEnumerable<Parameter> Parameters => [WordEmbeddings, PositionEmbeddings, TokenTypeEmbeddings, .. LayerNorm.Parameters];

    public long ParameterCount => (long)(_config.VocabSize + _config.MaxPositionEmbeddings + _config.TypeVocabSize) * _config.HiddenSize + LayerNorm.ParameterCount;

    public void Dispose()
    {
        WordEmbeddings.Dispose();
        PositionEmbeddings.Dispose();
        TokenTypeEmbeddings.Dispose();
        LayerNorm.Dispose();
    }
}
