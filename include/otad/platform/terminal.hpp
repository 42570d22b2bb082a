#pragma once
#include <string_view>

namespace otad::platform {
// True when standard error is an interactive terminal (progress bars go there).
bool stderr_is_terminal() noexcept;

// Writes `bytes` to standard error with the OS's write call, bypassing stdio
// and its lock: several threads may call it at once, and each call's bytes stay
// together (one write(2) for up to PIPE_BUF bytes to a pipe, any size to a
// file). Retries after signals and partial writes; gives up silently on errors.
void write_to_stderr(std::string_view bytes) noexcept;
}  // namespace otad::platform
