#include "otad/storage/audit_repository.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include "otad/storage/error.hpp"
#include "storage_test_support.hpp"

using namespace otad::storage;

namespace {

class AuditRepositoryTest : public otad::storage::testing::MigratedDatabaseTest {};

TEST_F(AuditRepositoryTest, AppendsAndListsNewestFirstWithPaging) {
    auto lease = db->lease();
    AuditRepository audit(*lease);
    std::int64_t first = audit.append("token:root", "product.create", "product/app", R"({"name":"app"})");
    std::int64_t second = audit.append("token:ci", "release.create", "product/app/release/1.0.0");
    std::int64_t third = audit.append("cli", "token.create", "token/ci", R"({"role":"uploader"})");
    EXPECT_LT(first, second);
    EXPECT_LT(second, third);

    auto page = audit.list(2);
    ASSERT_EQ(page.size(), 2u);
    EXPECT_EQ(page[0].id, third);
    EXPECT_EQ(page[0].actor, "cli");
    EXPECT_EQ(page[0].action, "token.create");
    EXPECT_EQ(page[0].subject, "token/ci");
    EXPECT_EQ(page[0].detail_json, R"({"role":"uploader"})");
    EXPECT_EQ(page[1].id, second);
    EXPECT_EQ(page[1].detail_json, "{}");

    auto rest = audit.list(2, page.back().id);
    ASSERT_EQ(rest.size(), 1u);
    EXPECT_EQ(rest[0].id, first);
    EXPECT_EQ(rest[0].detail_json, R"({"name":"app"})");
    EXPECT_TRUE(audit.list(2, first).empty());
}

TEST_F(AuditRepositoryTest, EntriesCannotBeUpdatedOrDeleted) {
    auto lease = db->lease();
    std::int64_t id = AuditRepository(*lease).append("cli", "setting.set", "settings/x");
    for (const char* sql : {"UPDATE audit SET actor = 'someone else'", "DELETE FROM audit"}) {
        try {
            lease->execute_script(sql);
            FAIL() << "expected the trigger to abort: " << sql;
        } catch (const SQLite::Exception& e) {
            EXPECT_EQ(e.getExtendedErrorCode(), SQLITE_CONSTRAINT_TRIGGER) << sql;
            EXPECT_NE(std::string(e.what()).find("audit log is append-only"), std::string::npos) << e.what();
        }
    }
    auto entries = AuditRepository(*lease).list(10);
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0].id, id);
    EXPECT_EQ(entries[0].actor, "cli");
}

TEST_F(AuditRepositoryTest, DetailMustBeJson) {
    auto lease = db->lease();
    try {
        AuditRepository(*lease).append("cli", "x", "", "{not json");
        FAIL() << "expected invalid";
    } catch (const StorageError& e) {
        EXPECT_EQ(e.kind(), StorageErrorKind::invalid);
    }
    EXPECT_TRUE(AuditRepository(*lease).list(10).empty());
}

TEST_F(AuditRepositoryTest, EntryCommitsWithTheActionItRecords) {
    {
        WriteTransaction tx(*db);
        AuditRepository(tx.connection()).append("cli", "product.create", "product/lost");
    }
    EXPECT_TRUE(db->read([](Connection& c) { return AuditRepository(c).list(10); }).empty());
}

}  // namespace
