#include "otad/domain/slot_selection.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace otad::domain {
namespace {

DeviceState device(Chip chip, Layout layout, std::string running, std::string version = "1.0.0",
                   std::optional<std::uint32_t> secure = std::nullopt, int ota_slots = 2) {
    return DeviceState{chip, layout, std::move(running), std::move(version), secure, ota_slots};
}

CandidateArtifact artifact(std::int64_t id, Chip chip, Layout layout, std::string slot,
                           std::optional<std::uint32_t> secure = std::nullopt) {
    return CandidateArtifact{id, chip, layout, std::move(slot), secure};
}

const ChannelRelease kNewer{"1.1.0", false};

Offer expect_offer(const UpdateDecision& d) {
    if (auto* o = std::get_if<Offer>(&d)) return *o;
    if (auto* n = std::get_if<NoUpdate>(&d))
        ADD_FAILURE() << "expected an offer, got no_update " << to_string(n->reason) << ": " << n->detail;
    if (auto* b = std::get_if<BadRequest>(&d)) ADD_FAILURE() << "expected an offer, got bad_request: " << b->detail;
    return {};
}

NoUpdate expect_no_update(const UpdateDecision& d) {
    if (auto* n = std::get_if<NoUpdate>(&d)) return *n;
    if (auto* o = std::get_if<Offer>(&d))
        ADD_FAILURE() << "expected no_update, got offer of artifact " << o->artifact_id << " to " << o->target_slot;
    if (auto* b = std::get_if<BadRequest>(&d)) ADD_FAILURE() << "expected no_update, got bad_request: " << b->detail;
    return {};
}

std::string expect_bad_request(const UpdateDecision& d) {
    if (auto* b = std::get_if<BadRequest>(&d)) return b->detail;
    ADD_FAILURE() << "expected bad_request";
    return {};
}

// ---- target_slot: every layout x running slot ----

struct SlotCase {
    Layout layout;
    std::string running;
    int ota_slots;
    std::string expected_target;
};

TEST(TargetSlot, EveryLayoutAndRunningSlot) {
    const std::vector<SlotCase> cases = {
        {Layout::nonos_256_256, "user1", 2, "user2"},
        {Layout::nonos_256_256, "user2", 2, "user1"},
        {Layout::nonos_512_512, "user1", 2, "user2"},
        {Layout::nonos_512_512, "user2", 2, "user1"},
        {Layout::nonos_1024_1024, "user1", 2, "user2"},
        {Layout::nonos_1024_1024, "user2", 2, "user1"},
        {Layout::nonos_512_512, "USER1", 2, "user2"},  // case-insensitive
        {Layout::ota, "factory", 2, "ota_0"},
        {Layout::ota, "ota_0", 2, "ota_1"},
        {Layout::ota, "ota_1", 2, "ota_0"},  // wrap-around, N=2
        {Layout::ota, "factory", 3, "ota_0"},
        {Layout::ota, "ota_0", 3, "ota_1"},
        {Layout::ota, "ota_1", 3, "ota_2"},
        {Layout::ota, "ota_2", 3, "ota_0"},  // wrap-around, N=3
        {Layout::ota, "ota_14", 16, "ota_15"},
        {Layout::ota, "ota_15", 16, "ota_0"},
        {Layout::ota, "factory", 1, "ota_0"},
        {Layout::ota, "ota_0", 1, "ota_0"},
        {Layout::single, "", 2, ""},
        {Layout::single, "whatever", 2, ""},
    };
    for (const auto& c : cases) {
        auto result = target_slot(c.layout, c.running, c.ota_slots);
        ASSERT_TRUE(std::holds_alternative<std::string>(result))
            << to_string(c.layout) << " " << c.running << ": " << std::get<BadRequest>(result).detail;
        EXPECT_EQ(std::get<std::string>(result), c.expected_target) << to_string(c.layout) << " " << c.running;
    }
}

TEST(TargetSlot, InvalidRunningSlotsNameTheValidOnes) {
    auto detail = [](Layout l, std::string_view running, int n) {
        auto r = target_slot(l, running, n);
        return std::holds_alternative<BadRequest>(r) ? std::get<BadRequest>(r).detail : std::string("<no error>");
    };
    EXPECT_EQ(detail(Layout::nonos_512_512, "user3", 2),
              "slot 'user3' is not valid for layout 512+512; valid: user1, user2");
    EXPECT_EQ(detail(Layout::nonos_256_256, "ota_0", 2),
              "slot 'ota_0' is not valid for layout 256+256; valid: user1, user2");
    EXPECT_EQ(detail(Layout::nonos_1024_1024, "", 2),
              "a running slot is required for layout 1024+1024; valid: user1, user2");
    EXPECT_EQ(detail(Layout::nonos_512_512, "factory", 2),
              "slot 'factory' is not valid for layout 512+512; valid: user1, user2");
    EXPECT_EQ(detail(Layout::ota, "ota_2", 2),
              "slot 'ota_2' is not valid for layout ota with 2 OTA slots; valid: factory, ota_0, ota_1");
    EXPECT_EQ(detail(Layout::ota, "user1", 3),
              "slot 'user1' is not valid for layout ota with 3 OTA slots; valid: factory, ota_0, ota_1, ota_2");
    EXPECT_EQ(detail(Layout::ota, "", 1),
              "a running slot is required for layout ota with 1 OTA slot; valid: factory, ota_0");
    EXPECT_EQ(detail(Layout::ota, "ota_00", 2).substr(0, 25), "slot 'ota_00' is not vali");
    EXPECT_EQ(detail(Layout::ota, "ota_16", 16).substr(0, 25), "slot 'ota_16' is not vali");
    EXPECT_EQ(detail(Layout::ota, "ota_-1", 2).substr(0, 25), "slot 'ota_-1' is not vali");
    EXPECT_EQ(detail(Layout::ota, "ota_", 2).substr(0, 23), "slot 'ota_' is not vali");
    EXPECT_EQ(detail(Layout::ota, "ota_0", 0), "OTA slot count 0 is out of range; valid: 1..16");
    EXPECT_EQ(detail(Layout::ota, "ota_0", 17), "OTA slot count 17 is out of range; valid: 1..16");
}

TEST(ValidRunningSlots, PerLayout) {
    EXPECT_EQ(valid_running_slots(Layout::nonos_512_512), (std::vector<std::string>{"user1", "user2"}));
    EXPECT_EQ(valid_running_slots(Layout::ota, 3), (std::vector<std::string>{"factory", "ota_0", "ota_1", "ota_2"}));
    EXPECT_TRUE(valid_running_slots(Layout::single).empty());
}

// ---- NONOS 256+256 / 512+512: only the target slot's build ----

TEST(DecideUpdate, Nonos512OffersOnlyTheOtherSlotsBuild) {
    const std::vector<CandidateArtifact> both = {artifact(11, Chip::esp8266, Layout::nonos_512_512, "user1"),
                                                 artifact(12, Chip::esp8266, Layout::nonos_512_512, "user2")};
    EXPECT_EQ(expect_offer(decide_update(device(Chip::esp8266, Layout::nonos_512_512, "user1"), kNewer, both)),
              (Offer{12, "user2"}));
    EXPECT_EQ(expect_offer(decide_update(device(Chip::esp8266, Layout::nonos_512_512, "user2"), kNewer, both)),
              (Offer{11, "user1"}));
}

TEST(DecideUpdate, Nonos256OffersOnlyTheOtherSlotsBuild) {
    const std::vector<CandidateArtifact> both = {artifact(21, Chip::esp8266, Layout::nonos_256_256, "user2"),
                                                 artifact(22, Chip::esp8266, Layout::nonos_256_256, "user1")};
    EXPECT_EQ(expect_offer(decide_update(device(Chip::esp8266, Layout::nonos_256_256, "user1"), kNewer, both)),
              (Offer{21, "user2"}));
    EXPECT_EQ(expect_offer(decide_update(device(Chip::esp8266, Layout::nonos_256_256, "user2"), kNewer, both)),
              (Offer{22, "user1"}));
}

TEST(DecideUpdate, Nonos512MissingTargetBuildIsNeverReplacedByTheWrongOne) {
    // Only the running slot's build and a slot-less build: neither may be sent.
    const std::vector<CandidateArtifact> wrong = {artifact(11, Chip::esp8266, Layout::nonos_512_512, "user1"),
                                                  artifact(13, Chip::esp8266, Layout::nonos_512_512, "")};
    auto n = expect_no_update(decide_update(device(Chip::esp8266, Layout::nonos_512_512, "user1"), kNewer, wrong));
    EXPECT_EQ(n.reason, NoUpdateReason::missing_slot_artifact);
    EXPECT_EQ(n.detail,
              "release 1.1.0 has no user2 build for esp8266 512+512 (device runs user1); builds for other slots "
              "are linked for another flash address and are never offered");
    // And a 1024+1024 user2 build does not stand in for a 512+512 one.
    const std::vector<CandidateArtifact> other_layout = {artifact(11, Chip::esp8266, Layout::nonos_512_512, "user1"),
                                                         artifact(14, Chip::esp8266, Layout::nonos_1024_1024, "user2")};
    n = expect_no_update(decide_update(device(Chip::esp8266, Layout::nonos_512_512, "user1"), kNewer, other_layout));
    EXPECT_EQ(n.reason, NoUpdateReason::missing_slot_artifact);
}

TEST(DecideUpdate, Nonos256MissingTargetBuild) {
    const std::vector<CandidateArtifact> only_user2 = {artifact(21, Chip::esp8266, Layout::nonos_256_256, "user2")};
    auto n = expect_no_update(decide_update(device(Chip::esp8266, Layout::nonos_256_256, "user2"), kNewer, only_user2));
    EXPECT_EQ(n.reason, NoUpdateReason::missing_slot_artifact);
    EXPECT_NE(n.detail.find("no user1 build"), std::string::npos) << n.detail;
}

// ---- NONOS 1024+1024: interchangeable builds ----

TEST(DecideUpdate, Nonos1024PrefersTargetThenSlotlessThenOther) {
    const auto dev1 = device(Chip::esp8266, Layout::nonos_1024_1024, "user1");
    const auto dev2 = device(Chip::esp8266, Layout::nonos_1024_1024, "user2");
    const auto u1 = artifact(31, Chip::esp8266, Layout::nonos_1024_1024, "user1");
    const auto u2 = artifact(32, Chip::esp8266, Layout::nonos_1024_1024, "user2");
    const auto any = artifact(33, Chip::esp8266, Layout::nonos_1024_1024, "");

    EXPECT_EQ(expect_offer(decide_update(dev1, kNewer, std::vector{u1, u2})), (Offer{32, "user2"}));
    EXPECT_EQ(expect_offer(decide_update(dev2, kNewer, std::vector{u1, u2})), (Offer{31, "user1"}));
    EXPECT_EQ(expect_offer(decide_update(dev1, kNewer, std::vector{u1})), (Offer{31, "user2"}));
    EXPECT_EQ(expect_offer(decide_update(dev2, kNewer, std::vector{u2})), (Offer{32, "user1"}));
    EXPECT_EQ(expect_offer(decide_update(dev1, kNewer, std::vector{u1, any})), (Offer{33, "user2"}));
    EXPECT_EQ(expect_offer(decide_update(dev1, kNewer, std::vector{any, u2})), (Offer{32, "user2"}));
}

// ---- ota layout ----

TEST(DecideUpdate, OtaTargetsNextSlotWithAnySlotsBuild) {
    const auto slotless = artifact(41, Chip::esp32c3, Layout::ota, "");
    const auto built_ota1 = artifact(42, Chip::esp32c3, Layout::ota, "ota_1");
    auto dev = [](std::string running, int n) {
        return device(Chip::esp32c3, Layout::ota, std::move(running), "1.0.0", std::nullopt, n);
    };

    EXPECT_EQ(expect_offer(decide_update(dev("factory", 2), kNewer, std::vector{slotless})), (Offer{41, "ota_0"}));
    EXPECT_EQ(expect_offer(decide_update(dev("ota_0", 2), kNewer, std::vector{slotless})), (Offer{41, "ota_1"}));
    EXPECT_EQ(expect_offer(decide_update(dev("ota_1", 2), kNewer, std::vector{slotless})), (Offer{41, "ota_0"}));
    EXPECT_EQ(expect_offer(decide_update(dev("ota_1", 3), kNewer, std::vector{slotless})), (Offer{41, "ota_2"}));
    EXPECT_EQ(expect_offer(decide_update(dev("ota_2", 3), kNewer, std::vector{slotless})), (Offer{41, "ota_0"}));
    // A build tagged for another OTA slot still fits (apps are position independent) ...
    EXPECT_EQ(expect_offer(decide_update(dev("ota_1", 2), kNewer, std::vector{built_ota1})), (Offer{42, "ota_0"}));
    // ... but a slot-less or matching one is preferred.
    EXPECT_EQ(expect_offer(decide_update(dev("ota_1", 2), kNewer, std::vector{built_ota1, slotless})),
              (Offer{41, "ota_0"}));
    EXPECT_EQ(expect_offer(decide_update(dev("ota_0", 2), kNewer, std::vector{slotless, built_ota1})),
              (Offer{41, "ota_1"}));  // both fit equally: input order
    EXPECT_EQ(expect_offer(decide_update(dev("ota_0", 2), kNewer, std::vector{built_ota1, slotless})),
              (Offer{42, "ota_1"}));
}

TEST(DecideUpdate, OtaSingleSlotRunningFromItHasNoTarget) {
    const std::vector<CandidateArtifact> a = {artifact(41, Chip::esp32, Layout::ota, "")};
    EXPECT_EQ(
        expect_offer(decide_update(device(Chip::esp32, Layout::ota, "factory", "1.0.0", std::nullopt, 1), kNewer, a)),
        (Offer{41, "ota_0"}));
    auto n =
        expect_no_update(decide_update(device(Chip::esp32, Layout::ota, "ota_0", "1.0.0", std::nullopt, 1), kNewer, a));
    EXPECT_EQ(n.reason, NoUpdateReason::no_target_slot);
}

TEST(DecideUpdate, OtaInvalidSlotIsBadRequest) {
    const std::vector<CandidateArtifact> a = {artifact(41, Chip::esp32, Layout::ota, "")};
    EXPECT_EQ(expect_bad_request(
                  decide_update(device(Chip::esp32, Layout::ota, "ota_3", "1.0.0", std::nullopt, 3), kNewer, a)),
              "slot 'ota_3' is not valid for layout ota with 3 OTA slots; valid: factory, ota_0, ota_1, ota_2");
    EXPECT_EQ(expect_bad_request(decide_update(device(Chip::esp8266, Layout::nonos_512_512, "user3"), kNewer, a)),
              "slot 'user3' is not valid for layout 512+512; valid: user1, user2");
}

// ---- single ----

TEST(DecideUpdate, SingleHasNoSlot) {
    const std::vector<CandidateArtifact> a = {artifact(51, Chip::esp8266, Layout::single, "")};
    EXPECT_EQ(expect_offer(decide_update(device(Chip::esp8266, Layout::single, ""), kNewer, a)), (Offer{51, ""}));
    EXPECT_EQ(expect_offer(decide_update(device(Chip::esp8266, Layout::single, "sketch"), kNewer, a)), (Offer{51, ""}));
}

// ---- versions ----

TEST(DecideUpdate, SameVersionIsNeverOffered) {
    const std::vector<CandidateArtifact> a = {artifact(41, Chip::esp32, Layout::ota, "")};
    for (bool rollback : {false, true}) {
        auto n =
            expect_no_update(decide_update(device(Chip::esp32, Layout::ota, "ota_0", "1.1.0"), {"1.1.0", rollback}, a));
        EXPECT_EQ(n.reason, NoUpdateReason::up_to_date);
        EXPECT_EQ(n.detail, "device runs 1.1.0, the channel offers 1.1.0");
        // Equivalent spellings are the same version.
        n = expect_no_update(
            decide_update(device(Chip::esp32, Layout::ota, "ota_0", "v1.1.0+build7"), {"1.1.0", rollback}, a));
        EXPECT_EQ(n.reason, NoUpdateReason::up_to_date);
    }
}

TEST(DecideUpdate, DowngradeRefusedUnlessChannelAllowsRollback) {
    const std::vector<CandidateArtifact> a = {artifact(41, Chip::esp32, Layout::ota, "")};
    const auto dev = device(Chip::esp32, Layout::ota, "ota_0", "1.10.0");
    auto n = expect_no_update(decide_update(dev, {"1.9.2", false}, a));
    EXPECT_EQ(n.reason, NoUpdateReason::older_release);
    EXPECT_EQ(n.detail, "device runs 1.10.0, newer than the channel's 1.9.2 and the channel does not allow rollback");
    EXPECT_EQ(expect_offer(decide_update(dev, {"1.9.2", true}, a)), (Offer{41, "ota_1"}));
    // Pre-release of the same version is older.
    n = expect_no_update(decide_update(device(Chip::esp32, Layout::ota, "ota_0", "2.0.0"), {"2.0.0-rc.1", false}, a));
    EXPECT_EQ(n.reason, NoUpdateReason::older_release);
}

TEST(DecideUpdate, NewerOfferedWithOrWithoutRollback) {
    const std::vector<CandidateArtifact> a = {artifact(41, Chip::esp32, Layout::ota, "")};
    const auto dev = device(Chip::esp32, Layout::ota, "ota_1", "1.9.2");
    EXPECT_EQ(expect_offer(decide_update(dev, {"1.10.0", false}, a)), (Offer{41, "ota_0"}));
    EXPECT_EQ(expect_offer(decide_update(dev, {"1.10.0", true}, a)), (Offer{41, "ota_0"}));
}

TEST(DecideUpdate, UnknownDeviceVersionIsOffered) {
    const std::vector<CandidateArtifact> a = {artifact(51, Chip::esp8266, Layout::single, "")};
    EXPECT_EQ(expect_offer(decide_update(device(Chip::esp8266, Layout::single, "", ""), {"0.1", false}, a)),
              (Offer{51, ""}));
}

// ---- secure_version anti-rollback ----

TEST(DecideUpdate, SecureVersionBelowDevicesIsRefused) {
    const auto dev = device(Chip::esp32s3, Layout::ota, "ota_0", "1.0.0", 3);
    auto n = expect_no_update(decide_update(dev, kNewer, std::vector{artifact(61, Chip::esp32s3, Layout::ota, "", 2)}));
    EXPECT_EQ(n.reason, NoUpdateReason::secure_version_too_low);
    EXPECT_EQ(n.detail, "release 1.1.0 for esp32s3 ota has secure_version 2, below the device's 3");
    // Rollback channels do not override anti-rollback.
    n = expect_no_update(
        decide_update(dev, {"0.9.0", true}, std::vector{artifact(61, Chip::esp32s3, Layout::ota, "", 2)}));
    EXPECT_EQ(n.reason, NoUpdateReason::secure_version_too_low);
    // Unknown secure_version counts as 0.
    n = expect_no_update(decide_update(dev, kNewer, std::vector{artifact(62, Chip::esp32s3, Layout::ota, "")}));
    EXPECT_EQ(n.reason, NoUpdateReason::secure_version_too_low);
    // Equal or higher is fine.
    EXPECT_EQ(expect_offer(decide_update(dev, kNewer, std::vector{artifact(63, Chip::esp32s3, Layout::ota, "", 3)})),
              (Offer{63, "ota_1"}));
    EXPECT_EQ(expect_offer(decide_update(dev, kNewer, std::vector{artifact(64, Chip::esp32s3, Layout::ota, "", 4)})),
              (Offer{64, "ota_1"}));
    // A lower one is skipped for an acceptable one even if less preferred by slot.
    EXPECT_EQ(expect_offer(decide_update(dev, kNewer,
                                         std::vector{artifact(65, Chip::esp32s3, Layout::ota, "", 1),
                                                     artifact(66, Chip::esp32s3, Layout::ota, "ota_0", 3)})),
              (Offer{66, "ota_1"}));
    // Device without a reported secure_version accepts any.
    EXPECT_EQ(expect_offer(decide_update(device(Chip::esp32s3, Layout::ota, "ota_0"), kNewer,
                                         std::vector{artifact(67, Chip::esp32s3, Layout::ota, "")})),
              (Offer{67, "ota_1"}));
}

// ---- chip and layout ----

TEST(DecideUpdate, OtherChipNeverOffered) {
    const std::vector<CandidateArtifact> others = {
        artifact(71, Chip::esp32, Layout::ota, ""), artifact(72, Chip::esp32s3, Layout::ota, ""),
        artifact(73, Chip::generic, Layout::ota, ""), artifact(74, Chip::esp32c3, Layout::single, "")};
    auto n = expect_no_update(decide_update(device(Chip::esp32c3, Layout::ota, "ota_0"), kNewer, others));
    EXPECT_EQ(n.reason, NoUpdateReason::no_artifact);
    EXPECT_EQ(n.detail, "release 1.1.0 has no artifact for esp32c3 ota");

    // With the right one present among others, exactly that one is picked.
    auto mixed = others;
    mixed.push_back(artifact(75, Chip::esp32c3, Layout::ota, ""));
    EXPECT_EQ(expect_offer(decide_update(device(Chip::esp32c3, Layout::ota, "ota_0"), kNewer, mixed)),
              (Offer{75, "ota_1"}));

    // Every chip x every other chip: never offered.
    for (Chip device_chip : all_chips()) {
        std::vector<CandidateArtifact> foreign;
        for (Chip c : all_chips())
            if (c != device_chip) foreign.push_back(artifact(100 + static_cast<int>(c), c, Layout::ota, ""));
        auto d = decide_update(device(device_chip, Layout::ota, "ota_0"), kNewer, foreign);
        EXPECT_EQ(expect_no_update(d).reason, NoUpdateReason::no_artifact) << to_string(device_chip);
    }
}

TEST(DecideUpdate, NoCandidatesAtAll) {
    auto n = expect_no_update(decide_update(device(Chip::esp8266, Layout::nonos_512_512, "user1"), kNewer, {}));
    EXPECT_EQ(n.reason, NoUpdateReason::no_artifact);
    EXPECT_EQ(n.detail, "release 1.1.0 has no artifact for esp8266 512+512");
}

TEST(DecideUpdate, BadRequestTakesPrecedenceOverVersionChecks) {
    auto d = decide_update(device(Chip::esp8266, Layout::nonos_512_512, "user9", "1.1.0"), kNewer, {});
    EXPECT_EQ(expect_bad_request(d), "slot 'user9' is not valid for layout 512+512; valid: user1, user2");
}

TEST(NoUpdateReason, Names) {
    EXPECT_EQ(to_string(NoUpdateReason::up_to_date), "up_to_date");
    EXPECT_EQ(to_string(NoUpdateReason::older_release), "older_release");
    EXPECT_EQ(to_string(NoUpdateReason::no_artifact), "no_artifact");
    EXPECT_EQ(to_string(NoUpdateReason::missing_slot_artifact), "missing_slot_artifact");
    EXPECT_EQ(to_string(NoUpdateReason::secure_version_too_low), "secure_version_too_low");
    EXPECT_EQ(to_string(NoUpdateReason::no_target_slot), "no_target_slot");
}

// ---- the app version inside a release's image ----

TEST(DecideUpdate, DeviceReportingTheImagesAppVersionRunsThatRelease) {
    // Release 1.1.0 was built from `git describe` v1.1.0-3-gabc1234, which the
    // version order ranks as a pre-release of 1.1.0: the device would be offered
    // 1.1.0 on every poll.
    std::vector<CandidateArtifact> release = {artifact(7, Chip::esp32, Layout::ota, "")};
    release[0].app_version = "v1.1.0-3-gabc1234";
    const NoUpdate same = expect_no_update(
        decide_update(device(Chip::esp32, Layout::ota, "ota_0", "v1.1.0-3-gabc1234"), kNewer, release));
    EXPECT_EQ(same.reason, NoUpdateReason::up_to_date);
    EXPECT_EQ(same.detail,
              "device runs v1.1.0-3-gabc1234, the app version in release 1.1.0's image, which the "
              "channel offers");
    // Only an exact match counts, and only for the device's chip.
    expect_offer(decide_update(device(Chip::esp32, Layout::ota, "ota_0", "v1.1.0-2-gffff000"), kNewer, release));
    expect_offer(decide_update(device(Chip::esp32, Layout::ota, "ota_0", "V1.1.0-3-GABC1234"), kNewer, release));
    std::vector<CandidateArtifact> two_chips = {artifact(7, Chip::esp32c3, Layout::ota, ""),
                                                artifact(8, Chip::esp32, Layout::ota, "")};
    two_chips[0].app_version = "0.1.0-rc";
    EXPECT_EQ(expect_offer(decide_update(device(Chip::esp32, Layout::ota, "ota_0", "0.1.0-rc"), kNewer, two_chips))
                  .artifact_id,
              8);
    // A free-form app version ranks above any number ("judged ahead"): without
    // the rule the device would never be offered anything again.
    std::vector<CandidateArtifact> named = {artifact(9, Chip::esp32, Layout::ota, "")};
    named[0].app_version = "thermo-nightly";
    EXPECT_EQ(
        expect_no_update(decide_update(device(Chip::esp32, Layout::ota, "ota_0", "thermo-nightly"), kNewer, named))
            .reason,
        NoUpdateReason::up_to_date);
    EXPECT_EQ(expect_no_update(decide_update(device(Chip::esp32, Layout::ota, "ota_0", "thermo-nightly"),
                                             ChannelRelease{"1.2.0", false}, release))
                  .reason,
              NoUpdateReason::older_release);  // another release's app version still orders as text
    // Without an app version the release version alone decides, as before.
    EXPECT_EQ(
        expect_no_update(decide_update(device(Chip::esp32, Layout::ota, "ota_0", "1.1.0"), kNewer, release)).reason,
        NoUpdateReason::up_to_date);
}

}  // namespace
}  // namespace otad::domain
