#pragma once
// The one exception type the storage layer throws. SQLite errors are translated
// at the repository edge, so callers above storage never see SQLiteCpp types and
// can map `kind()` to a protocol status in one place. Messages are for logs: they
// may name tables, paths and constraints, so don't send them to clients verbatim.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace otad::storage {

enum class StorageErrorKind {
    conflict,   // UNIQUE / PRIMARY KEY: the thing already exists
    reference,  // FOREIGN KEY: refers to a missing row, or a row still referenced
    invalid,    // CHECK / NOT NULL: a value the schema does not allow
    rejected,   // a schema rule (trigger) refused it: append-only audit, offered release...
    busy,       // the database or the connection pool stayed busy past the timeout
    too_large,  // a blob exceeded its byte limit
    mismatch,   // a blob's digest differs from the expected one
    no_space,   // the file system is full (ENOSPC, EDQUOT, SQLITE_FULL): nothing was stored
    io,         // file-system failure
    internal,   // anything else (corruption, misuse...)
};

std::string_view to_string(StorageErrorKind kind) noexcept;

// Whether a file-system error means "out of space": ENOSPC, or EDQUOT (the
// user's quota). Both leave nothing stored and clear up once space is freed.
bool is_no_space(const std::error_code& error) noexcept;

class StorageError : public std::runtime_error {
public:
    StorageError(StorageErrorKind kind, const std::string& message, int sqlite_code = 0)
        : std::runtime_error(message), kind_(kind), sqlite_code_(sqlite_code) {}
    StorageErrorKind kind() const noexcept { return kind_; }
    // SQLite's extended result code, 0 when the error did not come from SQLite.
    int sqlite_code() const noexcept { return sqlite_code_; }

private:
    StorageErrorKind kind_;
    int sqlite_code_;
};

// BlobWriter::write went past its byte limit. The upload must be answered 413.
class BlobTooLarge : public StorageError {
public:
    explicit BlobTooLarge(std::uint64_t limit)
        : StorageError(StorageErrorKind::too_large, "blob exceeds the limit of " + std::to_string(limit) + " bytes"),
          limit_(limit) {}
    std::uint64_t limit() const noexcept { return limit_; }

private:
    std::uint64_t limit_;
};

}  // namespace otad::storage
