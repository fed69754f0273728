using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Engine.Validation;

namespace Engine.Cli;

public static partial class Commands
{
    private static Command ValidateCommand()
    {
        var reference = CliOptions.Path("--reference", ValueKind.InputFile, "The reference file: inputs and expected outputs in one safetensors file (README: the reference format)", required: true);
        var grads = CliOptions.Flag("--grads", "Also compare the reference's grad.<parameter> tensors, after one backward of its labels' loss");
        var atol = CliOptions.Number("--atol", "Absolute tolerance: an element passes when |engine − reference| ≤ atol + rtol·|reference|", 0, 1e6, 1e-4f);
        var rtol = CliOptions.Number("--rtol", "Relative tolerance (see --atol)", 0, 1e6, 1e-3f);
        var json = CliOptions.Flag("--json", "Print the comparisons as one JSON object instead of a table");
        var command = new Command("validate", "Run the model on a reference file's inputs and compare every output it holds (exit 0 only if all pass)")
        {
            Model, reference, grads, atol, rtol, json,
        };
        command.SetAction(result => Verb(result, () =>
        {
            string directory = ResolveModel(result);
            var options = new ValidationOptions(result.GetValue(atol), result.GetValue(rtol), result.GetValue(grads));
            using var backend = TrainingBackend(result);
            var comparisons = ReferenceValidator.Validate(directory, result.GetValue(reference)!, backend, options);
            var invariant = CultureInfo.InvariantCulture;
            string tolerance = string.Create(invariant, $"{options.Absolute:G3} + {options.Relative:G3}·|ref|");
            if (result.GetValue(json))
            {
                Console.WriteLine(new JsonObject
                {
                    ["model"] = directory,
                    ["reference"] = result.GetValue(reference),
                    ["atol"] = options.Absolute,
                    ["rtol"] = options.Relative,
                    ["passed"] = comparisons.All(c => c.Passed),
                    ["tensors"] = new JsonArray([.. comparisons.Select(c => (JsonNode)new JsonObject
                    {
                        ["name"] = c.Name,
                        ["shape"] = new JsonArray([.. c.Shape.Select(d => (JsonNode)d)]),
                        ["compared"] = c.Compared,
                        ["max_abs_diff"] = c.MaxAbsolute,
                        ["max_rel_diff"] = c.MaxRelative,
                        ["passed"] = c.Passed,
                    })]),
                }.ToJsonString());
            }
            else
            {
                int width = Math.Max(6, comparisons.Max(c => c.Name.Length));
                Console.WriteLine($"{"tensor".PadRight(width)}  {"shape",-18}  {"max |Δ|",10}  {"max rel Δ",10}  {"tolerance",-20}  result");
                foreach (var c in comparisons)
                    Console.WriteLine(string.Create(invariant,
                        $"{c.Name.PadRight(width)}  {"[" + string.Join(", ", c.Shape) + "]",-18}  {c.MaxAbsolute,10:E2}  {c.MaxRelative,10:E2}  {tolerance,-20}  {(c.Passed ? "pass" : "FAIL")}"));
            }
            var failed = comparisons.Where(c => !c.Passed).Select(c => c.Name).ToList();
            if (failed.Count > 0)
                throw new EngineException($"{failed.Count} of {comparisons.Count} tensors differ beyond the tolerance: {string.Join(", ", failed)}");
        }));
        return command;
    }
}
