namespace Engine;

/// <summary>
/// A problem with the user's input — a checkpoint, a file, a field, a tensor — reported as one clear
/// message that names the offending item. The CLI prints it as a single line and exits non-zero.
/// </summary>
public class EngineException : Exception
{
    public EngineException(string message) : base(message) { }

    public EngineException(string message, Exception inner) : base(message, inner) { }
}
