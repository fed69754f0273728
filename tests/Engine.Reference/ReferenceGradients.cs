namespace Engine.Reference;

/// <summary>
/// The backward passes in float64, written from the forward definitions in <see cref="ReferenceOps"/> and
/// themselves checked by finite differences (<see cref="IReferenceGradient"/>). Each returns fresh gradients
/// (the accumulation rule is the backends' business).
/// </summary>
public static class ReferenceGradients
{
    /// <summary>dInput (M,K), dWeight (N,K), dBias (N) of y = x·Wᵀ + b given dOutput (M,N).</summary>
    public static (double[] DInput, double[] DWeight, double[] DBias) Linear(double[] dOutput, double[] input, double[] weight, int M, int K, int N)
    {
        var dInput = new double[M * K];
        var dWeight = new double[N * K];
        var dBias = new double[N];
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
            {
                double g = dOutput[m * N + n];
                dBias[n] += g;
                for (int k = 0; k < K; k++)
                {
                    dInput[m * K + k] += g * weight[n * K + k];
                    dWeight[n * K + k] += g * input[m * K + k];
                }
            }
        return (dInput, dWeight, dBias);
    }

    /// <summary>act′(x).</summary>
    public static double ActivateDerivative(double x, string activation) => activation switch
    {
        "none" => 1,
        "gelu" => 0.5 * (1 + ReferenceOps.Erf(x / Math.Sqrt(2))) + x * Math.Exp(-0.5 * x * x) / Math.Sqrt(2 * Math.PI),
        "tanh" => 1 - Math.Tanh(x) * Math.Tanh(x),
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };

    /// <summary>dX (N,C) (also the residual's), dWeight, dBias (C) of LayerNorm(input + residual).</summary>
    public static (double[] DInput, double[] DWeight, double[] DBias) LayerNorm(double[] dOutput, double[] input, double[]? residual, double[] weight, int N, int C, double eps)
    {
        var dInput = new double[N * C];
        var dWeight = new double[C];
        var dBias = new double[C];
        var x = new double[C];
        for (int n = 0; n < N; n++)
        {
            double mean = 0;
            for (int c = 0; c < C; c++) mean += x[c] = input[n * C + c] + (residual?[n * C + c] ?? 0);
            mean /= C;
            double variance = 0;
            for (int c = 0; c < C; c++) variance += (x[c] - mean) * (x[c] - mean);
            double rstd = 1 / Math.Sqrt(variance / C + eps);
            double meanG = 0, meanGx = 0;
            for (int c = 0; c < C; c++)
            {
                double xHat = (x[c] - mean) * rstd, dy = dOutput[n * C + c];
                dWeight[c] += dy * xHat;
                dBias[c] += dy;
                meanG += dy * weight[c];
                meanGx += dy * weight[c] * xHat;
            }
            meanG /= C;
            meanGx /= C;
            for (int c = 0; c < C; c++)
                dInput[n * C + c] = rstd * (dOutput[n * C + c] * weight[c] - meanG - (x[c] - mean) * rstd * meanGx);
        }
        return (dInput, dWeight, dBias);
    }

    /// <summary>
    /// dQkv (B,T,3C) of <see cref="ReferenceOps.Attention"/> given dOutput (B,T,C): with f the dropout factors,
    /// dp_j = f_j·(dOut·v_j), ds = p ⊙ (dp − Σ p·dp), dV_j += p_j·f_j·dOut.
    /// </summary>
    public static double[] Attention(double[] dOutput, double[] qkv, int[] keyMask, int B, int T, int NH, int HS, Engine.Backends.DropoutMask dropout = default)
    {
        int C = NH * HS;
        var dQkv = new double[B * T * 3 * C];
        double scale = 1 / Math.Sqrt(HS);
        var p = new double[T];
        var dp = new double[T];
        var factor = new double[T];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < T; i++)
                {
                    int q = (b * T + i) * 3 * C + h * HS;
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < T; j++)
                    {
                        if (keyMask[b * T + j] == 0) continue;
                        double s = 0;
                        for (int d = 0; d < HS; d++) s += qkv[q + d] * qkv[(b * T + j) * 3 * C + C + h * HS + d];
                        p[j] = s * scale;
                        max = Math.Max(max, p[j]);
                    }
                    if (double.IsNegativeInfinity(max)) continue;
                    double sum = 0;
                    for (int j = 0; j < T; j++)
                        if (keyMask[b * T + j] != 0) sum += p[j] = Math.Exp(p[j] - max);
                    double dDot = 0;
                    for (int j = 0; j < T; j++)
                    {
                        if (keyMask[b * T + j] == 0) continue;
                        p[j] /= sum;
                        factor[j] = ReferenceOps.DropoutFactor(dropout, (((long)b * NH + h) * T + i) * T + j);
                        dp[j] = 0;
                        for (int d = 0; d < HS; d++) dp[j] += dOutput[(b * T + i) * C + h * HS + d] * qkv[(b * T + j) * 3 * C + 2 * C + h * HS + d];
                        dp[j] *= factor[j];
                        dDot += p[j] * dp[j];
                    }
                    for (int j = 0; j < T; j++)
                    {
                        if (keyMask[b * T + j] == 0) continue;
                        double ds = p[j] * (dp[j] - dDot) * scale;
                        int k = (b * T + j) * 3 * C + C + h * HS, v = k + C;
                        for (int d = 0; d < HS; d++)
                        {
                            dQkv[q + d] += ds * qkv[k + d];
                            dQkv[k + d] += ds * qkv[q + d];
                            dQkv[v + d] += p[j] * factor[j] * dOutput[(b * T + i) * C + h * HS + d];
                        }
                    }
                }
        return dQkv;
    }

    /// <summary>dWord (V,C), dPosition (P,C), dTokenType (TV,C) of <see cref="ReferenceOps.Embeddings"/> given dSum (B,T,C).</summary>
    public static (double[] DWord, double[] DPosition, double[] DTokenType) Embeddings(double[] dSum, int[] inputIds, int[] positionIds, int[] tokenTypeIds,
        int B, int T, int C, int V, int P, int TV)
    {
        var (dWord, dPosition, dTokenType) = (new double[V * C], new double[P * C], new double[TV * C]);
        for (int token = 0; token < B * T; token++)
            for (int c = 0; c < C; c++)
            {
                double g = dSum[token * C + c];
                dWord[inputIds[token] * C + c] += g;
                dPosition[positionIds[token] * C + c] += g;
                dTokenType[tokenTypeIds[token] * C + c] += g;
            }
        return (dWord, dPosition, dTokenType);
    }

    /// <summary>dX (rows,N) of y = softmax(x) given dOutput and y.</summary>
    public static double[] Softmax(double[] dOutput, double[] output, int rows, int N)
    {
        var dInput = new double[rows * N];
        for (int r = 0; r < rows; r++)
        {
            double dot = 0;
            for (int n = 0; n < N; n++) dot += dOutput[r * N + n] * output[r * N + n];
            for (int n = 0; n < N; n++) dInput[r * N + n] = output[r * N + n] * (dOutput[r * N + n] - dot);
        }
        return dInput;
    }

    /// <summary>Squared errors (n) and the gradient of their mean.</summary>
    public static (double[] Losses, double[] DPredictions) MeanSquaredError(double[] predictions, double[] targets) =>
        ([.. predictions.Select((p, i) => (p - targets[i]) * (p - targets[i]))], [.. predictions.Select((p, i) => 2 * (p - targets[i]) / predictions.Length)]);

    /// <summary>Per-row losses and the gradient of their mean over rows with a label ≥ 0.</summary>
    public static (double[] Losses, double[] DLogits) CrossEntropy(double[] logits, int[] labels, int B, int V)
    {
        var losses = new double[B];
        var probabilities = ReferenceOps.Softmax(logits, B, V);
        int counted = labels.Count(l => l >= 0);
        var dLogits = new double[B * V];
        for (int b = 0; b < B; b++)
        {
            if (labels[b] < 0) continue;
            losses[b] = -Math.Log(probabilities[b * V + labels[b]]);
            for (int v = 0; v < V; v++) dLogits[b * V + v] = (probabilities[b * V + v] - (v == labels[b] ? 1 : 0)) / counted;
        }
        return (losses, dLogits);
    }
}
