namespace Engine.Tokenization;

/// <summary>
/// Learns a WordPiece vocabulary from a corpus as Hugging Face's <c>tokenizers</c> WordPieceTrainer does: words from
/// BERT's basic tokenization (the options' lower-casing and accent stripping), each first spelt as its characters
/// (inner ones with the <c>##</c> prefix), then the most frequent adjacent pair merged, over and over, until the
/// vocabulary is full or no pair occurs <c>minFrequency</c> times. The vocabulary lists the special tokens first
/// (as BERT's: [PAD], [UNK], [CLS], [SEP], [MASK]), then the characters, then the merges in the order learnt.
/// </summary>
/// <remarks>Ties between equally frequent pairs go to the pair whose texts sort first (ordinal), so a corpus gives one vocabulary.</remarks>
public static class WordPieceTrainer
{
    private const string Prefix = "##";

    public static List<string> Train(IEnumerable<string> texts, BertTokenizerOptions options, int vocabSize, int minFrequency = 2, Action<string>? progress = null)
    {
        var specials = new[] { options.PadToken, options.UnkToken, options.ClsToken, options.SepToken, options.MaskToken }.Distinct().ToList();
        if (vocabSize <= specials.Count) throw new EngineException($"a vocabulary of {vocabSize} has no room beyond the {specials.Count} special tokens");
        var splitter = new BertTokenizer(specials, options);
        var wordCounts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string text in texts)
            foreach (string word in splitter.BasicTokenize(text))
                if (word.Length <= options.MaxInputCharsPerWord) wordCounts[word] = wordCounts.GetValueOrDefault(word) + 1;
        progress?.Invoke($"{wordCounts.Count:N0} distinct words");

        var symbols = new List<string>();
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        int Id(string symbol)
        {
            if (ids.TryGetValue(symbol, out int id)) return id;
            ids[symbol] = symbols.Count;
            symbols.Add(symbol);
            return symbols.Count - 1;
        }
        var words = wordCounts.OrderBy(w => w.Key, StringComparer.Ordinal)
            .Select(w => (Symbols: w.Key.EnumerateRunes().Select((r, i) => Id(i == 0 ? r.ToString() : Prefix + r)).ToList(), Count: w.Value)).ToArray();
        var vocabulary = new List<string>(specials);
        vocabulary.AddRange(symbols.Where(s => !specials.Contains(s)).Order(StringComparer.Ordinal));

        var pairCounts = new Dictionary<(int, int), long>();
        var pairWords = new Dictionary<(int, int), HashSet<int>>();
        void Count(int word, long sign)
        {
            var s = words[word].Symbols;
            for (int i = 0; i + 1 < s.Count; i++)
            {
                var pair = (s[i], s[i + 1]);
                pairCounts[pair] = pairCounts.GetValueOrDefault(pair) + sign * words[word].Count;
                if (sign > 0) (pairWords.TryGetValue(pair, out var set) ? set : pairWords[pair] = []).Add(word);
            }
        }
        for (int w = 0; w < words.Length; w++) Count(w, +1);
        var queue = new PriorityQueue<(int A, int B), (long Count, string A, string B)>(Comparer<(long Count, string A, string B)>.Create((x, y) =>
            x.Count != y.Count ? y.Count.CompareTo(x.Count) : string.CompareOrdinal(x.A, y.A) is var a and not 0 ? a : string.CompareOrdinal(x.B, y.B)));
        void Push((int A, int B) pair) => queue.Enqueue(pair, (pairCounts[pair], symbols[pair.A], symbols[pair.B]));
        foreach (var pair in pairCounts.Keys) Push(pair);
        var known = new HashSet<string>(vocabulary, StringComparer.Ordinal);
        while (vocabulary.Count < vocabSize && queue.TryDequeue(out var best, out var priority))
        {
            long count = pairCounts.GetValueOrDefault(best);
            if (count != priority.Count) continue; // a stale entry: the pair's count changed and was queued again
            if (count < Math.Max(1, minFrequency)) break;
            string merged = symbols[best.A] + (symbols[best.B].StartsWith(Prefix, StringComparison.Ordinal) ? symbols[best.B][Prefix.Length..] : symbols[best.B]);
            int id = Id(merged);
            if (known.Add(merged)) vocabulary.Add(merged);
            var touched = new HashSet<(int, int)>();
            foreach (int w in pairWords[best].Order().ToArray())
            {
                var s = words[w].Symbols;
                for (int i = 0; i + 1 < s.Count; i++) touched.Add((s[i], s[i + 1]));
                Count(w, -1);
                for (int i = 0; i + 1 < s.Count; i++)
                    if (s[i] == best.A && s[i + 1] == best.B)
                    {
                        s[i] = id;
                        s.RemoveAt(i + 1);
                    }
                Count(w, +1);
                for (int i = 0; i + 1 < s.Count; i++) touched.Add((s[i], s[i + 1]));
            }
            pairCounts.Remove(best);
            pairWords.Remove(best);
            touched.Remove(best);
            // Every pair whose count changed is queued again with its new count; its older entries are now stale.
            foreach (var pair in touched)
                if (pairCounts.GetValueOrDefault(pair) > 0) Push(pair);
        }
        progress?.Invoke($"{vocabulary.Count:N0} tokens");
        return vocabulary;
    }
}
