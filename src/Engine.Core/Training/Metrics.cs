using System.Numerics.Tensors;

namespace Engine.Training;

/// <summary>Evaluation metrics from a head's outputs: classification (loss, accuracy, F1) and regression (MSE, Pearson, Spearman).</summary>
public static class Metrics
{
    /// <summary>
    /// Mean cross-entropy, accuracy and F1 of logits (n, labels) against class ids (n); rows with a negative id
    /// are ignored. F1 is of class 1 for two classes, macro-averaged otherwise.
    /// </summary>
    public static EvaluationResult Classification(float[] logits, int[] labels, int classes)
    {
        var confusion = new int[classes, classes];
        double loss = 0;
        int counted = 0;
        for (int row = 0; row < labels.Length; row++)
        {
            if (labels[row] < 0) continue;
            var z = logits.AsSpan(row * classes, classes);
            int predicted = TensorPrimitives.IndexOfMax(z);
            float max = z[predicted];
            double sum = 0;
            foreach (float v in z) sum += Math.Exp(v - max);
            loss += Math.Log(sum) + max - z[labels[row]];
            confusion[labels[row], predicted]++;
            counted++;
        }
        int correct = Enumerable.Range(0, classes).Sum(i => confusion[i, i]);
        double F1Of(int c)
        {
            int tp = confusion[c, c], fp = 0, fn = 0;
            for (int other = 0; other < classes; other++)
            {
                if (other == c) continue;
                fp += confusion[other, c];
                fn += confusion[c, other];
            }
            return tp == 0 ? 0 : 2.0 * tp / (2.0 * tp + fp + fn);
        }
        double f1 = classes == 2 ? F1Of(1) : Enumerable.Range(0, classes).Average(F1Of);
        return counted == 0 ? new EvaluationResult(0, 0, 0, 0) : new EvaluationResult(loss / counted, counted, (double)correct / counted, f1);
    }

    /// <summary>Mean squared error, and the Pearson and Spearman correlations, of predictions (n) against targets (n).</summary>
    public static EvaluationResult Regression(float[] predictions, float[] targets)
    {
        int n = targets.Length;
        if (n == 0) return new EvaluationResult(0, 0);
        double loss = 0;
        for (int i = 0; i < n; i++) loss += ((double)predictions[i] - targets[i]) * ((double)predictions[i] - targets[i]);
        var (p, t) = (predictions.Select(v => (double)v).ToArray(), targets.Select(v => (double)v).ToArray());
        return new EvaluationResult(loss / n, n, Pearson: Pearson(p, t), Spearman: Pearson(Ranks(p), Ranks(t)));
    }

    /// <summary>The Pearson correlation; 0 when either side is constant (undefined).</summary>
    public static double Pearson(double[] x, double[] y)
    {
        double meanX = x.Average(), meanY = y.Average(), covariance = 0, varianceX = 0, varianceY = 0;
        for (int i = 0; i < x.Length; i++)
        {
            covariance += (x[i] - meanX) * (y[i] - meanY);
            varianceX += (x[i] - meanX) * (x[i] - meanX);
            varianceY += (y[i] - meanY) * (y[i] - meanY);
        }
        return varianceX == 0 || varianceY == 0 ? 0 : covariance / Math.Sqrt(varianceX * varianceY);
    }

    /// <summary>Ranks from 1, ties given their average rank (as scipy.stats.rankdata), for Spearman's correlation.</summary>
    public static double[] Ranks(double[] values)
    {
        var order = Enumerable.Range(0, values.Length).OrderBy(i => values[i]).ToArray();
        var ranks = new double[values.Length];
        for (int start = 0; start < order.Length;)
        {
            int end = start;
            while (end + 1 < order.Length && values[order[end + 1]] == values[order[start]]) end++;
            double rank = (start + end) / 2.0 + 1;
            for (int k = start; k <= end; k++) ranks[order[k]] = rank;
            start = end + 1;
        }
        return ranks;
    }
}
