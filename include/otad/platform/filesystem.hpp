#pragma once
// Durable file-system operations: the few OS calls the storage layer needs to keep
// the "bytes on disk before the row that names them" promise across a crash or
// power loss. POSIX implementation; on Windows directory syncs are no-ops and
// permissions fall back to what std::filesystem can express.
//
// Every function throws std::system_error whose message names the path.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace otad::platform {

// Flushes a file's data and metadata to stable storage (fsync).
void fsync_file(const std::filesystem::path& path);
void fsync_file(int fd);  // `fd` stays open and owned by the caller

// Flushes a directory's entries (a create, rename or unlink inside it) to stable
// storage. POSIX: open(O_RDONLY|O_DIRECTORY) + fsync. No-op on Windows.
void fsync_directory(const std::filesystem::path& dir);

// Restricts `path` to its owner: 0600 for files, 0700 for directories.
void set_owner_only(const std::filesystem::path& path);

// Creates `dir` and any missing parents (like mkdir -p). Each directory created
// here is made durable by syncing its parent. With owner_only, `dir` itself gets
// 0700 whether new or not. Returns true if `dir` did not exist before.
bool ensure_directory(const std::filesystem::path& dir, bool owner_only = false);

// Replaces `path` with `bytes` atomically: a temp file in the same directory is
// written, fsynced and renamed over `path`, then the directory is fsynced. Readers
// see either the old or the new content, never a mix. With owner_only the file is
// created 0600 (keys, certificates); otherwise 0644 minus the umask.
void atomic_write_file(const std::filesystem::path& path, std::string_view bytes, bool owner_only);

// A file being written: created exclusively (fails if `path` exists), closed by
// the destructor. Not thread-safe. Used for temp files that are fsynced and renamed.
class WritableFile {
public:
    // Creates `path` (O_CREAT|O_EXCL); mode 0600 with owner_only, else 0644 (minus umask).
    static WritableFile create_exclusive(const std::filesystem::path& path, bool owner_only);

    WritableFile(WritableFile&& other) noexcept;
    WritableFile& operator=(WritableFile&& other) noexcept;
    WritableFile(const WritableFile&) = delete;
    WritableFile& operator=(const WritableFile&) = delete;
    ~WritableFile();  // closes without syncing; never throws

    void write(std::string_view bytes);  // writes all of it (retries short writes, EINTR)
    void sync();                         // fsync
    void close();                        // reports a failed close
    bool is_open() const noexcept { return fd_ >= 0; }
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    WritableFile(std::filesystem::path path, int fd) : path_(std::move(path)), fd_(fd) {}
    std::filesystem::path path_;
    int fd_ = -1;
};

// An advisory, exclusive, process-level lock on a file (flock), held while the
// object lives: one otad per data directory. The file is created if missing.
class FileLock {
public:
    // Returns an unlocked (owns_lock() == false) object if another process holds it.
    static FileLock try_acquire(const std::filesystem::path& path);

    FileLock(FileLock&& other) noexcept;
    FileLock& operator=(FileLock&& other) noexcept;
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;
    ~FileLock();

    bool owns_lock() const noexcept { return fd_ >= 0; }

private:
    FileLock() = default;
    int fd_ = -1;
};

}  // namespace otad::platform
