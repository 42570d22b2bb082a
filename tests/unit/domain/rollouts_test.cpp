// Staged rollouts over a real (temporary) database: the cohort rule, the filter,
// the gate, the poll decision through DeviceUpdates, counters kept from the
// registry's flushes and reports, the background round (silence, pause, timed
// advance, completion), overrides, and the catalogue's rollout rules.

#include "otad/domain/rollouts.hpp"

#include <chrono>
#include <map>

#include <gtest/gtest.h>

#include "device_test_support.hpp"
#include "otad/domain/catalogue.hpp"
#include "otad/domain/change_watch.hpp"
#include "otad/domain/device_registry.hpp"
#include "otad/domain/device_updates.hpp"
#include "otad/domain/signing_keys.hpp"
#include "otad/domain/url_signer.hpp"
#include "otad/storage/audit_repository.hpp"
#include "otad/storage/blob_store.hpp"
#include "otad/storage/device_repository.hpp"

namespace otad::domain {
namespace {

using nlohmann::json;
constexpr std::int64_t kNow = 1'700'000'000;

// --- pure parts ---------------------------------------------------------------

TEST(RolloutBucket, IsTheDocumentedHashAndSpreadsEvenly) {
    // Values computed independently from the documented definition (FNV-1a 64 + splitmix64 mix).
    EXPECT_EQ(rollout_bucket(1, "dev-1"), 8837u);
    EXPECT_EQ(rollout_bucket(1, "aa:bb:cc:dd:ee:ff"), 5573u);
    EXPECT_EQ(rollout_bucket(42, "dev-1"), 4087u);
    EXPECT_EQ(rollout_bucket(7, ""), 349u);
    std::vector<int> deciles(10, 0);
    for (int i = 0; i < 100'000; ++i) {
        auto b = rollout_bucket(3, "device-" + std::to_string(i));
        ASSERT_LT(b, kRolloutBuckets);
        ++deciles[b / 1000];
    }
    for (int d : deciles) EXPECT_NEAR(d, 10'000, 500);
}

TEST(RolloutFilter, AdmitsByAnyChipLayoutVersionAndEveryTag) {
    RolloutFilter none;
    EXPECT_TRUE(none.admits("esp32", "ota", "1.0.0", false));
    auto f = RolloutFilter::from_json(
        json{{"chip", "ESP32"}, {"layout", {"ota"}}, {"version", {"v1.0.0", "0.9.0"}}, {"tags", {"lab", "beta"}}});
    EXPECT_EQ(f.chips, std::vector<std::string>{"esp32"});
    EXPECT_EQ(f.tags, (std::vector<std::string>{"beta", "lab"}));
    EXPECT_TRUE(f.admits("esp32", "ota", "1.0.0", true));  // v1.0.0 == 1.0.0
    EXPECT_TRUE(f.admits("esp32", "ota", "0.9.0", true));
    EXPECT_FALSE(f.admits("esp32", "ota", "0.9.0", false));  // tags missing
    EXPECT_FALSE(f.admits("esp32s3", "ota", "1.0.0", true));
    EXPECT_FALSE(f.admits("esp32", "single", "1.0.0", true));
    EXPECT_FALSE(f.admits("esp32", "ota", "1.1.0", true));
    EXPECT_THROW(RolloutFilter::from_json(json{{"chip", "esp99"}}), RolloutError);
    EXPECT_THROW(RolloutFilter::from_json(json{{"colour", "red"}}), RolloutError);
    EXPECT_THROW(RolloutFilter::from_json(json{{"tags", {"Not A Tag"}}}), RolloutError);
}

TEST(RolloutSpec, ParsesStagesGateAndFilterWithDefaults) {
    RolloutOptions options;
    auto spec = parse_rollout_spec(json::parse(R"({"channel":"stable","version":"1.5.0",
        "stages":[{"percent":0.5,"hold_s":3600},{"percent":10,"hold_s":86400},{"percent":50},{"percent":100}],
        "gate":{"max_failure_ratio":0.02,"min_devices":50},"filter":{"tags":["beta"]}})"),
                                   options);
    EXPECT_EQ(spec.channel, "stable");
    EXPECT_EQ(spec.version, "1.5.0");
    ASSERT_EQ(spec.stages.size(), 4u);
    EXPECT_EQ(spec.stages[0], (std::pair<std::int32_t, std::optional<std::int64_t>>{50, 3600}));
    EXPECT_EQ(spec.stages[2].first, 5000);
    EXPECT_FALSE(spec.stages[2].second.has_value());
    EXPECT_EQ(spec.gate.max_failure_ratio, 0.02);
    EXPECT_EQ(spec.gate.max_rollback_ratio, options.default_gate.max_rollback_ratio);
    EXPECT_EQ(spec.gate.min_devices, 50);
    EXPECT_EQ(spec.filter.tags, std::vector<std::string>{"beta"});
}

TEST(RolloutSpec, RefusesBadStagesAndNamesTheProblem) {
    RolloutOptions options;
    auto detail = [&](const char* body) {
        try {
            parse_rollout_spec(json::parse(body), options);
        } catch (const RolloutError& e) {
            EXPECT_EQ(e.kind(), RolloutError::Kind::invalid);
            return std::string(e.what());
        }
        return std::string("accepted");
    };
    EXPECT_NE(detail(R"({"channel":"s","version":"1","stages":[{"percent":10},{"percent":5},{"percent":100}]})")
                  .find("stages[1].percent must be above the previous"),
              std::string::npos);
    EXPECT_NE(detail(R"({"channel":"s","version":"1","stages":[{"percent":10}]})").find("last stage must be at 100"),
              std::string::npos);
    EXPECT_NE(
        detail(R"({"channel":"s","version":"1","stages":[{"percent":0.125},{"percent":100}]})").find("two decimals"),
        std::string::npos);
    EXPECT_NE(detail(R"({"channel":"s","version":"1","stages":[{"percent":100,"hold_s":-1}]})").find("hold_s"),
              std::string::npos);
    EXPECT_NE(detail(R"({"channel":"s","version":"1","stages":[]})").find("stages"), std::string::npos);
    EXPECT_NE(detail(R"({"version":"1","stages":[{"percent":100}]})").find("channel"), std::string::npos);
    EXPECT_NE(detail(R"({"channel":"s","version":"1","stages":[{"percent":100}],"gate":{"max_failure_ratio":2}})")
                  .find("gate.max_failure_ratio"),
              std::string::npos);
    EXPECT_NE(detail(R"({"channel":"s","version":"1","stages":[{"percent":100}],"speed":1})").find("unknown member"),
              std::string::npos);
}

storage::Rollout rollout_with(std::int64_t offered, std::int64_t failed, std::int64_t silent, std::int64_t rolled_back,
                              std::int64_t min_devices = 10) {
    storage::Rollout r;
    r.gate.min_devices = min_devices;
    r.gate.max_failure_ratio = 0.1;
    r.gate.max_rollback_ratio = 0.1;
    storage::RolloutStage s;
    s.counters.offered = offered;
    s.counters.failed = failed;
    s.counters.silent = silent;
    s.counters.rolled_back = rolled_back;
    r.stages = {s};
    return r;
}

TEST(RolloutGate, JudgesRatiosOnlyFromMinDevicesAndFromAForcedResumeOn) {
    EXPECT_FALSE(read_gate(rollout_with(9, 9, 0, 0)).judged);  // below min_devices: not judged yet
    auto ok = read_gate(rollout_with(100, 5, 5, 10));
    EXPECT_TRUE(ok.judged);
    EXPECT_FALSE(ok.breached);  // 0.1 is not above 0.1
    EXPECT_DOUBLE_EQ(ok.failure_ratio, 0.1);
    auto failing = read_gate(rollout_with(100, 5, 6, 0));
    EXPECT_TRUE(failing.breached);
    EXPECT_EQ(failing.breach, "failure_ratio");
    auto rolling = read_gate(rollout_with(100, 0, 0, 11));
    EXPECT_EQ(rolling.breach, "rollback_ratio");
    // After a forced resume at (100 offered, 11 rolled back) only what follows counts.
    auto r = rollout_with(150, 0, 0, 12);
    r.gate_base_offered = 100;
    r.gate_base_rolled_back = 11;
    auto after = read_gate(r);
    EXPECT_EQ(after.offered, 50);
    EXPECT_EQ(after.rolled_back, 1);
    EXPECT_FALSE(after.breached);
}

storage::Artifact artifact(const std::string& chip, const std::string& layout, const std::string& slot) {
    storage::Artifact a;
    a.chip = chip;
    a.layout = layout;
    a.slot = slot;
    return a;
}

TEST(MissingSlotBuilds, NamesTheOtherSlotOfA512Plus512Build) {
    std::vector<storage::Artifact> half = {artifact("esp8266", "512+512", "user1"), artifact("esp32", "ota", "")};
    auto missing = missing_slot_builds(half, nullptr, nullptr);
    ASSERT_EQ(missing.size(), 1u);
    EXPECT_EQ(missing[0].slot, "user2");
    EXPECT_EQ(describe(missing), "esp8266 512+512 user2");

    std::vector<storage::Artifact> both = {artifact("esp8266", "512+512", "user1"),
                                           artifact("esp8266", "512+512", "user2")};
    EXPECT_TRUE(missing_slot_builds(both, nullptr, nullptr).empty());
    // 1024+1024 builds are interchangeable: one is enough.
    EXPECT_TRUE(missing_slot_builds(std::vector{artifact("esp8266", "1024+1024", "user1")}, nullptr, nullptr).empty());

    // Rule 2: the base serves 512+512 devices, the target has nothing for them.
    std::vector<storage::Artifact> esp32_only = {artifact("esp32", "ota", "")};
    EXPECT_EQ(missing_slot_builds(esp32_only, &both, nullptr).size(), 2u);
    // ... unless the filter leaves those devices out.
    RolloutFilter esp32_filter = RolloutFilter::from_json(json{{"chip", "esp32"}});
    EXPECT_TRUE(missing_slot_builds(esp32_only, &both, &esp32_filter).empty());
}

// --- over a database ------------------------------------------------------------

class RolloutsTest : public testing::DatabaseTest {
protected:
    void SetUp() override {
        DatabaseTest::SetUp();
        watch = std::make_unique<ChangeWatch>(*db);
        keys = std::make_unique<SigningKeyRing>(*db, SignatureAlgorithm::es256, watch.get());
        keys->create(SignatureAlgorithm::es256, "test");
        urls = std::make_unique<UrlSigner>("test-secret", 3600, 86400);
        product = add_product("thermo");
        v100 = add_release(product, "1.0.0");
        v110 = add_release(product, "1.1.0");
        v090 = add_release(product, "0.9.0");
        add_artifact(v100, "esp32", "ota", "", "esp32 1.0.0");
        add_artifact(v110, "esp32", "ota", "", "esp32 1.1.0");
        add_artifact(v090, "esp32", "ota", "", "esp32 0.9.0");
        set_channel(product, "stable", v100);
        RolloutOptions options;
        options.default_gate.min_devices = 10;
        rollouts = std::make_unique<Rollouts>(*db, watch.get(), options, [this] { return now; });
        registry = std::make_unique<DeviceRegistry>(*db, DeviceRegistryOptions{}, [this] { return now; });
        registry->set_observer(rollouts.get());
        DeviceUpdatesOptions update_options;
        update_options.poll_jitter_s = 0;
        updates = std::make_unique<DeviceUpdates>(*db, *keys, *urls, registry.get(), watch.get(), update_options,
                                                  [this] { return now; });
        updates->set_release_resolver(rollouts.get());
    }
    void TearDown() override {
        updates.reset();
        registry.reset();
        rollouts.reset();
        DatabaseTest::TearDown();
    }

    RolloutSpec spec(std::vector<std::pair<std::int32_t, std::optional<std::int64_t>>> stages,
                     std::string version = "1.1.0") {
        RolloutSpec s;
        s.channel = "stable";
        s.version = std::move(version);
        s.stages = std::move(stages);
        s.gate = rollouts->options().default_gate;
        return s;
    }

    PollRequest poll_of(const std::string& device, const std::string& version = "1.0.0") {
        PollRequest r;
        r.product = "thermo";
        r.product_id = product;
        r.device.chip = Chip::esp32;
        r.device.layout = Layout::ota;
        r.device.running_slot = "ota_0";
        r.device.version = version;
        r.device_id = device;
        r.base_url = "https://ota.test";
        return r;
    }
    // The version offered, or "" for no update.
    std::string offered(const std::string& device, const std::string& version = "1.0.0") {
        auto out = updates->poll(poll_of(device, version));
        return out.manifest ? out.manifest->version : std::string();
    }
    storage::Rollout status(std::int64_t id) {
        registry->flush();
        return rollouts->get("thermo", id);
    }
    std::vector<storage::RolloutCounters> recount(std::int64_t id) {
        return db->read([&](storage::Connection& c) { return storage::RolloutRepository(c).recount(id); });
    }
    void expect_counters_match_recount(std::int64_t id) {
        auto r = status(id);
        auto again = recount(id);
        ASSERT_EQ(again.size(), r.stages.size());
        for (std::size_t i = 0; i < again.size(); ++i) EXPECT_EQ(r.stages[i].counters, again[i]) << "stage " << i;
    }
    std::vector<storage::AuditEntry> audit(const std::string& action) {
        auto all = db->read([](storage::Connection& c) { return storage::AuditRepository(c).list(1000); });
        std::vector<storage::AuditEntry> out;
        for (auto& e : all)
            if (e.action == action) out.push_back(e);
        return out;
    }
    std::string channel_version() {
        return db->read([&](storage::Connection& c) {
            storage::CatalogueRepository cat(c);
            return cat.get_release(cat.get_channel(product, "stable")->release_id)->version;
        });
    }
    // Devices with their bucket in rollout `id` below / at or above `threshold`.
    std::pair<std::vector<std::string>, std::vector<std::string>> split(std::int64_t id, std::uint32_t threshold,
                                                                        int count, const std::string& prefix = "d") {
        std::vector<std::string> in, out;
        for (int i = 0; i < count; ++i) {
            std::string dev = prefix + std::to_string(i);
            (rollout_bucket(id, dev) < threshold ? in : out).push_back(dev);
        }
        return {in, out};
    }

    std::int64_t now = kNow;
    std::unique_ptr<ChangeWatch> watch;
    std::unique_ptr<SigningKeyRing> keys;
    std::unique_ptr<UrlSigner> urls;
    std::unique_ptr<Rollouts> rollouts;
    std::unique_ptr<DeviceRegistry> registry;
    std::unique_ptr<DeviceUpdates> updates;
    std::int64_t product = 0, v100 = 0, v110 = 0, v090 = 0;
};

TEST_F(RolloutsTest, AStageOffersTheTargetExactlyToItsCohortAndTheRestGetTheBase) {
    auto r = rollouts->create("thermo", spec({{500, std::nullopt}, {10000, std::nullopt}}), "token:ops");
    int targeted = 0;
    for (int i = 0; i < 2000; ++i) {
        std::string dev = "d" + std::to_string(i);
        std::string got = offered(dev);
        const bool in_cohort = rollout_bucket(r.id, dev) < 500;
        EXPECT_EQ(got, in_cohort ? "1.1.0" : "") << dev;  // outside: up to date with the base
        targeted += in_cohort;
    }
    EXPECT_NEAR(targeted, 100, 20);  // 5 % of 2000
    auto now_status = status(r.id);
    EXPECT_EQ(now_status.totals().offered, targeted);
    EXPECT_EQ(now_status.totals().eligible, targeted);
    EXPECT_EQ(now_status.stages[0].counters.offered, targeted);
    EXPECT_EQ(now_status.stages[1].counters.offered, 0);
    expect_counters_match_recount(r.id);

    // The next stage takes in the rest; the first cohort stays in.
    rollouts->advance("thermo", r.id, "token:ops");
    EXPECT_EQ(offered("d0"), "1.1.0");
    EXPECT_EQ(offered("d1"), "1.1.0");
}

TEST_F(RolloutsTest, ReportsAndPollsMoveTheCountersLikeARecount) {
    auto r = rollouts->create("thermo", spec({{10000, std::nullopt}}), "token:ops");
    for (int i = 0; i < 40; ++i) ASSERT_EQ(offered("d" + std::to_string(i)), "1.1.0");
    registry->flush();
    for (int i = 0; i < 10; ++i) registry->report({"d" + std::to_string(i), DeviceStatus::downloading, "", "", 0});
    for (int i = 10; i < 15; ++i) registry->report({"d" + std::to_string(i), DeviceStatus::failed, "", "", 0});
    for (int i = 15; i < 20; ++i)
        registry->report({"d" + std::to_string(i), DeviceStatus::rolled_back, "1.1.0", "", 0});
    now += 5;
    for (int i = 20; i < 30; ++i) EXPECT_EQ(offered("d" + std::to_string(i), "1.1.0"), "");  // they run it now
    auto s = status(r.id);
    EXPECT_EQ(s.totals().offered, 40);
    EXPECT_EQ(s.totals().downloading, 10);
    EXPECT_EQ(s.totals().failed, 5);
    EXPECT_EQ(s.totals().rolled_back, 5);
    EXPECT_EQ(s.totals().installed, 10);
    expect_counters_match_recount(r.id);
    // An installing device that comes back on the old version rolled back (implicitly).
    registry->report({"d30", DeviceStatus::installing, "", "", 0});
    now += 5;
    offered("d30", "1.0.0");
    EXPECT_EQ(status(r.id).totals().rolled_back, 6);
    expect_counters_match_recount(r.id);
}

TEST_F(RolloutsTest, TheGatePausesAtOnceAuditsTheNumbersAndStopsNewOffers) {
    auto r = rollouts->create("thermo", spec({{5000, 3600}, {10000, std::nullopt}}), "token:ops");
    auto [in, out] = split(r.id, 5000, 60);
    ASSERT_GE(in.size(), 20u);
    for (std::size_t i = 0; i < 12; ++i) ASSERT_EQ(offered(in[i]), "1.1.0");
    registry->flush();
    for (std::size_t i = 0; i < 3; ++i) registry->report({in[i], DeviceStatus::failed, "", "boot loop", 0});
    TickResult round = rollouts->tick();
    EXPECT_EQ(round.paused, 1u);
    auto paused = status(r.id);
    EXPECT_EQ(paused.state, storage::RolloutState::paused);
    EXPECT_EQ(paused.pause_reason, "gate");
    auto entries = audit("rollout.pause");
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0].actor, "system");
    auto detail = json::parse(entries[0].detail_json);
    EXPECT_EQ(detail["breach"], "failure_ratio");
    EXPECT_EQ(detail["gate"]["offered"], 12);
    EXPECT_EQ(detail["gate"]["failing"], 3);
    EXPECT_DOUBLE_EQ(detail["gate"]["failure_ratio"].get<double>(), 0.25);

    // No new device of the cohort is offered the target now, nor a waiting one again.
    EXPECT_EQ(offered(in[15]), "");
    EXPECT_EQ(offered(in[5]), "");
    EXPECT_EQ(rollouts->tick().paused, 0u);  // already paused: nothing more

    // Resume is refused while the gate is breached; force resets its baseline.
    try {
        rollouts->resume("thermo", r.id, false, "token:ops");
        FAIL() << "resumed a breached rollout";
    } catch (const RolloutError& e) {
        EXPECT_EQ(e.code(), "gate-breached");
        EXPECT_EQ(e.kind(), RolloutError::Kind::conflict);
    }
    auto forced = rollouts->resume("thermo", r.id, true, "token:ops");
    EXPECT_EQ(forced.state, storage::RolloutState::running);
    EXPECT_FALSE(read_gate(forced).breached);
    EXPECT_EQ(rollouts->tick().paused, 0u);
    EXPECT_EQ(offered(in[15]), "1.1.0");
}

TEST_F(RolloutsTest, HoldsAdvanceOnceWhileTheGateHoldsAndTheLastStageMovesTheChannel) {
    auto r = rollouts->create("thermo", spec({{100, 60}, {1000, 60}, {10000, 60}}), "token:ops");
    EXPECT_EQ(rollouts->tick().advanced, 0u);
    now += 59;
    EXPECT_EQ(rollouts->tick().advanced, 0u);
    now += 1;
    EXPECT_EQ(rollouts->tick().advanced, 1u);
    EXPECT_EQ(rollouts->tick().advanced, 0u);  // the new stage's hold starts now
    EXPECT_EQ(status(r.id).current_stage, 1);
    // A pause stops the clock; the paused time does not count.
    now += 30;
    rollouts->pause("thermo", r.id, "token:ops");
    now += 1000;
    EXPECT_EQ(rollouts->tick().advanced, 0u);
    rollouts->resume("thermo", r.id, false, "token:ops");
    now += 29;
    EXPECT_EQ(rollouts->tick().advanced, 0u);
    now += 1;
    EXPECT_EQ(rollouts->tick().advanced, 1u);
    EXPECT_EQ(channel_version(), "1.0.0");
    now += 60;
    EXPECT_EQ(rollouts->tick().completed, 1u);
    auto done = status(r.id);
    EXPECT_EQ(done.state, storage::RolloutState::completed);
    EXPECT_EQ(channel_version(), "1.1.0");
    EXPECT_EQ(audit("rollout.complete").size(), 1u);
    ASSERT_EQ(audit("channel.set").size(), 2u);  // the fixture's and the rollout's
    EXPECT_EQ(json::parse(audit("channel.set").front().detail_json)["rollout"], r.id);
    // Finished: the view forgets it; devices get the channel's (now the target's) release.
    EXPECT_EQ(offered("anyone"), "1.1.0");
    EXPECT_EQ(rollouts->tick().completed, 0u);
}

TEST_F(RolloutsTest, AStageWithoutHoldWaitsForAnAdvance) {
    auto r = rollouts->create("thermo", spec({{100, std::nullopt}, {10000, std::nullopt}}), "token:ops");
    now += 1'000'000;
    EXPECT_EQ(rollouts->tick().advanced, 0u);
    EXPECT_EQ(rollouts->advance("thermo", r.id, "token:ops").current_stage, 1);
    EXPECT_EQ(rollouts->advance("thermo", r.id, "token:ops").state, storage::RolloutState::completed);
    EXPECT_EQ(channel_version(), "1.1.0");
    try {
        rollouts->advance("thermo", r.id, "token:ops");
        FAIL();
    } catch (const RolloutError& e) {
        EXPECT_EQ(e.code(), "rollout-finished");
    }
}

TEST_F(RolloutsTest, SilentDevicesCountAsFailingAndComeBackWhenHeardFrom) {
    auto s = spec({{10000, std::nullopt}});
    s.gate.stale_after_s = 600;
    s.gate.min_devices = 1000;  // judge nothing here
    auto r = rollouts->create("thermo", s, "token:ops");
    ASSERT_EQ(offered("quiet"), "1.1.0");
    ASSERT_EQ(offered("busy"), "1.1.0");
    registry->flush();
    now += 599;
    offered("busy");  // polls again: alive
    registry->flush();
    EXPECT_EQ(rollouts->tick().silenced, 0u);
    now += 1;
    EXPECT_EQ(rollouts->tick().silenced, 1u);
    EXPECT_EQ(status(r.id).totals().silent, 1);
    now += 10;
    offered("quiet");
    EXPECT_EQ(status(r.id).totals().silent, 0);
    expect_counters_match_recount(r.id);
}

TEST_F(RolloutsTest, PinsWinExcludedDevicesKeepTheBaseAndTheViewSaysWhy) {
    auto r = rollouts->create("thermo", spec({{5000, std::nullopt}, {10000, std::nullopt}}), "token:ops");
    auto [in, out] = split(r.id, 5000, 40);
    for (const auto& d : {in[0], in[1], out[0]}) offered(d, "1.0.0");
    registry->flush();
    rollouts->exclude(in[0], "field trial", "token:ops");
    rollouts->pin(out[0], "1.1.0", "", "token:ops");
    rollouts->pin(in[1], "0.9.0", "debug", "token:ops");
    EXPECT_EQ(offered(in[0]), "");        // in the cohort, but excluded: base
    EXPECT_EQ(offered(out[0]), "1.1.0");  // outside the cohort, but pinned to the target
    EXPECT_EQ(offered(in[1]), "0.9.0");   // pinned to an older release: offered (pins allow rollback)
    EXPECT_EQ(offered(in[2]), "1.1.0");   // the rollout as usual

    auto view = rollouts->device_view(in[1]);
    EXPECT_EQ(view["release_choice"]["source"], "pin");
    EXPECT_EQ(view["release_choice"]["version"], "0.9.0");
    EXPECT_EQ(view["override"]["reason"], "debug");
    EXPECT_EQ(rollouts->device_view(in[0])["release_choice"]["source"], "excluded");
    rollouts->clear_override(in[0], "token:ops");
    auto freed = rollouts->device_view(in[0])["release_choice"];
    EXPECT_EQ(freed["source"], "rollout");
    EXPECT_EQ(freed["answer"], "target");
    EXPECT_EQ(freed["bucket"], rollout_bucket(r.id, in[0]));
    EXPECT_EQ(offered(in[0]), "1.1.0");
    EXPECT_THROW(rollouts->pin("nobody", "1.1.0", "", "x"), RolloutError);
    EXPECT_THROW(rollouts->pin(in[0], "7.7.7", "", "x"), RolloutError);
}

TEST_F(RolloutsTest, TagsFilterTheCohort) {
    auto s = spec({{10000, std::nullopt}});
    s.filter = RolloutFilter::from_json(json{{"tags", {"beta"}}});
    for (const auto& d : {"tagged", "plain"}) offered(d);  // known devices
    registry->flush();
    rollouts->set_tags("tagged", {"beta", "lab"}, "token:ops");
    auto r = rollouts->create("thermo", s, "token:ops");
    EXPECT_EQ(offered("tagged"), "1.1.0");
    EXPECT_EQ(offered("plain"), "");
    storage::DeviceSelection everyone;
    EXPECT_EQ(rollouts->change_tags("thermo", everyone, {"beta"}, {}, "token:ops"), 2);
    EXPECT_EQ(offered("plain"), "1.1.0");
    EXPECT_EQ(status(r.id).totals().offered, 2);
    EXPECT_EQ(audit("device.tags.bulk").size(), 1u);
}

TEST_F(RolloutsTest, DevicesOnTheTargetStayThereUnlessAbortedWithRevert) {
    set_channel(product, "stable", v100, /*rollback=*/true);
    auto r = rollouts->create("thermo", spec({{100, std::nullopt}, {10000, std::nullopt}}), "token:ops");
    auto [in, out] = split(r.id, 100, 400);
    ASSERT_FALSE(in.empty());
    EXPECT_EQ(offered(out[0], "1.1.0"), "");  // outside the stage but already on the target: not offered the base
    rollouts->abort("thermo", r.id, false, "token:ops");
    EXPECT_EQ(offered(out[0], "1.1.0"), "");  // aborted: updated devices stay
    EXPECT_EQ(offered(in[0], "1.0.0"), "");   // not yet updated: keep the base

    auto again = rollouts->create("thermo", spec({{10000, std::nullopt}}), "token:ops");
    EXPECT_EQ(offered("x", "1.0.0"), "1.1.0");
    rollouts->abort("thermo", again.id, true, "token:ops");
    EXPECT_EQ(offered("x", "1.1.0"), "1.0.0");  // reverted: the base is offered back
    EXPECT_EQ(offered("y", "1.0.0"), "");
}

TEST_F(RolloutsTest, RevertNeedsAChannelThatAllowsRollback) {
    auto r = rollouts->create("thermo", spec({{10000, std::nullopt}}), "token:ops");
    try {
        rollouts->abort("thermo", r.id, true, "token:ops");
        FAIL();
    } catch (const RolloutError& e) {
        EXPECT_EQ(e.code(), "rollback-not-allowed");
    }
    EXPECT_EQ(status(r.id).state, storage::RolloutState::running);
}

TEST_F(RolloutsTest, OneActiveRolloutPerChannelAndTheErrorNamesIt) {
    auto first = rollouts->create("thermo", spec({{10000, std::nullopt}}), "token:ops");
    try {
        rollouts->create("thermo", spec({{10000, std::nullopt}}, "0.9.0"), "token:ops");
        FAIL();
    } catch (const RolloutError& e) {
        EXPECT_EQ(e.kind(), RolloutError::Kind::conflict);
        EXPECT_EQ(e.code(), "rollout-active");
        EXPECT_EQ(e.extra()["rollout"], first.id);
        EXPECT_NE(std::string(e.what()).find("rollout " + std::to_string(first.id)), std::string::npos);
    }
    auto expect_code = [&](const std::string& code, auto fn) {
        try {
            fn();
            ADD_FAILURE() << "accepted, expected " << code;
        } catch (const RolloutError& e) {
            EXPECT_EQ(e.code(), code);
        }
    };
    expect_code("same-release", [&] {
        rollouts->abort("thermo", first.id, false, "x");
        rollouts->create("thermo", spec({{10000, std::nullopt}}, "1.0.0"), "x");
    });
    expect_code("release-not-found", [&] { rollouts->create("thermo", spec({{10000, std::nullopt}}, "9.9"), "x"); });
    expect_code("product-not-found", [&] { rollouts->create("nope", spec({{10000, std::nullopt}}), "x"); });
    auto beta = spec({{10000, std::nullopt}});
    beta.channel = "beta";
    expect_code("channel-not-found", [&] { rollouts->create("thermo", beta, "x"); });
    expect_code("rollout-not-found", [&] { rollouts->get("thermo", 999); });
}

TEST_F(RolloutsTest, ARolloutRefusesAReleaseWithoutTheOtherSlotsBuild) {
    auto v2 = add_release(product, "2.0.0");
    add_artifact(v2, "esp32", "ota", "", "esp32 2.0.0");
    add_artifact(v2, "esp8266", "512+512", "user1", "user1 2.0.0");
    try {
        rollouts->create("thermo", spec({{10000, std::nullopt}}, "2.0.0"), "token:ops");
        FAIL();
    } catch (const RolloutError& e) {
        EXPECT_EQ(e.kind(), RolloutError::Kind::unprocessable);
        EXPECT_EQ(e.code(), "missing-slot-build");
        EXPECT_EQ(e.extra()["missing_artifacts"][0]["slot"], "user2");
    }
    auto esp32_only = spec({{10000, std::nullopt}}, "2.0.0");
    esp32_only.filter = RolloutFilter::from_json(json{{"chip", "esp32"}});
    EXPECT_NO_THROW(rollouts->create("thermo", esp32_only, "token:ops"));
}

// Rollout bookkeeping rides in the registry's transaction; if it fails, the device
// records must still be written.
TEST_F(RolloutsTest, ABrokenRolloutNeverStopsTheRegistryFromRecordingDevices) {
    auto r = rollouts->create("thermo", spec({{10000, std::nullopt}}), "token:ops");
    ASSERT_EQ(offered("d1"), "1.1.0");
    registry->flush();
    ASSERT_TRUE(registry->report({"d1", DeviceStatus::downloading, "", "", 0}));
    // Counters that no longer match the rows: the next move of d1 breaks the schema's CHECK.
    db->write([&](storage::Connection& c) {
        c.execute_script("UPDATE rollout_stages SET downloading = 0 WHERE rollout_id = " + std::to_string(r.id));
    });
    now += 10;
    EXPECT_EQ(offered("d1", "1.1.0"), "");  // it installed the target
    FlushStats flushed = registry->flush();
    EXPECT_FALSE(flushed.failed);
    auto device = db->read([](storage::Connection& c) { return storage::DeviceRepository(c).get("d1"); });
    ASSERT_TRUE(device.has_value());
    EXPECT_EQ(device->version, "1.1.0");
    EXPECT_EQ(status(r.id).totals().installed, 0);  // that one move was skipped, nothing else
}

class RolloutCatalogueTest : public RolloutsTest {
protected:
    void SetUp() override {
        RolloutsTest::SetUp();
        blobs = std::make_unique<storage::BlobStore>(dir.path());
        catalogue = std::make_unique<Catalogue>(*db, *blobs, CatalogueOptions{});
    }
    void TearDown() override {
        catalogue.reset();
        blobs.reset();
        RolloutsTest::TearDown();
    }
    std::string refusal(const std::function<void()>& fn) {
        try {
            fn();
        } catch (const CatalogueError& e) {
            return e.code();
        }
        return "accepted";
    }
    std::unique_ptr<storage::BlobStore> blobs;
    std::unique_ptr<Catalogue> catalogue;
};

TEST_F(RolloutCatalogueTest, ARunningRolloutOwnsItsChannelAndKeepsItsReleases) {
    auto r = rollouts->create("thermo", spec({{10000, std::nullopt}}), "token:ops");
    EXPECT_EQ(refusal([&] { catalogue->delete_release("thermo", "1.1.0", "x"); }), "release-in-rollout");
    EXPECT_EQ(refusal([&] { catalogue->set_channel("thermo", "stable", "0.9.0", false, "x"); }), "channel-in-rollout");
    EXPECT_EQ(refusal([&] { catalogue->delete_channel("thermo", "stable", "x"); }), "channel-in-rollout");
    EXPECT_EQ(refusal([&] { catalogue->set_channel("thermo", "beta", "0.9.0", false, "x"); }), "accepted");
    rollouts->abort("thermo", r.id, false, "x");
    EXPECT_EQ(refusal([&] { catalogue->delete_release("thermo", "1.1.0", "x"); }), "accepted");
}

TEST_F(RolloutCatalogueTest, APinnedReleaseCannotBeDeleted) {
    offered("dev");
    registry->flush();
    rollouts->pin("dev", "0.9.0", "", "x");
    EXPECT_EQ(refusal([&] { catalogue->delete_release("thermo", "0.9.0", "x"); }), "release-pinned");
}

TEST_F(RolloutCatalogueTest, SettingAChannelToAHalf512Plus512ReleaseNeedsForce) {
    auto v2 = add_release(product, "2.0.0");
    add_artifact(v2, "esp8266", "512+512", "user1", "user1 2.0.0");
    try {
        catalogue->set_channel("thermo", "beta", "2.0.0", false, "x");
        FAIL();
    } catch (const CatalogueError& e) {
        EXPECT_EQ(e.kind(), CatalogueErrorKind::unprocessable);
        EXPECT_EQ(e.code(), "missing-slot-build");
        EXPECT_NE(std::string(e.what()).find("esp8266 512+512 user2"), std::string::npos) << e.what();
    }
    EXPECT_EQ(catalogue->set_channel("thermo", "beta", "2.0.0", false, "x", /*force=*/true).version, "2.0.0");
}

// The status answer reads counters, never devices: with a million devices it is
// as fast as with ten, and the counters kept by the flushes equal a recount.
TEST_F(RolloutsTest, StatusWithAMillionDevicesIsFastAndEqualsARecount) {
    constexpr int kDevices = 1'000'000;
    // Zero-padded, so the million rows go into the table in key order.
    auto device_name = [](int i) {
        char name[16];
        std::snprintf(name, sizeof name, "m%07d", i);
        return std::string(name);
    };
    db->write(
        [&](storage::Connection& c) {
            c.execute_script("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < " +
                             std::to_string(kDevices) +
                             ") INSERT INTO devices (id, product_id, chip, layout, slot, version, channel, first_seen,"
                             " last_seen) SELECT printf('m%07d', i), " +
                             std::to_string(product) + ", 'esp32', 'ota', 'ota_0', '1.0.0', 'stable', 1, 1 FROM n");
        },
        storage::Durability::normal);
    auto r = rollouts->create("thermo", spec({{1000, std::nullopt}, {5000, std::nullopt}, {10000, std::nullopt}}),
                              "token:ops");
    rollouts->advance("thermo", r.id, "token:ops");  // 50 %
    // A tenth of them poll (activity as the registry reports it), in batches.
    std::vector<storage::DeviceSighting> sightings(10'000);
    std::string target = "1.1.0";
    std::vector<DeviceActivity> batch(sightings.size());
    for (int start = 0; start < kDevices; start += 10 * static_cast<int>(sightings.size())) {
        for (std::size_t k = 0; k < sightings.size(); ++k) {
            auto& s = sightings[k];
            s = storage::DeviceSighting{device_name(start + 10 * static_cast<int>(k)),
                                        product,
                                        "esp32",
                                        "ota",
                                        "ota_0",
                                        "1.0.0",
                                        "stable",
                                        std::nullopt,
                                        "",
                                        now};
            const bool in = rollout_bucket(r.id, s.id) < 5000;
            batch[k] = {&s, in ? &target : nullptr, nullptr};
        }
        db->write([&](storage::Connection& c) { rollouts->on_flush(c, batch); }, storage::Durability::normal);
    }
    // Some of them report.
    db->write(
        [&](storage::Connection& c) {
            for (int i = 0; i < kDevices; i += 970) {
                storage::DeviceRepository devices(c);
                auto d = devices.get(device_name(i));
                rollouts->on_report(c, *d, (i / 970) % 2 ? DeviceStatus::failed : DeviceStatus::installed, "1.1.0",
                                    now);
            }
        },
        storage::Durability::normal);

    const auto started = std::chrono::steady_clock::now();
    auto s = rollouts->get("thermo", r.id);
    auto document = rollouts->to_json(s, "thermo");
    const auto elapsed = std::chrono::steady_clock::now() - started;
    EXPECT_LT(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count(), 50);
    EXPECT_NEAR(static_cast<double>(s.totals().offered), kDevices / 10 * 0.5, kDevices / 10 * 0.01);
    EXPECT_EQ(document["totals"]["offered"], s.totals().offered);
    auto again = recount(r.id);
    for (std::size_t i = 0; i < again.size(); ++i) EXPECT_EQ(s.stages[i].counters, again[i]) << "stage " << i;
    EXPECT_GT(s.totals().failed, 0);
    EXPECT_GT(s.totals().installed, 0);
}

}  // namespace
}  // namespace otad::domain
