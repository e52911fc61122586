// The gilscope command line: parses arguments, dispatches to a subcommand,
// and turns every failure into a one-line message and an exit status.
//
// Exit statuses: the script's own status for `run` (0 ok, n for
// SystemExit(n), 1 for an uncaught exception); 2 for bad usage, a script
// that cannot be opened or an output folder that cannot be written; 70 when
// gilscope itself fails.
#pragma once

namespace gilscope::cli {

inline constexpr int kExitUsage = 2;
inline constexpr int kExitInternal = 70;

int Main(int argc, char** argv);

}  // namespace gilscope::cli
