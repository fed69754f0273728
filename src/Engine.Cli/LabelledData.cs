using System.Globalization;
using System.Text.Json;
using Engine.Models.Bert;
using Engine.Tokenization;
using Engine.Training;
using StringBuilder = System.Text.StringBuilder;

namespace Engine.Cli;

/// <summary>
/// Labelled examples from CSV (RFC 4180 quoting, a header row), TSV (a header row, tab-separated, no quoting)
/// or JSON lines (<c>text</c>/<c>label</c> fields by the given names, or <c>input_ids</c> used as given).
/// </summary>
/// <remarks>
/// Labels follow Hugging Face's convention: an integer label (a JSON number, or a CSV/TSV field of digits that
/// is not itself a label name) is a class id in [0, num_labels); a string is looked up among the label names
/// (config.json's label2id for a classifier checkpoint). Every problem names the file and row.
/// </remarks>
internal static class LabelledData
{
    public sealed record Columns(string Text, string? Pair, string Label);

    /// <summary>A file's rows as field maps, with the row's line for messages.</summary>
    public sealed record Table(string Path, List<Dictionary<string, JsonElement>> Rows, List<string> Where);

    /// <summary>Reads the rows of a CSV, TSV or JSON-lines file (by its extension; anything else is read as CSV).</summary>
    public static Table ReadRows(string path)
    {
        if (Directory.Exists(path)) throw new EngineException($"{path}: is a directory, not a data file");
        if (!File.Exists(path)) throw new EngineException($"{path}: file not found");
        string extension = System.IO.Path.GetExtension(path).ToLowerInvariant();
        var table = new Table(path, [], []);
        if (extension is ".jsonl" or ".json")
        {
            int number = 0;
            foreach (string line in File.ReadLines(path))
            {
                number++;
                if (string.IsNullOrWhiteSpace(line)) continue;
                string where = $"{path}:{number}";
                {
                    using var document = IO.JsonInput.Parse(line, where);
                    if (document.RootElement.ValueKind != JsonValueKind.Object) throw new EngineException($"{where}: not a JSON object");
                    var row = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
                    foreach (var property in document.RootElement.EnumerateObject())
                        if (!row.TryAdd(property.Name, property.Value.Clone())) throw new EngineException($"{where}: field '{property.Name}' appears twice");
                    table.Rows.Add(row);
                    table.Where.Add(where);
                }
            }
            if (table.Rows.Count == 0) throw new EngineException($"{path}: no rows (the file is empty)");
            return table;
        }
        var records = extension == ".tsv" ? ReadTsv(path) : ReadCsv(path);
        if (records.Count == 0) throw new EngineException($"{path}: empty; expected a header row (e.g. text,label) and one row per example");
        var header = records[0].Records;
        var duplicate = header.GroupBy(h => h, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new EngineException($"{path}: the header names column '{duplicate.Key}' twice");
        for (int r = 1; r < records.Count; r++)
        {
            var (fields, line) = records[r];
            if (fields.Count == 1 && fields[0].Length == 0) continue;
            if (fields.Count != header.Count) throw new EngineException($"{path}:{line}: {fields.Count} fields, but the header has {header.Count}");
            table.Rows.Add(header.Select((name, i) => (name, JsonSerializer.SerializeToElement(fields[i]))).ToDictionary(x => x.name, x => x.Item2, StringComparer.Ordinal));
            table.Where.Add($"{path}:{line}");
        }
        if (table.Rows.Count == 0) throw new EngineException($"{path}: no data rows, only the header ({string.Join(",", header)})");
        return table;
    }

    /// <summary>The label of a row: a string, or the text of a JSON number.</summary>
    private static (string Text, bool IsJsonNumber) Label(Dictionary<string, JsonElement> row, Columns columns, string where)
    {
        if (!row.TryGetValue(columns.Label, out var value))
            throw new EngineException($"{where}: no '{columns.Label}' field (the fields are {string.Join(", ", row.Keys)}; --label-column names another)");
        return value.ValueKind switch
        {
            JsonValueKind.String => (value.GetString()!, false),
            JsonValueKind.Number => (value.GetRawText(), true),
            _ => throw new EngineException($"{where}: label {value.GetRawText()} is neither a string nor a number"),
        };
    }

    /// <summary>
    /// The label names of a new classifier from the training labels: 0..k−1 when every label is such a class id,
    /// else the distinct strings in ordinal order. Fewer than two classes is an error: that is not a classifier.
    /// </summary>
    public static List<string> LabelNames(Table table, Columns columns)
    {
        var labels = table.Rows.Select((row, i) => Label(row, columns, table.Where[i]).Text).ToList();
        var distinct = labels.Distinct(StringComparer.Ordinal).ToList();
        if (distinct.Count < 2)
            throw new EngineException($"{table.Path}: every row has label '{distinct[0]}'; a classifier needs at least two classes (--regression trains on a numeric target)");
        List<string> names;
        if (distinct.All(l => int.TryParse(l, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            && distinct.Select(l => int.Parse(l, CultureInfo.InvariantCulture)).Order().SequenceEqual(Enumerable.Range(0, distinct.Count)))
            names = [.. Enumerable.Range(0, distinct.Count).Select(i => i.ToString(CultureInfo.InvariantCulture))];
        else names = [.. distinct.Order(StringComparer.Ordinal)];
        return names;
    }

    /// <summary>Checks that the table has the columns an example needs, naming the missing one and those there are.</summary>
    public static void CheckColumns(Table table, Columns columns)
    {
        var present = table.Rows[0].Keys.ToList();
        bool pretokenized = table.Rows[0].ContainsKey("input_ids");
        foreach (var (column, option) in new[] { (columns.Label, "--label-column"), (pretokenized ? null : columns.Text, "--text-column"), (pretokenized ? null : columns.Pair, "--text-pair-column") })
            if (column is not null && !present.Contains(column))
                throw new EngineException($"{table.Where[0]}: no column '{column}' (the columns are {string.Join(", ", present)}; {option} names another)");
    }

    /// <summary>
    /// The rows as tokenized examples. With <paramref name="labelNames"/> each label is a class (see the class
    /// remarks); without (regression), each label is a finite number. Pre-tokenized rows are checked against the model.
    /// </summary>
    public static List<LabelledExample> Examples(Table table, Columns columns, BertTokenizer tokenizer, BertConfig config, int maxLength,
        IReadOnlyList<string>? labelNames)
    {
        var ids = labelNames?.Select((name, i) => (name, i)).ToDictionary(x => x.name, x => x.i, StringComparer.Ordinal);
        var examples = new List<LabelledExample>(table.Rows.Count);
        for (int r = 0; r < table.Rows.Count; r++)
        {
            string where = table.Where[r];
            var row = table.Rows[r];
            var (label, isNumber) = Label(row, columns, where);
            float value = ids is null ? Target(label, where) : ClassId(label, isNumber, ids, labelNames!, where);
            Encoding encoding;
            if (row.ContainsKey("input_ids"))
            {
                using var document = JsonSerializer.SerializeToDocument(row);
                encoding = PretokenizedInput.Parse(document.RootElement, where, config);
            }
            else
            {
                string Text(string column) => row.TryGetValue(column, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()!
                    : throw new EngineException($"{where}: '{column}' is not a text field");
                encoding = tokenizer.Encode(Text(columns.Text), columns.Pair is null ? null : Text(columns.Pair), maxLength);
            }
            examples.Add(new LabelledExample(encoding, value));
        }
        return examples;
    }

    private static float Target(string label, string where) =>
        float.TryParse(label, NumberStyles.Float, CultureInfo.InvariantCulture, out float value) && float.IsFinite(value) ? value
            : throw new EngineException($"{where}: label '{label}' is not a finite number (a regression target)");

    /// <summary>A label name's id; else, for an integer that is not a name, the id itself when it is below num_labels.</summary>
    private static float ClassId(string label, bool isNumber, Dictionary<string, int> ids, IReadOnlyList<string> names, string where)
    {
        if (!isNumber && ids.TryGetValue(label, out int id)) return id;
        if (long.TryParse(label, NumberStyles.None, CultureInfo.InvariantCulture, out long number))
            return number < names.Count ? number
                : throw new EngineException($"{where}: label {label} is not a class id below {names.Count} nor one of the classifier's labels ({string.Join(", ", names)})");
        throw new EngineException($"{where}: label '{label}' is not among the classifier's labels ({string.Join(", ", names)}) nor a class id below {names.Count}");
    }

    private static List<(List<string> Records, int Line)> ReadTsv(string path) =>
        [.. File.ReadLines(path).Select((line, i) => (line.TrimEnd('\r').Split('\t').ToList(), i + 1))];

    /// <summary>RFC 4180: fields may be quoted, quotes doubled inside, newlines allowed in quoted fields. Each record with the line it starts on.</summary>
    private static List<(List<string> Records, int Line)> ReadCsv(string path)
    {
        string text = File.ReadAllText(path);
        var records = new List<(List<string>, int)>();
        var record = new List<string>();
        var field = new StringBuilder();
        bool quoted = false;
        int line = 1, recordLine = 1;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (c == '\n') line++;
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
                if (c == '\r' && i + 1 < text.Length && text[i + 1] == '\n') { i++; line++; }
                else if (c == '\r') line++;
                record.Add(field.ToString());
                field.Clear();
                records.Add((record, recordLine));
                record = [];
                recordLine = line;
            }
            else field.Append(c);
        }
        if (quoted) throw new EngineException($"{path}:{recordLine}: a quoted field is not closed");
        if (field.Length > 0 || record.Count > 0)
        {
            record.Add(field.ToString());
            records.Add((record, recordLine));
        }
        return records;
    }
}
