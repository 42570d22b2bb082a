#include "otad/storage/database.hpp"

#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <map>
#include <stdexcept>
#include <vector>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>

#include "otad/platform/filesystem.hpp"
#include "otad/util/logging.hpp"
#include "sqlite_support.hpp"

#ifndef _WIN32
#include <fcntl.h>
#include <unistd.h>
#endif

namespace otad::storage {

std::string_view to_string(StorageErrorKind kind) noexcept {
    switch (kind) {
        case StorageErrorKind::conflict:
            return "conflict";
        case StorageErrorKind::reference:
            return "reference";
        case StorageErrorKind::invalid:
            return "invalid";
        case StorageErrorKind::rejected:
            return "rejected";
        case StorageErrorKind::busy:
            return "busy";
        case StorageErrorKind::too_large:
            return "too_large";
        case StorageErrorKind::mismatch:
            return "mismatch";
        case StorageErrorKind::no_space:
            return "no_space";
        case StorageErrorKind::io:
            return "io";
        case StorageErrorKind::internal:
            return "internal";
    }
    return "internal";
}

bool is_no_space(const std::error_code& error) noexcept {
    if (error == std::errc::no_space_on_device) return true;
#ifdef EDQUOT
    if ((error.category() == std::generic_category() || error.category() == std::system_category()) &&
        error.value() == EDQUOT)
        return true;
#endif
    return false;
}

namespace detail {

StorageErrorKind classify(int extended_code) noexcept {
    switch (extended_code) {
        case SQLITE_CONSTRAINT_UNIQUE:
        case SQLITE_CONSTRAINT_PRIMARYKEY:
            return StorageErrorKind::conflict;
        case SQLITE_CONSTRAINT_FOREIGNKEY:
            return StorageErrorKind::reference;
        case SQLITE_CONSTRAINT_CHECK:
        case SQLITE_CONSTRAINT_NOTNULL:
        case SQLITE_CONSTRAINT_DATATYPE:
            return StorageErrorKind::invalid;
        case SQLITE_CONSTRAINT_TRIGGER:
            return StorageErrorKind::rejected;
        default:
            break;
    }
    switch (extended_code & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            return StorageErrorKind::busy;
        case SQLITE_CONSTRAINT:
            return StorageErrorKind::invalid;
        case SQLITE_FULL:
            return StorageErrorKind::no_space;
        case SQLITE_IOERR:
        case SQLITE_CANTOPEN:
        case SQLITE_READONLY:
            return StorageErrorKind::io;
        default:
            return StorageErrorKind::internal;
    }
}

void throw_storage_error(const SQLite::Exception& error, std::string_view context) {
    // SQLiteCpp's own misuse errors carry -1; they are programming errors.
    int code = error.getExtendedErrorCode() > 0 ? error.getExtendedErrorCode() : error.getErrorCode();
    StorageErrorKind kind = code > 0 ? classify(code) : StorageErrorKind::internal;
    // ON DELETE/UPDATE RESTRICT is run by SQLite as an internal trigger, so it
    // reports SQLITE_CONSTRAINT_TRIGGER; its message tells it apart from ours.
    if (code == SQLITE_CONSTRAINT_TRIGGER &&
        std::string_view(error.what()).find("FOREIGN KEY") != std::string_view::npos)
        kind = StorageErrorKind::reference;
    throw StorageError(kind, std::string(context) + ": " + error.what(), code > 0 ? code : 0);
}

struct StatementCache {
    struct Entry {
        std::unique_ptr<SQLite::Statement> statement;
        bool in_use = false;
    };
    // Repositories use a fixed set of SQL texts; the cap only guards against misuse.
    static constexpr std::size_t capacity = 256;
    std::map<std::string, std::unique_ptr<Entry>, std::less<>> entries;
};

struct Pool {
    explicit Pool(DatabaseOptions opts) : options(std::move(opts)), log(util::logger("storage")) {}

    DatabaseOptions options;
    std::shared_ptr<spdlog::logger> log;
    std::mutex mutex;
    std::condition_variable available;
    std::vector<std::unique_ptr<Connection>> idle;
    std::size_t open_count = 0;  // idle + leased
    // One write transaction at a time in this process. A flag under `mutex` rather
    // than a std::timed_mutex: waits are bounded, and thread sanitizers understand it.
    bool writer_busy = false;
    std::condition_variable writer_free;

    bool acquire_writer(std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex);
        if (!writer_free.wait_for(lock, timeout, [&] { return !writer_busy; })) return false;
        writer_busy = true;
        return true;
    }
    void release_writer() noexcept {
        {
            std::lock_guard lock(mutex);
            writer_busy = false;
        }
        writer_free.notify_one();
    }

    std::unique_ptr<Connection> open_connection();
    void give_back(std::unique_ptr<Connection> connection) noexcept;
};

std::unique_ptr<Connection> Pool::open_connection() {
    const std::string path = options.path.string();
    try {
        auto handle = std::make_unique<SQLite::Database>(
            path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_NOMUTEX,
            static_cast<int>(options.busy_timeout.count()));
        // foreign_keys and synchronous are per connection; journal_mode=WAL is stored
        // in the file, so setting it again is a cheap no-op.
        handle->exec("PRAGMA foreign_keys = ON");
        handle->exec("PRAGMA synchronous = FULL");
        std::string mode = handle->execAndGet("PRAGMA journal_mode = WAL").getString();
        if (mode != "wal")
            throw StorageError(StorageErrorKind::io, "database " + path +
                                                         " cannot use WAL journaling (journal_mode is " + mode +
                                                         "); put it on a local file system");
        return std::unique_ptr<Connection>(new Connection(this, std::move(handle)));
    } catch (const SQLite::Exception& e) {
        throw_storage_error(e, "open database " + path);
    }
}

void Pool::give_back(std::unique_ptr<Connection> connection) noexcept {
    bool keep = true;
    if (connection->in_transaction()) {
        // A transaction left open by a bug must not leak into the next user.
        util::log_event(*log, spdlog::level::warn, "connection_returned_in_transaction", {});
        keep = connection->sqlite().tryExec("ROLLBACK") == SQLITE_OK;
        connection->in_write_transaction_ = false;
    }
    {
        std::lock_guard lock(mutex);
        if (keep) {
            idle.push_back(std::move(connection));
        } else {
            --open_count;
        }
    }
    if (!keep) connection.reset();
    available.notify_one();
}

}  // namespace detail

// --- CachedStatement ------------------------------------------------------

CachedStatement::CachedStatement(SQLite::Statement* statement, bool* in_use, std::unique_ptr<SQLite::Statement> owned)
    : statement_(statement), in_use_(in_use), owned_(std::move(owned)) {}

CachedStatement::CachedStatement(CachedStatement&& other) noexcept
    : statement_(std::exchange(other.statement_, nullptr)),
      in_use_(std::exchange(other.in_use_, nullptr)),
      owned_(std::move(other.owned_)) {}

CachedStatement::~CachedStatement() {
    if (statement_ == nullptr) return;
    statement_->tryReset();
    try {
        statement_->clearBindings();
    } catch (const SQLite::Exception&) {
        // sqlite3_clear_bindings cannot fail on a valid statement; nothing to undo.
    }
    if (in_use_ != nullptr) *in_use_ = false;
}

// --- Connection -----------------------------------------------------------

Connection::Connection(detail::Pool* pool, std::unique_ptr<SQLite::Database> database)
    : pool_(pool), database_(std::move(database)), statements_(std::make_unique<detail::StatementCache>()) {}

Connection::~Connection() {
    statements_.reset();  // finalize statements before the handle closes
}

CachedStatement Connection::prepare(std::string_view sql) {
    auto& entries = statements_->entries;
    auto it = entries.find(sql);
    if (it != entries.end() && !it->second->in_use) {
        it->second->in_use = true;
        return CachedStatement(it->second->statement.get(), &it->second->in_use, nullptr);
    }
    auto statement = std::make_unique<SQLite::Statement>(*database_, std::string(sql));
    if (it == entries.end() && entries.size() < detail::StatementCache::capacity) {
        auto entry = std::make_unique<detail::StatementCache::Entry>();
        entry->statement = std::move(statement);
        entry->in_use = true;
        auto* raw = entry.get();
        entries.emplace(std::string(sql), std::move(entry));
        return CachedStatement(raw->statement.get(), &raw->in_use, nullptr);
    }
    // Same SQL already borrowed (a nested use) or cache full: a one-off statement.
    SQLite::Statement* raw = statement.get();
    return CachedStatement(raw, nullptr, std::move(statement));
}

void Connection::execute_script(const std::string& sql) { database_->exec(sql); }

bool Connection::in_transaction() const noexcept { return sqlite3_get_autocommit(database_->getHandle()) == 0; }
bool Connection::in_write_transaction() const noexcept { return in_write_transaction_; }
std::int64_t Connection::last_insert_rowid() const noexcept { return database_->getLastInsertRowid(); }

// --- ConnectionLease ------------------------------------------------------

ConnectionLease::ConnectionLease(std::shared_ptr<detail::Pool> pool, std::unique_ptr<Connection> connection)
    : pool_(std::move(pool)), connection_(std::move(connection)) {}

ConnectionLease& ConnectionLease::operator=(ConnectionLease&& other) noexcept {
    if (this != &other) {
        release();
        pool_ = std::move(other.pool_);
        connection_ = std::move(other.connection_);
    }
    return *this;
}

ConnectionLease::~ConnectionLease() { release(); }

void ConnectionLease::release() noexcept {
    if (pool_ && connection_) pool_->give_back(std::move(connection_));
    pool_.reset();
}

// --- Database -------------------------------------------------------------

namespace {
// Creates the file 0600 before SQLite does, so the -wal and -shm files (which
// SQLite creates with the database file's mode) are owner-only from the start.
void create_owner_only_file(const std::filesystem::path& path) {
#ifndef _WIN32
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) ::close(fd);
#else
    (void)path;
#endif
}
}  // namespace

Database::Database(DatabaseOptions options) {
    if (options.max_connections == 0) options.max_connections = 1;
    if (options.path.empty()) throw std::invalid_argument("database path is empty");
    pool_ = std::make_shared<detail::Pool>(std::move(options));
    const auto& opts = pool_->options;
    std::error_code ec;
    if (!std::filesystem::is_directory(opts.path.parent_path().empty() ? "." : opts.path.parent_path(), ec))
        throw StorageError(StorageErrorKind::io,
                           "database directory " + opts.path.parent_path().string() + " does not exist");
    if (opts.owner_only) {
        if (!std::filesystem::exists(opts.path, ec)) create_owner_only_file(opts.path);
        // An older -wal/-shm may predate the restriction; SQLite reuses them as they are.
        for (const char* suffix : {"", "-wal", "-shm"}) {
            std::filesystem::path file = opts.path.string() + suffix;
            if (*suffix != '\0' && !std::filesystem::exists(file, ec)) continue;
            try {
                platform::set_owner_only(file);
            } catch (const std::system_error& e) {
                util::log_event(*pool_->log, spdlog::level::warn, "database_permissions_not_restricted",
                                {{"path", file.string()}, {"error", e.what()}});
            }
        }
    }
    // Open one connection now so a bad path or a non-database file fails at start-up.
    auto first = pool_->open_connection();
    try {
        first->sqlite().execAndGet("SELECT count(*) FROM sqlite_schema");
    } catch (const SQLite::Exception& e) {
        detail::throw_storage_error(e, "read database " + opts.path.string());
    }
    {
        std::lock_guard lock(pool_->mutex);
        pool_->idle.push_back(std::move(first));
        pool_->open_count = 1;
    }
    util::log_event(*pool_->log, spdlog::level::info, "database_opened",
                    {{"path", opts.path.string()},
                     {"sqlite", sqlite3_libversion()},
                     {"pool", std::to_string(opts.max_connections)}});
}

Database::~Database() = default;

const DatabaseOptions& Database::options() const noexcept { return pool_->options; }

ConnectionLease Database::lease() {
    auto& pool = *pool_;
    std::unique_lock lock(pool.mutex);
    const auto deadline = std::chrono::steady_clock::now() + pool.options.busy_timeout;
    bool ready = pool.available.wait_until(
        lock, deadline, [&] { return !pool.idle.empty() || pool.open_count < pool.options.max_connections; });
    if (!ready)
        throw StorageError(StorageErrorKind::busy, "no database connection became free within " +
                                                       std::to_string(pool.options.busy_timeout.count()) +
                                                       " ms (pool of " + std::to_string(pool.options.max_connections) +
                                                       ")");
    if (!pool.idle.empty()) {
        auto connection = std::move(pool.idle.back());
        pool.idle.pop_back();
        return ConnectionLease(pool_, std::move(connection));
    }
    ++pool.open_count;
    lock.unlock();
    try {
        return ConnectionLease(pool_, pool.open_connection());
    } catch (...) {
        lock.lock();
        --pool.open_count;
        lock.unlock();
        pool.available.notify_one();
        throw;
    }
}

int Database::ping() {
    ConnectionLease connection = lease();
    try {
        auto has_table =
            connection->prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'");
        if (!has_table->executeStep()) return 0;
        auto version = connection->prepare("SELECT coalesce(max(version), 0) FROM schema_migrations");
        version->executeStep();
        return version->getColumn(0).getInt();
    } catch (const SQLite::Exception& e) {
        detail::throw_storage_error(e, "database health check");
    }
}

// --- WriteTransaction -----------------------------------------------------

WriteTransaction::WriteTransaction(Database& database, Durability durability)
    : lease_(database.lease()), connection_(&lease_->get()), durability_(durability) {
    begin();
}

WriteTransaction::WriteTransaction(Connection& connection, Durability durability)
    : connection_(&connection), durability_(durability) {
    if (connection.in_transaction())
        throw std::logic_error("WriteTransaction on a connection already inside a transaction; use WriteScope");
    begin();
}

void WriteTransaction::begin() {
    auto& pool = *connection_->pool_;
    if (!pool.acquire_writer(pool.options.busy_timeout))
        throw StorageError(StorageErrorKind::busy, "another write transaction held the database for more than " +
                                                       std::to_string(pool.options.busy_timeout.count()) + " ms");
    auto& db = connection_->sqlite();
    try {
        if (durability_ == Durability::normal) db.exec("PRAGMA synchronous = NORMAL");
        db.exec("BEGIN IMMEDIATE");
    } catch (const SQLite::Exception& e) {
        if (durability_ == Durability::normal) db.tryExec("PRAGMA synchronous = FULL");
        pool.release_writer();
        detail::throw_storage_error(e, "begin write transaction");
    }
    holds_writer_ = true;
    active_ = true;
    connection_->in_write_transaction_ = true;
}

void WriteTransaction::finish() noexcept {
    active_ = false;
    connection_->in_write_transaction_ = false;
    if (durability_ == Durability::normal) connection_->sqlite().tryExec("PRAGMA synchronous = FULL");
    if (holds_writer_) {
        holds_writer_ = false;
        connection_->pool_->release_writer();
    }
}

void WriteTransaction::commit() {
    if (!active_) throw std::logic_error("commit of a write transaction that is not active");
    auto& db = connection_->sqlite();
    try {
        db.exec("COMMIT");
    } catch (const SQLite::Exception& e) {
        if (connection_->in_transaction()) db.tryExec("ROLLBACK");
        finish();
        detail::throw_storage_error(e, "commit");
    }
    finish();
}

void WriteTransaction::rollback() {
    if (!active_) return;
    if (connection_->in_transaction()) {
        int rc = connection_->sqlite().tryExec("ROLLBACK");
        if (rc != SQLITE_OK)
            util::log_event(*connection_->pool_->log, spdlog::level::err, "rollback_failed",
                            {{"sqlite", sqlite3_errstr(rc)}});
    }
    finish();
}

WriteTransaction::~WriteTransaction() { rollback(); }

// --- WriteScope -----------------------------------------------------------

WriteScope::WriteScope(Connection& connection, Durability durability) : connection_(connection) {
    if (!connection.in_write_transaction()) own_.emplace(connection, durability);
}

void WriteScope::commit() {
    if (own_) own_->commit();
}

}  // namespace otad::storage
