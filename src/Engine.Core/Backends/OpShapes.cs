namespace Engine.Backends;

/// <summary>
/// The size checks of every op, written once: each backend calls the op's check before it touches a
/// buffer, so a wrong size is one clear error naming the buffer, never a read outside it. Arguments follow
/// the op's own (see <see cref="IBackend"/> and <see cref="ITrainingBackend"/> for the shapes).
/// </summary>
public static class OpShapes
{
    public static void Linear(Tensor output, Tensor input, Tensor weight, Tensor? bias, int M, int K, int N, Tensor? preActivation = null)
    {
        preActivation?.RequireLength((long)M * N, nameof(preActivation));
        output.RequireLength((long)M * N, nameof(output));
        input.RequireLength((long)M * K, nameof(input));
        weight.RequireLength((long)N * K, nameof(weight));
        if (weight.Type != IO.DType.F32 && (weight.Shape.Length != 2 || weight.Shape[0] != N || weight.Shape[1] != K))
            throw new ArgumentException($"weight is a {weight.Type} [{string.Join(", ", weight.Shape)}] matrix, the op needs [{N}, {K}]");
        bias?.RequireLength(N, nameof(bias));
    }

    public static void MatMul(Tensor output, Tensor a, Tensor b, MatMulShape shape)
    {
        output.RequireLength(shape.ElementsC, nameof(output));
        a.RequireLength(shape.ElementsA, nameof(a));
        b.RequireLength(shape.ElementsB, nameof(b));
    }

    /// <summary>Softmax and its backward: every buffer (rows, N).</summary>
    public static void Rows(int rows, int N, params ReadOnlySpan<(Tensor Buffer, string Name)> buffers)
    {
        foreach (var (buffer, name) in buffers) buffer.RequireLength((long)rows * N, name);
    }

    /// <summary>Element-wise ops (activations, dropout, accumulation, AdamW, losses): every buffer n long.</summary>
    /// <summary>The one length check of an op's operand: <paramref name="held"/> elements must cover <paramref name="needed"/>.</summary>
    public static void Require(long held, long needed, string name)
    {
        if (held < needed) throw new ArgumentException($"{name} holds {held} elements, the op needs {needed}");
    }

    /// <summary>A count of elements in [0, n] (how many of n elements an op treats differently).</summary>
    public static void Count(int count, int n, string name)
    {
        if (count < 0 || count > n) throw new ArgumentOutOfRangeException(name, $"{name} = {count} is not in [0, {n}]");
    }

    public static void Elementwise(int n, params ReadOnlySpan<(Tensor Buffer, string Name)> buffers)
    {
        foreach (var (buffer, name) in buffers) buffer.RequireLength(n, name);
    }

    public static void Dropout(Tensor output, Tensor input, int n, DropoutMask mask)
    {
        mask.Validate();
        Elementwise(n, (output, nameof(output)), (input, nameof(input)));
    }

    public static void Attention(Tensor output, Tensor qkv, SequenceLayout sequences, int NH, int HS, DropoutMask dropout)
    {
        dropout.Validate();
        sequences.Validate();
        long C = (long)NH * HS;
        output.RequireLength(sequences.Rows * C, nameof(output));
        qkv.RequireLength(sequences.Rows * 3 * C, nameof(qkv));
    }

    public static void AttentionProbabilities(Tensor probabilities, Tensor qkv, SequenceLayout sequences, int NH, int HS)
    {
        sequences.Validate();
        probabilities.RequireLength((long)sequences.B * NH * sequences.T * sequences.T, nameof(probabilities));
        qkv.RequireLength(sequences.Rows * 3L * NH * HS, nameof(qkv));
    }

    public static void AttentionBackward(Tensor dQkv, Tensor dOutput, Tensor qkv, SequenceLayout sequences, int NH, int HS, DropoutMask dropout)
    {
        dropout.Validate();
        sequences.Validate();
        long C = (long)NH * HS;
        dQkv.RequireLength(sequences.Rows * 3 * C, nameof(dQkv));
        dOutput.RequireLength(sequences.Rows * C, nameof(dOutput));
        qkv.RequireLength(sequences.Rows * 3 * C, nameof(qkv));
    }

    public static void LayerNorm(Tensor output, Tensor input, Tensor? residual, Tensor weight,
        Tensor bias, int N, int C)
    {
        output.RequireLength((long)N * C, nameof(output));
        input.RequireLength((long)N * C, nameof(input));
        residual?.RequireLength((long)N * C, nameof(residual));
        weight.RequireLength(C, nameof(weight));
        bias.RequireLength(C, nameof(bias));
    }

    public static void LayerNormBackward(Tensor dInput, Tensor dWeight, Tensor dBias, Tensor dOutput,
        Tensor input, Tensor? residual, Tensor weight, int N, int C)
    {
        dInput.RequireLength((long)N * C, nameof(dInput));
        dOutput.RequireLength((long)N * C, nameof(dOutput));
        input.RequireLength((long)N * C, nameof(input));
        residual?.RequireLength((long)N * C, nameof(residual));
        weight.RequireLength(C, nameof(weight));
        dWeight.RequireLength(C, nameof(dWeight));
        dBias.RequireLength(C, nameof(dBias));
    }

    public static void Embeddings(Tensor output, Tensor? sum, DeviceBuffer<int> inputIds, DeviceBuffer<int> positionIds,
        DeviceBuffer<int> tokenTypeIds, Tensor weight, Tensor bias, int B, int T, int C)
    {
        positionIds.RequireLength((long)B * T, nameof(positionIds));
        output.RequireLength((long)B * T * C, nameof(output));
        sum?.RequireLength((long)B * T * C, nameof(sum));
        weight.RequireLength(C, nameof(weight));
        bias.RequireLength(C, nameof(bias));
        inputIds.RequireLength((long)B * T, nameof(inputIds));
        tokenTypeIds.RequireLength((long)B * T, nameof(tokenTypeIds));
    }

    public static void EmbeddingsBackward(Tensor dSum, DeviceBuffer<int> inputIds, DeviceBuffer<int> positionIds, DeviceBuffer<int> tokenTypeIds,
        int B, int T, int C)
    {
        positionIds.RequireLength((long)B * T, nameof(positionIds));
        dSum.RequireLength((long)B * T * C, nameof(dSum));
        inputIds.RequireLength((long)B * T, nameof(inputIds));
        tokenTypeIds.RequireLength((long)B * T, nameof(tokenTypeIds));
    }

    /// <summary>GatherRows (gathered (R,C) from all (N,C)) and its backward (the other way).</summary>
    public static void GatherRows(Tensor gathered, Tensor all, DeviceBuffer<int> rows, int R, int N, int C, string gatheredName, string allName)
    {
        if (R < 0 || R > N) throw new ArgumentException($"gathering {R} of {N} rows");
        gathered.RequireLength((long)R * C, gatheredName);
        all.RequireLength((long)N * C, allName);
        rows.RequireLength(R, nameof(rows));
    }

    public static void LinearBackward(Tensor? dInput, Tensor dWeight, Tensor? dBias, Tensor dOutput,
        Tensor input, Tensor weight, int M, int K, int N)
    {
        dInput?.RequireLength((long)M * K, nameof(dInput));
        dWeight.RequireLength((long)N * K, nameof(dWeight));
        dBias?.RequireLength(N, nameof(dBias));
        dOutput.RequireLength((long)M * N, nameof(dOutput));
        input.RequireLength((long)M * K, nameof(input));
        weight.RequireLength((long)N * K, nameof(weight));
    }

    public static void CrossEntropy(Tensor losses, Tensor dLogits, Tensor logits, DeviceBuffer<int> labels, int B, int V)
    {
        losses.RequireLength(B, nameof(losses));
        dLogits.RequireLength((long)B * V, nameof(dLogits));
        logits.RequireLength((long)B * V, nameof(logits));
        labels.RequireLength(B, nameof(labels));
    }
}
