namespace Engine.Backends.Cpu;

/// <summary>The processor's cache sizes, for blocking the CPU kernels (read once from Linux's sysfs; typical sizes elsewhere).</summary>
internal static class CpuCaches
{
    /// <summary>Level-1 data cache of one core in bytes (32 KiB where the system does not say).</summary>
    public static int Level1DataBytes { get; } = Read(level: 1, type: "Data") ?? 32 * 1024;

    private static int? Read(int level, string type)
    {
        try
        {
            foreach (var index in Directory.EnumerateDirectories("/sys/devices/system/cpu/cpu0/cache", "index*"))
            {
                if (File.ReadAllText(Path.Combine(index, "level")).Trim() != level.ToString()) continue;
                if (File.ReadAllText(Path.Combine(index, "type")).Trim() != type) continue;
                var size = File.ReadAllText(Path.Combine(index, "size")).Trim(); // "48K"
                int multiplier = size.EndsWith('K') ? 1024 : size.EndsWith('M') ? 1024 * 1024 : 1;
                return int.TryParse(size.TrimEnd('K', 'M'), out int value) && value > 0 ? value * multiplier : null;
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }
}
