#pragma once
// A cheap "did an operator change anything?" signal for in-memory caches.
//
// Every operator-visible change (catalogue uploads, channel moves, deletes, device
// keys, signing keys, a release becoming offered) appends an audit row in the same
// transaction as the change, and audit ids only grow (AUTOINCREMENT). So the
// highest audit id is a generation number for everything a device-facing cache
// may hold, across processes (the `otad` command line shares the database).
// Caches remember the generation they were built at and rebuild when it moves.
//
// Cost: one indexed "newest audit row" read per generation() call, at most once
// per `min_interval` (0 = every call). touch() forces the next call to read,
// for changes this process just committed.
//
// Thread-safe.

#include <atomic>
#include <chrono>
#include <cstdint>

namespace otad::storage {
class Database;
}

namespace otad::domain {

class ChangeWatch {
public:
    explicit ChangeWatch(storage::Database& database, std::chrono::microseconds min_interval = {});
    ChangeWatch(const ChangeWatch&) = delete;
    ChangeWatch& operator=(const ChangeWatch&) = delete;

    // The current generation (the newest audit id; 0 for an empty log). Throws
    // storage::StorageError when the database cannot answer.
    std::int64_t generation();
    // The next generation() call reads the database regardless of min_interval.
    void touch() noexcept;

private:
    storage::Database& database_;
    std::chrono::nanoseconds min_interval_;
    std::atomic<std::int64_t> cached_{-1};
    std::atomic<std::int64_t> checked_at_ns_{0};  // steady clock; 0 = never / touched
};

}  // namespace otad::domain
