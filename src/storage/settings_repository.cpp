#include "otad/storage/settings_repository.hpp"

#include "otad/storage/database.hpp"
#include "otad/util/strings.hpp"
#include "sqlite_support.hpp"

namespace otad::storage {

std::optional<std::string> SettingsRepository::get(std::string_view key) try {
    auto query = connection_.prepare("SELECT value FROM settings WHERE key = ?");
    detail::bind_text(*query, 1, key);
    if (!query->executeStep()) return std::nullopt;
    return query->getColumn(0).getString();
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "read setting '" + std::string(key) + "'");
}

void SettingsRepository::set(std::string_view key, std::string_view value) try {
    WriteScope scope(connection_);
    auto upsert = connection_.prepare(
        "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at");
    detail::bind_text(*upsert, 1, key);
    detail::bind_text(*upsert, 2, value);
    upsert->bind(3, util::unix_now());
    upsert->exec();
    scope.commit();
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "write setting '" + std::string(key) + "'");
}

bool SettingsRepository::remove(std::string_view key) try {
    WriteScope scope(connection_);
    auto remove = connection_.prepare("DELETE FROM settings WHERE key = ?");
    detail::bind_text(*remove, 1, key);
    bool changed = remove->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "remove setting '" + std::string(key) + "'");
}

std::string SettingsRepository::get_or_create(std::string_view key, const std::function<std::string()>& make) try {
    // Read and insert under one write lock, so a racing process can't store a
    // different value between our read and our write.
    WriteScope scope(connection_);
    if (auto existing = get(key)) {
        scope.commit();
        return *existing;
    }
    std::string value = make();
    auto insert = connection_.prepare("INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)");
    detail::bind_text(*insert, 1, key);
    insert->bind(2, value);
    insert->bind(3, util::unix_now());
    insert->exec();
    scope.commit();
    return value;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "create setting '" + std::string(key) + "'");
}

}  // namespace otad::storage
