using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Engine.Interpretability;
using Engine.Models;
using Engine.Models.Bert;
using Engine.Tokenization;

namespace Engine.Cli;

public static partial class Commands
{
    private static readonly Dictionary<string, AttributionMethod> AttributionMethods = new(StringComparer.Ordinal)
    {
        ["integrated-gradients"] = AttributionMethod.IntegratedGradients,
        ["gradient-input"] = AttributionMethod.GradientTimesInput,
        ["attention-rollout"] = AttributionMethod.AttentionRollout,
    };

    /// <summary>The command line's name of an attribution method.</summary>
    internal static string MethodName(AttributionMethod method) => AttributionMethods.Single(m => m.Value == method).Key;

    private static Command ExplainCommand()
    {
        var texts = new Argument<string[]>("text") { Description = "Texts to explain (else one per line of stdin); after '--' a text may start with '-'", Arity = ArgumentArity.ZeroOrMore };
        var method = CliOptions.Choice("--method", "integrated-gradients, gradient-input, attention-rollout, or all of them",
            ["all", .. AttributionMethods.Keys], defaultValue: "all");
        var target = CliOptions.Text("--target", "The label whose logit is explained: a label name or an index (default: each text's predicted label; a regression head's output)");
        var steps = CliOptions.Integer("--steps", "Integrated gradients' quadrature nodes (Gauss–Legendre on [0, 1], as Captum)", 1, 10_000, 50);
        var json = CliOptions.Flag("--json", "One JSON line per text: tokens, each method's scores (and integrated gradients' delta), the prediction");
        var html = CliOptions.Path("--html", ValueKind.OutputFile, "Write one self-contained page: each text as a heat map per method, and its attention maps per layer and head");
        var command = new Command("explain", "Attribute a classifier's prediction to the input's tokens (integrated gradients, gradient × input, attention rollout)")
        {
            texts, Model, method, target, steps, json, html, MaxLength,
        };
        command.SetAction(result => Verb(result, () =>
        {
            string directory = ResolveModel(result);
            var config = BertConfig.Load(Path.Combine(directory, BertConfig.FileName));
            var tokenizer = BertTokenizer.Load(directory, config);
            var lines = ReadTexts(result.GetValue(texts)!, null);
            int maxLength = MaxLengthFor(result, config, config.MaxPositionEmbeddings);
            var encodings = lines.Select(text => tokenizer.Encode(text, maxLength: maxLength)).ToList();
            WarnTruncated(encodings, maxLength, config);
            // Gradients flow through every weight: F16 and BF16 ones are widened, as for training.
            using var model = BertForSequenceClassification.LoadWithHead(directory, TrainingBackend(result), HalfWeights.Widen);
            Note(result, $"model: {directory} ({model.ProblemType}, {model.NumLabels} outputs)");
            int? targetIndex = result.GetValue(target) is { } named ? TargetIndex(named, model) : null;
            AttributionMethod[] methods = result.GetValue(method) is "all" or null ? [.. AttributionMethods.Values] : [AttributionMethods[result.GetValue(method)!]];
            var explainer = new TokenAttributions(model, tokenizer.PadId, tokenizer.ClsId, tokenizer.SepId);
            var explained = new List<(string Text, string[] Tokens, Explanation Explanation)>();
            Progress(result, printsToStdout: true).Run("explain", encodings.Count, "texts", progress =>
            {
                for (int n = 0; n < encodings.Count; n++)
                {
                    var e = encodings[n];
                    var explanation = explainer.Explain(e.InputIds, e.TokenTypeIds, targetIndex, methods, result.GetValue(steps));
                    if (!double.IsFinite(explanation.Output) || explanation.Scores.Any(s => !s.Scores.All(double.IsFinite)))
                        throw new EngineException($"the attributions for text {n + 1} are not finite");
                    string[] tokens = [.. e.InputIds.Select(id => tokenizer.Vocabulary[id])];
                    explained.Add((lines[n], tokens, explanation));
                    Console.WriteLine(result.GetValue(json) ? ExplanationJson(lines[n], tokens, explanation, model).ToJsonString() : ExplanationText(n, tokens, explanation, model));
                    progress.Report(n + 1);
                }
            });
            if (result.GetValue(html) is { } page)
            {
                ExplanationPage.Write(page, explained, model, config.NumAttentionHeads);
                Note(result, $"wrote {page}");
            }
        }));
        return command;
    }

    /// <summary>--target as a label name, else an index below num_labels; anything else is a usage error naming the labels.</summary>
    private static int TargetIndex(string target, BertForSequenceClassification model)
    {
        int byName = model.Labels.ToList().IndexOf(target);
        if (byName >= 0) return byName;
        if (int.TryParse(target, NumberStyles.None, CultureInfo.InvariantCulture, out int index) && index < model.NumLabels) return index;
        throw new UsageException($"--target: '{target}' is neither a label ({string.Join(", ", model.Labels)}) nor an index below {model.NumLabels}");
    }

    /// <summary>What is explained, in words: the target label's logit, or the regression output.</summary>
    internal static string Explained(Explanation explanation, BertForSequenceClassification model) =>
        model.ProblemType == ProblemType.Regression ? "the regression output" : $"the logit of '{model.Labels[explanation.Target]}'";

    private static string ExplanationText(int n, string[] tokens, Explanation explanation, BertForSequenceClassification model)
    {
        var invariant = CultureInfo.InvariantCulture;
        var text = new System.Text.StringBuilder();
        string baseline = explanation.BaselineOutput is { } value ? string.Create(invariant, $" (baseline {value:F4})") : "";
        text.AppendLine(string.Create(invariant, $"text {n + 1}: {Explained(explanation, model)} = {explanation.Output:F4}{baseline}"));
        text.AppendLine("token\t" + string.Join("\t", explanation.Scores.Select(s => MethodName(s.Method))));
        for (int t = 0; t < tokens.Length; t++)
            text.AppendLine(tokens[t] + "\t" + string.Join("\t", explanation.Scores.Select(s => s.Scores[t].ToString("F4", invariant))));
        foreach (var s in explanation.Scores.Where(s => s.Delta is not null))
            text.AppendLine(string.Create(invariant, $"{MethodName(s.Method)} delta (sum of scores − (F(x) − F(baseline))): {s.Delta:E2}"));
        return text.ToString().TrimEnd('\n');
    }

    /// <summary>The predicted label and its probability, or a regression head's output.</summary>
    private static JsonObject Prediction(Explanation explanation, BertForSequenceClassification model)
    {
        if (model.ProblemType == ProblemType.Regression) return new JsonObject { ["value"] = explanation.Logits[0] };
        var probabilities = new float[explanation.Logits.Length];
        Engine.Backends.Cpu.Probabilities.FromLogits(explanation.Logits, probabilities);
        int best = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(probabilities);
        return new JsonObject { ["label"] = model.Labels[best], ["probability"] = probabilities[best] };
    }

    private static JsonObject ExplanationJson(string line, string[] tokens, Explanation explanation, BertForSequenceClassification model)
    {
        var methods = new JsonObject();
        foreach (var s in explanation.Scores)
        {
            var entry = new JsonObject { ["scores"] = new JsonArray([.. s.Scores.Select(v => (JsonNode)v)]) };
            if (s.Delta is { } delta) entry["delta"] = delta;
            methods[MethodName(s.Method)] = entry;
        }
        var result = new JsonObject
        {
            ["text"] = line,
            ["tokens"] = new JsonArray([.. tokens.Select(t => (JsonNode)t)]),
            ["prediction"] = Prediction(explanation, model),
            ["target"] = model.ProblemType == ProblemType.Regression ? null : model.Labels[explanation.Target],
            ["output"] = explanation.Output,
            ["methods"] = methods,
        };
        if (explanation.BaselineOutput is { } baseline) result["baseline_output"] = baseline;
        return result;
    }
}
