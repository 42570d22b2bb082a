#include "otad/storage/signing_key_repository.hpp"

#include "otad/storage/database.hpp"
#include "otad/util/strings.hpp"
#include "sqlite_support.hpp"

namespace otad::storage {
namespace {

constexpr std::string_view signing_key_columns =
    "key_id, algorithm, private_key_pem, public_key_pem, created_at, retired_at";

SigningKey read_signing_key(const SQLite::Statement& row) {
    SigningKey key;
    key.key_id = row.getColumn(0).getString();
    // The schema's CHECK keeps algorithm to the known values.
    key.algorithm = parse_signing_algorithm(row.getColumn(1).getString()).value_or(SigningAlgorithm::es256);
    key.private_key_pem = row.getColumn(2).getString();
    key.public_key_pem = row.getColumn(3).getString();
    key.created_at = row.getColumn(4).getInt64();
    key.retired_at = detail::optional_int64(row.getColumn(5));
    return key;
}

std::string select_keys(std::string_view where) {
    return std::string("SELECT ").append(signing_key_columns).append(" FROM signing_keys ").append(where);
}

}  // namespace

std::string_view to_string(SigningAlgorithm algorithm) noexcept {
    switch (algorithm) {
        case SigningAlgorithm::es256:
            return "es256";
        case SigningAlgorithm::ed25519:
            return "ed25519";
    }
    return "es256";
}

std::optional<SigningAlgorithm> parse_signing_algorithm(std::string_view text) noexcept {
    if (text == "es256") return SigningAlgorithm::es256;
    if (text == "ed25519") return SigningAlgorithm::ed25519;
    return std::nullopt;
}

void SigningKeyRepository::insert(const SigningKey& key) try {
    WriteScope scope(connection_);
    auto insert = connection_.prepare(
        "INSERT INTO signing_keys (key_id, algorithm, private_key_pem, public_key_pem, created_at, retired_at)"
        " VALUES (?, ?, ?, ?, ?, ?)");
    insert->bind(1, key.key_id);
    detail::bind_text(*insert, 2, to_string(key.algorithm));
    insert->bind(3, key.private_key_pem);
    insert->bind(4, key.public_key_pem);
    insert->bind(5, key.created_at != 0 ? key.created_at : util::unix_now());
    detail::bind_optional(*insert, 6, key.retired_at);
    insert->exec();
    scope.commit();
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "store signing key '" + key.key_id + "'");
}

std::optional<SigningKey> SigningKeyRepository::get(std::string_view key_id) try {
    auto query = connection_.prepare(select_keys("WHERE key_id = ?"));
    detail::bind_text(*query, 1, key_id);
    if (!query->executeStep()) return std::nullopt;
    return read_signing_key(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "get signing key '" + std::string(key_id) + "'");
}

std::optional<SigningKey> SigningKeyRepository::active(SigningAlgorithm algorithm) try {
    auto query = connection_.prepare(select_keys("WHERE algorithm = ? AND retired_at IS NULL"));
    detail::bind_text(*query, 1, to_string(algorithm));
    if (!query->executeStep()) return std::nullopt;
    return read_signing_key(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "get active signing key");
}

std::vector<SigningKey> SigningKeyRepository::list() try {
    auto query = connection_.prepare(select_keys("ORDER BY created_at, key_id"));
    std::vector<SigningKey> keys;
    while (query->executeStep()) keys.push_back(read_signing_key(*query));
    return keys;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list signing keys");
}

bool SigningKeyRepository::retire(std::string_view key_id) try {
    WriteScope scope(connection_);
    auto update = connection_.prepare("UPDATE signing_keys SET retired_at = ? WHERE key_id = ? AND retired_at IS NULL");
    update->bind(1, util::unix_now());
    detail::bind_text(*update, 2, key_id);
    bool changed = update->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "retire signing key '" + std::string(key_id) + "'");
}

}  // namespace otad::storage
