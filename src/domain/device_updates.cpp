#include "otad/domain/device_updates.hpp"

#include <atomic>
#include <random>
#include <tuple>

#include "otad/domain/change_watch.hpp"
#include "otad/domain/device_registry.hpp"
#include "otad/domain/signing_keys.hpp"
#include "otad/domain/url_signer.hpp"
#include "otad/storage/audit_repository.hpp"
#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/database.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"

namespace otad::domain {
namespace {

constexpr std::int64_t kMissingArtifactWarnEvery = 60;  // seconds, per (release, chip, layout, slot)

// The esp_app_desc_t fields a device may want before downloading.
nlohmann::ordered_json app_of(const nlohmann::json& metadata) {
    auto it = metadata.find("app_desc");
    if (it == metadata.end() || !it->is_object()) return nullptr;
    nlohmann::ordered_json app;
    for (const char* key : {"project_name", "version", "idf_ver", "secure_version", "date", "time", "app_elf_sha256"})
        if (auto field = it->find(key); field != it->end()) app[key] = *field;
    return app;
}

// esp_app_desc_t.version as inspected at upload; "" when the image has none.
std::string app_version_of(const nlohmann::json& metadata) {
    auto it = metadata.find("app_desc");
    if (it == metadata.end() || !it->is_object()) return {};
    auto version = it->find("version");
    return version != it->end() && version->is_string() ? version->get<std::string>() : std::string();
}

std::optional<std::uint32_t> secure_version_of(const nlohmann::json& metadata) {
    auto it = metadata.find("app_desc");
    if (it == metadata.end() || !it->is_object()) return std::nullopt;
    auto sv = it->find("secure_version");
    if (sv == it->end() || !sv->is_number_unsigned()) return std::nullopt;
    auto value = sv->get<std::uint64_t>();
    if (value > UINT32_MAX) return std::nullopt;
    return static_cast<std::uint32_t>(value);
}

// "1.2.3.4:5678" -> "1.2.3.4"; "[::1]:80" -> "::1".
std::string address_without_port(std::string_view address) {
    if (!address.empty() && address.front() == '[') {
        auto close = address.find(']');
        return std::string(address.substr(1, close == std::string_view::npos ? address.size() - 1 : close - 1));
    }
    auto colon = address.rfind(':');
    if (colon != std::string_view::npos && address.find(':') == colon) return std::string(address.substr(0, colon));
    return std::string(address);
}

std::string strip_trailing_slashes(std::string url) {
    while (!url.empty() && url.back() == '/') url.pop_back();
    return url;
}

std::uint64_t default_random() {
    thread_local std::mt19937_64 engine{std::random_device{}()};
    return engine();
}

}  // namespace

struct DeviceUpdates::ChannelSnapshot {
    std::int64_t product_id = 0;
    std::string product;
    std::string channel;
    bool found = false;                      // the channel exists
    std::vector<std::string> channel_names;  // when !found: what exists
    storage::Release release;
    bool allow_rollback = false;
    std::vector<storage::Artifact> artifacts;
    std::vector<CandidateArtifact> candidates;  // parallel to artifacts (unparseable rows skipped)
    std::vector<std::size_t> candidate_rows;    // candidates[i] is artifacts[candidate_rows[i]]
    std::vector<nlohmann::ordered_json> apps;   // parallel to artifacts; null when unknown
    mutable std::atomic<bool> offered{false};
    // Rollouts and pins: this channel answered with another release (release id,
    // allow_rollback), built on first use and dropped with this snapshot.
    mutable std::mutex chosen_mutex;
    mutable std::vector<std::tuple<std::int64_t, bool, std::shared_ptr<const ChannelSnapshot>>> chosen;
};

struct DeviceUpdates::State {
    std::mutex lookup_mutex;
    std::int64_t lookup_generation = -1;
    std::unordered_map<std::string, std::optional<std::int64_t>> products;
    std::unordered_map<std::string, std::shared_ptr<const ChannelSnapshot>> channels;  // "<product id>/<channel>"

    std::shared_mutex manifest_mutex;
    std::int64_t manifest_expires = 0;
    std::unordered_map<std::string, std::shared_ptr<const SignedManifest>> manifests;

    std::mutex warn_mutex;
    std::unordered_map<std::string, std::int64_t> warned_at;

    std::atomic<std::uint64_t> polls{0};
    std::atomic<std::uint64_t> manifests_signed{0};
    std::atomic<std::uint64_t> manifest_cache_hits{0};
    std::atomic<std::uint64_t> catalogue_loads{0};
};

DeviceUpdates::DeviceUpdates(storage::Database& database, SigningKeyRing& keys, const UrlSigner& urls,
                             DeviceRegistry* registry, ChangeWatch* watch, DeviceUpdatesOptions options, Clock clock,
                             Random random)
    : database_(database),
      keys_(keys),
      urls_(urls),
      registry_(registry),
      watch_(watch),
      options_(std::move(options)),
      clock_(std::move(clock)),
      random_(std::move(random)),
      state_(std::make_unique<State>()) {
    options_.public_url = strip_trailing_slashes(options_.public_url);
}

DeviceUpdates::~DeviceUpdates() = default;

std::int64_t DeviceUpdates::now() const { return clock_ ? clock_() : util::unix_now(); }
std::uint64_t DeviceUpdates::random() const { return random_ ? random_() : default_random(); }
std::int64_t DeviceUpdates::generation() { return watch_ ? watch_->generation() : 0; }

std::uint64_t DeviceUpdates::bucket_interval(std::uint64_t base, std::uint64_t jitter, int bucket) noexcept {
    if (jitter == 0 || kPollIntervalBuckets < 2) return base;
    const auto k = static_cast<std::uint64_t>(std::clamp(bucket, 0, kPollIntervalBuckets - 1));
    return base + (jitter * k) / static_cast<std::uint64_t>(kPollIntervalBuckets - 1);
}

void DeviceUpdates::invalidate() {
    {
        std::lock_guard lock(state_->lookup_mutex);
        state_->products.clear();
        state_->channels.clear();
    }
    std::unique_lock lock(state_->manifest_mutex);
    state_->manifests.clear();
}

DeviceUpdatesStats DeviceUpdates::stats() const {
    return {state_->polls.load(), state_->manifests_signed.load(), state_->manifest_cache_hits.load(),
            state_->catalogue_loads.load()};
}

std::optional<std::int64_t> DeviceUpdates::product_id(std::string_view product) {
    const std::int64_t gen = generation();
    const std::string key(product);
    {
        std::lock_guard lock(state_->lookup_mutex);
        if (state_->lookup_generation != gen) {
            state_->products.clear();
            state_->channels.clear();
            state_->lookup_generation = gen;
        }
        if (auto it = state_->products.find(key); it != state_->products.end()) return it->second;
    }
    auto found =
        database_.read([&](storage::Connection& c) { return storage::CatalogueRepository(c).find_product(product); });
    std::optional<std::int64_t> id;
    if (found) id = found->id;
    std::lock_guard lock(state_->lookup_mutex);
    if (state_->lookup_generation == gen) {
        if (state_->products.size() >= options_.max_cached_lookups) state_->products.clear();
        state_->products.emplace(key, id);
    }
    return id;
}

std::shared_ptr<const DeviceUpdates::ChannelSnapshot> DeviceUpdates::snapshot(std::int64_t product_id,
                                                                              std::string_view product,
                                                                              std::string_view channel) {
    const std::int64_t gen = generation();
    const std::string key = std::to_string(product_id) + "/" + std::string(channel);
    {
        std::lock_guard lock(state_->lookup_mutex);
        if (state_->lookup_generation != gen) {
            state_->products.clear();
            state_->channels.clear();
            state_->lookup_generation = gen;
        }
        if (auto it = state_->channels.find(key); it != state_->channels.end()) return it->second;
    }
    auto snap = load_snapshot(product_id, product, channel);
    std::lock_guard lock(state_->lookup_mutex);
    if (state_->lookup_generation == gen) {
        if (state_->channels.size() >= options_.max_cached_lookups) state_->channels.clear();
        state_->channels.emplace(key, snap);
    }
    return snap;
}

// Rollouts and pins: the channel's snapshot with another release of the product,
// kept inside the channel's own (same lifetime: dropped when the generation moves).
std::shared_ptr<const DeviceUpdates::ChannelSnapshot> DeviceUpdates::chosen_snapshot(
    std::shared_ptr<const ChannelSnapshot> channel_snapshot, const ReleaseChoice& choice) {
    constexpr std::size_t kMaxChosen = 64;  // distinct releases answered per channel (target, pins)
    const ChannelSnapshot& channel = *channel_snapshot;
    const bool rollback = choice.allow_rollback.value_or(channel.allow_rollback);
    if (choice.release_id == channel.release.id && rollback == channel.allow_rollback) return channel_snapshot;
    {
        std::lock_guard lock(channel.chosen_mutex);
        for (const auto& [release_id, allow_rollback, snap] : channel.chosen)
            if (release_id == choice.release_id && allow_rollback == rollback) return snap;
    }
    auto snap =
        load_snapshot(channel.product_id, channel.product, channel.channel, ReleaseChoice{choice.release_id, rollback});
    if (!snap->found) return channel_snapshot;  // the release went away meanwhile
    std::lock_guard lock(channel.chosen_mutex);
    if (channel.chosen.size() < kMaxChosen) channel.chosen.emplace_back(choice.release_id, rollback, snap);
    return snap;
}

std::shared_ptr<const DeviceUpdates::ChannelSnapshot> DeviceUpdates::load_snapshot(
    std::int64_t product_id, std::string_view product, std::string_view channel,
    const std::optional<ReleaseChoice>& choice) {
    ++state_->catalogue_loads;
    auto snap = std::make_shared<ChannelSnapshot>();
    snap->product_id = product_id;
    snap->product = std::string(product);
    snap->channel = std::string(channel);
    database_.read([&](storage::Connection& c) {
        storage::CatalogueRepository catalogue(c);
        auto row = catalogue.get_channel(product_id, channel);
        if (!row) {
            for (const auto& ch : catalogue.list_channels(product_id)) snap->channel_names.push_back(ch.name);
            return;
        }
        auto release = catalogue.get_release(choice ? choice->release_id : row->release_id);
        if (!release || release->product_id != product_id) return;  // the schema forbids it for a channel (RESTRICT)
        snap->found = true;
        snap->allow_rollback = choice && choice->allow_rollback ? *choice->allow_rollback : row->allow_rollback;
        snap->release = std::move(*release);
        snap->offered.store(snap->release.offered);
        snap->artifacts = catalogue.list_artifacts(snap->release.id);
    });
    snap->apps.resize(snap->artifacts.size());
    for (std::size_t i = 0; i < snap->artifacts.size(); ++i) {
        const auto& a = snap->artifacts[i];
        auto chip = parse_chip(a.chip);
        auto layout = a.layout.empty() ? std::optional<Layout>(Layout::single) : parse_layout(a.layout);
        if (!chip || !layout) continue;  // written by a newer otad: not ours to offer
        nlohmann::json metadata = nlohmann::json::parse(a.metadata_json, nullptr, /*allow_exceptions=*/false);
        if (metadata.is_discarded()) metadata = nlohmann::json::object();
        snap->candidates.push_back(
            CandidateArtifact{a.id, *chip, *layout, a.slot, secure_version_of(metadata), app_version_of(metadata)});
        snap->candidate_rows.push_back(i);
        snap->apps[i] = app_of(metadata);
    }
    return snap;
}

PollOutcome DeviceUpdates::poll(const PollRequest& request) {
    ++state_->polls;
    const std::int64_t t = now();
    std::shared_ptr<const ChannelSnapshot> snap;
    std::optional<Offer> offer;
    // A release is marked offered before its URL leaves; if its artifact vanished
    // meanwhile (deleted before the mark), decide again on fresh rows, once.
    for (int attempt = 0; attempt < 2; ++attempt) {
        snap = snapshot(request.product_id, request.product, request.channel);
        if (!snap->found) {
            std::string names;
            for (const auto& n : snap->channel_names) names += (names.empty() ? "" : ", ") + n;
            throw DeviceUpdateError(
                DeviceUpdateError::Kind::not_found, "channel-not-found",
                "product '" + request.product + "' has no channel '" + request.channel + "'" +
                    (names.empty() ? std::string("; it has no channels yet") : "; its channels: " + names),
                {{"channels", snap->channel_names}});
        }
        // --- rollouts and pins (issue 11, docs/rollouts.md): the release this device is
        // answered with when it is not simply the channel's (a rollout's target, a pin).
        if (resolver_)
            if (auto choice = resolver_->resolve(request, snap->release.id, snap->allow_rollback))
                snap = chosen_snapshot(snap, *choice);
        // --- end rollouts
        UpdateDecision decision = decide_update(
            request.device, ChannelRelease{snap->release.version, snap->allow_rollback}, snap->candidates);
        if (auto* bad = std::get_if<BadRequest>(&decision))
            throw DeviceUpdateError(DeviceUpdateError::Kind::bad_request, "invalid-parameter", bad->detail,
                                    {{"parameter", "slot"}});
        if (auto* none = std::get_if<NoUpdate>(&decision)) {
            if (none->reason == NoUpdateReason::missing_slot_artifact) warn_missing_artifact(request, *snap, *none);
            if (registry_) {
                registry_->record_poll(
                    {request.device_id, request.product_id, std::string(to_string(request.device.chip)),
                     std::string(to_string(request.device.layout)), request.device.running_slot, request.device.version,
                     request.channel,
                     request.device.secure_version ? std::optional<std::int64_t>(*request.device.secure_version)
                                                   : std::nullopt,
                     address_without_port(request.remote_address), t},
                    std::nullopt);
            }
            PollOutcome out;
            out.no_update = std::move(*none);
            out.poll_interval_s =
                options_.poll_interval_s + (options_.poll_jitter_s == 0 ? 0 : random() % (options_.poll_jitter_s + 1));
            return out;
        }
        offer = std::get<Offer>(decision);
        if (snap->offered.load() || mark_offered(*snap, offer->artifact_id, request)) break;
        invalidate();
        offer.reset();
    }
    if (!offer)
        throw DeviceUpdateError(DeviceUpdateError::Kind::unavailable, "catalogue-changing",
                                "the release changed while it was being offered; poll again");

    std::size_t row = 0;
    while (row < snap->artifacts.size() && snap->artifacts[row].id != offer->artifact_id) ++row;

    const int bucket = static_cast<int>(random() % static_cast<std::uint64_t>(kPollIntervalBuckets));
    const std::uint64_t interval = bucket_interval(options_.poll_interval_s, options_.poll_jitter_s, bucket);
    std::string base = !options_.public_url.empty() ? options_.public_url : strip_trailing_slashes(request.base_url);
    if (base.empty())
        throw DeviceUpdateError(DeviceUpdateError::Kind::bad_request, "missing-host",
                                "the request has no Host header, so no download URL can be built; send Host or "
                                "configure public_url");
    auto manifest = manifest_for(*snap, row, offer->target_slot, base, interval, t);

    if (registry_) {
        registry_->record_poll(
            {request.device_id, request.product_id, std::string(to_string(request.device.chip)),
             std::string(to_string(request.device.layout)), request.device.running_slot, request.device.version,
             request.channel,
             request.device.secure_version ? std::optional<std::int64_t>(*request.device.secure_version) : std::nullopt,
             address_without_port(request.remote_address), t},
            snap->release.version);
    }
    PollOutcome out;
    out.manifest = std::move(manifest);
    out.poll_interval_s = interval;
    return out;
}

bool DeviceUpdates::mark_offered(const ChannelSnapshot& snap, std::int64_t artifact_id, const PollRequest& request) {
    bool ok = database_.write([&](storage::Connection& c) {
        storage::CatalogueRepository catalogue(c);
        auto artifact = catalogue.get_artifact(artifact_id);
        if (!artifact || artifact->release_id != snap.release.id) return false;
        if (catalogue.mark_release_offered(snap.release.id)) {
            nlohmann::json detail = {{"device", request.device_id}, {"channel", request.channel}};
            storage::AuditRepository(c).append("system", "release.offered",
                                               "product/" + snap.product + "/release/" + snap.release.version,
                                               detail.dump());
        }
        return true;
    });
    if (!ok) return false;
    snap.offered.store(true);
    if (watch_) watch_->touch();
    util::log_event(*util::logger("updates"), spdlog::level::info, "release_offered",
                    {{"product", snap.product}, {"version", snap.release.version}, {"channel", snap.channel}});
    return true;
}

std::shared_ptr<const SignedManifest> DeviceUpdates::manifest_for(const ChannelSnapshot& snap, std::size_t row,
                                                                  const std::string& target_slot,
                                                                  const std::string& base_url, std::uint64_t interval,
                                                                  std::int64_t t) {
    auto signer = keys_.signer();
    if (!signer)
        throw DeviceUpdateError(DeviceUpdateError::Kind::unavailable, "no-signing-key",
                                "no active manifest signing key; create one with `otad keys create`");
    const storage::Artifact& artifact = snap.artifacts.at(row);
    const std::int64_t expires = urls_.expiry(t);
    std::string key = std::to_string(artifact.id);
    key.append("|").append(target_slot).append("|").append(std::to_string(expires)).append("|");
    key.append(std::to_string(interval)).append("|").append(signer->key_id()).append("|").append(base_url);
    {
        std::shared_lock lock(state_->manifest_mutex);
        if (state_->manifest_expires == expires) {
            if (auto it = state_->manifests.find(key); it != state_->manifests.end()) {
                ++state_->manifest_cache_hits;
                return it->second;
            }
        }
    }

    // Field order is part of the contract (docs/device-api.md).
    nlohmann::ordered_json body;
    body["product"] = snap.product;
    body["version"] = snap.release.version;
    body["chip"] = artifact.chip;
    body["layout"] = artifact.layout.empty() ? std::string(to_string(Layout::single)) : artifact.layout;
    body["slot"] = target_slot;
    body["size"] = artifact.size;
    body["sha256"] = artifact.sha256;
    body["md5"] = artifact.md5;
    body["url"] = base_url + urls_.signed_blob_path(artifact.sha256, t);
    if (!snap.apps.at(row).is_null()) body["app"] = snap.apps[row];
    body["poll_interval_s"] = interval;

    auto manifest = std::make_shared<SignedManifest>();
    manifest->body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    manifest->signature_header = signature_header_value(*signer, manifest->body);
    manifest->key_id = signer->key_id();
    manifest->version = snap.release.version;
    manifest->artifact_id = artifact.id;
    manifest->target_slot = target_slot;
    manifest->poll_interval_s = interval;
    manifest->url_expires = expires;
    ++state_->manifests_signed;

    std::unique_lock lock(state_->manifest_mutex);
    if (expires > state_->manifest_expires) {  // a new window: the old manifests' URLs are older
        state_->manifests.clear();
        state_->manifest_expires = expires;
    }
    if (expires == state_->manifest_expires) {
        if (state_->manifests.size() >= options_.max_cached_manifests) state_->manifests.clear();
        state_->manifests.emplace(std::move(key), manifest);
    }
    return manifest;
}

void DeviceUpdates::warn_missing_artifact(const PollRequest& request, const ChannelSnapshot& snap,
                                          const NoUpdate& no_update) {
    const std::int64_t t = now();
    const std::string key = std::to_string(snap.release.id) + "|" + std::string(to_string(request.device.chip)) + "|" +
                            std::string(to_string(request.device.layout)) + "|" + request.device.running_slot;
    {
        std::lock_guard lock(state_->warn_mutex);
        auto [it, inserted] = state_->warned_at.try_emplace(key, t);
        if (!inserted) {
            if (t - it->second < kMissingArtifactWarnEvery) return;
            it->second = t;
        }
        if (state_->warned_at.size() > 4096) state_->warned_at.clear();
    }
    util::log_event(*util::logger("updates"), spdlog::level::warn, "missing_slot_artifact",
                    {{"product", snap.product},
                     {"channel", snap.channel},
                     {"version", snap.release.version},
                     {"chip", std::string(to_string(request.device.chip))},
                     {"layout", std::string(to_string(request.device.layout))},
                     {"running_slot", request.device.running_slot},
                     {"device", request.device_id},
                     {"detail", no_update.detail}});
}

}  // namespace otad::domain
