namespace Engine.Backends;

/// <summary>
/// Where a batch's B sequences lie in the rows of a per-token activation (rows, ·), for the ops that work per sequence
/// (attention). <b>Padded</b>: sequence b is rows [b·T, b·T + T), <see cref="Indices"/> is the key mask (B,T), 0 = a pad
/// token that no query attends to. <b>Packed</b> (FlashAttention's varlen form): sequence b is rows
/// [Indices[b], Indices[b + 1]) — <see cref="Indices"/> holds the B + 1 cumulative lengths, from 0 to <see cref="Rows"/>,
/// each sequence at most T long — and every key is real, so no row of any op is spent on padding.
/// </summary>
/// <remarks>
/// Token i of sequence b is the same token in both layouts, and dropout on attention probabilities is indexed by
/// (b, head, i, j) in both, with T the batch's longest sequence: a packed batch gives what its padded form gives on the
/// real tokens.
/// </remarks>
public readonly struct SequenceLayout
{
    private SequenceLayout(DeviceBuffer<int> indices, int batch, int longest, int rows, bool isPacked) =>
        (Indices, B, T, Rows, IsPacked) = (indices, batch, longest, rows, isPacked);

    /// <summary>The key mask (B,T) when padded; the cumulative lengths (B + 1) when packed.</summary>
    public DeviceBuffer<int> Indices { get; }
    public int B { get; }
    /// <summary>The padded length; when packed, the bound on every sequence's length.</summary>
    public int T { get; }
    /// <summary>Rows of the activations: B·T padded, the sum of the lengths packed.</summary>
    public int Rows { get; }
    public bool IsPacked { get; }

    public static SequenceLayout Padded(DeviceBuffer<int> keyMask, int B, int T) => new(keyMask, B, T, B * T, isPacked: false);

    /// <summary>Packed sequences; <paramref name="sequenceStarts"/> (B + 1) must rise from 0 to <paramref name="rows"/> in steps of at most T (the CPU backend checks).</summary>
    public static SequenceLayout Packed(DeviceBuffer<int> sequenceStarts, int B, int T, int rows) => new(sequenceStarts, B, T, rows, isPacked: true);

    /// <summary>Throws unless the sizes are positive and <see cref="Indices"/> holds what the layout reads.</summary>
    public void Validate()
    {
        if (B <= 0 || T <= 0 || Rows < 0 || (!IsPacked && Rows != B * T) || (IsPacked && Rows > (long)B * T))
            throw new ArgumentOutOfRangeException(nameof(Rows), $"{(IsPacked ? "packed" : "padded")} layout of {B} sequences of at most {T} tokens in {Rows} rows");
        Indices.RequireLength(IsPacked ? B + 1L : (long)B * T, IsPacked ? "sequenceStarts" : "keyMask");
    }

    /// <summary>
    /// Throws unless the cumulative lengths <paramref name="starts"/> rise from 0 to <see cref="Rows"/> in steps of at most
    /// T: what a backend that can read them checks before an op trusts them as row offsets.
    /// </summary>
    public void ValidateStarts(ReadOnlySpan<int> starts)
    {
        if (!IsPacked) return;
        if (starts[0] != 0 || starts[B] != Rows)
            throw new ArgumentException($"sequence starts must run from 0 to {Rows}, got {starts[0]} … {starts[B]}", "sequenceStarts");
        for (int b = 0; b < B; b++)
            if (starts[b + 1] < starts[b] || starts[b + 1] - starts[b] > T)
                throw new ArgumentException($"sequence {b} spans rows [{starts[b]}, {starts[b + 1]}), not 0 to {T} rows", "sequenceStarts");
    }
}
