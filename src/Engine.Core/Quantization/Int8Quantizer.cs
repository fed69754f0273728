namespace Engine.Quantization;

/// <summary>
/// Symmetric int8 quantization of a matrix, one scale per row: q = round(x / s) with s = max|row| / 127, so
/// q ∈ [−127, 127] and |x − q·s| ≤ s/2. A Linear weight (out, in) gets a scale per output channel, an embedding table
/// (vocabulary, hidden) one per token; activations are quantized the same way per token row at run time.
/// </summary>
public static class Int8Quantizer
{
    /// <summary>What a quantized tensor's scales are called: <c>{name}_scale</c> (e.g. <c>…dense.weight_scale</c>).</summary>
    public const string ScaleSuffix = "_scale";

    /// <summary>Quantizes each row of <paramref name="values"/> (rows, columns); a row of zeros gets scale 0.</summary>
    public static (sbyte[] Values, float[] Scales) QuantizeRows(ReadOnlySpan<float> values, int columns)
    {
        if (columns <= 0 || values.Length % columns != 0) throw new ArgumentException($"{values.Length} values are not rows of {columns}");
        int rows = values.Length / columns;
        var quantized = new sbyte[values.Length];
        var scales = new float[rows];
        for (int r = 0; r < rows; r++)
        {
            var row = values.Slice(r * columns, columns);
            float max = Math.Abs(System.Numerics.Tensors.TensorPrimitives.MaxMagnitude(row));
            scales[r] = max / 127f;
            if (max == 0) continue;
            double inverse = 127.0 / max;
            for (int c = 0; c < columns; c++)
                quantized[r * columns + c] = (sbyte)Math.Clamp((int)Math.Round(row[c] * inverse, MidpointRounding.ToEven), -127, 127);
        }
        return (quantized, scales);
    }

    /// <summary>values (rows, columns) = q · scale of its row.</summary>
    public static float[] Dequantize(ReadOnlySpan<sbyte> quantized, ReadOnlySpan<float> scales, int columns)
    {
        if (columns <= 0 || quantized.Length != (long)scales.Length * columns)
            throw new ArgumentException($"{quantized.Length} int8 values and {scales.Length} scales are not rows of {columns}");
        var values = new float[quantized.Length];
        for (int i = 0; i < values.Length; i++) values[i] = quantized[i] * scales[i / columns];
        return values;
    }
}
