using System.Text.Json.Nodes;
using Engine.Cli;
using Engine.IO;
using Engine.Models.Bert;
using Engine.Onnx;
using Engine.Tokenization;
using Engine.Training;

namespace Engine.Fuzz;

/// <summary>
/// One reader of untrusted bytes: the file it reads (the input is written there), valid seed inputs, and the
/// reading itself. The contract under test: any input either reads or fails with an <see cref="EngineException"/>
/// naming what is wrong; any other exception, a hang or a crash is a bug.
/// </summary>
public sealed record FuzzTarget(string Name, string FileName, Func<IEnumerable<byte[]>> Seeds, Action<string, FuzzWorkspace> Read);

/// <summary>
/// A folder holding what the readers need besides the input (a tiny model's config and vocabulary), on a memory file
/// system when there is one, since every input is written to a file and read back.
/// </summary>
public sealed class FuzzWorkspace : IDisposable
{
    public string Directory { get; }
    public BertConfig Config { get; }
    public BertTokenizer Tokenizer { get; }

    public FuzzWorkspace()
    {
        string root = System.IO.Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        Directory = Path.Combine(root, $"engine-fuzz-{Environment.ProcessId}-{Guid.NewGuid():N}");
        System.IO.Directory.CreateDirectory(Directory);
        Config = BertConfig.FromJson(FuzzSeeds.Config(), "config.json");
        Tokenizer = new BertTokenizer(FuzzSeeds.Vocabulary, new BertTokenizerOptions());
    }

    /// <summary>A subfolder with the fixed files of <paramref name="files"/> (written once), where the input file goes.</summary>
    public string Folder(string name, params (string File, byte[] Bytes)[] files)
    {
        string folder = Path.Combine(Directory, name);
        if (!System.IO.Directory.Exists(folder))
        {
            System.IO.Directory.CreateDirectory(folder);
            foreach (var (file, bytes) in files)
            {
                string path = Path.Combine(folder, file);
                System.IO.Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                File.WriteAllBytes(path, bytes);
            }
        }
        return folder;
    }

    public void Dispose()
    {
        try { System.IO.Directory.Delete(Directory, recursive: true); }
        catch (IOException) { }
    }
}

/// <summary>Every reader of untrusted bytes in the engine.</summary>
public static class FuzzTargets
{
    public static readonly IReadOnlyList<FuzzTarget> All =
    [
        new("safetensors", "model.safetensors", FuzzSeeds.SafeTensors, (path, _) =>
        {
            using var file = SafeTensorsFile.Open(path);
            foreach (var tensor in file.Tensors)
                if (tensor.DType is DType.F32 or DType.F16 or DType.BF16 or DType.F64) file.ReadFloat32(tensor);
                else file.ReadRaw(tensor);
        }),
        new("checkpoint-index", Checkpoint.IndexFileName, FuzzSeeds.CheckpointIndex, (path, workspace) =>
        {
            string folder = Path.GetDirectoryName(path)!;
            using var checkpoint = Checkpoint.Open(folder);
            foreach (string name in checkpoint.Names.ToList()) checkpoint.ReadFloat32(name, checkpoint.Info(name).Shape);
        }),
        new("config", BertConfig.FileName, () => [System.Text.Encoding.UTF8.GetBytes(FuzzSeeds.Config().ToJsonString()), System.Text.Encoding.UTF8.GetBytes(FuzzSeeds.ClassifierConfig())], (path, _) =>
        {
            BertConfig.Load(path);
            BertForSequenceClassification.CheckpointLabels(Path.GetDirectoryName(path)!);
        }),
        new("vocab", BertTokenizer.VocabFileName, () => [System.Text.Encoding.UTF8.GetBytes(string.Join('\n', FuzzSeeds.Vocabulary) + "\n")], (path, workspace) =>
        {
            var tokenizer = BertTokenizer.Load(Path.GetDirectoryName(path)!, workspace.Config);
            tokenizer.Encode(FuzzSeeds.Text, FuzzSeeds.Text, 24);
        }),
        new("tokenizer-config", BertTokenizer.ConfigFileName, () => [FuzzSeeds.TokenizerConfig()], (path, workspace) =>
        {
            string folder = Path.GetDirectoryName(path)!;
            File.WriteAllText(Path.Combine(folder, BertTokenizer.VocabFileName), string.Join('\n', FuzzSeeds.Vocabulary) + "\n");
            BertTokenizer.Load(folder).Encode(FuzzSeeds.Text, maxLength: 24);
        }),
        new("onnx", "model.onnx", FuzzSeeds.Onnx, (path, _) =>
        {
            var graph = OnnxGraph.Load(path);
            var weights = OnnxBertImporter.MapWeights(graph, path);
            OnnxBertImporter.InferConfig(graph, weights, path);
        }),
        new("csv", "data.csv", () => [FuzzSeeds.Csv(',')], (path, workspace) => ReadLabelled(path, workspace)),
        new("tsv", "data.tsv", () => [FuzzSeeds.Csv('\t')], (path, workspace) => ReadLabelled(path, workspace)),
        new("jsonl", "data.jsonl", () => [FuzzSeeds.JsonLines()], (path, workspace) => ReadLabelled(path, workspace)),
        new("encode-input", "input.jsonl", () => [FuzzSeeds.EncodeInput()], (path, workspace) => EncodeInput.Read(path, workspace.Tokenizer, workspace.Config, 16)),
        new("trainer-state", Trainer.StateFile, () => [FuzzSeeds.TrainerState()], (path, _) => TrainerState.Read(path)),
        new("sentence-transformers-config", SentenceTransformersConfig.FileName, () => [System.Text.Encoding.UTF8.GetBytes("{\"max_seq_length\": 256, \"do_lower_case\": false}")],
            (path, _) => SentenceTransformersConfig.Load(Path.GetDirectoryName(path)!)),
        new("sentence-transformers-modules", SentenceTransformersConfig.ModulesFileName, () => [FuzzSeeds.Modules()], (path, _) =>
        {
            string folder = Path.GetDirectoryName(path)!;
            Directory.CreateDirectory(Path.Combine(folder, "1_Pooling"));
            File.WriteAllText(Path.Combine(folder, "1_Pooling", "config.json"), "{\"pooling_mode_mean_tokens\": true}");
            SentenceTransformersConfig.Load(folder);
        }),
        new("sentence-transformers-pooling", Path.Combine("1_Pooling", "config.json"), () => [System.Text.Encoding.UTF8.GetBytes(FuzzSeeds.PoolingConfig)], (path, _) =>
        {
            string folder = Path.GetDirectoryName(Path.GetDirectoryName(path)!)!;
            File.WriteAllBytes(Path.Combine(folder, SentenceTransformersConfig.ModulesFileName), FuzzSeeds.Modules());
            SentenceTransformersConfig.Load(folder);
        }),
    ];

    public static FuzzTarget Named(string name) =>
        All.FirstOrDefault(t => t.Name == name) ?? throw new ArgumentException($"no fuzz target '{name}'; the targets are {string.Join(", ", All.Select(t => t.Name))}");

    /// <summary>Writes <paramref name="input"/> where the target reads it (in its own folder of the workspace) and reads it.</summary>
    public static void Run(FuzzTarget target, byte[] input, FuzzWorkspace workspace)
    {
        string folder = target.Name == "checkpoint-index" ? workspace.Folder(target.Name, FuzzSeeds.Shards()) : workspace.Folder(target.Name);
        string path = Path.Combine(folder, target.FileName);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, input);
        target.Read(path, workspace);
    }

    /// <summary>The fine-tuning data path: rows, columns, label names, tokenized examples as a new classifier's, a checkpoint's and regression targets.</summary>
    private static void ReadLabelled(string path, FuzzWorkspace workspace)
    {
        var table = LabelledData.ReadRows(path);
        var single = new LabelledData.Columns("text", null, "label");
        Expected(() => LabelledData.CheckColumns(table, single));
        Expected(() => LabelledData.Examples(table, single, workspace.Tokenizer, workspace.Config, 16, LabelledData.LabelNames(table, single)));
        Expected(() => LabelledData.Examples(table, single, workspace.Tokenizer, workspace.Config, 16, ["LABEL_0", "LABEL_1", "LABEL_2"]));
        Expected(() => LabelledData.Examples(table, single, workspace.Tokenizer, workspace.Config, 16, null));
        Expected(() => LabelledData.Examples(table, single with { Pair = "pair" }, workspace.Tokenizer, workspace.Config, 16, ["a", "b"]));
    }

    /// <summary>Runs one reading step whose failure, named, is a valid outcome; the next step still runs.</summary>
    private static void Expected(Action step)
    {
        try { step(); }
        catch (EngineException) { }
    }
}
