#include "otad/platform/filesystem.hpp"

#include <cerrno>
#include <cstdio>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#include <share.h>
#include <sys/stat.h>
#else
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace fs = std::filesystem;

namespace otad::platform {
namespace {

// 16 hex digits for a temporary file's name. Uniqueness is enforced by the
// exclusive create; randomness only keeps concurrent writers from colliding.
std::string random_suffix() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    char text[17];
    std::snprintf(text, sizeof text, "%016llx", static_cast<unsigned long long>(rng()));
    return text;
}

[[noreturn]] void throw_errno(int error, std::string_view what, const fs::path& path) {
    throw std::system_error(error, std::generic_category(), std::string(what) + " " + path.string());
}

#ifdef _WIN32
int open_for_write(const fs::path& path, bool owner_only) {
    int fd = -1;
    int mode = _S_IREAD | _S_IWRITE;
    if (_wsopen_s(&fd, path.c_str(), _O_WRONLY | _O_CREAT | _O_EXCL | _O_BINARY | _O_NOINHERIT, _SH_DENYWR, mode) != 0)
        return -1;
    return fd;
}
int close_fd(int fd) { return _close(fd); }
int sync_fd(int fd) { return _commit(fd); }
long write_fd(int fd, const char* data, std::size_t n) {
    return _write(fd, data, static_cast<unsigned>(n > 0x40000000 ? 0x40000000 : n));
}
#else
int open_for_write(const fs::path& path, bool owner_only) {
    return ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, owner_only ? 0600 : 0644);
}
int close_fd(int fd) { return ::close(fd); }
int sync_fd(int fd) { return ::fsync(fd); }
long write_fd(int fd, const char* data, std::size_t n) { return ::write(fd, data, n); }
#endif

}  // namespace

void fsync_file(int fd) {
    if (sync_fd(fd) != 0)
        throw std::system_error(errno, std::generic_category(), "fsync of file descriptor " + std::to_string(fd));
}

void fsync_file(const fs::path& path) {
#ifdef _WIN32
    int fd = -1;
    if (_wsopen_s(&fd, path.c_str(), _O_RDWR | _O_BINARY, _SH_DENYNO, 0) != 0) throw_errno(errno, "cannot open", path);
#else
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw_errno(errno, "cannot open", path);
#endif
    if (sync_fd(fd) != 0) {
        int error = errno;
        close_fd(fd);
        throw_errno(error, "fsync failed for", path);
    }
    close_fd(fd);
}

void fsync_directory(const fs::path& dir) {
#ifdef _WIN32
    (void)dir;  // Windows has no directory fsync; NTFS journals metadata itself.
#else
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) throw_errno(errno, "cannot open directory", dir);
    if (::fsync(fd) != 0) {
        int error = errno;
        ::close(fd);
        // Some file systems refuse fsync on directories; their metadata is
        // synchronous or journalled, so there is nothing more we could do.
        if (error == EINVAL || error == ENOTSUP) return;
        throw_errno(error, "fsync failed for directory", dir);
    }
    ::close(fd);
#endif
}

void set_owner_only(const fs::path& path) {
    std::error_code ec;
    bool is_dir = fs::is_directory(path, ec);
    if (ec) throw std::system_error(ec, "cannot stat " + path.string());
    auto perms = fs::perms::owner_read | fs::perms::owner_write;
    if (is_dir) perms |= fs::perms::owner_exec;
    fs::permissions(path, perms, fs::perm_options::replace, ec);
    if (ec) throw std::system_error(ec, "cannot restrict permissions of " + path.string());
}

bool ensure_directory(const fs::path& dir, bool owner_only) {
    std::error_code ec;
    if (fs::is_directory(dir, ec)) {
        if (owner_only) set_owner_only(dir);
        return false;
    }
    // Collect the missing ancestors, outermost first, so each new entry can be
    // made durable in its parent.
    std::vector<fs::path> missing;
    for (fs::path p = dir; !p.empty(); p = p.parent_path()) {
        if (fs::exists(p, ec)) break;
        missing.push_back(p);
        if (p == p.parent_path()) break;
    }
    for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
        if (!fs::create_directory(*it, ec) && ec)
            throw std::system_error(ec, "cannot create directory " + it->string());
        fs::path parent = it->parent_path();
        fsync_directory(parent.empty() ? fs::path(".") : parent);
    }
    if (!fs::is_directory(dir, ec))
        throw std::system_error(std::make_error_code(std::errc::not_a_directory), "not a directory: " + dir.string());
    if (owner_only) set_owner_only(dir);
    return true;
}

void atomic_write_file(const fs::path& path, std::string_view bytes, bool owner_only) {
    fs::path dir = path.parent_path();
    if (dir.empty()) dir = ".";
    fs::path temp = dir / (path.filename().string() + ".tmp-" + random_suffix());
    try {
        WritableFile file = WritableFile::create_exclusive(temp, owner_only);
        file.write(bytes);
        file.sync();
        file.close();
        std::error_code ec;
        fs::rename(temp, path, ec);
        if (ec) throw std::system_error(ec, "cannot rename " + temp.string() + " to " + path.string());
    } catch (...) {
        std::error_code ignored;
        fs::remove(temp, ignored);
        throw;
    }
    fsync_directory(dir);
}

// --- WritableFile ---------------------------------------------------------

WritableFile WritableFile::create_exclusive(const fs::path& path, bool owner_only) {
    int fd = open_for_write(path, owner_only);
    if (fd < 0) throw_errno(errno, "cannot create", path);
    return WritableFile(path, fd);
}

WritableFile::WritableFile(WritableFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)) {}

WritableFile& WritableFile::operator=(WritableFile&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) close_fd(fd_);
        path_ = std::move(other.path_);
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

WritableFile::~WritableFile() {
    if (fd_ >= 0) close_fd(fd_);
}

void WritableFile::write(std::string_view bytes) {
    if (fd_ < 0)
        throw std::system_error(std::make_error_code(std::errc::bad_file_descriptor),
                                "write to closed file " + path_.string());
    while (!bytes.empty()) {
        long n = write_fd(fd_, bytes.data(), bytes.size());
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno(errno, "cannot write", path_);
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
}

void WritableFile::sync() {
    if (fd_ < 0)
        throw std::system_error(std::make_error_code(std::errc::bad_file_descriptor),
                                "fsync of closed file " + path_.string());
    if (sync_fd(fd_) != 0) throw_errno(errno, "fsync failed for", path_);
}

void WritableFile::close() {
    if (fd_ < 0) return;
    int fd = std::exchange(fd_, -1);
    // POSIX leaves the descriptor closed even when close() fails (Linux: always).
    if (close_fd(fd) != 0 && errno != EINTR) throw_errno(errno, "cannot close", path_);
}

// --- FileLock -------------------------------------------------------------

FileLock FileLock::try_acquire(const fs::path& path) {
    FileLock lock;
#ifdef _WIN32
    int fd = -1;
    // Deny every other open: the closest Windows analogue of an exclusive flock.
    if (_wsopen_s(&fd, path.c_str(), _O_RDWR | _O_CREAT | _O_NOINHERIT, _SH_DENYRW, _S_IREAD | _S_IWRITE) != 0) {
        if (errno == EACCES) return lock;
        throw_errno(errno, "cannot open lock file", path);
    }
    lock.fd_ = fd;
#else
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) throw_errno(errno, "cannot open lock file", path);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int error = errno;
        ::close(fd);
        if (error == EWOULDBLOCK) return lock;
        throw_errno(error, "cannot lock", path);
    }
    lock.fd_ = fd;
#endif
    return lock;
}

FileLock::FileLock(FileLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

FileLock& FileLock::operator=(FileLock&& other) noexcept {
    if (this != &other) {
        if (fd_ >= 0) close_fd(fd_);
        fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
}

FileLock::~FileLock() {
    if (fd_ >= 0) close_fd(fd_);  // closing the descriptor releases the flock
}

}  // namespace otad::platform
