using Engine.Backends;
using Engine.Backends.Cpu;
using Engine.Kernels;
using Engine.Models.Bert;
using Engine.Reference;

namespace Engine.Tests;

/// <summary>
/// Packed batches (padding removed, <see cref="SequenceLayout"/>) through the whole model: the same values and gradients as
/// the padded run on real tokens, with every Linear over the real tokens only. One subclass per training backend; the op
/// cases (attention/packed-*) hold each op to the padded reference.
/// </summary>
public abstract class PackedSequenceTests(Func<ITrainingBackend> createBackend)
{
    // Rows of 5, 2 and 4 real tokens in a batch padded to 5: 11 of 15 rows are real.
    private static readonly BertBatch Ragged = new(3, 5,
        [2, 5, 7, 3, 6, 2, 9, 0, 0, 0, 2, 8, 6, 3, 0], [0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0], [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 0]);
    private const int RealTokens = 11;

    [Fact]
    public void PackedForwardEqualsPaddedOnRealTokensAndComputesNothingForPadding()
    {
        using var temp = new TempDirectory();
        using var backend = new CountingBackend(createBackend());
        using var model = BertModel.Load(TinyBert.Write(temp.Path), backend);
        var packed = model.Forward(Ragged);
        Assert.Equal(RealTokens, backend.LargestLinearRows);
        model.PackSequences = false;
        var padded = model.Forward(Ragged);
        Assert.Equal(Ragged.BatchSize * Ragged.SequenceLength, backend.LargestLinearRows);
        for (int i = 0; i < Ragged.AttentionMask.Length; i++)
            for (int c = 0; c < TinyBert.Hidden; c++)
            {
                float value = packed.LastHiddenState[i * TinyBert.Hidden + c];
                if (Ragged.AttentionMask[i] == 0) Assert.Equal(0f, value);
                else Assert.Equal(padded.LastHiddenState[i * TinyBert.Hidden + c], value, 1e-5f);
            }
        Assert.Equal(padded.PoolerOutput!, packed.PoolerOutput!, (a, b) => Math.Abs(a - b) <= 1e-5f);
    }

    /// <summary>Without dropout, training on the packed batch gives the padded batch's loss and every parameter's gradient.</summary>
    [Fact]
    public void PackedTrainingGivesThePaddedLossAndGradients()
    {
        using var temp = new TempDirectory();
        using var backend = createBackend();
        using var model = BertForSequenceClassification.Load(TinyBert.WriteClassifier(temp["classifier"], labels: 2), backend);
        float[] labels = [1, 0, 1];
        (double Loss, float[][] Gradients) Step()
        {
            model.ZeroGradients();
            double loss = model.ForwardBackward(Ragged, labels, DropoutSettings.None);
            return (loss, [.. model.Parameters.Select(p => p.ReadGradient(backend))]);
        }
        var packed = Step();
        model.Bert.PackSequences = false;
        var padded = Step();
        Assert.Equal(padded.Loss, packed.Loss, 1e-6);
        for (int p = 0; p < packed.Gradients.Length; p++)
        {
            var result = ParityCheck.Compare("packed-gradient", model.Parameters[p].Name, padded.Gradients[p].AsDoubles(), packed.Gradients[p], new Tolerance(1e-6, 1e-4));
            Assert.True(result.Passed, result.ToString());
        }
    }
}

public sealed class CpuPackedSequenceTests() : PackedSequenceTests(() => new CpuBackend())
{
    [Theory]
    [InlineData(new[] { 1, 1, 0, 1 }, false)] // a hole
    [InlineData(new[] { 0, 1, 1, 1 }, false)] // left padding
    [InlineData(new[] { 0, 0, 0, 0 }, false)] // an empty row
    [InlineData(new[] { 1, 1, 1, 0 }, true)]
    [InlineData(new[] { 1, 1, 1, 1 }, true)]
    public void OnlyRowsOfRealTokensThenPaddingPack(int[] secondRow, bool packs)
    {
        var batch = new BertBatch(2, 4, new int[8], new int[8], [1, 1, 0, 0, .. secondRow]);
        var lengths = batch.PackableLengths();
        Assert.Equal(packs, lengths is not null);
        if (packs) Assert.Equal([2, secondRow.Sum()], lengths!);
    }

    /// <summary>The CPU backend reads the sequence starts before it trusts them as row offsets.</summary>
    [Theory]
    [InlineData(new[] { 0, 3, 2, 5 })] // falling
    [InlineData(new[] { 0, 1, 4, 5 })] // a sequence longer than T = 2
    [InlineData(new[] { 1, 2, 4, 5 })] // not from 0
    [InlineData(new[] { 0, 2, 4, 4 })] // not to the rows
    public void SequenceStartsOutsideTheRowsAreRejected(int[] starts)
    {
        using var backend = new CpuBackend();
        const int NH = 1, HS = 4, Rows = 5;
        var layout = SequenceLayout.Packed(backend.UploadArray(starts), 3, 2, Rows);
        var error = Assert.Throws<ArgumentException>(() =>
            backend.Attention(backend.Allocate<float>(Rows * HS), backend.Allocate<float>(Rows * 3 * HS), layout, NH, HS, DropoutMask.None));
        Assert.Equal("sequenceStarts", error.ParamName);
    }
}

public sealed class IlgpuEmulatorPackedSequenceTests() : PackedSequenceTests(() => IlgpuBackend.Create(IlgpuDevice.CpuEmulator));
