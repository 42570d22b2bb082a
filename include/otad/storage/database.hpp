#pragma once
// The SQLite database: a small pool of connections to one file, shared by the
// worker threads that run handlers.
//
// Rules (see the header comments below for details):
// - A connection is used by one thread at a time: lease it, use it, let the lease go.
//   Never lease a second connection while holding one (the pool is bounded).
// - Every write runs inside a WriteTransaction (BEGIN IMMEDIATE). Writers in this
//   process queue on one mutex, so SQLite's busy timeout only covers other processes
//   (e.g. the CLI while the daemon runs). Repository write methods open one
//   themselves unless the caller already has one open on that connection.
// - Reads use the leased connection as is: each statement sees a consistent snapshot
//   and never blocks the writer (WAL).
//
// Opening: journal_mode=WAL, foreign_keys=ON, busy_timeout (default 5000 ms),
// synchronous=FULL. FULL because a commit here is a promise: a revoked token must
// not come back, an acknowledged upload or channel move must survive power loss,
// and the blob-before-row rule only helps if the row is durable too. Writes are
// rare (catalogue) or batched (device sightings), so one fsync per commit is
// cheap. Batched, replaceable data may opt into Durability::normal (WAL without
// fsync at commit: survives a process crash, may lose the last commits on power loss).

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace SQLite {
class Database;
class Statement;
}  // namespace SQLite

namespace otad::storage {

namespace detail {
struct Pool;
struct StatementCache;
}  // namespace detail

enum class Durability {
    full,    // synchronous=FULL: the commit is on disk when commit() returns
    normal,  // synchronous=NORMAL: for batched telemetry (device last-seen)
};

struct DatabaseOptions {
    std::filesystem::path path;                    // the database file; its directory must exist
    std::chrono::milliseconds busy_timeout{5000};  // SQLite busy handler and pool/writer waits
    std::size_t max_connections = 4;               // pool size (opened lazily), at least 1
    bool owner_only = true;                        // create/keep the file at 0600 (it holds keys)
};

// A prepared statement borrowed from a connection's cache. Bind, step, read columns
// through `->`; the destructor resets it and clears its bindings for the next user.
// Lives no longer than the lease of its connection.
class CachedStatement {
public:
    CachedStatement(CachedStatement&& other) noexcept;
    CachedStatement& operator=(CachedStatement&&) = delete;
    CachedStatement(const CachedStatement&) = delete;
    CachedStatement& operator=(const CachedStatement&) = delete;
    ~CachedStatement();

    SQLite::Statement& operator*() const noexcept { return *statement_; }
    SQLite::Statement* operator->() const noexcept { return statement_; }

private:
    friend class Connection;
    CachedStatement(SQLite::Statement* statement, bool* in_use, std::unique_ptr<SQLite::Statement> owned);
    SQLite::Statement* statement_;
    bool* in_use_;                              // cache slot flag; null for an uncached statement
    std::unique_ptr<SQLite::Statement> owned_;  // set when the cached one was already in use
};

// One SQLite connection with its statement cache. Not thread-safe: reach it only
// through a ConnectionLease or a WriteTransaction.
class Connection {
public:
    ~Connection();
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // The statement for `sql`, prepared once per connection and reused. Bind every
    // value as a parameter; never build SQL from values.
    CachedStatement prepare(std::string_view sql);
    // Runs a parameterless script of one or more statements (migrations, pragmas).
    void execute_script(const std::string& sql);

    bool in_transaction() const noexcept;        // any explicit transaction open
    bool in_write_transaction() const noexcept;  // a WriteTransaction is open on it
    std::int64_t last_insert_rowid() const noexcept;
    // The underlying SQLiteCpp handle, for what the wrapper doesn't cover.
    SQLite::Database& sqlite() noexcept { return *database_; }

private:
    friend class Database;
    friend class WriteTransaction;
    friend class ConnectionLease;
    friend struct detail::Pool;
    Connection(detail::Pool* pool, std::unique_ptr<SQLite::Database> database);

    detail::Pool* pool_;
    std::unique_ptr<SQLite::Database> database_;
    std::unique_ptr<detail::StatementCache> statements_;
    bool in_write_transaction_ = false;
};

// Exclusive use of one pooled connection; returns it to the pool on destruction.
class ConnectionLease {
public:
    ConnectionLease(ConnectionLease&& other) noexcept = default;
    ConnectionLease& operator=(ConnectionLease&& other) noexcept;
    ConnectionLease(const ConnectionLease&) = delete;
    ConnectionLease& operator=(const ConnectionLease&) = delete;
    ~ConnectionLease();

    Connection& operator*() const noexcept { return *connection_; }
    Connection* operator->() const noexcept { return connection_.get(); }
    Connection& get() const noexcept { return *connection_; }

private:
    friend class Database;
    ConnectionLease(std::shared_ptr<detail::Pool> pool, std::unique_ptr<Connection> connection);
    void release() noexcept;
    std::shared_ptr<detail::Pool> pool_;
    std::unique_ptr<Connection> connection_;
};

class Database {
public:
    // Opens (creating if missing) the database file and checks it can be read and
    // switched to WAL. Throws StorageError naming the path. Does not migrate.
    explicit Database(DatabaseOptions options);
    ~Database();
    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    // A free connection, opened on demand up to max_connections. Waits at most
    // busy_timeout for one to come back, then throws StorageError(busy). Thread-safe.
    ConnectionLease lease();

    // Read-only health check: leases a connection and reads the schema version
    // (0 before the first migration). Throws StorageError when the database can't answer.
    int ping();

    const DatabaseOptions& options() const noexcept;

    // Runs `work(Connection&)` on a leased connection and returns its result.
    template <class Work>
    decltype(auto) read(Work&& work) {
        ConnectionLease lease = this->lease();
        return std::forward<Work>(work)(*lease);
    }
    // Runs `work(Connection&)` in a WriteTransaction, committing when it returns
    // normally and rolling back when it throws.
    template <class Work>
    decltype(auto) write(Work&& work, Durability durability = Durability::full);

private:
    std::shared_ptr<detail::Pool> pool_;
};

// BEGIN IMMEDIATE ... COMMIT on one connection: the write lock is taken up front,
// so two writers never deadlock upgrading a read lock (SQLITE_BUSY mid-transaction).
// Rolls back in the destructor unless commit() succeeded; the destructor never throws.
class WriteTransaction {
public:
    // Leases a connection for the transaction's lifetime.
    explicit WriteTransaction(Database& database, Durability durability = Durability::full);
    // Uses a connection the caller holds. Throws std::logic_error if that connection
    // is already inside a transaction (use WriteScope to join one).
    explicit WriteTransaction(Connection& connection, Durability durability = Durability::full);
    ~WriteTransaction();
    WriteTransaction(const WriteTransaction&) = delete;
    WriteTransaction& operator=(const WriteTransaction&) = delete;

    Connection& connection() const noexcept { return *connection_; }
    void commit();    // throws StorageError; the transaction is over either way
    void rollback();  // explicit early rollback; no-op when already finished
    bool active() const noexcept { return active_; }

private:
    void begin();
    void finish() noexcept;
    std::optional<ConnectionLease> lease_;
    Connection* connection_;
    Durability durability_;
    bool holds_writer_ = false;  // this process's writer slot (see detail::Pool)
    bool active_ = false;
};

// Joins the write transaction already open on `connection`, or opens one. commit()
// commits only a transaction this scope opened; a joined one is the owner's to
// commit. Repositories use it so the same method works standalone and inside a
// caller's larger transaction.
class WriteScope {
public:
    explicit WriteScope(Connection& connection, Durability durability = Durability::full);
    Connection& connection() const noexcept { return connection_; }
    void commit();

private:
    Connection& connection_;
    std::optional<WriteTransaction> own_;
};

template <class Work>
decltype(auto) Database::write(Work&& work, Durability durability) {
    WriteTransaction transaction(*this, durability);
    if constexpr (std::is_void_v<std::invoke_result_t<Work, Connection&>>) {
        std::forward<Work>(work)(transaction.connection());
        transaction.commit();
    } else {
        auto result = std::forward<Work>(work)(transaction.connection());
        transaction.commit();
        return result;
    }
}

}  // namespace otad::storage
