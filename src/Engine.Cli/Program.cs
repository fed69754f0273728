using System.CommandLine;
using Engine.Cli;

return Commands.Build().Parse(args).Invoke();
