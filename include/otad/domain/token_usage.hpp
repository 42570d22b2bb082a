#pragma once
// When each operator token was last used (`otad token list` shows it), recorded
// without costing a request a database write, the way device last-seen is.
//
// record() only updates an in-memory map (one mutex, one hash insert). A
// background thread (start()) writes what is pending every `flush_interval` in
// ONE transaction (Durability::normal: the time is replaceable), and stop()
// writes what is left. A token's use is queued at most once per `resolution_s`
// (default 60 s), so a script calling every second costs one row update a minute.
//
// Thread-safe. A failed flush (database busy, disk full) is logged and its uses
// are kept for the next one.

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>

#include "otad/util/periodic.hpp"

namespace otad::storage {
class Database;
}

namespace otad::domain {

class TokenUsage {
public:
    using Clock = std::function<std::int64_t()>;  // unix seconds
    TokenUsage(storage::Database& database, std::chrono::milliseconds flush_interval, std::int64_t resolution_s = 60,
               Clock clock = {});
    ~TokenUsage();  // stop()
    TokenUsage(const TokenUsage&) = delete;
    TokenUsage& operator=(const TokenUsage&) = delete;

    // In memory only: token `token_id` was just used.
    void record(std::int64_t token_id);
    // Writes pending uses in one transaction; false when that failed (logged).
    bool flush() noexcept;
    std::size_t pending() const;

    void start();          // the background writer (idempotent)
    void stop() noexcept;  // stops it and writes what is pending

private:
    std::int64_t now() const;

    storage::Database& database_;
    std::int64_t resolution_s_;
    Clock clock_;
    mutable std::mutex mutex_;
    std::unordered_map<std::int64_t, std::int64_t> pending_;  // id -> time to write
    std::unordered_map<std::int64_t, std::int64_t> queued_;   // id -> last time queued
    std::mutex flush_mutex_;                                  // one flush at a time
    util::PeriodicTask task_;                                 // last: stops before the members it uses go
};

}  // namespace otad::domain
