// The `evl` command line: subcommands, their flags, and dispatch.
#pragma once

namespace evl {

// Parses argv, runs the subcommand, returns the process exit status. Never throws.
int RunCli(int argc, char** argv);

}  // namespace evl
