#include "otad/storage/token_repository.hpp"

#include "otad/storage/database.hpp"
#include "otad/util/crypto.hpp"
#include "otad/util/strings.hpp"
#include "sqlite_support.hpp"

namespace otad::storage {
namespace {

constexpr const char* token_columns = "id, name, role, created_at, last_used_at, revoked_at";

TokenRecord read_token(const SQLite::Statement& row) {
    TokenRecord record;
    record.id = row.getColumn(0).getInt64();
    record.name = row.getColumn(1).getString();
    // The schema's CHECK keeps role to the three known values.
    record.role = parse_token_role(row.getColumn(2).getString()).value_or(TokenRole::viewer);
    record.created_at = row.getColumn(3).getInt64();
    record.last_used_at = detail::optional_int64(row.getColumn(4));
    record.revoked_at = detail::optional_int64(row.getColumn(5));
    return record;
}

std::string select_tokens(std::string_view where) {
    return std::string("SELECT ") + token_columns + " FROM tokens " + std::string(where);
}

}  // namespace

std::string_view to_string(TokenRole role) noexcept {
    switch (role) {
        case TokenRole::admin:
            return "admin";
        case TokenRole::uploader:
            return "uploader";
        case TokenRole::viewer:
            return "viewer";
    }
    return "viewer";
}

std::optional<TokenRole> parse_token_role(std::string_view text) noexcept {
    if (text == "admin") return TokenRole::admin;
    if (text == "uploader") return TokenRole::uploader;
    if (text == "viewer") return TokenRole::viewer;
    return std::nullopt;
}

std::string TokenRepository::hash_secret(std::string_view secret) { return util::sha256_hex(secret); }

CreatedToken TokenRepository::create(std::string_view name, TokenRole role) {
    std::string secret = "otad_" + util::random_token(32);
    TokenRecord record = create_with_secret(name, role, secret);
    return CreatedToken{std::move(record), std::move(secret)};
}

TokenRecord TokenRepository::create_with_secret(std::string_view name, TokenRole role, std::string_view secret) try {
    if (secret.empty()) throw StorageError(StorageErrorKind::invalid, "token secret is empty");
    WriteScope scope(connection_);
    auto insert =
        connection_.prepare("INSERT INTO tokens (name, role, token_hash, created_at) VALUES (?, ?, ?, ?) RETURNING " +
                            std::string(token_columns));
    detail::bind_text(*insert, 1, name);
    detail::bind_text(*insert, 2, to_string(role));
    insert->bind(3, hash_secret(secret));
    insert->bind(4, util::unix_now());
    insert->executeStep();
    TokenRecord record = read_token(*insert);
    insert->executeStep();  // finish the statement before committing
    scope.commit();
    return record;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "create token '" + std::string(name) + "'");
}

std::vector<TokenRecord> TokenRepository::list(bool include_revoked) try {
    auto query = connection_.prepare(select_tokens("WHERE ? OR revoked_at IS NULL ORDER BY id"));
    detail::bind_bool(*query, 1, include_revoked);
    std::vector<TokenRecord> tokens;
    while (query->executeStep()) tokens.push_back(read_token(*query));
    return tokens;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list tokens");
}

std::optional<TokenRecord> TokenRepository::find_active_by_name(std::string_view name) try {
    auto query = connection_.prepare(select_tokens("WHERE name = ? AND revoked_at IS NULL"));
    detail::bind_text(*query, 1, name);
    if (!query->executeStep()) return std::nullopt;
    return read_token(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "find token '" + std::string(name) + "'");
}

bool TokenRepository::revoke(std::string_view name) try {
    WriteScope scope(connection_);
    auto update = connection_.prepare("UPDATE tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL");
    update->bind(1, util::unix_now());
    detail::bind_text(*update, 2, name);
    bool changed = update->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "revoke token '" + std::string(name) + "'");
}

std::optional<TokenRecord> TokenRepository::find_by_secret(std::string_view secret) try {
    const std::string hash = hash_secret(secret);
    auto query = connection_.prepare(std::string("SELECT ") + token_columns +
                                     ", token_hash FROM tokens WHERE token_hash = ? AND revoked_at IS NULL");
    query->bind(1, hash);
    if (!query->executeStep()) return std::nullopt;
    // The index found it by equality already; compare again in constant time so
    // this function's answer never rests on a variable-time comparison.
    if (!util::constant_time_equals(query->getColumn(6).getString(), hash)) return std::nullopt;
    return read_token(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "look up token");
}

void TokenRepository::record_uses(const std::vector<std::pair<std::int64_t, std::int64_t>>& uses) try {
    if (uses.empty()) return;
    WriteScope scope(connection_);
    for (const auto& [id, at] : uses) {
        auto touch = connection_.prepare(
            "UPDATE tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)");
        touch->bind(1, at);
        touch->bind(2, id);
        touch->bind(3, at);
        touch->exec();
    }
    scope.commit();
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "record token uses");
}

std::int64_t TokenRepository::count_admins() try {
    auto query = connection_.prepare("SELECT count(*) FROM tokens WHERE role = 'admin' AND revoked_at IS NULL");
    query->executeStep();
    return query->getColumn(0).getInt64();
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "count admin tokens");
}

}  // namespace otad::storage
