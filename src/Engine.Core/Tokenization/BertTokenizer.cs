using System.Globalization;
using System.Text;
using System.Text.Json;
using Engine.Models.Bert;

namespace Engine.Tokenization;

/// <summary>
/// One tokenized input: ids with special tokens, token types, and the mask (all ones before padding);
/// <paramref name="Truncated"/> when tokens were cut to fit the maximum length.
/// </summary>
public sealed record Encoding(int[] InputIds, int[] TokenTypeIds, int[] AttentionMask, bool Truncated = false);

/// <summary>Options read from <c>tokenizer_config.json</c>, with Hugging Face's defaults.</summary>
public sealed record BertTokenizerOptions
{
    public bool DoLowerCase { get; init; } = true;
    /// <summary>Null: follow <see cref="DoLowerCase"/>, as Hugging Face does.</summary>
    public bool? StripAccents { get; init; }
    public bool TokenizeChineseChars { get; init; } = true;
    public string UnkToken { get; init; } = "[UNK]";
    public string ClsToken { get; init; } = "[CLS]";
    public string SepToken { get; init; } = "[SEP]";
    public string PadToken { get; init; } = "[PAD]";
    public string MaskToken { get; init; } = "[MASK]";
    public int MaxInputCharsPerWord { get; init; } = 100;
}

/// <summary>
/// BERT's WordPiece tokenizer, giving the same ids as Hugging Face's <c>BertTokenizer</c>: basic
/// tokenization (text cleaning, CJK splitting, NFC, lower-casing and accent stripping, punctuation
/// splitting), then greedy longest-match WordPiece with <c>##</c> continuations.
/// </summary>
/// <remarks>
/// Follows <c>transformers/models/bert/tokenization_bert.py</c> (BasicTokenizer, WordpieceTokenizer) and,
/// for pair truncation, the Rust tokenizers' <c>longest_first</c>. Special tokens written in the text
/// (e.g. <c>[MASK]</c>) are kept whole, as Hugging Face's added-token split does.
/// </remarks>
public sealed class BertTokenizer
{
    public const string VocabFileName = "vocab.txt";
    public const string ConfigFileName = "tokenizer_config.json";
    /// <summary>The tokenizer's files in a Hugging Face directory, which a saved model carries along.</summary>
    public static readonly string[] FileNames = [VocabFileName, ConfigFileName, "special_tokens_map.json", "tokenizer.json"];

    private readonly Dictionary<string, int> _vocab;
    private readonly string[] _specialTokens;

    public BertTokenizerOptions Options { get; }
    public IReadOnlyList<string> Vocabulary { get; }
    public int UnkId { get; }
    public int ClsId { get; }
    public int SepId { get; }
    public int PadId { get; }
    public int MaskId { get; }
    /// <summary>Where the vocabulary came from (its file), for messages.</summary>
    public string Source { get; }

    /// <param name="source">The vocabulary's file, for messages.</param>
    public BertTokenizer(IReadOnlyList<string> vocabulary, BertTokenizerOptions options, string source = VocabFileName)
    {
        Options = options;
        Vocabulary = vocabulary;
        Source = source;
        _vocab = new Dictionary<string, int>(vocabulary.Count, StringComparer.Ordinal);
        for (int i = 0; i < vocabulary.Count; i++) _vocab.TryAdd(vocabulary[i], i);
        int Id(string token) => _vocab.TryGetValue(token, out int id) ? id
            : throw new EngineException($"{source}: special token '{token}' is not in the vocabulary (tokenizer_config.json may name another)");
        UnkId = Id(options.UnkToken);
        ClsId = Id(options.ClsToken);
        SepId = Id(options.SepToken);
        PadId = Id(options.PadToken);
        MaskId = Id(options.MaskToken);
        // Longest first, so that a special token that contains another is matched whole.
        _specialTokens = [.. new[] { options.UnkToken, options.ClsToken, options.SepToken, options.PadToken, options.MaskToken }
            .Distinct().OrderByDescending(t => t.Length)];
    }

    /// <summary>Loads <c>vocab.txt</c> and, when present, <c>tokenizer_config.json</c> from a model directory.</summary>
    public static BertTokenizer Load(string directory)
    {
        string vocabPath = Path.Combine(directory, VocabFileName);
        if (!File.Exists(vocabPath)) throw new EngineException($"{vocabPath}: vocabulary file not found");
        // One token per line; only the line break is removed (a token may end in other whitespace).
        var vocab = File.ReadAllText(vocabPath).Split('\n');
        var tokens = vocab.Length > 0 && vocab[^1].Length == 0 ? vocab[..^1] : vocab;
        string configPath = Path.Combine(directory, ConfigFileName);
        var options = File.Exists(configPath) ? ReadOptions(configPath) : new BertTokenizerOptions();
        return new BertTokenizer(tokens.Select(t => t.TrimEnd('\r')).ToArray(), options, vocabPath);
    }

    /// <summary>
    /// Loads the tokenizer of a model directory whose config.json is <paramref name="config"/>, refusing a vocabulary
    /// longer than its <c>vocab_size</c>: such a token would otherwise fail only when it is met.
    /// </summary>
    public static BertTokenizer Load(string directory, Models.Bert.BertConfig config)
    {
        var tokenizer = Load(directory);
        if (tokenizer.Vocabulary.Count > config.VocabSize)
            throw new EngineException($"{tokenizer.Source}: {tokenizer.Vocabulary.Count} tokens, but {Path.Combine(directory, Models.Bert.BertConfig.FileName)} " +
                $"has vocab_size {config.VocabSize}: ids from {config.VocabSize} up have no embedding");
        return tokenizer;
    }

    private static BertTokenizerOptions ReadOptions(string path)
    {
        using var document = IO.JsonInput.Parse(File.ReadAllBytes(path), path);
        var root = document.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new EngineException($"{path}: not a JSON object");
        // A field that is absent or null takes the default; one of the wrong type is an error naming it.
        bool? Bool(string name) => !root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null ? null
            : v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean()
            : throw new EngineException($"{path}: '{name}' must be true or false, got {v.GetRawText()}");
        // A special token is a string, or an AddedToken object whose "content" is one.
        string? Token(string name)
        {
            if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
            var content = v.ValueKind == JsonValueKind.Object && v.TryGetProperty("content", out var c) ? c : v;
            return content.ValueKind == JsonValueKind.String && content.GetString() is { Length: > 0 } token ? token
                : throw new EngineException($"{path}: '{name}' must be a non-empty string or an object with a string 'content', got {v.GetRawText()}");
        }
        var defaults = new BertTokenizerOptions();
        return new BertTokenizerOptions
        {
            DoLowerCase = Bool("do_lower_case") ?? defaults.DoLowerCase,
            StripAccents = Bool("strip_accents"),
            TokenizeChineseChars = Bool("tokenize_chinese_chars") ?? defaults.TokenizeChineseChars,
            UnkToken = Token("unk_token") ?? defaults.UnkToken,
            ClsToken = Token("cls_token") ?? defaults.ClsToken,
            SepToken = Token("sep_token") ?? defaults.SepToken,
            PadToken = Token("pad_token") ?? defaults.PadToken,
            MaskToken = Token("mask_token") ?? defaults.MaskToken,
        };
    }

    /// <summary>Writes <c>vocab.txt</c> and <c>tokenizer_config.json</c> into <paramref name="directory"/>.</summary>
    public void Save(string directory)
    {
        IO.AtomicFile.WriteText(Path.Combine(directory, VocabFileName), string.Join('\n', Vocabulary) + "\n");
        var config = new Dictionary<string, object?>
        {
            ["tokenizer_class"] = "BertTokenizer",
            ["do_lower_case"] = Options.DoLowerCase,
            ["strip_accents"] = Options.StripAccents,
            ["tokenize_chinese_chars"] = Options.TokenizeChineseChars,
            ["unk_token"] = Options.UnkToken,
            ["cls_token"] = Options.ClsToken,
            ["sep_token"] = Options.SepToken,
            ["pad_token"] = Options.PadToken,
            ["mask_token"] = Options.MaskToken,
        };
        IO.AtomicFile.WriteText(Path.Combine(directory, ConfigFileName), JsonSerializer.Serialize(config, new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>The WordPiece tokens of <paramref name="text"/>, without special tokens added.</summary>
    public List<string> Tokenize(string text)
    {
        var output = new List<string>();
        foreach (var (piece, isSpecial) in SplitOnSpecialTokens(text))
        {
            if (isSpecial)
            {
                output.Add(piece);
                continue;
            }
            foreach (string word in BasicTokenize(piece)) WordPiece(word, output);
        }
        return output;
    }

    public int[] TokenIds(string text) => [.. Tokenize(text).Select(t => _vocab.TryGetValue(t, out int id) ? id : UnkId)];

    /// <summary>The id of a whole vocabulary token, or null.</summary>
    public int? TokenId(string token) => _vocab.TryGetValue(token, out int id) ? id : null;

    /// <summary>Whether <paramref name="id"/> is one of the special tokens (unknown, [CLS], [SEP], padding, mask).</summary>
    public bool IsSpecial(int id) => id == UnkId || id == ClsId || id == SepId || id == PadId || id == MaskId;

    /// <summary>
    /// Text of <paramref name="ids"/> as Hugging Face's <c>BertTokenizer.decode</c> writes it: tokens joined by spaces,
    /// <c>##</c> pieces glued to the token before, then <c>clean_up_tokenization</c> (no space before . ? ! , and in
    /// n't 'm 's 've 're); special tokens dropped with <paramref name="skipSpecialTokens"/>. An id outside the
    /// vocabulary reads as the unknown token.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = false)
    {
        var tokens = ids.Where(id => !skipSpecialTokens || !IsSpecial(id)).Select(id => (uint)id < (uint)Vocabulary.Count ? Vocabulary[id] : Options.UnkToken);
        string text = string.Join(' ', tokens).Replace(" ##", "", StringComparison.Ordinal).Trim();
        foreach (var (from, to) in CleanUp) text = text.Replace(from, to, StringComparison.Ordinal);
        return text;
    }

    private static readonly (string, string)[] CleanUp =
        [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")];

    /// <summary>
    /// <c>[CLS] text [SEP]</c> or <c>[CLS] text [SEP] pair [SEP]</c>, truncated to <paramref name="maxLength"/>
    /// tokens in all (longest first for pairs).
    /// </summary>
    public Encoding Encode(string text, string? pair = null, int maxLength = int.MaxValue)
    {
        var first = TokenIds(text);
        var second = pair is null ? null : TokenIds(pair);
        return Build(first, second, maxLength);
    }

    /// <summary>Adds special tokens to already tokenized ids, truncating as <see cref="Encode"/> does.</summary>
    public Encoding Build(int[] first, int[]? second, int maxLength)
    {
        int specials = second is null ? 2 : 3;
        if (maxLength < specials) throw new EngineException($"max length {maxLength} cannot hold the {specials} special tokens");
        var (n1, n2) = TruncatedLengths(first.Length, second?.Length ?? 0, maxLength - specials, second is not null);
        var ids = new List<int>(n1 + n2 + specials) { ClsId };
        ids.AddRange(first.AsSpan(0, n1));
        ids.Add(SepId);
        int firstSegment = ids.Count;
        if (second is not null)
        {
            ids.AddRange(second.AsSpan(0, n2));
            ids.Add(SepId);
        }
        var types = new int[ids.Count];
        Array.Fill(types, 1, firstSegment, ids.Count - firstSegment);
        var mask = new int[ids.Count];
        Array.Fill(mask, 1);
        return new Encoding([.. ids], types, mask, n1 < first.Length || n2 < (second?.Length ?? 0));
    }

    /// <summary>Pads encodings to the longest with <c>[PAD]</c> and a zero mask.</summary>
    public BertBatch Pad(IReadOnlyList<Encoding> encodings) => BertBatch.Pad(encodings, PadId);

    private static (int, int) TruncatedLengths(int n1, int n2, int budget, bool isPair)
    {
        if (!isPair) return (Math.Min(n1, budget), 0);
        if (n1 + n2 <= budget) return (n1, n2);
        // tokenizers' TruncationStrategy::LongestFirst: the shorter keeps what it can, the longer takes the rest.
        bool swap = n1 > n2;
        int shorter = swap ? n2 : n1, longer;
        longer = shorter > budget ? shorter : Math.Max(shorter, budget - shorter);
        if (shorter + longer > budget)
        {
            shorter = budget / 2;
            longer = shorter + budget % 2;
        }
        int a = swap ? longer : shorter, b = swap ? shorter : longer;
        return (Math.Min(n1, a), Math.Min(n2, b));
    }

    private IEnumerable<(string Piece, bool IsSpecial)> SplitOnSpecialTokens(string text)
    {
        int start = 0;
        for (int i = 0; i < text.Length;)
        {
            string? match = null;
            if (text[i] == '[')
                foreach (string special in _specialTokens)
                    if (string.CompareOrdinal(text, i, special, 0, special.Length) == 0) { match = special; break; }
            if (match is null)
            {
                i++;
                continue;
            }
            if (i > start) yield return (text[start..i], false);
            yield return (match, true);
            i += match.Length;
            start = i;
        }
        if (start < text.Length) yield return (text[start..], false);
    }

    /// <summary>BasicTokenizer.tokenize: the words and punctuation marks of <paramref name="text"/> (cleaned, lower-cased and split as the options say), before WordPiece.</summary>
    public List<string> BasicTokenize(string text)
    {
        var cleaned = new StringBuilder(text.Length + 8);
        foreach (var rune in text.EnumerateRunes())
        {
            int cp = rune.Value;
            if (cp == 0 || cp == 0xFFFD || IsControl(rune)) continue;
            if (IsWhitespace(rune)) cleaned.Append(' ');
            else if (Options.TokenizeChineseChars && IsChineseChar(cp)) cleaned.Append(' ').Append(rune.ToString()).Append(' ');
            else cleaned.Append(rune.ToString());
        }
        string normalized = cleaned.ToString().Normalize(NormalizationForm.FormC);
        bool strip = Options.StripAccents ?? Options.DoLowerCase;
        var words = new List<string>();
        foreach (string token in normalized.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))
        {
            string word = token;
            if (Options.DoLowerCase) word = PythonLowerCase.Lower(word); // str.lower(), as Hugging Face's tokenizer
            if (strip) word = StripAccents(word);
            SplitOnPunctuation(word, words);
        }
        return words;
    }

    private static string StripAccents(string text)
    {
        var result = new StringBuilder(text.Length);
        foreach (var rune in text.Normalize(NormalizationForm.FormD).EnumerateRunes())
            if (Rune.GetUnicodeCategory(rune) != UnicodeCategory.NonSpacingMark) result.Append(rune.ToString());
        return result.ToString();
    }

    private static void SplitOnPunctuation(string word, List<string> output)
    {
        var current = new StringBuilder();
        foreach (var rune in word.EnumerateRunes())
        {
            if (IsPunctuation(rune))
            {
                if (current.Length > 0) output.Add(current.ToString());
                current.Clear();
                output.Add(rune.ToString());
            }
            else current.Append(rune.ToString());
        }
        if (current.Length > 0) output.Add(current.ToString());
    }

    /// <summary>WordpieceTokenizer.tokenize: greedy longest match, or one <c>[UNK]</c> for the whole word.</summary>
    private void WordPiece(string word, List<string> output)
    {
        var runes = word.EnumerateRunes().Select(r => r.ToString()).ToArray();
        if (runes.Length > Options.MaxInputCharsPerWord)
        {
            output.Add(Options.UnkToken);
            return;
        }
        int mark = output.Count;
        var piece = new StringBuilder();
        for (int start = 0; start < runes.Length;)
        {
            string? found = null;
            int end = runes.Length;
            for (; end > start; end--)
            {
                piece.Clear();
                if (start > 0) piece.Append("##");
                for (int i = start; i < end; i++) piece.Append(runes[i]);
                string candidate = piece.ToString();
                if (_vocab.ContainsKey(candidate))
                {
                    found = candidate;
                    break;
                }
            }
            if (found is null)
            {
                output.RemoveRange(mark, output.Count - mark);
                output.Add(Options.UnkToken);
                return;
            }
            output.Add(found);
            start = end;
        }
    }

    private static bool IsWhitespace(Rune rune) =>
        rune.Value is ' ' or '\t' or '\n' or '\r' || Rune.GetUnicodeCategory(rune) == UnicodeCategory.SpaceSeparator;

    private static bool IsControl(Rune rune)
    {
        if (rune.Value is '\t' or '\n' or '\r') return false;
        return Rune.GetUnicodeCategory(rune) is UnicodeCategory.Control or UnicodeCategory.Format or UnicodeCategory.OtherNotAssigned
            or UnicodeCategory.PrivateUse or UnicodeCategory.Surrogate;
    }

    private static bool IsPunctuation(Rune rune)
    {
        int cp = rune.Value;
        if (cp is >= 33 and <= 47 or >= 58 and <= 64 or >= 91 and <= 96 or >= 123 and <= 126) return true;
        return Rune.GetUnicodeCategory(rune) is UnicodeCategory.ConnectorPunctuation or UnicodeCategory.DashPunctuation
            or UnicodeCategory.OpenPunctuation or UnicodeCategory.ClosePunctuation or UnicodeCategory.InitialQuotePunctuation
            or UnicodeCategory.FinalQuotePunctuation or UnicodeCategory.OtherPunctuation;
    }

    private static bool IsChineseChar(int cp) =>
        cp is >= 0x4E00 and <= 0x9FFF or >= 0x3400 and <= 0x4DBF or >= 0x20000 and <= 0x2A6DF or >= 0x2A700 and <= 0x2B73F
            or >= 0x2B740 and <= 0x2B81F or >= 0x2B820 and <= 0x2CEAF or >= 0xF900 and <= 0xFAFF or >= 0x2F800 and <= 0x2FA1F;
}
