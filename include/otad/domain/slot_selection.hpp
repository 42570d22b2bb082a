#pragma once
// The device update decision: given what a device reports and what its channel
// offers, which artifact (if any) to hand it and which slot it will land in.
// Pure: no I/O, no logging; the caller logs NoUpdate details it cares about
// (missing_slot_artifact deserves a warning: a release was published without the
// build a device needs).
//
// Rules (docs/protocols.md#nonos-slots and docs/protocols.md#idf-next-slot):
//  * Layout 256+256 / 512+512 (NONOS): the target is the other slot (user1 <->
//    user2). Only an artifact whose slot IS the target may be offered: the two
//    builds are linked for different flash addresses and the wrong one bricks the
//    device. An artifact with slot "" (unknown link) is never offered here.
//  * Layout 1024+1024: the target is the other slot; builds are interchangeable,
//    preferring the target's build, then a slot-less one, then the other slot's.
//  * Layout ota: the target is the next OTA slot the way esp-idf's
//    esp_ota_get_next_update_partition picks it (esp-idf:
//    components/app_update/esp_ota_ops.c, verified): factory -> ota_0,
//    ota_i -> ota_((i+1) mod N) with N = device.ota_slots (1..16, default 2).
//    One image serves every slot; artifacts with slot "" or the target slot are
//    preferred, then any other ota_* build. With N = 1 a device running ota_0 has
//    no slot to write to (esp-idf would pick the running slot): no update.
//  * Layout single: no slots; the device's running slot is ignored, target "".
//  * Never another chip's or layout's artifact; never the device's own version;
//    never an older version unless the channel allows rollback; never an image
//    whose secure_version is below the device's (anti-rollback eFuse). An
//    artifact without a secure_version counts as 0.
//  * An empty device version means "unknown": any release version is offered
//    (callers that can, e.g. from an Arduino sketch MD5, should check identity).
//  * The device runs the release when its version equals the release version
//    (compare_versions), or equals exactly the app version inspected in one of
//    the release's images for its chip (esp_app_desc_t.version, e.g. the
//    `git describe` string PROJECT_VER gives, which the version order would
//    otherwise judge newer or older): up to date.
//  * Among equally preferred artifacts the first in input order wins.
//
// Slot names are compared case-insensitively ("USER1" == "user1"); the Offer's
// target_slot is always the canonical lower-case name.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "otad/domain/firmware_types.hpp"

namespace otad::domain {

inline constexpr int kDefaultOtaSlots = 2;
inline constexpr int kMaxOtaSlotCount = 16;

struct DeviceState {
    Chip chip = Chip::generic;
    Layout layout = Layout::single;
    std::string running_slot;                     // "user1", "ota_0", "factory", "" ...
    std::string version;                          // as reported; "" = unknown
    std::optional<std::uint32_t> secure_version;  // esp_app_desc_t.secure_version / eFuse counter
    int ota_slots = kDefaultOtaSlots;             // number of ota_* partitions (layout ota only)
};

struct ChannelRelease {
    std::string version;
    bool allow_rollback = false;  // offer an older version too (never the same one)
};

struct CandidateArtifact {
    std::int64_t id = 0;
    Chip chip = Chip::generic;
    Layout layout = Layout::single;
    std::string slot;  // "user1"/"user2"/"ota_3"/"" (built for any slot / unknown)
    std::optional<std::uint32_t> secure_version;
    std::string app_version{};  // esp_app_desc_t.version of the image; "" when it has none
};

struct Offer {
    std::int64_t artifact_id = 0;
    std::string target_slot;  // "" for layout single
    friend bool operator==(const Offer&, const Offer&) = default;
};

enum class NoUpdateReason {
    up_to_date,              // release version equivalent to the device's
    older_release,           // release is older and the channel does not allow rollback
    no_artifact,             // release has nothing for this chip + layout
    missing_slot_artifact,   // release lacks the build for the target slot
    secure_version_too_low,  // every fitting artifact is below the device's secure_version
    no_target_slot,          // layout ota with one OTA slot, running from it
};
std::string_view to_string(NoUpdateReason reason) noexcept;

struct NoUpdate {
    NoUpdateReason reason = NoUpdateReason::up_to_date;
    std::string detail;  // one sentence naming versions, chip, layout and slots
};

struct BadRequest {
    std::string detail;  // e.g. "slot 'user3' is not valid for layout 512+512; valid: user1, user2"
};

using UpdateDecision = std::variant<Offer, NoUpdate, BadRequest>;

UpdateDecision decide_update(const DeviceState& device, const ChannelRelease& release,
                             std::span<const CandidateArtifact> candidates);

// The slot a device running `running_slot` will write, or a BadRequest naming the
// valid slots. Layout single gives "". For layout ota with N = 1 running ota_0 it
// gives "ota_0" (what esp-idf computes; decide_update turns that into no_target_slot).
std::variant<std::string, BadRequest> target_slot(Layout layout, std::string_view running_slot,
                                                  int ota_slots = kDefaultOtaSlots);

// Slots a device of this layout may report as running: "user1, user2";
// "factory, ota_0 .. ota_{N-1}"; none for single.
std::vector<std::string> valid_running_slots(Layout layout, int ota_slots = kDefaultOtaSlots);

}  // namespace otad::domain
