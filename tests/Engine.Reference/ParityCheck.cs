namespace Engine.Reference;

/// <summary>Element-by-element comparison of a backend's float32 outputs with a float64 reference.</summary>
public static class ParityCheck
{
    /// <summary>Every element within tolerance; the worst one reported.</summary>
    public static ParityResult Compare(string op, string name, double[] expected, float[] actual, Tolerance tolerance) =>
        Compare(op, name, expected, actual.AsDoubles(), tolerance);

    public static ParityResult Compare(string op, string name, double[] expected, double[] actual, Tolerance tolerance)
    {
        if (expected.Length != actual.Length)
            return new ParityResult(op, name, double.PositiveInfinity, -1, expected.Length, actual.Length, tolerance, false);
        double worstExcess = double.NegativeInfinity, maxError = 0;
        int worst = 0;
        bool passed = true;
        for (int i = 0; i < expected.Length; i++)
        {
            double error = Math.Abs(actual[i] - expected[i]);
            double allowed = tolerance.Absolute + tolerance.Relative * Math.Abs(expected[i]);
            if (!(error <= allowed)) passed = false; // NaN fails too
            double excess = double.IsNaN(error) ? double.PositiveInfinity : error - allowed;
            if (excess > worstExcess)
            {
                worstExcess = excess;
                worst = i;
            }
            if (!(error <= maxError)) maxError = error;
        }
        return new ParityResult(op, name, maxError, worst, expected.Length > 0 ? expected[worst] : 0, actual.Length > 0 ? actual[worst] : 0, tolerance, passed);
    }
}
