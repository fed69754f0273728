namespace Engine.Backends;

/// <summary>
/// One AdamW update's constants (PyTorch's torch.optim.AdamW): Step is t ≥ 1, for the bias corrections;
/// GradientScale multiplies every gradient first (global-norm clipping).
/// </summary>
public readonly record struct AdamWStep(float LearningRate, float Beta1, float Beta2, float Eps, float WeightDecay, float GradientScale, int Step);

/// <summary>
/// The backward passes of the ops, for training; a backend that can train implements them beside its
/// forward ops. Same conventions as <see cref="IBackend"/>: outputs first (gradients, prefixed d), then
/// the forward's inputs, then weights, then sizes.
/// </summary>
/// <remarks>
/// The accumulation rule, written here once: parameter gradients are accumulated (+=), so gradients of
/// several micro-batches add up until the optimizer step zeroes them; activation gradients are assigned (=).
/// </remarks>
public interface ITrainingBackend : IBackend
{
    /// <summary>
    /// Backward of <see cref="IBackend.Linear"/> without activation: dInput (M,K) = dOutput (M,N) · weight (N,K);
    /// dWeight (N,K) += dOutputᵀ · input (M,K); dBias (N) += Σ over rows of dOutput. dInput may be null
    /// (nothing upstream needs it), dBias too (no bias).
    /// </summary>
    void LinearBackward(Tensor? dInput, Tensor dWeight, Tensor? dBias,
        Tensor dOutput, Tensor input, Tensor weight, int M, int K, int N);

    /// <summary>dInput (n) = dOutput (n) · act′(input (n)), input being the values the activation was applied to.</summary>
    void ActivateBackward(Tensor dInput, Tensor dOutput, Tensor input, int n, Activation activation);

    /// <summary>
    /// Backward of <see cref="IBackend.LayerNorm"/> over x = input + residual (N,C): dInput (N,C) = ∂L/∂x, which
    /// is also the residual's gradient; dWeight, dBias (C) +=. Statistics are recomputed from x.
    /// </summary>
    void LayerNormBackward(Tensor dInput, Tensor dWeight, Tensor dBias,
        Tensor dOutput, Tensor input, Tensor? residual, Tensor weight, int N, int C, float eps);

    /// <summary>
    /// Backward of <see cref="IBackend.Attention"/>: dQkv (rows,3C) = ∂L/∂(Q, K, V) given dOutput (rows,C), with the
    /// probabilities recomputed from qkv (nothing is cached) and the forward's dropout mask regenerated. Masked
    /// keys and values get zero gradient.
    /// </summary>
    void AttentionBackward(Tensor dQkv, Tensor dOutput, Tensor qkv, SequenceLayout sequences, int NH, int HS, DropoutMask dropout);

    /// <summary>
    /// Backward of the embedding sum (the part of <see cref="IBackend.Embeddings"/> before its layer-norm, whose
    /// backward is <see cref="LayerNormBackward"/> over the kept sum): dWord[inputIds] += dSum rows,
    /// dPosition[positionIds] += dSum rows, dTokenType[tokenTypeIds] += dSum rows. A deterministic scatter-add:
    /// the same ids in any order give bit-identical sums.
    /// </summary>
    void EmbeddingsBackward(Tensor dWord, Tensor dPosition, Tensor dTokenType,
        Tensor dSum, DeviceBuffer<int> inputIds, DeviceBuffer<int> positionIds, DeviceBuffer<int> tokenTypeIds, int B, int T, int C);

    /// <summary>Backward of <see cref="IBackend.GatherRows"/>: dInput (N,C) = dOutput (R,C) scattered to rows (distinct), zero elsewhere.</summary>
    void GatherRowsBackward(Tensor dInput, Tensor dOutput, DeviceBuffer<int> rows, int R, int N, int C);

    /// <summary>
    /// Inverted dropout: output (n) = input ⊙ <see cref="DropoutMask.Factor"/>(i). The mask is never stored: a
    /// run is reproducible from its seed, and the backward regenerates it. Output and input may be the same buffer.
    /// </summary>
    void Dropout(Tensor output, Tensor input, int n, DropoutMask mask);

    /// <summary>Backward of <see cref="Dropout"/>: dInput (n) = dOutput ⊙ the same factors, regenerated.</summary>
    void DropoutBackward(Tensor dInput, Tensor dOutput, int n, DropoutMask mask);

    /// <summary>Σ values² over n elements, accumulated in float64 (global gradient norms).</summary>
    double SumOfSquares(Tensor values, int n);

    /// <summary>
    /// AdamW on n elements, in place: with g = scale·gradient, p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g;
    /// v ← β2·v + (1−β2)·g²; p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε), exactly PyTorch's order of operations.
    /// Only elements [0, <paramref name="decayed"/>) take the weight decay (a parameter arena lays the decayed
    /// tensors first), so one launch steps a whole model.
    /// </summary>
    void AdamW(Tensor parameter, Tensor gradient, Tensor m, Tensor v, int n, int decayed, AdamWStep step);

    /// <summary>Sets every element of <paramref name="buffer"/> to zero where it lives (gradients at a step boundary; no host transfer).</summary>
    void Clear(Tensor buffer);

    /// <summary>destination (n) += source (n): where two paths' gradients meet (a residual connection).</summary>
    void Accumulate(Tensor destination, Tensor source, int n);

    /// <summary>values (n) *= factor, in place: a loss's gradient multiplied by the loss scale of mixed-precision training.</summary>
    void Scale(Tensor values, int n, float factor);

    /// <summary>Backward of <see cref="IBackend.Softmax"/>: dInput (rows,N) = y ⊙ (dOutput − Σ dOutput ⊙ y), y (rows,N) the forward's output.</summary>
    void SoftmaxBackward(Tensor dInput, Tensor dOutput, Tensor output, int rows, int N);

    /// <summary>
    /// Cross-entropy of logits (B,V) against labels (B), forward and backward in one: losses (B) = −log softmax(logits)[label];
    /// dLogits (B,V) = (softmax(logits) − onehot(label)) / count, the gradient of the mean over the counted rows. A negative
    /// label (Hugging Face's −100) is ignored: loss 0, gradient 0, not counted.
    /// </summary>
    void CrossEntropy(Tensor losses, Tensor dLogits, Tensor logits, DeviceBuffer<int> labels, int B, int V);

    /// <summary>
    /// Mean squared error of predictions (n) against targets (n), forward and backward in one (regression, as
    /// torch.nn.MSELoss): losses (n) = (prediction − target)²; dPredictions (n) = 2·(prediction − target)/n, the
    /// gradient of the mean.
    /// </summary>
    void MeanSquaredError(Tensor losses, Tensor dPredictions, Tensor predictions, Tensor targets, int n);
}
