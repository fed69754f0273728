using Engine.Models.Bert;
using Engine.Reference;
using Engine.Tokenization;

namespace Engine.Benchmarks;

/// <summary>
/// The ONNX Runtime half of the whole-process comparison with <c>engine embed</c> (<c>benchmarks/embed_whole_process.sh</c>):
/// `Engine.Benchmarks ort-embed FILE [BATCH] [MAX_LENGTH]` embeds every line of FILE with all-MiniLM-L6-v2's original ONNX
/// graph on all cores — the same tokenizer, the same length-ordered batches, mean pooling and L2 normalisation — and
/// prints one JSON array per line, in order, as <c>engine embed</c> does.
/// </summary>
internal static class OnnxRuntimeEmbed
{
    public static void Run(string file, int batchSize, int maxLength)
    {
        var pretrained = PretrainedModels.MiniLM;
        var tokenizer = BertTokenizer.Load(pretrained.Directory);
        using var onnxRuntime = new OnnxRuntimeOracle(pretrained.OnnxPath, threads: Environment.ProcessorCount);
        var encodings = File.ReadAllLines(file).Select(t => tokenizer.Encode(t, maxLength: maxLength)).ToList();
        var vectors = new float[encodings.Count][];
        foreach (var indices in BertBatch.ByLength(encodings, batchSize))
        {
            var batch = tokenizer.Pad([.. indices.Select(i => encodings[i])]);
            int T = batch.SequenceLength;
            var hidden = onnxRuntime.LastHiddenState(batch.BatchSize, T, batch.InputIds, batch.AttentionMask, batch.TokenTypeIds);
            int C = hidden.Length / (batch.BatchSize * T);
            for (int b = 0; b < batch.BatchSize; b++)
            {
                var sum = new double[C];
                int count = 0;
                for (int t = 0; t < T; t++)
                {
                    if (batch.AttentionMask[b * T + t] == 0) continue;
                    for (int c = 0; c < C; c++) sum[c] += hidden[(b * T + t) * C + c];
                    count++;
                }
                double norm = Math.Sqrt(sum.Sum(v => (v / count) * (v / count)));
                vectors[indices[b]] = [.. sum.Select(v => (float)(v / count / Math.Max(norm, 1e-12)))];
            }
        }
        var output = new System.Text.StringBuilder();
        foreach (var vector in vectors)
            output.Append('[').AppendJoin(',', vector.Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture))).Append("]\n");
        Console.Out.Write(output);
    }
}
