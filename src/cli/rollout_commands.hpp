#pragma once
// `otad rollout start|status|pause|resume|advance|abort`: staged rollouts on a
// running otad over its operator API (docs/rollouts.md).
#include <CLI/CLI.hpp>
#include <functional>

namespace otad::cli {
// Registers the subcommands on `app`; the returned function runs whichever was
// parsed and returns its exit code, or -1 when none of them was.
std::function<int()> add_rollout_commands(CLI::App& app);
}  // namespace otad::cli
