namespace Engine.Reference; internal static class Placeholder {}
