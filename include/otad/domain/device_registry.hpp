#pragma once
// The device registry: what devices tell otad about themselves, recorded without
// costing a poll a database write.
//
// Polls call record_poll(), which only updates an in-memory map (one mutex, one
// hash insert; a device polling twice before a flush keeps its latest sighting).
// A background thread (start()) flushes the map every `flush_interval` in ONE
// write transaction (Durability::normal: last-seen data is replaceable), and
// stop() flushes what is left. flush() may also be called directly (operator
// views call it first, so they see every poll answered before them).
//
// last_seen has a resolution of `last_seen_resolution_s` (default 60 s): a sighting
// that changes nothing but the time is only written once the stored last_seen is
// that old, so a fleet polling often does not rewrite every device row every flush
// (random row updates dirty every page of the table and its last_seen index).
// Anything else that changed (version, slot, channel, address, ...) is written by
// the next flush.
//
// Per flushed device, against its state before the flush (kept in memory after a
// device's first flush, read from the database before that):
//  * a device seen for the first time gets a `first_seen` event; a changed version
//    a `version_changed` event {"from","to"};
//  * a poll that offered a version the device was not already offered records the
//    offer (devices.offered_version/offered_at) and a `poll_offer` event, so
//    offered_at is the FIRST time this version was offered;
//  * implicit rollback detection: if the device was offered X and now polls with a
//    known version that is not X, and either (a) its last report was `installing`
//    for X, or (b) X was offered at least `rollback_after` ago, the device is
//    recorded as rolled_back for X (a `rolled_back` event with {"source":"implicit",
//    "running":..., "reason":"installing_reported"|"timeout"}, and last_status
//    rolled_back / last_status_version X), once per arming: a later `installing`
//    report arms it again.
//
// Reports (report()) are written synchronously, after flushing pending
// sightings, so a report never precedes the poll that introduced the device.
//
// Thread-safe. A flush that fails (database busy) keeps its sightings for the
// next one unless newer ones arrived; pending sightings are capped at
// `max_pending` devices (the newest are dropped, with a warning, past it).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "otad/storage/device_repository.hpp"

namespace otad::storage {
class Database;
class Connection;
}  // namespace otad::storage

namespace otad::domain {

// The statuses a device may report.
enum class DeviceStatus { downloading, downloaded, installing, installed, failed, rolled_back };
std::string_view to_string(DeviceStatus status) noexcept;
std::optional<DeviceStatus> parse_device_status(std::string_view text) noexcept;
// "downloading, downloaded, installing, installed, failed, rolled_back"
std::string valid_device_statuses();

struct DeviceRegistryOptions {
    std::chrono::milliseconds flush_interval{1000};
    std::int64_t rollback_after_s = 3600;  // (b) above; <= 0 disables the timeout rule
    std::size_t max_pending = 1'000'000;
    std::size_t max_known = 2'000'000;  // in-memory device states; cleared past it
    std::int64_t last_seen_resolution_s = 60;
};

struct FlushStats {
    std::size_t devices = 0;    // sightings written
    std::size_t unchanged = 0;  // sightings within last_seen_resolution, not written
    std::size_t events = 0;     // events appended
    std::size_t rollbacks = 0;  // implicit rollbacks recorded
    bool failed = false;
};

struct DeviceReport {
    std::string device_id;
    DeviceStatus status = DeviceStatus::installed;
    std::string version;  // the version the status is about ("" = the device's offered/current one)
    std::string detail;   // free text from the device, at most 1024 bytes (cut)
    std::int64_t at = 0;  // 0 = now
};

// One flushed sighting as an observer sees it (pointers valid during the call).
struct DeviceActivity {
    const storage::DeviceSighting* sighting = nullptr;
    const std::string* offered = nullptr;      // the version this batch's polls offered, or null
    const std::string* rolled_back = nullptr;  // the version an implicit rollback was recorded for, or null
};

// Told about device activity inside the registry's write transactions, so what it
// derives (rollout counters, docs/rollouts.md) commits or rolls back with the
// device rows. What it throws fails the flush or report like a database error.
class DeviceActivityObserver {
public:
    virtual ~DeviceActivityObserver() = default;
    // After a flush wrote its sightings and events; every batch entry is passed.
    virtual void on_flush(storage::Connection& connection, std::span<const DeviceActivity> batch) = 0;
    // After a report was written; `device` is the row as it was before the report,
    // `version` the version the report is about.
    virtual void on_report(storage::Connection& connection, const storage::Device& device, DeviceStatus status,
                           std::string_view version, std::int64_t at) = 0;
};

class DeviceRegistry {
public:
    using Clock = std::function<std::int64_t()>;  // unix seconds
    DeviceRegistry(storage::Database& database, DeviceRegistryOptions options, Clock clock = {});
    ~DeviceRegistry();  // stop()
    DeviceRegistry(const DeviceRegistry&) = delete;
    DeviceRegistry& operator=(const DeviceRegistry&) = delete;

    // Starts the background flusher (idempotent).
    void start();
    // Stops the flusher and flushes what is pending (idempotent, never throws).
    void stop() noexcept;

    // In memory only. `offered_version`: the version this poll offered, if any.
    void record_poll(storage::DeviceSighting sighting, std::optional<std::string> offered_version);
    // Writes pending sightings in one transaction. Never throws: failures are
    // logged and reported in FlushStats.
    FlushStats flush() noexcept;
    std::size_t pending() const;

    // The product a device belongs to (pending sighting first, then the database). A
    // sighting being flushed is waited for, never answered as unknown.
    std::optional<std::int64_t> product_of(std::string_view device_id);

    // Records a status report. Returns false when the device was never seen.
    // Throws storage::StorageError when the database fails.
    bool report(const DeviceReport& report);

    const DeviceRegistryOptions& options() const noexcept { return options_; }

    // Set before start(); the observer must outlive the registry (or be reset first).
    void set_observer(DeviceActivityObserver* observer) noexcept { observer_ = observer; }

private:
    struct Pending {
        storage::DeviceSighting sighting;
        std::optional<std::string> offered_version;
    };
    // What the registry remembers about a flushed device.
    struct Known {
        std::string version;
        std::optional<std::string> offered_version;
        std::optional<std::int64_t> offered_at;
        std::optional<std::string> last_status;
        std::optional<std::string> last_status_version;
        std::uint64_t fields = 0;    // digest of the stored sighting's fields (all but the time)
        std::int64_t last_seen = 0;  // as stored
    };
    static std::uint64_t fields_digest(const storage::DeviceSighting& s) noexcept;
    FlushStats flush_locked();  // holds write_mutex_
    void run();
    std::int64_t now() const { return clock_ ? clock_() : default_now(); }
    static std::int64_t default_now();

    storage::Database& database_;
    DeviceRegistryOptions options_;
    Clock clock_;
    DeviceActivityObserver* observer_ = nullptr;

    mutable std::mutex pending_mutex_;
    std::unordered_map<std::string, Pending> pending_;
    bool overflow_warned_ = false;

    std::mutex write_mutex_;  // one flush or report at a time; guards known_
    std::unordered_map<std::string, Known> known_;

    std::mutex thread_mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace otad::domain
