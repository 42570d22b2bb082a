// The poll decision end to end over a real (temporary) database: manifest bytes,
// signature, caching per (artifact, slot, window, interval bucket), offered
// marking, catalogue changes, errors.

#include "otad/domain/device_updates.hpp"

#include <gtest/gtest.h>

#include "device_test_support.hpp"
#include "otad/domain/change_watch.hpp"
#include "otad/domain/device_registry.hpp"
#include "otad/domain/presigned_url.hpp"
#include "otad/domain/signing.hpp"
#include "otad/domain/signing_keys.hpp"
#include "otad/domain/url_signer.hpp"
#include "otad/storage/audit_repository.hpp"
#include "otad/storage/device_repository.hpp"
#include "otad/util/crypto.hpp"

namespace otad::domain {
namespace {

constexpr std::int64_t kNow = 1'700'000'000;
constexpr std::int64_t kWindow = 3600;
constexpr std::int64_t kValidity = 86400;

nlohmann::json app_desc(std::uint32_t secure_version, const std::string& version) {
    return {{"format", "esp32"},
            {"app_desc",
             {{"offset", 32},
              {"secure_version", secure_version},
              {"version", version},
              {"project_name", "thermo"},
              {"time", "12:00:00"},
              {"date", "Jan  1 2025"},
              {"idf_ver", "v5.2.1"},
              {"app_elf_sha256", std::string(64, 'a')},
              {"mmu_page_size", 16}}}};
}

class DeviceUpdatesTest : public testing::DatabaseTest {
protected:
    void SetUp() override {
        DatabaseTest::SetUp();
        watch = std::make_unique<ChangeWatch>(*db);
        keys = std::make_unique<SigningKeyRing>(*db, SignatureAlgorithm::es256, watch.get());
        keys->create(SignatureAlgorithm::es256, "test");
        urls = std::make_unique<UrlSigner>("test-secret", kWindow, kValidity);
        registry = std::make_unique<DeviceRegistry>(*db, DeviceRegistryOptions{}, [this] { return now; });
        product = add_product("thermo");
        v110 = add_release(product, "1.1.0");
        esp32_image = add_artifact(v110, "esp32", "ota", "", "esp32 image 1.1.0", app_desc(1, "1.1.0"));
        user1 = add_artifact(v110, "esp8266", "512+512", "user1", "user1 image 1.1.0");
        set_channel(product, "stable", v110);
        make_updates();
    }
    void TearDown() override {
        updates.reset();
        registry.reset();  // flushes into the database, so before it closes
        DatabaseTest::TearDown();
    }
    void make_updates(std::string public_url = "") {
        DeviceUpdatesOptions options;
        options.public_url = std::move(public_url);
        options.poll_interval_s = 3600;
        options.poll_jitter_s = 630;  // 630 / 63 = 10 s per bucket
        updates = std::make_unique<DeviceUpdates>(
            *db, *keys, *urls, registry.get(), watch.get(), options, [this] { return now; },
            [this] { return next_random; });
    }
    PollRequest esp32_poll(const std::string& version = "1.0.0", const std::string& slot = "ota_0") {
        PollRequest r;
        r.product = "thermo";
        r.product_id = product;
        r.device.chip = Chip::esp32;
        r.device.layout = Layout::ota;
        r.device.running_slot = slot;
        r.device.version = version;
        r.device_id = "dev-1";
        r.base_url = "https://ota.test:8443";
        r.remote_address = "10.0.0.7:5555";
        return r;
    }

    std::int64_t now = kNow;
    std::uint64_t next_random = 0;
    std::unique_ptr<ChangeWatch> watch;
    std::unique_ptr<SigningKeyRing> keys;
    std::unique_ptr<UrlSigner> urls;
    std::unique_ptr<DeviceRegistry> registry;
    std::unique_ptr<DeviceUpdates> updates;
    std::int64_t product = 0;
    std::int64_t v110 = 0;
    storage::Artifact esp32_image;
    storage::Artifact user1;
};

TEST_F(DeviceUpdatesTest, ManifestBytesAreExactAndSigned) {
    next_random = 5;  // bucket 5: 3600 + 5 * 10
    PollOutcome out = updates->poll(esp32_poll());
    ASSERT_TRUE(out.manifest);
    EXPECT_FALSE(out.no_update.has_value());
    EXPECT_EQ(out.poll_interval_s, 3650u);

    const std::int64_t expires = expiry_window_end(kNow, kWindow, kValidity);
    const std::string path = "/api/v1/blobs/" + esp32_image.sha256;
    const std::string url = "https://ota.test:8443" + path + "?" + presign("test-secret", path, expires);
    const std::string expected =
        R"({"product":"thermo","version":"1.1.0","chip":"esp32","layout":"ota","slot":"ota_1","size":)" +
        std::to_string(esp32_image.size) + R"(,"sha256":")" + esp32_image.sha256 + R"(","md5":")" + esp32_image.md5 +
        R"(","url":")" + url +
        R"(","app":{"project_name":"thermo","version":"1.1.0","idf_ver":"v5.2.1","secure_version":1,"date":"Jan  1 2025","time":"12:00:00","app_elf_sha256":")" +
        std::string(64, 'a') + R"("},"poll_interval_s":3650})";
    EXPECT_EQ(out.manifest->body, expected);
    EXPECT_EQ(out.manifest->url_expires, expires);
    EXPECT_EQ(out.manifest->target_slot, "ota_1");

    auto parsed = parse_signature_header(out.manifest->signature_header);
    ASSERT_TRUE(parsed.has_value());
    auto signer = keys->signer();
    EXPECT_EQ(parsed->key_id, signer->key_id());
    EXPECT_EQ(parsed->algorithm, SignatureAlgorithm::es256);
    auto verifier = VerifyingKey::from_public_pem(keys->list().front().public_pem);
    EXPECT_TRUE(verifier.verify(out.manifest->body, parsed->signature));
    std::string tampered = out.manifest->body;
    tampered[tampered.size() - 2] = '1';
    EXPECT_FALSE(verifier.verify(tampered, parsed->signature));
}

TEST_F(DeviceUpdatesTest, PublicUrlWinsOverTheRequestHost) {
    make_updates("https://cdn.example.com/");
    auto out = updates->poll(esp32_poll());
    ASSERT_TRUE(out.manifest);
    auto body = nlohmann::json::parse(out.manifest->body);
    EXPECT_EQ(body["url"].get<std::string>().rfind(
                  "https://cdn.example.com/api/v1/blobs/" + esp32_image.sha256 + "?expires=", 0),
              0u)
        << body["url"];
}

TEST_F(DeviceUpdatesTest, ManifestIsSignedOncePerArtifactSlotWindowAndBucket) {
    next_random = 0;
    auto first = updates->poll(esp32_poll());
    auto again = updates->poll(esp32_poll());
    EXPECT_EQ(first.manifest.get(), again.manifest.get());  // the same cached bytes
    EXPECT_EQ(updates->stats().manifests_signed, 1u);
    EXPECT_EQ(updates->stats().manifest_cache_hits, 1u);

    // Another device, same artifact and slot: still cached.
    auto other = esp32_poll();
    other.device_id = "dev-2";
    EXPECT_EQ(updates->poll(other).manifest.get(), first.manifest.get());

    // Another target slot: another manifest.
    auto from_ota1 = updates->poll(esp32_poll("1.0.0", "ota_1"));
    EXPECT_EQ(from_ota1.manifest->target_slot, "ota_0");
    EXPECT_EQ(updates->stats().manifests_signed, 2u);

    // Another jitter bucket: another body (and signature).
    next_random = 63;
    auto late = updates->poll(esp32_poll());
    EXPECT_EQ(late.poll_interval_s, 3600u + 630u);
    EXPECT_NE(late.manifest->body, first.manifest->body);
    EXPECT_EQ(updates->stats().manifests_signed, 3u);

    // Later in the same URL window: cached; in the next window: new URL and signature.
    next_random = 0;
    now = kNow + 1;
    EXPECT_EQ(updates->poll(esp32_poll()).manifest.get(), first.manifest.get());
    now = expiry_window_end(kNow, kWindow, kValidity) - kValidity + 1;  // first second of the next window's URLs
    auto next_window = updates->poll(esp32_poll());
    EXPECT_GT(next_window.manifest->url_expires, first.manifest->url_expires);
    EXPECT_NE(next_window.manifest->body, first.manifest->body);
    EXPECT_EQ(updates->stats().manifests_signed, 4u);
}

TEST_F(DeviceUpdatesTest, BucketIntervalsSpanTheJitterRange) {
    EXPECT_EQ(DeviceUpdates::bucket_interval(3600, 300, 0), 3600u);
    EXPECT_EQ(DeviceUpdates::bucket_interval(3600, 300, kPollIntervalBuckets - 1), 3900u);
    EXPECT_EQ(DeviceUpdates::bucket_interval(3600, 0, 17), 3600u);
    for (int k = 1; k < kPollIntervalBuckets; ++k)
        EXPECT_GE(DeviceUpdates::bucket_interval(3600, 300, k), DeviceUpdates::bucket_interval(3600, 300, k - 1));
}

TEST_F(DeviceUpdatesTest, UpToDateAnswersNoUpdateWithExactJitter) {
    next_random = 1000;
    auto out = updates->poll(esp32_poll("1.1.0"));
    EXPECT_FALSE(out.manifest);
    ASSERT_TRUE(out.no_update.has_value());
    EXPECT_EQ(out.no_update->reason, NoUpdateReason::up_to_date);
    EXPECT_EQ(out.poll_interval_s, 3600u + 1000u % 631u);
}

TEST_F(DeviceUpdatesTest, FirstOfferMarksTheReleaseOfferedAndAuditsIt) {
    auto before = db->read([&](storage::Connection& c) { return storage::CatalogueRepository(c).get_release(v110); });
    EXPECT_FALSE(before->offered);
    updates->poll(esp32_poll("1.1.0"));  // up to date: not an offer
    EXPECT_FALSE(
        db->read([&](storage::Connection& c) { return storage::CatalogueRepository(c).get_release(v110); })->offered);

    updates->poll(esp32_poll());
    updates->poll(esp32_poll());
    EXPECT_TRUE(
        db->read([&](storage::Connection& c) { return storage::CatalogueRepository(c).get_release(v110); })->offered);
    auto audit = db->read([](storage::Connection& c) { return storage::AuditRepository(c).list(100); });
    int offered_entries = 0;
    for (const auto& e : audit)
        if (e.action == "release.offered") {
            ++offered_entries;
            EXPECT_EQ(e.subject, "product/thermo/release/1.1.0");
            EXPECT_EQ(e.actor, "system");
        }
    EXPECT_EQ(offered_entries, 1);
}

TEST_F(DeviceUpdatesTest, NonosSlotsNeverGetTheWrongBuild) {
    PollRequest r = esp32_poll();
    r.device.chip = Chip::esp8266;
    r.device.layout = Layout::nonos_512_512;
    r.device.running_slot = "user2";  // needs user1: present
    auto out = updates->poll(r);
    ASSERT_TRUE(out.manifest);
    EXPECT_EQ(out.manifest->artifact_id, user1.id);
    EXPECT_EQ(nlohmann::json::parse(out.manifest->body)["slot"], "user1");
    EXPECT_EQ(nlohmann::json::parse(out.manifest->body)["sha256"], user1.sha256);
    EXPECT_FALSE(nlohmann::json::parse(out.manifest->body).contains("app"));

    r.device.running_slot = "user1";  // needs user2: missing
    auto missing = updates->poll(r);
    EXPECT_FALSE(missing.manifest);
    ASSERT_TRUE(missing.no_update.has_value());
    EXPECT_EQ(missing.no_update->reason, NoUpdateReason::missing_slot_artifact);
}

TEST_F(DeviceUpdatesTest, AntiRollbackAndOtherChipsAreRespected) {
    PollRequest r = esp32_poll();
    r.device.secure_version = 2;  // the image has 1
    auto out = updates->poll(r);
    ASSERT_TRUE(out.no_update.has_value());
    EXPECT_EQ(out.no_update->reason, NoUpdateReason::secure_version_too_low);

    r = esp32_poll();
    r.device.chip = Chip::esp32c3;  // the release only has esp32 and esp8266 builds
    out = updates->poll(r);
    ASSERT_TRUE(out.no_update.has_value());
    EXPECT_EQ(out.no_update->reason, NoUpdateReason::no_artifact);
}

TEST_F(DeviceUpdatesTest, UnknownChannelAndBadSlotAreErrors) {
    PollRequest r = esp32_poll();
    r.channel = "beta";
    try {
        updates->poll(r);
        FAIL() << "expected DeviceUpdateError";
    } catch (const DeviceUpdateError& e) {
        EXPECT_EQ(e.kind(), DeviceUpdateError::Kind::not_found);
        EXPECT_STREQ(e.what(), "product 'thermo' has no channel 'beta'; its channels: stable");
        EXPECT_EQ(e.extra()["channels"], nlohmann::json::array({"stable"}));
    }
    r = esp32_poll("1.0.0", "user1");
    try {
        updates->poll(r);
        FAIL() << "expected DeviceUpdateError";
    } catch (const DeviceUpdateError& e) {
        EXPECT_EQ(e.kind(), DeviceUpdateError::Kind::bad_request);
        EXPECT_STREQ(e.what(),
                     "slot 'user1' is not valid for layout ota with 2 OTA slots; valid: factory, ota_0, ota_1");
    }
    EXPECT_EQ(updates->product_id("thermo"), product);
    EXPECT_FALSE(updates->product_id("nope").has_value());
}

TEST_F(DeviceUpdatesTest, ChannelMovesAreSeenOnTheNextPoll) {
    EXPECT_EQ(updates->poll(esp32_poll()).manifest->version, "1.1.0");
    auto v120 = add_release(product, "1.2.0");
    add_artifact(v120, "esp32", "ota", "", "esp32 image 1.2.0", app_desc(1, "1.2.0"));
    set_channel(product, "stable", v120);
    EXPECT_EQ(updates->poll(esp32_poll()).manifest->version, "1.2.0");

    // Back to 1.1.0 without rollback: a 1.2.0 device stays; with rollback it is offered.
    set_channel(product, "stable", v110);
    auto stays = updates->poll(esp32_poll("1.2.0"));
    ASSERT_TRUE(stays.no_update.has_value());
    EXPECT_EQ(stays.no_update->reason, NoUpdateReason::older_release);
    set_channel(product, "stable", v110, /*rollback=*/true);
    EXPECT_EQ(updates->poll(esp32_poll("1.2.0")).manifest->version, "1.1.0");
}

TEST_F(DeviceUpdatesTest, KeyRotationChangesTheSigner) {
    auto first = updates->poll(esp32_poll());
    auto old_id = parse_signature_header(first.manifest->signature_header)->key_id;
    auto created = keys->create(SignatureAlgorithm::es256, "test");
    EXPECT_EQ(created.retired_key_id, old_id);
    auto second = updates->poll(esp32_poll());
    auto parsed = parse_signature_header(second.manifest->signature_header);
    EXPECT_EQ(parsed->key_id, created.key.key_id);
    EXPECT_TRUE(VerifyingKey::from_public_pem(created.key.public_pem).verify(second.manifest->body, parsed->signature));
}

TEST_F(DeviceUpdatesTest, NoActiveKeyIsUnavailable) {
    keys->retire(keys->signer()->key_id(), "test", /*allow_none=*/true);
    try {
        updates->poll(esp32_poll());
        FAIL() << "expected DeviceUpdateError";
    } catch (const DeviceUpdateError& e) {
        EXPECT_EQ(e.kind(), DeviceUpdateError::Kind::unavailable);
        EXPECT_EQ(e.code(), "no-signing-key");
    }
    // "No update" needs no signature.
    EXPECT_TRUE(updates->poll(esp32_poll("1.1.0")).no_update.has_value());
}

TEST_F(DeviceUpdatesTest, PollsAreRecordedInTheRegistry) {
    updates->poll(esp32_poll());
    auto other = esp32_poll("1.1.0");
    other.device_id = "dev-2";
    updates->poll(other);
    EXPECT_EQ(registry->pending(), 2u);
    EXPECT_EQ(registry->flush().devices, 2u);
    auto dev = db->read([](storage::Connection& c) { return storage::DeviceRepository(c).get("dev-1"); });
    ASSERT_TRUE(dev.has_value());
    EXPECT_EQ(dev->product_id, product);
    EXPECT_EQ(dev->chip, "esp32");
    EXPECT_EQ(dev->layout, "ota");
    EXPECT_EQ(dev->slot, "ota_0");
    EXPECT_EQ(dev->version, "1.0.0");
    EXPECT_EQ(dev->channel, "stable");
    EXPECT_EQ(dev->remote_address, "10.0.0.7");
    EXPECT_EQ(dev->last_seen, kNow);
    EXPECT_EQ(dev->offered_version, "1.1.0");
    auto dev2 = db->read([](storage::Connection& c) { return storage::DeviceRepository(c).get("dev-2"); });
    EXPECT_FALSE(dev2->offered_version.has_value());
}

}  // namespace
}  // namespace otad::domain
