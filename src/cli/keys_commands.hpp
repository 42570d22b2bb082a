#pragma once
// `otad keys create|list|retire`: manifest signing keys, offline on the data dir
// (like `otad token`). A daemon running on the same data dir picks changes up on
// its next poll (docs/device-api.md, "Signing keys").
#include <functional>

#include <CLI/CLI.hpp>

namespace otad::cli {
// Registers the subcommands on `app`; the returned function runs whichever was
// parsed and returns its exit code, or -1 when none of them was.
std::function<int()> add_keys_commands(CLI::App& app);
}  // namespace otad::cli
