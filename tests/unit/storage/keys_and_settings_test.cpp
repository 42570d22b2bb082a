#include <functional>

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/device_key_repository.hpp"
#include "otad/storage/error.hpp"
#include "otad/storage/settings_repository.hpp"
#include "otad/storage/signing_key_repository.hpp"
#include "otad/util/crypto.hpp"
#include "storage_test_support.hpp"

using namespace otad::storage;

namespace {

class KeysAndSettingsTest : public otad::storage::testing::MigratedDatabaseTest {
protected:
    void SetUp() override {
        MigratedDatabaseTest::SetUp();
        lease.emplace(db->lease());
        product_id = CatalogueRepository(lease->get()).create_product("app").id;
    }
    void TearDown() override {
        lease.reset();
        MigratedDatabaseTest::TearDown();
    }
    Connection& connection() { return lease->get(); }

    std::optional<ConnectionLease> lease;
    std::int64_t product_id = 0;
};

StorageErrorKind kind_of(const std::function<void()>& action) {
    try {
        action();
    } catch (const StorageError& e) {
        return e.kind();
    }
    ADD_FAILURE() << "expected a StorageError";
    return StorageErrorKind::internal;
}

TEST_F(KeysAndSettingsTest, DeviceKeysAreFoundBySecretUntilRevoked) {
    DeviceKeyRepository keys(connection());
    EXPECT_FALSE(keys.any_active());
    CreatedDeviceKey key = keys.create(product_id, "fleet-a");
    EXPECT_TRUE(keys.any_active());
    EXPECT_EQ(key.secret.size(), 43u);
    EXPECT_EQ(key.record.product_id, product_id);
    auto found = keys.find_by_secret(key.secret);
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->id, key.record.id);
    EXPECT_FALSE(keys.find_by_secret("guess").has_value());

    EXPECT_EQ(kind_of([&] { keys.create(product_id, "fleet-a"); }), StorageErrorKind::conflict);
    EXPECT_TRUE(keys.revoke(product_id, "fleet-a"));
    EXPECT_FALSE(keys.any_active());
    EXPECT_FALSE(keys.revoke(product_id, "fleet-a"));
    EXPECT_FALSE(keys.find_by_secret(key.secret).has_value());
    keys.create(product_id, "fleet-a");  // the name is free again
    EXPECT_EQ(keys.list(product_id).size(), 2u);
    EXPECT_EQ(keys.list(product_id, false).size(), 1u);

    // Only the hash is stored.
    auto st = connection().prepare("SELECT count(*) FROM device_keys WHERE key_hash = ?");
    st->bind(1, otad::util::sha256_hex(key.secret));
    st->executeStep();
    EXPECT_EQ(st->getColumn(0).getInt(), 1);
}

TEST_F(KeysAndSettingsTest, DeviceKeyWithBakedInSecret) {
    DeviceKeyRepository keys(connection());
    DeviceKey key = keys.create_with_secret(product_id, "legacy", "1234567890abcdef");
    EXPECT_EQ(keys.find_by_secret("1234567890abcdef")->id, key.id);
    EXPECT_EQ(kind_of([&] { keys.create_with_secret(product_id, "again", "1234567890abcdef"); }),
              StorageErrorKind::conflict);
    EXPECT_EQ(kind_of([&] { keys.create_with_secret(4242, "x", "other"); }), StorageErrorKind::reference);
}

TEST_F(KeysAndSettingsTest, OneActiveSigningKeyPerAlgorithm) {
    SigningKeyRepository keys(connection());
    SigningKey first{"k1", SigningAlgorithm::es256, "PRIVATE-1", "PUBLIC-1", 100, std::nullopt};
    keys.insert(first);
    EXPECT_EQ(keys.active(SigningAlgorithm::es256)->key_id, "k1");
    EXPECT_FALSE(keys.active(SigningAlgorithm::ed25519).has_value());

    SigningKey second{"k2", SigningAlgorithm::es256, "PRIVATE-2", "PUBLIC-2", 200, std::nullopt};
    EXPECT_EQ(kind_of([&] { keys.insert(second); }), StorageErrorKind::conflict);
    EXPECT_EQ(kind_of([&] { keys.insert(first); }), StorageErrorKind::conflict);

    {
        // Rotation: retire and insert in one transaction.
        WriteTransaction tx(connection());
        EXPECT_TRUE(keys.retire("k1"));
        keys.insert(second);
        tx.commit();
    }
    EXPECT_EQ(keys.active(SigningAlgorithm::es256)->key_id, "k2");
    auto old = keys.get("k1");
    ASSERT_TRUE(old.has_value());
    EXPECT_TRUE(old->retired_at.has_value());
    EXPECT_EQ(old->public_key_pem, "PUBLIC-1");
    EXPECT_FALSE(keys.retire("k1"));
    auto all = keys.list();
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].key_id, "k1");
    EXPECT_EQ(all[1].created_at, 200);
    EXPECT_EQ(parse_signing_algorithm("ed25519"), SigningAlgorithm::ed25519);
    EXPECT_FALSE(parse_signing_algorithm("rsa").has_value());
}

TEST_F(KeysAndSettingsTest, SettingsSetGetRemove) {
    SettingsRepository settings(connection());
    EXPECT_FALSE(settings.get("url_hmac_key").has_value());
    settings.set("url_hmac_key", "00ff");
    settings.set("url_hmac_key", "11ee");
    EXPECT_EQ(settings.get("url_hmac_key"), "11ee");
    EXPECT_TRUE(settings.remove("url_hmac_key"));
    EXPECT_FALSE(settings.remove("url_hmac_key"));
    EXPECT_EQ(kind_of([&] { settings.set("", "x"); }), StorageErrorKind::invalid);
}

TEST_F(KeysAndSettingsTest, GetOrCreateMakesTheValueOnce) {
    SettingsRepository settings(connection());
    int calls = 0;
    auto make = [&] {
        ++calls;
        return std::string("generated-") + std::to_string(calls);
    };
    EXPECT_EQ(settings.get_or_create("url_hmac_key", make), "generated-1");
    EXPECT_EQ(settings.get_or_create("url_hmac_key", make), "generated-1");
    EXPECT_EQ(calls, 1);
}

}  // namespace
