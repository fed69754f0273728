using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Engine.Interpretability;
using Engine.Models;
using Engine.Models.Bert;
using Engine.Tokenization;
using Encoding = Engine.Tokenization.Encoding;

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
        var target = CliOptions.Text("--target", "What is explained: a label's logit (by name or index), or for a masked-LM checkpoint a token's at the text's first [MASK] (default: the predicted one; a regression head's output)");
        var steps = CliOptions.Integer("--steps", "Integrated gradients' quadrature nodes (Gauss–Legendre on [0, 1], as Captum)", 1, 10_000, 50);
        var json = CliOptions.Flag("--json", "One JSON line per text: tokens, each method's scores (and integrated gradients' delta), the prediction");
        var html = CliOptions.Path("--html", ValueKind.OutputFile, "Write one self-contained page: each text as a heat map per method, and its attention maps per layer and head");
        var command = new Command("explain", "Attribute a classifier's prediction, or a masked-LM head's token at [MASK], to the input's tokens (integrated gradients, gradient × input, attention rollout)")
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
            using var subject = ExplainSubject.Load(result, directory, config, tokenizer, result.GetValue(target));
            AttributionMethod[] methods = result.GetValue(method) is "all" or null ? [.. AttributionMethods.Values] : [AttributionMethods[result.GetValue(method)!]];
            var explainer = new TokenAttributions(subject.Model, tokenizer.PadId, tokenizer.ClsId, tokenizer.SepId);
            var explained = new List<ExplainedText>();
            Progress(result, printsToStdout: true).Run("explain", encodings.Count, "texts", progress =>
            {
                for (int n = 0; n < encodings.Count; n++)
                {
                    var e = encodings[n];
                    var (chosen, prediction, targetName, what) = subject.Choose(e, n);
                    var explanation = explainer.Explain(e.InputIds, e.TokenTypeIds, chosen, methods, result.GetValue(steps));
                    if (!double.IsFinite(explanation.Output) || explanation.Scores.Any(s => !s.Scores.All(double.IsFinite)))
                        throw new EngineException($"the attributions for text {n + 1} are not finite");
                    var text = new ExplainedText(lines[n], [.. e.InputIds.Select(id => tokenizer.Vocabulary[id])], explanation, targetName, what, prediction);
                    explained.Add(text);
                    Console.WriteLine(result.GetValue(json) ? ExplanationJson(text).ToJsonString() : ExplanationText(n, text));
                    progress.Report(n + 1);
                }
            });
            if (result.GetValue(html) is { } page)
            {
                ExplanationPage.Write(page, explained, config.NumAttentionHeads);
                Note(result, $"wrote {page}");
            }
        }));
        return command;
    }

    private static string ExplanationText(int n, ExplainedText explained)
    {
        var (invariant, explanation) = (CultureInfo.InvariantCulture, explained.Explanation);
        var text = new System.Text.StringBuilder();
        string baseline = explanation.BaselineOutput is { } value ? string.Create(invariant, $" (baseline {value:F4})") : "";
        text.AppendLine(string.Create(invariant, $"text {n + 1}: {explained.What} = {explanation.Output:F4}{baseline}"));
        text.AppendLine("token\t" + string.Join("\t", explanation.Scores.Select(s => MethodName(s.Method))));
        for (int t = 0; t < explained.Tokens.Length; t++)
            text.AppendLine(explained.Tokens[t] + "\t" + string.Join("\t", explanation.Scores.Select(s => s.Scores[t].ToString("F4", invariant))));
        foreach (var s in explanation.Scores.Where(s => s.Delta is not null))
            text.AppendLine(string.Create(invariant, $"{MethodName(s.Method)} delta (sum of scores − (F(x) − F(baseline))): {s.Delta:E2}"));
        return text.ToString().TrimEnd('\n');
    }

    private static JsonObject ExplanationJson(ExplainedText explained)
    {
        var explanation = explained.Explanation;
        var methods = new JsonObject();
        foreach (var s in explanation.Scores)
        {
            var entry = new JsonObject { ["scores"] = new JsonArray([.. s.Scores.Select(v => (JsonNode)v)]) };
            if (s.Delta is { } delta) entry["delta"] = delta;
            methods[MethodName(s.Method)] = entry;
        }
        var result = new JsonObject
        {
            ["text"] = explained.Text,
            ["tokens"] = new JsonArray([.. explained.Tokens.Select(t => (JsonNode)t)]),
            ["prediction"] = explained.Prediction,
            ["target"] = explained.TargetName,
            ["output"] = explanation.Output,
            ["methods"] = methods,
        };
        if (explanation.Target.Position is { } position) result["position"] = position;
        if (explanation.BaselineOutput is { } baseline) result["baseline_output"] = baseline;
        return result;
    }

    /// <summary>One explained text: its tokens, the explanation, what was explained (by name and in words), the prediction.</summary>
    internal sealed record ExplainedText(string Text, string[] Tokens, Explanation Explanation, string? TargetName, string What, JsonObject Prediction);

    /// <summary>
    /// What <c>explain</c> explains in each text: a classifier's class (the predicted one unless --target names one; a
    /// regression head's output), or a masked-LM head's token at the text's first [MASK] (the predicted token unless
    /// --target names one). Gradients flow through every weight, so F16 and BF16 ones are widened, as for training.
    /// </summary>
    private sealed class ExplainSubject(IAttributable model, Func<Encoding, int, (AttributionTarget, JsonObject, string?, string)> choose, IDisposable owner) : IDisposable
    {
        public IAttributable Model => model;

        /// <summary>Text <paramref name="n"/>'s target, the model's prediction, the target's name (none for regression) and what it is in words.</summary>
        public (AttributionTarget Target, JsonObject Prediction, string? TargetName, string What) Choose(Encoding encoding, int n) => choose(encoding, n);

        public void Dispose() => owner.Dispose();

        public static ExplainSubject Load(ParseResult result, string directory, BertConfig config, BertTokenizer tokenizer, string? target)
        {
            switch (ModelRegistry.Head(config))
            {
                case ModelHead.SequenceClassification:
                {
                    var classifier = BertForSequenceClassification.LoadWithHead(directory, TrainingBackend(result), HalfWeights.Widen);
                    try
                    {
                        int? index = target is null ? null : TargetIndex(target, classifier);
                        Note(result, $"model: {directory} ({classifier.ProblemType}, {classifier.NumLabels} outputs)");
                        return new(classifier, (encoding, _) => ClassifierTarget(classifier, tokenizer, encoding, index), classifier);
                    }
                    catch
                    {
                        classifier.Dispose();
                        throw;
                    }
                }
                case ModelHead.MaskedLM or ModelHead.PreTraining:
                {
                    var masked = BertForMaskedLM.Load(directory, TrainingBackend(result), halfWeights: HalfWeights.Widen);
                    try
                    {
                        if (!masked.HeadFromCheckpoint) throw new EngineException($"{directory}: no masked-LM head (no 'cls.predictions.transform.dense.weight') to explain");
                        int? token = target is null ? null
                            : tokenizer.TokenId(target) ?? throw new UsageException($"--target: '{target}' is not a token of {directory}'s vocabulary");
                        Note(result, $"model: {directory} (masked-LM head)");
                        return new(masked, (encoding, n) => MaskedTarget(masked, tokenizer, encoding, n, token), masked);
                    }
                    catch
                    {
                        masked.Dispose();
                        throw;
                    }
                }
                default:
                    throw new EngineException($"{directory}: explain needs a classification or masked-LM head; the checkpoint is a base model ({string.Join(", ", config.Raw["architectures"]?.AsArray().Select(a => (string?)a) ?? ["no architectures"])})");
            }
        }

        private static (AttributionTarget, JsonObject, string?, string) ClassifierTarget(BertForSequenceClassification classifier, BertTokenizer tokenizer, Encoding encoding, int? index)
        {
            var logits = classifier.Logits(tokenizer.Pad([encoding]));
            if (classifier.ProblemType == ProblemType.Regression)
                return (new AttributionTarget(index ?? 0), new JsonObject { ["value"] = logits[0] }, null, "the regression output");
            var probabilities = new float[logits.Length];
            Engine.Backends.Cpu.Probabilities.FromLogits(logits, probabilities);
            int best = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(probabilities), chosen = index ?? best;
            return (new AttributionTarget(chosen), new JsonObject { ["label"] = classifier.Labels[best], ["probability"] = probabilities[best] },
                classifier.Labels[chosen], $"the logit of '{classifier.Labels[chosen]}'");
        }

        private static (AttributionTarget, JsonObject, string?, string) MaskedTarget(BertForMaskedLM masked, BertTokenizer tokenizer, Encoding encoding, int n, int? token)
        {
            int position = Array.IndexOf(encoding.InputIds, tokenizer.MaskId);
            if (position < 0) throw new EngineException($"text {n + 1} has no {tokenizer.Options.MaskToken}: a masked-LM head explains the token it predicts there");
            var logits = masked.MaskedLogits(tokenizer.Pad([encoding]), [position]);
            var probabilities = new float[logits.Length];
            Engine.Backends.Cpu.Probabilities.FromLogits(logits, probabilities);
            int best = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(probabilities), chosen = token ?? best;
            string name = tokenizer.Vocabulary[chosen];
            return (new AttributionTarget(chosen, position), new JsonObject { ["token"] = tokenizer.Vocabulary[best], ["probability"] = probabilities[best] },
                name, $"the logit of '{name}' at {tokenizer.Options.MaskToken} (token {position})");
        }
    }

    /// <summary>--target as a label name, else an index below num_labels; anything else is a usage error naming the labels.</summary>
    private static int TargetIndex(string target, BertForSequenceClassification model)
    {
        int byName = model.Labels.ToList().IndexOf(target);
        if (byName >= 0) return byName;
        if (int.TryParse(target, NumberStyles.None, CultureInfo.InvariantCulture, out int index) && index < model.NumLabels) return index;
        throw new UsageException($"--target: '{target}' is neither a label ({string.Join(", ", model.Labels)}) nor an index below {model.NumLabels}");
    }
}
