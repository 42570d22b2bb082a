#pragma once
// What handlers reach: settings and the domain/storage objects, owned by the
// caller (cli's serve) and alive for as long as the router is used.

#include <filesystem>

#include "otad/config/config.hpp"

namespace otad::storage {
class Database;
class BlobStore;
}  // namespace otad::storage

namespace otad::domain {
class Catalogue;
class BlobCache;
class UrlSigner;
class DeviceUpdates;
class DeviceRegistry;
class DeviceKeys;
class SigningKeyRing;
class TokenUsage;
class Rollouts;
}  // namespace otad::domain

namespace otad::api {

struct Services {
    const config::Config& config;
    storage::Database& database;
    storage::BlobStore& blobs;
    domain::Catalogue& catalogue;         // firmware catalogue (operator API)
    domain::BlobCache& blob_cache;        // downloads: mapped blobs and lookups; invalidate on delete
    const domain::UrlSigner& url_signer;  // pre-signed /api/v1/blobs/<sha256> URLs
    // Device API (device_routes.cpp, docs/device-api.md). Null where not served (tests);
    // require_device_access falls back to uncached lookups without device_keys.
    domain::DeviceUpdates* device_updates = nullptr;    // poll decisions, signed manifests
    domain::DeviceRegistry* device_registry = nullptr;  // batched sightings, reports
    domain::DeviceKeys* device_keys = nullptr;          // per-product device keys (cached checks)
    domain::SigningKeyRing* signing_keys = nullptr;     // manifest signing keys, GET /api/v1/keys
    // Batched "last used" of operator tokens (require_operator records each use); null: not recorded.
    domain::TokenUsage* token_usage = nullptr;
    domain::Rollouts* rollouts = nullptr;  // staged rollouts, tags, pins (docs/rollouts.md)
};

}  // namespace otad::api
