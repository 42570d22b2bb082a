#pragma once
// The device poll: which image (if any) a device should install, described by a
// signed manifest.
//
//   channel -> release -> candidate artifacts -> decide_update() -> manifest
//
// Manifest: a compact JSON object, keys in this order:
//   {"product","version","chip","layout","slot" (the TARGET slot, "" for single),
//    "size","sha256","md5","url" (absolute, pre-signed, valid without other
//    credentials),"app" (the image's esp_app_desc_t: project_name, version,
//    idf_ver, secure_version, date, time, app_elf_sha256; only when the image has
//    one),"poll_interval_s"}
// signed over its exact bytes by the key ring's signer; the signature travels in
// the X-Otad-Signature header (format_signature_header).
//
// Costs and caching (the poll path must stay cheap):
//  * Catalogue lookups (product name, channel, release, artifacts) are cached per
//    (product, channel) and dropped when the ChangeWatch generation moves, i.e.
//    after any operator change, from this process or another.
//  * Signing is the expensive step (ECDSA P-256 ~ 30 us). A manifest is built and
//    signed once per (artifact, target slot, URL expiry window, poll-interval
//    bucket, base URL, signing key) and cached; the URL's expiry is rounded up to
//    a window (UrlSigner), so all polls within a window share the bytes.
//  * poll_interval_s carries server-side jitter in [poll_interval_s,
//    poll_interval_s + poll_jitter_s], quantised to kPollIntervalBuckets evenly
//    spaced values so that the jittered bodies stay cacheable (at most 64
//    signatures per artifact and window). A 204 has no body; its jitter is exact
//    and travels in the X-Otad-Poll-Interval header (sent with 200s too).
//  * The first time a release is offered it is marked offered (its artifacts are
//    frozen from then on) in a committed transaction, before the URL leaves the
//    server, and audited as release.offered by "system".
//
// Thread-safe.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "otad/domain/slot_selection.hpp"

namespace otad::storage {
class Database;
}

namespace otad::domain {

class ChangeWatch;
class DeviceRegistry;
class SigningKeyRing;
class UrlSigner;

inline constexpr int kPollIntervalBuckets = 64;
inline constexpr std::string_view kPollIntervalHeader = "X-Otad-Poll-Interval";

// Why a poll cannot be answered with a manifest or "no update".
class DeviceUpdateError : public std::runtime_error {
public:
    enum class Kind {
        bad_request,  // 400: a parameter contradicts the catalogue rules (e.g. slot for the layout)
        not_found,    // 404: unknown product or channel
        unavailable,  // 503: no active signing key
    };
    DeviceUpdateError(Kind kind, std::string code, const std::string& detail,
                      nlohmann::json extra = nlohmann::json::object())
        : std::runtime_error(detail), kind_(kind), code_(std::move(code)), extra_(std::move(extra)) {}
    Kind kind() const noexcept { return kind_; }
    const std::string& code() const noexcept { return code_; }
    const nlohmann::json& extra() const noexcept { return extra_; }

private:
    Kind kind_;
    std::string code_;
    nlohmann::json extra_;
};

struct DeviceUpdatesOptions {
    std::string public_url;  // "https://ota.example.com"; "" = PollRequest::base_url
    std::uint64_t poll_interval_s = 3600;
    std::uint64_t poll_jitter_s = 300;
    std::size_t max_cached_manifests = 16384;  // cleared past it
    std::size_t max_cached_lookups = 4096;     // product names and channels; cleared past it
};

struct PollRequest {
    std::string product;
    std::int64_t product_id = 0;  // from product_id(product)
    std::string channel = "stable";
    DeviceState device;
    std::string device_id;
    std::string base_url;        // "scheme://host[:port]" of the request, for an empty public_url
    std::string remote_address;  // recorded with the sighting
};

struct SignedManifest {
    std::string body;              // the exact bytes that were signed
    std::string signature_header;  // X-Otad-Signature value
    std::string key_id;
    std::string version;
    std::int64_t artifact_id = 0;
    std::string target_slot;
    std::uint64_t poll_interval_s = 0;
    std::int64_t url_expires = 0;  // unix seconds
};

struct PollOutcome {
    std::shared_ptr<const SignedManifest> manifest;  // set: an update (200)
    std::optional<NoUpdate> no_update;               // set: nothing to install (204)
    std::uint64_t poll_interval_s = 0;               // for X-Otad-Poll-Interval
};

// Rollouts and pins (docs/rollouts.md): the release a device is answered with
// when it is not simply its channel's. Implemented by domain::Rollouts.
struct ReleaseChoice {
    std::int64_t release_id = 0;         // a release of the poll's product
    std::optional<bool> allow_rollback;  // nullopt: the channel's setting
};

class ReleaseResolver {
public:
    virtual ~ReleaseResolver() = default;
    // nullopt: answer with the channel's release. Called on every poll that found
    // its channel: must be cheap (cached; the database only after a change).
    virtual std::optional<ReleaseChoice> resolve(const PollRequest& request, std::int64_t channel_release_id,
                                                 bool channel_allows_rollback) = 0;
};

struct DeviceUpdatesStats {
    std::uint64_t polls = 0;
    std::uint64_t manifests_signed = 0;
    std::uint64_t manifest_cache_hits = 0;
    std::uint64_t catalogue_loads = 0;
};

class DeviceUpdates {
public:
    using Clock = std::function<std::int64_t()>;    // unix seconds
    using Random = std::function<std::uint64_t()>;  // uniform 64-bit values
    // `registry` and `watch` may be null (no sightings recorded; caches only
    // dropped by invalidate()). Every reference must outlive this object.
    DeviceUpdates(storage::Database& database, SigningKeyRing& keys, const UrlSigner& urls, DeviceRegistry* registry,
                  ChangeWatch* watch, DeviceUpdatesOptions options, Clock clock = {}, Random random = {});
    ~DeviceUpdates();
    DeviceUpdates(const DeviceUpdates&) = delete;
    DeviceUpdates& operator=(const DeviceUpdates&) = delete;

    // The id of the product with this name (cached), or nullopt.
    std::optional<std::int64_t> product_id(std::string_view product);

    // Answers a poll (the caller has authenticated the device for product_id).
    // Throws DeviceUpdateError; storage::StorageError when the database fails.
    PollOutcome poll(const PollRequest& request);

    // Rollouts and pins (issue 11): consulted after the channel is found. Set before
    // serving; `resolver` must outlive this object.
    void set_release_resolver(ReleaseResolver* resolver) noexcept { resolver_ = resolver; }

    // Drops the cached catalogue lookups and manifests.
    void invalidate();
    DeviceUpdatesStats stats() const;
    const DeviceUpdatesOptions& options() const noexcept { return options_; }

    // The jittered interval for bucket k of kPollIntervalBuckets (exposed for tests).
    static std::uint64_t bucket_interval(std::uint64_t base, std::uint64_t jitter, int bucket) noexcept;

private:
    struct ChannelSnapshot;
    struct State;
    std::shared_ptr<const ChannelSnapshot> snapshot(std::int64_t product_id, std::string_view product,
                                                    std::string_view channel);
    std::shared_ptr<const ChannelSnapshot> load_snapshot(std::int64_t product_id, std::string_view product,
                                                         std::string_view channel,
                                                         const std::optional<ReleaseChoice>& choice = std::nullopt);
    std::shared_ptr<const ChannelSnapshot> chosen_snapshot(std::shared_ptr<const ChannelSnapshot> channel,
                                                           const ReleaseChoice& choice);
    std::shared_ptr<const SignedManifest> manifest_for(const ChannelSnapshot& snap, std::size_t artifact_index,
                                                       const std::string& target_slot, const std::string& base_url,
                                                       std::uint64_t interval, std::int64_t now);
    bool mark_offered(const ChannelSnapshot& snap, std::int64_t artifact_id, const PollRequest& request);
    void warn_missing_artifact(const PollRequest& request, const ChannelSnapshot& snap, const NoUpdate& no_update);
    std::int64_t now() const;
    std::uint64_t random() const;
    std::int64_t generation();

    storage::Database& database_;
    SigningKeyRing& keys_;
    const UrlSigner& urls_;
    DeviceRegistry* registry_;
    ChangeWatch* watch_;
    ReleaseResolver* resolver_ = nullptr;
    DeviceUpdatesOptions options_;
    Clock clock_;
    Random random_;
    std::unique_ptr<State> state_;
};

}  // namespace otad::domain
