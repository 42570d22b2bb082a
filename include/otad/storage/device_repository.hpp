#pragma once
// Devices as last seen, and their event history. The poll path batches sightings
// and writes them with upsert_many in one transaction. Standalone, upsert_many and
// prune_events commit with Durability::normal (last-seen data is replaceable: a
// power cut may lose the last batches, never corrupt); inside a caller's
// transaction they take its durability.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace otad::storage {

class Connection;

// What one poll tells about a device. Upserting refreshes every field here and
// keeps first_seen; last_seen never moves backwards.
struct DeviceSighting {
    std::string id;
    std::int64_t product_id = 0;
    std::string chip;
    std::string layout;
    std::string slot;
    std::string version;
    std::string channel;
    std::optional<std::int64_t> secure_version;
    std::string remote_address;
    std::int64_t seen_at = 0;
};

struct Device {
    std::string id;
    std::int64_t product_id = 0;
    std::string chip;
    std::string layout;
    std::string slot;
    std::string version;
    std::string channel;
    std::optional<std::int64_t> secure_version;
    std::string remote_address;
    std::int64_t first_seen = 0;
    std::int64_t last_seen = 0;
    std::optional<std::string> offered_version;
    std::optional<std::int64_t> offered_at;
    std::optional<std::string> last_status;
    std::optional<std::int64_t> last_status_at;
    std::optional<std::string> last_status_version;
};

enum class DeviceEventKind { first_seen, poll_offer, download, report, version_changed, rolled_back };
std::string_view to_string(DeviceEventKind kind) noexcept;
std::optional<DeviceEventKind> parse_device_event_kind(std::string_view text) noexcept;

struct NewDeviceEvent {
    std::string device_id;  // the device row must exist
    std::int64_t at = 0;
    DeviceEventKind kind = DeviceEventKind::report;
    std::optional<std::string> version;
    std::optional<std::string> status;
    std::string detail_json = "{}";
};

struct DeviceEvent {
    std::int64_t id = 0;
    std::string device_id;
    std::int64_t at = 0;
    DeviceEventKind kind = DeviceEventKind::report;
    std::optional<std::string> version;
    std::optional<std::string> status;
    std::string detail_json;
};

// Filters combine with AND; unset ones match everything. Ordered by device id;
// pass the last id of a page as after_id for the next page.
struct DeviceFilter {
    std::optional<std::int64_t> product_id;
    std::optional<std::string> version;
    std::optional<std::string> status;  // last_status
    std::optional<std::string> channel;
    std::optional<std::string> after_id;
    std::size_t limit = 100;  // clamped to 1..1000
};

class DeviceRepository {
public:
    explicit DeviceRepository(Connection& connection) : connection_(connection) {}

    // Inserts or updates every sighting, in one transaction (the caller's, or its own).
    // A sighting older than the stored last_seen changes nothing.
    void upsert_many(std::span<const DeviceSighting> sightings);
    std::optional<Device> get(std::string_view id);
    std::vector<Device> list(const DeviceFilter& filter);
    std::int64_t count(const DeviceFilter& filter);  // ignores after_id and limit

    // Records that `version` was offered to the device; false if the device is unknown.
    bool record_offer(std::string_view device_id, std::string_view version, std::int64_t at);
    // Records a status report (e.g. "success", "failed"); false if the device is unknown.
    bool record_status(std::string_view device_id, std::string_view status, std::string_view version, std::int64_t at);

    std::int64_t append_event(const NewDeviceEvent& event);
    // Newest first; events with id < before_id when given. limit clamped to 1..1000.
    std::vector<DeviceEvent> history(std::string_view device_id, std::size_t limit,
                                     std::optional<std::int64_t> before_id = std::nullopt);
    // Deletes events older than `before` (retention); returns how many.
    std::int64_t prune_events(std::int64_t before);

private:
    Connection& connection_;
};

}  // namespace otad::storage
