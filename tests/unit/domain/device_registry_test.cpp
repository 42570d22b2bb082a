// Batched device sightings, derived events and implicit rollback detection.

#include "otad/domain/device_registry.hpp"

#include <chrono>
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "device_test_support.hpp"
#include "otad/storage/database.hpp"
#include "otad/storage/device_repository.hpp"

namespace otad::domain {
namespace {

constexpr std::int64_t kNow = 1'700'000'000;

class DeviceRegistryTest : public testing::DatabaseTest {
protected:
    void SetUp() override {
        DatabaseTest::SetUp();
        product = add_product("thermo");
        options.flush_interval = std::chrono::milliseconds(20);
        options.rollback_after_s = 600;
        registry = std::make_unique<DeviceRegistry>(*db, options, [this] { return now; });
    }
    void TearDown() override {
        registry.reset();  // flushes into the database, so before it closes
        DatabaseTest::TearDown();
    }

    storage::DeviceSighting sighting(const std::string& id, const std::string& version) {
        return {id, product, "esp32", "ota", "ota_0", version, "stable", std::nullopt, "10.0.0.1", now};
    }
    std::optional<storage::Device> device(const std::string& id) {
        return db->read([&](storage::Connection& c) { return storage::DeviceRepository(c).get(id); });
    }
    std::vector<storage::DeviceEvent> history(const std::string& id) {
        auto events = db->read([&](storage::Connection& c) { return storage::DeviceRepository(c).history(id, 100); });
        std::reverse(events.begin(), events.end());  // oldest first
        return events;
    }
    std::vector<std::string> kinds(const std::string& id) {
        std::vector<std::string> out;
        for (const auto& e : history(id)) out.emplace_back(storage::to_string(e.kind));
        return out;
    }

    std::int64_t now = kNow;
    std::int64_t product = 0;
    DeviceRegistryOptions options;
    std::unique_ptr<DeviceRegistry> registry;
};

TEST_F(DeviceRegistryTest, PollsStayInMemoryUntilTheFlush) {
    registry->record_poll(sighting("a", "1.0.0"), std::nullopt);
    now += 5;
    registry->record_poll(sighting("a", "1.0.0"), std::nullopt);
    registry->record_poll(sighting("b", "1.0.0"), std::nullopt);
    EXPECT_EQ(registry->pending(), 2u);
    EXPECT_FALSE(device("a").has_value());

    FlushStats stats = registry->flush();
    EXPECT_EQ(stats.devices, 2u);
    EXPECT_EQ(stats.events, 2u);  // two first_seen
    EXPECT_FALSE(stats.failed);
    EXPECT_EQ(registry->pending(), 0u);
    auto a = device("a");
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->last_seen, kNow + 5);
    EXPECT_EQ(a->first_seen, kNow + 5);
    EXPECT_EQ(kinds("a"), std::vector<std::string>{"first_seen"});
    EXPECT_EQ(registry->flush().devices, 0u);  // nothing pending
}

TEST_F(DeviceRegistryTest, ManyDevicesFlushInOneBatch) {
    for (int i = 0; i < 5000; ++i) registry->record_poll(sighting("dev-" + std::to_string(i), "1.0.0"), std::nullopt);
    auto stats = registry->flush();
    EXPECT_EQ(stats.devices, 5000u);
    auto count = db->read([&](storage::Connection& c) { return storage::DeviceRepository(c).count({}); });
    EXPECT_EQ(count, 5000);
    // Second round: known in memory, only last_seen moves, no events.
    now += 60;
    for (int i = 0; i < 5000; ++i) registry->record_poll(sighting("dev-" + std::to_string(i), "1.0.0"), std::nullopt);
    stats = registry->flush();
    EXPECT_EQ(stats.devices, 5000u);
    EXPECT_EQ(stats.events, 0u);
    EXPECT_EQ(device("dev-4999")->last_seen, kNow + 60);
}

TEST_F(DeviceRegistryTest, UnchangedSightingsAreWrittenOncePerLastSeenResolution) {
    registry->record_poll(sighting("a", "1.0.0"), std::nullopt);
    EXPECT_EQ(registry->flush().devices, 1u);
    now += 5;
    registry->record_poll(sighting("a", "1.0.0"), std::nullopt);
    auto stats = registry->flush();
    EXPECT_EQ(stats.devices, 0u);
    EXPECT_EQ(stats.unchanged, 1u);
    EXPECT_EQ(device("a")->last_seen, kNow);

    now += 5;  // another address: written at once
    auto moved = [this] {
        auto s = sighting("a", "1.0.0");
        s.remote_address = "10.0.0.2";
        return s;
    };
    registry->record_poll(moved(), std::nullopt);
    EXPECT_EQ(registry->flush().devices, 1u);
    EXPECT_EQ(device("a")->last_seen, kNow + 10);
    EXPECT_EQ(device("a")->remote_address, "10.0.0.2");

    now += options.last_seen_resolution_s - 1;
    registry->record_poll(moved(), std::nullopt);
    EXPECT_EQ(registry->flush().devices, 0u);
    now += 1;
    registry->record_poll(moved(), std::nullopt);
    EXPECT_EQ(registry->flush().devices, 1u);
    EXPECT_EQ(device("a")->last_seen, kNow + 10 + options.last_seen_resolution_s);

    // After a restart the stored row is the reference.
    registry.reset();
    DeviceRegistry restarted(*db, options, [this] { return now; });
    now += 1;
    restarted.record_poll(moved(), std::nullopt);
    EXPECT_EQ(restarted.flush().unchanged, 1u);
}

TEST_F(DeviceRegistryTest, VersionChangesAndOffersBecomeEvents) {
    registry->record_poll(sighting("a", "1.0.0"), std::string("1.1.0"));
    registry->flush();
    now += 10;
    registry->record_poll(sighting("a", "1.0.0"), std::string("1.1.0"));  // same offer again
    registry->flush();
    auto a = device("a");
    EXPECT_EQ(a->offered_version, "1.1.0");
    EXPECT_EQ(a->offered_at, kNow);  // the first offer
    now += 10;
    registry->record_poll(sighting("a", "1.1.0"), std::nullopt);
    registry->flush();
    EXPECT_EQ(kinds("a"), (std::vector<std::string>{"first_seen", "poll_offer", "version_changed"}));
    auto events = history("a");
    EXPECT_EQ(nlohmann::json::parse(events[2].detail_json), (nlohmann::json{{"from", "1.0.0"}, {"to", "1.1.0"}}));
    EXPECT_FALSE(device("a")->last_status.has_value());  // no rollback: it runs what it was offered
}

TEST_F(DeviceRegistryTest, InstallingThenOldVersionIsAnImplicitRollback) {
    registry->record_poll(sighting("a", "1.0.0"), std::string("1.1.0"));
    registry->flush();
    now += 30;
    ASSERT_TRUE(registry->report({"a", DeviceStatus::installing, "1.1.0", "writing ota_1", 0}));
    now += 30;
    registry->record_poll(sighting("a", "1.0.0"), std::string("1.1.0"));  // back on 1.0.0
    auto stats = registry->flush();
    EXPECT_EQ(stats.rollbacks, 1u);
    auto a = device("a");
    EXPECT_EQ(a->last_status, "rolled_back");
    EXPECT_EQ(a->last_status_version, "1.1.0");
    EXPECT_EQ(kinds("a"), (std::vector<std::string>{"first_seen", "poll_offer", "report", "rolled_back"}));
    auto rolled = history("a").back();
    EXPECT_EQ(rolled.version, "1.1.0");
    EXPECT_EQ(nlohmann::json::parse(rolled.detail_json),
              (nlohmann::json{{"source", "implicit"}, {"running", "1.0.0"}, {"reason", "installing_reported"}}));

    // Recorded once per arming.
    now += 30;
    registry->record_poll(sighting("a", "1.0.0"), std::string("1.1.0"));
    EXPECT_EQ(registry->flush().rollbacks, 0u);
    // A new attempt arms it again.
    ASSERT_TRUE(registry->report({"a", DeviceStatus::installing, "1.1.0", "", 0}));
    registry->record_poll(sighting("a", "1.0.0"), std::string("1.1.0"));
    EXPECT_EQ(registry->flush().rollbacks, 1u);
}

TEST_F(DeviceRegistryTest, OfferNotTakenWithinTheTimeoutIsARollback) {
    registry->record_poll(sighting("a", "1.0.0"), std::string("1.1.0"));
    registry->flush();
    now += options.rollback_after_s - 1;
    registry->record_poll(sighting("a", "1.0.0"), std::string("1.1.0"));
    EXPECT_EQ(registry->flush().rollbacks, 0u);
    now += 1;
    registry->record_poll(sighting("a", "1.0.0"), std::string("1.1.0"));
    EXPECT_EQ(registry->flush().rollbacks, 1u);
    EXPECT_EQ(nlohmann::json::parse(history("a").back().detail_json)["reason"], "timeout");
}

TEST_F(DeviceRegistryTest, RollbackStateSurvivesARestart) {
    registry->record_poll(sighting("a", "1.0.0"), std::string("1.1.0"));
    registry->flush();
    ASSERT_TRUE(registry->report({"a", DeviceStatus::installing, "", "", 0}));  // version: the offered one
    EXPECT_EQ(device("a")->last_status_version, "1.1.0");
    registry.reset();  // a restart: the in-memory state is gone

    DeviceRegistry restarted(*db, options, [this] { return now; });
    restarted.record_poll(sighting("a", "1.0.0"), std::nullopt);
    EXPECT_EQ(restarted.flush().rollbacks, 1u);
    EXPECT_EQ(device("a")->last_status, "rolled_back");
}

TEST_F(DeviceRegistryTest, ReportsNeedAKnownDeviceAndSeePendingPolls) {
    EXPECT_FALSE(registry->report({"ghost", DeviceStatus::installed, "1.0.0", "", 0}));
    registry->record_poll(sighting("a", "1.0.0"), std::nullopt);  // not flushed yet
    EXPECT_EQ(registry->product_of("a"), product);
    EXPECT_TRUE(registry->report({"a", DeviceStatus::downloading, "1.1.0", std::string(3000, 'x'), 0}));
    auto report = history("a").back();
    EXPECT_EQ(report.status, "downloading");
    EXPECT_EQ(nlohmann::json::parse(report.detail_json)["detail"].get<std::string>().size(), 1024u);
    EXPECT_FALSE(registry->product_of("ghost").has_value());
}

TEST_F(DeviceRegistryTest, BackgroundFlusherAndFinalFlushOnStop) {
    registry->start();
    registry->record_poll(sighting("a", "1.0.0"), std::nullopt);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!device("a") && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(device("a").has_value());

    registry->record_poll(sighting("b", "1.0.0"), std::nullopt);
    registry->stop();  // whatever the timer has not written yet
    EXPECT_TRUE(device("b").has_value());
    EXPECT_EQ(registry->pending(), 0u);
}

TEST_F(DeviceRegistryTest, StatusNames) {
    EXPECT_EQ(parse_device_status("rolled_back"), DeviceStatus::rolled_back);
    EXPECT_EQ(parse_device_status("installed"), DeviceStatus::installed);
    EXPECT_FALSE(parse_device_status("Installed").has_value());
    EXPECT_FALSE(parse_device_status("success").has_value());
    EXPECT_EQ(valid_device_statuses(), "downloading, downloaded, installing, installed, failed, rolled_back");
}

// A device that reports right after its first poll must be found even while a
// flush has taken its sighting out of the pending map and not committed it yet
// (found by the fleet simulation: a report answered 404 "no device").
TEST_F(DeviceRegistryTest, ADeviceIsFoundWhileAFlushIsWritingItsFirstSighting) {
    registry->record_poll(sighting("new", "1.0.0"), std::nullopt);
    std::optional<storage::WriteTransaction> other_writer;
    other_writer.emplace(*db);  // the flush will wait for this writer
    auto flushing = std::async(std::launch::async, [this] { return registry->flush(); });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (registry->pending() != 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    ASSERT_EQ(registry->pending(), 0u);  // the flush holds the sighting now, uncommitted

    auto lookup = std::async(std::launch::async, [this] { return registry->product_of("new"); });
    // Without waiting for the flush, the lookup answers at once, and wrongly.
    if (lookup.wait_for(std::chrono::milliseconds(200)) == std::future_status::ready)
        EXPECT_EQ(lookup.get(), product) << "answered before the flush committed";
    other_writer->rollback();
    other_writer.reset();
    EXPECT_FALSE(flushing.get().failed);
    if (lookup.valid()) EXPECT_EQ(lookup.get(), product);
}

}  // namespace
}  // namespace otad::domain
