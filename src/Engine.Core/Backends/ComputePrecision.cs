namespace Engine.Backends;

/// <summary>
/// The number format of a Linear product's operands on a backend that offers a choice: fp32 (the default and the
/// reference), or both operands rounded to tf32 (fp32 with a 10-bit mantissa, nearest, ties away) or to fp16 or bf16
/// (nearest even) and multiplied on tensor cores, the products summed in fp32. In fp16 and bf16 attention is flash
/// attention on tensor cores too, forward and backward (Q, K, V, dO and the probabilities in the format; head sizes 32,
/// 64 and 128). Other ops run in fp32 either way.
/// </summary>
public enum ComputePrecision
{
    Fp32,
    Tf32,
    Fp16,
    Bf16,
}
