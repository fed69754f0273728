using Engine.Backends;

namespace Engine.Models.Bert;

/// <summary>
/// The forward pass's buffers, allocated for the largest batch seen so far and reused: after the first
/// batch of a given size, a forward pass allocates nothing on the backend.
/// </summary>
internal sealed class BertActivations : IDisposable
{
    private readonly IBackend _backend;
    private readonly BertConfig _config;
    private readonly List<IDisposable> _owned = [];

    public int TokenCapacity { get; private set; }
    public int BatchCapacity { get; private set; }

    public DeviceBuffer<int> InputIds { get; private set; } = null!;        // (B,T)
    public DeviceBuffer<int> TokenTypeIds { get; private set; } = null!;    // (B,T)
    public DeviceBuffer<int> AttentionMask { get; private set; } = null!;   // (B,T)
    public DeviceBuffer<float> Hidden { get; private set; } = null!;        // (B,T,C) the residual stream
    public DeviceBuffer<float> QueryKeyValue { get; private set; } = null!; // (B,T,3C)
    public DeviceBuffer<float> Context { get; private set; } = null!;       // (B,T,C)
    public DeviceBuffer<float> Projected { get; private set; } = null!;     // (B,T,C)
    public DeviceBuffer<float> AttentionOutput { get; private set; } = null!; // (B,T,C)
    public DeviceBuffer<float> Intermediate { get; private set; } = null!;  // (B,T,I)
    public DeviceBuffer<float> FirstTokens { get; private set; } = null!;   // (B,C)
    public DeviceBuffer<float> Pooled { get; private set; } = null!;        // (B,C)

    public BertActivations(IBackend backend, BertConfig config)
    {
        _backend = backend;
        _config = config;
    }

    public void Ensure(int B, int T)
    {
        int tokens = B * T;
        if (tokens <= TokenCapacity && B <= BatchCapacity) return;
        Release();
        TokenCapacity = Math.Max(tokens, TokenCapacity);
        BatchCapacity = Math.Max(B, BatchCapacity);
        int C = _config.HiddenSize, I = _config.IntermediateSize;
        InputIds = Own(_backend.Allocate<int>(TokenCapacity));
        TokenTypeIds = Own(_backend.Allocate<int>(TokenCapacity));
        AttentionMask = Own(_backend.Allocate<int>(TokenCapacity));
        Hidden = Own(_backend.Allocate<float>(TokenCapacity * C));
        QueryKeyValue = Own(_backend.Allocate<float>(TokenCapacity * 3 * C));
        Context = Own(_backend.Allocate<float>(TokenCapacity * C));
        Projected = Own(_backend.Allocate<float>(TokenCapacity * C));
        AttentionOutput = Own(_backend.Allocate<float>(TokenCapacity * C));
        Intermediate = Own(_backend.Allocate<float>(TokenCapacity * I));
        FirstTokens = Own(_backend.Allocate<float>(BatchCapacity * C));
        Pooled = Own(_backend.Allocate<float>(BatchCapacity * C));
    }

    private DeviceBuffer<T> Own<T>(DeviceBuffer<T> buffer) where T : unmanaged
    {
        _owned.Add(buffer);
        return buffer;
    }

    private void Release()
    {
        foreach (var b in _owned) b.Dispose();
        _owned.Clear();
    }

    public void Dispose() => Release();
}
