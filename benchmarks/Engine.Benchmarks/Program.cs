using BenchmarkDotNet.Running;

if (args is ["int8-accuracy"]) Engine.Benchmarks.Int8Accuracy.Run();
else BenchmarkSwitcher.FromAssembly(typeof(Engine.Benchmarks.EncoderForwardBenchmarks).Assembly).Run(args);
