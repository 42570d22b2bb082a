#pragma once
// The `otad` command line: serve, migrate, token, keys, push, ls, version.

namespace otad::cli {

// Parses argv and runs the chosen subcommand; returns the process exit code
// (0 ok, 1 runtime failure with a message on stderr, 2 bad usage).
int run(int argc, char** argv);

}  // namespace otad::cli
