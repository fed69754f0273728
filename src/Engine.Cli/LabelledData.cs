using System.Globalization;
using StringBuilder = System.Text.StringBuilder;
using System.Text.Json;
using Engine.Tokenization;
using Engine.Training;

namespace Engine.Cli;

/// <summary>
/// Labelled examples from CSV (RFC 4180 quoting, a header row), TSV (a header row, tab-separated, no quoting)
/// or JSON lines (<c>text</c>/<c>label</c> fields by the given names, or <c>input_ids</c> used as given).
/// </summary>
internal static class LabelledData
{
    public sealed record Columns(string Text, string? Pair, string Label);

    /// <summary>Rows as field maps, and the file's label strings in order.</summary>
    public static List<Dictionary<string, JsonElement>> ReadRows(string path)
    {
        if (!File.Exists(path)) throw new EngineException($"{path}: file not found");
        string extension = Path.GetExtension(path).ToLowerInvariant();
        if (extension is ".jsonl" or ".json")
        {
            var rows = new List<Dictionary<string, JsonElement>>();
            int number = 0;
            foreach (string line in File.ReadLines(path))
            {
                number++;
                if (string.IsNullOrWhiteSpace(line)) continue;
                try
                {
                    using var document = JsonDocument.Parse(line);
                    rows.Add(document.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.Clone()));
                }
                catch (JsonException e) { throw new EngineException($"{path}:{number}: invalid JSON: {e.Message}", e); }
            }
            return rows;
        }
        var records = extension == ".tsv" ? ReadTsv(path) : ReadCsv(path);
        if (records.Count == 0) throw new EngineException($"{path}: no header row");
        var header = records[0];
        var result = new List<Dictionary<string, JsonElement>>();
        for (int r = 1; r < records.Count; r++)
        {
            if (records[r].Count == 1 && records[r][0].Length == 0) continue;
            if (records[r].Count != header.Count) throw new EngineException($"{path}: row {r + 1} has {records[r].Count} fields, the header {header.Count}");
            result.Add(header.Select((name, i) => (name, JsonSerializer.SerializeToElement(records[r][i]))).ToDictionary(x => x.name, x => x.Item2));
        }
        return result;
    }

    /// <summary>Label names: the integers 0..k−1 when every label is one, else the distinct strings in ordinal order.</summary>
    public static List<string> LabelNames(IEnumerable<string> labels)
    {
        var distinct = labels.Distinct().ToList();
        if (distinct.All(l => int.TryParse(l, NumberStyles.None, CultureInfo.InvariantCulture, out _)))
        {
            var ids = distinct.Select(l => int.Parse(l, CultureInfo.InvariantCulture)).Order().ToList();
            if (ids.SequenceEqual(Enumerable.Range(0, ids.Count))) return [.. ids.Select(i => i.ToString(CultureInfo.InvariantCulture))];
        }
        return [.. distinct.Order(StringComparer.Ordinal)];
    }

    public static string Label(Dictionary<string, JsonElement> row, Columns columns, string where) =>
        row.TryGetValue(columns.Label, out var value)
            ? value.ValueKind == JsonValueKind.String ? value.GetString()! : value.GetRawText()
            : throw new EngineException($"{where}: no '{columns.Label}' field");

    /// <summary>
    /// The rows as tokenized examples. With <paramref name="labelNames"/> each label is a class, looked up by
    /// name; without (regression), each label is a number.
    /// </summary>
    public static List<LabelledExample> Examples(string path, List<Dictionary<string, JsonElement>> rows, Columns columns, BertTokenizer tokenizer,
        int maxLength, IReadOnlyList<string>? labelNames)
    {
        var ids = labelNames?.Select((name, i) => (name, i)).ToDictionary(x => x.name, x => x.i);
        var examples = new List<LabelledExample>(rows.Count);
        for (int r = 0; r < rows.Count; r++)
        {
            string where = $"{path}: row {r + 1}";
            var row = rows[r];
            string label = Label(row, columns, where);
            float value;
            if (ids is null)
            {
                if (!float.TryParse(label, NumberStyles.Float, CultureInfo.InvariantCulture, out value) || !float.IsFinite(value))
                    throw new EngineException($"{where}: label '{label}' is not a finite number (a regression target)");
            }
            else if (ids.TryGetValue(label, out int id)) value = id;
            else throw new EngineException($"{where}: label '{label}' is not among the classifier's labels ({string.Join(", ", labelNames!)})");
            Encoding encoding;
            if (row.TryGetValue("input_ids", out var inputIds))
            {
                int[] Ints(string name) => row.TryGetValue(name, out var a) ? [.. a.EnumerateArray().Select(v => v.GetInt32())] : [];
                var given = Ints("input_ids");
                var mask = Ints("attention_mask");
                var types = Ints("token_type_ids");
                encoding = new Encoding(given, types.Length > 0 ? types : new int[given.Length], mask.Length > 0 ? mask : [.. given.Select(_ => 1)]);
                if (encoding.TokenTypeIds.Length != given.Length || encoding.AttentionMask.Length != given.Length)
                    throw new EngineException($"{where}: input_ids, attention_mask and token_type_ids differ in length");
            }
            else
            {
                string Text(string column) => row.TryGetValue(column, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()!
                    : throw new EngineException($"{where}: no text field '{column}'");
                encoding = tokenizer.Encode(Text(columns.Text), columns.Pair is null ? null : Text(columns.Pair), maxLength);
            }
            examples.Add(new LabelledExample(encoding, value));
        }
        return examples;
    }

    private static List<List<string>> ReadTsv(string path) =>
        [.. File.ReadLines(path).Select(line => line.TrimEnd('\r').Split('\t').ToList())];

    /// <summary>RFC 4180: fields may be quoted, quotes doubled inside, newlines allowed in quoted fields.</summary>
    private static List<List<string>> ReadCsv(string path)
    {
        string text = File.ReadAllText(path);
        var records = new List<List<string>>();
        var record = new List<string>();
        var field = new StringBuilder();
        bool quoted = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '"' && i + 1 < text.Length && text[i + 1] == '"') { field.Append('"'); i++; }
                else if (c == '"') quoted = false;
                else field.Append(c);
            }
            else if (c == '"' && field.Length == 0) quoted = true;
            else if (c == ',') { record.Add(field.ToString()); field.Clear(); }
            else if (c == '\n' || c == '\r')
            {
                if (c == '\r' && i + 1 < text.Length && text[i + 1] == '\n') i++;
                record.Add(field.ToString());
                field.Clear();
                records.Add(record);
                record = [];
            }
            else field.Append(c);
        }
        if (quoted) throw new EngineException($"{path}: a quoted field is not closed");
        if (field.Length > 0 || record.Count > 0)
        {
            record.Add(field.ToString());
            records.Add(record);
        }
        return records;
    }
}
