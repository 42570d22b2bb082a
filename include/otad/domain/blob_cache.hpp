#pragma once
// What the download routes serve, kept ready in memory and shared by every
// connection: for each hot blob an open, memory-mapped file plus its validators
// (ETag, Last-Modified) and who uses it; for each hot friendly path
// (product, version, filename) the artifact behind it; and recent device-access
// decisions. A cache hit costs one mutex, one hash lookup and no system call, so a
// device fetching an image in 4 KiB ranges pays the file open, the SQL and the
// mmap once, not per range.
//
// Freshness: blobs are content-addressed (a SHA-256 names the same bytes forever),
// so a mapping never goes stale; only the rows around it can change (an artifact
// deleted, a release re-uploaded, a key created or revoked). Entries are therefore
//  * dropped at once by invalidate()/invalidate_product(), which the catalogue and
//    the device-key routes call after committing a change in this process, and
//  * re-read from the database (one short indexed query, the mapping kept) when
//    older than `revalidate_after`, which also covers changes made by another
//    process (the `otad` command line) sharing the database.
// Only positive answers are cached: an unknown blob or path is looked up again on
// every request, so a new upload is served at once.
//
// Bounds: at most max_blobs mapped files (each holds one file descriptor; pages
// live in the page cache, not on the heap), max_artifacts friendly paths and
// max_access_entries access decisions, each evicted least recently used first.
// A response that still sends an evicted or invalidated blob keeps its mapping
// alive through its shared_ptr (an unlinked file stays readable), so eviction never
// cuts a transfer.
//
// Thread-safe. Misses run the query and the open on the calling thread, outside
// the lock (two threads missing the same entry both load it; one result is kept).

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "otad/platform/mapped_file.hpp"

namespace otad::storage {
class Database;
class BlobStore;
}  // namespace otad::storage

namespace otad::domain {

// One blob, ready to serve.
struct CachedBlob {
    std::string sha256;                                // lower-case hex
    std::shared_ptr<const platform::MappedFile> file;  // the whole blob, mapped
    std::uint64_t size = 0;                            // == file->size()
    std::string etag;                                  // strong: "\"<sha256>\""
    std::int64_t created_at = 0;                       // blobs.created_at (unix seconds)
    std::string last_modified;                         // IMF-fixdate of created_at
    // Filenames of the artifacts using the blob, oldest artifact first, no repeats
    // (empty for a blob no artifact uses, e.g. between an upload's commit and its rows).
    std::vector<std::string> filenames;
    // Products that have an artifact using the blob: sorted, unique.
    std::vector<std::int64_t> product_ids;
};

// The artifact behind /firmware/{product}/{version}/{filename}.
struct CachedArtifact {
    std::int64_t product_id = 0;
    std::int64_t release_id = 0;
    std::int64_t artifact_id = 0;
    std::string filename;
    std::int64_t created_at = 0;  // artifacts.created_at (the path's Last-Modified)
    std::string last_modified;    // IMF-fixdate of created_at
    std::shared_ptr<const CachedBlob> blob;
};

struct ArtifactLookup {
    enum class Status {
        found,
        not_found,  // no such product, release, or file name in that release
        ambiguous,  // several artifacts of the release share the file name but not the bytes
    };
    Status status = Status::not_found;
    std::shared_ptr<const CachedArtifact> artifact;  // set when found
    std::int64_t product_id = 0;                     // the product's id whenever it exists (0: no such product)
    std::string detail;                              // why not found / ambiguous, for the problem document
};

struct BlobCacheOptions {
    std::size_t max_blobs = 1024;
    std::size_t max_artifacts = 8192;
    std::size_t max_access_entries = 65536;
    std::size_t max_verified_urls = 65536;
    // Rows older than this are re-read on the next use; 0 re-reads on every use.
    std::chrono::milliseconds revalidate_after{10'000};
    // How long a device-access decision is reused.
    std::chrono::milliseconds access_ttl{10'000};
};

struct BlobCacheStats {
    std::uint64_t hits = 0;          // blob and artifact lookups answered from memory
    std::uint64_t misses = 0;        // lookups that went to the database
    std::uint64_t files_opened = 0;  // blob files opened and mapped
    std::uint64_t evictions = 0;
    std::uint64_t invalidations = 0;  // entries dropped by invalidate*/clear
    std::size_t blobs = 0;            // entries now
    std::size_t artifacts = 0;
    std::size_t access_entries = 0;
    std::size_t verified_urls = 0;
};

class BlobCache {
public:
    BlobCache(storage::Database& database, storage::BlobStore& store, BlobCacheOptions options = {});
    ~BlobCache();
    BlobCache(const BlobCache&) = delete;
    BlobCache& operator=(const BlobCache&) = delete;

    // The blob with this SHA-256 (64 lower-case hex digits), or nullptr when it is
    // not a valid name or has no blobs row. Throws std::runtime_error naming the
    // blob when its row exists but its file is missing or has another size (a
    // damaged store), and storage::StorageError when the database fails.
    std::shared_ptr<const CachedBlob> blob(std::string_view sha256);

    // The artifact of `product`'s release `version` whose file name is `filename`.
    // Throws like blob().
    ArtifactLookup artifact(std::string_view product, std::string_view version, std::string_view filename);

    // Device-access decisions made by the api layer, keyed by product and a digest
    // of the presented key ("" when none was presented): the value is the key's
    // name, or nullopt for an open product. Only grants are remembered (a refusal is
    // re-checked every time, so a key created a moment ago works at once).
    // recall_access: outer nullopt = nothing remembered (or older than access_ttl).
    std::optional<std::optional<std::string>> recall_access(std::int64_t product_id, std::string_view key_digest);
    void remember_access(std::int64_t product_id, std::string_view key_digest, std::optional<std::string> key_name);

    // Pre-signed URLs whose signature was already found valid, so a device's run of
    // range requests pays the HMAC (~6 us with OpenSSL 3) once. `url` is the signed
    // path with its query as verified (e.g. path + "?" + expires + "&" + sig). Only
    // valid signatures may be remembered; callers still compare the expiry with the clock.
    bool recall_verified_url(std::string_view url);
    void remember_verified_url(std::string_view url);

    // Call after committing a change that removes or replaces a blob (its row or
    // file deleted): drops the blob and every friendly path that serves it.
    void invalidate(std::string_view sha256);
    // Call after committing any change to a product's releases, artifacts, channels
    // that matter to downloads, or device keys (created, revoked): drops the
    // product's friendly paths and access decisions, and makes every cached blob
    // re-read which products use it on its next use (its mapping is kept).
    void invalidate_product(std::int64_t product_id);
    // The same by name (looks the id up: call it off the I/O threads, e.g. from an
    // operator route); also drops the name's friendly paths if the product is gone.
    void invalidate_product(std::string_view product_name);
    // Drops everything.
    void clear();

    BlobCacheStats stats() const;
    const BlobCacheOptions& options() const noexcept { return options_; }

private:
    struct State;
    struct BlobRows;
    std::optional<BlobRows> read_blob_rows(std::string_view sha256);
    std::shared_ptr<const CachedBlob> load_blob(std::string_view sha256,
                                                std::shared_ptr<const platform::MappedFile> reuse);

    storage::Database& database_;
    storage::BlobStore& store_;
    BlobCacheOptions options_;
    std::unique_ptr<State> state_;
};

}  // namespace otad::domain
