using Engine.Training;

namespace Engine.Tests;

/// <summary>Evaluation metrics against values computed independently (torch.corrcoef in float64; confusion counts by hand).</summary>
public sealed class MetricsTests
{
    [Fact]
    public void PearsonAndSpearmanWithTiesMatchTorch()
    {
        Assert.Equal(0.7999999999999999, Metrics.Pearson([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]), 1e-12);
        var result = Metrics.Regression([0.5f, 0.1f, 0.9f, 0.9f, 0.3f], [1.0f, 0.0f, 2.0f, 3.0f, 0.5f]);
        Assert.Equal(0.9516886081573909, result.Pearson!.Value, 1e-6);
        // Spearman: Pearson of the ranks, ties averaged (0.9 and 0.9 share rank 4.5), as scipy.stats.spearmanr.
        Assert.Equal([3, 1, 4.5, 4.5, 2], Metrics.Ranks([0.5, 0.1, 0.9, 0.9, 0.3]));
        Assert.Equal(0.9746794344808964, result.Spearman!.Value, 1e-12);
        Assert.Equal((0.25 + 0.01 + 1.21 + 4.41 + 0.04) / 5, result.Loss, 1e-6);
        Assert.Null(result.F1);
        Assert.Equal("eval_loss", result.MetricName);
        Assert.Equal(0, Metrics.Pearson([1, 1, 1], [1, 2, 3]));
    }

    [Fact]
    public void ClassificationAccuracyF1AndLossIgnoreNegativeLabels()
    {
        // Predictions (argmax): 1, 0, 1, 1; labels 1, 1, 0, 1 and one ignored row: TP 2, FP 1, FN 1.
        float[] logits = [0, 2, 3, 1, -1, 1, 0, 5, 9, 0];
        var result = Metrics.Classification(logits, [1, 1, 0, 1, -100], 2);
        Assert.Equal(4, result.Count);
        Assert.Equal(0.5, result.Accuracy!.Value, 1e-12);
        Assert.Equal(2.0 * 2 / (2.0 * 2 + 1 + 1), result.F1!.Value, 1e-12);
        double expectedLoss = (Math.Log(1 + Math.Exp(-2)) + Math.Log(1 + Math.Exp(2)) + Math.Log(1 + Math.Exp(2)) + Math.Log(1 + Math.Exp(-5))) / 4;
        Assert.Equal(expectedLoss, result.Loss, 1e-6);
        Assert.Equal("f1", result.MetricName);
        Assert.True(result.IsBetterThan(result with { F1 = 0.1 }));
        Assert.True(new EvaluationResult(0.5, 3).IsBetterThan(new EvaluationResult(0.6, 3)));
    }
}
