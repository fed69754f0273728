using Engine.Backends;

namespace Engine.Reference;

/// <summary>Tolerance of an op against its float64 reference: |got − ref| ≤ Absolute + Relative·|ref|.</summary>
public sealed record Tolerance(double Absolute, double Relative);

/// <summary>The outcome of one op case against its float64 reference.</summary>
public sealed record ParityResult(string Op, string Case, double MaxError, int WorstIndex, double Expected, double Actual, Tolerance Tolerance, bool Passed)
{
    public override string ToString() => Passed
        ? $"{Op} {Case}: ok (max |Δ| {MaxError:E2})"
        : $"{Op} {Case}: element {WorstIndex} is {Actual}, reference {Expected} (|Δ| {MaxError:E2}, tolerance {Tolerance.Absolute:E0} + {Tolerance.Relative:E0}·|ref|)";
}

/// <summary>
/// One case of one op, as ggml's test-backend-ops has them: it builds its inputs once (on first use, from fixed
/// seeds) and declares its float64 reference forward and backward, its tolerances, its FLOPs and its cost on the
/// ILGPU CPU emulator. Parity tests, gradient checks, benchmarks and the GPU check all run these objects: a
/// backend × case matrix. Outputs are poisoned with NaN first (an unwritten element fails); activation gradients
/// must be written (=), parameter gradients are pre-filled and must be added to (+=).
/// </summary>
public abstract class OpCase(string op, string name)
{
    public string Op { get; } = op;
    public string Name { get; } = name;
    /// <summary>"op/name": what the test matrix and the benchmarks list.</summary>
    public string Id => $"{Op}/{Name}";
    public override string ToString() => Id;

    /// <summary>Multiply-adds or elements: what bounds the float64 finite differences (each input costs two reference forwards).</summary>
    public abstract long Work { get; }

    /// <summary>Floating-point operations of one forward, for rates; 0 for memory-bound ops.</summary>
    public virtual double Flops => 0;

    /// <summary>
    /// Estimated seconds on the ILGPU CPU emulator, which pays for warp-level synchronisation (shuffles, barriers:
    /// each one a rendezvous of 32 OS-scheduled threads), not for multiply-adds: <see cref="EmulatorRounds"/> × 1 ms.
    /// </summary>
    public double EmulatorSeconds => 0.1 + EmulatorRounds * 1e-3;

    /// <summary>The same for the backward (or training op), whose kernels differ.</summary>
    public double EmulatorBackwardSeconds => 0.1 + EmulatorBackwardRounds * 1e-3;

    /// <summary>Warp-synchronous steps the op's kernels take, summed over warps (shuffles, group barriers per warp).</summary>
    protected abstract double EmulatorRounds { get; }

    protected virtual double EmulatorBackwardRounds => 2 * EmulatorRounds;

    public virtual bool HasForward => true;
    /// <summary>Whether a training backend has a backward (or a training-only op) for this case.</summary>
    public virtual bool HasBackward => false;
    /// <summary>Whether the float64 backward is held to finite differences here (small cases of ops with a backward).</summary>
    public bool HasReferenceGradient => HasBackward && this is IReferenceGradient && Work <= OpCases.FiniteDifferenceWork;

    /// <summary>The backend's forward against the float64 reference.</summary>
    public virtual ParityResult Forward(IBackend backend) => throw new NotSupportedException($"{Id} has no forward");

    /// <summary>The backend's backward (or training op) against the float64 reference.</summary>
    public virtual ParityResult Backward(ITrainingBackend backend) => throw new NotSupportedException($"{Id} has no backward");

    /// <summary>Uploads the inputs once and returns what launches the op (for timings).</summary>
    public virtual Action Prepare(IBackend backend) => throw new NotSupportedException($"{Id} is not timed");

    protected ParityResult Compare(double[] expected, float[] actual, Tolerance tolerance, string? op = null) =>
        ParityCheck.Compare(op ?? Op, Name, expected, actual, tolerance);

    protected ParityResult CompareBackward(double[] expected, float[] actual) =>
        ParityCheck.Compare(Op + "-backward", Name, expected, actual, OpCases.BackwardTolerance);

    protected ParityResult CompareNumeric(double[] numeric, double[] analytic) =>
        ParityCheck.Compare(Op + "-backward-reference", Name, numeric, analytic, OpCases.FiniteDifferenceTolerance);

    protected static double Dot(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum();

    /// <summary>Central differences (h = 1e-6) of a scalar function at every element of <paramref name="at"/>.</summary>
    protected static double[] Numeric(Func<double[], double> loss, double[] at)
    {
        const double H = 1e-6;
        var x = (double[])at.Clone();
        var gradient = new double[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            double saved = x[i];
            x[i] = saved + H;
            double plus = loss(x);
            x[i] = saved - H;
            double minus = loss(x);
            x[i] = saved;
            gradient[i] = (plus - minus) / (2 * H);
        }
        return gradient;
    }
}

/// <summary>A case whose float64 backward is checked against central finite differences of its float64 forward.</summary>
public interface IReferenceGradient
{
    ParityResult ReferenceGradient();
}

/// <summary>output (M,N) = act(input (M,K) · weight (N,K)ᵀ + bias); with <paramref name="keepPreActivation"/>, the epilogue also keeps input · weightᵀ + bias (training).</summary>
public sealed class LinearCase(string name, int m, int k, int n, bool bias, string activation, bool keepPreActivation = false) : OpCase("linear", name), IReferenceGradient
{
    private readonly Lazy<(float[] Input, float[] Weight, float[]? Bias)> _inputs = new(() => (OpCases.Random(m * k, 1), OpCases.Random(n * k, 2, 0.5f), bias ? OpCases.Random(n, 3) : null));

    public int M => m;
    public int K => k;
    public int N => n;
    public string Activation => activation;
    /// <summary>A (M,K), W (N,K), bias (N) or null.</summary>
    public (float[] Input, float[] Weight, float[]? Bias) Inputs => _inputs.Value;
    public override long Work => (long)M * K * N;
    public override double Flops => 2.0 * M * K * N;
    protected override double EmulatorRounds => OpCases.GemmRounds(1, M, K, N);
    public override bool HasBackward => true;

    public override ParityResult Forward(IBackend backend)
    {
        var (input, weight, b) = Inputs;
        var (output, pre) = (backend.Poisoned(M * N), keepPreActivation ? backend.Poisoned(M * N) : null);
        backend.Linear(output, backend.UploadArray(input), backend.UploadArray(weight), b is null ? null : backend.UploadArray(b), M, K, N, OpCases.ParseActivation(activation), pre);
        var result = Compare(ReferenceOps.Linear(input.AsDoubles(), weight.AsDoubles(), b?.AsDoubles(), M, K, N, activation), backend.DownloadArray(output), OpCases.LinearTolerance);
        if (pre is null || !result.Passed) return result;
        return ParityCheck.Compare(Op, Name + " pre-activation", ReferenceOps.Linear(input.AsDoubles(), weight.AsDoubles(), b?.AsDoubles(), M, K, N, "none"),
            backend.DownloadArray(pre), OpCases.LinearTolerance);
    }

    public override ParityResult Backward(ITrainingBackend backend)
    {
        var (input, weight, _) = Inputs;
        var dOutput = OpCases.Random(M * N, 21);
        var (previousWeight, previousBias) = (OpCases.Random(N * K, 25), OpCases.Random(N, 26));
        var (dInput, dWeight, dBias) = (backend.Poisoned(M * K), backend.UploadArray(previousWeight), backend.UploadArray(previousBias));
        backend.LinearBackward(dInput, dWeight, dBias, backend.UploadArray(dOutput), backend.UploadArray(input), backend.UploadArray(weight), M, K, N);
        var expected = ReferenceGradients.Linear(dOutput.AsDoubles(), input.AsDoubles(), weight.AsDoubles(), M, K, N);
        return CompareBackward([.. expected.DInput, .. expected.DWeight.Select((v, i) => v + previousWeight[i]), .. expected.DBias.Select((v, i) => v + previousBias[i])],
            [.. backend.DownloadArray(dInput), .. backend.DownloadArray(dWeight), .. backend.DownloadArray(dBias)]);
    }

    public ParityResult ReferenceGradient()
    {
        var (floatInput, floatWeight, floatBias) = Inputs;
        var (input, weight, b) = (floatInput.AsDoubles(), floatWeight.AsDoubles(), floatBias?.AsDoubles() ?? new double[N]);
        var g = OpCases.Random(M * N, 21).AsDoubles();
        double Loss(double[] x, double[] w, double[] c) => Dot(g, ReferenceOps.Linear(x, w, c, M, K, N, "none"));
        var (dInput, dWeight, dBias) = ReferenceGradients.Linear(g, input, weight, M, K, N);
        var numeric = Numeric(x => Loss(x, weight, b), input).Concat(Numeric(w => Loss(input, w, b), weight)).Concat(Numeric(c => Loss(input, weight, c), b));
        return CompareNumeric([.. numeric], [.. dInput.Concat(dWeight).Concat(dBias)]);
    }

    public override Action Prepare(IBackend backend)
    {
        var (input, weight, b) = Inputs;
        var (x, w, bb, o) = (backend.UploadArray(input), backend.UploadArray(weight), b is null ? null : backend.UploadArray(b), backend.Allocate<float>(M * N));
        var act = OpCases.ParseActivation(activation);
        return () => backend.Linear(o, x, w, bb, M, K, N, act);
    }
}

/// <summary>
/// output (M,N) = act(dequantize(quantize(input) (M,K) · W (N,K)ᵀ) + bias) with W int8 and one scale per output channel (a
/// quantized checkpoint's Linear); rows of zeros (scale 0), rows holding ±max (q = ±127) and K not a multiple of 4 or 32 are in
/// the cases. The reference is exact in the integers (<see cref="ReferenceOps.LinearInt8"/>).
/// </summary>
public sealed class Int8LinearCase(string name, int m, int k, int n, bool bias, string activation, bool keepPreActivation = false) : OpCase("linear-int8", name)
{
    private readonly Lazy<(float[] Input, sbyte[] Weight, float[] Scales, float[]? Bias)> _inputs = new(() =>
    {
        var input = OpCases.Random(m * k, 31);
        if (m > 2) Array.Clear(input, k, k); // row 1: all zeros, scale 0
        var (weight, scales) = Engine.Quantization.Int8Quantizer.QuantizeRows(OpCases.Random(n * k, 32, 0.5f), k);
        return (input, weight, scales, bias ? OpCases.Random(n, 33) : null);
    });

    public int M => m;
    public int K => k;
    public int N => n;
    public (float[] Input, sbyte[] Weight, float[] Scales, float[]? Bias) Inputs => _inputs.Value;
    public override long Work => (long)M * K * N;
    public override double Flops => 2.0 * M * K * N;
    // The quantizing warp per row (5 shuffles), and on the emulator the tensor-core kernel's software mma: per 64×32 tile, per
    // step of 32 along K, 4 warps × (8 shuffles × 4 + 2 barriers); dp4a tiles cost what the float GEMM's do.
    protected override double EmulatorRounds =>
        M * 5.0 + Math.Ceiling(M / 64.0) * Math.Ceiling(N / 32.0) * Math.Ceiling(K / 32.0) * 4 * 34 + OpCases.GemmRounds(1, M, K, N);

    /// <summary>The weight as an op takes it: int8 values and their scales.</summary>
    public Tensor Weight(IBackend backend) => Tensor.Int8(backend.UploadArray(Inputs.Weight), backend.UploadArray(Inputs.Scales), N, K);

    public override ParityResult Forward(IBackend backend)
    {
        var (input, _, scales, b) = Inputs;
        var (output, pre) = (backend.Poisoned(M * N), keepPreActivation ? backend.Poisoned(M * N) : null);
        backend.Linear(output, backend.UploadArray(input), Weight(backend), b is null ? null : backend.UploadArray(b), M, K, N, OpCases.ParseActivation(activation), pre);
        var result = Compare(ReferenceOps.LinearInt8(input, Inputs.Weight, scales, b?.AsDoubles(), M, K, N, activation), backend.DownloadArray(output), OpCases.LinearTolerance);
        if (pre is null || !result.Passed) return result;
        return ParityCheck.Compare(Op, Name + " pre-activation", ReferenceOps.LinearInt8(input, Inputs.Weight, scales, b?.AsDoubles(), M, K, N, "none"),
            backend.DownloadArray(pre), OpCases.LinearTolerance);
    }

    public override Action Prepare(IBackend backend)
    {
        var (input, _, _, b) = Inputs;
        var (x, w, bb, o) = (backend.UploadArray(input), Weight(backend), b is null ? null : backend.UploadArray(b), backend.Allocate<float>(M * N));
        var act = OpCases.ParseActivation(activation);
        return () => backend.Linear(o, x, w, bb, M, K, N, act);
    }
}

/// <summary>
/// A Linear with both operands in a tensor-core format (<see cref="Precision"/>: tf32, fp16 or bf16): the backend given
/// must be set to that precision. Judged against the float64 product of the operands rounded to the format (as
/// <see cref="ReferenceOps.Round"/>), which is exact but for the fp32 sums, so the tolerance is the fp32 Linear's; and
/// against the unrounded product within the format's own rounding (<see cref="OpCases.RoundingTolerance"/>).
/// </summary>
public sealed class ReducedPrecisionLinearCase(string name, int m, int k, int n, bool bias, string activation, ComputePrecision precision, bool keepPreActivation = false)
    : OpCase("linear-" + precision.ToString().ToLowerInvariant(), name)
{
    private readonly Lazy<(float[] Input, float[] Weight, float[]? Bias)> _inputs = new(() => (OpCases.Random(m * k, 41), OpCases.Random(n * k, 42, 0.5f), bias ? OpCases.Random(n, 43) : null));

    public ComputePrecision Precision => precision;
    public int M => m;
    public int K => k;
    public int N => n;
    public (float[] Input, float[] Weight, float[]? Bias) Inputs => _inputs.Value;
    public override long Work => (long)M * K * N;
    public override double Flops => 2.0 * M * K * N;
    // On the emulator, per 64×32 tile and step along K (16 halves or 8 tf32 values): 4 warps × (4 software mmas of 32
    // shuffles + 2 barriers), which took about 0.15 s a tile-step here (the shuffles of one mma rendezvous together): 160 rounds.
    protected override double EmulatorRounds => TileSteps(M, K, N);
    // The backward's two products: dX (M,K) over N, dW (N,K) over M.
    protected override double EmulatorBackwardRounds => TileSteps(M, N, K) + TileSteps(N, M, K);
    public override bool HasBackward => true;

    private double TileSteps(int rows, int depth, int cols) =>
        Math.Ceiling(rows / 64.0) * Math.Ceiling(cols / 32.0) * Math.Ceiling(depth / (precision == ComputePrecision.Tf32 ? 8.0 : 16.0)) * 160;

    public override ParityResult Forward(IBackend backend)
    {
        var (input, weight, b) = Inputs;
        var (output, pre) = (backend.Poisoned(M * N), keepPreActivation ? backend.Poisoned(M * N) : null);
        backend.Linear(output, backend.UploadArray(input), backend.UploadArray(weight), b is null ? null : backend.UploadArray(b), M, K, N, OpCases.ParseActivation(activation), pre);
        var (roundedInput, roundedWeight) = (ReferenceOps.Round(input, precision), ReferenceOps.Round(weight, precision));
        var actual = backend.DownloadArray(output);
        var result = Compare(ReferenceOps.Linear(roundedInput, roundedWeight, b?.AsDoubles(), M, K, N, activation), actual, OpCases.LinearTolerance);
        if (!result.Passed) return result;
        result = ParityCheck.Compare(Op, Name + " against fp32 operands", ReferenceOps.Linear(input.AsDoubles(), weight.AsDoubles(), b?.AsDoubles(), M, K, N, activation),
            actual, OpCases.RoundingTolerance(precision, K));
        if (pre is null || !result.Passed) return result;
        return ParityCheck.Compare(Op, Name + " pre-activation", ReferenceOps.Linear(roundedInput, roundedWeight, b?.AsDoubles(), M, K, N, "none"),
            backend.DownloadArray(pre), OpCases.LinearTolerance);
    }

    /// <summary>
    /// dX = dOut · W and dW (+ its previous value) = dOutᵀ · X with dOut, X and W rounded to the format, dBias summed from
    /// the unrounded dOut (in fp32, as the bias gradient is), at the fp32 backward's tolerance.
    /// </summary>
    public override ParityResult Backward(ITrainingBackend backend)
    {
        var (input, weight, _) = Inputs;
        var dOutput = OpCases.Random(M * N, 44);
        var (previousWeight, previousBias) = (OpCases.Random(N * K, 45), OpCases.Random(N, 46));
        var (dInput, dWeight, dBias) = (backend.Poisoned(M * K), backend.UploadArray(previousWeight), backend.UploadArray(previousBias));
        backend.LinearBackward(dInput, dWeight, dBias, backend.UploadArray(dOutput), backend.UploadArray(input), backend.UploadArray(weight), M, K, N);
        var rounded = ReferenceGradients.Linear(ReferenceOps.Round(dOutput, precision), ReferenceOps.Round(input, precision), ReferenceOps.Round(weight, precision), M, K, N);
        var exact = ReferenceGradients.Linear(dOutput.AsDoubles(), input.AsDoubles(), weight.AsDoubles(), M, K, N);
        return CompareBackward([.. rounded.DInput, .. rounded.DWeight.Select((v, i) => v + previousWeight[i]), .. exact.DBias.Select((v, i) => v + previousBias[i])],
            [.. backend.DownloadArray(dInput), .. backend.DownloadArray(dWeight), .. backend.DownloadArray(dBias)]);
    }

    public override Action Prepare(IBackend backend)
    {
        var (input, weight, b) = Inputs;
        var (x, w, bb, o) = (backend.UploadArray(input), backend.UploadArray(weight), b is null ? null : backend.UploadArray(b), backend.Allocate<float>(M * N));
        var act = OpCases.ParseActivation(activation);
        return () => backend.Linear(o, x, w, bb, M, K, N, act);
    }
}

/// <summary>
/// A Linear whose weight is an F16 or BF16 tensor (a checkpoint's, kept as stored), on a backend computing in
/// <paramref name="precision"/> (fp32: the CPU backend, or the ILGPU one's widening path; fp16 or bf16: the tensor-core
/// product, reading a weight of its own format as it is when K is a multiple of 16). Judged against the float64 product of
/// the input rounded to the precision and the stored weight's values (rounded to the precision too, which changes them
/// only when the formats differ), at the fp32 Linear's tolerance.
/// </summary>
public sealed class HalfWeightLinearCase(string name, int m, int k, int n, bool bias, string activation, Engine.IO.DType weightType,
    ComputePrecision precision = ComputePrecision.Fp32, bool keepPreActivation = false)
    : OpCase($"linear-{weightType.ToString().ToLowerInvariant()}-weight" + (precision == ComputePrecision.Fp32 ? "" : "-" + precision.ToString().ToLowerInvariant()), name)
{
    private readonly Lazy<(float[] Input, ushort[] Weight, float[]? Bias)> _inputs =
        new(() => (OpCases.Random(m * k, 51), HalfValues.Bits(OpCases.Random(n * k, 52, 0.5f), weightType), bias ? OpCases.Random(n, 53) : null));

    public ComputePrecision Precision => precision;
    public Engine.IO.DType WeightType => weightType;
    public int M => m;
    public int K => k;
    public int N => n;
    public (float[] Input, ushort[] Weight, float[]? Bias) Inputs => _inputs.Value;
    public override long Work => (long)M * K * N;
    public override double Flops => 2.0 * M * K * N;
    // fp32: the float GEMM's rounds; in a reduced precision, the tensor-core kernel's (see ReducedPrecisionLinearCase).
    protected override double EmulatorRounds => precision == ComputePrecision.Fp32 ? OpCases.GemmRounds(1, M, K, N)
        : Math.Ceiling(M / 64.0) * Math.Ceiling(N / 32.0) * Math.Ceiling(K / (precision == ComputePrecision.Tf32 ? 8.0 : 16.0)) * 160;

    /// <summary>The weight as an op takes it: a (N,K) tensor of its 16-bit values.</summary>
    public Tensor Weight(IBackend backend) => Tensor.Halves(backend.UploadArray(Inputs.Weight), weightType, N, K);

    public override ParityResult Forward(IBackend backend)
    {
        var (input, weight, b) = Inputs;
        var (output, pre) = (backend.Poisoned(M * N), keepPreActivation ? backend.Poisoned(M * N) : null);
        backend.Linear(output, backend.UploadArray(input), Weight(backend), b is null ? null : backend.UploadArray(b), M, K, N, OpCases.ParseActivation(activation), pre);
        var (roundedInput, roundedWeight) = (ReferenceOps.Round(input, precision), ReferenceOps.Round(HalfValues.Widen(weight, weightType), precision));
        var result = Compare(ReferenceOps.Linear(roundedInput, roundedWeight, b?.AsDoubles(), M, K, N, activation), backend.DownloadArray(output), OpCases.LinearTolerance);
        if (pre is null || !result.Passed) return result;
        return ParityCheck.Compare(Op, Name + " pre-activation", ReferenceOps.Linear(roundedInput, roundedWeight, b?.AsDoubles(), M, K, N, "none"),
            backend.DownloadArray(pre), OpCases.LinearTolerance);
    }

    public override Action Prepare(IBackend backend)
    {
        var (input, _, b) = Inputs;
        var (x, w, bb, o) = (backend.UploadArray(input), Weight(backend), b is null ? null : backend.UploadArray(b), backend.Allocate<float>(M * N));
        var act = OpCases.ParseActivation(activation);
        return () => backend.Linear(o, x, w, bb, M, K, N, act);
    }
}

/// <summary>A weight re-uploaded after a first product must be used as it is now (no stale packed copy).</summary>
public sealed class LinearWeightUpdateCase() : OpCase("linear", "weight-updated")
{
    public override long Work => 6 * 9 * 5;
    protected override double EmulatorRounds => 2 * OpCases.GemmRounds(1, 6, 9, 5);

    public override ParityResult Forward(IBackend backend)
    {
        var input = OpCases.Random(6 * 9, 1);
        var weightBuffer = backend.UploadArray(OpCases.Random(5 * 9, 2));
        var output = backend.Poisoned(6 * 5);
        backend.Linear(output, backend.UploadArray(input), weightBuffer, null, 6, 9, 5, Activation.None);
        var weight = OpCases.Random(5 * 9, 3);
        backend.Upload<float>(weight, weightBuffer);
        backend.Linear(output, backend.UploadArray(input), weightBuffer, null, 6, 9, 5, Activation.None);
        return Compare(ReferenceOps.Linear(input.AsDoubles(), weight.AsDoubles(), null, 6, 9, 5, "none"), backend.DownloadArray(output), OpCases.LinearTolerance);
    }
}

/// <summary>Strided-batched products in any layout; only the batch items' elements are compared (gaps between strided items are not the op's).</summary>
public sealed class MatMulCase(string name, MatMulShape shape) : OpCase("matmul", name)
{
    private readonly Lazy<(float[] A, float[] B)> _inputs = new(() => (OpCases.Random((int)shape.ElementsA, 16), OpCases.Random((int)shape.ElementsB, 17)));

    public MatMulShape Shape => shape;
    public (float[] A, float[] B) Inputs => _inputs.Value;

    public override long Work => (long)shape.Batch * shape.M * shape.K * shape.N;
    public override double Flops => 2.0 * Work;
    protected override double EmulatorRounds => OpCases.GemmRounds(shape.Batch, shape.M, shape.K, shape.N);

    public override ParityResult Forward(IBackend backend)
    {
        var (a, b) = _inputs.Value;
        var output = backend.Poisoned((int)shape.ElementsC);
        backend.MatMul(output, backend.UploadArray(a), backend.UploadArray(b), shape);
        var expected = ReferenceOps.MatMul(a, b, shape);
        var actual = backend.DownloadArray(output);
        var items = Enumerable.Range(0, shape.Batch).SelectMany(i => Enumerable.Range((int)(i * shape.StrideC), shape.M * shape.N)).ToArray();
        return Compare([.. items.Select(i => expected[i])], [.. items.Select(i => actual[i])], OpCases.LinearTolerance);
    }
}

/// <summary>output (n) = act(input (n)) and its backward.</summary>
public sealed class ActivationCase(int n, string activation) : OpCase("activate", $"{activation}-{n}"), IReferenceGradient
{
    private float[] Input => OpCases.Random(n, 4, 6f);

    public override long Work => n;
    protected override double EmulatorRounds => n / 32.0;
    public override bool HasBackward => true;

    public override ParityResult Forward(IBackend backend)
    {
        var output = backend.Poisoned(n);
        backend.Activate(output, backend.UploadArray(Input), n, OpCases.ParseActivation(activation));
        return Compare([.. Input.Select(x => ReferenceOps.Activate(x, activation))], backend.DownloadArray(output), OpCases.ActivationTolerance);
    }

    public override ParityResult Backward(ITrainingBackend backend)
    {
        var (x, dOutput) = (Input, OpCases.Random(n, 27));
        var dInput = backend.Poisoned(n);
        backend.ActivateBackward(dInput, backend.UploadArray(dOutput), backend.UploadArray(x), n, OpCases.ParseActivation(activation));
        return CompareBackward([.. x.Select((v, i) => dOutput[i] * ReferenceGradients.ActivateDerivative(v, activation))], backend.DownloadArray(dInput));
    }

    public ParityResult ReferenceGradient()
    {
        const double H = 1e-6;
        var x = Input.AsDoubles();
        var numeric = x.Select(v => (ReferenceOps.Activate(v + H, activation) - ReferenceOps.Activate(v - H, activation)) / (2 * H)).ToArray();
        return CompareNumeric(numeric, [.. x.Select(v => ReferenceGradients.ActivateDerivative(v, activation))]);
    }
}

/// <summary>Softmax over rows and its backward.</summary>
/// <summary>Row softmax of inputs in ±<paramref name="scale"/> (large: logits whose exponentials overflow float unless the row maximum is subtracted first).</summary>
public sealed class SoftmaxCase(string name, int rows, int N, float scale = 8f) : OpCase("softmax", name), IReferenceGradient
{
    private float[] Input => OpCases.Random(rows * N, 20, scale);

    public override long Work => (long)rows * N;
    protected override double EmulatorRounds => rows * (10 + 2 * Math.Ceiling(N / 32.0));
    public override bool HasBackward => true;

    public override ParityResult Forward(IBackend backend)
    {
        var output = backend.Poisoned(rows * N);
        backend.Softmax(output, backend.UploadArray(Input), rows, N);
        return Compare(ReferenceOps.Softmax(Input.AsDoubles(), rows, N), backend.DownloadArray(output), OpCases.SoftmaxTolerance);
    }

    public override ParityResult Backward(ITrainingBackend backend)
    {
        var y = ReferenceOps.Softmax(Input.AsDoubles(), rows, N);
        var dOutput = OpCases.Random(rows * N, 23);
        var dInput = backend.Poisoned(rows * N);
        backend.SoftmaxBackward(dInput, backend.UploadArray(dOutput), backend.UploadArray(y.Select(v => (float)v).ToArray()), rows, N);
        return CompareBackward(ReferenceGradients.Softmax(dOutput.AsDoubles(), [.. y.Select(v => (double)(float)v)], rows, N), backend.DownloadArray(dInput));
    }

    public ParityResult ReferenceGradient()
    {
        var x = Input.AsDoubles();
        var g = OpCases.Random(rows * N, 23).AsDoubles();
        return CompareNumeric(Numeric(v => Dot(g, ReferenceOps.Softmax(v, rows, N)), x), ReferenceGradients.Softmax(g, ReferenceOps.Softmax(x, rows, N), rows, N));
    }
}

/// <summary>Cross-entropy of logits (B,V) in ±<paramref name="scale"/> against labels, forward and backward in one (a training op); −100 ignored.</summary>
public sealed class CrossEntropyCase(string name, int B, int V, int[] labels, float scale = 4f) : OpCase("cross-entropy", name), IReferenceGradient
{
    private float[] Logits => OpCases.Random(B * V, 24, scale);

    public override long Work => (long)B * V;
    protected override double EmulatorRounds => B * (15 + 2 * Math.Ceiling(V / 32.0) + Math.Ceiling(B / 32.0));
    public override bool HasForward => false;
    public override bool HasBackward => true;

    public override ParityResult Backward(ITrainingBackend backend)
    {
        var (losses, dLogits) = (backend.Poisoned(B), backend.Poisoned(B * V));
        backend.CrossEntropy(losses, dLogits, backend.UploadArray(Logits), backend.UploadArray(labels), B, V);
        var expected = ReferenceGradients.CrossEntropy(Logits.AsDoubles(), labels, B, V);
        return Compare([.. expected.Losses, .. expected.DLogits], [.. backend.DownloadArray(losses), .. backend.DownloadArray(dLogits)], OpCases.BackwardTolerance);
    }

    public ParityResult ReferenceGradient()
    {
        var logits = Logits.AsDoubles();
        int counted = labels.Count(l => l >= 0);
        var numeric = Numeric(z => ReferenceGradients.CrossEntropy(z, labels, B, V).Losses.Sum() / counted, logits);
        return CompareNumeric(numeric, [.. ReferenceGradients.CrossEntropy(logits, labels, B, V).DLogits]);
    }
}

/// <summary>Mean squared error over N predictions (a batch × num_labels regression head), forward and backward in one.</summary>
public sealed class MeanSquaredErrorCase(string name, int N) : OpCase("mse", name), IReferenceGradient
{
    private (float[] Predictions, float[] Targets) Inputs => (OpCases.Random(N, 42, 3f), OpCases.Random(N, 43, 3f));

    public override long Work => N;
    protected override double EmulatorRounds => N / 32.0;
    public override bool HasForward => false;
    public override bool HasBackward => true;

    public override ParityResult Backward(ITrainingBackend backend)
    {
        var (predictions, targets) = Inputs;
        var (losses, dPredictions) = (backend.Poisoned(N), backend.Poisoned(N));
        backend.MeanSquaredError(losses, dPredictions, backend.UploadArray(predictions), backend.UploadArray(targets), N);
        var expected = ReferenceGradients.MeanSquaredError(predictions.AsDoubles(), targets.AsDoubles());
        return Compare([.. expected.Losses, .. expected.DPredictions], [.. backend.DownloadArray(losses), .. backend.DownloadArray(dPredictions)], OpCases.BackwardTolerance);
    }

    public ParityResult ReferenceGradient()
    {
        var (predictions, targets) = (Inputs.Predictions.AsDoubles(), Inputs.Targets.AsDoubles());
        var numeric = Numeric(p => ReferenceGradients.MeanSquaredError(p, targets).Losses.Average(), predictions);
        return CompareNumeric(numeric, ReferenceGradients.MeanSquaredError(predictions, targets).DPredictions);
    }
}

/// <summary>
/// Multi-head self-attention over ragged rows, padded with a key mask or <paramref name="packed"/> (cumulative lengths, no
/// pad rows); <paramref name="dropout"/> &gt; 0 drops probabilities on a fixed Philox stream. A packed case is judged against
/// the padded reference on the real rows, so it holds the packed path equal to the padded one.
/// </summary>
public sealed class AttentionCase(string name, int b, int t, int nh, int hs, int[] lengths, float dropout = 0f, float scale = 2f, bool packed = false)
    : OpCase("attention", name), IReferenceGradient
{
    private readonly Lazy<float[]> _qkv = new(() => OpCases.Random(b * t * 3 * nh * hs, 5, scale));
    private int C => NH * HS;

    public int B => b;
    public int T => t;
    public int NH => nh;
    public int HS => hs;
    public bool Packed => packed;
    /// <summary>Q, K, V of every padded row (B·T, 3C).</summary>
    public float[] Qkv => _qkv.Value;
    /// <summary>Rows of the op's operands: B·T padded, the real tokens packed.</summary>
    public int Rows => packed ? lengths.Sum() : B * T;
    public int[] Mask => OpCases.Mask(lengths, T);
    /// <summary>The packed layout's cumulative lengths (B + 1).</summary>
    public int[] SequenceStarts => [0, .. lengths.Select((_, i) => lengths.Take(i + 1).Sum())];
    public DropoutMask DropoutMask => new(dropout, 1234, 7);
    public override long Work => packed ? (long)NH * HS * lengths.Sum(n => (long)n * n) : (long)B * NH * T * T * HS;
    public override double Flops => 4.0 * Work;
    // Forward: a warp per query, a warp sum (5 shuffles) per key. Backward: a warp per query, then per key, each over the other side with several warp sums.
    protected override double EmulatorRounds => 5.0 * B * NH * T * T;
    protected override double EmulatorBackwardRounds => 0.4 * B * NH * T * T * (T + HS);
    public override bool HasBackward => true;

    public SequenceLayout Layout(IBackend backend) =>
        packed ? SequenceLayout.Packed(backend.UploadArray(SequenceStarts), B, T, Rows) : SequenceLayout.Padded(backend.UploadArray(Mask), B, T);

    /// <summary>The op's operand from a padded (B·T, width) array: itself padded, its real rows packed.</summary>
    public TValue[] OpRows<TValue>(TValue[] padded, int width) =>
        packed ? [.. Enumerable.Range(0, B).SelectMany(s => padded.Skip(s * T * width).Take(lengths[s] * width))] : padded;

    /// <summary>∂L/∂output (B·T, C); zero on padded rows when packed (a packed op has no such rows to take a gradient from).</summary>
    public float[] PaddedOutputGradient(int seed = 30)
    {
        var dOutput = OpCases.Random(B * T * C, seed);
        if (packed)
            for (int s = 0; s < B; s++) dOutput.AsSpan((s * T + lengths[s]) * C, (T - lengths[s]) * C).Clear();
        return dOutput;
    }

    public override ParityResult Forward(IBackend backend)
    {
        var output = backend.Poisoned(Rows * C);
        backend.Attention(output, backend.UploadArray(OpRows(_qkv.Value, 3 * C)), Layout(backend), NH, HS, DropoutMask);
        return Compare(OpRows(ReferenceOps.Attention(_qkv.Value.AsDoubles(), Mask, B, T, NH, HS, DropoutMask), C), backend.DownloadArray(output), OpCases.AttentionTolerance);
    }

    public override ParityResult Backward(ITrainingBackend backend)
    {
        var dOutput = PaddedOutputGradient();
        var dQkv = backend.Poisoned(Rows * 3 * C);
        backend.AttentionBackward(dQkv, backend.UploadArray(OpRows(dOutput, C)), backend.UploadArray(OpRows(_qkv.Value, 3 * C)), Layout(backend), NH, HS, DropoutMask);
        return CompareBackward(OpRows(ReferenceGradients.Attention(dOutput.AsDoubles(), _qkv.Value.AsDoubles(), Mask, B, T, NH, HS, DropoutMask), 3 * C),
            backend.DownloadArray(dQkv));
    }

    public ParityResult ReferenceGradient()
    {
        var qkv = _qkv.Value.AsDoubles();
        var g = PaddedOutputGradient().AsDoubles();
        var numeric = Numeric(x => Dot(g, ReferenceOps.Attention(x, Mask, B, T, NH, HS, DropoutMask)), qkv);
        return CompareNumeric(numeric, ReferenceGradients.Attention(g, qkv, Mask, B, T, NH, HS, DropoutMask));
    }

    public override Action Prepare(IBackend backend)
    {
        var (qkv, layout, o) = (backend.UploadArray(OpRows(_qkv.Value, 3 * C)), Layout(backend), backend.Allocate<float>(Rows * C));
        return () => backend.Attention(o, qkv, layout, NH, HS, DropoutMask);
    }
}

/// <summary>
/// The attention probabilities (attention maps) of an <see cref="AttentionCase"/>'s Q, K, V in its layout (dropout never
/// applies): every element of (B,NH,T,T), padding queries' and keys' zeros included, against the float64 softmax.
/// </summary>
public sealed class AttentionProbabilitiesCase(AttentionCase source) : OpCase("attention-probabilities", source.Name)
{
    public override long Work => (long)source.B * source.NH * source.T * source.T * source.HS;
    // A thread per query row, no warp-level steps: about a round per 32 rows.
    protected override double EmulatorRounds => source.B * source.NH * source.T / 32.0;

    public override ParityResult Forward(IBackend backend)
    {
        var probabilities = backend.Poisoned(source.B * source.NH * source.T * source.T);
        backend.AttentionProbabilities(probabilities, backend.UploadArray(source.OpRows(source.Qkv, 3 * source.NH * source.HS)), source.Layout(backend), source.NH, source.HS);
        return Compare(ReferenceOps.AttentionProbabilities(source.Qkv.AsDoubles(), source.Mask, source.B, source.T, source.NH, source.HS),
            backend.DownloadArray(probabilities), OpCases.AttentionTolerance);
    }
}

/// <summary>What padded keys and values hold must not reach real outputs (compared bit for bit).</summary>
public sealed class PaddedKeysCase() : OpCase("attention", "padded-keys-ignored")
{
    private const int B = 1, T = 6, NH = 2, HS = 3, C = NH * HS, Real = 4;
    public override long Work => B * NH * T * T * HS;
    protected override double EmulatorRounds => 2 * 5.0 * B * NH * T * T;

    public override ParityResult Forward(IBackend backend)
    {
        var qkv = OpCases.Random(B * T * 3 * C, 6);
        var mask = OpCases.Mask([Real], T);
        var first = backend.Poisoned(B * T * C);
        backend.Attention(first, backend.UploadArray(qkv), SequenceLayout.Padded(backend.UploadArray(mask), B, T), NH, HS, DropoutMask.None);
        for (int t = Real; t < T; t++)
            for (int i = 0; i < 3 * C; i++) qkv[t * 3 * C + i] = 1e4f;
        var second = backend.Poisoned(B * T * C);
        backend.Attention(second, backend.UploadArray(qkv), SequenceLayout.Padded(backend.UploadArray(mask), B, T), NH, HS, DropoutMask.None);
        return Compare([.. backend.DownloadArray(first).Take(Real * C).Select(v => (double)v)], [.. backend.DownloadArray(second).Take(Real * C)], new Tolerance(0, 0));
    }
}

/// <summary>LayerNorm(input + residual) over C and its backward.</summary>
public sealed class LayerNormCase(string name, int N, int C, bool residual) : OpCase("layernorm", name), IReferenceGradient
{
    private (double[] Input, double[]? Residual, double[] Weight, double[] Bias) Inputs =>
        (OpCases.Random(N * C, 7, 3f).AsDoubles(), residual ? OpCases.Random(N * C, 8).AsDoubles() : null, OpCases.Random(C, 9).AsDoubles(), OpCases.Random(C, 10).AsDoubles());

    public override long Work => (long)N * C;
    // A warp per row (Welford merges: 15 shuffles, and C/32 steps per pass); the backward's parameter pass is a thread per (channel, 32 rows).
    protected override double EmulatorRounds => N * (15 + 2 * Math.Ceiling(C / 32.0));
    public override bool HasBackward => true;

    public override ParityResult Forward(IBackend backend)
    {
        var input = OpCases.Random(N * C, 7, 3f);
        var r = residual ? OpCases.Random(N * C, 8) : null;
        var (weight, bias) = (OpCases.Random(C, 9), OpCases.Random(C, 10));
        var output = backend.Poisoned(N * C);
        backend.LayerNorm(output, backend.UploadArray(input), r is null ? null : backend.UploadArray(r), backend.UploadArray(weight), backend.UploadArray(bias), N, C, 1e-12f);
        return Compare(ReferenceOps.LayerNorm(input.AsDoubles(), r?.AsDoubles(), weight.AsDoubles(), bias.AsDoubles(), N, C, 1e-12), backend.DownloadArray(output), OpCases.LayerNormTolerance);
    }

    public override ParityResult Backward(ITrainingBackend backend)
    {
        var (input, r, weight, _) = Inputs;
        var (x, rf, w) = (input.Select(v => (float)v).ToArray(), r?.Select(v => (float)v).ToArray(), weight.Select(v => (float)v).ToArray());
        var dOutput = OpCases.Random(N * C, 22);
        var (previousWeight, previousBias) = (OpCases.Random(C, 28), OpCases.Random(C, 29));
        var (dInput, dWeight, dBias) = (backend.Poisoned(N * C), backend.UploadArray(previousWeight), backend.UploadArray(previousBias));
        backend.LayerNormBackward(dInput, dWeight, dBias, backend.UploadArray(dOutput), backend.UploadArray(x), rf is null ? null : backend.UploadArray(rf), backend.UploadArray(w), N, C, 1e-5f);
        var expected = ReferenceGradients.LayerNorm(dOutput.AsDoubles(), x.AsDoubles(), rf?.AsDoubles(), w.AsDoubles(), N, C, 1e-5);
        return CompareBackward([.. expected.DInput, .. expected.DWeight.Select((v, i) => v + previousWeight[i]), .. expected.DBias.Select((v, i) => v + previousBias[i])],
            [.. backend.DownloadArray(dInput), .. backend.DownloadArray(dWeight), .. backend.DownloadArray(dBias)]);
    }

    public ParityResult ReferenceGradient()
    {
        var (input, r, weight, bias) = Inputs;
        var g = OpCases.Random(N * C, 22).AsDoubles();
        // eps 1e-5 here: with 1e-12 a row of near-equal values would make the finite differences ill-conditioned.
        const double eps = 1e-5;
        double Loss(double[] x, double[] w, double[] b) => Dot(g, ReferenceOps.LayerNorm(x, r, w, b, N, C, eps));
        var (dInput, dWeight, dBias) = ReferenceGradients.LayerNorm(g, input, r, weight, N, C, eps);
        var numeric = Numeric(x => Loss(x, weight, bias), input).Concat(Numeric(w => Loss(input, w, bias), weight)).Concat(Numeric(b => Loss(input, weight, b), bias));
        return CompareNumeric([.. numeric], [.. dInput.Concat(dWeight).Concat(dBias)]);
    }

    public override Action Prepare(IBackend backend)
    {
        var (x, r, g, b, o) = (backend.UploadArray(OpCases.Random(N * C, 7)), residual ? backend.UploadArray(OpCases.Random(N * C, 8)) : null,
            backend.UploadArray(OpCases.Random(C, 9)), backend.UploadArray(OpCases.Random(C, 10)), backend.Allocate<float>(N * C));
        return () => backend.LayerNorm(o, x, r, g, b, N, C, 1e-12f);
    }
}

/// <summary>The embeddings sum over a position table of <paramref name="positions"/> rows (its ids repeat and skip: any family's rule), then LayerNorm; and the sum's backward.</summary>
/// <param name="quantizedWords">The word table int8 with a scale per token (a checkpoint quantized with its embeddings): forward only.</param>
/// <param name="words">How the word table is stored: F32; I8 (a quantized table, a scale per token); F16 or BF16 (kept as a checkpoint stores it).</param>
public sealed class EmbeddingsCase(string name, int B, int T, int C, int V, int typeVocab, int positions, Engine.IO.DType words = Engine.IO.DType.F32)
    : OpCase("embeddings", name), IReferenceGradient
{
    public override long Work => (long)B * T * C;
    // A warp per token (Welford merges: 15 shuffles, and C/32 steps); the backward is a thread per channel over the tokens.
    protected override double EmulatorRounds => B * T * (15 + Math.Ceiling(C / 32.0));
    public override bool HasBackward => words == Engine.IO.DType.F32;

    /// <summary>The word table as the op takes it, and its values as the reference reads them.</summary>
    private (Tensor Table, float[] Values) WordTable(IBackend backend)
    {
        var word = OpCases.Random(V * C, 12);
        switch (words)
        {
            case Engine.IO.DType.I8:
                var (values, scales) = Engine.Quantization.Int8Quantizer.QuantizeRows(word, C);
                return (Tensor.Int8(backend.UploadArray(values), backend.UploadArray(scales), V, C), Engine.Quantization.Int8Quantizer.Dequantize(values, scales, C));
            case Engine.IO.DType.F16 or Engine.IO.DType.BF16:
                var bits = HalfValues.Bits(word, words);
                return (Tensor.Halves(backend.UploadArray(bits), words, V, C), HalfValues.Widen(bits, words));
            default:
                return (backend.UploadArray(word), word);
        }
    }

    /// <summary>(B,T) ids in [0, positions), seeded, with repeats (a scatter-add must sum them).</summary>
    public int[] PositionIds()
    {
        var random = new Random(15);
        return [.. Enumerable.Range(0, B * T).Select(_ => random.Next(positions))];
    }

    /// <summary>
    /// Word ids over the whole vocabulary (the forward), or five ids spread over it (the backward: repeats to sum, in
    /// every block of rows a kernel may split the table into), and token types.
    /// </summary>
    private (int[] Ids, int[] Types) Ids(bool repeats)
    {
        var random = new Random(11);
        int[] spread = [0, V / 4, V / 2, 3 * V / 4, V - 1];
        var ids = Enumerable.Range(0, B * T).Select(_ => repeats ? spread[random.Next(spread.Length)] : random.Next(V)).ToArray();
        var types = Enumerable.Range(0, B * T).Select(_ => random.Next(typeVocab)).ToArray();
        return (ids, types);
    }

    public override ParityResult Forward(IBackend backend)
    {
        var (ids, types) = Ids(repeats: false);
        var ((table, word), position, tokenType) = (WordTable(backend), OpCases.Random(positions * C, 13), OpCases.Random(typeVocab * C, 14));
        var (weight, bias) = (OpCases.Random(C, 18), OpCases.Random(C, 19));
        var positionIds = PositionIds();
        var (output, sum) = (backend.Poisoned(B * T * C), backend.Poisoned(B * T * C));
        backend.Embeddings(output, sum, backend.UploadArray(ids), backend.UploadArray(positionIds), backend.UploadArray(types), table,
            backend.UploadArray(position), backend.UploadArray(tokenType), backend.UploadArray(weight), backend.UploadArray(bias), B, T, C, 1e-12f);
        var expectedSum = ReferenceOps.Embeddings(ids, positionIds, types, word.AsDoubles(), position.AsDoubles(), tokenType.AsDoubles(), B, T, C);
        var sumResult = Compare(expectedSum, backend.DownloadArray(sum), OpCases.EmbeddingsTolerance, "embeddings-sum");
        if (!sumResult.Passed) return sumResult;
        // The normalisation sees the float32 sum, as every backend does.
        var expected = ReferenceOps.LayerNorm([.. expectedSum.Select(v => (double)(float)v)], null, weight.AsDoubles(), bias.AsDoubles(), B * T, C, 1e-12);
        var normalised = Compare(expected, backend.DownloadArray(output), OpCases.LayerNormTolerance);
        // Without a sum buffer the op must give the same output.
        var alone = backend.Poisoned(B * T * C);
        backend.Embeddings(alone, null, backend.UploadArray(ids), backend.UploadArray(positionIds), backend.UploadArray(types), table,
            backend.UploadArray(position), backend.UploadArray(tokenType), backend.UploadArray(weight), backend.UploadArray(bias), B, T, C, 1e-12f);
        var aloneResult = ParityCheck.Compare(Op, Name + " without sum", expected, backend.DownloadArray(alone), OpCases.LayerNormTolerance);
        return normalised.Passed ? aloneResult : normalised;
    }

    public override ParityResult Backward(ITrainingBackend backend)
    {
        var (ids, types) = Ids(repeats: true);
        var dSum = OpCases.Random(B * T * C, 31);
        var positionIds = PositionIds();
        var (previousWord, previousPosition, previousType) = (OpCases.Random(V * C, 32), OpCases.Random(positions * C, 33), OpCases.Random(typeVocab * C, 34));
        var (dWord, dPosition, dType) = (backend.UploadArray(previousWord), backend.UploadArray(previousPosition), backend.UploadArray(previousType));
        backend.EmbeddingsBackward(dWord, dPosition, dType, backend.UploadArray(dSum), backend.UploadArray(ids), backend.UploadArray(positionIds), backend.UploadArray(types), B, T, C);
        var expected = ReferenceGradients.Embeddings(dSum.AsDoubles(), ids, positionIds, types, B, T, C, V, positions, typeVocab);
        return CompareBackward(
            [.. expected.DWord.Select((v, i) => v + previousWord[i]), .. expected.DPosition.Select((v, i) => v + previousPosition[i]), .. expected.DTokenType.Select((v, i) => v + previousType[i])],
            [.. backend.DownloadArray(dWord), .. backend.DownloadArray(dPosition), .. backend.DownloadArray(dType)]);
    }

    public ParityResult ReferenceGradient()
    {
        var (ids, types) = Ids(repeats: true);
        var positionIds = PositionIds();
        var (word, position, tokenType) = (OpCases.Random(V * C, 12).AsDoubles(), OpCases.Random(positions * C, 13).AsDoubles(), OpCases.Random(typeVocab * C, 14).AsDoubles());
        var g = OpCases.Random(B * T * C, 31).AsDoubles();
        var expected = ReferenceGradients.Embeddings(g, ids, positionIds, types, B, T, C, V, positions, typeVocab);
        double Loss(double[] w, double[] p, double[] t) => Dot(g, ReferenceOps.Embeddings(ids, positionIds, types, w, p, t, B, T, C));
        var numeric = Numeric(w => Loss(w, position, tokenType), word).Concat(Numeric(p => Loss(word, p, tokenType), position)).Concat(Numeric(t => Loss(word, position, t), tokenType));
        return CompareNumeric([.. numeric], [.. expected.DWord, .. expected.DPosition, .. expected.DTokenType]);
    }

    public override Action Prepare(IBackend backend)
    {
        var (ids, types) = Ids(repeats: false);
        var (i, p, t) = (backend.UploadArray(ids), backend.UploadArray(PositionIds()), backend.UploadArray(types));
        var (word, position, tokenType) = (backend.UploadArray(OpCases.Random(V * C, 12)), backend.UploadArray(OpCases.Random(positions * C, 13)), backend.UploadArray(OpCases.Random(typeVocab * C, 14)));
        var (weight, bias, o) = (backend.UploadArray(OpCases.Random(C, 18)), backend.UploadArray(OpCases.Random(C, 19)), backend.Allocate<float>(B * T * C));
        return () => backend.Embeddings(o, null, i, p, t, word, position, tokenType, weight, bias, B, T, C, 1e-12f);
    }
}

/// <summary>
/// Rows (R,C) gathered from (N,C) by distinct indices in no order (the [CLS] rows of a pooler, a masked-LM head's
/// masked positions), and the backward that scatters them back (zero elsewhere).
/// </summary>
public sealed class GatherRowsCase(string name, int n, int c, int[] rows) : OpCase("gather-rows", name)
{
    public override long Work => (long)rows.Length * c;
    protected override double EmulatorRounds => rows.Length * c / 32.0;
    public override bool HasBackward => true;

    public override ParityResult Forward(IBackend backend)
    {
        var input = OpCases.Random(n * c, 15);
        var output = backend.Poisoned(rows.Length * c);
        backend.GatherRows(output, backend.UploadArray(input), backend.UploadArray(rows), rows.Length, n, c);
        return Compare(ReferenceOps.GatherRows(input, rows, c), backend.DownloadArray(output), new Tolerance(0, 0));
    }

    public override ParityResult Backward(ITrainingBackend backend)
    {
        var dOutput = OpCases.Random(rows.Length * c, 35);
        var dInput = backend.Poisoned(n * c);
        backend.GatherRowsBackward(dInput, backend.UploadArray(dOutput), backend.UploadArray(rows), rows.Length, n, c);
        var expected = new double[n * c];
        for (int r = 0; r < rows.Length; r++)
            for (int j = 0; j < c; j++) expected[rows[r] * c + j] = dOutput[r * c + j];
        return CompareBackward(expected, backend.DownloadArray(dInput));
    }
}

/// <summary>
/// Attention with fp16 or bf16 on tensor cores (flash attention): against the float64 attention of Q, K and V rounded to the
/// format, within the rounding of the probabilities the kernel multiplies V by (relative unit u of the format: 4u
/// absolute and relative); and against the fp32 operands within the rounding of Q·Kᵀ too. The backward against the float64
/// gradients of the rounded Q, K, V and dO, within the rounding of P, dP and dS (16u of the largest gradient, absolute,
/// and 16u relative).
/// </summary>
public sealed class ReducedPrecisionAttentionCase(string name, int b, int t, int nh, int hs, int[] lengths, ComputePrecision precision, float dropout = 0f,
    bool packed = false) : OpCase("attention-" + precision.ToString().ToLowerInvariant(), name)
{
    private readonly AttentionCase _layout = new(name, b, t, nh, hs, lengths, dropout, packed: packed);
    private readonly Lazy<float[]> _qkv = new(() => OpCases.Random(b * t * 3 * nh * hs, 51, 2f));

    public ComputePrecision Precision => precision;
    public override long Work => _layout.Work;
    public override double Flops => _layout.Flops;
    // Per block (b, h, 64 queries) and tile of 64 keys, each of 4 warps runs 8·HS/16 software mmas for the scores and
    // 4·HS/8 for P·V, each with its ldmatrix shuffles: about 40 rounds a block and mma here (4–10 s a case).
    protected override double EmulatorRounds =>
        b * nh * Math.Ceiling(t / 64.0) * Math.Ceiling(t / 64.0) * (8 * hs / 16 + 4 * hs / 8) * 40;
    // The query side repeats the forward and adds as much again; the key side about as much as the query side's second sweep.
    protected override double EmulatorBackwardRounds => 3.5 * EmulatorRounds;
    public override bool HasBackward => true;

    public override ParityResult Backward(ITrainingBackend backend)
    {
        int C = nh * hs;
        var qkv = _qkv.Value;
        var dOutput = _layout.PaddedOutputGradient(52);
        var dQkv = backend.Poisoned(_layout.Rows * 3 * C);
        backend.AttentionBackward(dQkv, backend.UploadArray(_layout.OpRows(dOutput, C)), backend.UploadArray(_layout.OpRows(qkv, 3 * C)), _layout.Layout(backend), nh, hs, _layout.DropoutMask);
        double unit = precision == ComputePrecision.Bf16 ? 1.0 / 256 : 1.0 / 2048;
        var expected = _layout.OpRows(ReferenceGradients.Attention(ReferenceOps.Round(dOutput, precision), ReferenceOps.Round(qkv, precision), _layout.Mask, b, t, nh, hs, _layout.DropoutMask), 3 * C);
        double largest = expected.Max(Math.Abs);
        return ParityCheck.Compare(Op + "-backward", Name, expected, backend.DownloadArray(dQkv), new Tolerance(16 * unit * largest, 16 * unit));
    }

    public override ParityResult Forward(IBackend backend)
    {
        int C = nh * hs;
        var qkv = _qkv.Value;
        var output = backend.Poisoned(_layout.Rows * C);
        backend.Attention(output, backend.UploadArray(_layout.OpRows(qkv, 3 * C)), _layout.Layout(backend), nh, hs, _layout.DropoutMask);
        var actual = backend.DownloadArray(output);
        double unit = precision == ComputePrecision.Bf16 ? 1.0 / 256 : 1.0 / 2048;
        var rounded = ReferenceOps.Round(qkv, precision);
        var result = Compare(_layout.OpRows(ReferenceOps.Attention(rounded, _layout.Mask, b, t, nh, hs, _layout.DropoutMask), C), actual, new Tolerance(4 * unit, 4 * unit));
        if (!result.Passed) return result;
        return ParityCheck.Compare(Op, Name + " against fp32 operands", _layout.OpRows(ReferenceOps.Attention(qkv.AsDoubles(), _layout.Mask, b, t, nh, hs, _layout.DropoutMask), C),
            actual, new Tolerance(4 * unit * Math.Sqrt(hs), 4 * unit));
    }
}

/// <summary>destination += source, where two paths' gradients meet (a training op).</summary>
public sealed class AccumulateCase() : OpCase("accumulate", "1001")
{
    private const int N = 1001;
    public override long Work => N;
    protected override double EmulatorRounds => N / 32.0;
    public override bool HasForward => false;
    public override bool HasBackward => true;

    public override ParityResult Backward(ITrainingBackend backend)
    {
        var (a, b) = (OpCases.Random(N, 36), OpCases.Random(N, 37));
        var destination = backend.UploadArray(a);
        backend.Accumulate(destination, backend.UploadArray(b), N);
        return Compare([.. a.Select((v, i) => (double)v + b[i])], backend.DownloadArray(destination), OpCases.BackwardTolerance);
    }
}

/// <summary>values *= factor: a loss's gradient multiplied by the loss scale (a training op); the factor is a power of two, so the product is exact.</summary>
public sealed class ScaleCase() : OpCase("scale", "1001")
{
    private const int N = 1001;
    private const float Factor = 32768f;
    public override long Work => N;
    protected override double EmulatorRounds => N / 32.0;
    public override bool HasForward => false;
    public override bool HasBackward => true;

    public override ParityResult Backward(ITrainingBackend backend)
    {
        var a = OpCases.Random(N, 38);
        var values = backend.UploadArray(a);
        backend.Scale(values, N, Factor);
        return Compare([.. a.Select(v => (double)v * Factor)], backend.DownloadArray(values), new Tolerance(0, 0));
    }
}
