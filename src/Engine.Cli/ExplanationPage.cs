using System.Globalization;
using System.Net;
using System.Text;
using Engine.Interpretability;
using Engine.IO;

namespace Engine.Cli;

/// <summary>
/// <c>explain --html</c>: one self-contained page (inline CSS, images as data URIs, no script, nothing fetched; void
/// elements closed, so that it also parses as XML): per text,
/// the prediction, each method's scores as a heat map over the tokens (red raises the explained output, blue lowers it;
/// the colour's strength is the score over the text's largest magnitude for that method), and the attention maps of every
/// layer and head as PNG heat maps drawn by ScottPlot (row = query, column = key, in token order).
/// </summary>
internal static class ExplanationPage
{
    /// <summary>Pixels per side of one attention map.</summary>
    private const int MapSize = 100;

    public static void Write(string path, IReadOnlyList<Commands.ExplainedText> explained, int heads)
    {
        var html = new StringBuilder();
        html.Append("""
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8" />
            <title>engine explain</title>
            <style>
            body { font-family: sans-serif; margin: 2em; color: #222; }
            .tokens span { display: inline-block; padding: 2px 4px; margin: 1px; border-radius: 3px; font-family: monospace; }
            table.maps td { text-align: center; font-size: 11px; padding: 2px; }
            img { image-rendering: pixelated; border: 1px solid #ccc; }
            .note { color: #666; font-size: 13px; }
            </style>
            </head>
            <body>
            <h1>Token attributions</h1>
            <p class="note">Scores are taken at the output of the embeddings module and summed over the hidden dimension.
            Red raises the explained output, blue lowers it; each method's colours are scaled to its largest magnitude in the text.
            Attention maps: row = query, column = key, darker = more attention.</p>

            """);
        for (int n = 0; n < explained.Count; n++)
        {
            var (text, tokens, explanation) = (explained[n].Text, explained[n].Tokens, explained[n].Explanation);
            html.Append(CultureInfo.InvariantCulture, $"<h2>Text {n + 1}</h2>\n<p>{Encode(text)}</p>\n");
            html.Append(CultureInfo.InvariantCulture, $"<p>Explained: {Encode(explained[n].What)} = {explanation.Output:F4}");
            if (explanation.BaselineOutput is { } baseline) html.Append(CultureInfo.InvariantCulture, $" (baseline {baseline:F4})");
            html.Append("</p>\n");
            foreach (var scores in explanation.Scores)
            {
                html.Append(CultureInfo.InvariantCulture, $"<h3>{Commands.MethodName(scores.Method)}</h3>\n<div class=\"tokens\">");
                double largest = Math.Max(scores.Scores.Max(Math.Abs), double.Epsilon);
                for (int t = 0; t < tokens.Length; t++)
                {
                    double share = scores.Scores[t] / largest;
                    string colour = share >= 0 ? $"rgba(220, 40, 40, {share:F3})" : $"rgba(40, 90, 220, {-share:F3})";
                    html.Append(CultureInfo.InvariantCulture, $"<span style=\"background: {colour}\" title=\"{scores.Scores[t]:G6}\">{Encode(tokens[t])}</span>");
                }
                html.Append("</div>\n");
                if (scores.Delta is { } delta) html.Append(CultureInfo.InvariantCulture, $"<p class=\"note\">delta (sum of scores − (F(x) − F(baseline))): {delta:E2}</p>\n");
            }
            html.Append(CultureInfo.InvariantCulture, $"<h3>Attention maps</h3>\n<p class=\"note\">tokens: {Encode(string.Join(" ", tokens))}</p>\n<table class=\"maps\">\n");
            for (int layer = 0; layer < explanation.Attentions.Count; layer++)
            {
                html.Append("<tr>");
                for (int h = 0; h < heads; h++)
                    html.Append(CultureInfo.InvariantCulture,
                        $"<td><img alt=\"layer {layer} head {h}\" width=\"{MapSize}\" height=\"{MapSize}\" src=\"data:image/png;base64,{Convert.ToBase64String(MapPng(explanation.Attentions[layer], h, tokens.Length))}\" /><br />layer {layer} head {h}</td>");
                html.Append("</tr>\n");
            }
            html.Append("</table>\n");
        }
        html.Append("</body>\n</html>\n");
        AtomicFile.WriteText(path, html.ToString());
    }

    /// <summary>Head <paramref name="head"/>'s (T, T) map of a (1, NH, T, T) layer as a PNG, query rows top to bottom.</summary>
    private static byte[] MapPng(float[] layer, int head, int T)
    {
        var values = new double[T, T];
        for (int i = 0; i < T; i++)
            for (int j = 0; j < T; j++) values[i, j] = 1 - layer[(head * T + i) * T + j]; // the grey scale runs black (0) to white (1)
        var plot = new ScottPlot.Plot();
        var heatmap = plot.Add.Heatmap(values);
        heatmap.Colormap = new ScottPlot.Colormaps.Grayscale();
        heatmap.ManualRange = new ScottPlot.Range(0, 1);
        plot.Axes.Frameless();
        plot.HideGrid();
        plot.Axes.Margins(0, 0);
        return plot.GetImageBytes(MapSize, MapSize, ScottPlot.ImageFormat.Png);
    }

    private static string Encode(string text) => WebUtility.HtmlEncode(text);
}
