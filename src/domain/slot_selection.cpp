#include "otad/domain/slot_selection.hpp"

#include "otad/domain/version.hpp"
#include "otad/util/strings.hpp"

#include <charconv>

namespace otad::domain {
namespace {

// "ota_<k>" with k a decimal 0..15 without leading zeros; nullopt otherwise.
std::optional<int> ota_index(std::string_view slot) {
    constexpr std::string_view prefix = "ota_";
    if (slot.size() <= prefix.size() || slot.substr(0, prefix.size()) != prefix) return std::nullopt;
    std::string_view digits = slot.substr(prefix.size());
    if (digits.size() > 1 && digits[0] == '0') return std::nullopt;
    int k = -1;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), k);
    if (ec != std::errc() || end != digits.data() + digits.size() || k < 0 || k >= kMaxOtaSlotCount)
        return std::nullopt;
    return k;
}

std::string ota_slot_name(int k) { return "ota_" + std::to_string(k); }

bool is_dual_user_layout(Layout layout) noexcept {
    return layout == Layout::nonos_256_256 || layout == Layout::nonos_512_512 || layout == Layout::nonos_1024_1024;
}

std::string layout_label(Layout layout, int ota_slots) {
    std::string out(to_string(layout));
    if (layout == Layout::ota) out += " with " + std::to_string(ota_slots) + " OTA slot" + (ota_slots == 1 ? "" : "s");
    return out;
}

BadRequest invalid_slot(Layout layout, std::string_view running_slot, int ota_slots) {
    std::string what = running_slot.empty() ? std::string("a running slot is required")
                                            : "slot '" + std::string(running_slot) + "' is not valid";
    return BadRequest{what + " for layout " + layout_label(layout, ota_slots) +
                      "; valid: " + util::join(valid_running_slots(layout, ota_slots))};
}

std::string describe_device(const DeviceState& d) {
    std::string out = std::string(to_string(d.chip)) + " " + std::string(to_string(d.layout));
    if (!d.running_slot.empty() && d.layout != Layout::single) out += " running " + util::to_lower(d.running_slot);
    return out;
}

std::uint32_t secure_version_or_zero(const std::optional<std::uint32_t>& v) { return v.value_or(0); }

// Artifacts that fit the target slot, best first (see the header's rules).
std::vector<const CandidateArtifact*> slot_fitting(Layout layout, std::string_view target,
                                                   const std::vector<const CandidateArtifact*>& matching) {
    std::vector<std::vector<const CandidateArtifact*>> tiers(3);
    for (const CandidateArtifact* a : matching) {
        const std::string slot = util::to_lower(a->slot);
        switch (layout) {
            case Layout::nonos_256_256:
            case Layout::nonos_512_512:
                if (slot == target) tiers[0].push_back(a);
                break;
            case Layout::nonos_1024_1024:
                if (slot == target)
                    tiers[0].push_back(a);
                else if (slot.empty())
                    tiers[1].push_back(a);
                else if (slot == "user1" || slot == "user2")
                    tiers[2].push_back(a);
                break;
            case Layout::ota:
                if (slot.empty() || slot == target)
                    tiers[0].push_back(a);
                else if (ota_index(slot))
                    tiers[1].push_back(a);
                break;
            case Layout::single:
                tiers[0].push_back(a);
                break;
        }
    }
    std::vector<const CandidateArtifact*> out;
    for (const auto& tier : tiers) out.insert(out.end(), tier.begin(), tier.end());
    return out;
}

}  // namespace

std::string_view to_string(NoUpdateReason reason) noexcept {
    switch (reason) {
        case NoUpdateReason::up_to_date:
            return "up_to_date";
        case NoUpdateReason::older_release:
            return "older_release";
        case NoUpdateReason::no_artifact:
            return "no_artifact";
        case NoUpdateReason::missing_slot_artifact:
            return "missing_slot_artifact";
        case NoUpdateReason::secure_version_too_low:
            return "secure_version_too_low";
        case NoUpdateReason::no_target_slot:
            return "no_target_slot";
    }
    return "unknown";
}

std::vector<std::string> valid_running_slots(Layout layout, int ota_slots) {
    if (is_dual_user_layout(layout)) return {"user1", "user2"};
    if (layout == Layout::ota) {
        std::vector<std::string> out{"factory"};
        for (int k = 0; k < ota_slots && k < kMaxOtaSlotCount; ++k) out.push_back(ota_slot_name(k));
        return out;
    }
    return {};
}

std::variant<std::string, BadRequest> target_slot(Layout layout, std::string_view running_slot, int ota_slots) {
    const std::string running = util::to_lower(running_slot);
    if (is_dual_user_layout(layout)) {
        if (running == "user1") return std::string("user2");
        if (running == "user2") return std::string("user1");
        return invalid_slot(layout, running_slot, ota_slots);
    }
    if (layout == Layout::ota) {
        if (ota_slots < 1 || ota_slots > kMaxOtaSlotCount)
            return BadRequest{"OTA slot count " + std::to_string(ota_slots) + " is out of range; valid: 1.." +
                              std::to_string(kMaxOtaSlotCount)};
        if (running == "factory") return ota_slot_name(0);
        if (auto k = ota_index(running); k && *k < ota_slots) return ota_slot_name((*k + 1) % ota_slots);
        return invalid_slot(layout, running_slot, ota_slots);
    }
    return std::string();  // single: no slots
}

UpdateDecision decide_update(const DeviceState& device, const ChannelRelease& release,
                             std::span<const CandidateArtifact> candidates) {
    auto target_or_error = target_slot(device.layout, device.running_slot, device.ota_slots);
    if (auto* bad = std::get_if<BadRequest>(&target_or_error)) return std::move(*bad);
    const std::string target = std::move(std::get<std::string>(target_or_error));
    const std::string device_text = describe_device(device);

    if (device.layout == Layout::ota && target == util::to_lower(device.running_slot))
        return NoUpdate{NoUpdateReason::no_target_slot,
                        "device " + device_text +
                            " has a single OTA slot and runs from it; it must boot factory "
                            "to update"};

    if (!device.version.empty()) {
        const int order = compare_versions(release.version, device.version);
        if (order == 0)
            return NoUpdate{NoUpdateReason::up_to_date,
                            "device runs " + device.version + ", the channel offers " + release.version};
        // A device may report the app version its image carries instead of the
        // release version it was uploaded as; the two need not order alike.
        for (const CandidateArtifact& a : candidates)
            if (a.chip == device.chip && !a.app_version.empty() && a.app_version == device.version)
                return NoUpdate{NoUpdateReason::up_to_date, "device runs " + device.version +
                                                                ", the app version in release " + release.version +
                                                                "'s image, which the channel offers"};
        if (order < 0 && !release.allow_rollback)
            return NoUpdate{NoUpdateReason::older_release, "device runs " + device.version +
                                                               ", newer than the channel's " + release.version +
                                                               " and the channel does not allow rollback"};
    }

    std::vector<const CandidateArtifact*> matching;
    for (const CandidateArtifact& a : candidates)
        if (a.chip == device.chip && a.layout == device.layout) matching.push_back(&a);
    const std::string for_whom = std::string(to_string(device.chip)) + " " + std::string(to_string(device.layout));
    if (matching.empty())
        return NoUpdate{NoUpdateReason::no_artifact, "release " + release.version + " has no artifact for " + for_whom};

    const auto fitting = slot_fitting(device.layout, target, matching);
    if (fitting.empty()) {
        std::string detail = "release " + release.version + " has no " + target + " build for " + for_whom +
                             " (device runs " + util::to_lower(device.running_slot) + ")";
        if (device.layout == Layout::nonos_256_256 || device.layout == Layout::nonos_512_512)
            detail += "; builds for other slots are linked for another flash address and are never offered";
        return NoUpdate{NoUpdateReason::missing_slot_artifact, std::move(detail)};
    }

    const std::uint32_t device_secure = secure_version_or_zero(device.secure_version);
    for (const CandidateArtifact* a : fitting)
        if (secure_version_or_zero(a->secure_version) >= device_secure) return Offer{a->id, target};

    return NoUpdate{NoUpdateReason::secure_version_too_low,
                    "release " + release.version + " for " + for_whom + " has secure_version " +
                        std::to_string(secure_version_or_zero(fitting.front()->secure_version)) +
                        ", below the device's " + std::to_string(device_secure)};
}

}  // namespace otad::domain
