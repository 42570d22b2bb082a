#pragma once
// Schema migrations: migrations/NNNN_name.sql, embedded at build time, applied in
// order, each in one transaction that also records its version.

#include <stdexcept>
#include <string>
#include <vector>

namespace SQLite {
class Database;
}

namespace otad::storage {

struct EmbeddedMigration {
    int version;
    const char* name;
    const char* sql;
};
// Every migration compiled into this binary, in ascending version order.
const std::vector<EmbeddedMigration>& embedded_migrations();

// --- Runner (storage/migrations.cpp) ---------------------------------------
// Applied migrations are recorded in schema_migrations(version, name, applied_at)
// and mirrored in PRAGMA user_version. A migration whose SQL starts with the line
// `-- otad:foreign-keys-off` runs with foreign keys disabled (for table rebuilds),
// followed by a foreign_key_check before its commit.

class Database;

struct MigrationResult {
    int previous_version = 0;  // schema version before migrate()
    int current_version = 0;   // schema version now
    std::vector<int> applied;  // versions applied by this call, ascending
};

// Why a database can't be brought to this binary's schema. The daemon must refuse
// to start; what() is written for the operator.
class MigrationError : public std::runtime_error {
public:
    MigrationError(int version, const std::string& message) : std::runtime_error(message), version_(version) {}
    int version() const noexcept { return version_; }  // the migration concerned, or the DB's version

private:
    int version_;
};

// Applies the pending embedded migrations in order, each in its own BEGIN IMMEDIATE
// transaction together with its schema_migrations row. Throws MigrationError when:
// - the database is newer than this binary ("database schema version N is newer than
//   this otad (knows up to M); upgrade otad"),
// - a recorded migration's name differs from the embedded one, or a known version
//   below the newest recorded one was never applied (a gap),
// - a migration fails: it is rolled back entirely and the message carries its
//   version, name and SQLite's message; earlier migrations of this call stay applied.
// Safe to run concurrently from two processes (the second finds nothing to do).
MigrationResult migrate(Database& database);
// The same with an explicit list (ascending, unique, positive versions), for tests.
MigrationResult migrate(Database& database, const std::vector<EmbeddedMigration>& migrations);

// The highest applied version, 0 for an empty database.
int current_schema_version(Database& database);
// The highest version compiled into this binary.
int latest_known_version();

}  // namespace otad::storage
