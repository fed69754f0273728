using Engine.Models.Bert;
using Engine.Tokenization;

namespace Engine;

/// <summary>One candidate for a masked position, as Hugging Face's fill-mask pipeline gives it.</summary>
/// <param name="Score">The token's probability (softmax over the whole vocabulary, also when candidates are restricted).</param>
/// <param name="Token">Its id.</param>
/// <param name="TokenStr">Its text (<c>tokenizer.decode([id])</c>).</param>
/// <param name="Sequence">The input with this token in the masked position, decoded; special tokens are dropped when the text has one mask.</param>
public sealed record FillMaskPrediction(double Score, int Token, string TokenStr, string Sequence);

/// <summary>
/// Hugging Face's <c>FillMaskPipeline</c>: for every <c>[MASK]</c> of a text, the top-k tokens of the masked-LM head with
/// their probabilities and the filled sequences. Several masks are filled independently (each list as if the others
/// stayed masked). Targets restrict the candidates: a target that is not one token of the vocabulary stands for the
/// first token it tokenizes to (with a warning), one that starts with no known token is dropped.
/// </summary>
public sealed class FillMask(BertTokenizer tokenizer, BertForMaskedLM model, int maxLength)
{
    /// <summary>The candidate ids of <paramref name="targets"/>, distinct, with a warning per target that is not a whole token; none is an error.</summary>
    public int[] TargetIds(IReadOnlyList<string> targets, Action<string>? warn = null)
    {
        var ids = new List<int>();
        foreach (string target in targets)
        {
            if (tokenizer.TokenId(target) is { } id)
            {
                ids.Add(id);
                continue;
            }
            var pieces = tokenizer.TokenIds(target);
            if (pieces.Length == 0 || pieces[0] == tokenizer.UnkId)
            {
                warn?.Invoke($"target '{target}' is not in the vocabulary and does not start with a token of it: ignored");
                continue;
            }
            warn?.Invoke($"target '{target}' is not in the vocabulary; it stands for its first token '{tokenizer.Vocabulary[pieces[0]]}'");
            ids.Add(pieces[0]);
        }
        if (ids.Count == 0) throw new EngineException($"no usable target among {string.Join(", ", targets.Select(t => $"'{t}'"))}: at least one must be a token or start with one");
        return [.. ids.Distinct()];
    }

    /// <summary>For each mask of <paramref name="text"/>, in order, its top <paramref name="topK"/> candidates (among <paramref name="targetIds"/> when given).</summary>
    public List<FillMaskPrediction[]> Fill(string text, int topK = 5, int[]? targetIds = null)
    {
        if (topK < 1) throw new EngineException($"top-k must be at least 1, got {topK}");
        var ids = tokenizer.TokenIds(text); // tokenized once: the masks written, then the encoding cut to the maximum length
        int written = ids.Count(id => id == tokenizer.MaskId);
        var encoding = tokenizer.Build(ids, null, maxLength);
        var positions = Enumerable.Range(0, encoding.InputIds.Length).Where(i => encoding.InputIds[i] == tokenizer.MaskId).ToArray();
        if (written == 0) throw new EngineException($"no {tokenizer.Options.MaskToken} in \"{text}\": fill-mask fills that token");
        if (positions.Length < written) throw new EngineException($"\"{text}\" is longer than {maxLength} tokens and a {tokenizer.Options.MaskToken} was cut off");
        int V = model.VocabSize;
        var logits = model.MaskedLogits(tokenizer.Pad([encoding]), positions);
        var candidates = targetIds ?? [.. Enumerable.Range(0, V)];
        int k = Math.Min(topK, candidates.Length);
        bool singleMask = positions.Length == 1;
        var result = new List<FillMaskPrediction[]>();
        for (int m = 0; m < positions.Length; m++)
        {
            var probabilities = new float[V];
            Backends.Cpu.Probabilities.FromLogits(logits.AsSpan(m * V, V), probabilities);
            var best = candidates.OrderByDescending(id => probabilities[id]).ThenBy(id => id).Take(k);
            result.Add([.. best.Select(id =>
            {
                var filled = encoding.InputIds.ToArray();
                filled[positions[m]] = id;
                return new FillMaskPrediction(probabilities[id], id, tokenizer.Decode([id]), tokenizer.Decode(filled.Where(t => t != tokenizer.PadId), skipSpecialTokens: singleMask));
            })]);
        }
        return result;
    }
}
