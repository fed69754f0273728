using System.Globalization;
using Engine.IO;
using ScottPlot;

namespace Engine.Benchmarks;

/// <summary>
/// <c>Engine.Benchmarks chart CSV PNG</c>: the engine against its peer on each measured shape, as a PNG bar chart. Each
/// row of CSV (header <c>what,engine_ms,peer,peer_ms,goal</c>) is one comparison from benchmarks/RESULTS.md; the chart
/// shows both times relative to the peer's (the peer at 1), each bar labelled with its milliseconds, and the goal ratio
/// as a mark, so a bar under its mark met the goal.
/// </summary>
internal static class SpeedChart
{
    private sealed record Row(string What, double EngineMs, string Peer, double PeerMs, double Goal);

    public static void Run(string csv, string png)
    {
        var rows = Read(csv);
        var peers = rows.Select(r => r.Peer).Distinct().ToList();
        Color[] peerColors = [Colors.SteelBlue, Colors.DarkOrange, Colors.SlateGray, Colors.Purple];
        var plot = new Plot();
        var bars = new List<Bar>();
        for (int i = 0; i < rows.Count; i++)
        {
            var row = rows[i];
            bars.Add(new Bar { Position = 3 * i, Value = 1, FillColor = peerColors[peers.IndexOf(row.Peer) % peerColors.Length], Label = Milliseconds(row.PeerMs) });
            bars.Add(new Bar { Position = 3 * i + 1, Value = row.EngineMs / row.PeerMs, FillColor = Colors.SeaGreen, Label = Milliseconds(row.EngineMs) });
        }
        plot.Add.Bars(bars).ValueLabelStyle.FontSize = 11;
        for (int i = 0; i < rows.Count; i++)
        {
            var goal = plot.Add.Line(3 * i + 0.5, rows[i].Goal, 3 * i + 1.5, rows[i].Goal);
            goal.LineColor = Colors.Black;
            goal.LineWidth = 2;
            goal.LinePattern = LinePattern.Dashed;
        }
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual([.. rows.Select((r, i) => new Tick(3 * i + 0.5, Wrap(r.What, 18)))]);
        plot.Axes.Bottom.MinimumSize = 60;
        plot.Axes.Margins(bottom: 0, top: 0.15);
        plot.YLabel("time relative to the peer (peer = 1; lower is faster)");
        plot.Title("Engine (CPU) vs ONNX Runtime and PyTorch, same machine and threads");
        plot.Legend.ManualItems.AddRange([
            .. peers.Select((p, i) => new LegendItem { LabelText = p, FillColor = peerColors[i % peerColors.Length] }),
            new LegendItem { LabelText = "Engine", FillColor = Colors.SeaGreen },
            new LegendItem { LabelText = "goal", LineColor = Colors.Black, LinePattern = LinePattern.Dashed, LineWidth = 2 }]);
        plot.Legend.Alignment = Alignment.UpperRight;
        var bytes = plot.GetImageBytes(Math.Max(900, 170 * rows.Count), 560, ImageFormat.Png);
        AtomicFile.Write(png, stream => stream.Write(bytes));
        Console.WriteLine($"{png}: {rows.Count} comparisons");
    }

    /// <summary>Words on lines of at most about <paramref name="width"/> characters (tick labels side by side).</summary>
    private static string Wrap(string text, int width)
    {
        var lines = new List<string> { "" };
        foreach (var word in text.Split(' '))
            if (lines[^1].Length == 0) lines[^1] = word;
            else if (lines[^1].Length + 1 + word.Length <= width) lines[^1] += " " + word;
            else lines.Add(word);
        return string.Join('\n', lines);
    }

    private static string Milliseconds(double ms) => ms >= 100 ? $"{ms:N0} ms" : $"{ms:0.##} ms";

    private static List<Row> Read(string csv)
    {
        var lines = File.ReadAllLines(csv);
        if (lines.Length < 2 || lines[0].Trim() != "what,engine_ms,peer,peer_ms,goal")
            throw new InvalidDataException($"{csv}: the first line must be what,engine_ms,peer,peer_ms,goal, then one comparison per line");
        var rows = new List<Row>();
        for (int i = 1; i < lines.Length; i++)
        {
            if (lines[i].Trim().Length == 0) continue;
            var f = lines[i].Split(',');
            double Number(int field)
            {
                if (!double.TryParse(f[field], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || !(v > 0))
                    throw new InvalidDataException($"{csv}:{i + 1}: field {field + 1} '{f[field]}' is not a positive number");
                return v;
            }
            if (f.Length != 5) throw new InvalidDataException($"{csv}:{i + 1}: {f.Length} fields, not 5");
            rows.Add(new Row(f[0], Number(1), f[2], Number(3), Number(4)));
        }
        return rows;
    }
}
