// The signing key ring (rotation, several active keys, the signer choice) and
// per-product device keys (open products, grants, revocation, cache freshness).

#include <gtest/gtest.h>

#include "device_test_support.hpp"
#include "otad/domain/change_watch.hpp"
#include "otad/domain/device_keys.hpp"
#include "otad/domain/signing_keys.hpp"
#include "otad/storage/audit_repository.hpp"

namespace otad::domain {
namespace {

class SigningKeyRingTest : public testing::DatabaseTest {};

std::vector<std::string> audit_actions(storage::Database& db) {
    auto entries = db.read([](storage::Connection& c) { return storage::AuditRepository(c).list(100); });
    std::vector<std::string> out;
    for (auto it = entries.rbegin(); it != entries.rend(); ++it) out.push_back(it->action);
    return out;
}

TEST_F(SigningKeyRingTest, EnsureCreatesOnlyWhenNoKeyIsActive) {
    SigningKeyRing ring(*db, SignatureAlgorithm::es256);
    EXPECT_EQ(ring.signer(), nullptr);
    auto created = ring.ensure_active_key("system");
    ASSERT_TRUE(created.has_value());
    EXPECT_EQ(created->algorithm, SignatureAlgorithm::es256);
    EXPECT_EQ(created->key_id.size(), 16u);
    EXPECT_FALSE(ring.ensure_active_key("system").has_value());
    ASSERT_NE(ring.signer(), nullptr);
    EXPECT_EQ(ring.signer()->key_id(), created->key_id);
    EXPECT_EQ(audit_actions(*db), std::vector<std::string>{"signing_key.create"});
}

TEST_F(SigningKeyRingTest, RotationAndSeveralActiveKeys) {
    SigningKeyRing ring(*db, SignatureAlgorithm::es256);
    auto es1 = ring.create(SignatureAlgorithm::es256, "cli").key;
    auto ed = ring.create(SignatureAlgorithm::ed25519, "cli");
    EXPECT_FALSE(ed.retired_key_id.has_value());  // another algorithm: both active

    auto keys = ring.list();
    ASSERT_EQ(keys.size(), 2u);
    EXPECT_TRUE(keys[0].active() && keys[1].active());
    EXPECT_EQ(ring.signer()->key_id(), es1.key_id);  // the preferred algorithm signs
    EXPECT_TRUE(keys[0].key_id == es1.key_id ? keys[0].signing : keys[1].signing);

    // Retiring the es256 key hands signing to the ed25519 one.
    ring.retire(es1.key_id, "cli");
    EXPECT_EQ(ring.signer()->key_id(), ed.key.key_id);
    EXPECT_EQ(ring.signer()->algorithm(), SignatureAlgorithm::ed25519);

    // A new es256 key takes over again; creating another es256 rotates it out.
    auto es2 = ring.create(SignatureAlgorithm::es256, "cli").key;
    EXPECT_EQ(ring.signer()->key_id(), es2.key_id);
    auto es3 = ring.create(SignatureAlgorithm::es256, "cli");
    EXPECT_EQ(es3.retired_key_id, es2.key_id);
    EXPECT_EQ(ring.signer()->key_id(), es3.key.key_id);

    keys = ring.list();
    ASSERT_EQ(keys.size(), 4u);
    int active = 0;
    for (const auto& k : keys) active += k.active();
    EXPECT_EQ(active, 2);  // es3 and ed

    // The last active key is kept unless forced.
    ring.retire(ed.key.key_id, "cli");
    try {
        ring.retire(es3.key.key_id, "cli");
        FAIL() << "expected SigningKeyError";
    } catch (const SigningKeyError& e) {
        EXPECT_EQ(e.kind(), SigningKeyError::Kind::refused);
    }
    try {
        ring.retire(es1.key_id, "cli");
        FAIL() << "expected SigningKeyError";
    } catch (const SigningKeyError& e) {
        EXPECT_EQ(e.kind(), SigningKeyError::Kind::not_found);
    }
    ring.retire(es3.key.key_id, "cli", /*allow_none=*/true);
    EXPECT_EQ(ring.signer(), nullptr);
    EXPECT_EQ(audit_actions(*db),
              (std::vector<std::string>{"signing_key.create", "signing_key.create", "signing_key.retire",
                                        "signing_key.create", "signing_key.create", "signing_key.retire",
                                        "signing_key.retire"}));
}

TEST_F(SigningKeyRingTest, AnotherProcessesChangesAreSeenThroughTheWatch) {
    ChangeWatch watch(*db);
    SigningKeyRing daemon(*db, SignatureAlgorithm::es256, &watch);
    SigningKeyRing cli(*db, SignatureAlgorithm::es256);  // like `otad keys create`
    auto first = cli.create(SignatureAlgorithm::es256, "cli").key;
    EXPECT_EQ(daemon.signer()->key_id(), first.key_id);
    auto second = cli.create(SignatureAlgorithm::es256, "cli").key;
    EXPECT_EQ(daemon.signer()->key_id(), second.key_id);
    EXPECT_EQ(daemon.list().size(), 2u);
}

class DeviceKeysTest : public testing::DatabaseTest {
protected:
    void SetUp() override {
        DatabaseTest::SetUp();
        thermo = add_product("thermo");
        lamp = add_product("lamp");
    }
    std::int64_t thermo = 0;
    std::int64_t lamp = 0;
};

// A supplied secret that passes the strength rules (32 random hex digits).
constexpr std::string_view kLampSecret = "7f3a9c04e1b85d26af0c93e7d14b6a58";

TEST_F(DeviceKeysTest, OpenUntilTheFirstKeyThenEnforced) {
    ChangeWatch watch(*db);
    DeviceKeys keys(*db, &watch);
    EXPECT_EQ(keys.check(thermo, "").access, DeviceAccess::open);
    EXPECT_EQ(keys.check(thermo, "anything").access, DeviceAccess::open);

    auto created = keys.create(thermo, "thermo", "fleet-a", std::nullopt, "token:admin");
    EXPECT_GE(created.secret.size(), 40u);
    EXPECT_TRUE(keys.product_requires_key(thermo));
    EXPECT_EQ(keys.check(thermo, "").access, DeviceAccess::denied);
    EXPECT_EQ(keys.check(thermo, "wrong-key-wrong-key").access, DeviceAccess::denied);
    auto granted = keys.check(thermo, created.secret);
    EXPECT_EQ(granted.access, DeviceAccess::granted);
    EXPECT_EQ(granted.key_name, "fleet-a");
    EXPECT_EQ(keys.check(lamp, created.secret).access, DeviceAccess::open);  // lamp has no keys

    // A key of another product is refused.
    auto lamp_key = keys.create(lamp, "lamp", "fleet-a", kLampSecret, "token:admin");
    EXPECT_EQ(keys.check(lamp, created.secret).access, DeviceAccess::denied);
    EXPECT_EQ(keys.check(lamp, kLampSecret).access, DeviceAccess::granted);

    keys.revoke(thermo, "thermo", "fleet-a", "token:admin");
    EXPECT_EQ(keys.check(thermo, created.secret).access, DeviceAccess::open);  // no active key left
    auto listed = keys.list(thermo);
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_FALSE(listed[0].active());
    EXPECT_EQ(audit_actions(*db),
              (std::vector<std::string>{"device_key.create", "device_key.create", "device_key.revoke"}));
}

TEST_F(DeviceKeysTest, UnknownDeviceIdsAreOnlyAdmittedToKeyHoldersOnceAnyProductHasKeys) {
    DeviceKeys keys(*db);
    EXPECT_TRUE(keys.may_learn_unknown_device(""));  // nothing is protected yet
    EXPECT_TRUE(keys.may_learn_unknown_device("whatever-whatever"));
    auto thermo_key = keys.create(thermo, "thermo", "fleet-a", std::nullopt, "token:admin");
    EXPECT_FALSE(keys.may_learn_unknown_device(""));
    EXPECT_FALSE(keys.may_learn_unknown_device("wrong-key-wrong-key"));
    EXPECT_TRUE(keys.may_learn_unknown_device(thermo_key.secret));  // a key of any product
    keys.create(lamp, "lamp", "lamp-fleet", kLampSecret, "token:admin");
    keys.revoke(thermo, "thermo", "fleet-a", "token:admin");
    EXPECT_FALSE(keys.may_learn_unknown_device(thermo_key.secret));  // revoked: no longer a key
    EXPECT_TRUE(keys.may_learn_unknown_device(kLampSecret));
    keys.revoke(lamp, "lamp", "lamp-fleet", "token:admin");
    EXPECT_TRUE(keys.may_learn_unknown_device(""));  // nothing is protected any more
}

TEST_F(DeviceKeysTest, RevocationByAnotherProcessIsSeen) {
    ChangeWatch watch(*db);
    DeviceKeys daemon(*db, &watch);
    DeviceKeys other(*db);
    auto a = other.create(thermo, "thermo", "a", std::nullopt, "cli");
    auto b = other.create(thermo, "thermo", "b", std::nullopt, "cli");
    EXPECT_EQ(daemon.check(thermo, a.secret).access, DeviceAccess::granted);
    other.revoke(thermo, "thermo", "a", "cli");
    EXPECT_EQ(daemon.check(thermo, a.secret).access, DeviceAccess::denied);
    EXPECT_EQ(daemon.check(thermo, b.secret).access, DeviceAccess::granted);
}

TEST_F(DeviceKeysTest, NamesSecretsAndConflicts) {
    DeviceKeys keys(*db);
    auto expect_error = [&](auto fn, DeviceKeyError::Kind kind) {
        try {
            fn();
            ADD_FAILURE() << "expected DeviceKeyError";
        } catch (const DeviceKeyError& e) {
            EXPECT_EQ(e.kind(), kind) << e.what();
        }
    };
    expect_error([&] { keys.create(thermo, "thermo", "bad name", std::nullopt, "t"); }, DeviceKeyError::Kind::invalid);
    expect_error([&] { keys.create(thermo, "thermo", "", std::nullopt, "t"); }, DeviceKeyError::Kind::invalid);
    expect_error([&] { keys.create(thermo, "thermo", "k", std::string_view("short"), "t"); },
                 DeviceKeyError::Kind::weak_secret);
    keys.create(thermo, "thermo", "k", std::nullopt, "t");
    expect_error([&] { keys.create(thermo, "thermo", "k", std::nullopt, "t"); }, DeviceKeyError::Kind::conflict);
    expect_error([&] { keys.revoke(thermo, "thermo", "nope", "t"); }, DeviceKeyError::Kind::not_found);
    EXPECT_TRUE(is_valid_device_key_name("fleet-2024_a.b"));
    EXPECT_FALSE(is_valid_device_key_name(std::string(65, 'a')));
}

TEST(DeviceKeyStrengthTest, ShortOrRegularSuppliedSecretsAreRefusedRandomOnesPass) {
    // Refused, each for a reason the message names.
    for (std::string_view weak : {
             std::string_view("0123456789abcdef"),                 // 16: the old minimum
             std::string_view("7f3a9c04e1b85d26af0c93e7d14b6a5"),  // 31
             std::string_view("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
             std::string_view("abcdefghijklmnopqrstuvwxyzabcdef"),  // counts up
             std::string_view("passwordpasswordpasswordpassword"),  // repeats
             std::string_view("my-fleet-key-2024-my-fleet-key-2"),  // a part twice
             std::string_view("abababababababababababababababab"),
             std::string_view("7f3a9c04e1b85d26 af0c93e7d14b6a58"),  // a space
         }) {
        auto reason = weak_device_key_reason(weak);
        EXPECT_TRUE(reason.has_value()) << weak;
    }
    EXPECT_NE(weak_device_key_reason("0123456789abcdef")->find("32..256 characters"), std::string::npos);
    EXPECT_NE(weak_device_key_reason("passwordpasswordpasswordpassword")->find("repeats"), std::string::npos);
    EXPECT_FALSE(weak_device_key_reason(std::string(257, 'x')).value_or("").empty());

    // Accepted: what a generator produces (hex as Espressif's keys, base64url, decimal digits).
    EXPECT_EQ(weak_device_key_reason("7f3a9c04e1b85d26af0c93e7d14b6a58"), std::nullopt);
    EXPECT_EQ(weak_device_key_reason("b1946ac92492d2347c6235b4d2611184a1c2e3f4"), std::nullopt);
    EXPECT_EQ(weak_device_key_reason("Xq3_vR9-tLm2KpZ8wYc4NbHs7JdEf0Ga"), std::nullopt);
    EXPECT_EQ(weak_device_key_reason("83920174658301927465019283746501"), std::nullopt);
    // And every secret otad generates itself, many times over.
    for (int i = 0; i < 2000; ++i) {
        std::string generated = util::random_token(32);
        EXPECT_EQ(weak_device_key_reason(generated), std::nullopt) << generated;
        std::string hex = util::to_hex(util::random_bytes(16));
        EXPECT_EQ(weak_device_key_reason(hex), std::nullopt) << hex;
    }
}

TEST_F(DeviceKeysTest, ASecretInUseIsRefusedWithoutSayingWhoseItIs) {
    DeviceKeys keys(*db);
    keys.create(thermo, "thermo", "fleet", kLampSecret, "t");
    std::string other_product, same_product;
    try {
        keys.create(lamp, "lamp", "fleet", kLampSecret, "t");
        ADD_FAILURE() << "a secret in use was accepted";
    } catch (const DeviceKeyError& e) {
        EXPECT_EQ(e.kind(), DeviceKeyError::Kind::conflict);
        other_product = e.what();
    }
    try {
        keys.create(thermo, "thermo", "second", kLampSecret, "t");
        ADD_FAILURE() << "a secret in use was accepted";
    } catch (const DeviceKeyError& e) {
        same_product = e.what();
    }
    // One answer whoever holds it, naming neither the product nor the other key.
    EXPECT_EQ(other_product, same_product);
    EXPECT_EQ(other_product.find("thermo"), std::string::npos) << other_product;
    EXPECT_EQ(other_product.find("in use"), std::string::npos) << other_product;
    // A taken name is still named as such (that is the caller's own product).
    try {
        keys.create(thermo, "thermo", "fleet", std::nullopt, "t");
        ADD_FAILURE();
    } catch (const DeviceKeyError& e) {
        EXPECT_NE(std::string(e.what()).find("already has an active key named 'fleet'"), std::string::npos);
    }
}

TEST(ChangeWatchTest, GenerationFollowsTheAuditLog) {
    testing::TempDir dir;
    storage::DatabaseOptions options;
    options.path = dir.path() / "otad.db";
    storage::Database db(options);
    storage::migrate(db);
    ChangeWatch watch(db);
    EXPECT_EQ(watch.generation(), 0);
    auto id = db.write([](storage::Connection& c) { return storage::AuditRepository(c).append("t", "x", "s"); });
    EXPECT_EQ(watch.generation(), id);

    ChangeWatch slow(db, std::chrono::hours(1));
    EXPECT_EQ(slow.generation(), id);
    auto id2 = db.write([](storage::Connection& c) { return storage::AuditRepository(c).append("t", "x", "s"); });
    EXPECT_EQ(slow.generation(), id);  // within min_interval: the cached value
    slow.touch();
    EXPECT_EQ(slow.generation(), id2);
}

}  // namespace
}  // namespace otad::domain
