using System.Globalization;
using Engine;
using Engine.Fuzz;

// engine-fuzz: the fuzz harness for every reader of untrusted bytes (see FuzzTargets).
//   engine-fuzz list                                  the targets
//   engine-fuzz seeds TARGET DIR                      writes the target's seed inputs into DIR
//   engine-fuzz instrument DLL…                       SharpFuzz's AFL instrumentation of the assemblies, in place
//   engine-fuzz afl TARGET                            the target under afl-fuzz (coverage-guided; tools/fuzz/run.sh)
//   engine-fuzz mutate TARGET COUNT SEED [FINDINGS]   COUNT seeded structured mutations; exit 1 on any finding
//   engine-fuzz replay TARGET PATH…                   runs saved inputs (AFL's crashes) and prints what each raised
if (args.Length == 0 || args[0] is "-h" or "--help")
{
    Console.Error.WriteLine("usage: engine-fuzz list | seeds TARGET DIR | instrument DLL... | afl TARGET | mutate TARGET COUNT SEED [FINDINGS] | replay TARGET PATH...");
    return 2;
}
return args[0] switch
{
    "instrument" => Harness.Instrument(args[1..]),
    _ => Harness.Run(args),
};

internal static class Harness
{
    /// <summary>Kept apart from the targets: instrumenting must not load the assemblies it rewrites.</summary>
    public static int Instrument(string[] assemblies)
    {
        foreach (string assembly in assemblies)
        {
            SharpFuzz.Fuzzer.Instrument(assembly, _ => true, SharpFuzz.Options.Value);
            Console.Error.WriteLine($"instrumented {assembly}");
        }
        return 0;
    }

    public static int Run(string[] args)
    {
        switch (args[0])
        {
            case "list":
                foreach (var target in FuzzTargets.All) Console.WriteLine($"{target.Name}\t{target.FileName}");
                return 0;
            case "seeds":
            {
                var target = FuzzTargets.Named(args[1]);
                Directory.CreateDirectory(args[2]);
                int n = 0;
                foreach (var seed in target.Seeds()) File.WriteAllBytes(Path.Combine(args[2], $"seed-{n++}"), seed);
                return 0;
            }
            case "afl":
            {
                var target = FuzzTargets.Named(args[1]);
                // Instrumented code may run only once SharpFuzz has mapped AFL's coverage memory: the workspace
                // (which parses a config) is made inside the first run.
                FuzzWorkspace? workspace = null;
                SharpFuzz.Fuzzer.Run(stream =>
                {
                    workspace ??= new FuzzWorkspace();
                    using var buffer = new MemoryStream();
                    stream.CopyTo(buffer);
                    try { FuzzTargets.Run(target, buffer.ToArray(), workspace); }
                    catch (EngineException) { }
                });
                workspace?.Dispose();
                return 0;
            }
            case "mutate":
            {
                var target = FuzzTargets.Named(args[1]);
                int count = int.Parse(args[2], CultureInfo.InvariantCulture), seed = int.Parse(args[3], CultureInfo.InvariantCulture);
                var (findings, accepted, elapsed) = Mutator.Campaign(target, count, seed, TimeSpan.FromSeconds(10),
                    done => Console.Error.WriteLine($"{target.Name}: {done:N0}/{count:N0}"));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{target.Name}\t{count} inputs\t{accepted} read\t{findings.Count} findings\t{elapsed.TotalSeconds:F1} s\t{count / elapsed.TotalSeconds:F0} inputs/s"));
                if (args.Length > 4) Directory.CreateDirectory(args[4]);
                foreach (var (finding, i) in findings.Select((f, i) => (f, i)))
                {
                    Console.Error.WriteLine($"{target.Name}: {finding.Error.GetType().Name}: {finding.Error.Message}\n{finding.Error.StackTrace}");
                    if (args.Length > 4) File.WriteAllBytes(Path.Combine(args[4], $"{target.Name}-{i}"), finding.Input);
                }
                return findings.Count == 0 ? 0 : 1;
            }
            case "replay":
            {
                var target = FuzzTargets.Named(args[1]);
                using var workspace = new FuzzWorkspace();
                int bugs = 0;
                foreach (string file in args[2..].SelectMany(p => Directory.Exists(p) ? Directory.GetFiles(p).Order(StringComparer.Ordinal).ToArray() : [p]))
                {
                    try
                    {
                        FuzzTargets.Run(target, File.ReadAllBytes(file), workspace);
                        Console.WriteLine($"{file}: read");
                    }
                    catch (EngineException e) { Console.WriteLine($"{file}: refused: {e.Message}"); }
                    catch (Exception e)
                    {
                        bugs++;
                        Console.WriteLine($"{file}: BUG {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
                    }
                }
                return bugs == 0 ? 0 : 1;
            }
            default:
                Console.Error.WriteLine($"engine-fuzz: unknown command '{args[0]}'");
                return 2;
        }
    }
}
