using System.Text.Json.Nodes;
using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.IO;
using Engine.Kernels;
using Engine.Models.Bert;
using Engine.Reference;
using Engine.Tokenization;
using Engine.Training;

namespace Engine.Tests;

/// <summary>
/// The masked-LM heads against PyTorch on the masked_lm fixtures of Fixtures/pytorch/generate.py: BertForMaskedLM
/// (decoder tied to the word embeddings, a stored decoder copy that must equal them) and BertForPreTraining with a
/// sentence-order head: logits at every position, the loss, every gradient (the word embeddings' summing both uses),
/// ten AdamW steps; the gathered product equal to the full one's rows. One subclass per training backend.
/// </summary>
public abstract class MaskedLMParityTests(Func<ITrainingBackend> createBackend)
{
    // The fixtures, their index and the comparisons are the classification parity tests' (one generator writes both).
    internal static string Root => PyTorchParityTests.Root;
    internal static JsonNode Index => PyTorchParityTests.Index;

    public static TheoryData<string> Fixtures => [.. Index["masked_lm"]!.AsArray().Select(f => (string)f!["name"]!)];

    /// <summary>The fixture's batch and its targets as the head reads them: B·T token labels, then B sentence labels with a sentence head.</summary>
    internal static (BertBatch Batch, float[] Targets) Inputs(string name)
    {
        var entry = Index["masked_lm"]!.AsArray().Single(f => (string)f!["name"]! == name)!;
        using var inputs = SafeTensorsFile.Open(Path.Combine(Root, name, "inputs.safetensors"));
        long[] Longs(string tensor) => inputs.TryGet(tensor, out var info)
            ? System.Runtime.InteropServices.MemoryMarshal.Cast<byte, long>(inputs.ReadRaw(info)).ToArray() : throw new InvalidOperationException(tensor);
        int B = (int)entry["batch"]!, T = (int)entry["tokens"]!;
        int[] Ints(string tensor) => [.. Longs(tensor).Select(v => (int)v)];
        var batch = new BertBatch(B, T, Ints("input_ids"), Ints("token_type_ids"), Ints("attention_mask"));
        float[] labels = [.. Longs("labels").Select(v => (float)v)];
        return (batch, entry["sentence"] is null ? labels : [.. labels, .. Longs("sentence_labels").Select(v => (float)v)]);
    }

    private static float[] Tensor(SafeTensorsFile file, string name) => PyTorchParityTests.Tensor(file, name);

    private static void AssertClose(string what, double[] expected, float[] actual, Tolerance tolerance) =>
        PyTorchParityTests.AssertClose(what, expected, actual, tolerance);

    [Theory, MemberData(nameof(Fixtures))]
    public void LogitsLossAndEveryGradientEqualPyTorch(string name)
    {
        var (batch, targets) = Inputs(name);
        using var expected = SafeTensorsFile.Open(Path.Combine(Root, name, "expected.safetensors"));
        using var backend = createBackend();
        using var model = BertForMaskedLM.Load(Path.Combine(Root, name, "model"), backend);
        Assert.True(model.HeadFromCheckpoint);
        Assert.Equal(name.Contains("sop") ? SentenceObjective.SentenceOrder : SentenceObjective.None, model.Sentence);
        Assert.Empty(model.UnusedTensors);
        // Packed (the default), real tokens hold PyTorch's logits and padding zeros; padded, every position holds PyTorch's.
        var (expectedLogits, packedLogits, V) = (Tensor(expected, "logits").AsDoubles(), model.Logits(batch), model.VocabSize);
        var real = Enumerable.Range(0, batch.BatchSize * batch.SequenceLength).Where(i => batch.AttentionMask[i] != 0).ToArray();
        AssertClose("logits of real tokens", [.. real.SelectMany(i => expectedLogits.Skip(i * V).Take(V))], [.. real.SelectMany(i => packedLogits.Skip(i * V).Take(V))],
            new Tolerance(1e-5, 1e-4));
        Assert.All(Enumerable.Range(0, packedLogits.Length).Where(i => batch.AttentionMask[i / V] == 0), i => Assert.Equal(0f, packedLogits[i]));
        model.Bert.PackSequences = false;
        AssertClose("logits", expectedLogits, model.Logits(batch), new Tolerance(1e-5, 1e-4));
        model.Bert.PackSequences = true;
        model.Arena.ZeroGradients(backend);
        double loss = model.ForwardBackward(batch, targets, DropoutSettings.None);
        Assert.Equal(Tensor(expected, "loss")[0], loss, 1e-5);
        // One arena entry per tensor: the word embeddings once, their gradient from the embeddings and the decoder.
        Assert.Single(model.Arena.Entries, e => e.Name == "bert.embeddings.word_embeddings.weight");
        Assert.DoesNotContain(model.Arena.Entries, e => e.Name.Contains("decoder"));
        foreach (var parameter in model.Arena.Parameters)
            AssertClose(parameter.Name, [.. parameter.Parts.SelectMany(p => Tensor(expected, "grad." + p.Name).AsDoubles())],
                parameter.ReadGradient(backend), new Tolerance(1e-5, 1e-3));
    }

    /// <summary>On the CPU backend only: each op and the optimizer are checked on the emulator already, where ten steps take over a minute.</summary>
    [SkippableTheory, MemberData(nameof(Fixtures))]
    public void TenAdamWStepsGiveThePyTorchLosses(string name)
    {
        var (batch, targets) = Inputs(name);
        using var expected = SafeTensorsFile.Open(Path.Combine(Root, name, "expected.safetensors"));
        var adamw = Index["adamw"]!;
        using var backend = createBackend();
        Skip.IfNot(backend is CpuBackend, "ten steps run on the CPU backend");
        using var model = BertForMaskedLM.Load(Path.Combine(Root, name, "model"), backend);
        using var optimizer = new AdamWOptimizer(backend, model.Arena, new AdamWOptions
        {
            Beta1 = (float)adamw["betas"]![0]!, Beta2 = (float)adamw["betas"]![1]!, Eps = (float)adamw["eps"]!,
            WeightDecay = (float)adamw["weight_decay"]!, MaxGradNorm = (float)adamw["max_grad_norm"]!,
        });
        var reference = Tensor(expected, "adamw_losses");
        for (int step = 0; step < reference.Length; step++)
        {
            model.Arena.ZeroGradients(backend);
            double loss = model.ForwardBackward(batch, targets, DropoutSettings.None);
            Assert.True(Math.Abs(loss - reference[step]) <= 1e-4, $"step {step + 1}: loss {loss}, PyTorch {reference[step]}");
            optimizer.Step((float)adamw["lr"]!);
        }
    }

    /// <summary>Training computes the vocabulary product only at masked rows: those rows equal the full product's.</summary>
    [Theory, MemberData(nameof(Fixtures))]
    public void GatheredLogitsEqualTheFullProductsRows(string name)
    {
        var (batch, targets) = Inputs(name);
        using var backend = createBackend();
        using var model = BertForMaskedLM.Load(Path.Combine(Root, name, "model"), backend);
        int V = model.VocabSize, N = batch.BatchSize * batch.SequenceLength;
        var rows = Enumerable.Range(0, N).Where(i => targets[i] >= 0).Reverse().ToArray();
        var full = model.Logits(batch);
        var gathered = model.MaskedLogits(batch, rows);
        for (int r = 0; r < rows.Length; r++)
            Assert.Equal(full.AsSpan(rows[r] * V, V).ToArray(), gathered.AsSpan(r * V, V).ToArray());
    }
}

public sealed class CpuMaskedLMParityTests() : MaskedLMParityTests(() => new CpuBackend());

public sealed class IlgpuEmulatorMaskedLMParityTests() : MaskedLMParityTests(() => IlgpuBackend.Create(IlgpuDevice.CpuEmulator));

/// <summary>Loading, saving and the fill-mask pipeline of a masked-LM model, on the CPU.</summary>
public sealed class MaskedLMTests
{
    private static string Fixture(string name) => Path.Combine(MaskedLMParityTests.Root, name, "model");

    [Fact]
    public void FillMaskRanksAsTheReferenceForEveryMaskAndWithTargets()
    {
        var entry = MaskedLMParityTests.Index["masked_lm"]!.AsArray().Single(f => f!["fill_mask"] is not null)!;
        string directory = Fixture((string)entry["name"]!);
        var tokenizer = BertTokenizer.Load(directory);
        using var model = BertForMaskedLM.Load(directory, new CpuBackend());
        var pipeline = new FillMask(tokenizer, model, 512);
        foreach (var @case in entry["fill_mask"]!.AsArray())
        {
            string text = (string)@case!["text"]!;
            var masks = @case["masks"]!.AsArray();
            var all = pipeline.Fill(text, topK: 5);
            var targets = pipeline.TargetIds([.. @case["targets"]!.AsArray().Select(t => (string)t!)]);
            var restricted = pipeline.Fill(text, topK: 10, targets);
            Assert.Equal(masks.Count, all.Count);
            for (int m = 0; m < masks.Count; m++)
            {
                Assert.Equal(masks[m]!["ids"]!.AsArray().Select(i => (int)i!), all[m].Select(p => p.Token));
                Assert.Equal(masks[m]!["target_ids"]!.AsArray().Select(i => (int)i!), restricted[m].Select(p => p.Token)); // top-k capped at the targets
                foreach (var (prediction, score) in all[m].Concat(restricted[m]).Zip(masks[m]!["scores"]!.AsArray().Concat(masks[m]!["target_scores"]!.AsArray()).Select(s => (double)s!)))
                    Assert.True(Math.Abs(prediction.Score - score) <= 1e-6, $"{text} mask {m + 1}: {prediction.TokenStr} {prediction.Score} vs {score}");
            }
        }
    }

    [Fact]
    public void FillMaskSequencesAndErrorsFollowTheHuggingFacePipeline()
    {
        string directory = Fixture("tiny-mlm");
        var tokenizer = BertTokenizer.Load(directory);
        using var model = BertForMaskedLM.Load(directory, new CpuBackend());
        var pipeline = new FillMask(tokenizer, model, 512);
        var single = pipeline.Fill("the quick brown fox jumps over the [MASK] dog", topK: 1)[0][0];
        Assert.Equal($"the quick brown fox jumps over the {single.TokenStr} dog", single.Sequence); // one mask: special tokens dropped
        var several = pipeline.Fill("a [MASK] sat on the [MASK]", topK: 1);
        Assert.StartsWith("[CLS] a ", several[0][0].Sequence); // several: the other mask stays, so special tokens are kept
        Assert.Contains("[MASK]", several[0][0].Sequence);
        Assert.Contains("no [MASK]", Assert.Throws<EngineException>(() => pipeline.Fill("no mask here")).Message);
        var warnings = new List<string>();
        Assert.Equal([tokenizer.TokenId("dog")!.Value], pipeline.TargetIds(["dog", "dog"], warnings.Add));
        Assert.Throws<EngineException>(() => pipeline.TargetIds(["", " "]));
        Assert.Empty(warnings);
    }

    [Fact]
    public void SavedModelsReloadAsHuggingFaceWritesThem()
    {
        using var temp = new TempDirectory();
        var (batch, _) = MaskedLMParityTests.Inputs("tiny-pretraining-sop");
        using var backend = new CpuBackend();
        using (var model = BertForMaskedLM.Load(Fixture("tiny-pretraining-sop"), backend))
        {
            var logits = model.Logits(batch);
            model.Save(temp.Path);
            using var reloaded = BertForMaskedLM.Load(temp.Path, backend);
            Assert.Equal(logits, reloaded.Logits(batch));
            Assert.Equal(SentenceObjective.SentenceOrder, reloaded.Sentence);
        }
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(temp.Path, "config.json")))!;
        Assert.Equal("BertForPreTraining", (string)config["architectures"]![0]!);
        using var checkpoint = Checkpoint.Open(temp.Path);
        Assert.Contains("cls.predictions.bias", checkpoint.Names);
        Assert.Contains("cls.seq_relationship.weight", checkpoint.Names);
        Assert.DoesNotContain(checkpoint.Names, n => n.Contains("decoder")); // tied: saved once, as the word embeddings

        // The same checkpoint as a masked-LM model alone: the sentence head and pooler are left unused.
        using var maskedOnly = BertForMaskedLM.Load(temp.Path, backend, SentenceObjective.None);
        Assert.Null(maskedOnly.SeqRelationship);
        Assert.Contains("cls.seq_relationship.weight", maskedOnly.UnusedTensors);
        Assert.Contains("bert.pooler.dense.weight", maskedOnly.UnusedTensors);
    }

    /// <summary>A masked-LM checkpoint has no pooler: a classifier built on it gets a new one, as transformers does, and says so.</summary>
    [Fact]
    public void AClassifierOnAMaskedLMCheckpointGetsANewPooler()
    {
        using var backend = new CpuBackend();
        using var classifier = BertForSequenceClassification.Load(Fixture("tiny-mlm"), backend, numLabels: 2, seed: 1);
        Assert.True(classifier.PoolerMissing);
        Assert.Contains("bert.pooler.dense.weight", classifier.Arena.Entries.Select(e => e.Name));
        Assert.Contains("cls.predictions.bias", classifier.UnusedTensors);
        var (batch, _) = MaskedLMParityTests.Inputs("tiny-mlm");
        Assert.All(classifier.Logits(batch), v => Assert.True(float.IsFinite(v)));
        using var withPooler = BertForSequenceClassification.Load(Fixture("tiny-pretraining-sop"), backend, numLabels: 2, seed: 1);
        Assert.False(withPooler.PoolerMissing);
    }

    [Fact]
    public void AStoredDecoderThatDiffersFromTheEmbeddingsIsRefused()
    {
        using var temp = new TempDirectory();
        foreach (string file in Directory.GetFiles(Fixture("tiny-mlm"))) File.Copy(file, Path.Combine(temp.Path, Path.GetFileName(file)));
        List<SafeTensorData> tensors;
        using (var file = SafeTensorsFile.Open(Path.Combine(temp.Path, "model.safetensors")))
            tensors = [.. file.Tensors.Select(t => SafeTensorData.FromFloats(t.Name, t.Name == "cls.predictions.decoder.weight"
                ? [.. file.ReadFloat32(t).Select((v, i) => i == 7 ? v + 1 : v)] : file.ReadFloat32(t), t.Shape))];
        SafeTensorsWriter.Write(Path.Combine(temp.Path, "model.safetensors"), tensors);
        var error = Assert.Throws<EngineException>(() => BertForMaskedLM.Load(temp.Path, new CpuBackend()));
        Assert.Contains("cls.predictions.decoder.weight", error.Message);
        // A config that unties them is refused as such (an embedding model with it still loads: only the decoder cares).
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(temp.Path, "config.json")))!;
        config["tie_word_embeddings"] = false;
        File.WriteAllText(Path.Combine(temp.Path, "config.json"), config.ToJsonString());
        Assert.Contains("tie_word_embeddings", Assert.Throws<EngineException>(() => BertForMaskedLM.Load(temp.Path, new CpuBackend())).Message);
        using var encoder = BertModel.Load(temp.Path, new CpuBackend());
    }

    [Fact]
    public void ABaseModelGetsANewHeadAndFromScratchFollowsHuggingFacesInitialisation()
    {
        using var temp = new TempDirectory();
        TinyBert.Write(temp.Path);
        using var backend = new CpuBackend();
        using (var model = BertForMaskedLM.Load(temp.Path, backend, seed: 3))
        {
            Assert.False(model.HeadFromCheckpoint);
            Assert.Null(model.Bert.Pooler);
            Assert.Equal(new float[TinyBert.Vocab], model.Predictions.Decoder.Bias!.ReadValue(backend));
        }
        var config = BertConfig.Preset("tiny", 100);
        using var scratch = BertForMaskedLM.Create(config, backend, SentenceObjective.NextSentence, seed: 5);
        var word = scratch.Bert.Embeddings.WordEmbeddings.ReadValue(backend);
        Assert.All(word.AsSpan(0, config.HiddenSize).ToArray(), v => Assert.Equal(0f, v)); // the padding row
        double std = Math.Sqrt(word.Skip(config.HiddenSize).Average(v => (double)v * v));
        Assert.InRange(std, 0.019, 0.021);
        Assert.All(scratch.Bert.Encoder.Layers[0].Output.LayerNorm.Weight.ReadValue(backend), v => Assert.Equal(1f, v));
        Assert.NotNull(scratch.SeqRelationship);
        using var again = BertForMaskedLM.Create(config, backend, SentenceObjective.NextSentence, seed: 5);
        Assert.Equal(word, again.Bert.Embeddings.WordEmbeddings.ReadValue(backend));
    }
}
