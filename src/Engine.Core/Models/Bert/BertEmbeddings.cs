using Engine.Backends;

namespace Engine.Models.Bert;

/// <summary><c>BertEmbeddings</c>: word + position + token-type embeddings, LayerNorm, dropout. Positions come from the pass (the family's rule).</summary>
public sealed class BertEmbeddings
{
    private readonly BertConfig _config;
    public Parameter WordEmbeddings { get; }
    public Parameter PositionEmbeddings { get; }
    public Parameter TokenTypeEmbeddings { get; }
    public LayerNorm LayerNorm { get; }

    internal BertEmbeddings(ParameterScope scope, BertConfig config)
    {
        _config = config;
        int C = config.HiddenSize;
        Parameter Table(string name, int rows) => scope.Sub(name).Load("weight", rows, C);
        // The word table (a fifth of BERT-base) may stay in its checkpoint's F16 or BF16; the small position and
        // token-type tables widen to F32.
        WordEmbeddings = scope.Sub("word_embeddings").LoadMatrix("weight", config.VocabSize, C);
        PositionEmbeddings = Table("position_embeddings", config.MaxPositionEmbeddings);
        TokenTypeEmbeddings = Table("token_type_embeddings", config.TypeVocabSize);
        LayerNorm = LayerNorm.Load(scope.Sub("LayerNorm"), C, config.LayerNormEps);
    }

    /// <summary>
    /// output (rows,C): the three rows summed and normalised in one op, then dropout; a recording pass keeps the sum. The op
    /// sees the pass's rows as one sequence of tokens: each row's ids, its position included, are its own.
    /// </summary>
    internal void Forward(ForwardPass pass, DeviceBuffer<float> output)
    {
        int C = _config.HiddenSize;
        var sum = pass.Records ? pass.Kept(this, "sum", C) : null;
        pass.Backend.Embeddings(output, sum, pass.InputIds, pass.PositionIds, pass.TokenTypeIds, WordEmbeddings.Tensor, PositionEmbeddings.Tensor,
            TokenTypeEmbeddings.Tensor, LayerNorm.Weight.Tensor, LayerNorm.Bias.Tensor, 1, pass.Rows, C, LayerNorm.Eps);
        pass.ApplyDropout(output, pass.Rows * C, pass.Dropout.EmbeddingsMask);
    }

    /// <summary>Parameter gradients += from dOutput (rows,C), which this overwrites.</summary>
    internal void Backward(ForwardPass pass, DeviceBuffer<float> dOutput)
    {
        int C = _config.HiddenSize;
        var backend = pass.Training;
        pass.ApplyDropoutBackward(dOutput, pass.Rows * C, pass.Dropout.EmbeddingsMask);
        var dSum = pass.Scratch("dResidual", C);
        LayerNorm.Backward(backend, dSum, dOutput, pass.Kept(this, "sum", C), null, pass.Rows);
        backend.EmbeddingsBackward(WordEmbeddings.GradientTensor, PositionEmbeddings.GradientTensor, TokenTypeEmbeddings.GradientTensor,
            dSum, pass.InputIds, pass.PositionIds, pass.TokenTypeIds, 1, pass.Rows, C);
    }

    public long ParameterCount => (long)(_config.VocabSize + _config.MaxPositionEmbeddings + _config.TypeVocabSize) * _config.HiddenSize + LayerNorm.ParameterCount;
}
