using Engine.Backends;
using Engine.IO;
using Engine.Models;
using Engine.Models.Bert;

namespace Engine.Validation;

/// <summary>Tolerances of a validation: an element passes when |engine − reference| ≤ Absolute + Relative·|reference|.</summary>
public sealed record ValidationOptions(double Absolute = 1e-4, double Relative = 1e-3, bool Gradients = false);

/// <summary>One reference tensor against the engine's: elements compared (valid positions only), the largest differences, the verdict.</summary>
public sealed record TensorComparison(string Name, long[] Shape, long Compared, double MaxAbsolute, double MaxRelative, bool Passed);

/// <summary>
/// Runs a model on a reference file's inputs and compares every output the file holds, on valid (unmasked) positions.
/// </summary>
/// <remarks>
/// The reference format is a safetensors file:
/// inputs <c>input_ids</c> and <c>attention_mask</c> (I64 or I32, (B,T)), optional <c>token_type_ids</c> (zeros when
/// absent) and <c>labels</c> (I64 (B) class ids; F32 (B) or (B,L) regression targets; I64 (B,T) token labels, −100 where
/// unmasked, for a masked-LM head, with <c>sentence_labels</c> (B) for a pre-training head);
/// expected outputs, any of <c>last_hidden_state</c> (B,T,C), <c>pooler_output</c> (B,C), <c>logits</c> ((B,L), or
/// (B,T,V) for a masked-LM head), <c>loss</c> (a scalar or (1); needs labels), <c>attentions.&lt;layer&gt;</c> (B,NH,T,T),
/// and <c>grad.&lt;parameter name&gt;</c> for parameters after one backward of the loss (compared with
/// <see cref="ValidationOptions.Gradients"/>); all F32, computed with dropout off;
/// and <c>__metadata__</c>: <c>architecture</c> (the checked model's, e.g. BertForSequenceClassification), <c>dtype</c>
/// (float32), <c>producer</c> and <c>dropout</c> (off), each optional. Per-token tensors are compared where
/// attention_mask is 1; attention maps on real queries' rows. Anything else in the file — an unknown tensor, a missing
/// input, a wrong shape, an architecture other than the model's — is one <see cref="EngineException"/> naming it.
/// </remarks>
public static class ReferenceValidator
{
    private static readonly HashSet<string> Inputs = ["input_ids", "attention_mask", "token_type_ids", "labels", "sentence_labels"];

    public static IReadOnlyList<TensorComparison> Validate(string modelDirectory, string referencePath, ITrainingBackend backend, ValidationOptions options)
    {
        var config = BertConfig.Load(Path.Combine(modelDirectory, BertConfig.FileName));
        var head = ModelRegistry.Head(config);
        using var reference = SafeTensorsFile.Open(referencePath);
        string Where(string tensor) => $"{referencePath}: tensor '{tensor}'";
        CheckMetadata(reference, config, head, referencePath);

        var ids = Integers(reference, "input_ids", Where) ?? throw new EngineException($"{referencePath}: no 'input_ids' (the inputs are input_ids and attention_mask, (B,T))");
        var mask = Integers(reference, "attention_mask", Where) ?? throw new EngineException($"{referencePath}: no 'attention_mask' (the inputs are input_ids and attention_mask, (B,T))");
        reference.TryGet("input_ids", out var idsInfo);
        if (idsInfo.Shape.Length != 2) throw new EngineException($"{Where("input_ids")} has shape [{string.Join(", ", idsInfo.Shape)}], expected (B,T)");
        int B = (int)idsInfo.Shape[0], T = (int)idsInfo.Shape[1];
        RequireShape(reference, "attention_mask", [B, T], Where);
        var types = Integers(reference, "token_type_ids", Where);
        if (types is not null) RequireShape(reference, "token_type_ids", [B, T], Where);
        var batch = new BertBatch(B, T, ids, types ?? new int[B * T], mask);

        var names = reference.Tensors.Select(t => t.Name).Where(n => !Inputs.Contains(n)).Order(StringComparer.Ordinal).ToList();
        foreach (var name in names)
            if (!IsOutput(name)) throw new EngineException($"{Where(name)} is neither an input nor an output this format knows (last_hidden_state, pooler_output, logits, loss, attentions.<layer>, grad.<parameter>)");
        bool attentions = names.Any(n => n.StartsWith("attentions.", StringComparison.Ordinal));
        var engine = new Dictionary<string, (float[] Values, long[] Shape)>(StringComparer.Ordinal);

        if (head == ModelHead.None)
        {
            using var model = BertModel.Load(modelDirectory, backend);
            AddEncoder(engine, model.Forward(batch, attentions), config);
            Compute(model.Arena, null);
        }
        else if (head == ModelHead.SequenceClassification)
        {
            using var model = BertForSequenceClassification.LoadWithHead(modelDirectory, backend, HalfWeights.Widen);
            var (encoder, logits) = model.Run(batch, attentions);
            AddEncoder(engine, encoder, config);
            engine["logits"] = (logits, [B, model.NumLabels]);
            Compute(model.Arena, model);
        }
        else
        {
            using var model = BertForMaskedLM.Load(modelDirectory, backend, halfWeights: HalfWeights.Widen);
            var (encoder, logits) = model.Run(batch, attentions);
            AddEncoder(engine, encoder, config);
            engine["logits"] = (logits, [B, T, model.VocabSize]);
            Compute(model.Arena, model);
        }

        // The loss and the gradients, when the file asks for them: one backward of its labels, dropout off; read while
        // the model lives.
        void Compute(ParameterArena arena, ITaskModel? model)
        {
            var gradients = options.Gradients ? names.Where(n => n.StartsWith("grad.", StringComparison.Ordinal)).ToList() : [];
            if (!names.Contains("loss") && gradients.Count == 0) return;
            if (model is null) throw new EngineException($"{referencePath}: 'loss' and gradients need a model with a head; {modelDirectory} is a base model");
            var targets = Targets(reference, model, batch, Where) ?? throw new EngineException($"{referencePath}: 'loss' and gradients need 'labels'");
            arena.ZeroGradients(model.Backend);
            engine["loss"] = ([(float)model.ForwardBackward(batch, targets, DropoutSettings.None)], []);
            foreach (string name in gradients)
            {
                string parameterName = name["grad.".Length..];
                var entry = arena.Find(parameterName) ?? throw new EngineException($"{Where(name)}: the model has no parameter '{parameterName}'");
                engine[name] = (arena.ReadGradient(entry), entry.Shape);
            }
        }

        var comparisons = new List<TensorComparison>();
        foreach (var name in names)
        {
            reference.TryGet(name, out var info);
            if (info.DType != DType.F32) throw new EngineException($"{Where(name)} is {info.DType}; outputs are F32");
            if (name.StartsWith("grad.", StringComparison.Ordinal) && !options.Gradients) continue;
            if (!engine.TryGetValue(name, out var actual))
                throw new EngineException($"{Where(name)} has no counterpart in a {(head == ModelHead.None ? "base model" : head.ToString())}'s outputs");
            bool shapeMatches = name == "loss" ? info.Shape is [] or [1] : info.Shape.SequenceEqual(actual.Shape);
            if (!shapeMatches)
                throw new EngineException($"{Where(name)} has shape [{string.Join(", ", info.Shape)}]; the engine's is [{string.Join(", ", name == "loss" ? [1L] : actual.Shape)}]");
            comparisons.Add(Compare(name, info.Shape, reference.ReadFloat32(info), actual.Values, Valid(name, info.Shape, mask), options));
        }
        if (comparisons.Count == 0) throw new EngineException($"{referencePath}: no outputs to compare{(options.Gradients ? "" : " (gradients are compared with --grads)")}");
        return comparisons;
    }

    private static bool IsOutput(string name) =>
        name is "last_hidden_state" or "pooler_output" or "logits" or "loss" || name.StartsWith("grad.", StringComparison.Ordinal)
        || name.StartsWith("attentions.", StringComparison.Ordinal) && int.TryParse(name["attentions.".Length..], System.Globalization.NumberStyles.None, null, out _);

    private static void AddEncoder(Dictionary<string, (float[] Values, long[] Shape)> engine, BertModelOutput output, BertConfig config)
    {
        int B = output.BatchSize, T = output.SequenceLength, C = output.HiddenSize;
        engine["last_hidden_state"] = (output.LastHiddenState, [B, T, C]);
        if (output.PoolerOutput is { } pooled) engine["pooler_output"] = (pooled, [B, C]);
        for (int layer = 0; output.Attentions is not null && layer < output.Attentions.Count; layer++)
            engine[$"attentions.{layer}"] = (output.Attentions[layer], [B, config.NumAttentionHeads, T, T]);
    }

    /// <summary>
    /// Which elements count: per-token tensors ((B,T,C) hidden states, (B,T,V) logits) where the mask is 1; attention maps
    /// (B,NH,T,T) on real queries' rows; everything else all.
    /// </summary>
    private static Func<long, bool> Valid(string name, long[] shape, int[] mask)
    {
        if (name is "last_hidden_state" or "logits" && shape.Length == 3) return i => mask[i / shape[2]] == 1;
        if (name.StartsWith("attentions.", StringComparison.Ordinal))
        {
            long T = shape[2], perSequence = shape[1] * T * T;
            return i => mask[i / perSequence * T + i / T % T] == 1;
        }
        return _ => true;
    }

    private static TensorComparison Compare(string name, long[] shape, float[] expected, float[] actual, Func<long, bool> valid, ValidationOptions options)
    {
        long compared = 0;
        double maxAbsolute = 0, maxRelative = 0;
        bool passed = true;
        for (long i = 0; i < expected.Length; i++)
        {
            if (!valid(i)) continue;
            compared++;
            double difference = Math.Abs((double)actual[i] - expected[i]), magnitude = Math.Abs((double)expected[i]);
            if (double.IsNaN(difference)) difference = double.PositiveInfinity;
            maxAbsolute = Math.Max(maxAbsolute, difference);
            if (magnitude > 0) maxRelative = Math.Max(maxRelative, difference / magnitude);
            if (!(difference <= options.Absolute + options.Relative * magnitude)) passed = false;
        }
        return new TensorComparison(name, shape, compared, maxAbsolute, maxRelative, passed);
    }

    private static void CheckMetadata(SafeTensorsFile reference, BertConfig config, ModelHead head, string path)
    {
        if (reference.Metadata.TryGetValue("architecture", out var architecture))
        {
            if (!ModelRegistry.IsArchitecture(architecture)) throw new EngineException($"{path}: unknown architecture '{architecture}' in __metadata__");
            if (ModelRegistry.Head(architecture) != head)
                throw new EngineException($"{path}: made by a {architecture}, but the model is a {ModelRegistry.ArchitectureName(ModelRegistry.Family(config), head)}");
        }
        if (reference.Metadata.TryGetValue("dtype", out var dtype) && dtype != "float32")
            throw new EngineException($"{path}: dtype '{dtype}' in __metadata__; references are float32");
        if (reference.Metadata.TryGetValue("dropout", out var dropout) && dropout != "off")
            throw new EngineException($"{path}: dropout '{dropout}' in __metadata__; references are computed with dropout off");
    }

    /// <summary>An I64 or I32 tensor as ints, or null when absent.</summary>
    private static int[]? Integers(SafeTensorsFile file, string name, Func<string, string> where)
    {
        if (!file.TryGet(name, out var info)) return null;
        var raw = file.ReadRaw(info);
        return info.DType switch
        {
            DType.I64 => [.. System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(raw).ToArray().Select(v => v is >= int.MinValue and <= int.MaxValue ? (int)v
                : throw new EngineException($"{where(name)} holds {v}, outside the 32-bit range"))],
            DType.I32 => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(raw).ToArray(),
            _ => throw new EngineException($"{where(name)} is {info.DType}; expected I64 or I32"),
        };
    }

    private static void RequireShape(SafeTensorsFile file, string name, long[] shape, Func<string, string> where)
    {
        file.TryGet(name, out var info);
        if (!info.Shape.SequenceEqual(shape)) throw new EngineException($"{where(name)} has shape [{string.Join(", ", info.Shape)}], expected [{string.Join(", ", shape)}]");
    }

    /// <summary>The labels in the head's target layout (ITaskModel.Loss): class ids or values per example; token labels then sentence labels.</summary>
    private static float[]? Targets(SafeTensorsFile file, ITaskModel model, BertBatch batch, Func<string, string> where)
    {
        if (!file.TryGet("labels", out var info)) return null;
        float[] labels = info.DType == DType.F32 ? file.ReadFloat32(info) : [.. Integers(file, "labels", where)!.Select(v => (float)v)];
        if (model is BertForMaskedLM masked)
        {
            if (labels.Length != batch.BatchSize * batch.SequenceLength) throw new EngineException($"{where("labels")} has {labels.Length} values; a masked-LM head takes (B,T) token labels");
            if (masked.SeqRelationship is null) return labels;
            var sentence = Integers(file, "sentence_labels", where) ?? throw new EngineException($"{where("sentence_labels")} is missing; a pre-training head needs it beside labels");
            return [.. labels, .. sentence.Select(v => (float)v)];
        }
        model.ValidateTargets(labels, where("labels"));
        return labels;
    }
}
