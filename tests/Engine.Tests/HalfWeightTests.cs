using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.IO;
using Engine.Kernels;
using Engine.Models;
using Engine.Models.Bert;
using Engine.Reference;
using Engine.Tokenization;

namespace Engine.Tests;

/// <summary>
/// Checkpoints stored in F16 or BF16: inference loads keep the Linear weights and the word-embedding table as stored (half
/// the memory), every backend runs them and gives exactly what the same weights widened to F32 give; training loads
/// widen them, and a model holding kept weights refuses to train.
/// </summary>
public sealed class HalfWeightTests
{
    public static TheoryData<string> ReducedCases => [.. OpCases.HalfWeightReducedLinear.Select(c => c.Id)];

    /// <summary>
    /// F16 and BF16 weights in fp16, bf16 and tf32 products on the emulator's tensor-core path: a weight of the product's own
    /// format with K a multiple of 16 is read as it is (never widened), any other is widened first; both equal the
    /// rounded reference.
    /// </summary>
    [Theory, MemberData(nameof(ReducedCases))]
    public void HalfWeightsInReducedPrecisionOnTheEmulator(string id)
    {
        var halfCase = OpCases.HalfWeightReducedLinear.Single(c => c.Id == id);
        using var backend = IlgpuBackend.Create(IlgpuDevice.CpuEmulator);
        backend.Precision = halfCase.Precision;
        var result = halfCase.Forward(backend);
        Assert.True(result.Passed, result.ToString());
        bool ownFormat = (halfCase.WeightType, halfCase.Precision) is (DType.F16, ComputePrecision.Fp16) or (DType.BF16, ComputePrecision.Bf16);
        bool readAsStored = ownFormat && halfCase.K % 16 == 0;
        Assert.Equal(readAsStored ? 0 : 1, backend.HalfWeightsWidened);
    }

    [Fact]
    public void TheHalfCasesTellTheFormatsApart()
    {
        // An F16 weight read as BF16 bits (or the reverse) is far from the reference: the cases see which format was used.
        var f16 = OpCases.HalfWeightLinear.First(c => c.Op == "linear-f16-weight");
        using var backend = new CpuBackend();
        var (input, weight, bias) = f16.Inputs;
        var output = backend.Poisoned(f16.M * f16.N);
        backend.Linear(output, backend.UploadArray(input), Tensor.Halves(backend.UploadArray(weight), DType.BF16, f16.N, f16.K), bias is null ? null : backend.UploadArray(bias),
            f16.M, f16.K, f16.N, Activation.None);
        var expected = ReferenceOps.Linear(input.AsDoubles(), HalfValues.Widen(weight, DType.F16).AsDoubles(), bias?.AsDoubles(), f16.M, f16.K, f16.N, "none");
        Assert.False(ParityCheck.Compare("linear", "as bf16", expected, backend.DownloadArray(output), OpCases.LinearTolerance).Passed);
    }

    /// <summary>
    /// all-MiniLM-L6-v2 stored in F16 and in BF16: its Linear weights and word table stay in the format (36 Linears + 1
    /// table; the arena's F16 part is half the bytes those weights take in F32), its embeddings on the CPU backend equal
    /// exactly those of the same checkpoint widened at load, and stay within the format's rounding of the F32 model.
    /// </summary>
    [Theory]
    [InlineData(DType.F16, 0.99999)]
    [InlineData(DType.BF16, 0.9995)]
    public void ARealModelInAHalfFormatRunsAsStoredOnTheCpu(DType type, double cosineFloor)
    {
        using var temp = new TempDirectory();
        string directory = HalfValues.ConvertCheckpoint(PretrainedModels.MiniLM.Directory, temp["half"], type);
        var config = BertConfig.Load(Path.Combine(directory, BertConfig.FileName));
        var tokenizer = BertTokenizer.Load(directory, config);
        var batch = BertBatch.Pad([tokenizer.Encode("A man is eating food."), tokenizer.Encode("The weights stay in sixteen bits here.")]);

        using var kept = BertModel.Load(directory, new CpuBackend());
        using var widened = BertModel.Load(directory, new CpuBackend(), HalfWeights.Widen);
        using var original = BertModel.Load(PretrainedModels.MiniLM.Directory, new CpuBackend());
        var halfEntries = kept.Arena.Entries.Where(e => e.Type == type).ToList();
        Assert.Equal(1 + 6 * 6 + 1, halfEntries.Count); // word table; per layer Q, K, V, attention output, intermediate, output; pooler
        Assert.Contains(halfEntries, e => e.Name == "embeddings.word_embeddings.weight");
        Assert.DoesNotContain(kept.Arena.Entries, e => e.Type == type && (e.Name.EndsWith(".bias", StringComparison.Ordinal) || e.Name.Contains("LayerNorm")));
        Assert.All(widened.Arena.Entries, e => Assert.Equal(DType.F32, e.Type));
        long halfElements = halfEntries.Sum(e => (long)e.Length);
        Assert.Equal(2 * halfElements, kept.Arena.BytesByType[type]);
        Assert.Equal(widened.Arena.BytesByType[DType.F32] - 4 * halfElements, kept.Arena.BytesByType[DType.F32]);

        var (fromKept, fromWidened, fromOriginal) = (kept.Forward(batch).LastHiddenState, widened.Forward(batch).LastHiddenState, original.Forward(batch).LastHiddenState);
        Assert.Equal(fromWidened, fromKept);
        Assert.InRange(SentenceEmbedder.Cosine(fromOriginal, fromKept), cosineFloor, 1.0);
        Assert.NotEqual(fromOriginal, fromKept);

        // What the arena holds is the checkpoint's bits, and saved it writes them back unchanged.
        using var checkpoint = Checkpoint.Open(directory);
        foreach (var saved in kept.Arena.ToSafeTensors().Where(t => t.DType == type))
            Assert.Equal(checkpoint.ReadRaw(saved.Name), saved.Data);
    }

    /// <summary>
    /// A model with Linears of K = 32 stored in F16 on the emulator: in fp16 every kept weight is read as it
    /// is (none widened), in bf16 each is widened first, and in fp32 too; each equals the same checkpoint widened at load
    /// bit for bit (rounding an F16 value to F16 changes nothing).
    /// </summary>
    [Theory]
    [InlineData(ComputePrecision.Fp16, false)]
    [InlineData(ComputePrecision.Bf16, true)]
    [InlineData(ComputePrecision.Fp32, true)]
    public void KeptWeightsOnTheEmulatorEqualWidenedOnes(ComputePrecision precision, bool widens)
    {
        using var temp = new TempDirectory();
        // Heads of 16: attention keeps its fp32 kernel (flash attention takes 32, 64, 128), the Linears are what is checked.
        string directory = HalfValues.ConvertCheckpoint(RandomBert.Write(temp["f32"], new BertShape("heads-of-16", 300, 32, 1, 2, 32, 16)), temp["f16"], DType.F16);
        var batch = new BertBatch(2, 6, [2, 17, 250, 33, 3, 0, 2, 90, 3, 0, 0, 0], new int[12], [1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 0]);
        float[] Run(HalfWeights halfWeights, out long widened)
        {
            var backend = IlgpuBackend.Create(IlgpuDevice.CpuEmulator);
            backend.Precision = precision;
            using var model = BertModel.Load(directory, backend, halfWeights);
            var hidden = model.Forward(batch).LastHiddenState;
            widened = backend.HalfWeightsWidened;
            return hidden;
        }
        var fromKept = Run(HalfWeights.Keep, out long widenedKept);
        var fromWidened = Run(HalfWeights.Widen, out long widenedAtLoad);
        Assert.Equal(fromWidened, fromKept);
        Assert.Equal(0, widenedAtLoad);
        // Five Linears a pass (Q·K·V as one, attention output, intermediate, output, pooler) widen their weight, or none does.
        Assert.Equal(widens ? 5 : 0, widenedKept);
        Assert.All(fromKept, v => Assert.True(float.IsFinite(v)));
    }

    /// <summary>A masked-LM checkpoint in BF16: the decoder tied to the kept word table reads it as its weight; logits equal the widened model's.</summary>
    [Fact]
    public void AKeptWordTableServesTheTiedMaskedLMDecoder()
    {
        using var temp = new TempDirectory();
        var backend = new CpuBackend();
        using (var created = BertForMaskedLM.Create(BertConfig.Preset("tiny", 120), backend, SentenceObjective.None, seed: 4))
            created.Save(temp["f32"]);
        string directory = HalfValues.ConvertCheckpoint(temp["f32"], temp["bf16"], DType.BF16);
        var batch = new BertBatch(1, 5, [2, 40, 4, 77, 3], new int[5], [1, 1, 1, 1, 1]);
        using var kept = BertForMaskedLM.Load(directory, backend, halfWeights: HalfWeights.Keep);
        using var widened = BertForMaskedLM.Load(directory, backend);
        Assert.Equal(DType.BF16, kept.Bert.Embeddings.WordEmbeddings.Type);
        Assert.Equal(widened.Logits(batch), kept.Logits(batch));
    }

    /// <summary>
    /// Training loads widen F16 weights to fp32 master weights (the classifier trains); a model holding kept weights is
    /// refused by the optimizer and by the backward, naming the tensor.
    /// </summary>
    [Fact]
    public void TrainingWidensAndKeptWeightsRefuseToTrain()
    {
        using var temp = new TempDirectory();
        string directory = HalfValues.ConvertCheckpoint(TinyBert.WriteClassifier(temp["classifier"]), temp["f16"], DType.F16);
        var backend = new CpuBackend();
        using (var trainable = BertForSequenceClassification.Load(directory, backend))
        {
            Assert.Null(trainable.Arena.FirstUntrainable);
            using var optimizer = new Engine.Training.AdamWOptimizer(backend, trainable.Arena, new Engine.Training.AdamWOptions());
        }
        using var kept = BertForSequenceClassification.LoadWithHead(directory, backend);
        Assert.Equal(DType.F16, kept.Arena.FirstUntrainable?.Type);
        var error = Assert.Throws<EngineException>(() => new Engine.Training.AdamWOptimizer(backend, kept.Arena, new Engine.Training.AdamWOptions()));
        Assert.Equal("embeddings.word_embeddings.weight is kept in its checkpoint's F16 for inference and cannot be trained; training loads widen the weights to fp32 master weights",
            error.Message.Replace("bert.", ""));
        var batch = new BertBatch(1, 3, [2, 5, 3], new int[3], [1, 1, 1]);
        kept.ZeroGradients();
        Assert.Throws<EngineException>(() => kept.ForwardBackward(batch, [1], DropoutSettings.None));
    }

    /// <summary>A kept tensor holding an infinity or a NaN is refused at load, naming it and the element (as a widened one is).</summary>
    [Theory]
    [InlineData(DType.F16, (ushort)0x7C00, "encoder.layer.1.intermediate.dense.weight", 5)]
    [InlineData(DType.BF16, (ushort)0xFF80, "encoder.layer.1.intermediate.dense.weight", 77)]
    [InlineData(DType.F16, (ushort)0xFE00, "embeddings.word_embeddings.weight", 85)] // a NaN in the scalar tail: 88 values are no whole number of vectors
    public void ANonFiniteHalfWeightIsRefusedByName(DType type, ushort infinity, string tensor, int index)
    {
        using var temp = new TempDirectory();
        var tensors = TinyBert.Tensors().Select(t =>
        {
            var bits = HalfValues.Bits(System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.Data).ToArray(), type);
            if (t.Name == tensor) bits[index] = infinity;
            return new SafeTensorData(t.Name, type, t.Shape, System.Runtime.InteropServices.MemoryMarshal.AsBytes(bits.AsSpan()).ToArray());
        });
        string directory = TinyBert.Write(temp.Path, tensors);
        var error = Assert.Throws<EngineException>(() => BertModel.Load(directory, new CpuBackend()));
        Assert.Contains($"tensor '{tensor}' holds a value that is not finite", error.Message);
        Assert.Contains($"at element {index};", error.Message);
    }
}
