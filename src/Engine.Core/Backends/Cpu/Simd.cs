using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Engine.Backends.Cpu;

/// <summary>
/// The widest float vector this processor runs natively, as a type parameter: kernels written once over
/// <see cref="ISimd{TSelf}"/> (the GEMM, attention, GELU, the exponential) are compiled by the JIT for 512-, 256- or
/// 128-bit vectors. (<c>Vector&lt;T&gt;</c> stays 256-bit on AVX-512 machines unless the process is configured otherwise.)
/// </summary>
internal interface ISimd<TSelf> where TSelf : struct, ISimd<TSelf>
{
    static abstract int Count { get; }
    static abstract TSelf Zero { get; }
    static abstract unsafe TSelf Load(float* p);
    static abstract unsafe TSelf Broadcast(float* p);
    static abstract TSelf Create(float value);
    static abstract TSelf FusedMultiplyAdd(TSelf a, TSelf b, TSelf addend);
    static abstract TSelf Add(TSelf a, TSelf b);
    static abstract TSelf operator +(TSelf a, TSelf b);
    static abstract TSelf operator -(TSelf a, TSelf b);
    static abstract TSelf operator *(TSelf a, TSelf b);
    static abstract TSelf operator /(TSelf a, TSelf b);
    /// <summary>The processor's minimum (vminps): where a lane of either is NaN, <paramref name="b"/>'s lane — put the value that may be NaN second.</summary>
    static abstract TSelf Min(TSelf a, TSelf b);
    /// <summary>The processor's maximum (vmaxps), NaN as <see cref="Min"/>. (.NET's IEEE Min and Max cost six more instructions a vector.)</summary>
    static abstract TSelf Max(TSelf a, TSelf b);
    static abstract TSelf Abs(TSelf a);
    /// <summary>Rounded to the nearest integer, ties to even.</summary>
    static abstract TSelf Round(TSelf a);
    /// <summary>2ⁿ for each lane's integral n in [−126, 127], built in the exponent bits (the unsaturated conversion: n is in range).</summary>
    static abstract TSelf PowerOfTwo(TSelf n);
    /// <summary>Lane-wise <paramref name="left"/> &lt; <paramref name="right"/> ? <paramref name="ifLess"/> : <paramref name="otherwise"/>.</summary>
    static abstract TSelf SelectLess(TSelf left, TSelf right, TSelf ifLess, TSelf otherwise);
    static abstract float Sum(TSelf a);
    /// <summary>The largest lane (NaN lanes may be passed over).</summary>
    static abstract float MaxAcross(TSelf a);
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
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Add(Simd512 a, Simd512 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 operator +(Simd512 a, Simd512 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 operator -(Simd512 a, Simd512 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 operator *(Simd512 a, Simd512 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 operator /(Simd512 a, Simd512 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Min(Simd512 a, Simd512 b) => new(Vector512.MinNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Max(Simd512 a, Simd512 b) => new(Vector512.MaxNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Abs(Simd512 a) => new(Vector512.Abs(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 Round(Simd512 a) => new(Vector512.Round(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 PowerOfTwo(Simd512 n) => new(Vector512.ShiftLeft(Vector512.ConvertToInt32Native(n._v) + Vector512.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd512 SelectLess(Simd512 left, Simd512 right, Simd512 ifLess, Simd512 otherwise) => new(Vector512.ConditionalSelect(Vector512.LessThan(left._v, right._v), ifLess._v, otherwise._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Simd512 a) => Vector512.Sum(a._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float MaxAcross(Simd512 a) => Simd256.MaxAcross(new(Vector256.MaxNative(a._v.GetLower(), a._v.GetUpper())));
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
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Add(Simd256 a, Simd256 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 operator +(Simd256 a, Simd256 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 operator -(Simd256 a, Simd256 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 operator *(Simd256 a, Simd256 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 operator /(Simd256 a, Simd256 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Min(Simd256 a, Simd256 b) => new(Vector256.MinNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Max(Simd256 a, Simd256 b) => new(Vector256.MaxNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Abs(Simd256 a) => new(Vector256.Abs(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 Round(Simd256 a) => new(Vector256.Round(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 PowerOfTwo(Simd256 n) => new(Vector256.ShiftLeft(Vector256.ConvertToInt32Native(n._v) + Vector256.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd256 SelectLess(Simd256 left, Simd256 right, Simd256 ifLess, Simd256 otherwise) => new(Vector256.ConditionalSelect(Vector256.LessThan(left._v, right._v), ifLess._v, otherwise._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Simd256 a) => Vector256.Sum(a._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float MaxAcross(Simd256 a) => Simd128.MaxAcross(new(Vector128.MaxNative(a._v.GetLower(), a._v.GetUpper())));
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
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Add(Simd128 a, Simd128 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 operator +(Simd128 a, Simd128 b) => new(a._v + b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 operator -(Simd128 a, Simd128 b) => new(a._v - b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 operator *(Simd128 a, Simd128 b) => new(a._v * b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 operator /(Simd128 a, Simd128 b) => new(a._v / b._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Min(Simd128 a, Simd128 b) => new(Vector128.MinNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Max(Simd128 a, Simd128 b) => new(Vector128.MaxNative(a._v, b._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Abs(Simd128 a) => new(Vector128.Abs(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 Round(Simd128 a) => new(Vector128.Round(a._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 PowerOfTwo(Simd128 n) => new(Vector128.ShiftLeft(Vector128.ConvertToInt32Native(n._v) + Vector128.Create(127), 23).AsSingle());
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static Simd128 SelectLess(Simd128 left, Simd128 right, Simd128 ifLess, Simd128 otherwise) => new(Vector128.ConditionalSelect(Vector128.LessThan(left._v, right._v), ifLess._v, otherwise._v));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float Sum(Simd128 a) => Vector128.Sum(a._v);
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public static float MaxAcross(Simd128 a) => MathF.Max(MathF.Max(a._v[0], a._v[1]), MathF.Max(a._v[2], a._v[3]));
    [MethodImpl(MethodImplOptions.AggressiveInlining)] public unsafe void Store(float* p) => _v.Store(p);
}

internal static class Simd
{
    /// <summary>Width in floats of the vectors the GEMM kernel uses on this processor.</summary>
    public static int Width => Vector512.IsHardwareAccelerated ? 16 : Vector256.IsHardwareAccelerated ? 8 : 4;

    public static string Name => Width switch { 16 => "AVX-512", 8 => "256-bit SIMD", _ => "128-bit SIMD" };
}
