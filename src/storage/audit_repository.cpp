#include "otad/storage/audit_repository.hpp"

#include <limits>

#include "otad/storage/database.hpp"
#include "otad/util/strings.hpp"
#include "sqlite_support.hpp"

namespace otad::storage {

std::int64_t AuditRepository::append(std::string_view actor, std::string_view action, std::string_view subject,
                                     std::string_view detail_json) try {
    WriteScope scope(connection_);
    auto insert = connection_.prepare("INSERT INTO audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)");
    insert->bind(1, util::unix_now());
    detail::bind_text(*insert, 2, actor);
    detail::bind_text(*insert, 3, action);
    detail::bind_text(*insert, 4, subject);
    detail::bind_text(*insert, 5, detail_json.empty() ? std::string_view("{}") : detail_json);
    insert->exec();
    std::int64_t id = connection_.last_insert_rowid();
    scope.commit();
    return id;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "append audit entry '" + std::string(action) + "'");
}

std::vector<AuditEntry> AuditRepository::list(std::size_t limit, std::optional<std::int64_t> before_id) try {
    auto query = connection_.prepare(
        "SELECT id, at, actor, action, subject, detail FROM audit "
        "WHERE id < ? ORDER BY id DESC LIMIT ?");
    query->bind(1, before_id.value_or(std::numeric_limits<std::int64_t>::max()));
    query->bind(2, detail::clamp_limit(limit));
    std::vector<AuditEntry> entries;
    while (query->executeStep()) {
        AuditEntry entry;
        entry.id = query->getColumn(0).getInt64();
        entry.at = query->getColumn(1).getInt64();
        entry.actor = query->getColumn(2).getString();
        entry.action = query->getColumn(3).getString();
        entry.subject = query->getColumn(4).getString();
        entry.detail_json = query->getColumn(5).getString();
        entries.push_back(std::move(entry));
    }
    return entries;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list audit entries");
}

}  // namespace otad::storage
