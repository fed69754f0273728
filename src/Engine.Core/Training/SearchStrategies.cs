namespace Engine.Training;

/// <summary>One hyper-parameter of a search: a list of values, or a range (on a log scale, or of integers).</summary>
public abstract record SearchDimension(string Name);

/// <summary>One of <paramref name="Values"/> (a grid's axis; a categorical choice for random search and TPE).</summary>
public sealed record ChoiceDimension(string Name, IReadOnlyList<double> Values) : SearchDimension(Name);

/// <summary>A value in [Low, High]: uniform, or log-uniform (learning rates), rounded to an integer when <paramref name="Integer"/>.</summary>
public sealed record RangeDimension(string Name, double Low, double High, bool Log = false, bool Integer = false) : SearchDimension(Name);

/// <summary>A point of a search: a value per dimension, by name.</summary>
public sealed class SearchPoint(IReadOnlyDictionary<string, double> values)
{
    public IReadOnlyDictionary<string, double> Values => values;
    public double this[string name] => values[name];

    /// <summary>"name=value …" in the dimensions' order, as results tables and logs write it.</summary>
    public override string ToString() => string.Join(" ", values.Select(v => $"{v.Key}={v.Value.ToString("G6", System.Globalization.CultureInfo.InvariantCulture)}"));
}

/// <summary>A finished trial as a strategy sees it: where it was, and its loss (lower is better; +∞ for a trial that diverged).</summary>
public sealed record TrialOutcome(SearchPoint Point, double Loss);

/// <summary>What proposes the next trial from the ones already run.</summary>
public interface ISearchStrategy
{
    /// <summary>The next point to try after <paramref name="history"/>, or null when the strategy has no more (a grid's end).</summary>
    SearchPoint? Next(IReadOnlyList<TrialOutcome> history);
}

/// <summary>Every combination of the choice dimensions once, in order (the last dimension varies fastest).</summary>
public sealed class GridSearch : ISearchStrategy
{
    private readonly ChoiceDimension[] _dimensions;

    public GridSearch(IReadOnlyList<SearchDimension> dimensions)
    {
        _dimensions = [.. dimensions.Select(d => d as ChoiceDimension ?? throw new ArgumentException($"a grid takes lists of values; '{d.Name}' is a range (use random search or TPE)"))];
        if (_dimensions.Any(d => d.Values.Count == 0)) throw new ArgumentException("every grid axis needs at least one value");
    }

    public int Size => _dimensions.Aggregate(1, (n, d) => checked(n * d.Values.Count));

    /// <summary>The grid's next point: the history's length says which, so a resumed sweep continues where it stopped.</summary>
    public SearchPoint? Next(IReadOnlyList<TrialOutcome> history)
    {
        int index = history.Count;
        if (index >= Size) return null;
        var values = new Dictionary<string, double>();
        for (int d = _dimensions.Length - 1; d >= 0; d--)
        {
            int count = _dimensions[d].Values.Count;
            values[_dimensions[d].Name] = _dimensions[d].Values[index % count];
            index /= count;
        }
        return new SearchPoint(_dimensions.ToDictionary(d => d.Name, d => values[d.Name]));
    }
}

/// <summary>Sequential draws from one Philox stream (<see cref="SeedStreams.SearchTrial"/>): the same numbers in any process.</summary>
internal sealed class SearchDraws(ulong seed, int trial)
{
    private readonly ulong _offset = SeedStreams.SearchTrial(trial);
    private long _index;

    /// <summary>Uniform in [0, 1) (24 bits: finer than any hyper-parameter needs).</summary>
    public double Uniform() => Philox.Uniform(seed, _offset, _index++);

    /// <summary>Uniform over 0 … <paramref name="bound"/> − 1.</summary>
    public int Below(int bound) => Philox.Below(seed, _offset, _index++, bound);

    public double Normal() => Philox.Normal(seed, _offset, _index++);
}

/// <summary>
/// Independent draws: a choice uniformly, a range uniformly (or log-uniformly). Trial n's draw depends only on the seed and
/// n (a Philox stream per trial), so a resumed search proposes what the uninterrupted one would, in any process.
/// </summary>
public sealed class RandomSearch(IReadOnlyList<SearchDimension> dimensions, int seed) : ISearchStrategy
{
    public SearchPoint? Next(IReadOnlyList<TrialOutcome> history) => Draw(dimensions, new SearchDraws((ulong)seed, history.Count));

    internal static SearchPoint Draw(IReadOnlyList<SearchDimension> dimensions, SearchDraws random) =>
        new(dimensions.ToDictionary(d => d.Name, d => d switch
        {
            ChoiceDimension c => c.Values[random.Below(c.Values.Count)],
            RangeDimension r => Snap(r, FromUnit(r, random.Uniform())),
            _ => throw new ArgumentException($"unknown dimension {d}"),
        }));

    /// <summary>u in [0, 1) to the range (log-uniform when the range is).</summary>
    internal static double FromUnit(RangeDimension r, double u) =>
        r.Log ? Math.Exp(Math.Log(r.Low) + u * (Math.Log(r.High) - Math.Log(r.Low))) : r.Low + u * (r.High - r.Low);

    /// <summary>A value clamped into the range, and rounded when it holds integers.</summary>
    internal static double Snap(RangeDimension r, double value)
    {
        value = Math.Clamp(value, r.Low, r.High);
        return r.Integer ? Math.Round(value) : value;
    }
}

/// <summary>
/// The Tree-structured Parzen Estimator (Bergstra et al., 2011; Hyperopt's and Optuna's default): after
/// <see cref="StartupTrials"/> random trials, the finished ones are split into the best γ fraction and the rest; each
/// dimension gets a density of each group — a Parzen mixture of Gaussians (on the log scale for log ranges) around the
/// observed values plus a wide prior component, truncated to the range; for choices, smoothed counts — and of
/// <see cref="Candidates"/> draws from the good density the one with the largest ratio good/bad is tried. Dimensions are
/// independent, as in the original algorithm. Diverged trials (loss +∞) count among the bad ones. Seeded per trial.
/// </summary>
public sealed class TreeParzenEstimator(IReadOnlyList<SearchDimension> dimensions, int seed) : ISearchStrategy
{
    public int StartupTrials { get; init; } = 10;
    public int Candidates { get; init; } = 24;
    public double Gamma { get; init; } = 0.25;

    public SearchPoint? Next(IReadOnlyList<TrialOutcome> history)
    {
        var random = new SearchDraws((ulong)seed, history.Count);
        if (history.Count < StartupTrials) return RandomSearch.Draw(dimensions, random);
        var ordered = history.OrderBy(t => double.IsNaN(t.Loss) ? double.PositiveInfinity : t.Loss).ToList();
        int goodCount = Math.Max(1, (int)Math.Ceiling(Gamma * ordered.Count));
        var (good, bad) = (ordered.Take(goodCount).Select(t => t.Point).ToList(), ordered.Skip(goodCount).Select(t => t.Point).ToList());
        var values = new Dictionary<string, double>();
        foreach (var dimension in dimensions)
            values[dimension.Name] = dimension switch
            {
                ChoiceDimension c => NextChoice(c, good, bad, random),
                RangeDimension r => NextInRange(r, good, bad, random),
                _ => throw new ArgumentException($"unknown dimension {dimension}"),
            };
        return new SearchPoint(values);
    }

    private double NextChoice(ChoiceDimension c, List<SearchPoint> good, List<SearchPoint> bad, SearchDraws random)
    {
        double[] Weights(List<SearchPoint> points) =>
            [.. c.Values.Select(v => 1.0 + points.Count(p => p[c.Name].Equals(v)))]; // one prior count per value
        var (l, g) = (Weights(good), Weights(bad));
        double lSum = l.Sum(), gSum = g.Sum();
        int best = -1;
        double bestScore = double.NegativeInfinity;
        for (int k = 0; k < Candidates; k++)
        {
            int index = Sample(l, lSum, random);
            double score = Math.Log(l[index] / lSum) - Math.Log(g[index] / gSum);
            if (score > bestScore) (best, bestScore) = (index, score);
        }
        return c.Values[best];
    }

    private static int Sample(double[] weights, double total, SearchDraws random)
    {
        double u = random.Uniform() * total;
        for (int i = 0; i < weights.Length; i++)
            if ((u -= weights[i]) < 0) return i;
        return weights.Length - 1;
    }

    private double NextInRange(RangeDimension r, List<SearchPoint> good, List<SearchPoint> bad, SearchDraws random)
    {
        double low = Scale(r, r.Low), high = Scale(r, r.High);
        var l = Parzen.Of([.. good.Select(p => Scale(r, p[r.Name]))], low, high);
        var g = Parzen.Of([.. bad.Select(p => Scale(r, p[r.Name]))], low, high);
        double best = double.NaN, bestScore = double.NegativeInfinity;
        for (int k = 0; k < Candidates; k++)
        {
            double x = l.Sample(random);
            double score = l.LogDensity(x) - g.LogDensity(x);
            if (score > bestScore) (best, bestScore) = (x, score);
        }
        return RandomSearch.Snap(r, r.Log ? Math.Exp(best) : best);
    }

    private static double Scale(RangeDimension r, double value) => r.Log ? Math.Log(value) : value;

    /// <summary>
    /// A mixture on [low, high]: a Gaussian at each observation (bandwidth: the larger gap to its sorted neighbours, at
    /// least the range over min(100, 1 + observations), as Optuna bounds it, so that a few observations stay broad) and a
    /// prior Gaussian at the middle as wide as the range, equally weighted, each truncated to the range.
    /// </summary>
    private sealed class Parzen
    {
        private readonly (double Mean, double Sigma)[] _components;
        private readonly double _low, _high;

        private Parzen((double, double)[] components, double low, double high) => (_components, _low, _high) = (components, low, high);

        public static Parzen Of(double[] observations, double low, double high)
        {
            double width = high - low;
            var sorted = observations.Order().ToArray();
            var components = new List<(double, double)> { ((low + high) / 2, width) };
            for (int i = 0; i < sorted.Length; i++)
            {
                double left = i > 0 ? sorted[i] - sorted[i - 1] : sorted[i] - low;
                double right = i < sorted.Length - 1 ? sorted[i + 1] - sorted[i] : high - sorted[i];
                components.Add((sorted[i], Math.Clamp(Math.Max(left, right), width / Math.Min(100, 1 + sorted.Length), width)));
            }
            return new Parzen([.. components], low, high);
        }

        public double Sample(SearchDraws random)
        {
            var (mean, sigma) = _components[random.Below(_components.Length)];
            for (int attempt = 0; attempt < 100; attempt++)
            {
                double x = mean + sigma * random.Normal();
                if (x >= _low && x <= _high) return x;
            }
            return Math.Clamp(mean, _low, _high);
        }

        public double LogDensity(double x)
        {
            double density = 0;
            foreach (var (mean, sigma) in _components)
            {
                double mass = Phi((_high - mean) / sigma) - Phi((_low - mean) / sigma); // the part inside the range
                double z = (x - mean) / sigma;
                density += Math.Exp(-0.5 * z * z) / (sigma * Math.Sqrt(2 * Math.PI) * Math.Max(mass, 1e-12));
            }
            return Math.Log(density / _components.Length);
        }

        /// <summary>The standard normal CDF.</summary>
        private static double Phi(double z) => 0.5 * Backends.Cpu.ErfcFit.Erfc(-z / Math.Sqrt(2));
    }
}
