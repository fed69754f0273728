using BenchmarkDotNet.Running;

BenchmarkSwitcher.FromAssembly(typeof(Engine.Benchmarks.EncoderForwardBenchmarks).Assembly).Run(args);
