#include "otad/storage/database.hpp"

#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <thread>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include "otad/storage/error.hpp"
#include "otad/storage/migrations.hpp"
#include "otad/storage/settings_repository.hpp"
#include "storage_test_support.hpp"

using namespace otad::storage;
using otad::storage::testing::options_in;
using otad::storage::testing::TempDir;

namespace {

std::string pragma(Connection& c, const char* sql) { return c.sqlite().execAndGet(sql).getString(); }

void create_counter(Database& db) {
    db.write([](Connection& c) {
        c.execute_script("CREATE TABLE counter (n INTEGER NOT NULL); INSERT INTO counter VALUES (0);");
    });
}

std::int64_t counter_value(Database& db) {
    return db.read([](Connection& c) {
        auto st = c.prepare("SELECT n FROM counter");
        st->executeStep();
        return st->getColumn(0).getInt64();
    });
}

TEST(DatabaseTest, OpensOwnerOnlyFileInWalModeWithPragmasOnEveryConnection) {
    TempDir dir;
    DatabaseOptions options = options_in(dir);
    options.busy_timeout = std::chrono::milliseconds(1234);
    Database db(options);

    struct stat st {};
    ASSERT_EQ(::stat(options.path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    db.write([](Connection& c) { c.execute_script("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);"); });
    struct stat wal {};
    ASSERT_EQ(::stat((options.path.string() + "-wal").c_str(), &wal), 0);
    EXPECT_EQ(wal.st_mode & 0777, 0600u);

    // Two leases held at once are two different connections: check both.
    auto first = db.lease();
    auto second = db.lease();
    EXPECT_NE(&first.get(), &second.get());
    for (Connection* c : {&first.get(), &second.get()}) {
        EXPECT_EQ(pragma(*c, "PRAGMA journal_mode"), "wal");
        EXPECT_EQ(pragma(*c, "PRAGMA foreign_keys"), "1");
        EXPECT_EQ(pragma(*c, "PRAGMA busy_timeout"), "1234");
        EXPECT_EQ(pragma(*c, "PRAGMA synchronous"), "2");  // FULL
    }
}

TEST(DatabaseTest, MissingDirectoryIsAClearError) {
    TempDir dir;
    DatabaseOptions options;
    options.path = dir.path() / "nope" / "otad.db";
    try {
        Database db(options);
        FAIL() << "expected StorageError";
    } catch (const StorageError& e) {
        EXPECT_EQ(e.kind(), StorageErrorKind::io);
        EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos) << e.what();
    }
}

TEST(DatabaseTest, NonDatabaseFileIsRefusedAtOpen) {
    TempDir dir;
    DatabaseOptions options = options_in(dir);
    std::ofstream(options.path) << std::string(4096, 'x');
    EXPECT_THROW(Database db(options), StorageError);
}

TEST(DatabaseTest, WriteTransactionRollsBackUnlessCommitted) {
    TempDir dir;
    Database db(options_in(dir));
    create_counter(db);
    {
        WriteTransaction tx(db);
        tx.connection().execute_script("UPDATE counter SET n = 5");
    }
    EXPECT_EQ(counter_value(db), 0);
    {
        WriteTransaction tx(db);
        tx.connection().execute_script("UPDATE counter SET n = 7");
        tx.commit();
        EXPECT_FALSE(tx.active());
    }
    EXPECT_EQ(counter_value(db), 7);
}

TEST(DatabaseTest, WriteLambdaRollsBackOnException) {
    TempDir dir;
    Database db(options_in(dir));
    create_counter(db);
    EXPECT_THROW(db.write([](Connection& c) {
        c.execute_script("UPDATE counter SET n = 9");
        throw std::runtime_error("handler failed");
    }),
                 std::runtime_error);
    EXPECT_EQ(counter_value(db), 0);
    int returned = db.write([](Connection& c) {
        c.execute_script("UPDATE counter SET n = 3");
        return 42;
    });
    EXPECT_EQ(returned, 42);
    EXPECT_EQ(counter_value(db), 3);
}

TEST(DatabaseTest, WriteScopeJoinsAnOpenTransactionAndNestingIsRefused) {
    TempDir dir;
    Database db(options_in(dir));
    create_counter(db);
    {
        WriteTransaction tx(db);
        {
            WriteScope joined(tx.connection());
            tx.connection().execute_script("UPDATE counter SET n = 11");
            joined.commit();  // not the owner: must not commit
        }
        EXPECT_TRUE(tx.connection().in_write_transaction());
        EXPECT_THROW(WriteTransaction nested(tx.connection()), std::logic_error);
        // The outer transaction is still the one in charge: drop it.
    }
    EXPECT_EQ(counter_value(db), 0);
}

TEST(DatabaseTest, DurabilityNormalIsScopedToItsTransaction) {
    TempDir dir;
    Database db(options_in(dir));
    auto lease = db.lease();
    {
        WriteTransaction tx(*lease, Durability::normal);
        EXPECT_EQ(pragma(*lease, "PRAGMA synchronous"), "1");
        tx.commit();
    }
    EXPECT_EQ(pragma(*lease, "PRAGMA synchronous"), "2");
}

TEST(DatabaseTest, ExhaustedPoolTimesOutWithBusyError) {
    TempDir dir;
    DatabaseOptions options = options_in(dir);
    options.max_connections = 1;
    options.busy_timeout = std::chrono::milliseconds(50);
    Database db(options);
    auto held = db.lease();
    try {
        auto second = db.lease();
        FAIL() << "expected StorageError(busy)";
    } catch (const StorageError& e) {
        EXPECT_EQ(e.kind(), StorageErrorKind::busy);
    }
}

TEST(DatabaseTest, ReturnedConnectionIsReusedAndLeftOpenTransactionIsRolledBack) {
    TempDir dir;
    DatabaseOptions options = options_in(dir);
    options.max_connections = 1;
    Database db(options);
    create_counter(db);
    Connection* first = nullptr;
    {
        auto lease = db.lease();
        first = &lease.get();
        lease->execute_script("BEGIN; UPDATE counter SET n = 99;");  // a bug: never finished
    }
    {
        auto lease = db.lease();
        EXPECT_EQ(&lease.get(), first);
        EXPECT_FALSE(lease->in_transaction());
    }
    EXPECT_EQ(counter_value(db), 0);
}

TEST(DatabaseTest, ConcurrentWritersAndReadersAllSucceed) {
    TempDir dir;
    DatabaseOptions options = options_in(dir);
    options.max_connections = 4;
    Database db(options);
    create_counter(db);

    constexpr int threads = 4;
    constexpr int increments = 40;
    std::atomic<int> failures{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            for (int i = 0; i < increments; ++i) {
                try {
                    if (t % 2 == 0) counter_value(db);  // readers interleave with writers
                    db.write([](Connection& c) {
                        auto read = c.prepare("SELECT n FROM counter");
                        read->executeStep();
                        std::int64_t n = read->getColumn(0).getInt64();
                        auto write = c.prepare("UPDATE counter SET n = ?");
                        write->bind(1, n + 1);
                        write->exec();
                    });
                } catch (const std::exception&) {
                    ++failures;
                }
            }
        });
    }
    for (auto& w : workers) w.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(counter_value(db), threads * increments);
}

TEST(DatabaseTest, StatementCacheReusesAndHandlesNestedUse) {
    TempDir dir;
    Database db(options_in(dir));
    auto c = db.lease();
    c->execute_script("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2);");
    const char* sql = "SELECT x FROM t ORDER BY x";
    const SQLite::Statement* cached = nullptr;
    {
        auto outer = c->prepare(sql);
        cached = &*outer;
        ASSERT_TRUE(outer->executeStep());
        EXPECT_EQ(outer->getColumn(0).getInt(), 1);
        // The same SQL while the first is mid-iteration gets its own statement.
        auto inner = c->prepare(sql);
        EXPECT_NE(&*inner, cached);
        ASSERT_TRUE(inner->executeStep());
        EXPECT_EQ(inner->getColumn(0).getInt(), 1);
        ASSERT_TRUE(outer->executeStep());
        EXPECT_EQ(outer->getColumn(0).getInt(), 2);
    }
    auto again = c->prepare(sql);
    EXPECT_EQ(&*again, cached);
    ASSERT_TRUE(again->executeStep());  // reset on return: starts from the first row
    EXPECT_EQ(again->getColumn(0).getInt(), 1);
}

TEST(DatabaseTest, CachedStatementBindingsAreClearedBetweenUses) {
    TempDir dir;
    Database db(options_in(dir));
    auto c = db.lease();
    {
        auto st = c->prepare("SELECT ?");
        st->bind(1, 5);
        ASSERT_TRUE(st->executeStep());
        EXPECT_EQ(st->getColumn(0).getInt(), 5);
    }
    auto st = c->prepare("SELECT ?");
    ASSERT_TRUE(st->executeStep());
    EXPECT_TRUE(st->getColumn(0).isNull());
}

TEST(DatabaseTest, AFullDatabaseIsNoSpaceAndStaysReadable) {
    TempDir dir;
    Database db(options_in(dir));
    migrate(db);
    // SQLite answers SQLITE_FULL at its page limit exactly as on a full disk.
    {
        auto lease = db.lease();
        const int pages = lease->sqlite().execAndGet("PRAGMA page_count").getInt();
        lease->execute_script("PRAGMA max_page_count = " + std::to_string(pages + 8));
        SettingsRepository settings(*lease);
        int stored = 0;
        try {
            for (; stored < 100; ++stored) settings.set("filler-" + std::to_string(stored), std::string(4096, 'x'));
            ADD_FAILURE() << "the page limit was never reached";
        } catch (const StorageError& e) {
            EXPECT_EQ(e.kind(), StorageErrorKind::no_space) << e.what();
        }
        // What was committed before stays readable and the connection usable.
        ASSERT_GT(stored, 0);
        EXPECT_EQ(settings.get("filler-0"), std::string(4096, 'x'));
        EXPECT_EQ(lease->sqlite().execAndGet("PRAGMA integrity_check").getString(), "ok");
    }
    EXPECT_EQ(db.ping(), latest_known_version());
}

TEST(DatabaseTest, PingReportsSchemaVersion) {
    TempDir dir;
    Database db(options_in(dir));
    EXPECT_EQ(db.ping(), 0);
    migrate(db);
    EXPECT_EQ(db.ping(), latest_known_version());
}

}  // namespace
