using System.Text.Json;
using Engine.Models.Bert;
using Engine.Tokenization;

namespace Engine.Cli;

/// <summary>
/// An input given as token ids (a JSON object with <c>input_ids</c>, and optionally <c>attention_mask</c> and
/// <c>token_type_ids</c>), as Hugging Face tokenizers write them. Every value is checked against the model before
/// it reaches the encoder, and a bad one is named with its file, line and field.
/// </summary>
internal static class PretokenizedInput
{
    public static bool HasIds(JsonElement row) => row.ValueKind == JsonValueKind.Object && row.TryGetProperty("input_ids", out _);

    /// <param name="where">The file and line, for messages.</param>
    public static Encoding Parse(JsonElement row, string where, BertConfig config)
    {
        var ids = Ids(row, "input_ids", where, 0, config.VocabSize, $"the vocabulary (vocab_size {config.VocabSize})")
            ?? throw new EngineException($"{where}: missing 'input_ids'");
        if (ids.Length == 0) throw new EngineException($"{where}: 'input_ids' is empty");
        if (ids.Length > config.MaxPositionEmbeddings)
            throw new EngineException($"{where}: 'input_ids' has {ids.Length} tokens; the model holds at most {config.MaxPositionEmbeddings} (max_position_embeddings)");
        var mask = Ids(row, "attention_mask", where, 0, 2, "0 and 1") ?? [.. ids.Select(_ => 1)];
        var types = Ids(row, "token_type_ids", where, 0, config.TypeVocabSize, $"the token types (type_vocab_size {config.TypeVocabSize})") ?? new int[ids.Length];
        if (mask.Length != ids.Length) throw new EngineException($"{where}: 'attention_mask' has {mask.Length} values, 'input_ids' {ids.Length}");
        if (types.Length != ids.Length) throw new EngineException($"{where}: 'token_type_ids' has {types.Length} values, 'input_ids' {ids.Length}");
        return new Encoding(ids, types, mask);
    }

    /// <summary>The field's integers, each in [<paramref name="min"/>, <paramref name="bound"/>); null when the field is absent.</summary>
    private static int[]? Ids(JsonElement row, string name, string where, int min, int bound, string range)
    {
        if (!row.TryGetProperty(name, out var array) || array.ValueKind == JsonValueKind.Null) return null;
        if (array.ValueKind != JsonValueKind.Array) throw new EngineException($"{where}: '{name}' is not an array of integers");
        var values = new int[array.GetArrayLength()];
        int i = 0;
        foreach (var v in array.EnumerateArray())
        {
            if (v.ValueKind != JsonValueKind.Number)
                throw new EngineException($"{where}: '{name}'[{i}] is {v.GetRawText()}, not an integer");
            if (!v.TryGetInt64(out long value))
                throw new EngineException(v.TryGetDouble(out double d) && d == Math.Floor(d)
                    ? $"{where}: '{name}'[{i}] = {v.GetRawText()} is outside {range}"
                    : $"{where}: '{name}'[{i}] = {v.GetRawText()} is not an integer");
            if (value < min || value >= bound) throw new EngineException($"{where}: '{name}'[{i}] = {value} is outside {range}");
            values[i++] = (int)value;
        }
        return values;
    }
}
