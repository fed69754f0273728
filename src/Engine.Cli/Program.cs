return Engine.Cli.Cli.Run(args);
