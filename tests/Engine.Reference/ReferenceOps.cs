namespace Engine.Reference;

/// <summary>
/// The specification of every op: plain loops in float64, no SIMD, no threads. The CPU backend and the
/// ILGPU kernels are checked against these. Shapes use the op interface's letters (B, T, C, NH, HS).
/// </summary>
public static class ReferenceOps
{
    /// <summary>float32 values as float64, for the reference ops (which take float64 so that finite differences can perturb them).</summary>
    public static double[] AsDoubles(this float[] values) => [.. values.Select(v => (double)v)];

    /// <summary>out (M,N) = act(inp (M,K) · w (N,K)ᵀ + bias (N)).</summary>
    public static double[] Linear(double[] input, double[] weight, double[]? bias, int M, int K, int N, string activation)
    {
        var output = new double[M * N];
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
            {
                double sum = bias?[n] ?? 0;
                for (int k = 0; k < K; k++) sum += input[m * K + k] * weight[n * K + k];
                output[m * N + n] = Activate(sum, activation);
            }
        return output;
    }

    /// <summary>
    /// Values rounded to a tensor-core format, as float64: fp16 by .NET's conversion (nearest even); bf16 (7 mantissa bits,
    /// nearest even) and tf32 (10 mantissa bits, nearest, ties away from zero) by choosing, of the two neighbours (the
    /// float cut to those bits, and one unit further from zero, 2¹²⁸ past the largest finite one), the nearer in float64;
    /// 2¹²⁸ means infinity. NaN and infinities stay as they are.
    /// </summary>
    public static double[] Round(float[] values, Engine.Backends.ComputePrecision precision) => [.. values.Select(v => precision switch
    {
        Engine.Backends.ComputePrecision.Fp32 => v,
        Engine.Backends.ComputePrecision.Fp16 => (double)(float)(Half)v,
        Engine.Backends.ComputePrecision.Tf32 => RoundMantissa(v, 10, tiesAway: true),
        _ => RoundMantissa(v, 7, tiesAway: false),
    })];

    private static double RoundMantissa(float value, int mantissaBits, bool tiesAway)
    {
        if (float.IsNaN(value) || float.IsInfinity(value)) return value;
        int dropped = 23 - mantissaBits;
        uint bits = BitConverter.SingleToUInt32Bits(value), truncated = bits >> dropped << dropped;
        int exponent = (int)((bits >> 23) & 0xFF);
        double below = BitConverter.UInt32BitsToSingle(truncated);
        double above = below + (value < 0 ? -1 : 1) * Math.ScaleB(1.0, Math.Max(exponent, 1) - 127 - mantissaBits); // one unit further out
        double distanceBelow = Math.Abs(value - below), distanceAbove = Math.Abs(value - above);
        bool up = distanceBelow != distanceAbove ? distanceAbove < distanceBelow : tiesAway || ((truncated >> dropped) & 1u) != 0;
        if (!up) return below;
        return Math.Abs(above) >= Math.ScaleB(1.0, 128) ? (value < 0 ? double.NegativeInfinity : double.PositiveInfinity) : above;
    }

    /// <summary>
    /// The int8 Linear as it is defined, in float64 where it is not integer: each input row quantized (scale max|row|/127
    /// in float32, q = round-half-even(x · 127/max) as float32 products), exact integer products with the int8 weight
    /// (N,K), dequantized by row scale × column scale, plus bias, then the activation.
    /// </summary>
    public static double[] LinearInt8(float[] input, sbyte[] weight, float[] weightScales, double[]? bias, int M, int K, int N, string activation)
    {
        var output = new double[M * N];
        var quantized = new int[K];
        for (int m = 0; m < M; m++)
        {
            float max = 0f;
            for (int k = 0; k < K; k++) max = Math.Max(max, Math.Abs(input[m * K + k]));
            float inverse = max > 0 ? 127f / max : 0f, rowScale = max / 127f;
            for (int k = 0; k < K; k++) quantized[k] = (int)Math.Round(input[m * K + k] * inverse, MidpointRounding.ToEven);
            for (int n = 0; n < N; n++)
            {
                long sum = 0;
                for (int k = 0; k < K; k++) sum += (long)quantized[k] * weight[n * K + k];
                output[m * N + n] = Activate(sum * (double)rowScale * weightScales[n] + (bias?[n] ?? 0), activation);
            }
        }
        return output;
    }

    /// <summary>Strided-batched products in either layout, as <see cref="Engine.Backends.MatMulShape"/> defines them.</summary>
    public static double[] MatMul(float[] a, float[] b, Engine.Backends.MatMulShape s)
    {
        var output = new double[s.ElementsC];
        for (int i = 0; i < s.Batch; i++)
            for (int m = 0; m < s.M; m++)
                for (int n = 0; n < s.N; n++)
                {
                    double sum = 0;
                    for (int k = 0; k < s.K; k++)
                    {
                        double x = a[i * s.StrideA + (s.TransposeA ? k * s.M + m : m * s.K + k)];
                        double y = b[i * s.StrideB + (s.TransposeB ? n * s.K + k : k * s.N + n)];
                        sum += x * y;
                    }
                    output[i * s.StrideC + m * s.N + n] = sum;
                }
        return output;
    }

    /// <summary>out (rows, N) = exp(x − max) / Σ exp(x − max) per row.</summary>
    public static double[] Softmax(double[] input, int rows, int N)
    {
        var output = new double[rows * N];
        for (int r = 0; r < rows; r++)
        {
            double max = double.NegativeInfinity, sum = 0;
            for (int n = 0; n < N; n++) max = Math.Max(max, input[r * N + n]);
            for (int n = 0; n < N; n++) sum += output[r * N + n] = Math.Exp(input[r * N + n] - max);
            for (int n = 0; n < N; n++) output[r * N + n] /= sum;
        }
        return output;
    }

    public static double Activate(double x, string activation) => activation switch
    {
        "none" => x,
        "gelu" => 0.5 * x * Erfc(-x / Math.Sqrt(2)),
        "tanh" => Math.Tanh(x),
        _ => throw new ArgumentOutOfRangeException(nameof(activation)),
    };

    /// <summary>erf to about 1e-15: Maclaurin series for |x| ≤ 3, continued fraction for erfc beyond.</summary>
    public static double Erf(double x)
    {
        double a = Math.Abs(x);
        double result;
        if (a <= 3)
        {
            double term = a, sum = a;
            for (int n = 1; n < 200 && Math.Abs(term) > 1e-17 * Math.Abs(sum); n++)
            {
                term *= -a * a / n;
                sum += term / (2 * n + 1);
            }
            result = 2 / Math.Sqrt(Math.PI) * sum;
        }
        else result = 1 - ErfcTail(a);
        return x < 0 ? -result : result;
    }

    /// <summary>erfc = 1 − erf, with full relative accuracy where erf is near 1 (GELU's far negative tail, down to subnormal results).</summary>
    public static double Erfc(double x) => x > 3 ? ErfcTail(x) : 1 - Erf(x);

    /// <summary>erfc(a), a &gt; 3: exp(−a²)/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + 2/(a + …))))), evaluated from the tail.</summary>
    private static double ErfcTail(double a)
    {
        double fraction = a;
        for (int n = 60; n >= 1; n--) fraction = a + n / 2.0 / fraction;
        return Math.Exp(-a * a) / Math.Sqrt(Math.PI) / fraction;
    }

    /// <summary>
    /// out (B,T,C) from qkv (B,T,3C): softmax over keys with mask ≠ 0, then dropout on the (B,NH,T,T)
    /// probabilities; all-masked rows give zeros.
    /// </summary>
    public static double[] Attention(double[] qkv, int[] keyMask, int B, int T, int NH, int HS, Engine.Backends.DropoutMask dropout = default)
    {
        int C = NH * HS;
        var output = new double[B * T * C];
        double scale = 1 / Math.Sqrt(HS);
        var scores = new double[T];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < T; i++)
                {
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < T; j++)
                    {
                        if (keyMask[b * T + j] == 0) continue;
                        double s = 0;
                        for (int d = 0; d < HS; d++)
                            s += (double)qkv[(b * T + i) * 3 * C + h * HS + d] * qkv[(b * T + j) * 3 * C + C + h * HS + d];
                        scores[j] = s * scale;
                        max = Math.Max(max, scores[j]);
                    }
                    if (double.IsNegativeInfinity(max)) continue;
                    double sum = 0;
                    for (int j = 0; j < T; j++)
                        if (keyMask[b * T + j] != 0) sum += scores[j] = Math.Exp(scores[j] - max);
                    for (int j = 0; j < T; j++)
                    {
                        if (keyMask[b * T + j] == 0) continue;
                        double probability = scores[j] / sum * DropoutFactor(dropout, (((long)b * NH + h) * T + i) * T + j);
                        for (int d = 0; d < HS; d++)
                            output[(b * T + i) * C + h * HS + d] += probability * qkv[(b * T + j) * 3 * C + 2 * C + h * HS + d];
                    }
                }
        return output;
    }

    /// <summary>
    /// The (B,NH,T,T) attention probabilities of qkv (B,T,3C), in float64: each real query's softmax over the keys with
    /// mask ≠ 0; masked keys, and every key of a masked query, 0.
    /// </summary>
    public static double[] AttentionProbabilities(double[] qkv, int[] keyMask, int B, int T, int NH, int HS)
    {
        int C = NH * HS;
        var probabilities = new double[(long)B * NH * T * T];
        double scale = 1 / Math.Sqrt(HS);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < T; i++)
                {
                    if (keyMask[b * T + i] == 0) continue;
                    long row = (((long)b * NH + h) * T + i) * T;
                    var keys = Enumerable.Range(0, T).Where(j => keyMask[b * T + j] != 0).ToArray();
                    var scores = keys.Select(j => Enumerable.Range(0, HS).Sum(d => qkv[(b * T + i) * 3 * C + h * HS + d] * qkv[(b * T + j) * 3 * C + C + h * HS + d]) * scale).ToArray();
                    double max = scores.Max(), sum = scores.Sum(s => Math.Exp(s - max));
                    for (int k = 0; k < keys.Length; k++) probabilities[row + keys[k]] = Math.Exp(scores[k] - max) / sum;
                }
        return probabilities;
    }

    /// <summary>Inverted dropout in float64: x ⊙ the mask's factors.</summary>
    public static double[] Dropout(double[] x, Engine.Backends.DropoutMask mask) => [.. x.Select((v, i) => v * DropoutFactor(mask, i))];

    /// <summary>Element <paramref name="index"/>'s inverted-dropout factor in float64: 0, or exactly 1/(1 − p).</summary>
    public static double DropoutFactor(Engine.Backends.DropoutMask mask, long index) =>
        !mask.IsActive ? 1 : mask.Factor(index) == 0f ? 0 : 1 / (1 - (double)mask.Probability);

    /// <summary>out (N,C) = LayerNorm(inp + residual) with biased variance, as torch.nn.LayerNorm.</summary>
    public static double[] LayerNorm(double[] input, double[]? residual, double[] weight, double[] bias, int N, int C, double eps)
    {
        var output = new double[N * C];
        var x = new double[C];
        for (int n = 0; n < N; n++)
        {
            double mean = 0;
            for (int c = 0; c < C; c++) mean += x[c] = input[n * C + c] + (residual?[n * C + c] ?? 0.0);
            mean /= C;
            double variance = 0;
            for (int c = 0; c < C; c++) variance += (x[c] - mean) * (x[c] - mean);
            variance /= C;
            double rstd = 1 / Math.Sqrt(variance + eps);
            for (int c = 0; c < C; c++) output[n * C + c] = (x[c] - mean) * rstd * weight[c] + bias[c];
        }
        return output;
    }

    /// <summary>out (B,T,C) = word[ids] + position[t] + tokenType[types].</summary>
    public static double[] Embeddings(int[] inputIds, int[] positionIds, int[] tokenTypeIds, double[] word, double[] position, double[] tokenType, int B, int T, int C)
    {
        var output = new double[B * T * C];
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++)
                for (int c = 0; c < C; c++)
                {
                    int i = b * T + t;
                    output[i * C + c] = word[inputIds[i] * C + c] + position[positionIds[i] * C + c] + tokenType[tokenTypeIds[i] * C + c];
                }
        return output;
    }

    /// <summary>out (R,C) = inp (N,C)[rows].</summary>
    public static double[] GatherRows(float[] input, int[] rows, int C)
    {
        var output = new double[rows.Length * C];
        for (int r = 0; r < rows.Length; r++)
            for (int c = 0; c < C; c++) output[r * C + c] = input[rows[r] * C + c];
        return output;
    }
}
