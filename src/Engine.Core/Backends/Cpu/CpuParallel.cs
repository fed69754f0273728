namespace Engine.Backends.Cpu;

/// <summary>
/// The CPU kernels' parallel loops, on as many threads as the <see cref="CpuBackend"/> running the op allows: the backend
/// sets its <see cref="ParallelOptions"/> on the calling thread for the op's duration (<see cref="Use"/>), and every kernel
/// loop reads them here, so a thread limit reaches the GEMMs, attention, normalisation and the rest without a parameter
/// through each of them. Outside an op (tests calling a kernel directly) the loops use every core.
/// </summary>
internal static class CpuParallel
{
    [ThreadStatic] private static ParallelOptions? t_options;
    private static readonly ParallelOptions AllCores = new();

    public static ParallelOptions Options => t_options ?? AllCores;

    /// <summary>Threads the current op's loops run on.</summary>
    public static int Threads => Options.MaxDegreeOfParallelism > 0 ? Options.MaxDegreeOfParallelism : Environment.ProcessorCount;

    /// <summary>Makes <paramref name="options"/> the current thread's until the scope is disposed (scopes nest).</summary>
    public static Scope Use(ParallelOptions options)
    {
        var previous = t_options;
        t_options = options;
        return new Scope(previous);
    }

    public readonly struct Scope(ParallelOptions? previous) : IDisposable
    {
        public void Dispose() => t_options = previous;
    }

    public static void For(int fromInclusive, int toExclusive, Action<int> body) => Parallel.For(fromInclusive, toExclusive, Options, body);

    public static void For<TLocal>(int fromInclusive, int toExclusive, Func<TLocal> localInit, Func<int, ParallelLoopState, TLocal, TLocal> body, Action<TLocal> localFinally) =>
        Parallel.For(fromInclusive, toExclusive, Options, localInit, body, localFinally);
}
