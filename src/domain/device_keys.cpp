#include "otad/domain/device_keys.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "otad/domain/change_watch.hpp"
#include "otad/storage/audit_repository.hpp"
#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/database.hpp"
#include "otad/storage/device_key_repository.hpp"
#include "otad/storage/error.hpp"
#include "otad/util/crypto.hpp"

namespace otad::domain {
namespace {

// Bounds the per-secret memory a stream of made-up keys could fill.
constexpr std::size_t kMaxRememberedSecrets = 65536;

DeviceKeyInfo info_of(const storage::DeviceKey& key) {
    return DeviceKeyInfo{key.id, key.name, key.created_at, key.revoked_at};
}

std::string subject(std::string_view product, std::string_view key) {
    return "product/" + std::string(product) + "/device-key/" + std::string(key);
}

}  // namespace

struct DeviceKeys::Cache {
    std::int64_t generation = -1;
    std::mutex mutex;
    std::unordered_map<std::int64_t, bool> requires_key;
    // SHA-256 hex of a presented secret -> the active key it is, or nullopt (unknown).
    std::unordered_map<std::string, std::optional<KnownSecret>> secrets;
};

bool is_valid_device_key_name(std::string_view name) noexcept {
    if (name.empty() || name.size() > 64) return false;
    for (char c : name) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-';
        if (!ok) return false;
    }
    return true;
}

namespace {

constexpr std::size_t kMaxRegularRun = 8;    // characters that repeat or step evenly
constexpr std::size_t kMaxRepeatedPart = 8;  // characters that appear twice
constexpr double kMinEstimatedBits = 64.0;

// The longest stretch whose characters step by the same amount (0: repeat).
std::size_t longest_even_run(std::string_view s) {
    if (s.size() < 2) return s.size();
    std::size_t best = 2, run = 2;
    for (std::size_t i = 2; i < s.size(); ++i) {
        bool even = s[i] - s[i - 1] == s[i - 1] - s[i - 2];
        run = even ? run + 1 : 2;
        best = std::max(best, run);
    }
    return best;
}

// Whether some substring of `length` characters occurs twice (overlaps count).
bool has_repeated_part(std::string_view s, std::size_t length) {
    if (s.size() <= length) return false;
    std::unordered_set<std::string_view> seen;
    for (std::size_t i = 0; i + length <= s.size(); ++i)
        if (!seen.insert(s.substr(i, length)).second) return true;
    return false;
}

double estimated_bits(std::string_view s) {
    std::array<std::size_t, 128> counts{};
    for (char c : s) ++counts[static_cast<unsigned char>(c) & 0x7f];
    double bits = 0;
    const double n = static_cast<double>(s.size());
    for (std::size_t count : counts)
        if (count > 0) bits -= static_cast<double>(count) * std::log2(static_cast<double>(count) / n);
    return bits;
}

}  // namespace

std::optional<std::string> weak_device_key_reason(std::string_view secret) {
    if (secret.size() < kMinSuppliedKeyLength || secret.size() > kMaxSuppliedKeyLength)
        return "a supplied device key must be " + std::to_string(kMinSuppliedKeyLength) + ".." +
               std::to_string(kMaxSuppliedKeyLength) + " characters long (this one has " +
               std::to_string(secret.size()) + "); omit \"key\" to let otad generate one";
    for (char c : secret)
        if (c <= 0x20 || c >= 0x7f) return std::string("a supplied device key must be printable ASCII without spaces");
    if (longest_even_run(secret) >= kMaxRegularRun)
        return "the supplied device key has " + std::to_string(kMaxRegularRun) +
               " or more characters in a row that repeat or count up or down; use a random key";
    if (has_repeated_part(secret, kMaxRepeatedPart))
        return "the supplied device key repeats a part of " + std::to_string(kMaxRepeatedPart) +
               " or more characters; use a random key";
    if (estimated_bits(secret) < kMinEstimatedBits)
        return std::string("the supplied device key uses too few different characters to be a random key");
    return std::nullopt;
}

DeviceKeys::DeviceKeys(storage::Database& database, ChangeWatch* watch) : database_(database), watch_(watch) {}
DeviceKeys::~DeviceKeys() = default;

CreatedDeviceKeyInfo DeviceKeys::create(std::int64_t product_id, std::string_view product_name,
                                        std::string_view key_name, std::optional<std::string_view> secret,
                                        std::string_view actor) {
    if (!is_valid_device_key_name(key_name))
        throw DeviceKeyError(DeviceKeyError::Kind::invalid, "device key name '" + std::string(key_name) +
                                                                "' is not valid: use 1..64 of A-Z a-z 0-9 . _ -");
    if (secret)
        if (auto weak = weak_device_key_reason(*secret)) throw DeviceKeyError(DeviceKeyError::Kind::weak_secret, *weak);
    const auto name_taken = [&] {
        return DeviceKeyError(DeviceKeyError::Kind::conflict, "product '" + std::string(product_name) +
                                                                  "' already has an active key named '" +
                                                                  std::string(key_name) + "'");
    };
    CreatedDeviceKeyInfo created;
    bool name_in_use = false;
    try {
        database_.write([&](storage::Connection& c) {
            storage::DeviceKeyRepository keys(c);
            // The name first, in the same transaction: a conflict after this check
            // is the secret's, and that one is answered without naming its cause.
            for (const auto& k : keys.list(product_id, /*include_revoked=*/false))
                if (k.name == key_name) {
                    name_in_use = true;
                    throw name_taken();
                }
            if (secret) {
                created.key = info_of(keys.create_with_secret(product_id, key_name, *secret));
                created.secret = std::string(*secret);
            } else {
                auto made = keys.create(product_id, key_name);
                created.key = info_of(made.record);
                created.secret = std::move(made.secret);
            }
            nlohmann::json detail = {{"name", key_name}, {"supplied_secret", secret.has_value()}};
            storage::AuditRepository(c).append(actor, "device_key.create", subject(product_name, key_name),
                                               detail.dump());
        });
    } catch (const storage::StorageError& e) {
        if (e.kind() != storage::StorageErrorKind::conflict) throw;
        if (!secret || name_in_use) throw name_taken();
        // Whose key it is, or whether it is a key at all, is not said: the same
        // answer for every reason a supplied secret is unusable.
        throw DeviceKeyError(DeviceKeyError::Kind::conflict,
                             "the supplied device key cannot be used; supply another random key, or omit \"key\" to "
                             "let otad generate one");
    }
    invalidate();
    return created;
}

std::vector<DeviceKeyInfo> DeviceKeys::list(std::int64_t product_id) {
    auto rows =
        database_.read([&](storage::Connection& c) { return storage::DeviceKeyRepository(c).list(product_id); });
    std::vector<DeviceKeyInfo> out;
    out.reserve(rows.size());
    for (const auto& r : rows) out.push_back(info_of(r));
    return out;
}

void DeviceKeys::revoke(std::int64_t product_id, std::string_view product_name, std::string_view key_name,
                        std::string_view actor) {
    bool revoked = database_.write([&](storage::Connection& c) {
        if (!storage::DeviceKeyRepository(c).revoke(product_id, key_name)) return false;
        storage::AuditRepository(c).append(actor, "device_key.revoke", subject(product_name, key_name),
                                           nlohmann::json{{"name", key_name}}.dump());
        return true;
    });
    if (!revoked)
        throw DeviceKeyError(DeviceKeyError::Kind::not_found, "product '" + std::string(product_name) +
                                                                  "' has no active device key named '" +
                                                                  std::string(key_name) + "'");
    invalidate();
}

void DeviceKeys::invalidate() {
    if (watch_) watch_->touch();
    std::lock_guard lock(mutex_);
    cache_.reset();
}

std::shared_ptr<DeviceKeys::Cache> DeviceKeys::fresh_cache() {
    const std::int64_t generation = watch_ ? watch_->generation() : 0;
    std::lock_guard lock(mutex_);
    if (!cache_ || cache_->generation != generation) {
        auto fresh = std::make_shared<Cache>();
        fresh->generation = generation;
        cache_ = std::move(fresh);
    }
    return cache_;
}

bool DeviceKeys::product_requires_key(std::int64_t product_id) {
    auto cache = fresh_cache();
    {
        std::lock_guard lock(cache->mutex);
        if (auto it = cache->requires_key.find(product_id); it != cache->requires_key.end()) return it->second;
    }
    bool has_keys = database_.read([&](storage::Connection& c) {
        return !storage::DeviceKeyRepository(c).list(product_id, /*include_revoked=*/false).empty();
    });
    std::lock_guard lock(cache->mutex);
    cache->requires_key[product_id] = has_keys;
    return has_keys;
}

std::optional<DeviceKeys::KnownSecret> DeviceKeys::known_secret(std::string_view secret) {
    auto cache = fresh_cache();
    const std::string digest = util::sha256_hex(secret);
    {
        std::lock_guard lock(cache->mutex);
        if (auto it = cache->secrets.find(digest); it != cache->secrets.end()) return it->second;
    }
    std::optional<KnownSecret> known;
    auto found =
        database_.read([&](storage::Connection& c) { return storage::DeviceKeyRepository(c).find_by_secret(secret); });
    if (found && found->active()) known = KnownSecret{found->product_id, found->name};
    std::lock_guard lock(cache->mutex);
    if (cache->secrets.size() >= kMaxRememberedSecrets) cache->secrets.clear();
    cache->secrets.emplace(digest, known);
    return known;
}

bool DeviceKeys::may_learn_unknown_device(std::string_view secret) {
    if (!secret.empty() && known_secret(secret)) return true;
    return !database_.read([](storage::Connection& c) { return storage::DeviceKeyRepository(c).any_active(); });
}

std::vector<std::string> DeviceKeys::open_products() {
    auto products =
        database_.read([](storage::Connection& c) { return storage::CatalogueRepository(c).list_products(); });
    std::vector<std::string> open;
    for (const auto& p : products)
        if (!product_requires_key(p.id)) open.push_back(p.name);
    return open;
}

DeviceAccessDecision DeviceKeys::check(std::int64_t product_id, std::string_view secret) {
    if (!product_requires_key(product_id)) return {DeviceAccess::open, {}};
    if (secret.empty()) return {DeviceAccess::denied, {}};
    auto known = known_secret(secret);
    if (known && known->product_id == product_id) return {DeviceAccess::granted, known->name};
    return {DeviceAccess::denied, {}};
}

}  // namespace otad::domain
