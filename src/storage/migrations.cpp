#include "otad/storage/migrations.hpp"

#include <algorithm>
#include <map>
#include <string_view>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include "otad/storage/database.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"
#include "sqlite_support.hpp"

namespace otad::storage {
namespace {

constexpr std::string_view foreign_keys_off_marker = "-- otad:foreign-keys-off";

std::string label(const EmbeddedMigration& m) { return std::to_string(m.version) + " (" + m.name + ")"; }

void validate_list(const std::vector<EmbeddedMigration>& migrations) {
    int previous = 0;
    for (const auto& m : migrations) {
        if (m.name == nullptr || m.sql == nullptr)
            throw std::invalid_argument("migration " + std::to_string(m.version) + " has no name or SQL");
        if (m.version <= previous)
            throw std::invalid_argument("migration versions must be positive and ascending; " + label(m) +
                                        " follows version " + std::to_string(previous));
        previous = m.version;
    }
}

void ensure_bookkeeping(Connection& connection) {
    WriteTransaction transaction(connection);
    connection.execute_script(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INTEGER PRIMARY KEY CHECK (version > 0),"
        " name TEXT NOT NULL,"
        " applied_at INTEGER NOT NULL)");
    transaction.commit();
}

bool has_bookkeeping(Connection& connection) {
    auto statement =
        connection.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'");
    return statement->executeStep();
}

std::map<int, std::string> applied_migrations(Connection& connection) {
    std::map<int, std::string> applied;
    auto statement = connection.prepare("SELECT version, name FROM schema_migrations ORDER BY version");
    while (statement->executeStep())
        applied.emplace(statement->getColumn(0).getInt(), statement->getColumn(1).getString());
    return applied;
}

void check_compatible(const std::map<int, std::string>& applied, const std::vector<EmbeddedMigration>& migrations) {
    const int latest = migrations.empty() ? 0 : migrations.back().version;
    const int newest_applied = applied.empty() ? 0 : applied.rbegin()->first;
    if (newest_applied > latest)
        throw MigrationError(newest_applied, "database schema version " + std::to_string(newest_applied) +
                                                 " is newer than this otad (knows up to " + std::to_string(latest) +
                                                 "); upgrade otad");
    for (const auto& [version, name] : applied) {
        auto it = std::find_if(migrations.begin(), migrations.end(),
                               [v = version](const EmbeddedMigration& m) { return m.version == v; });
        if (it == migrations.end())
            throw MigrationError(version, "database records migration " + std::to_string(version) + " (" + name +
                                              ") which this otad does not have; it was made by a different build");
        if (name != it->name)
            throw MigrationError(version, "database records migration " + std::to_string(version) + " as '" + name +
                                              "' but this otad has '" + it->name +
                                              "'; it was made by a different build");
    }
    for (const auto& m : migrations) {
        if (m.version < newest_applied && !applied.contains(m.version))
            throw MigrationError(m.version, "migration " + label(m) + " was never applied although version " +
                                                std::to_string(newest_applied) +
                                                " is; the database was made by a different build");
    }
}

bool is_applied(Connection& connection, int version) {
    auto statement = connection.prepare("SELECT 1 FROM schema_migrations WHERE version = ?");
    statement->bind(1, version);
    return statement->executeStep();
}

// Applies one migration; false if another process applied it first.
bool apply(Connection& connection, const EmbeddedMigration& m, int current_version) {
    const bool foreign_keys_off = util::trim(m.sql).starts_with(foreign_keys_off_marker);
    const std::string left_at = "; the database was left at version " + std::to_string(current_version);
    // PRAGMA foreign_keys is a no-op inside a transaction, so switch it around it.
    if (foreign_keys_off) connection.execute_script("PRAGMA foreign_keys = OFF");
    struct RestoreForeignKeys {
        Connection& connection;
        bool active;
        ~RestoreForeignKeys() {
            if (active) connection.sqlite().tryExec("PRAGMA foreign_keys = ON");
        }
    } restore{connection, foreign_keys_off};

    try {
        WriteTransaction transaction(connection);
        if (is_applied(connection, m.version)) return false;
        connection.execute_script(m.sql);
        if (!connection.in_transaction())
            throw MigrationError(m.version, "migration " + label(m) +
                                                " ended its own transaction; migrations must not contain BEGIN/COMMIT");
        if (foreign_keys_off) {
            auto check = connection.prepare("PRAGMA foreign_key_check");
            if (check->executeStep())
                throw MigrationError(m.version, "migration " + label(m) + " broke a foreign key in table " +
                                                    check->getColumn(0).getString() + left_at);
        }
        auto record = connection.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
        record->bind(1, m.version);
        record->bind(2, m.name);
        record->bind(3, static_cast<std::int64_t>(util::unix_now()));
        record->exec();
        // user_version mirrors the schema for tools like the sqlite3 shell; the
        // value is our own integer, PRAGMA can't take a bound parameter.
        connection.execute_script("PRAGMA user_version = " + std::to_string(m.version));
        transaction.commit();
    } catch (const SQLite::Exception& e) {
        throw MigrationError(m.version, "migration " + label(m) + " failed: " + e.what() + left_at);
    } catch (const StorageError& e) {
        throw MigrationError(m.version, "migration " + label(m) + " failed: " + e.what() + left_at);
    }
    return true;
}

}  // namespace

int latest_known_version() {
    const auto& all = embedded_migrations();
    return all.empty() ? 0 : all.back().version;
}

int current_schema_version(Database& database) {
    ConnectionLease connection = database.lease();
    try {
        if (!has_bookkeeping(*connection)) return 0;
        auto statement = connection->prepare("SELECT coalesce(max(version), 0) FROM schema_migrations");
        statement->executeStep();
        return statement->getColumn(0).getInt();
    } catch (const SQLite::Exception& e) {
        detail::throw_storage_error(e, "read schema version");
    }
}

MigrationResult migrate(Database& database) { return migrate(database, embedded_migrations()); }

MigrationResult migrate(Database& database, const std::vector<EmbeddedMigration>& migrations) {
    validate_list(migrations);
    auto log = util::logger("storage");
    ConnectionLease lease = database.lease();
    Connection& connection = *lease;
    MigrationResult result;
    try {
        // Check before writing anything, so a newer database is left untouched.
        std::map<int, std::string> applied;
        if (has_bookkeeping(connection)) applied = applied_migrations(connection);
        check_compatible(applied, migrations);
        if (!has_bookkeeping(connection)) ensure_bookkeeping(connection);

        result.previous_version = applied.empty() ? 0 : applied.rbegin()->first;
        result.current_version = result.previous_version;
        for (const auto& m : migrations) {
            if (applied.contains(m.version)) continue;
            if (apply(connection, m, result.current_version)) {
                result.applied.push_back(m.version);
                util::log_event(*log, spdlog::level::info, "migration_applied",
                                {{"version", std::to_string(m.version)}, {"name", m.name}});
            }
            result.current_version = m.version;
        }
    } catch (const SQLite::Exception& e) {
        detail::throw_storage_error(e, "migrate database");
    }
    return result;
}

}  // namespace otad::storage
