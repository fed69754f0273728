using Engine.Training;

namespace Engine.Models;

/// <summary>
/// New weights as Hugging Face's <c>BertPreTrainedModel._init_weights</c> makes them: Linear and embedding weights from
/// N(0, initializer_range²), the padding row of the word embeddings zero, biases zero, LayerNorm weights one and
/// biases zero. Each tensor draws from its own stream of <paramref name="seed"/>, named by the tensor.
/// </summary>
public sealed class WeightInitializer(double std, ulong seed, int padTokenId)
{
    public float[] Values(string name, long[] shape)
    {
        int count = (int)shape.Aggregate(1L, (a, b) => a * b);
        if (name.EndsWith("LayerNorm.weight", StringComparison.Ordinal)) return Enumerable.Repeat(1f, count).ToArray();
        if (name.EndsWith("bias", StringComparison.Ordinal)) return new float[count];
        var values = SeedStreams.InitialWeights(count, std, seed, name);
        if (name.EndsWith("word_embeddings.weight", StringComparison.Ordinal) && shape.Length == 2 && padTokenId >= 0 && padTokenId < shape[0])
            Array.Clear(values, (int)(padTokenId * shape[1]), (int)shape[1]);
        return values;
    }
}
