#pragma once
// Subcommands that talk to a running otad over HTTP(S): push, ls, healthcheck.
#include <CLI/CLI.hpp>
#include <functional>

namespace otad::cli {
// Registers the subcommands on `app`; the returned function runs whichever was
// parsed and returns its exit code, or -1 when none of them was.
std::function<int()> add_remote_commands(CLI::App& app);
}  // namespace otad::cli
