#pragma once
// Rollouts, their stages and counters, per-device rollout membership, device tags
// and device overrides (pins, exclusions): the rows of migration 0003. Plain
// records in and out; the rules (who is in the cohort, when the gate breaks,
// which transitions are allowed) belong to domain/rollouts.
//
// Consistency: every method that changes a rollout's state is a compare-and-set
// on the state (and the stage) it expects, so two writers (the background tick
// and an operator, or two daemons by mistake) can never both advance a stage or
// resume a pause: the loser sees `false`. put_member() writes a membership row
// and the counter change it causes in the caller's transaction, so counters
// always equal a recount of the rows, whatever moment a process dies at.
//
// Write methods join the caller's WriteTransaction or open their own.
// Errors are StorageError (see error.hpp); `conflict` from create() means another
// rollout is already active on the channel.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace otad::storage {

class Connection;

enum class RolloutState { running, paused, completed, aborted };
std::string_view to_string(RolloutState state) noexcept;
std::optional<RolloutState> parse_rollout_state(std::string_view text) noexcept;

// Where a device stands in a rollout (rollout_devices.state).
enum class MemberState { eligible, offered, downloading, installed, failed, rolled_back, silent };
std::string_view to_string(MemberState state) noexcept;
std::optional<MemberState> parse_member_state(std::string_view text) noexcept;

struct RolloutCounters {
    std::int64_t eligible = 0;
    std::int64_t offered = 0;
    std::int64_t downloading = 0;
    std::int64_t installed = 0;
    std::int64_t failed = 0;
    std::int64_t rolled_back = 0;
    std::int64_t silent = 0;
    RolloutCounters& operator+=(const RolloutCounters& other) noexcept;
    friend bool operator==(const RolloutCounters&, const RolloutCounters&) = default;
};

struct RolloutStage {
    int index = 0;
    std::int32_t percent_bp = 10000;         // cumulative share, basis points
    std::optional<std::int64_t> hold_s;      // nullopt: waits for an operator's advance
    std::optional<std::int64_t> started_at;  // set when the stage became current
    RolloutCounters counters;
};

struct RolloutGateLimits {
    double max_failure_ratio = 0.05;
    double max_rollback_ratio = 0.05;
    std::int64_t min_devices = 20;
    std::int64_t stale_after_s = 14'400;
};

struct Rollout {
    std::int64_t id = 0;
    std::int64_t product_id = 0;
    std::string channel;
    std::optional<std::int64_t> base_release_id;  // null once a finished rollout's release was deleted
    std::optional<std::int64_t> target_release_id;
    std::string base_version;
    std::string target_version;
    RolloutState state = RolloutState::running;
    int current_stage = 0;
    std::int64_t stage_started_at = 0;
    std::optional<std::int64_t> paused_at;
    std::string pause_reason;  // "", "operator", "gate"
    std::string pause_detail_json = "{}";
    bool revert = false;
    std::string filter_json = "{}";
    RolloutGateLimits gate;
    std::int64_t gate_base_offered = 0;
    std::int64_t gate_base_failed = 0;  // failed + silent at a forced resume
    std::int64_t gate_base_rolled_back = 0;
    std::int64_t created_at = 0;
    std::string created_by;
    std::int64_t updated_at = 0;
    std::optional<std::int64_t> finished_at;
    std::vector<RolloutStage> stages;  // by index, with their counters

    RolloutCounters totals() const noexcept;
    bool active() const noexcept { return state == RolloutState::running || state == RolloutState::paused; }
};

struct NewRollout {
    std::int64_t product_id = 0;
    std::string channel;
    std::int64_t base_release_id = 0;
    std::int64_t target_release_id = 0;
    std::string base_version;
    std::string target_version;
    std::vector<std::pair<std::int32_t, std::optional<std::int64_t>>> stages;  // (percent_bp, hold_s)
    RolloutGateLimits gate;
    std::string filter_json = "{}";
    std::string created_by;
    std::int64_t at = 0;
};

struct RolloutMember {
    std::int64_t rollout_id = 0;
    std::string device_id;
    int stage = 0;
    MemberState state = MemberState::eligible;
    std::optional<std::int64_t> offered_at;
    std::int64_t updated_at = 0;
};

enum class OverrideKind { pin, exclude };
std::string_view to_string(OverrideKind kind) noexcept;

struct DeviceOverride {
    std::string device_id;
    std::int64_t product_id = 0;
    OverrideKind kind = OverrideKind::exclude;
    std::optional<std::int64_t> release_id;  // set for a pin
    std::string version;                     // the pinned release's version ("" for exclude)
    std::string reason;
    std::int64_t created_at = 0;
    std::string created_by;
};

// Which devices of a product a bulk tag change touches: unset members match all.
struct DeviceSelection {
    std::int64_t product_id = 0;
    std::optional<std::string> chip;
    std::optional<std::string> layout;
    std::optional<std::string> version;
    std::optional<std::string> channel;
    std::optional<std::string> tag;  // devices already carrying this tag
};

class RolloutRepository {
public:
    explicit RolloutRepository(Connection& connection) : connection_(connection) {}

    // --- rollouts
    // Inserts the rollout (state running, stage 0 started at `at`) and its stages.
    // Throws StorageError(conflict) when the channel already has an active rollout.
    Rollout create(const NewRollout& rollout);
    std::optional<Rollout> get(std::int64_t id);
    // Newest first; limit clamped to 1..1000.
    std::vector<Rollout> list(std::int64_t product_id, std::size_t limit);
    std::optional<Rollout> active_for_channel(std::int64_t product_id, std::string_view channel);
    // Every running or paused rollout, of every product.
    std::vector<Rollout> all_active();
    // What the poll path needs for a product: its active rollouts plus, per
    // channel without one, the newest aborted rollout (its devices may stay on the target).
    std::vector<Rollout> for_product(std::int64_t product_id);
    // Active rollouts starting from or moving to this release.
    std::vector<Rollout> active_for_release(std::int64_t release_id);

    // --- state changes: compare-and-set, false when the rollout was not as expected
    bool pause(std::int64_t id, std::string_view reason, std::string_view detail_json, std::int64_t at);
    // paused -> running; the stage's clock is shifted by the paused time. With
    // `gate_baseline`, the gate is judged from these totals on.
    bool resume(std::int64_t id, std::int64_t at, const std::optional<RolloutCounters>& gate_baseline);
    // running, stage `from` -> stage from+1 started at `at`.
    bool advance(std::int64_t id, int from, std::int64_t at);
    // running|paused -> completed / aborted.
    bool finish(std::int64_t id, RolloutState final_state, bool revert, std::int64_t at);

    // --- membership and counters
    std::optional<RolloutMember> member(std::int64_t rollout_id, std::string_view device_id);
    // Writes the member's new state and moves the counters of its stage by the
    // difference to `before` (nullopt: a new row). The caller holds the transaction
    // that read `before`.
    void put_member(const std::optional<RolloutMember>& before, const RolloutMember& after);
    // put_member inside a savepoint of the caller's transaction: when it fails, only
    // this row and its counters are rolled back and the error is returned, so the
    // caller's other writes (the registry's device rows) go on.
    std::optional<std::string> put_member_or_skip(const std::optional<RolloutMember>& before,
                                                  const RolloutMember& after);
    // Members still offered or downloading whose last change is older than `cutoff`.
    std::vector<RolloutMember> stale_members(std::int64_t rollout_id, std::int64_t cutoff, std::size_t limit);
    // Counts the rows again (for checks and tests): one entry per stage index.
    std::vector<RolloutCounters> recount(std::int64_t rollout_id);

    // --- tags
    std::vector<std::string> tags(std::string_view device_id);
    // Replaces the device's tags.
    void set_tags(std::string_view device_id, const std::vector<std::string>& tags);
    // Adds/removes tags on every selected device; returns how many devices matched.
    std::int64_t change_tags(const DeviceSelection& selection, const std::vector<std::string>& add,
                             const std::vector<std::string>& remove);
    // Devices of the product carrying every one of `tags`.
    std::vector<std::string> devices_with_tags(std::int64_t product_id, const std::vector<std::string>& tags);

    // --- overrides
    void set_override(const DeviceOverride& override_row);
    bool clear_override(std::string_view device_id);
    std::optional<DeviceOverride> get_override(std::string_view device_id);
    std::vector<DeviceOverride> overrides(std::int64_t product_id);
    std::int64_t pins_to_release(std::int64_t release_id);

private:
    Connection& connection_;
};

}  // namespace otad::storage
