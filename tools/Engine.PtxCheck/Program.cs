using System.Diagnostics;
using System.Text.RegularExpressions;
using Engine.Kernels;
using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Backends.EntryPoints;
using ILGPU.Backends.PTX;
using ILGPU.Runtime;
using ILGPU.Runtime.Cuda;

// Compiles every kernel of KernelCatalog to PTX with ILGPU's PTX backend (no GPU needed), assembles each
// with NVIDIA's ptxas for sm_80 and sm_90, and prints registers, shared memory, spill bytes and the tensor-core,
// dot-product and tensor-core staging instructions of its SASS (cuobjdump -sass: HMMA, IMMA, IDP.4A, IDP.2A; LDSM from
// ldmatrix, LDGSTS from cp.async).
// Fails on any compile or assembly error, on spills in kernels that must not spill, and on a kernel whose SASS lacks
// an instruction it requires (its inline PTX did not become the instruction meant).
// Usage: engine-ptxcheck [--ptxas PATH] [--output DIR]   (PATH default: $PTXAS, else .tools/cuda from tools/fetch-ptxas.sh;
// cuobjdump is looked up beside ptxas and in the toolkit's bin folders)
string? ptxas = Argument("--ptxas") ?? Environment.GetEnvironmentVariable("PTXAS") ?? FindFetchedPtxas();
if (ptxas is null || !File.Exists(ptxas))
{
    Console.Error.WriteLine("error: ptxas not found; run tools/fetch-ptxas.sh or pass --ptxas PATH");
    return 2;
}
string? cuobjdump = FindCuobjdump(ptxas);
if (cuobjdump is null)
{
    Console.Error.WriteLine($"error: cuobjdump not found near {ptxas}");
    return 2;
}
string output = Argument("--output") ?? Path.Combine(Path.GetTempPath(), "engine-ptx");
Directory.CreateDirectory(output);

var failures = new List<string>();
Console.WriteLine($"{"kernel",-26} {"arch",-6} {"registers",9} {"smem B",8} {"spill B",8} {"stack B",8}  tensor/dot SASS");
foreach (var architecture in new[] { ("sm_80", CudaArchitecture.SM_80), ("sm_90", CudaArchitecture.SM_90) })
{
    foreach (var kernel in KernelCatalog.All)
    {
        string file = Path.Combine(output, $"{kernel.Name.Replace(' ', '-').Replace("=", "")}-{architecture.Item1}.ptx");
        try
        {
            // A fresh context per kernel: after a failed compile ILGPU's context can fail spuriously.
            using var context = Context.Create(b => b.Math(MathMode.Default).EnableAlgorithms());
            var backend = new PTXBackend(context, new CudaCapabilityContext(architecture.Item2), architecture.Item2, CudaInstructionSet.ISA_78, null);
            var entry = kernel.ExplicitlyGrouped
                ? EntryPointDescription.FromExplicitlyGroupedKernel(kernel.Method)
                : EntryPointDescription.FromImplicitlyGroupedKernel(kernel.Method);
            var compiled = (PTXCompiledKernel)backend.Compile(entry, new KernelSpecialization());
            File.WriteAllText(file, compiled.PTXAssembly);
        }
        catch (Exception e)
        {
            failures.Add($"{kernel.Name} ({architecture.Item1}): PTX generation failed: {e.Message} {e.InnerException?.Message}");
            continue;
        }
        var (exitCode, log) = RunPtxas(ptxas, architecture.Item1, file);
        if (exitCode != 0)
        {
            failures.Add($"{kernel.Name} ({architecture.Item1}): ptxas failed: {log.Trim()}");
            continue;
        }
        int registers = Number(log, @"Used (\d+) registers"), smem = Number(log, @"(\d+) bytes smem");
        int spills = Number(log, @"(\d+) bytes spill stores") + Number(log, @"(\d+) bytes spill loads");
        int stack = Number(log, @"(\d+) bytes stack frame");
        var sass = SassInstructions(cuobjdump, Path.ChangeExtension(file, ".cubin"));
        string found = string.Join(" ", sass.Select(i => $"{i.Key}×{i.Value}"));
        Console.WriteLine($"{kernel.Name,-26} {architecture.Item1,-6} {registers,9} {smem,8} {spills,8} {stack,8}  {(found.Length == 0 ? "-" : found)}");
        if (kernel.NoSpills && spills > 0) failures.Add($"{kernel.Name} ({architecture.Item1}): {spills} bytes of spills");
        foreach (string required in kernel.RequiredSass)
            if (!sass.ContainsKey(required))
                failures.Add($"{kernel.Name} ({architecture.Item1}): no {required} in its SASS");
    }
}
foreach (string failure in failures) Console.Error.WriteLine($"error: {failure}");
Console.WriteLine(failures.Count == 0 ? $"PTX check passed: {KernelCatalog.All.Count} kernels × 2 architectures, PTX in {output}" : $"PTX check failed: {failures.Count} problem(s)");
return failures.Count == 0 ? 0 : 1;

string? Argument(string name)
{
    int i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}

static string? FindFetchedPtxas()
{
    for (var directory = new DirectoryInfo(Environment.CurrentDirectory); directory is not null; directory = directory.Parent)
        foreach (string candidate in new[] { ".tools/cuda/x/usr/bin/ptxas", ".tools/cuda/x/usr/lib/nvidia-cuda-toolkit/bin/ptxas" })
            if (File.Exists(Path.Combine(directory.FullName, candidate))) return Path.Combine(directory.FullName, candidate);
    return null;
}

static string? FindCuobjdump(string ptxas)
{
    for (var directory = new FileInfo(ptxas).Directory; directory is not null; directory = directory.Parent)
        foreach (string candidate in new[] { "cuobjdump", "bin/cuobjdump", "usr/bin/cuobjdump" })
            if (File.Exists(Path.Combine(directory.FullName, candidate))) return Path.Combine(directory.FullName, candidate);
    return null;
}

// The tensor-core, dot-product and staging instructions of a cubin's SASS with their counts, by opcode with its modifiers (IMMA.16832.S8.S8).
static SortedDictionary<string, int> SassInstructions(string cuobjdump, string cubin)
{
    var start = new ProcessStartInfo(cuobjdump, ["-sass", cubin]) { RedirectStandardOutput = true, RedirectStandardError = true };
    using var process = Process.Start(start)!;
    string sass = process.StandardOutput.ReadToEnd();
    process.StandardError.ReadToEnd();
    process.WaitForExit();
    var counts = new SortedDictionary<string, int>(StringComparer.Ordinal);
    foreach (Match match in Regex.Matches(sass, @"\b(HMMA|IMMA|IDP|HGMMA|IGMMA|LDSM|LDGSTS)(\.[A-Z0-9]+)*"))
        counts[match.Value] = counts.GetValueOrDefault(match.Value) + 1;
    return counts;
}

static (int, string) RunPtxas(string ptxas, string arch, string ptxFile)
{
    var start = new ProcessStartInfo(ptxas, ["-arch=" + arch, "-v", ptxFile, "-o", Path.ChangeExtension(ptxFile, ".cubin")])
    {
        RedirectStandardError = true,
        RedirectStandardOutput = true,
    };
    using var process = Process.Start(start)!;
    string log = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
    process.WaitForExit();
    return (process.ExitCode, log);
}

static int Number(string log, string pattern)
{
    var match = Regex.Match(log, pattern);
    return match.Success ? int.Parse(match.Groups[1].Value) : 0;
}
