#pragma once
namespace otad::platform {
// True when standard error is an interactive terminal (progress bars go there).
bool stderr_is_terminal() noexcept;
}  // namespace otad::platform
