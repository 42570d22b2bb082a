#pragma once
// Zero-copy transfer of a file range to a socket (Linux sendfile(2)). Where the
// OS has no such call, send_file() reports `unsupported` and the caller writes
// the bytes from memory (MappedFile) instead.

#include <cstdint>
#include <optional>
#include <system_error>

namespace otad::platform {

struct SendFileResult {
    std::uint64_t bytes_sent = 0;  // bytes handed to the socket by this call
    bool would_block = false;      // the socket's send buffer is full: wait until writable, call again
    bool unsupported = false;      // no zero-copy path for these descriptors: write from memory
    std::error_code error;         // any other failure (peer reset, bad descriptor, ...)
};

// Sends up to `count` bytes of `file_fd` starting at `offset` to `socket_fd`,
// which must be in non-blocking mode. Sends as much as the socket takes without
// blocking; never moves the file's own offset, so one file descriptor may be
// shared by many connections at once. Thread-safe; never throws.
SendFileResult send_file(int socket_fd, int file_fd, std::uint64_t offset, std::uint64_t count) noexcept;

// True when send_file() has a zero-copy implementation on this platform.
bool send_file_supported() noexcept;

// Makes writing to a socket the peer has reset fail with EPIPE instead of
// killing the process with SIGPIPE (sendfile(2) has no MSG_NOSIGNAL). Process-
// wide and idempotent; nothing to do where the OS has no SIGPIPE.
void ignore_broken_pipe_signal() noexcept;

// Flags for send(2) on a header that send_file() will follow: Linux's MSG_MORE
// holds the header back (despite TCP_NODELAY) so it leaves in the same packet as
// the file's first bytes. 0 where the OS has no such flag.
int more_data_send_flags() noexcept;

// Bytes queued on a TCP socket that the peer has not acknowledged yet (Linux
// SIOCOUTQ); nullopt where the OS cannot tell. A falling value means the peer is
// still taking data even while the socket is not writable: that is how a slow
// download is told apart from a stalled one.
std::optional<std::uint64_t> socket_unacknowledged_bytes(int socket_fd) noexcept;

}  // namespace otad::platform
