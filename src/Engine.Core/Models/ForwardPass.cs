using Engine.Backends;
using Engine.Models.Bert;

namespace Engine.Models;

/// <summary>
/// A model's activation buffers, each as large as its largest use so far and reused for every smaller one: a
/// fine-tuning run with per-batch padding allocates them once, not once per batch shape. A buffer is keyed by its
/// owner (a module, when a pass records for a backward; none when a pass only infers and every layer may use the
/// same scratch), its name, its width per row and its element type.
/// </summary>
internal sealed class ActivationArena(IBackend backend) : IDisposable
{
    private readonly Dictionary<(object? Owner, string Name, int Width, Type Type), IDisposable> _buffers = [];

    /// <summary>A (rows, width) buffer; one that is too small is replaced (its contents are not kept: a pass asks before it writes).</summary>
    public DeviceBuffer<T> Get<T>(object? owner, string name, int width, int rows) where T : unmanaged
    {
        var key = (owner, name, width, typeof(T));
        long length = (long)rows * width;
        if (length > Array.MaxLength) throw new EngineException($"activation '{name}' would hold {length:N0} values, more than one buffer holds; use smaller batches");
        if (_buffers.TryGetValue(key, out var existing) && ((DeviceBuffer<T>)existing).Length >= length) return (DeviceBuffer<T>)existing;
        existing?.Dispose();
        var buffer = backend.Allocate<T>((int)Math.Max(length, 1));
        _buffers[key] = buffer;
        return buffer;
    }

    public void Dispose()
    {
        foreach (var buffer in _buffers.Values) buffer.Dispose();
        _buffers.Clear();
    }
}

/// <summary>
/// One forward pass over a batch, and the backward that may follow it: the batch on the device (ids, the family's
/// position ids, token types, and the attention mask or the sequence starts), its dropout, and whether it records.
/// A batch whose every row is real tokens then padding is <b>packed</b>: its per-token activations hold only the real
/// tokens, sequence after sequence (<see cref="SequenceLayout"/>), so no Linear, layer-norm or attention spends time
/// on padding; <see cref="Row"/> says where a token is, <see cref="Unpack"/> spreads rows back to (B,T).
/// A pass that records keeps, per module, what that module's backward reads; one that does not (inference) gives every
/// layer the same scratch.
/// Modules ask the pass for their buffers: <c>Kept</c> for what their backward reads, <c>Scratch</c>
/// for what nothing reads later.
/// </summary>
public sealed class ForwardPass
{
    private readonly ActivationArena _arena;
    private static readonly object ScratchOwner = new();

    /// <param name="lengths">Each row's real tokens when the pass packs the batch; null to run it padded.</param>
    internal ForwardPass(IBackend backend, ActivationArena arena, BertBatch batch, int[] positionIds, int[]? lengths, bool records, DropoutSettings dropout)
    {
        if (records && backend is not ITrainingBackend) throw new InvalidOperationException($"{backend.Description} cannot train");
        Backend = backend;
        _arena = arena;
        (B, T, Records, Dropout) = (batch.BatchSize, batch.SequenceLength, records, dropout);
        if (lengths is null)
        {
            Rows = B * T;
            InputIds = Ids("input_ids", batch.InputIds);
            PositionIds = Ids("position_ids", positionIds);
            TokenTypeIds = Ids("token_type_ids", batch.TokenTypeIds);
            Sequences = SequenceLayout.Padded(Ids("attention_mask", batch.AttentionMask), B, T);
            return;
        }
        _starts = new int[B + 1];
        for (int b = 0; b < B; b++) _starts[b + 1] = _starts[b] + lengths[b];
        Rows = _starts[B];
        InputIds = Ids("input_ids", Pack(batch.InputIds));
        PositionIds = Ids("position_ids", Pack(positionIds));
        TokenTypeIds = Ids("token_type_ids", Pack(batch.TokenTypeIds));
        var starts = _arena.Get<int>(ScratchOwner, "sequence_starts", 1, B + 1);
        Backend.Upload<int>(_starts, starts);
        Sequences = SequenceLayout.Packed(starts, B, T, Rows);
    }

    /// <summary>Sequence b's first row when packed (B + 1 cumulative lengths); null when padded.</summary>
    private readonly int[]? _starts;

    public IBackend Backend { get; }

    /// <summary>The backend, for a backward (only a recording pass has one).</summary>
    public ITrainingBackend Training => (ITrainingBackend)Backend;

    public int B { get; }
    /// <summary>The batch's padded length (when packed, the longest sequence's bound).</summary>
    public int T { get; }
    /// <summary>Rows of every per-token activation: B·T padded, the real tokens packed.</summary>
    public int Rows { get; }
    public bool Records { get; }
    public DropoutSettings Dropout { get; }

    /// <summary>Per-token ids (<see cref="Rows"/>), in the pass's layout.</summary>
    public DeviceBuffer<int> InputIds { get; }
    public DeviceBuffer<int> PositionIds { get; }
    public DeviceBuffer<int> TokenTypeIds { get; }
    /// <summary>Where each sequence's rows are, for attention.</summary>
    public SequenceLayout Sequences { get; }

    /// <summary>Each layer's attention probabilities (B,NH,T,T) on the host, in layer order, when the pass collects them; else null.</summary>
    public List<float[]>? Attentions { get; init; }

    /// <summary>
    /// Adds a layer's attention probabilities to <see cref="Attentions"/>, computed from its Q, K, V (rows,3C) apart from
    /// the fused attention, in scratch every layer shares.
    /// </summary>
    internal void CollectAttention(DeviceBuffer<float> qkv, int NH, int HS)
    {
        long length = (long)B * NH * T * T;
        if (length > Array.MaxLength) throw new EngineException($"the attention maps of {B} sequences of {T} tokens would hold {length:N0} values per layer, more than one buffer holds; use smaller batches");
        var probabilities = _arena.Get<float>(ScratchOwner, "attention_probabilities", NH * T * T, B);
        Backend.AttentionProbabilities(probabilities, qkv, Sequences, NH, HS);
        var host = new float[length];
        Backend.Download(probabilities, host);
        Attentions!.Add(host);
    }

    /// <summary>
    /// The activation row of token <paramref name="t"/> of sequence <paramref name="b"/>; −1 when the pass is packed and
    /// that position is padding (no row holds it).
    /// </summary>
    public int Row(int b, int t) => _starts is null ? b * T + t : t < _starts[b + 1] - _starts[b] ? _starts[b] + t : -1;

    /// <summary>(B·T, width) from per-token rows (<see cref="Rows"/>, width) read back from the device: padded positions of a packed pass hold zeros.</summary>
    public float[] Unpack(float[] rows, int width)
    {
        if (_starts is null || Rows == B * T) return rows; // padded, or packed with no padding: already the (B,T) layout
        var padded = new float[(long)B * T * width];
        for (int b = 0; b < B; b++)
            rows.AsSpan(_starts[b] * width, (_starts[b + 1] - _starts[b]) * width).CopyTo(padded.AsSpan(b * T * width));
        return padded;
    }

    /// <summary>The real tokens' values of a (B,T) array, sequence after sequence.</summary>
    private int[] Pack(int[] padded)
    {
        var packed = new int[Rows];
        for (int b = 0; b < B; b++) padded.AsSpan(b * T, _starts![b + 1] - _starts[b]).CopyTo(packed.AsSpan(_starts[b]));
        return packed;
    }

    /// <summary>
    /// (<see cref="Rows"/>, width), or (B, width) when not <paramref name="perToken"/>: what <paramref name="owner"/> computes and its
    /// backward reads; its own buffer when the pass records, else the scratch every owner shares under <paramref name="name"/>.
    /// </summary>
    public DeviceBuffer<float> Kept(object owner, string name, int width, bool perToken = true) => Kept(owner, name, width, perToken ? Rows : B);

    /// <summary>(<paramref name="rows"/>, width) kept by <paramref name="owner"/>: a head's rows that are neither tokens nor examples (the masked positions).</summary>
    public DeviceBuffer<float> Kept(object owner, string name, int width, int rows) => _arena.Get<float>(Records ? owner : null, name, width, rows);

    /// <summary>Integers (labels, row indices) that <paramref name="owner"/> uploads for its backward: like <c>Kept</c>.</summary>
    public DeviceBuffer<int> KeptIntegers(object owner, string name, int width, bool perToken = true) => KeptIntegers(owner, name, width, perToken ? Rows : B);

    public DeviceBuffer<int> KeptIntegers(object owner, string name, int width, int rows) => _arena.Get<int>(Records ? owner : null, name, width, rows);

    /// <summary>A buffer shared by every module under <paramref name="name"/>, read by nothing after its user is done (gradients on their way down).</summary>
    public DeviceBuffer<float> Scratch(string name, int width, bool perToken = true) => Scratch(name, width, perToken ? Rows : B);

    public DeviceBuffer<float> Scratch(string name, int width, int rows) => _arena.Get<float>(ScratchOwner, name, width, rows);

    /// <summary>
    /// Row indices (<paramref name="rows"/>) on the device for <see cref="IBackend.GatherRows"/>, kept by <paramref name="owner"/>
    /// like any activation (a backward scatters through the same ones).
    /// </summary>
    public DeviceBuffer<int> RowIndices(object owner, string name, int[] rows)
    {
        var buffer = KeptIntegers(owner, name, 1, rows.Length);
        Backend.Upload<int>(rows, buffer);
        return buffer;
    }

    /// <summary>Inverted dropout in place, skipped when the mask drops nothing (inference).</summary>
    public void ApplyDropout(DeviceBuffer<float> values, int n, DropoutMask mask)
    {
        if (mask.IsActive) Training.Dropout(values, values, n, mask);
    }

    /// <summary>The backward of <see cref="ApplyDropout"/>, in place.</summary>
    public void ApplyDropoutBackward(DeviceBuffer<float> gradient, int n, DropoutMask mask)
    {
        if (mask.IsActive) Training.DropoutBackward(gradient, gradient, n, mask);
    }

    private DeviceBuffer<int> Ids(string name, int[] values)
    {
        var buffer = _arena.Get<int>(ScratchOwner, name, 1, Rows);
        Backend.Upload<int>(values, buffer);
        return buffer;
    }
}
