#include "otad/storage/device_key_repository.hpp"

#include "otad/storage/database.hpp"
#include "otad/util/crypto.hpp"
#include "otad/util/strings.hpp"
#include "sqlite_support.hpp"

namespace otad::storage {
namespace {

constexpr std::string_view key_columns = "id, product_id, name, created_at, revoked_at";

DeviceKey read_key(const SQLite::Statement& row) {
    DeviceKey key;
    key.id = row.getColumn(0).getInt64();
    key.product_id = row.getColumn(1).getInt64();
    key.name = row.getColumn(2).getString();
    key.created_at = row.getColumn(3).getInt64();
    key.revoked_at = detail::optional_int64(row.getColumn(4));
    return key;
}

}  // namespace

CreatedDeviceKey DeviceKeyRepository::create(std::int64_t product_id, std::string_view name) {
    std::string secret = util::random_token(32);
    DeviceKey key = create_with_secret(product_id, name, secret);
    return CreatedDeviceKey{std::move(key), std::move(secret)};
}

DeviceKey DeviceKeyRepository::create_with_secret(std::int64_t product_id, std::string_view name,
                                                  std::string_view secret) try {
    if (secret.empty()) throw StorageError(StorageErrorKind::invalid, "device key secret is empty");
    WriteScope scope(connection_);
    auto insert = connection_.prepare(
        std::string("INSERT INTO device_keys (product_id, name, key_hash, created_at) VALUES (?, ?, ?, ?) RETURNING ")
            .append(key_columns));
    insert->bind(1, product_id);
    detail::bind_text(*insert, 2, name);
    insert->bind(3, util::sha256_hex(secret));
    insert->bind(4, util::unix_now());
    insert->executeStep();
    DeviceKey key = read_key(*insert);
    insert->executeStep();
    scope.commit();
    return key;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(
        e, "create device key '" + std::string(name) + "' of product " + std::to_string(product_id));
}

std::vector<DeviceKey> DeviceKeyRepository::list(std::int64_t product_id, bool include_revoked) try {
    auto query = connection_.prepare(std::string("SELECT ")
                                         .append(key_columns)
                                         .append(" FROM device_keys WHERE product_id = ?"
                                                 " AND (? OR revoked_at IS NULL) ORDER BY id"));
    query->bind(1, product_id);
    detail::bind_bool(*query, 2, include_revoked);
    std::vector<DeviceKey> keys;
    while (query->executeStep()) keys.push_back(read_key(*query));
    return keys;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list device keys of product " + std::to_string(product_id));
}

bool DeviceKeyRepository::any_active() try {
    auto query = connection_.prepare("SELECT EXISTS (SELECT 1 FROM device_keys WHERE revoked_at IS NULL)");
    query->executeStep();
    return query->getColumn(0).getInt() != 0;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "look for active device keys");
}

bool DeviceKeyRepository::revoke(std::int64_t product_id, std::string_view name) try {
    WriteScope scope(connection_);
    auto update = connection_.prepare(
        "UPDATE device_keys SET revoked_at = ? WHERE product_id = ? AND name = ? AND revoked_at IS NULL");
    update->bind(1, util::unix_now());
    update->bind(2, product_id);
    detail::bind_text(*update, 3, name);
    bool changed = update->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "revoke device key '" + std::string(name) + "'");
}

std::optional<DeviceKey> DeviceKeyRepository::find_by_secret(std::string_view secret) try {
    const std::string hash = util::sha256_hex(secret);
    auto query =
        connection_.prepare(std::string("SELECT ")
                                .append(key_columns)
                                .append(", key_hash FROM device_keys WHERE key_hash = ? AND revoked_at IS NULL"));
    query->bind(1, hash);
    if (!query->executeStep()) return std::nullopt;
    if (!util::constant_time_equals(query->getColumn(5).getString(), hash)) return std::nullopt;
    return read_key(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "look up device key");
}

}  // namespace otad::storage
