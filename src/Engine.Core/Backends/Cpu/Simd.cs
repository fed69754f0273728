using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Engine.Backends.Cpu;

/// <summary>
/// The widest float vector this processor runs natively, as a type parameter: kernels written once over
/// <see cref="ISimd{TSelf}"/> are compiled by the JIT for 512-, 256- or 128-bit vectors.
/// </summary>
internal interface ISimd<TSelf> where TSelf : struct, ISimd<TSelf>
{
    static abstract int Count { get; }
    static abstract TSelf Zero { get; }
    static abstract unsafe TSelf Load(float* p);
    static abstract unsafe TSelf Broadcast(float* p);
    static abstract TSelf Create(float value);
    static abstract TSelf FusedMultiplyAdd(TSelf a, TSelf b, TSelf addend);
    unsafe void Store(float* p);
}

internal readonly struct Simd512(Vector512<float> v) : ISimd<Simd512>
{
    private readonly Vector512<float> _v = v;
    public static int Count => Vector512<float>.Count;
    public static Simd512 Zero => default;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static unsafe Simd512 Load(float* p) => new(Vector512.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static unsafe Simd512 Broadcast(float* p) => new(Vector512.Create(*p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Create(float value) => new(Vector512.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 FusedMultiplyAdd(Simd512 a, Simd512 b, Simd512 c) => new(Vector512.FusedMultiplyAdd(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public unsafe void Store(float* p) => _v.Store(p);
}

internal readonly struct Simd256(Vector256<float> v) : ISimd<Simd256>
{
    private readonly Vector256<float> _v = v;
    public static int Count => Vector256<float>.Count;
    public static Simd256 Zero => default;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static unsafe Simd256 Load(float* p) => new(Vector256.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static unsafe Simd256 Broadcast(float* p) => new(Vector256.Create(*p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Create(float value) => new(Vector256.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 FusedMultiplyAdd(Simd256 a, Simd256 b, Simd256 c) => new(Vector256.FusedMultiplyAdd(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public unsafe void Store(float* p) => _v.Store(p);
}

internal readonly struct Simd128(Vector128<float> v) : ISimd<Simd128>
{
    private readonly Vector128<float> _v = v;
    public static int Count => Vector128<float>.Count;
    public static Simd128 Zero => default;
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static unsafe Simd128 Load(float* p) => new(Vector128.Load(p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static unsafe Simd128 Broadcast(float* p) => new(Vector128.Create(*p));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Create(float value) => new(Vector128.Create(value));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 FusedMultiplyAdd(Simd128 a, Simd128 b, Simd128 c) => new(Vector128.FusedMultiplyAdd(a._v, b._v, c._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public unsafe void Store(float* p) => _v.Store(p);
}

internal static class Simd
{
    /// <summary>Width in floats of the vectors the GEMM kernel uses on this processor.</summary>
    public static int Width => Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : 4;

    public static string Name => Width switch { 16 => "AVX-512", 8 => "256-bit SIMD", _ => "128-bit SIMD" };
}
