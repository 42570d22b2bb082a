#pragma once
// The append-only audit log of operator actions. The schema refuses UPDATE and
// DELETE on it (triggers), so an entry, once committed, stays.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace otad::storage {

class Connection;

struct AuditEntry {
    std::int64_t id = 0;
    std::int64_t at = 0;
    std::string actor;        // e.g. "token:ci", "cli"
    std::string action;       // e.g. "release.create"
    std::string subject;      // e.g. "product/app/release/1.2.0"; may be empty
    std::string detail_json;  // a JSON object
};

class AuditRepository {
public:
    explicit AuditRepository(Connection& connection) : connection_(connection) {}

    // Appends an entry stamped now; returns its id. `detail_json` must be valid JSON
    // (StorageError invalid otherwise). Joins the caller's write transaction, so an
    // action and its audit entry commit together.
    std::int64_t append(std::string_view actor, std::string_view action, std::string_view subject,
                        std::string_view detail_json = "{}");

    // Newest first; entries with id < before_id when given. limit is clamped to 1..1000.
    std::vector<AuditEntry> list(std::size_t limit, std::optional<std::int64_t> before_id = std::nullopt);

private:
    Connection& connection_;
};

}  // namespace otad::storage
