// The software form of mma.sync's data movement, shared by the tensor-core kernels' emulator paths (int8 m16n8k32,
// fp16/bf16 m16n8k16, tf32 m16n8k8): in all of them lane (g, t) — the PTX ISA's groupID = lane/4 and threadID_in_group
// = lane%4 — holds A's rows g and g+8 at words t and 4+t (a0…a3), B's column g at words t and 4+t (b0, b1), and the
// outputs at rows g, g+8 and columns 2t, 2t+1. For step s of 4 (one pair of words on each side) a lane needs the words
// that lane 4g+s holds of its rows and that lanes 4·(2t)+s and 4·(2t+1)+s hold of its columns; Gather fetches them with
// shuffles. Only the kernels' products of the fetched words differ (four int8 pairs, two halves, one tf32 value).
using ILGPU;

namespace Engine.Kernels;

/// <summary>The A and B words one lane needs for step s of a software mma: its two rows and two columns, at the step's low and high word.</summary>
internal readonly record struct MmaFragments<T>(T Top, T TopHigh, T Bottom, T BottomHigh, T LeftLow, T LeftHigh, T RightLow, T RightHigh)
    where T : unmanaged
{
    /// <summary>Every lane of the warp must call it (shuffles), with the same <paramref name="step"/>.</summary>
    public static MmaFragments<T> Gather(T a0, T a1, T a2, T a3, T b0, T b1, int group, int inGroup, int step)
    {
        int rowLane = 4 * group + step, leftLane = 4 * (2 * inGroup) + step, rightLane = leftLane + 4;
        return new(Warp.Shuffle(a0, rowLane), Warp.Shuffle(a2, rowLane), Warp.Shuffle(a1, rowLane), Warp.Shuffle(a3, rowLane),
            Warp.Shuffle(b0, leftLane), Warp.Shuffle(b1, leftLane), Warp.Shuffle(b0, rightLane), Warp.Shuffle(b1, rightLane));
    }
}
