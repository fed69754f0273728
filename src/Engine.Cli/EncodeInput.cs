using System.Text.Json;
using Engine.IO;
using Engine.Models.Bert;
using Engine.Tokenization;

namespace Engine.Cli;

/// <summary>The <c>encode</c> verb's input (texts or pre-tokenized JSON lines) and its safetensors output.</summary>
internal static class EncodeInput
{
    /// <summary>
    /// One encoding per line: a JSON object with <c>input_ids</c> is used as given (checked against the model by
    /// <see cref="PretokenizedInput"/>), any other line is text, tokenized and cut to <paramref name="maxLength"/>.
    /// </summary>
    public static List<Encoding> Read(string path, BertTokenizer tokenizer, BertConfig config, int maxLength)
    {
        var encodings = new List<Encoding>();
        int lineNumber = 0;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            if (!line.TrimStart().StartsWith('{'))
            {
                encodings.Add(tokenizer.Encode(line, maxLength: maxLength));
                continue;
            }
            string where = $"{path}:{lineNumber}";
            using var document = JsonInput.Parse(line, $"{where} (a line that starts with '{{' is read as JSON)");
            encodings.Add(PretokenizedInput.Parse(document.RootElement, where, config));
        }
        if (encodings.Count == 0) throw new EngineException($"{path}: no inputs (the file is empty)");
        return encodings;
    }

    /// <summary>
    /// input_ids, attention_mask (I64 [N,T]), last_hidden_state (F32 [N,T,C]), pooler_output (F32 [N,C]) when present,
    /// a head's logits: (F32 [N,L]) for a classifier, (F32 [N,T,V]) for a masked-LM head, and with
    /// <paramref name="outputAttentions"/> attentions.&lt;layer&gt; (F32 [N,NH,T,T]); T is the longest input, and
    /// per-token values past an input's length (its padding) are zeros.
    /// </summary>
    /// <param name="head">A head run over each batch instead of the encoder alone, with its logits' width and whether they are per token.</param>
    /// <param name="done">Told how many inputs are done after each batch.</param>
    public static List<SafeTensorData> Run(BertModel model, BertTokenizer tokenizer, List<Encoding> encodings, int batchSize, LogitsHead? head = null,
        bool outputAttentions = false, Action<int>? done = null)
    {
        int N = encodings.Count, T = encodings.Max(e => e.InputIds.Length), C = model.Config.HiddenSize, NH = model.Config.NumAttentionHeads;
        long mapLength = (long)N * NH * T * T;
        if (outputAttentions && mapLength > Array.MaxLength)
            throw new EngineException($"the attention maps of {N} inputs of up to {T} tokens would hold {mapLength:N0} values per layer, more than one tensor holds; encode fewer inputs at a time");
        var maps = outputAttentions ? Enumerable.Range(0, model.Config.NumHiddenLayers).Select(_ => new float[mapLength]).ToArray() : null;
        var ids = new long[N * T];
        var mask = new long[N * T];
        var hidden = new float[N * T * C];
        var pooled = model.Pooler is null ? null : new float[N * C];
        int L = head?.Width ?? 0, rowsPerExample = head is { PerToken: true } ? T : 1;
        long logitsLength = (long)N * rowsPerExample * L;
        if (logitsLength > Array.MaxLength) throw new EngineException($"the logits of {N} inputs would hold {logitsLength:N0} values, more than one tensor holds; encode fewer inputs at a time");
        var logits = head is null ? null : new float[logitsLength];
        Array.Fill(ids, tokenizer.PadId);
        int finished = 0;
        foreach (var indices in BertBatch.ByLength(encodings, batchSize))
        {
            var batch = tokenizer.Pad([.. indices.Select(i => encodings[i])]);
            // One pass per batch: a head's logits come from the same encoder run as the hidden states.
            var (output, batchLogits) = head is null ? (model.Forward(batch, outputAttentions), null) : head.Run(batch, outputAttentions);
            int t = batch.SequenceLength;
            for (int b = 0; b < batch.BatchSize; b++)
            {
                int n = indices[b];
                for (int i = 0; i < t; i++)
                {
                    ids[n * T + i] = batch.InputIds[b * t + i];
                    mask[n * T + i] = batch.AttentionMask[b * t + i];
                }
                output.LastHiddenState.AsSpan(b * t * C, t * C).CopyTo(hidden.AsSpan(n * T * C));
                output.PoolerOutput?.AsSpan(b * C, C).CopyTo(pooled!.AsSpan(n * C));
                if (batchLogits is not null)
                {
                    // Per-token logits of a shorter batch fill the first t of the example's T rows (the rest stays zero, as padding does).
                    int rows = head!.PerToken ? t : 1;
                    batchLogits.AsSpan(b * rows * L, rows * L).CopyTo(logits.AsSpan(n * rowsPerExample * L));
                }
                // Each query row of a shorter batch's (t × t) maps fills the start of the example's (T × T) row.
                for (int layer = 0; maps is not null && layer < maps.Length; layer++)
                    for (int h = 0; h < NH; h++)
                        for (int i = 0; i < t; i++)
                            output.Attentions![layer].AsSpan(((b * NH + h) * t + i) * t, t).CopyTo(maps[layer].AsSpan((int)((((long)n * NH + h) * T + i) * T)));
            }
            done?.Invoke(finished += batch.BatchSize);
        }
        var tensors = new List<SafeTensorData>
        {
            SafeTensorData.FromInt64("input_ids", ids, N, T),
            SafeTensorData.FromInt64("attention_mask", mask, N, T),
            SafeTensorData.FromFloats("last_hidden_state", hidden, N, T, C),
        };
        if (pooled is not null) tensors.Add(SafeTensorData.FromFloats("pooler_output", pooled, N, C));
        if (logits is not null) tensors.Add(head!.PerToken ? SafeTensorData.FromFloats("logits", logits, N, T, L) : SafeTensorData.FromFloats("logits", logits, N, L));
        for (int layer = 0; maps is not null && layer < maps.Length; layer++) tensors.Add(SafeTensorData.FromFloats($"attentions.{layer}", maps[layer], N, NH, T, T));
        return tensors;
    }
}

/// <summary>A task head as <c>encode</c> runs it: one pass per batch giving the encoder's outputs and the logits, L per example or per token.</summary>
internal sealed record LogitsHead(Func<BertBatch, bool, (BertModelOutput Encoder, float[] Logits)> Run, int Width, bool PerToken);
