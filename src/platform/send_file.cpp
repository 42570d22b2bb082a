#include "otad/platform/send_file.hpp"

#include <cerrno>
#include <csignal>

#if defined(__linux__)
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/types.h>
#endif

namespace otad::platform {

void ignore_broken_pipe_signal() noexcept {
#if defined(SIGPIPE)
    std::signal(SIGPIPE, SIG_IGN);
#endif
}

#if defined(__linux__)

bool send_file_supported() noexcept { return true; }

int more_data_send_flags() noexcept { return MSG_MORE; }

SendFileResult send_file(int socket_fd, int file_fd, std::uint64_t offset, std::uint64_t count) noexcept {
    // Linux transfers at most 0x7ffff000 bytes per call.
    constexpr std::uint64_t max_per_call = 0x7ffff000;
    SendFileResult result;
    while (result.bytes_sent < count) {
        auto file_offset = static_cast<off_t>(offset + result.bytes_sent);
        std::uint64_t want = count - result.bytes_sent;
        if (want > max_per_call) want = max_per_call;
        ssize_t n = ::sendfile(socket_fd, file_fd, &file_offset, static_cast<std::size_t>(want));
        if (n > 0) {
            result.bytes_sent += static_cast<std::uint64_t>(n);
            continue;
        }
        if (n == 0) {
            // The file ended before `count` bytes: it is shorter than the caller thinks.
            result.error = std::make_error_code(std::errc::io_error);
            break;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            result.would_block = true;
            break;
        }
        if ((errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) && result.bytes_sent == 0) {
            // Descriptors sendfile cannot handle (e.g. a file system without it): copy instead.
            result.unsupported = true;
            break;
        }
        result.error = std::error_code(errno, std::generic_category());
        break;
    }
    return result;
}

std::optional<std::uint64_t> socket_unacknowledged_bytes(int socket_fd) noexcept {
    int queued = 0;
    if (::ioctl(socket_fd, SIOCOUTQ, &queued) != 0 || queued < 0) return std::nullopt;
    return static_cast<std::uint64_t>(queued);
}

#else

bool send_file_supported() noexcept { return false; }

int more_data_send_flags() noexcept { return 0; }

std::optional<std::uint64_t> socket_unacknowledged_bytes(int) noexcept { return std::nullopt; }

SendFileResult send_file(int, int, std::uint64_t, std::uint64_t) noexcept {
    SendFileResult result;
    result.unsupported = true;
    return result;
}

#endif

}  // namespace otad::platform
