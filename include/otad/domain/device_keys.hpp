#pragma once
// Per-product device keys: creation (the secret is returned once), listing,
// revocation, and the access check every device-facing request makes.
//
// Rule: a product with at least one active key requires one of its keys; a
// product without keys is open. A presented key of another product, a revoked
// key or an unknown one is refused.
//
// The check is on every poll, so it is answered from memory:
//  * per product, whether it has active keys;
//  * per presented secret, which key it is (looked up by the SHA-256 of the
//    secret, the way the database stores it; equal digests mean equal secrets,
//    so no secret is ever compared byte by byte with `==`). Unknown secrets are
//    remembered too (bounded), so a device with a wrong key cannot make every
//    request a database read.
// Both are dropped when this object creates or revokes a key, and rebuilt when
// the ChangeWatch generation moves (a change made by another process).
//
// Thread-safe.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace otad::storage {
class Database;
}

namespace otad::domain {

class ChangeWatch;

class DeviceKeyError : public std::runtime_error {
public:
    // weak_secret: a supplied secret too short or too regular to be a key (422).
    enum class Kind { invalid, weak_secret, conflict, not_found };
    DeviceKeyError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    Kind kind() const noexcept { return kind_; }

private:
    Kind kind_;
};

struct DeviceKeyInfo {
    std::int64_t id = 0;
    std::string name;
    std::int64_t created_at = 0;
    std::optional<std::int64_t> revoked_at;
    bool active() const noexcept { return !revoked_at.has_value(); }
};

struct CreatedDeviceKeyInfo {
    DeviceKeyInfo key;
    std::string secret;  // shown once; never logged
};

enum class DeviceAccess { open, granted, denied };

struct DeviceAccessDecision {
    DeviceAccess access = DeviceAccess::denied;
    std::string key_name;  // when granted
};

// Key names: 1..64 of [A-Za-z0-9._-]. Supplied secrets (a key already baked into
// a fleet): 32..256 printable ASCII characters without spaces that look random.
bool is_valid_device_key_name(std::string_view name) noexcept;
inline constexpr std::size_t kMinSuppliedKeyLength = 32;
inline constexpr std::size_t kMaxSuppliedKeyLength = 256;
// Why a supplied secret is refused, or nullopt when it is acceptable. A secret
// chosen by a person can be guessed, and a guessed one would let anyone poll as
// the fleet, so besides its length and characters it must look random: a run of
// 8 or more characters that repeat or step evenly ("aaaa...", "abcdefgh",
// "13579bdf") is refused, so is any 8 characters or more appearing twice
// ("fleetkey...fleetkey"), and so is a secret whose character frequencies carry
// less than 64 bits (Shannon estimate times length). Random hex or base64 keys
// of 32+ characters pass (a random 32-digit decimal key fails about once in
// 200 000, on a repeated part).
std::optional<std::string> weak_device_key_reason(std::string_view secret);

class DeviceKeys {
public:
    // `watch` may be null (then only changes made through this object are seen).
    DeviceKeys(storage::Database& database, ChangeWatch* watch = nullptr);
    ~DeviceKeys();
    DeviceKeys(const DeviceKeys&) = delete;
    DeviceKeys& operator=(const DeviceKeys&) = delete;

    // A new key for the product (random 32-byte secret unless `secret` is given).
    // Audited as device_key.create by `actor` with subject product/<name>/device-key/<key>.
    // Throws DeviceKeyError invalid (name or secret form), weak_secret (see
    // weak_device_key_reason), or conflict: an active key of the product has the
    // name, or the supplied secret cannot be used. The latter never says why (a
    // secret is refused the same way whichever product's key it is), so key
    // creation does not confirm another product's secret.
    CreatedDeviceKeyInfo create(std::int64_t product_id, std::string_view product_name, std::string_view key_name,
                                std::optional<std::string_view> secret, std::string_view actor);
    // Oldest first, revoked keys included.
    std::vector<DeviceKeyInfo> list(std::int64_t product_id);
    // Throws DeviceKeyError not_found when no active key has the name.
    void revoke(std::int64_t product_id, std::string_view product_name, std::string_view key_name,
                std::string_view actor);

    // The access decision for a request to `product_id` presenting `secret` ("" = none).
    DeviceAccessDecision check(std::int64_t product_id, std::string_view secret);
    // Whether the product has an active key (cached like check()).
    bool product_requires_key(std::int64_t product_id);
    // Whether a request presenting `secret` ("" = none) may be told that a
    // device id is unknown (404). Without a product to check the key against,
    // that answer would tell anyone which device ids exist: it is allowed only
    // when no product requires a key, or the secret is an active key of any
    // product. Otherwise the caller answers as for a missing or wrong key.
    bool may_learn_unknown_device(std::string_view secret);
    // Names of the products any device may poll (no active key), by name; logged at start-up.
    std::vector<std::string> open_products();

    // Drops every cached decision (also done by create/revoke).
    void invalidate();

private:
    struct Cache;
    std::shared_ptr<Cache> fresh_cache();
    struct KnownSecret {
        std::int64_t product_id = 0;
        std::string name;
    };
    // The active key whose secret this is, from the cache or the database; nullopt if none.
    std::optional<KnownSecret> known_secret(std::string_view secret);

    storage::Database& database_;
    ChangeWatch* watch_;
    std::mutex mutex_;
    std::shared_ptr<Cache> cache_;
};

}  // namespace otad::domain
