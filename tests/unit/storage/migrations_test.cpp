#include "otad/storage/migrations.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include "otad/storage/database.hpp"
#include "storage_test_support.hpp"

using namespace otad::storage;
using otad::storage::testing::options_in;
using otad::storage::testing::TempDir;

namespace {

bool table_exists(Database& db, const std::string& name) {
    return db.read([&](Connection& c) { return c.sqlite().tableExists(name); });
}

std::vector<std::pair<int, std::string>> recorded(Database& db) {
    return db.read([](Connection& c) {
        std::vector<std::pair<int, std::string>> rows;
        auto st = c.prepare("SELECT version, name FROM schema_migrations ORDER BY version");
        while (st->executeStep()) rows.emplace_back(st->getColumn(0).getInt(), st->getColumn(1).getString());
        return rows;
    });
}

int user_version(Database& db) {
    return db.read([](Connection& c) { return c.sqlite().execAndGet("PRAGMA user_version").getInt(); });
}

const std::vector<EmbeddedMigration> two_steps = {
    {1, "0001_first", "CREATE TABLE a (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"},
    {2, "0002_second", "CREATE TABLE b (id INTEGER PRIMARY KEY); INSERT INTO a (name) VALUES ('seed');"},
};

TEST(MigrationsTest, EmbeddedListIsAscendingAndStartsAtOne) {
    const auto& all = embedded_migrations();
    ASSERT_FALSE(all.empty());
    EXPECT_EQ(all.front().version, 1);
    EXPECT_STREQ(all.front().name, "0001_initial");
    for (std::size_t i = 1; i < all.size(); ++i) EXPECT_LT(all[i - 1].version, all[i].version);
    EXPECT_EQ(latest_known_version(), all.back().version);
}

TEST(MigrationsTest, FreshDatabaseGetsTheWholeSchema) {
    TempDir dir;
    Database db(options_in(dir));
    EXPECT_EQ(current_schema_version(db), 0);

    MigrationResult result = migrate(db);
    EXPECT_EQ(result.previous_version, 0);
    EXPECT_EQ(result.current_version, latest_known_version());
    ASSERT_EQ(result.applied.size(), embedded_migrations().size());
    EXPECT_EQ(result.applied.front(), 1);

    for (const char* table : {"tokens", "products", "releases", "blobs", "artifacts", "channels", "audit", "devices",
                              "device_events", "device_keys", "signing_keys", "settings"})
        EXPECT_TRUE(table_exists(db, table)) << table;
    auto rows = recorded(db);
    ASSERT_FALSE(rows.empty());
    EXPECT_EQ(rows.front(), std::make_pair(1, std::string("0001_initial")));
    EXPECT_EQ(current_schema_version(db), latest_known_version());
    EXPECT_EQ(user_version(db), latest_known_version());
}

TEST(MigrationsTest, SecondRunIsANoOp) {
    TempDir dir;
    Database db(options_in(dir));
    migrate(db);
    auto before = recorded(db);
    MigrationResult again = migrate(db);
    EXPECT_TRUE(again.applied.empty());
    EXPECT_EQ(again.previous_version, latest_known_version());
    EXPECT_EQ(again.current_version, latest_known_version());
    EXPECT_EQ(recorded(db), before);
}

TEST(MigrationsTest, ExistingDatabaseGetsOnlyNewMigrations) {
    TempDir dir;
    Database db(options_in(dir));
    migrate(db, {two_steps[0]});
    MigrationResult result = migrate(db, two_steps);
    EXPECT_EQ(result.previous_version, 1);
    EXPECT_EQ(result.current_version, 2);
    EXPECT_EQ(result.applied, std::vector<int>{2});
    EXPECT_TRUE(table_exists(db, "b"));
}

TEST(MigrationsTest, NewerDatabaseIsRefusedAndLeftUntouched) {
    TempDir dir;
    Database db(options_in(dir));
    migrate(db, two_steps);
    try {
        migrate(db, {two_steps[0]});
        FAIL() << "expected MigrationError";
    } catch (const MigrationError& e) {
        EXPECT_STREQ(e.what(), "database schema version 2 is newer than this otad (knows up to 1); upgrade otad");
        EXPECT_EQ(e.version(), 2);
    }
    EXPECT_EQ(recorded(db).size(), 2u);
}

TEST(MigrationsTest, NewerThanTheEmbeddedSchemaIsRefused) {
    TempDir dir;
    Database db(options_in(dir));
    migrate(db);
    const int future = latest_known_version() + 1;
    db.write([&](Connection& c) {
        auto st = c.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 0)");
        st->bind(1, future);
        st->exec();
    });
    try {
        migrate(db);
        FAIL() << "expected MigrationError";
    } catch (const MigrationError& e) {
        EXPECT_EQ(std::string(e.what()), "database schema version " + std::to_string(future) +
                                             " is newer than this otad (knows up to " +
                                             std::to_string(latest_known_version()) + "); upgrade otad");
    }
}

TEST(MigrationsTest, FailingMigrationRollsBackEntirely) {
    TempDir dir;
    Database db(options_in(dir));
    const std::vector<EmbeddedMigration> broken = {
        two_steps[0],
        {2, "0002_broken",
         "CREATE TABLE c (id INTEGER); INSERT INTO a (name) VALUES ('x'); INSERT INTO nope VALUES (1);"},
        {3, "0003_never", "CREATE TABLE d (id INTEGER);"},
    };
    try {
        migrate(db, broken);
        FAIL() << "expected MigrationError";
    } catch (const MigrationError& e) {
        const std::string message = e.what();
        EXPECT_EQ(e.version(), 2);
        EXPECT_NE(message.find("migration 2 (0002_broken) failed"), std::string::npos) << message;
        EXPECT_NE(message.find("no such table: nope"), std::string::npos) << message;
        EXPECT_NE(message.find("left at version 1"), std::string::npos) << message;
    }
    EXPECT_TRUE(table_exists(db, "a"));
    EXPECT_FALSE(table_exists(db, "c"));
    EXPECT_FALSE(table_exists(db, "d"));
    EXPECT_EQ(db.read([](Connection& c) { return c.sqlite().execAndGet("SELECT count(*) FROM a").getInt(); }), 0);
    EXPECT_EQ(current_schema_version(db), 1);
    EXPECT_EQ(user_version(db), 1);
}

TEST(MigrationsTest, RenamedMigrationIsDetected) {
    TempDir dir;
    Database db(options_in(dir));
    migrate(db, two_steps);
    const std::vector<EmbeddedMigration> renamed = {two_steps[0], {2, "0002_other", "SELECT 1;"}};
    try {
        migrate(db, renamed);
        FAIL() << "expected MigrationError";
    } catch (const MigrationError& e) {
        EXPECT_STREQ(e.what(),
                     "database records migration 2 as '0002_second' but this otad has '0002_other'; it was made by a "
                     "different build");
    }
}

TEST(MigrationsTest, GapIsDetected) {
    TempDir dir;
    Database db(options_in(dir));
    const EmbeddedMigration third{3, "0003_third", "CREATE TABLE c (id INTEGER);"};
    migrate(db, {two_steps[0], third});
    try {
        migrate(db, {two_steps[0], two_steps[1], third});
        FAIL() << "expected MigrationError";
    } catch (const MigrationError& e) {
        EXPECT_EQ(e.version(), 2);
        EXPECT_NE(std::string(e.what()).find("migration 2 (0002_second) was never applied although version 3 is"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_FALSE(table_exists(db, "b"));
}

TEST(MigrationsTest, UnknownRecordedMigrationIsDetected) {
    TempDir dir;
    Database db(options_in(dir));
    migrate(db, two_steps);
    const std::vector<EmbeddedMigration> without_first = {{2, "0002_second", two_steps[1].sql},
                                                          {3, "0003_third", "SELECT 1;"}};
    EXPECT_THROW(migrate(db, without_first), MigrationError);
}

TEST(MigrationsTest, MigrationMayNotCommitByItself) {
    TempDir dir;
    Database db(options_in(dir));
    EXPECT_THROW(migrate(db, {{1, "0001_sneaky", "CREATE TABLE a (x); COMMIT; CREATE TABLE b (y);"}}), MigrationError);
    EXPECT_EQ(current_schema_version(db), 0);
}

TEST(MigrationsTest, ForeignKeysOffMarkerAllowsTableRebuild) {
    TempDir dir;
    Database db(options_in(dir));
    const std::vector<EmbeddedMigration> steps = {
        {1, "0001_base",
         "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
         "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id));"
         "INSERT INTO parent VALUES (1); INSERT INTO child VALUES (10, 1);"},
        {2, "0002_rebuild_parent",
         "-- otad:foreign-keys-off\n"
         "CREATE TABLE parent_new (id INTEGER PRIMARY KEY, label TEXT NOT NULL DEFAULT '');"
         "INSERT INTO parent_new (id) SELECT id FROM parent;"
         "DROP TABLE parent;"
         "ALTER TABLE parent_new RENAME TO parent;"},
    };
    MigrationResult result = migrate(db, steps);
    EXPECT_EQ(result.current_version, 2);
    db.read([](Connection& c) {
        EXPECT_EQ(c.sqlite().execAndGet("PRAGMA foreign_keys").getInt(), 1);
        EXPECT_EQ(c.sqlite().execAndGet("SELECT count(*) FROM child").getInt(), 1);
    });
}

TEST(MigrationsTest, ForeignKeyBreakageIsRefused) {
    TempDir dir;
    Database db(options_in(dir));
    const std::vector<EmbeddedMigration> steps = {
        {1, "0001_base",
         "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
         "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent (id));"
         "INSERT INTO parent VALUES (1); INSERT INTO child VALUES (10, 1);"},
        {2, "0002_lose_parents", "-- otad:foreign-keys-off\nDELETE FROM parent;"},
    };
    EXPECT_THROW(migrate(db, steps), MigrationError);
    EXPECT_EQ(current_schema_version(db), 1);
    EXPECT_EQ(db.read([](Connection& c) { return c.sqlite().execAndGet("SELECT count(*) FROM parent").getInt(); }), 1);
}

TEST(MigrationsTest, BadListIsAProgrammingError) {
    TempDir dir;
    Database db(options_in(dir));
    EXPECT_THROW(migrate(db, {two_steps[1], two_steps[0]}), std::invalid_argument);
    EXPECT_THROW(migrate(db, {{0, "0000_zero", "SELECT 1;"}}), std::invalid_argument);
}

}  // namespace
