using Engine.Backends;
using Engine.Models.Bert;

namespace Engine.Models;

/// <summary>
/// A model's activation buffers, sized for the most tokens and rows seen so far and reused for every smaller
/// batch: a fine-tuning run with per-batch padding allocates them once, not once per batch shape. A buffer is
/// keyed by its owner (a module, when a pass records for a backward; none when a pass only infers and every
/// layer may use the same scratch), its name and its width per token or per row.
/// </summary>
internal sealed class ActivationArena(IBackend backend) : IDisposable
{
    private readonly Dictionary<(object? Owner, string Name, int Width, bool PerToken, Type Type), IDisposable> _buffers = [];

    public int TokenCapacity { get; private set; }
    public int RowCapacity { get; private set; }

    /// <summary>Makes room for a (B,T) batch: when it exceeds what was seen, every buffer is freed and comes back larger on first use.</summary>
    public void Reserve(int B, int T)
    {
        if (B * T <= TokenCapacity && B <= RowCapacity) return;
        Release();
        TokenCapacity = Math.Max(B * T, TokenCapacity);
        RowCapacity = Math.Max(B, RowCapacity);
    }

    public DeviceBuffer<T> Get<T>(object? owner, string name, int width, bool perToken) where T : unmanaged
    {
        var key = (owner, name, width, perToken, typeof(T));
        if (!_buffers.TryGetValue(key, out var buffer))
        {
            long length = (long)(perToken ? TokenCapacity : RowCapacity) * width;
            if (length > Array.MaxLength) throw new EngineException($"activation '{name}' would hold {length:N0} values, more than one buffer holds; use smaller batches");
            _buffers[key] = buffer = backend.Allocate<T>((int)Math.Max(length, 1));
        }
        return (DeviceBuffer<T>)buffer;
    }

    private void Release()
    {
        foreach (var buffer in _buffers.Values) buffer.Dispose();
        _buffers.Clear();
    }

    public void Dispose() => Release();
}

/// <summary>
/// One forward pass over a batch, and the backward that may follow it: the batch on the device (ids, the family's
/// position ids, token types, attention mask), its dropout, and whether it records. A pass that records keeps, per
/// module, what that module's backward reads; one that does not (inference) gives every layer the same scratch.
/// Modules ask the pass for their buffers: <see cref="Kept"/> for what their backward reads, <see cref="Scratch"/>
/// for what nothing reads later.
/// </summary>
public sealed class ForwardPass
{
    private readonly ActivationArena _arena;
    private static readonly object ScratchOwner = new();

    internal ForwardPass(IBackend backend, ActivationArena arena, BertBatch batch, int[] positionIds, bool records, DropoutSettings dropout)
    {
        if (records && backend is not ITrainingBackend) throw new InvalidOperationException($"{backend.Description} cannot train");
        Backend = backend;
        _arena = arena;
        (B, T, Records, Dropout) = (batch.BatchSize, batch.SequenceLength, records, dropout);
        arena.Reserve(B, T);
        InputIds = Ids("input_ids", batch.InputIds);
        PositionIds = Ids("position_ids", positionIds);
        TokenTypeIds = Ids("token_type_ids", batch.TokenTypeIds);
        AttentionMask = Ids("attention_mask", batch.AttentionMask);
    }

    public IBackend Backend { get; }

    /// <summary>The backend, for a backward (only a recording pass has one).</summary>
    public ITrainingBackend Training => (ITrainingBackend)Backend;

    public int B { get; }
    public int T { get; }
    public int Rows => B * T;
    public bool Records { get; }
    public DropoutSettings Dropout { get; }

    public DeviceBuffer<int> InputIds { get; }
    public DeviceBuffer<int> PositionIds { get; }
    public DeviceBuffer<int> TokenTypeIds { get; }
    public DeviceBuffer<int> AttentionMask { get; }

    /// <summary>
    /// (B·T, width), or (B, width) when not <paramref name="perToken"/>: what <paramref name="owner"/> computes and its
    /// backward reads; its own buffer when the pass records, else the scratch every owner shares under <paramref name="name"/>.
    /// </summary>
    public DeviceBuffer<float> Kept(object owner, string name, int width, bool perToken = true) =>
        _arena.Get<float>(Records ? owner : null, name, width, perToken);

    /// <summary>Integers (labels) that <paramref name="owner"/> uploads for its backward: like <see cref="Kept"/>.</summary>
    public DeviceBuffer<int> KeptIntegers(object owner, string name, int width, bool perToken = true) =>
        _arena.Get<int>(Records ? owner : null, name, width, perToken);

    /// <summary>A buffer shared by every module under <paramref name="name"/>, read by nothing after its user is done (gradients on their way down).</summary>
    public DeviceBuffer<float> Scratch(string name, int width, bool perToken = true) => _arena.Get<float>(ScratchOwner, name, width, perToken);

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
        var buffer = _arena.Get<int>(ScratchOwner, name, 1, perToken: true);
        Backend.Upload<int>(values, buffer);
        return buffer;
    }
}
