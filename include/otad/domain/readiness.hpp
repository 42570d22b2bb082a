#pragma once
// Whether otad can store what it is sent right now: the database commits a small
// write (one settings row rewritten, synchronous=FULL) and the blob directory
// takes a file that is written, fsynced and removed. Reads alone would say
// "ready" on a full disk.
//
// A probe costs a commit and a file create+fsync+unlink, so one answer serves
// every check() within `reuse` (default 1 s): a load balancer asking ten times a
// second costs one probe a second. Failures say only their kind (the /readyz
// caller needs no credentials); details go to the log, once when readiness is
// lost and once when it returns. Thread-safe: concurrent callers wait for the
// probe in progress and share its answer.

#include <chrono>
#include <mutex>
#include <optional>
#include <string>

namespace otad::storage {
class Database;
class BlobStore;
}  // namespace otad::storage

namespace otad::domain {

struct ReadinessCheck {
    bool ok = false;
    // When not ok: "no space left on the device", "cannot write", "busy" or
    // "database unavailable".
    std::string error;
};

struct ReadinessReport {
    bool ready = false;
    ReadinessCheck database;
    int schema_version = 0;  // read before the write probe; 0 when it failed
    ReadinessCheck blob_dir;
};

class Readiness {
public:
    Readiness(storage::Database& database, storage::BlobStore& blobs,
              std::chrono::milliseconds reuse = std::chrono::seconds(1));

    // The last probe's report, probing again when it is older than `reuse`.
    ReadinessReport check();

private:
    void probe();

    storage::Database& database_;
    storage::BlobStore& blobs_;
    std::chrono::milliseconds reuse_;
    std::mutex mutex_;
    std::optional<std::chrono::steady_clock::time_point> probed_at_;
    ReadinessReport last_;
};

}  // namespace otad::domain
