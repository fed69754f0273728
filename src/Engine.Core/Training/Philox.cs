namespace Engine.Training;

/// <summary>
/// Philox4x32-10, the counter-based generator of Salmon et al. (Random123, "Parallel random numbers: as easy
/// as 1, 2, 3", SC'11): four 32-bit words from a 128-bit counter and a 64-bit key, with no state, so any
/// element's random number can be regenerated anywhere (a dropout backward, a GPU thread) from (seed, index).
/// Plain integer arithmetic only: ILGPU kernels call it as it is.
/// </summary>
public static class Philox
{
    private const uint M0 = 0xD2511F53, M1 = 0xCD9E8D57, W0 = 0x9E3779B9, W1 = 0xBB67AE85;

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
}
