using Engine.Backends;
using Engine.Models.Bert;
using Engine.Training;

namespace Engine.Models;

/// <summary>
/// The head contract: an encoder with a task head, as a training loop drives it — forward to the head's outputs,
/// the loss and its gradient, backward — without knowing which head it is. <see cref="Trainer"/> and the
/// command line know only this; a new head is a class that implements it.
/// </summary>
/// <remarks>
/// A pass (<see cref="Forward"/> … <see cref="Backward"/>) uses the model's activations: callers on several threads
/// take turns through <see cref="ForwardBackward"/> and <see cref="Evaluate"/>, which hold the model's lock.
/// </remarks>
public interface ITaskModel : IDisposable
{
    ITrainingBackend Backend { get; }
    BertConfig Config { get; }
    /// <summary>Every parameter, the head's included: what the optimizer steps and a checkpoint holds.</summary>
    ParameterArena Arena { get; }
    /// <summary>
    /// Throws, naming the set and the example, unless every labelled example's target suits this head (class ids below
    /// num_labels, finite values); a head that does not train on labelled examples (masked-LM) refuses them here.
    /// </summary>
    void ValidateTargets(IReadOnlyList<float> targets, string set);

    /// <summary>
    /// Runs the encoder and the head over <paramref name="batch"/> with <paramref name="dropout"/>, recording for a backward
    /// (a head whose work depends on the targets, as a masked-LM head's on where the masks are, runs it in <see cref="Loss"/>).
    /// </summary>
    ForwardPass Forward(BertBatch batch, DropoutSettings dropout);

    /// <summary>
    /// The mean loss of the pass's outputs against <paramref name="targets"/> (in the head's layout: one per example for a
    /// classifier, one per token then one per example for a masked-LM head), and its gradient, kept for <see cref="Backward"/>:
    /// the gradient of <paramref name="lossScale"/> times the loss (mixed-precision training's loss scale; the loss returned is
    /// not scaled).
    /// </summary>
    double Loss(ForwardPass pass, float[] targets, float lossScale = 1f);

    /// <summary>Adds every parameter's gradient from the loss's gradient, through the pass's activations.</summary>
    void Backward(ForwardPass pass);

    /// <summary>Forward, loss, backward under the model's lock; returns the loss (the gradients are of <paramref name="lossScale"/> times it).</summary>
    double ForwardBackward(BertBatch batch, float[] targets, DropoutSettings dropout, float lossScale = 1f);

    /// <summary>The head's loss and metrics over <paramref name="batches"/>, in evaluation mode (no dropout), under the model's lock per batch.</summary>
    EvaluationResult Evaluate(IEnumerable<TrainingBatch> batches);

    /// <summary>Writes a Hugging Face directory (config.json, model.safetensors) that transformers' from_pretrained loads; atomically per file.</summary>
    void Save(string directory);
}
