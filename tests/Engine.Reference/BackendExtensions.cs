using Engine.Backends;

namespace Engine.Reference;

/// <summary>Whole-buffer transfers for checks: a new buffer from an array, a NaN-poisoned one, a buffer read back.</summary>
public static class BackendExtensions
{
    public static DeviceBuffer<T> UploadArray<T>(this IBackend backend, T[] values) where T : unmanaged
    {
        var buffer = backend.Allocate<T>(values.Length);
        backend.Upload<T>(values, buffer);
        return buffer;
    }

    /// <summary>A buffer of NaN: an element an op fails to write stays NaN and fails every comparison.</summary>
    public static DeviceBuffer<float> Poisoned(this IBackend backend, int length) => backend.UploadArray(Enumerable.Repeat(float.NaN, length).ToArray());

    public static float[] DownloadArray(this IBackend backend, DeviceBuffer<float> buffer)
    {
        var values = new float[buffer.Length];
        backend.Download(buffer, values);
        return values;
    }
}
