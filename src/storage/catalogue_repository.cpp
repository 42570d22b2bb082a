#include "otad/storage/catalogue_repository.hpp"

#include <limits>

#include "otad/storage/database.hpp"
#include "otad/util/strings.hpp"
#include "sqlite_support.hpp"

namespace otad::storage {
namespace {

using detail::bind_text;

constexpr std::string_view product_columns = "id, name, allow_project_mismatch, project_name, created_at";
constexpr std::string_view release_columns = "id, product_id, version, notes, created_at, offered";
constexpr std::string_view artifact_columns =
    "id, release_id, chip, layout, slot, filename, sha256, md5, size, metadata, created_at";
constexpr std::string_view channel_columns = "product_id, name, release_id, allow_rollback, updated_at";

std::string sql(std::string_view a, std::string_view b, std::string_view c = "", std::string_view d = "") {
    std::string out;
    out.reserve(a.size() + b.size() + c.size() + d.size());
    out.append(a).append(b).append(c).append(d);
    return out;
}

Product read_product(const SQLite::Statement& row) {
    Product p;
    p.id = row.getColumn(0).getInt64();
    p.name = row.getColumn(1).getString();
    p.allow_project_mismatch = row.getColumn(2).getInt() != 0;
    p.project_name = detail::optional_text(row.getColumn(3));
    p.created_at = row.getColumn(4).getInt64();
    return p;
}

Release read_release(const SQLite::Statement& row) {
    Release r;
    r.id = row.getColumn(0).getInt64();
    r.product_id = row.getColumn(1).getInt64();
    r.version = row.getColumn(2).getString();
    r.notes = row.getColumn(3).getString();
    r.created_at = row.getColumn(4).getInt64();
    r.offered = row.getColumn(5).getInt() != 0;
    return r;
}

Artifact read_artifact(const SQLite::Statement& row) {
    Artifact a;
    a.id = row.getColumn(0).getInt64();
    a.release_id = row.getColumn(1).getInt64();
    a.chip = row.getColumn(2).getString();
    a.layout = row.getColumn(3).getString();
    a.slot = row.getColumn(4).getString();
    a.filename = row.getColumn(5).getString();
    a.sha256 = row.getColumn(6).getString();
    a.md5 = row.getColumn(7).getString();
    a.size = static_cast<std::uint64_t>(row.getColumn(8).getInt64());
    a.metadata_json = row.getColumn(9).getString();
    a.created_at = row.getColumn(10).getInt64();
    return a;
}

Channel read_channel(const SQLite::Statement& row) {
    Channel c;
    c.product_id = row.getColumn(0).getInt64();
    c.name = row.getColumn(1).getString();
    c.release_id = row.getColumn(2).getInt64();
    c.allow_rollback = row.getColumn(3).getInt() != 0;
    c.updated_at = row.getColumn(4).getInt64();
    return c;
}

std::int64_t to_int64(std::uint64_t size, std::string_view what) {
    if (size > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        throw StorageError(StorageErrorKind::invalid, std::string(what) + " size is out of range");
    return static_cast<std::int64_t>(size);
}

// Runs an INSERT ... RETURNING and reads its one row with `read`.
template <class Read>
auto insert_returning(CachedStatement& statement, Read read) {
    statement->executeStep();
    auto record = read(*statement);
    statement->executeStep();  // completes the statement
    return record;
}

}  // namespace

// --- products -------------------------------------------------------------

Product CatalogueRepository::create_product(std::string_view name, bool allow_project_mismatch) try {
    WriteScope scope(connection_);
    auto insert = connection_.prepare(
        sql("INSERT INTO products (name, allow_project_mismatch, created_at) VALUES (?, ?, ?) RETURNING ",
            product_columns));
    bind_text(*insert, 1, name);
    detail::bind_bool(*insert, 2, allow_project_mismatch);
    insert->bind(3, util::unix_now());
    Product product = insert_returning(insert, read_product);
    scope.commit();
    return product;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "create product '" + std::string(name) + "'");
}

std::optional<Product> CatalogueRepository::get_product(std::int64_t id) try {
    auto query = connection_.prepare(sql("SELECT ", product_columns, " FROM products WHERE id = ?"));
    query->bind(1, id);
    if (!query->executeStep()) return std::nullopt;
    return read_product(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "get product " + std::to_string(id));
}

std::optional<Product> CatalogueRepository::find_product(std::string_view name) try {
    auto query = connection_.prepare(sql("SELECT ", product_columns, " FROM products WHERE name = ?"));
    bind_text(*query, 1, name);
    if (!query->executeStep()) return std::nullopt;
    return read_product(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "find product '" + std::string(name) + "'");
}

std::vector<Product> CatalogueRepository::list_products() try {
    auto query = connection_.prepare(sql("SELECT ", product_columns, " FROM products ORDER BY name"));
    std::vector<Product> products;
    while (query->executeStep()) products.push_back(read_product(*query));
    return products;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list products");
}

bool CatalogueRepository::claim_project_name(std::int64_t product_id, std::string_view project_name) try {
    WriteScope scope(connection_);
    auto update = connection_.prepare("UPDATE products SET project_name = ? WHERE id = ? AND project_name IS NULL");
    bind_text(*update, 1, project_name);
    update->bind(2, product_id);
    bool changed = update->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "record project name of product " + std::to_string(product_id));
}

bool CatalogueRepository::set_allow_project_mismatch(std::int64_t product_id, bool allow) try {
    WriteScope scope(connection_);
    auto update = connection_.prepare("UPDATE products SET allow_project_mismatch = ? WHERE id = ?");
    detail::bind_bool(*update, 1, allow);
    update->bind(2, product_id);
    bool changed = update->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "update product " + std::to_string(product_id));
}

// --- releases -------------------------------------------------------------

Release CatalogueRepository::create_release(std::int64_t product_id, std::string_view version,
                                            std::string_view notes) try {
    WriteScope scope(connection_);
    auto insert = connection_.prepare(
        sql("INSERT INTO releases (product_id, version, notes, created_at) VALUES (?, ?, ?, ?) RETURNING ",
            release_columns));
    insert->bind(1, product_id);
    bind_text(*insert, 2, version);
    bind_text(*insert, 3, notes);
    insert->bind(4, util::unix_now());
    Release release = insert_returning(insert, read_release);
    scope.commit();
    return release;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(
        e, "create release '" + std::string(version) + "' of product " + std::to_string(product_id));
}

std::optional<Release> CatalogueRepository::get_release(std::int64_t id) try {
    auto query = connection_.prepare(sql("SELECT ", release_columns, " FROM releases WHERE id = ?"));
    query->bind(1, id);
    if (!query->executeStep()) return std::nullopt;
    return read_release(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "get release " + std::to_string(id));
}

std::optional<Release> CatalogueRepository::find_release(std::int64_t product_id, std::string_view version) try {
    auto query =
        connection_.prepare(sql("SELECT ", release_columns, " FROM releases WHERE product_id = ? AND version = ?"));
    query->bind(1, product_id);
    bind_text(*query, 2, version);
    if (!query->executeStep()) return std::nullopt;
    return read_release(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "find release '" + std::string(version) + "'");
}

ReleasePage CatalogueRepository::list_releases(std::int64_t product_id, std::size_t limit,
                                               std::optional<ReleaseCursor> after) try {
    constexpr auto max = std::numeric_limits<std::int64_t>::max();
    const std::int64_t page_size = detail::clamp_limit(limit);
    auto query = connection_.prepare(sql("SELECT ", release_columns,
                                         " FROM releases WHERE product_id = ? AND (created_at, id) < (?, ?)"
                                         " ORDER BY created_at DESC, id DESC LIMIT ?"));
    query->bind(1, product_id);
    query->bind(2, after ? after->created_at : max);
    query->bind(3, after ? after->id : max);
    query->bind(4, page_size);
    ReleasePage page;
    while (query->executeStep()) page.releases.push_back(read_release(*query));
    if (static_cast<std::int64_t>(page.releases.size()) == page_size)
        page.next = ReleaseCursor{page.releases.back().created_at, page.releases.back().id};
    return page;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list releases of product " + std::to_string(product_id));
}

std::vector<Release> CatalogueRepository::all_releases(std::int64_t product_id) try {
    auto query = connection_.prepare(
        sql("SELECT ", release_columns, " FROM releases WHERE product_id = ? ORDER BY created_at, id"));
    query->bind(1, product_id);
    std::vector<Release> releases;
    while (query->executeStep()) releases.push_back(read_release(*query));
    return releases;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list releases of product " + std::to_string(product_id));
}

bool CatalogueRepository::set_release_notes(std::int64_t release_id, std::string_view notes) try {
    WriteScope scope(connection_);
    auto update = connection_.prepare("UPDATE releases SET notes = ? WHERE id = ?");
    bind_text(*update, 1, notes);
    update->bind(2, release_id);
    bool changed = update->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "update notes of release " + std::to_string(release_id));
}

bool CatalogueRepository::mark_release_offered(std::int64_t release_id) try {
    WriteScope scope(connection_);
    auto update = connection_.prepare("UPDATE releases SET offered = 1 WHERE id = ? AND offered = 0");
    update->bind(1, release_id);
    bool changed = update->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "mark release " + std::to_string(release_id) + " offered");
}

bool CatalogueRepository::delete_release(std::int64_t release_id) try {
    WriteScope scope(connection_);
    auto remove = connection_.prepare("DELETE FROM releases WHERE id = ?");
    remove->bind(1, release_id);
    bool changed = remove->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "delete release " + std::to_string(release_id));
}

std::vector<ReleaseTombstone> CatalogueRepository::list_tombstones(std::int64_t product_id,
                                                                   std::string_view version) try {
    auto query = connection_.prepare(
        "SELECT chip, layout, slot, sha256, size, deleted_at FROM release_tombstones "
        "WHERE product_id = ? AND version = ? ORDER BY chip, layout, slot");
    query->bind(1, product_id);
    bind_text(*query, 2, version);
    std::vector<ReleaseTombstone> out;
    while (query->executeStep()) {
        ReleaseTombstone t;
        t.chip = query->getColumn(0).getString();
        t.layout = query->getColumn(1).getString();
        t.slot = query->getColumn(2).getString();
        t.sha256 = query->getColumn(3).getString();
        t.size = static_cast<std::uint64_t>(query->getColumn(4).getInt64());
        t.deleted_at = query->getColumn(5).getInt64();
        out.push_back(std::move(t));
    }
    return out;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list tombstones of release '" + std::string(version) + "'");
}

// --- artifacts ------------------------------------------------------------

Artifact CatalogueRepository::insert_artifact(const NewArtifact& artifact) try {
    WriteScope scope(connection_);
    auto insert = connection_.prepare(
        sql("INSERT INTO artifacts (release_id, chip, layout, slot, filename, sha256, md5, size, metadata, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING ",
            artifact_columns));
    insert->bind(1, artifact.release_id);
    insert->bind(2, artifact.chip);
    insert->bind(3, artifact.layout);
    insert->bind(4, artifact.slot);
    insert->bind(5, artifact.filename);
    insert->bind(6, artifact.sha256);
    insert->bind(7, artifact.md5);
    insert->bind(8, to_int64(artifact.size, "artifact"));
    insert->bind(9, artifact.metadata_json.empty() ? std::string("{}") : artifact.metadata_json);
    insert->bind(10, util::unix_now());
    Artifact stored = insert_returning(insert, read_artifact);
    scope.commit();
    return stored;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "add artifact " + artifact.chip + "/" + artifact.layout + "/" + artifact.slot +
                                       " to release " + std::to_string(artifact.release_id));
}

std::optional<Artifact> CatalogueRepository::get_artifact(std::int64_t id) try {
    auto query = connection_.prepare(sql("SELECT ", artifact_columns, " FROM artifacts WHERE id = ?"));
    query->bind(1, id);
    if (!query->executeStep()) return std::nullopt;
    return read_artifact(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "get artifact " + std::to_string(id));
}

std::optional<Artifact> CatalogueRepository::find_artifact(std::int64_t release_id, std::string_view chip,
                                                           std::string_view layout, std::string_view slot) try {
    auto query = connection_.prepare(sql(
        "SELECT ", artifact_columns, " FROM artifacts WHERE release_id = ? AND chip = ? AND layout = ? AND slot = ?"));
    query->bind(1, release_id);
    bind_text(*query, 2, chip);
    bind_text(*query, 3, layout);
    bind_text(*query, 4, slot);
    if (!query->executeStep()) return std::nullopt;
    return read_artifact(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "find artifact of release " + std::to_string(release_id));
}

std::vector<Artifact> CatalogueRepository::list_artifacts(std::int64_t release_id) try {
    auto query = connection_.prepare(
        sql("SELECT ", artifact_columns, " FROM artifacts WHERE release_id = ? ORDER BY chip, layout, slot"));
    query->bind(1, release_id);
    std::vector<Artifact> artifacts;
    while (query->executeStep()) artifacts.push_back(read_artifact(*query));
    return artifacts;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list artifacts of release " + std::to_string(release_id));
}

bool CatalogueRepository::delete_artifact(std::int64_t id) try {
    WriteScope scope(connection_);
    auto remove = connection_.prepare("DELETE FROM artifacts WHERE id = ?");
    remove->bind(1, id);
    bool changed = remove->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "delete artifact " + std::to_string(id));
}

// --- blobs ----------------------------------------------------------------

bool CatalogueRepository::insert_blob(std::string_view sha256, std::uint64_t size) try {
    WriteScope scope(connection_);
    auto insert = connection_.prepare(
        "INSERT INTO blobs (sha256, size, created_at) VALUES (?, ?, ?) ON CONFLICT (sha256) DO NOTHING");
    bind_text(*insert, 1, sha256);
    insert->bind(2, to_int64(size, "blob"));
    insert->bind(3, util::unix_now());
    bool inserted = insert->exec() > 0;
    if (!inserted) {
        auto existing = connection_.prepare("SELECT size FROM blobs WHERE sha256 = ?");
        bind_text(*existing, 1, sha256);
        if (existing->executeStep() && static_cast<std::uint64_t>(existing->getColumn(0).getInt64()) != size)
            throw StorageError(StorageErrorKind::conflict, "blob " + std::string(sha256) + " is recorded with size " +
                                                               std::to_string(existing->getColumn(0).getInt64()) +
                                                               ", not " + std::to_string(size));
    }
    scope.commit();
    return inserted;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "record blob " + std::string(sha256));
}

std::optional<BlobRecord> CatalogueRepository::find_blob(std::string_view sha256) try {
    auto query = connection_.prepare("SELECT sha256, size, created_at FROM blobs WHERE sha256 = ?");
    bind_text(*query, 1, sha256);
    if (!query->executeStep()) return std::nullopt;
    return BlobRecord{query->getColumn(0).getString(), static_cast<std::uint64_t>(query->getColumn(1).getInt64()),
                      query->getColumn(2).getInt64()};
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "find blob " + std::string(sha256));
}

std::int64_t CatalogueRepository::blob_reference_count(std::string_view sha256) try {
    auto query = connection_.prepare("SELECT count(*) FROM artifacts WHERE sha256 = ?");
    bind_text(*query, 1, sha256);
    query->executeStep();
    return query->getColumn(0).getInt64();
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "count references to blob " + std::string(sha256));
}

// --- channels -------------------------------------------------------------

Channel CatalogueRepository::set_channel(std::int64_t product_id, std::string_view name, std::int64_t release_id,
                                         bool allow_rollback) try {
    WriteScope scope(connection_);
    auto upsert = connection_.prepare(
        sql("INSERT INTO channels (product_id, name, release_id, allow_rollback, updated_at) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (product_id, name) DO UPDATE SET release_id = excluded.release_id,"
            " allow_rollback = excluded.allow_rollback, updated_at = excluded.updated_at RETURNING ",
            channel_columns));
    upsert->bind(1, product_id);
    bind_text(*upsert, 2, name);
    upsert->bind(3, release_id);
    detail::bind_bool(*upsert, 4, allow_rollback);
    upsert->bind(5, util::unix_now());
    Channel channel = insert_returning(upsert, read_channel);
    scope.commit();
    return channel;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "set channel '" + std::string(name) + "' of product " + std::to_string(product_id));
}

std::optional<Channel> CatalogueRepository::get_channel(std::int64_t product_id, std::string_view name) try {
    auto query =
        connection_.prepare(sql("SELECT ", channel_columns, " FROM channels WHERE product_id = ? AND name = ?"));
    query->bind(1, product_id);
    bind_text(*query, 2, name);
    if (!query->executeStep()) return std::nullopt;
    return read_channel(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "get channel '" + std::string(name) + "'");
}

std::vector<Channel> CatalogueRepository::list_channels(std::int64_t product_id) try {
    auto query =
        connection_.prepare(sql("SELECT ", channel_columns, " FROM channels WHERE product_id = ? ORDER BY name"));
    query->bind(1, product_id);
    std::vector<Channel> channels;
    while (query->executeStep()) channels.push_back(read_channel(*query));
    return channels;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list channels of product " + std::to_string(product_id));
}

bool CatalogueRepository::delete_channel(std::int64_t product_id, std::string_view name) try {
    WriteScope scope(connection_);
    auto remove = connection_.prepare("DELETE FROM channels WHERE product_id = ? AND name = ?");
    remove->bind(1, product_id);
    bind_text(*remove, 2, name);
    bool changed = remove->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "delete channel '" + std::string(name) + "'");
}

}  // namespace otad::storage
