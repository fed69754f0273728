// Losses other than cross-entropy (which lives beside softmax in SoftmaxKernels).
//
// Shapes: predictions, targets, losses, dPredictions (n), n = B × num_labels for a regression head.
// Mean squared error, forward and backward in one elementwise pass: losses = (p − t)², dp = (p − t)·2/n.
// History: v1 (this version).
using ILGPU;

namespace Engine.Kernels;

internal static class LossKernels
{
    public static void MeanSquaredErrorKernel(Index1D i, ArrayView<float> losses, ArrayView<float> dPredictions, ArrayView<float> predictions,
        ArrayView<float> targets, float scale)
    {
        float difference = predictions[i] - targets[i];
        losses[i] = difference * difference;
        dPredictions[i] = difference * scale;
    }
}
