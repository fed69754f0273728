using Engine.Models;
using Engine.Models.Bert;
using Engine.Tokenization;

namespace Engine.Training;

/// <summary>
/// A batch as a head trains on it: the model's input and the targets its loss reads, in the head's layout (one per
/// example for a classifier; per token, then per example, for a masked-LM head with a sentence head).
/// </summary>
public sealed record TrainingBatch(BertBatch Batch, float[] Targets);

/// <summary>
/// What a <see cref="Trainer"/> trains on: a number of examples, and how the examples at some indices become a
/// batch with targets. A set that draws (masking) does so from (seed, step) alone, so a run resumed in another
/// process draws the same.
/// </summary>
public interface ITrainingSet
{
    int Count { get; }

    /// <summary>Throws, naming <paramref name="set"/> and the example, unless every example suits <paramref name="model"/>'s head.</summary>
    void Validate(ITaskModel model, string set);

    /// <summary>The examples at <paramref name="indices"/> as one padded batch, with their targets, for micro-step <paramref name="step"/>.</summary>
    TrainingBatch Collate(IReadOnlyList<int> indices, ulong seed, long step);
}

/// <summary>A tokenized example and its label: a class id (an integer) for a classifier, the target value for regression.</summary>
public sealed record LabelledExample(Encoding Encoding, float Label);

/// <summary>Labelled examples (fine-tuning a classifier or a regression head): a batch's targets are its labels.</summary>
public sealed class LabelledSet(IReadOnlyList<LabelledExample> examples) : ITrainingSet
{
    public int Count => examples.Count;

    public void Validate(ITaskModel model, string set) => model.ValidateTargets([.. examples.Select(e => e.Label)], set);

    public TrainingBatch Collate(IReadOnlyList<int> indices, ulong seed, long step) =>
        new(BertBatch.Pad([.. indices.Select(i => examples[i].Encoding)]), [.. indices.Select(i => examples[i].Label)]);
}
