#pragma once
// Staged rollouts with a health gate, device tags and per-device overrides
// (docs/rollouts.md).
//
// Model. A rollout moves one channel of one product from its current release
// (the base) to a target release in stages of growing cumulative percent. A
// device's bucket is rollout_bucket(rollout id, device id) in [0, 10000); the
// device is in the cohort while its bucket is below the current stage's percent
// in basis points, so a device of the 1 % stays in the 10 %, and devices first
// seen during the rollout join by the same rule. An optional filter (chip,
// layout, current version: any of the listed; tags: all of the listed) narrows
// who takes part.
//
// The poll decision (resolve(), the ReleaseResolver of DeviceUpdates) answers:
//   1. a pinned device: its pinned release (rollback allowed), whatever its channel;
//   2. an excluded device: its channel's release (during a rollout, the base);
//   3. a device already running the target: the target (so it is told it is up to
//      date, never offered the base back) unless the rollout was aborted with revert;
//   4. a running rollout, device in the filter and the cohort: the target;
//   5. everyone else (outside the stage or filter, paused, aborted): the base, i.e.
//      exactly what the channel alone would answer.
// Slot selection, anti-rollback and signing are DeviceUpdates' as before.
// Cost per poll: one cached view per product (rebuilt after an audited change,
// i.e. when the ChangeWatch generation moves), a hash lookup for overrides and
// one FNV-1a hash of the device id. No database access.
//
// Counters. Device activity reaches the rollout as the registry records it
// (DeviceActivityObserver, inside the registry's own transaction): a device seen
// in the cohort gets a rollout_devices row (eligible); an offer of the target,
// reports, a poll running the target (installed) and implicit rollbacks move its
// state, and each move adjusts the stage counters in the same transaction. A
// status answer reads the stage rows only.
//
// Gate and clock. A background task (start(); every `tick`) marks devices offered
// the target and not heard from for stale_after_s as silent, judges the gate on
// the rollout's totals (failure ratio = (failed + silent) / offered, rollback
// ratio = rolled_back / offered, both once offered >= min_devices; a forced
// resume subtracts the totals it was forced at), pauses a running rollout at once
// on a breach (audited with the numbers, logged at warning), and advances a
// running stage whose hold_s has passed while the gate holds. Completing the last
// stage moves the channel to the target in the transaction that marks the
// rollout completed. Every change is a compare-and-set in one transaction, so a
// crash at any moment leaves no double advance and no lost pause. Holds and
// staleness run `time_scale` times faster than the wall clock (tests).
//
// Thread-safe.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "otad/domain/device_registry.hpp"
#include "otad/domain/device_updates.hpp"
#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/rollout_repository.hpp"

namespace otad::storage {
class Database;
class Connection;
struct Device;
}  // namespace otad::storage

namespace otad::domain {

class BlobCache;
class ChangeWatch;

inline constexpr std::uint32_t kRolloutBuckets = 10'000;

// The device's bucket in a rollout: splitmix64(fnv1a64("<rollout id>:<device id>"))
// mod 10000, with FNV-1a 64 (offset 14695981039346656037, prime 1099511628211) over
// the bytes of the decimal id, a colon and the device id, and splitmix64's final
// mix (x ^= x >> 30; x *= 0xbf58476d1ce4e5b9; x ^= x >> 27; x *= 0x94d049bb133111eb;
// x ^= x >> 31). Stable across restarts, versions and machines.
std::uint32_t rollout_bucket(std::int64_t rollout_id, std::string_view device_id) noexcept;

// Who may take part; empty lists admit everyone.
struct RolloutFilter {
    std::vector<std::string> chips;     // canonical chip names (any of)
    std::vector<std::string> layouts;   // canonical layout names (any of)
    std::vector<std::string> versions;  // the device's current version (any of, by version equivalence)
    std::vector<std::string> tags;      // operator tags (all of)

    bool admits(std::string_view chip, std::string_view layout, std::string_view version,
                bool has_every_tag) const noexcept;
    nlohmann::json to_json() const;
    // {"chip": "esp32" | [...], "layout": ..., "version": ..., "tags": [...]}; throws RolloutError(invalid).
    static RolloutFilter from_json(const nlohmann::json& filter);
};

// The gate's judgement of a rollout's counters.
struct GateReading {
    std::int64_t offered = 0;  // since the last forced resume
    std::int64_t failing = 0;  // failed + silent, idem
    std::int64_t rolled_back = 0;
    double failure_ratio = 0;
    double rollback_ratio = 0;
    bool judged = false;  // offered >= min_devices (and > 0)
    bool breached = false;
    std::string breach;  // "failure_ratio" / "rollback_ratio" / ""
    nlohmann::json to_json(const storage::RolloutGateLimits& limits) const;
};
GateReading read_gate(const storage::Rollout& rollout);

// The stage a bucket first falls in (the first whose percent covers it); the last
// stage's index when none does (a bucket beyond 100 % cannot happen).
int stage_of_bucket(const std::vector<storage::RolloutStage>& stages, std::uint32_t bucket) noexcept;

// A slot build devices need but a release lacks (512+512 / 256+256: the user1 and
// user2 builds are linked for different addresses, so a device running one slot
// can only take the other's build).
struct MissingArtifact {
    std::string chip;
    std::string layout;
    std::string slot;
    std::string why;
};
// Rule 1: a NONOS pair layout the release has one slot's build for must have the
// other's. Rule 2 (with `base`): a NONOS pair layout the base serves must be served
// in both slots by the release. Only (chip, layout) pairs the filter admits count.
std::vector<MissingArtifact> missing_slot_builds(std::span<const storage::Artifact> release,
                                                 const std::vector<storage::Artifact>* base,
                                                 const RolloutFilter* filter);
nlohmann::json to_json(const std::vector<MissingArtifact>& missing);
std::string describe(const std::vector<MissingArtifact>& missing);  // "esp8266 512+512 user2, ..."

// Why a rollout operation was refused; the api maps kind to the status in brackets.
class RolloutError : public std::runtime_error {
public:
    enum class Kind {
        invalid,        // [400] bad body, name or value
        not_found,      // [404] no such product, channel, release, rollout or device
        conflict,       // [409] another rollout is active, the rollout is finished, the gate is breached...
        unprocessable,  // [422] the release lacks an artifact devices in the filter need
    };
    RolloutError(Kind kind, std::string code, const std::string& detail,
                 nlohmann::json extra = nlohmann::json::object())
        : std::runtime_error(detail), kind_(kind), code_(std::move(code)), extra_(std::move(extra)) {}
    Kind kind() const noexcept { return kind_; }
    const std::string& code() const noexcept { return code_; }
    const nlohmann::json& extra() const noexcept { return extra_; }

private:
    Kind kind_;
    std::string code_;
    nlohmann::json extra_;
};

struct RolloutOptions {
    std::chrono::milliseconds tick{2000};  // how often the gate is judged and holds are checked
    std::int64_t time_scale = 1;           // holds and staleness run this many times faster
    storage::RolloutGateLimits default_gate;
    std::size_t max_stages = 20;
    std::size_t max_cached_products = 4096;
};

// A rollout as an operator describes it (POST .../rollouts), validated.
struct RolloutSpec {
    std::string channel;
    std::string version;
    std::vector<std::pair<std::int32_t, std::optional<std::int64_t>>> stages;  // (percent_bp, hold_s)
    storage::RolloutGateLimits gate;
    RolloutFilter filter;
};
// {"channel","version","stages":[{"percent":1,"hold_s":3600},...],"gate":{...},"filter":{...}}.
// Percents are cumulative, increasing, at most two decimals, the last one 100.
// Throws RolloutError(invalid) naming the member.
RolloutSpec parse_rollout_spec(const nlohmann::json& body, const RolloutOptions& options);

// Tags: [a-z0-9][a-z0-9._-]{0,63}, at most kMaxDeviceTags per device.
inline constexpr std::size_t kMaxDeviceTags = 32;
bool is_valid_tag(std::string_view tag) noexcept;

// What one background round did (for logs and tests).
struct TickResult {
    std::size_t silenced = 0;
    std::size_t paused = 0;
    std::size_t advanced = 0;
    std::size_t completed = 0;
};

class Rollouts final : public ReleaseResolver, public DeviceActivityObserver {
public:
    using Clock = std::function<std::int64_t()>;  // unix seconds
    // `watch` may be null (views are then rebuilt only by invalidate()); `downloads`
    // may be null. All outlive this object.
    Rollouts(storage::Database& database, ChangeWatch* watch, RolloutOptions options, Clock clock = {},
             BlobCache* downloads = nullptr);
    ~Rollouts() override;  // stop()
    Rollouts(const Rollouts&) = delete;
    Rollouts& operator=(const Rollouts&) = delete;

    void start();          // the background task (idempotent)
    void stop() noexcept;  // idempotent
    TickResult tick();     // one round now (the task calls it; tests too). Never throws.

    // --- operator actions: each audited in the transaction that makes it
    storage::Rollout create(std::string_view product, const RolloutSpec& spec, std::string_view actor);
    std::vector<storage::Rollout> list(std::string_view product, std::size_t limit);
    storage::Rollout get(std::string_view product, std::int64_t id);
    storage::Rollout pause(std::string_view product, std::int64_t id, std::string_view actor);
    // Refused (conflict, gate-breached) while the gate is breached, unless `force`;
    // a forced resume judges the gate on what happens after it.
    storage::Rollout resume(std::string_view product, std::int64_t id, bool force, std::string_view actor);
    // The next stage now; on the last stage, completes the rollout (channel moved).
    storage::Rollout advance(std::string_view product, std::int64_t id, std::string_view actor);
    // Devices not yet updated keep the base; with `revert` (the channel must allow
    // rollback) devices that took the target are offered the base again.
    storage::Rollout abort(std::string_view product, std::int64_t id, bool revert, std::string_view actor);
    // The status document (docs/rollouts.md).
    nlohmann::json to_json(const storage::Rollout& rollout, std::string_view product) const;

    // --- tags and overrides (devices must be known: not_found otherwise)
    std::vector<std::string> set_tags(std::string_view device_id, std::vector<std::string> tags,
                                      std::string_view actor);
    // Returns how many devices matched.
    std::int64_t change_tags(std::string_view product, storage::DeviceSelection selection,
                             const std::vector<std::string>& add, const std::vector<std::string>& remove,
                             std::string_view actor);
    storage::DeviceOverride pin(std::string_view device_id, std::string_view version, std::string_view reason,
                                std::string_view actor);
    storage::DeviceOverride exclude(std::string_view device_id, std::string_view reason, std::string_view actor);
    void clear_override(std::string_view device_id, std::string_view actor);
    // What the device view adds: {"tags":[...], "override": {...}|null, "release_choice":
    // {"source":"pin"|"excluded"|"rollout"|"channel", "version", "detail", ...}}, i.e.
    // why the device gets what it gets. not_found for an unknown device.
    nlohmann::json device_view(std::string_view device_id);

    // --- ReleaseResolver (the poll path)
    std::optional<ReleaseChoice> resolve(const PollRequest& request, std::int64_t channel_release_id,
                                         bool channel_allows_rollback) override;
    // --- DeviceActivityObserver (inside the registry's transactions)
    void on_flush(storage::Connection& connection, std::span<const DeviceActivity> batch) override;
    void on_report(storage::Connection& connection, const storage::Device& device, DeviceStatus status,
                   std::string_view version, std::int64_t at) override;

    // Drops the cached views.
    void invalidate();
    const RolloutOptions& options() const noexcept { return options_; }

private:
    struct ChannelView;
    struct ProductView;
    std::shared_ptr<const ProductView> view(std::int64_t product_id);
    std::shared_ptr<const ProductView> view_in(storage::Connection& connection, std::int64_t product_id);
    std::shared_ptr<const ProductView> load_view(storage::Connection& connection, std::int64_t product_id,
                                                 std::int64_t generation);
    void tick_one(const storage::Rollout& rollout, TickResult& result);
    void complete_in(storage::Connection& connection, const storage::Rollout& rollout, std::string_view actor,
                     std::int64_t at);
    std::int64_t now() const;
    std::int64_t scaled(std::int64_t seconds) const noexcept;  // wall-clock seconds for `seconds` of rollout time
    void changed() noexcept;
    void run();

    storage::Database& database_;
    ChangeWatch* watch_;
    RolloutOptions options_;
    Clock clock_;
    BlobCache* downloads_;

    std::mutex view_mutex_;
    std::unordered_map<std::int64_t, std::shared_ptr<const ProductView>> views_;

    std::mutex thread_mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace otad::domain
