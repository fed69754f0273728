using BenchmarkDotNet.Running;

if (args is ["int8-accuracy"]) Engine.Benchmarks.Int8Accuracy.Run();
else if (args is ["ort-embed", var file, ..]) Engine.Benchmarks.OnnxRuntimeEmbed.Run(file, args.Length > 2 ? int.Parse(args[2]) : 32, args.Length > 3 ? int.Parse(args[3]) : 128);
else if (args is ["chart", var csv, var png]) Engine.Benchmarks.SpeedChart.Run(csv, png);
else BenchmarkSwitcher.FromAssembly(typeof(Engine.Benchmarks.EncoderForwardBenchmarks).Assembly).Run(args);
