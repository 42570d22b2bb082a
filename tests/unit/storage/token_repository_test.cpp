#include "otad/storage/token_repository.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include "otad/storage/error.hpp"
#include "otad/util/crypto.hpp"
#include "otad/util/strings.hpp"
#include "storage_test_support.hpp"

using namespace otad::storage;

namespace {

class TokenRepositoryTest : public otad::storage::testing::MigratedDatabaseTest {};

TEST_F(TokenRepositoryTest, CreateReturnsSecretOnceAndStoresOnlyItsHash) {
    const auto before = otad::util::unix_now();
    CreatedToken created = db->read([](Connection& c) { return TokenRepository(c).create("ci", TokenRole::uploader); });
    EXPECT_EQ(created.secret.substr(0, 5), "otad_");
    EXPECT_EQ(created.secret.size(), 5u + 43u);  // 32 bytes as unpadded base64url
    EXPECT_EQ(created.record.name, "ci");
    EXPECT_EQ(created.record.role, TokenRole::uploader);
    EXPECT_GE(created.record.created_at, before);
    EXPECT_LE(created.record.created_at, otad::util::unix_now());
    EXPECT_FALSE(created.record.last_used_at.has_value());
    EXPECT_TRUE(created.record.active());

    db->read([&](Connection& c) {
        auto st = c.prepare("SELECT token_hash, name, role FROM tokens");
        ASSERT_TRUE(st->executeStep());
        EXPECT_EQ(st->getColumn(0).getString(), otad::util::sha256_hex(created.secret));
        // No column of the row holds the secret itself.
        for (int i = 0; i < 3; ++i)
            EXPECT_EQ(st->getColumn(i).getString().find(created.secret.substr(5)), std::string::npos);
        EXPECT_FALSE(st->executeStep());
    });
}

TEST_F(TokenRepositoryTest, SecretsAreUnique) {
    auto lease = db->lease();
    TokenRepository tokens(*lease);
    EXPECT_NE(tokens.create("a", TokenRole::viewer).secret, tokens.create("b", TokenRole::viewer).secret);
}

TEST_F(TokenRepositoryTest, LookupBySecretFindsOnlyActiveTokens) {
    auto lease = db->lease();
    TokenRepository tokens(*lease);
    CreatedToken admin = tokens.create("root", TokenRole::admin);
    auto found = tokens.find_by_secret(admin.secret);
    ASSERT_TRUE(found.has_value());
    EXPECT_EQ(found->id, admin.record.id);
    EXPECT_EQ(found->role, TokenRole::admin);

    EXPECT_FALSE(tokens.find_by_secret(admin.secret + "x").has_value());
    EXPECT_FALSE(tokens.find_by_secret("").has_value());

    EXPECT_TRUE(tokens.revoke("root"));
    EXPECT_FALSE(tokens.revoke("root"));
    EXPECT_FALSE(tokens.find_by_secret(admin.secret).has_value());
    auto all = tokens.list(true);
    ASSERT_EQ(all.size(), 1u);
    EXPECT_TRUE(all[0].revoked_at.has_value());
    EXPECT_TRUE(tokens.list(false).empty());
}

TEST_F(TokenRepositoryTest, ActiveNamesAreUniqueButRevokedNamesCanBeReused) {
    auto lease = db->lease();
    TokenRepository tokens(*lease);
    tokens.create("ci", TokenRole::uploader);
    try {
        tokens.create("ci", TokenRole::viewer);
        FAIL() << "expected conflict";
    } catch (const StorageError& e) {
        EXPECT_EQ(e.kind(), StorageErrorKind::conflict);
        EXPECT_NE(std::string(e.what()).find("'ci'"), std::string::npos) << e.what();
    }
    ASSERT_TRUE(tokens.revoke("ci"));
    CreatedToken again = tokens.create("ci", TokenRole::viewer);
    EXPECT_EQ(tokens.find_active_by_name("ci")->id, again.record.id);
    EXPECT_EQ(tokens.list().size(), 2u);
}

TEST_F(TokenRepositoryTest, InvalidNameIsRejectedBySchema) {
    auto lease = db->lease();
    TokenRepository tokens(*lease);
    try {
        tokens.create("", TokenRole::viewer);
        FAIL() << "expected invalid";
    } catch (const StorageError& e) {
        EXPECT_EQ(e.kind(), StorageErrorKind::invalid);
    }
    EXPECT_TRUE(tokens.list().empty());
}

TEST_F(TokenRepositoryTest, CreateWithSecretRegistersAKnownSecret) {
    auto lease = db->lease();
    TokenRepository tokens(*lease);
    TokenRecord record = tokens.create_with_secret("bootstrap", TokenRole::admin, "my-bootstrap-secret");
    EXPECT_EQ(tokens.find_by_secret("my-bootstrap-secret")->id, record.id);
    // The same secret twice would make lookups ambiguous.
    try {
        tokens.create_with_secret("other", TokenRole::viewer, "my-bootstrap-secret");
        FAIL() << "expected conflict";
    } catch (const StorageError& e) {
        EXPECT_EQ(e.kind(), StorageErrorKind::conflict);
    }
    EXPECT_THROW(tokens.create_with_secret("empty", TokenRole::viewer, ""), StorageError);
}

TEST_F(TokenRepositoryTest, RecordUsesWritesBatchedTimesAndNeverGoesBack) {
    auto lease = db->lease();
    TokenRepository tokens(*lease);
    CreatedToken a = tokens.create("a", TokenRole::uploader);
    CreatedToken b = tokens.create("b", TokenRole::viewer);
    tokens.record_uses({{a.record.id, 1000}, {b.record.id, 1010}, {424242, 1020}});  // unknown id: skipped
    EXPECT_EQ(tokens.find_by_secret(a.secret)->last_used_at, 1000);
    EXPECT_EQ(tokens.find_by_secret(b.secret)->last_used_at, 1010);
    // A late batch with an older time does not move it back.
    tokens.record_uses({{a.record.id, 900}, {b.record.id, 1100}});
    EXPECT_EQ(tokens.find_by_secret(a.secret)->last_used_at, 1000);
    EXPECT_EQ(tokens.find_by_secret(b.secret)->last_used_at, 1100);
    auto listed = tokens.list();
    ASSERT_EQ(listed.size(), 2u);
    EXPECT_EQ(listed[0].last_used_at, 1000);
}

TEST_F(TokenRepositoryTest, CountAdminsCountsActiveAdminsOnly) {
    auto lease = db->lease();
    TokenRepository tokens(*lease);
    EXPECT_EQ(tokens.count_admins(), 0);
    tokens.create("a1", TokenRole::admin);
    tokens.create("a2", TokenRole::admin);
    tokens.create("u", TokenRole::uploader);
    EXPECT_EQ(tokens.count_admins(), 2);
    tokens.revoke("a1");
    EXPECT_EQ(tokens.count_admins(), 1);
}

TEST_F(TokenRepositoryTest, RoleNamesRoundTrip) {
    for (auto role : {TokenRole::admin, TokenRole::uploader, TokenRole::viewer})
        EXPECT_EQ(parse_token_role(to_string(role)), role);
    EXPECT_FALSE(parse_token_role("root").has_value());
}

TEST_F(TokenRepositoryTest, WritesJoinTheCallersTransaction) {
    {
        WriteTransaction tx(*db);
        TokenRepository(tx.connection()).create("rolled-back", TokenRole::viewer);
        // no commit
    }
    EXPECT_TRUE(db->read([](Connection& c) { return TokenRepository(c).list(); }).empty());
}

}  // namespace
