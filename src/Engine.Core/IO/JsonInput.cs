using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Unicode;

namespace Engine.IO;

/// <summary>
/// JSON the engine did not write (configs, headers, data lines), parsed so that anything wrong with it is an
/// <see cref="EngineException"/> naming the source: invalid UTF-8, invalid JSON, a property given twice (which
/// System.Text.Json would otherwise accept, or throw on later as an ArgumentException), and strings that are not
/// valid Unicode (a lone surrogate escape, which would otherwise throw on first read).
/// </summary>
public static class JsonInput
{
    private static readonly JsonDocumentOptions Options = new() { AllowDuplicateProperties = false, MaxDepth = 64 };

    public static JsonDocument Parse(ReadOnlyMemory<byte> utf8, string source)
    {
        if (!Utf8.IsValid(utf8.Span)) throw new EngineException($"{source}: not valid UTF-8 text");
        JsonDocument document;
        try { document = JsonDocument.Parse(utf8, Options); }
        catch (JsonException e) { throw new EngineException($"{source}: invalid JSON: {e.Message}", e); }
        catch (InvalidOperationException e) { throw new EngineException($"{source}: a property name is not valid Unicode (a lone surrogate escape?)", e); }
        try
        {
            CheckStrings(document.RootElement, source);
            return document;
        }
        catch
        {
            document.Dispose();
            throw;
        }
    }

    public static JsonDocument Parse(string json, string source) => Parse(System.Text.Encoding.UTF8.GetBytes(json), source);

    /// <summary>A file's JSON as a mutable node tree (checked as <see cref="Parse(ReadOnlyMemory{byte}, string)"/> does).</summary>
    public static JsonNode? ReadNode(string path)
    {
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new EngineException($"{path}: cannot read: {e.Message}", e); }
        using (Parse(bytes, path)) { }
        return JsonNode.Parse(bytes, documentOptions: Options);
    }

    /// <summary>A file's top-level JSON object; anything else is an error naming the file.</summary>
    public static JsonObject ReadObject(string path) => ReadNode(path) as JsonObject ?? throw new EngineException($"{path}: not a JSON object");

    private static void CheckStrings(JsonElement element, string source)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    Decode(() => property.Name, source);
                    CheckStrings(property.Value, source);
                }
                break;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray()) CheckStrings(item, source);
                break;
            case JsonValueKind.String:
                Decode(element.GetString, source);
                break;
        }
    }

    private static void Decode(Func<string?> read, string source)
    {
        try { read(); }
        catch (InvalidOperationException e) { throw new EngineException($"{source}: a string is not valid Unicode (a lone surrogate escape?)", e); }
    }
}
