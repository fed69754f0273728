using System.Globalization;
using System.Text;

namespace Engine.Tokenization;

/// <summary>
/// Python's <c>str.lower()</c>, which Hugging Face's BertTokenizer lower-cases with: Unicode's full case mapping
/// (one code point may become several: U+0130 → i + U+0307) and the Final_Sigma rule (a capital sigma after a cased
/// letter, with no cased letter following, becomes ς). .NET's invariant lower-casing is a one-to-one simple mapping
/// without context, and differs on such text.
/// </summary>
/// <remarks>
/// The table (python-lower.txt) is written over all of Unicode by tools/unicode/python_lower.py from Python itself:
/// the mapping of every code point that lower() changes, and the case-ignorable and cased ranges that the sigma
/// rule looks through. The rule is CPython's <c>handle_capital_sigma</c>.
/// </remarks>
public static class PythonLowerCase
{
    private const int CapitalSigma = 0x3A3;
    private static readonly Dictionary<int, string> Mapping = [];
    private static readonly (int First, int Last)[] Ignorable, Cased;

    static PythonLowerCase()
    {
        using var stream = typeof(PythonLowerCase).Assembly.GetManifestResourceStream("Engine.Tokenization.python-lower.txt")
            ?? throw new InvalidOperationException("the lower-case table is not embedded");
        using var reader = new StreamReader(stream, System.Text.Encoding.ASCII);
        var (ignorable, cased) = (new List<(int, int)>(), new List<(int, int)>());
        while (reader.ReadLine() is { } line)
        {
            if (line.StartsWith('#')) continue;
            var fields = line.Split(' ');
            int Hex(int i) => int.Parse(fields[i], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            switch (fields[0])
            {
                case "M": Mapping[Hex(1)] = string.Concat(Enumerable.Range(2, fields.Length - 2).Select(i => char.ConvertFromUtf32(Hex(i)))); break;
                case "I": ignorable.Add((Hex(1), Hex(2))); break;
                case "C": cased.Add((Hex(1), Hex(2))); break;
            }
        }
        (Ignorable, Cased) = ([.. ignorable], [.. cased]);
    }

    /// <summary><paramref name="text"/> as Python's <c>text.lower()</c> returns it.</summary>
    public static string Lower(string text)
    {
        bool ascii = true;
        foreach (char c in text) ascii &= c < 0x80;
        if (ascii) return text.ToLowerInvariant(); // the same mapping there, and the common case
        var runes = new List<Rune>(text.Length);
        foreach (var rune in text.EnumerateRunes()) runes.Add(rune);
        var result = new StringBuilder(text.Length);
        for (int i = 0; i < runes.Count; i++)
        {
            int c = runes[i].Value;
            if (c == CapitalSigma) result.Append(IsFinalSigma(runes, i) ? 'ς' : 'σ');
            else if (Mapping.TryGetValue(c, out var lowered)) result.Append(lowered);
            else result.Append(runes[i].ToString());
        }
        return result.ToString();
    }

    /// <summary>\p{cased}\p{case-ignorable}* Σ !(\p{case-ignorable}* \p{cased}), as CPython decides it.</summary>
    private static bool IsFinalSigma(List<Rune> runes, int at)
    {
        int j = at - 1;
        while (j >= 0 && In(Ignorable, runes[j].Value)) j--;
        if (j < 0 || !In(Cased, runes[j].Value)) return false;
        j = at + 1;
        while (j < runes.Count && In(Ignorable, runes[j].Value)) j++;
        return j == runes.Count || !In(Cased, runes[j].Value);
    }

    private static bool In((int First, int Last)[] ranges, int value)
    {
        int lo = 0, hi = ranges.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (value < ranges[mid].First) hi = mid - 1;
            else if (value > ranges[mid].Last) lo = mid + 1;
            else return true;
        }
        return false;
    }
}
