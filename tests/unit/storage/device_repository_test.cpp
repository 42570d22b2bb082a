#include "otad/storage/device_repository.hpp"

#include <gtest/gtest.h>

#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/error.hpp"
#include "storage_test_support.hpp"

using namespace otad::storage;

namespace {

class DeviceRepositoryTest : public otad::storage::testing::MigratedDatabaseTest {
protected:
    void SetUp() override {
        MigratedDatabaseTest::SetUp();
        lease.emplace(db->lease());
        product_id = CatalogueRepository(lease->get()).create_product("app").id;
        other_product_id = CatalogueRepository(lease->get()).create_product("other").id;
        devices.emplace(lease->get());
    }
    void TearDown() override {
        devices.reset();
        lease.reset();
        MigratedDatabaseTest::TearDown();
    }

    DeviceSighting sighting(std::string id, std::string version, std::int64_t at, std::int64_t product = 0) {
        DeviceSighting s;
        s.id = std::move(id);
        s.product_id = product != 0 ? product : product_id;
        s.chip = "esp8266";
        s.layout = "1024+1024";
        s.slot = "user1";
        s.version = std::move(version);
        s.channel = "stable";
        s.remote_address = "192.0.2.7";
        s.seen_at = at;
        return s;
    }

    std::optional<ConnectionLease> lease;
    std::optional<DeviceRepository> devices;
    std::int64_t product_id = 0;
    std::int64_t other_product_id = 0;
};

TEST_F(DeviceRepositoryTest, BatchUpsertInsertsThenUpdatesKeepingFirstSeen) {
    std::vector<DeviceSighting> batch = {sighting("aa:01", "1.0.0", 100), sighting("aa:02", "1.0.0", 101),
                                         sighting("aa:03", "0.9.0", 102)};
    batch[2].secure_version = 2;
    devices->upsert_many(batch);

    auto d1 = devices->get("aa:01");
    ASSERT_TRUE(d1.has_value());
    EXPECT_EQ(d1->product_id, product_id);
    EXPECT_EQ(d1->chip, "esp8266");
    EXPECT_EQ(d1->layout, "1024+1024");
    EXPECT_EQ(d1->slot, "user1");
    EXPECT_EQ(d1->version, "1.0.0");
    EXPECT_EQ(d1->channel, "stable");
    EXPECT_EQ(d1->remote_address, "192.0.2.7");
    EXPECT_EQ(d1->first_seen, 100);
    EXPECT_EQ(d1->last_seen, 100);
    EXPECT_FALSE(d1->secure_version.has_value());
    EXPECT_FALSE(d1->offered_version.has_value());
    EXPECT_EQ(devices->get("aa:03")->secure_version, 2);

    DeviceSighting updated = sighting("aa:01", "1.1.0", 200);
    updated.slot = "user2";
    std::vector<DeviceSighting> second = {updated, sighting("aa:02", "0.1.0", 50) /* late, older */};
    devices->upsert_many(second);

    d1 = devices->get("aa:01");
    EXPECT_EQ(d1->version, "1.1.0");
    EXPECT_EQ(d1->slot, "user2");
    EXPECT_EQ(d1->first_seen, 100);
    EXPECT_EQ(d1->last_seen, 200);
    auto d2 = devices->get("aa:02");
    EXPECT_EQ(d2->version, "1.0.0");
    EXPECT_EQ(d2->last_seen, 101);
    EXPECT_FALSE(devices->get("zz:99").has_value());
}

TEST_F(DeviceRepositoryTest, BatchIsAllOrNothing) {
    std::vector<DeviceSighting> batch = {sighting("ok", "1.0.0", 100), sighting("bad", "1.0.0", 100, 424242)};
    try {
        devices->upsert_many(batch);
        FAIL() << "expected reference error";
    } catch (const StorageError& e) {
        EXPECT_EQ(e.kind(), StorageErrorKind::reference);
    }
    EXPECT_FALSE(devices->get("ok").has_value());
}

TEST_F(DeviceRepositoryTest, ListFiltersAndPaginates) {
    std::vector<DeviceSighting> batch;
    for (int i = 0; i < 5; ++i)
        batch.push_back(sighting("dev-" + std::to_string(i), i < 3 ? "1.0.0" : "2.0.0", 100 + i));
    batch.push_back(sighting("other-1", "1.0.0", 100, other_product_id));
    devices->upsert_many(batch);
    devices->record_status("dev-1", "failed", "2.0.0", 300);

    DeviceFilter by_product;
    by_product.product_id = product_id;
    by_product.limit = 2;
    std::vector<std::string> ids;
    for (int pages = 0; pages < 10; ++pages) {
        auto page = devices->list(by_product);
        for (const auto& d : page) ids.push_back(d.id);
        if (page.size() < by_product.limit) break;
        by_product.after_id = page.back().id;
    }
    EXPECT_EQ(ids, (std::vector<std::string>{"dev-0", "dev-1", "dev-2", "dev-3", "dev-4"}));

    DeviceFilter by_version;
    by_version.product_id = product_id;
    by_version.version = "2.0.0";
    auto v2 = devices->list(by_version);
    ASSERT_EQ(v2.size(), 2u);
    EXPECT_EQ(v2[0].id, "dev-3");
    EXPECT_EQ(devices->count(by_version), 2);

    DeviceFilter by_status;
    by_status.status = "failed";
    auto failed = devices->list(by_status);
    ASSERT_EQ(failed.size(), 1u);
    EXPECT_EQ(failed[0].id, "dev-1");

    DeviceFilter everything;
    EXPECT_EQ(devices->count(everything), 6);
    DeviceFilter wrong_channel;
    wrong_channel.channel = "beta";
    EXPECT_EQ(devices->count(wrong_channel), 0);
}

TEST_F(DeviceRepositoryTest, OfferAndStatusAreRecorded) {
    std::vector<DeviceSighting> batch = {sighting("d", "1.0.0", 100)};
    devices->upsert_many(batch);
    EXPECT_TRUE(devices->record_offer("d", "1.1.0", 150));
    EXPECT_TRUE(devices->record_status("d", "success", "1.1.0", 160));
    EXPECT_FALSE(devices->record_offer("unknown", "1.1.0", 150));
    auto d = devices->get("d");
    EXPECT_EQ(d->offered_version, "1.1.0");
    EXPECT_EQ(d->offered_at, 150);
    EXPECT_EQ(d->last_status, "success");
    EXPECT_EQ(d->last_status_version, "1.1.0");
    EXPECT_EQ(d->last_status_at, 160);
}

TEST_F(DeviceRepositoryTest, EventsFormANewestFirstHistory) {
    std::vector<DeviceSighting> batch = {sighting("d", "1.0.0", 100)};
    devices->upsert_many(batch);
    std::int64_t e1 = devices->append_event({"d", 100, DeviceEventKind::first_seen, "1.0.0", std::nullopt, "{}"});
    std::int64_t e2 = devices->append_event({"d", 150, DeviceEventKind::poll_offer, "1.1.0", std::nullopt, "{}"});
    std::int64_t e3 =
        devices->append_event({"d", 160, DeviceEventKind::report, "1.1.0", "success", R"({"bytes":4096})"});

    auto history = devices->history("d", 2);
    ASSERT_EQ(history.size(), 2u);
    EXPECT_EQ(history[0].id, e3);
    EXPECT_EQ(history[0].kind, DeviceEventKind::report);
    EXPECT_EQ(history[0].status, "success");
    EXPECT_EQ(history[0].detail_json, R"({"bytes":4096})");
    EXPECT_EQ(history[1].id, e2);
    EXPECT_FALSE(history[1].status.has_value());
    auto older = devices->history("d", 2, history.back().id);
    ASSERT_EQ(older.size(), 1u);
    EXPECT_EQ(older[0].id, e1);

    EXPECT_EQ(devices->prune_events(150), 1);
    EXPECT_EQ(devices->history("d", 10).size(), 2u);
}

TEST_F(DeviceRepositoryTest, EventForUnknownDeviceIsAReferenceError) {
    try {
        devices->append_event({"ghost", 1, DeviceEventKind::report, std::nullopt, "failed", "{}"});
        FAIL() << "expected reference error";
    } catch (const StorageError& e) {
        EXPECT_EQ(e.kind(), StorageErrorKind::reference);
    }
}

TEST_F(DeviceRepositoryTest, EventKindNamesRoundTrip) {
    for (auto kind : {DeviceEventKind::first_seen, DeviceEventKind::poll_offer, DeviceEventKind::download,
                      DeviceEventKind::report, DeviceEventKind::version_changed, DeviceEventKind::rolled_back})
        EXPECT_EQ(parse_device_event_kind(to_string(kind)), kind);
    EXPECT_FALSE(parse_device_event_kind("reboot").has_value());
}

}  // namespace
