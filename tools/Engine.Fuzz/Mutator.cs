using System.Diagnostics;
using System.Text;

namespace Engine.Fuzz;

/// <summary>A bug a fuzzer found: the input, and the exception it raised instead of an EngineException.</summary>
public sealed record FuzzFinding(string Target, byte[] Input, Exception Error);

/// <summary>
/// A seeded, structure-aware mutation fuzzer (no coverage feedback): each input is a seed with one to four
/// mutations — bit flips, bytes set to boundary values, runs inserted, deleted, duplicated or spliced from another
/// seed, numbers replaced by extreme ones, JSON and CSV punctuation inserted, truncation. Inputs that read
/// without error join the pool, so mutations stack. The same seed gives the same inputs in any process.
/// It is the short run CI does for every reader; the long runs are coverage-guided (AFL++, tools/fuzz/run.sh).
/// </summary>
public sealed class Mutator(IReadOnlyList<byte[]> seeds, int seed)
{
    private static readonly string[] Numbers =
        ["0", "-1", "1", "255", "256", "65535", "2147483647", "2147483648", "-2147483649", "4294967296", "9223372036854775807", "18446744073709551616",
         "1e308", "1e400", "-1e400", "0.5", "1e-320", "NaN", "Infinity", "1.0", "99999999999999999999"];
    private static readonly string[] Punctuation = ["{", "}", "[", "]", "\"", ",", ":", "null", "true", "\n", "\r", "\t", "\"\"", "\\u0000", "\\ud800", "\0", "##", "[MASK]", "\u00ff", "中"];

    private readonly Random _random = new(seed);
    private readonly List<byte[]> _pool = [.. seeds];

    public byte[] Next()
    {
        var input = new List<byte>(_pool[_random.Next(_pool.Count)]);
        int mutations = 1 + _random.Next(4);
        for (int m = 0; m < mutations; m++) Mutate(input);
        return [.. input];
    }

    /// <summary>Keeps an input that read without error, so later mutations build on it (bounded, to stay small).</summary>
    public void Keep(byte[] input)
    {
        if (input.Length <= 1 << 16 && _pool.Count < 512) _pool.Add(input);
    }

    private void Mutate(List<byte> input)
    {
        int Position() => input.Count == 0 ? 0 : _random.Next(input.Count);
        switch (_random.Next(10))
        {
            case 0 when input.Count > 0:
                int at = Position();
                input[at] ^= (byte)(1 << _random.Next(8));
                break;
            case 1 when input.Count > 0:
                input[Position()] = (byte)(_random.Next(3) switch { 0 => 0, 1 => 0xFF, _ => _random.Next(256) });
                break;
            case 2:
                input.InsertRange(Position(), Enumerable.Range(0, 1 + _random.Next(8)).Select(_ => (byte)_random.Next(256)));
                break;
            case 3 when input.Count > 0:
                int start = Position();
                input.RemoveRange(start, Math.Min(input.Count - start, 1 + _random.Next(16)));
                break;
            case 4 when input.Count > 0:
                int from = Position(), length = Math.Min(input.Count - from, 1 + _random.Next(64));
                input.InsertRange(Position(), input.GetRange(from, length));
                break;
            case 5:
                var other = _pool[_random.Next(_pool.Count)];
                if (other.Length == 0) break;
                int offset = _random.Next(other.Length);
                input.InsertRange(Position(), other.Skip(offset).Take(1 + _random.Next(64)));
                break;
            case 6:
                ReplaceNumber(input);
                break;
            case 7:
                input.InsertRange(Position(), Encoding.UTF8.GetBytes(Punctuation[_random.Next(Punctuation.Length)]));
                break;
            case 8 when input.Count > 0:
                int cut = Position();
                input.RemoveRange(cut, input.Count - cut);
                break;
            default:
                // Little-endian boundary integers over 8 bytes: safetensors' header length, protobuf varints, offsets.
                if (input.Count < 8) break;
                int place = _random.Next(input.Count - 7);
                ulong value = _random.Next(5) switch { 0 => 0, 1 => ulong.MaxValue, 2 => (ulong)input.Count, 3 => 1UL << _random.Next(64), _ => (ulong)_random.NextInt64() };
                for (int b = 0; b < 8; b++) input[place + b] = (byte)(value >> (8 * b));
                break;
        }
    }

    /// <summary>Replaces a run of ASCII digits (a number in a text format) with an extreme one.</summary>
    private void ReplaceNumber(List<byte> input)
    {
        var digits = new List<int>();
        for (int i = 0; i < input.Count; i++)
            if (input[i] is >= (byte)'0' and <= (byte)'9' && (i == 0 || input[i - 1] is < (byte)'0' or > (byte)'9')) digits.Add(i);
        if (digits.Count == 0) return;
        int start = digits[_random.Next(digits.Count)], end = start;
        while (end < input.Count && input[end] is >= (byte)'0' and <= (byte)'9' or (byte)'.' or (byte)'e' or (byte)'-') end++;
        input.RemoveRange(start, end - start);
        input.InsertRange(start, Encoding.ASCII.GetBytes(Numbers[_random.Next(Numbers.Length)]));
    }

    /// <summary>
    /// Runs <paramref name="count"/> mutated inputs through <paramref name="target"/>; returns what was not an
    /// EngineException, and how many inputs read cleanly. An input taking over <paramref name="hangLimit"/> is a finding too
    /// when it does so again: a slow input repeats its slowness, a stall of the machine (a busy test run, a collection)
    /// does not.
    /// </summary>
    public static (List<FuzzFinding> Findings, int Accepted, TimeSpan Elapsed) Campaign(FuzzTarget target, int count, int seed, TimeSpan hangLimit, Action<int>? progress = null)
    {
        using var workspace = new FuzzWorkspace();
        var seeds = target.Seeds().ToList();
        var mutator = new Mutator(seeds, seed);
        var findings = new List<FuzzFinding>();
        int accepted = 0;
        var total = Stopwatch.StartNew();
        foreach (var valid in seeds) FuzzTargets.Run(target, valid, workspace); // the seeds themselves must read
        for (int i = 0; i < count; i++)
        {
            var input = mutator.Next();
            var clock = Stopwatch.StartNew();
            try
            {
                FuzzTargets.Run(target, input, workspace);
                accepted++;
                mutator.Keep(input);
            }
            catch (EngineException) { }
            catch (Exception e) { findings.Add(new FuzzFinding(target.Name, input, e)); }
            if (clock.Elapsed > hangLimit && Timed(target, input, workspace) is var again && again > hangLimit)
                findings.Add(new FuzzFinding(target.Name, input, new TimeoutException($"took {clock.Elapsed.TotalSeconds:F1} s, then {again.TotalSeconds:F1} s")));
            if (progress is not null && (i + 1) % 10_000 == 0) progress(i + 1);
        }
        return (findings, accepted, total.Elapsed);
    }

    /// <summary>How long one more run of <paramref name="input"/> takes (its outcome was already recorded).</summary>
    private static TimeSpan Timed(FuzzTarget target, byte[] input, FuzzWorkspace workspace)
    {
        var clock = Stopwatch.StartNew();
        try
        {
            FuzzTargets.Run(target, input, workspace);
        }
        catch (Exception) { } // the first run's outcome is the finding, not this one's
        return clock.Elapsed;
    }
}
