#include "otad/platform/terminal.hpp"

#include <cerrno>

#if defined(_WIN32)
#include <io.h>
#include <stdio.h>
#else
#include <unistd.h>
#endif

namespace otad::platform {

bool stderr_is_terminal() noexcept {
#if defined(_WIN32)
    return _isatty(_fileno(stderr)) != 0;
#else
    return ::isatty(STDERR_FILENO) == 1;
#endif
}

void write_to_stderr(std::string_view bytes) noexcept {
    while (!bytes.empty()) {
#if defined(_WIN32)
        const int n = _write(_fileno(stderr), bytes.data(), static_cast<unsigned>(bytes.size()));
#else
        const ssize_t n = ::write(STDERR_FILENO, bytes.data(), bytes.size());
#endif
        if (n < 0) {
            if (errno == EINTR) continue;
            return;  // nowhere left to report a failing log
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

}  // namespace otad::platform
