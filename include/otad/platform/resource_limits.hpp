#pragma once
// The process's open-file limit (POSIX RLIMIT_NOFILE): what bounds how many
// connections, mapped blobs and database files otad can hold at once. Past the
// soft limit, open(2) and accept(2) fail with EMFILE.

#include <cstdint>
#include <optional>

namespace otad::platform {

struct OpenFileLimit {
    std::uint64_t soft = 0;  // in force (UINT64_MAX: unlimited)
    std::uint64_t hard = 0;  // the most an unprivileged process may raise `soft` to
};

// The limits in force, or nullopt where the OS has no such limit or cannot tell.
// Thread-safe; never throws.
std::optional<OpenFileLimit> open_file_limit() noexcept;

// Raises the soft limit to min(wanted, hard) when it is lower (never lowers it)
// and returns the limits in force afterwards: a failed raise leaves them as they
// were. nullopt as for open_file_limit(). Process-wide; call it at start-up.
std::optional<OpenFileLimit> raise_open_file_limit(std::uint64_t wanted) noexcept;

}  // namespace otad::platform
