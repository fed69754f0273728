namespace Engine.Training;

/// <summary>
/// Philox4x32-10, the counter-based generator of Salmon et al. (Random123, "Parallel random numbers: as easy
/// as 1, 2, 3", SC'11): four 32-bit words from a 128-bit counter and a 64-bit key, with no state, so any
/// element's random number can be regenerated anywhere (a dropout backward, a GPU thread) from (seed, index).
/// Plain integer arithmetic only: ILGPU kernels call it as it is.
/// </summary>
public static class Philox
{
    /// <summary>The round multipliers and key increments (Weyl constants); the CPU backend's vector Philox uses them too.</summary>
    internal const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;

    /// <summary>The four output words for counter (c0..c3) and key (k0, k1).</summary>
    public static (uint, uint, uint, uint) Block(uint c0, uint c1, uint c2, uint c3, uint k0, uint k1)
    {
        for (int round = 0; round < 10; round++)
        {
            if (round > 0)
            {
                k0 += W0;
                k1 += W1;
            }
            ulong product0 = (ulong)M0 * c0, product1 = (ulong)M1 * c2;
            uint hi0 = (uint)(product0 >> 32), lo0 = (uint)product0, hi1 = (uint)(product1 >> 32), lo1 = (uint)product1;
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0);
        }
        return (c0, c1, c2, c3);
    }

    /// <summary>
    /// A uniform number in [0, 1) for element <paramref name="index"/> of a stream (<paramref name="seed"/>,
    /// <paramref name="offset"/>): word index mod 4 of the block at counter (index / 4, offset), 24 bits.
    /// </summary>
    public static float Uniform(ulong seed, ulong offset, long index)
    {
        ulong block = (ulong)index >> 2;
        var (w0, w1, w2, w3) = Block((uint)block, (uint)(block >> 32), (uint)offset, (uint)(offset >> 32), (uint)seed, (uint)(seed >> 32));
        return ToUniform((index & 3) switch { 0 => w0, 1 => w1, 2 => w2, _ => w3 });
    }

    /// <summary>An output word as a uniform number in [0, 1): its top 24 bits, exact in a float.</summary>
    public static float ToUniform(uint word) => (word >> 8) * (1f / (1 << 24));

    /// <summary>
    /// Element <paramref name="index"/> of a stream (<paramref name="seed"/>, <paramref name="offset"/>) as an integer
    /// in [0, <paramref name="bound"/>): the first two words of block (index, offset) as 64 bits, scaled by a
    /// 128-bit product (Lemire), so the bias is below 2⁻³² for any bound that fits an int.
    /// </summary>
    public static int Below(ulong seed, ulong offset, long index, int bound)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bound);
        var (w0, w1, _, _) = Block((uint)index, (uint)((ulong)index >> 32), (uint)offset, (uint)(offset >> 32), (uint)seed, (uint)(seed >> 32));
        ulong bits = (ulong)w1 << 32 | w0;
        return (int)(ulong)(((UInt128)bits * (uint)bound) >> 64);
    }

    /// <summary>
    /// Element <paramref name="index"/> of a stream as a standard normal number: Box–Muller on the four words of
    /// block (index, offset), two 53-bit uniforms in float64.
    /// </summary>
    public static double Normal(ulong seed, ulong offset, long index)
    {
        var (w0, w1, w2, w3) = Block((uint)index, (uint)((ulong)index >> 32), (uint)offset, (uint)(offset >> 32), (uint)seed, (uint)(seed >> 32));
        const double Unit = 1.0 / (1UL << 53);
        double u = 1 - (((ulong)w1 << 32 | w0) >> 11) * Unit; // (0, 1]: the logarithm stays finite
        double v = (((ulong)w3 << 32 | w2) >> 11) * Unit;
        return Math.Sqrt(-2 * Math.Log(u)) * Math.Cos(2 * Math.PI * v);
    }
}

/// <summary>
/// Every random draw of a run, as a fixed function of its seed: one Philox stream per use, so the same seed
/// gives the same numbers in any process, on any machine, in any .NET version (unlike <c>HashCode</c>, which is
/// randomised per process, or <c>System.Random</c>, whose sequence .NET does not promise to keep).
/// </summary>
/// <remarks>
/// Streams are Philox offsets under the run's seed as key. Dropout takes offsets step·1024 + site
/// (<see cref="Models.Bert.DropoutSettings"/>), which stay below 2⁶² for any step count a run can reach; the
/// other uses take offsets from 2⁶³ up, so no two uses ever share numbers.
/// </remarks>
public static class SeedStreams
{
    private const ulong EpochOrderBase = 1UL << 63, HeadInitialisation = (1UL << 63) + (1UL << 62),
        InitialisationBase = (1UL << 63) + (1UL << 61), MaskingBase = (1UL << 63) + (1UL << 60), PairingBase = (1UL << 63) + (1UL << 59),
        SearchBase = (1UL << 63) + (1UL << 58);

    /// <summary>The order of <paramref name="count"/> examples in <paramref name="epoch"/>: a Fisher–Yates shuffle on its own stream.</summary>
    public static int[] EpochOrder(int count, ulong seed, int epoch)
    {
        var order = new int[count];
        for (int i = 0; i < count; i++) order[i] = i;
        ulong offset = EpochOrderBase + (uint)epoch;
        for (int i = count - 1; i > 0; i--)
        {
            int j = Philox.Below(seed, offset, i, i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return order;
    }

    /// <summary><paramref name="count"/> draws from N(0, std²) for a newly initialised head (Hugging Face initialises heads from N(0, 0.02²)).</summary>
    public static float[] HeadWeights(int count, double std, ulong seed)
    {
        var weights = new float[count];
        for (int i = 0; i < count; i++) weights[i] = (float)(std * Philox.Normal(seed, HeadInitialisation, i));
        return weights;
    }

    /// <summary>
    /// <paramref name="count"/> draws from N(0, std²) for the new tensor <paramref name="name"/> (pre-training from scratch,
    /// a new masked-LM head): each name its own stream (a 60-bit FNV-1a hash of it), so adding a tensor changes no other.
    /// </summary>
    public static float[] InitialWeights(int count, double std, ulong seed, string name)
    {
        ulong hash = 14695981039346656037UL;
        foreach (char c in name) hash = (hash ^ c) * 1099511628211UL;
        ulong offset = InitialisationBase + (hash >> 4);
        var weights = new float[count];
        for (int i = 0; i < count; i++) weights[i] = (float)(std * Philox.Normal(seed, offset, i));
        return weights;
    }

    /// <summary>
    /// The stream a masked-LM batch of micro-step <paramref name="step"/> draws its masks from (step −1: evaluation), one
    /// per <paramref name="purpose"/> (0 per-token choices, 1 random tokens, 2 whole-word order).
    /// </summary>
    public static ulong Masking(long step, int purpose) => MaskingBase + (ulong)(step + 1) * 4 + (ulong)purpose;

    /// <summary>The stream that pairs and swaps segments when a corpus is cut into pre-training examples.</summary>
    public static ulong Pairing => PairingBase;

    /// <summary>The stream that chooses a corpus's held-out documents.</summary>
    public static ulong HeldOut => PairingBase + 1;

    /// <summary>The stream a hyper-parameter search draws trial <paramref name="trial"/>'s point from.</summary>
    public static ulong SearchTrial(int trial) => SearchBase + (uint)trial;
}
