#pragma once
// Content-addressed firmware bytes under <data_dir>/blobs/ab/cd/<sha256hex>, with
// temp files in <data_dir>/blobs/tmp/. A blob file is written once and never
// changed, so readers (MappedFile) can keep it open while others come and go.
//
// Crash-safety contract for uploads (the catalogue builds on it):
//   1. stream the bytes into a BlobWriter and commit() it: the file is fsynced,
//      renamed to its content address and the directories are fsynced;
//   2. only then insert the blobs row and the artifact rows, in one transaction.
// A crash can leave an orphan file or a blob row without artifacts (collected by
// collect_orphan_blobs at start-up and, while serving, by OrphanBlobCollector),
// never a row without its bytes.
//
// Errors: StorageError(no_space) when the file system is full (ENOSPC, EDQUOT),
// StorageError(io) for any other file-system failure; either way nothing was stored.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "otad/platform/filesystem.hpp"
#include "otad/util/crypto.hpp"
#include "otad/util/periodic.hpp"

namespace otad::storage {

class Database;

struct BlobInfo {
    std::string sha256;  // lower-case hex
    std::string md5;     // lower-case hex
    std::uint64_t size = 0;
};

class BlobStore;

// Streams one upload into a temp file while hashing it. Not thread-safe. The
// destructor removes the temp file unless commit() succeeded.
class BlobWriter {
public:
    BlobWriter(BlobWriter&&) noexcept;
    BlobWriter& operator=(BlobWriter&&) = delete;
    BlobWriter(const BlobWriter&) = delete;
    BlobWriter& operator=(const BlobWriter&) = delete;
    ~BlobWriter();

    // Appends bytes. Throws BlobTooLarge (and drops the temp file) when the total
    // would exceed the limit; StorageError(no_space) on a full file system, (io) on
    // another write failure. Either way the temp file is gone.
    void write(std::string_view bytes);
    std::uint64_t bytes_written() const noexcept { return size_; }

    // Makes the blob durable at its content address and returns its digests. If a
    // blob with the same SHA-256 already exists, the temp file is dropped (identical
    // bytes are stored once). With `expected_sha256` (any case), a different digest
    // throws StorageError(mismatch) and stores nothing. Call at most once.
    BlobInfo commit(std::optional<std::string_view> expected_sha256 = std::nullopt);

    // Drops the temp file now (the destructor would do it too).
    void abandon() noexcept;

private:
    friend class BlobStore;
    BlobWriter(BlobStore& store, std::filesystem::path temp_path, platform::WritableFile file, std::uint64_t max_bytes);

    BlobStore* store_;
    std::filesystem::path temp_path_;
    platform::WritableFile file_;
    util::Digest sha256_;
    util::Digest md5_;
    std::uint64_t size_ = 0;
    std::uint64_t max_bytes_;
    bool finished_ = false;
};

class BlobStore {
public:
    // Creates <data_dir>/blobs and blobs/tmp (0700) if missing.
    explicit BlobStore(const std::filesystem::path& data_dir);

    // A writer for one blob of at most `max_bytes` bytes. Thread-safe.
    BlobWriter open_writer(std::uint64_t max_bytes);

    // Where the blob with this SHA-256 lives (whether or not it exists). Throws
    // std::invalid_argument unless `sha256` is 64 lower-case hex digits, so a
    // request can never name a path outside the store.
    std::filesystem::path path_for(std::string_view sha256) const;
    static bool is_valid_sha256(std::string_view sha256) noexcept;

    // Readiness probe: creates, writes, fsyncs and removes a small file in the temp
    // directory, so a full or read-only file system shows. Throws StorageError
    // (no_space or io) when it cannot. Thread-safe.
    void probe_write();

    bool exists(std::string_view sha256) const;
    // Deletes the file; false if it was not there. Does not touch the database.
    bool remove(std::string_view sha256);
    // Deletes the file only if it was last written more than `grace` ago, checked
    // and unlinked under the lock that commits take, so a blob an upload has just
    // committed (or re-committed) is never removed. Used by collect_orphan_blobs.
    bool remove_if_stale(std::string_view sha256, std::chrono::seconds grace);
    // Re-hashes the file (streaming); false if missing or its bytes no longer match.
    bool verify(std::string_view sha256) const;

    // Removes temp files left by a crash; returns how many. Call at start-up, before
    // uploads are accepted: it removes every temp file older than `min_age`.
    std::size_t cleanup_temp_files(std::chrono::seconds min_age = std::chrono::seconds(0));

    // Calls fn(sha256) for every blob file in the store (skips stray names).
    template <class Fn>
    void for_each_blob(Fn&& fn) const;
    // Seconds since the blob file was last written or re-committed; nullopt if missing.
    std::optional<std::int64_t> age_seconds(std::string_view sha256) const;

    const std::filesystem::path& root() const noexcept { return root_; }
    const std::filesystem::path& temp_dir() const noexcept { return temp_dir_; }

private:
    friend class BlobWriter;
    std::filesystem::path root_;
    std::filesystem::path temp_dir_;
    // Shared by commits, exclusive for garbage collection: a commit that finds its
    // blob already present refreshes the file's mtime under the shared lock, and
    // collection only unlinks files whose mtime is old under the exclusive lock.
    mutable std::shared_mutex gc_mutex_;
};

// Deletes blobs nobody references: blob rows without artifacts, and blob files
// without rows, whose file was last written more than `grace` ago (so a concurrent
// upload, between its commit() and its row insert, is never collected). Rows go
// first (committed), files after, so a row never outlives its file. Returns the
// number of files deleted. Safe while serving: the grace (and commit refreshing a
// re-committed file's mtime) is what keeps an upload in progress out of reach;
// temp files of uploads being received are never looked at.
std::size_t collect_orphan_blobs(Database& database, BlobStore& store,
                                 std::chrono::seconds grace = std::chrono::hours(1));

// Runs collect_orphan_blobs every `period` on a background thread while the daemon
// serves, so an orphan (a crash between an upload's commit and its rows) is removed
// once it is `grace` old, not only at a start-up that happens an hour later.
// Failures (busy database, full disk) are logged and retried next period.
// A zero period disables it (start() does nothing).
class OrphanBlobCollector {
public:
    OrphanBlobCollector(Database& database, BlobStore& store, std::chrono::milliseconds period,
                        std::chrono::seconds grace = std::chrono::hours(1));
    ~OrphanBlobCollector();  // stop()
    OrphanBlobCollector(const OrphanBlobCollector&) = delete;
    OrphanBlobCollector& operator=(const OrphanBlobCollector&) = delete;

    void start();
    void stop() noexcept;
    // One collection now; the number of files removed, or nullopt when it failed
    // (logged). The background thread calls this each period.
    std::optional<std::size_t> run_once() noexcept;
    // How many collections have run (finished, failed or not).
    std::uint64_t runs() const noexcept { return runs_.load(std::memory_order_relaxed); }

private:
    Database& database_;
    BlobStore& store_;
    std::chrono::seconds grace_;
    std::atomic<std::uint64_t> runs_{0};
    util::PeriodicTask task_;  // last: its thread stops before the members it uses go
};

// --- implementation of the template --------------------------------------

template <class Fn>
void BlobStore::for_each_blob(Fn&& fn) const {
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(root_, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
        if (it->path() == temp_dir_) {
            it.disable_recursion_pending();
            continue;
        }
        if (it.depth() != 2 || !it->is_regular_file(ec)) continue;
        std::string name = it->path().filename().string();
        if (is_valid_sha256(name) && it->path() == path_for(name)) fn(name);
    }
}

}  // namespace otad::storage
