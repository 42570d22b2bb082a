#pragma once
// Schema migrations: migrations/NNNN_name.sql, embedded at build time, applied in
// order, each in one transaction that also records its version.

#include <string>
#include <vector>

namespace SQLite { class Database; }

namespace otad::storage {

struct EmbeddedMigration {
    int version;
    const char* name;
    const char* sql;
};
// Every migration compiled into this binary, in ascending version order.
const std::vector<EmbeddedMigration>& embedded_migrations();

}  // namespace otad::storage
