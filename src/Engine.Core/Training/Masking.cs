using Engine.Tokenization;

namespace Engine.Training;

/// <summary>
/// Dynamic masking for masked-LM training, as Hugging Face's <c>DataCollatorForLanguageModeling</c> (and, with
/// <see cref="WholeWord"/>, <c>DataCollatorForWholeWordMask</c>): of the real, non-special positions, a fraction
/// <see cref="Probability"/> is chosen; of those, 80% become <c>[MASK]</c>, 10% a random token of the vocabulary and
/// 10% stay as they are. Labels are the original ids at chosen positions and −100 elsewhere.
/// </summary>
/// <remarks>
/// Every draw comes from the run's seed, the micro-step and the example's index (<see cref="SeedStreams.Masking"/>),
/// so a batch is masked the same way in any process, and each epoch masks anew. Whole-word masking chooses words
/// (a token and the <c>##</c> pieces that follow it) in a random order until round(p · tokens) positions are
/// covered, skipping a word that would overshoot, as Hugging Face's does; the 80/10/10 split is then per token.
/// </remarks>
public sealed class TokenMasker
{
    private readonly int _maskId, _vocabularySize;
    private readonly bool[] _special, _continuation;

    public double Probability { get; }
    public bool WholeWord { get; }

    public TokenMasker(BertTokenizer tokenizer, double probability, bool wholeWord)
    {
        if (!(probability > 0 && probability < 1)) throw new EngineException($"masking probability {probability} is out of range; expected (0, 1)");
        Probability = probability;
        WholeWord = wholeWord;
        _maskId = tokenizer.MaskId;
        _vocabularySize = tokenizer.Vocabulary.Count;
        _special = new bool[_vocabularySize];
        foreach (int id in new[] { tokenizer.ClsId, tokenizer.SepId, tokenizer.PadId, tokenizer.MaskId, tokenizer.UnkId }) _special[id] = true;
        _continuation = [.. tokenizer.Vocabulary.Select(t => t.StartsWith("##", StringComparison.Ordinal))];
    }

    /// <summary>Draws element index for position <paramref name="t"/> of example <paramref name="example"/> (sequences are at most 1,024 long).</summary>
    private static long Element(int example, int t) => (long)example * 1024 + t;

    /// <summary>
    /// Masks <paramref name="ids"/> (B,T) in place, positions with a zero <paramref name="attentionMask"/> untouched;
    /// returns the labels (B,T). <paramref name="examples"/> gives each row's example index (its draws).
    /// </summary>
    public float[] Mask(int[] ids, int[] attentionMask, int B, int T, IReadOnlyList<int> examples, ulong seed, long step)
    {
        if (T > 1024) throw new EngineException($"sequences of {T} tokens are longer than masking supports (1,024)");
        var labels = new float[B * T];
        Array.Fill(labels, -100f);
        ulong choices = SeedStreams.Masking(step, 0), tokens = SeedStreams.Masking(step, 1), words = SeedStreams.Masking(step, 2);
        for (int b = 0; b < B; b++)
        {
            var chosen = WholeWord ? ChooseWords(ids, attentionMask, b, T, examples[b], seed, words)
                : ChooseTokens(ids, attentionMask, b, T, examples[b], seed, choices);
            foreach (int t in chosen)
            {
                int i = b * T + t;
                long element = Element(examples[b], t);
                labels[i] = ids[i];
                if (Philox.Uniform(seed, choices, 4 * element + 1) < 0.8f) ids[i] = _maskId;
                else if (Philox.Uniform(seed, choices, 4 * element + 2) < 0.5f) ids[i] = Philox.Below(seed, tokens, element, _vocabularySize);
            }
        }
        return labels;
    }

    private bool Eligible(int[] ids, int[] attentionMask, int i) => attentionMask[i] != 0 && !((uint)ids[i] < (uint)_special.Length && _special[ids[i]]);

    private IEnumerable<int> ChooseTokens(int[] ids, int[] attentionMask, int b, int T, int example, ulong seed, ulong stream)
    {
        for (int t = 0; t < T; t++)
            if (Eligible(ids, attentionMask, b * T + t) && Philox.Uniform(seed, stream, 4 * Element(example, t)) < Probability) yield return t;
    }

    private List<int> ChooseWords(int[] ids, int[] attentionMask, int b, int T, int example, ulong seed, ulong stream)
    {
        var candidates = new List<List<int>>();
        int length = 0;
        for (int t = 0; t < T; t++)
        {
            int i = b * T + t;
            if (attentionMask[i] == 0) continue;
            length++;
            if (!Eligible(ids, attentionMask, i)) continue;
            bool continues = candidates.Count > 0 && (uint)ids[i] < (uint)_continuation.Length && _continuation[ids[i]] && candidates[^1][^1] == t - 1;
            if (continues) candidates[^1].Add(t);
            else candidates.Add([t]);
        }
        for (int j = candidates.Count - 1; j > 0; j--)
        {
            int k = Philox.Below(seed, stream, Element(example, j), j + 1);
            (candidates[j], candidates[k]) = (candidates[k], candidates[j]);
        }
        int target = Math.Max(1, (int)Math.Round(length * Probability, MidpointRounding.ToEven));
        var chosen = new List<int>();
        foreach (var word in candidates)
        {
            if (chosen.Count >= target) break;
            if (chosen.Count + word.Count > target) continue;
            chosen.AddRange(word);
        }
        chosen.Sort();
        return chosen;
    }
}
