#pragma once
// Private helpers for the storage sources: SQLite error translation and the
// small conversions every repository needs. Not part of the public API.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <SQLiteCpp/Column.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>

#include "otad/storage/error.hpp"

namespace otad::storage::detail {

// Maps SQLite's extended result code to a StorageErrorKind and rethrows with
// `context` ("create product 'x'") in front of SQLite's own message.
[[noreturn]] void throw_storage_error(const SQLite::Exception& error, std::string_view context);
StorageErrorKind classify(int extended_code) noexcept;

inline void bind_text(SQLite::Statement& statement, int index, std::string_view value) {
    statement.bind(index, std::string(value));
}
inline void bind_optional(SQLite::Statement& statement, int index, const std::optional<std::string>& value) {
    if (value)
        statement.bind(index, *value);
    else
        statement.bind(index);
}
inline void bind_optional(SQLite::Statement& statement, int index, std::optional<std::int64_t> value) {
    if (value)
        statement.bind(index, *value);
    else
        statement.bind(index);
}
inline void bind_bool(SQLite::Statement& statement, int index, bool value) { statement.bind(index, value ? 1 : 0); }

inline std::optional<std::int64_t> optional_int64(const SQLite::Column& column) {
    if (column.isNull()) return std::nullopt;
    return column.getInt64();
}
inline std::optional<std::string> optional_text(const SQLite::Column& column) {
    if (column.isNull()) return std::nullopt;
    return column.getString();
}

// Page sizes are clamped so a caller can't ask for the whole table at once.
inline std::int64_t clamp_limit(std::size_t limit, std::size_t maximum = 1000) {
    if (limit == 0) return 1;
    return static_cast<std::int64_t>(limit > maximum ? maximum : limit);
}

}  // namespace otad::storage::detail
