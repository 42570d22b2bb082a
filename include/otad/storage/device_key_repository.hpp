#pragma once
// Per-product device keys: shared secrets devices present to poll and download.
// Like operator tokens, only the SHA-256 (hex) of a secret is stored.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace otad::storage {

class Connection;

struct DeviceKey {
    std::int64_t id = 0;
    std::int64_t product_id = 0;
    std::string name;
    std::int64_t created_at = 0;
    std::optional<std::int64_t> revoked_at;
    bool active() const noexcept { return !revoked_at.has_value(); }
};

struct CreatedDeviceKey {
    DeviceKey record;
    std::string secret;  // shown once, never logged
};

class DeviceKeyRepository {
public:
    explicit DeviceKeyRepository(Connection& connection) : connection_(connection) {}

    // A new key with a fresh 32-byte random secret. conflict: an active key of the
    // product already has the name.
    CreatedDeviceKey create(std::int64_t product_id, std::string_view name);
    // Registers a secret already baked into a fleet. conflict: the secret is in use.
    DeviceKey create_with_secret(std::int64_t product_id, std::string_view name, std::string_view secret);
    std::vector<DeviceKey> list(std::int64_t product_id, bool include_revoked = true);  // oldest first
    bool revoke(std::int64_t product_id, std::string_view name);  // false if no active key has the name
    // Whether any product has an active key.
    bool any_active();
    // The active key whose secret this is (any product; the caller checks the product).
    std::optional<DeviceKey> find_by_secret(std::string_view secret);

private:
    Connection& connection_;
};

}  // namespace otad::storage
