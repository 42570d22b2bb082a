#include "otad/storage/device_repository.hpp"

#include <limits>

#include "otad/storage/database.hpp"
#include "sqlite_support.hpp"

namespace otad::storage {
namespace {

using detail::bind_optional;
using detail::bind_text;

constexpr std::string_view device_columns =
    "id, product_id, chip, layout, slot, version, channel, secure_version, remote_address, first_seen, last_seen,"
    " offered_version, offered_at, last_status, last_status_at, last_status_version";

// Shared by list() and count(): every filter is a bound parameter, NULL = any.
constexpr std::string_view device_filter =
    " WHERE (?1 IS NULL OR product_id = ?1) AND (?2 IS NULL OR version = ?2)"
    " AND (?3 IS NULL OR last_status = ?3) AND (?4 IS NULL OR channel = ?4)";

Device read_device(const SQLite::Statement& row) {
    Device d;
    d.id = row.getColumn(0).getString();
    d.product_id = row.getColumn(1).getInt64();
    d.chip = row.getColumn(2).getString();
    d.layout = row.getColumn(3).getString();
    d.slot = row.getColumn(4).getString();
    d.version = row.getColumn(5).getString();
    d.channel = row.getColumn(6).getString();
    d.secure_version = detail::optional_int64(row.getColumn(7));
    d.remote_address = row.getColumn(8).getString();
    d.first_seen = row.getColumn(9).getInt64();
    d.last_seen = row.getColumn(10).getInt64();
    d.offered_version = detail::optional_text(row.getColumn(11));
    d.offered_at = detail::optional_int64(row.getColumn(12));
    d.last_status = detail::optional_text(row.getColumn(13));
    d.last_status_at = detail::optional_int64(row.getColumn(14));
    d.last_status_version = detail::optional_text(row.getColumn(15));
    return d;
}

void bind_filter(SQLite::Statement& statement, const DeviceFilter& filter) {
    bind_optional(statement, 1, filter.product_id);
    bind_optional(statement, 2, filter.version);
    bind_optional(statement, 3, filter.status);
    bind_optional(statement, 4, filter.channel);
}

}  // namespace

std::string_view to_string(DeviceEventKind kind) noexcept {
    switch (kind) {
        case DeviceEventKind::first_seen:
            return "first_seen";
        case DeviceEventKind::poll_offer:
            return "poll_offer";
        case DeviceEventKind::download:
            return "download";
        case DeviceEventKind::report:
            return "report";
        case DeviceEventKind::version_changed:
            return "version_changed";
        case DeviceEventKind::rolled_back:
            return "rolled_back";
    }
    return "report";
}

std::optional<DeviceEventKind> parse_device_event_kind(std::string_view text) noexcept {
    for (auto kind : {DeviceEventKind::first_seen, DeviceEventKind::poll_offer, DeviceEventKind::download,
                      DeviceEventKind::report, DeviceEventKind::version_changed, DeviceEventKind::rolled_back})
        if (to_string(kind) == text) return kind;
    return std::nullopt;
}

void DeviceRepository::upsert_many(std::span<const DeviceSighting> sightings) try {
    if (sightings.empty()) return;
    WriteScope scope(connection_, Durability::normal);
    auto upsert = connection_.prepare(
        "INSERT INTO devices (id, product_id, chip, layout, slot, version, channel, secure_version, remote_address,"
        " first_seen, last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)"
        " ON CONFLICT (id) DO UPDATE SET product_id = excluded.product_id, chip = excluded.chip,"
        " layout = excluded.layout, slot = excluded.slot, version = excluded.version, channel = excluded.channel,"
        " secure_version = excluded.secure_version, remote_address = excluded.remote_address,"
        " last_seen = max(devices.last_seen, excluded.last_seen)"
        // An older sighting arriving late (batches can interleave) must not
        // overwrite newer state.
        " WHERE excluded.last_seen >= devices.last_seen");
    for (const auto& s : sightings) {
        bind_text(*upsert, 1, s.id);
        upsert->bind(2, s.product_id);
        bind_text(*upsert, 3, s.chip);
        bind_text(*upsert, 4, s.layout);
        bind_text(*upsert, 5, s.slot);
        bind_text(*upsert, 6, s.version);
        bind_text(*upsert, 7, s.channel);
        bind_optional(*upsert, 8, s.secure_version);
        bind_text(*upsert, 9, s.remote_address);
        upsert->bind(10, s.seen_at);
        upsert->exec();
        upsert->reset();
    }
    scope.commit();
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "record " + std::to_string(sightings.size()) + " device sightings");
}

std::optional<Device> DeviceRepository::get(std::string_view id) try {
    auto query =
        connection_.prepare(std::string("SELECT ").append(device_columns).append(" FROM devices WHERE id = ?"));
    bind_text(*query, 1, id);
    if (!query->executeStep()) return std::nullopt;
    return read_device(*query);
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "get device '" + std::string(id) + "'");
}

std::vector<Device> DeviceRepository::list(const DeviceFilter& filter) try {
    auto query = connection_.prepare(std::string("SELECT ")
                                         .append(device_columns)
                                         .append(" FROM devices")
                                         .append(device_filter)
                                         .append(" AND (?5 IS NULL OR id > ?5) ORDER BY id LIMIT ?6"));
    bind_filter(*query, filter);
    bind_optional(*query, 5, filter.after_id);
    query->bind(6, detail::clamp_limit(filter.limit));
    std::vector<Device> devices;
    while (query->executeStep()) devices.push_back(read_device(*query));
    return devices;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "list devices");
}

std::int64_t DeviceRepository::count(const DeviceFilter& filter) try {
    auto query = connection_.prepare(std::string("SELECT count(*) FROM devices").append(device_filter));
    bind_filter(*query, filter);
    query->executeStep();
    return query->getColumn(0).getInt64();
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "count devices");
}

bool DeviceRepository::record_offer(std::string_view device_id, std::string_view version, std::int64_t at) try {
    WriteScope scope(connection_);
    auto update = connection_.prepare("UPDATE devices SET offered_version = ?, offered_at = ? WHERE id = ?");
    bind_text(*update, 1, version);
    update->bind(2, at);
    bind_text(*update, 3, device_id);
    bool changed = update->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "record offer to device '" + std::string(device_id) + "'");
}

bool DeviceRepository::record_status(std::string_view device_id, std::string_view status, std::string_view version,
                                     std::int64_t at) try {
    WriteScope scope(connection_);
    auto update = connection_.prepare(
        "UPDATE devices SET last_status = ?, last_status_version = ?, last_status_at = ? WHERE id = ?");
    bind_text(*update, 1, status);
    bind_text(*update, 2, version);
    update->bind(3, at);
    bind_text(*update, 4, device_id);
    bool changed = update->exec() > 0;
    scope.commit();
    return changed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "record status of device '" + std::string(device_id) + "'");
}

std::int64_t DeviceRepository::append_event(const NewDeviceEvent& event) try {
    WriteScope scope(connection_);
    auto insert = connection_.prepare(
        "INSERT INTO device_events (device_id, at, kind, version, status, detail) VALUES (?, ?, ?, ?, ?, ?)");
    insert->bind(1, event.device_id);
    insert->bind(2, event.at);
    bind_text(*insert, 3, to_string(event.kind));
    bind_optional(*insert, 4, event.version);
    bind_optional(*insert, 5, event.status);
    insert->bind(6, event.detail_json.empty() ? std::string("{}") : event.detail_json);
    insert->exec();
    std::int64_t id = connection_.last_insert_rowid();
    scope.commit();
    return id;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "record event of device '" + event.device_id + "'");
}

std::vector<DeviceEvent> DeviceRepository::history(std::string_view device_id, std::size_t limit,
                                                   std::optional<std::int64_t> before_id) try {
    auto query = connection_.prepare(
        "SELECT id, device_id, at, kind, version, status, detail FROM device_events"
        " WHERE device_id = ? AND id < ? ORDER BY id DESC LIMIT ?");
    bind_text(*query, 1, device_id);
    query->bind(2, before_id.value_or(std::numeric_limits<std::int64_t>::max()));
    query->bind(3, detail::clamp_limit(limit));
    std::vector<DeviceEvent> events;
    while (query->executeStep()) {
        DeviceEvent event;
        event.id = query->getColumn(0).getInt64();
        event.device_id = query->getColumn(1).getString();
        event.at = query->getColumn(2).getInt64();
        // The schema's CHECK keeps kind to the known values.
        event.kind = parse_device_event_kind(query->getColumn(3).getString()).value_or(DeviceEventKind::report);
        event.version = detail::optional_text(query->getColumn(4));
        event.status = detail::optional_text(query->getColumn(5));
        event.detail_json = query->getColumn(6).getString();
        events.push_back(std::move(event));
    }
    return events;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "read history of device '" + std::string(device_id) + "'");
}

std::int64_t DeviceRepository::prune_events(std::int64_t before) try {
    WriteScope scope(connection_, Durability::normal);
    auto remove = connection_.prepare("DELETE FROM device_events WHERE at < ?");
    remove->bind(1, before);
    std::int64_t removed = remove->exec();
    scope.commit();
    return removed;
} catch (const SQLite::Exception& e) {
    detail::throw_storage_error(e, "prune device events");
}

}  // namespace otad::storage
