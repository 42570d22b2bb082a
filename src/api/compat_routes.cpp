// Compatibility front-ends: the update requests of device code otad cannot
// change, answered the way those clients expect (docs/compat.md has the verified
// client behaviour and the rules).
//
//   GET /api/v1/arduino/{product}[?channel=][&chip=]   ESP8266httpUpdate / HTTPUpdate
//   GET|HEAD /v1/device/rom/?action=download_rom&version=V&filename=user1.bin|user2.bin
//   GET /v1/device/rom/?is_format_simple=true         NONOS AT: "recommended_rom_version"
//   GET|HEAD /user1.bin, /user2.bin                    NONOS AT custom-server build
//
// Handlers parse and authenticate here; the decisions (which artifact, 304 or
// 403) are domain/compat. Images go out as FileSlices of the BlobCache's mapped
// blob with an exact Content-Length (net never chunks or compresses). NONOS
// images are answered by api::download_response, like every download route
// (Range, If-Range, validators, 304/412/416); the Arduino updater's 304 means
// "no update", so its answer stays its own.

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "otad/api/device_auth.hpp"
#include "otad/api/download_response.hpp"
#include "otad/api/problem.hpp"
#include "otad/api/routes.hpp"
#include "otad/domain/blob_cache.hpp"
#include "otad/domain/compat.hpp"
#include "otad/domain/device_registry.hpp"
#include "otad/domain/firmware_types.hpp"
#include "otad/domain/version.hpp"
#include "otad/storage/audit_repository.hpp"
#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/database.hpp"
#include "otad/storage/device_key_repository.hpp"
#include "otad/storage/device_repository.hpp"
#include "otad/storage/error.hpp"
#include "otad/util/crypto.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"

namespace otad::api {
namespace {

constexpr std::string_view kDefaultChannel = "stable";
constexpr std::string_view kOctetStream = "application/octet-stream";

spdlog::logger& compat_log() {
    static auto log = util::logger("compat");
    return *log;
}

// A channel's (or an explicitly named) release with its artifacts.
struct ReleaseView {
    storage::Release release;
    bool allow_rollback = false;
    std::string channel;  // "" when the release was named by version
    std::vector<storage::Artifact> artifacts;
};

storage::Product find_product_or_404(storage::CatalogueRepository& repo, std::string_view name) {
    auto product = repo.find_product(name);
    if (!product) throw ProblemError(404, "not-found", "no product named '" + std::string(name) + "'");
    return *product;
}

ReleaseView channel_release_or_404(storage::CatalogueRepository& repo, const storage::Product& product,
                                   std::string_view channel_name) {
    auto channel = repo.get_channel(product.id, channel_name);
    if (!channel)
        throw ProblemError(404, "not-found",
                           "product '" + product.name + "' has no channel '" + std::string(channel_name) + "'");
    auto release = repo.get_release(channel->release_id);
    if (!release) throw ProblemError(404, "not-found", "channel '" + std::string(channel_name) + "' has no release");
    return ReleaseView{*release, channel->allow_rollback, std::string(channel_name), repo.list_artifacts(release->id)};
}

// Exact version first, then an equivalent spelling ("v1.2" for "1.2").
ReleaseView named_release_or_404(storage::CatalogueRepository& repo, const storage::Product& product,
                                 std::string_view version) {
    auto release = repo.find_release(product.id, version);
    if (!release) {
        for (auto& r : repo.all_releases(product.id))
            if (domain::versions_equivalent(r.version, version)) release = r;
    }
    if (!release)
        throw ProblemError(404, "not-found",
                           "product '" + product.name + "' has no release '" + std::string(version) + "'");
    return ReleaseView{*release, false, "", repo.list_artifacts(release->id)};
}

std::string query_or(const Request& request, std::string_view name, std::string_view fallback) {
    auto value = request.query_param(name);
    return std::string(value && !value->empty() ? *value : fallback);
}

// Device access, remembered by the blob cache briefly (NONOS sends HEAD then GET).
// Returns the access-log principal: "key:<name>" or "" for an open product. `who`
// names the device in the access log when it is refused.
std::string require_access(const Request& request, Services& services, std::int64_t product_id,
                           std::string_view who = {}) {
    std::string_view key = presented_device_key(request);
    const std::string digest = key.empty() ? std::string() : util::sha256_hex(key);
    auto grant = services.blob_cache.recall_access(product_id, digest);
    if (!grant) {
        grant = require_device_access(request, services, product_id, who);
        services.blob_cache.remember_access(product_id, digest, *grant);
    }
    return *grant ? "key:" + **grant : std::string();
}

// Serving a release freezes it (schema triggers: an offered release keeps its
// artifacts, so the bytes cannot vanish under a device). Marked before the image
// leaves, in one transaction with its audit entry (the audit id is the change
// generation device-facing caches watch), like DeviceUpdates does for polls.
// Throws ProblemError 503 when the artifact was deleted since it was looked up.
void mark_offered(Services& services, const std::string& product, const storage::Release& release,
                  std::int64_t artifact_id, std::string_view front_end, std::string_view device) {
    if (release.offered) return;
    const bool still_there = services.database.write([&](storage::Connection& c) {
        storage::CatalogueRepository catalogue(c);
        auto artifact = catalogue.get_artifact(artifact_id);
        if (!artifact || artifact->release_id != release.id) return false;
        if (catalogue.mark_release_offered(release.id)) {
            nlohmann::json detail = {{"front_end", front_end}, {"device", device}};
            storage::AuditRepository(c).append("system", "release.offered",
                                               "product/" + product + "/release/" + release.version, detail.dump());
        }
        return true;
    });
    if (!still_there) throw ProblemError(503, "busy", "the release changed while it was being served; retry");
}

// "1.2.3.4:5678" -> "1.2.3.4", "[::1]:5678" -> "::1" (what the device registry stores).
std::string address_without_port(std::string_view address) {
    if (!address.empty() && address.front() == '[') {
        auto close = address.find(']');
        if (close != std::string_view::npos) return std::string(address.substr(1, close - 1));
    }
    auto colon = address.rfind(':');
    if (colon != std::string_view::npos && address.find(':') == colon) return std::string(address.substr(0, colon));
    return std::string(address);
}

Response image_response(Services& services, const storage::Artifact& artifact, std::string_view download_name) {
    auto blob = services.blob_cache.blob(artifact.sha256);
    if (!blob)
        throw std::runtime_error("artifact " + std::to_string(artifact.id) + " names blob " + artifact.sha256 +
                                 ", which has no row");
    Response response;
    response.status = 200;
    response.headers.add("Content-Type", std::string(kOctetStream));
    response.headers.add("Content-Disposition", "attachment; filename=" + std::string(download_name));
    if (blob->size > 0) response.body.emplace_back(FileSlice{blob->file, 0, blob->size});
    return response;
}

// Storage busy -> 503 the device retries; anything else is the dispatcher's 500.
template <class Work>
Response guarded(Work&& work) {
    try {
        return work();
    } catch (const storage::StorageError& e) {
        if (e.kind() != storage::StorageErrorKind::busy) throw;
        Response busy = problem(503, "busy", "the catalogue is busy; retry shortly");
        busy.headers.set("Retry-After", "1");
        return busy;
    }
}

// ---------------------------------------------------------------- Arduino

std::string appended_sha256_of(const storage::Artifact& artifact) {
    auto metadata = nlohmann::json::parse(artifact.metadata_json, nullptr, false);
    if (metadata.is_object()) {
        auto it = metadata.find("appended_sha256");
        if (it != metadata.end() && it->is_string()) return util::to_lower(it->get<std::string>());
    }
    return {};
}

domain::ArduinoRelease arduino_release(const ReleaseView& view) {
    domain::ArduinoRelease out{view.release.version, view.allow_rollback, {}};
    for (const auto& a : view.artifacts) {
        auto chip = domain::parse_chip(a.chip);
        if (!chip) continue;
        out.artifacts.push_back(
            domain::ArduinoArtifact{a.id, *chip, a.layout, a.slot, a.filename, a.size, a.md5, appended_sha256_of(a)});
    }
    return out;
}

std::optional<domain::Chip> requested_chip(const Request& request, domain::ArduinoFamily family) {
    auto text = request.query_param("chip");
    if (!text || text->empty()) return std::nullopt;
    auto chip = domain::parse_chip(*text);
    const bool fits = chip && (family == domain::ArduinoFamily::esp8266 ? *chip == domain::Chip::esp8266
                                                                        : domain::is_esp32_family(*chip));
    if (!fits)
        throw ProblemError(400, "bad-request",
                           "chip '" + std::string(*text) + "' is not a chip of the x-" +
                               std::string(domain::to_string(family)) + "-* updater");
    return chip;
}

// One sighting per check: through the device registry (batched, with offer and
// rollback tracking) when the daemon runs one, else written now (Arduino devices
// check rarely, so one small write per check is affordable).
void record_sighting(Services& services, const Request& request, std::int64_t product_id,
                     const domain::ArduinoRequest& device, std::string_view chip, std::string_view channel,
                     std::optional<std::string> offered_version) {
    if (device.device_id.empty()) return;
    storage::DeviceSighting sighting;
    sighting.id = device.device_id;
    sighting.product_id = product_id;
    sighting.chip = std::string(chip);
    sighting.layout = device.family == domain::ArduinoFamily::esp8266 ? "single" : "ota";
    sighting.version = device.version;
    sighting.channel = std::string(channel);
    sighting.remote_address = address_without_port(request.remote_address);
    sighting.seen_at = util::unix_now();
    if (services.device_registry != nullptr) {
        services.device_registry->record_poll(std::move(sighting), std::move(offered_version));
        return;
    }
    try {
        services.database.read([&](storage::Connection& c) {
            storage::DeviceRepository devices(c);
            devices.upsert_many(std::span<const storage::DeviceSighting>(&sighting, 1));
            if (offered_version) devices.record_offer(sighting.id, *offered_version, sighting.seen_at);
        });
    } catch (const storage::StorageError& e) {
        // Losing a sighting must not cost the device its update.
        util::log_event(compat_log(), spdlog::level::warn, "arduino_sighting_not_recorded",
                        {{"device", device.device_id}, {"error", std::string(storage::to_string(e.kind()))}});
    }
}

Response arduino_check(Request& request, Services& services) {
    auto parsed = domain::parse_arduino_request(request.headers.fields());
    if (auto* error = std::get_if<domain::ArduinoParseError>(&parsed))
        throw ProblemError(400, "bad-request", error->detail);
    const domain::ArduinoRequest& device = std::get<domain::ArduinoRequest>(parsed);
    const std::optional<domain::Chip> chip_query = requested_chip(request, device.family);
    const std::string channel = query_or(request, "channel", kDefaultChannel);

    const storage::Product product = services.database.read([&](storage::Connection& c) {
        storage::CatalogueRepository repo(c);
        return find_product_or_404(repo, request.param("product"));
    });
    const std::string device_principal = device.device_id.empty() ? std::string() : "device:" + device.device_id;
    const std::string key_principal = require_access(request, services, product.id, device_principal);
    const ReleaseView view = services.database.read([&](storage::Connection& c) {
        storage::CatalogueRepository repo(c);
        return channel_release_or_404(repo, product, channel);
    });

    const domain::ArduinoDecision decision = domain::decide_arduino(device, chip_query, arduino_release(view));
    std::string device_chip = device.family == domain::ArduinoFamily::esp8266
                                  ? "esp8266"
                                  : (chip_query ? std::string(domain::to_string(*chip_query)) : std::string());
    if (auto* serve = std::get_if<domain::ArduinoServe>(&decision); serve && serve->chip != domain::Chip::generic)
        device_chip = std::string(domain::to_string(serve->chip));
    const std::string principal = !device_principal.empty() ? device_principal : key_principal;

    Response response;
    std::optional<std::string> offered;
    if (auto* not_modified = std::get_if<domain::ArduinoNotModified>(&decision)) {
        util::log_event(compat_log(), spdlog::level::debug, "arduino_not_modified",
                        {{"product", product.name}, {"device", device.device_id}, {"detail", not_modified->detail}});
        response.status = 304;
    } else if (auto* refused = std::get_if<domain::ArduinoRefused>(&decision)) {
        util::log_event(compat_log(), spdlog::level::info, "arduino_refused",
                        {{"product", product.name},
                         {"device", device.device_id},
                         {"type", refused->type},
                         {"detail", refused->detail}});
        response = problem(403, refused->type, refused->detail);
    } else {
        const auto& serve = std::get<domain::ArduinoServe>(decision);
        auto artifact = std::find_if(view.artifacts.begin(), view.artifacts.end(),
                                     [&](const storage::Artifact& a) { return a.id == serve.artifact_id; });
        mark_offered(services, product.name, view.release, artifact->id, "arduino", device.device_id);
        response = image_response(services, *artifact, artifact->filename);
        response.headers.add("x-MD5", artifact->md5);
        if (device.family == domain::ArduinoFamily::esp32) response.headers.add("x-SHA256", artifact->sha256);
        response.headers.add("x-version", view.release.version);
        offered = view.release.version;
        util::log_event(compat_log(), spdlog::level::info, "arduino_update",
                        {{"product", product.name},
                         {"device", device.device_id},
                         {"family", std::string(domain::to_string(device.family))},
                         {"mode", std::string(domain::to_string(device.mode))},
                         {"from", device.version},
                         {"to", view.release.version},
                         {"artifact", std::to_string(artifact->id)}});
    }
    record_sighting(services, request, product.id, device, device_chip, channel, std::move(offered));
    response.principal = principal;
    return response;
}

// ---------------------------------------------------------------- NONOS

// Which product a NONOS request is about. The request names none, so: ?product=
// if given, else the product of the presented device key, else the server's only
// product. An unknown key is not refused here: an open product ignores keys, and
// require_device_access refuses it for a product that has keys.
storage::Product nonos_product(const Request& request, Services& services) {
    return services.database.read([&](storage::Connection& c) -> storage::Product {
        storage::CatalogueRepository repo(c);
        if (auto name = request.query_param("product"); name && !name->empty()) return find_product_or_404(repo, *name);
        const std::string_view key = presented_device_key(request);
        if (!key.empty()) {
            auto found = storage::DeviceKeyRepository(c).find_by_secret(key);
            if (found && found->active())
                if (auto product = repo.get_product(found->product_id)) return *product;
        }
        auto products = repo.list_products();
        if (products.size() == 1) return products.front();
        throw ProblemError(
            key.empty() ? 400 : 401, key.empty() ? "bad-request" : "device-key-required",
            std::string(key.empty() ? "the request names no product" : "the device key is unknown or revoked") +
                ": present the product's device key (Authorization: token KEY) or add &product=NAME");
    });
}

Response nonos_rom_version(const Request& request, Services& services, const storage::Product& product,
                           std::string principal) {
    const std::string channel = query_or(request, "channel", kDefaultChannel);
    const ReleaseView view = services.database.read([&](storage::Connection& c) {
        storage::CatalogueRepository repo(c);
        return channel_release_or_404(repo, product, channel);
    });
    auto body = domain::nonos_rom_version_body(view.release.version);
    if (!body)
        throw ProblemError(409, "version-unsuitable",
                           "channel '" + channel + "' offers version '" + view.release.version +
                               "'; the NONOS AT client copies at most " +
                               std::to_string(domain::kNonosMaxRomVersionLength) +
                               " printable characters without quotes, commas or spaces");
    Response response;
    response.set_body(std::move(*body), "application/json");
    response.principal = std::move(principal);
    return response;
}

Response nonos_download(const Request& request, Services& services, const storage::Product& product,
                        std::string principal, std::string_view filename) {
    auto file = domain::parse_nonos_filename(filename);
    if (!file)
        throw ProblemError(400, "bad-request",
                           "filename '" + std::string(filename) +
                               "' is not user1.bin or user2.bin (or the SDK's "
                               "user<1|2>.<flash>.new.<map>.bin)");
    std::optional<domain::Layout> layout;
    if (auto text = request.query_param("layout"); text && !text->empty()) {
        layout = domain::parse_layout(*text);
        if (!layout || !domain::is_nonos_layout(*layout))
            throw ProblemError(
                400, "bad-request",
                "layout '" + std::string(*text) + "' is not a NONOS layout (256+256, 512+512, 1024+1024)");
    }

    const ReleaseView view = services.database.read([&](storage::Connection& c) {
        storage::CatalogueRepository repo(c);
        if (auto version = request.query_param("version"); version && !version->empty())
            return named_release_or_404(repo, product, *version);
        return channel_release_or_404(repo, product, query_or(request, "channel", kDefaultChannel));
    });

    std::vector<domain::CandidateArtifact> candidates;
    for (const auto& a : view.artifacts) {
        auto chip = domain::parse_chip(a.chip);
        auto artifact_layout = domain::parse_layout(a.layout);
        if (!chip || !artifact_layout) continue;
        candidates.push_back(domain::CandidateArtifact{a.id, *chip, *artifact_layout, a.slot, std::nullopt});
    }
    const domain::NonosDecision decision = domain::decide_nonos(*file, layout, view.release.version, candidates);
    if (auto* missing = std::get_if<domain::NonosMissing>(&decision)) {
        util::log_event(compat_log(), spdlog::level::warn, "nonos_missing",
                        {{"product", product.name}, {"file", std::string(filename)}, {"detail", missing->detail}});
        throw ProblemError(404, "not-found", missing->detail);
    }
    if (auto* ambiguous = std::get_if<domain::NonosAmbiguous>(&decision))
        throw ProblemError(409, "ambiguous-layout", ambiguous->detail);

    const auto& serve = std::get<domain::NonosServe>(decision);
    auto artifact = std::find_if(view.artifacts.begin(), view.artifacts.end(),
                                 [&](const storage::Artifact& a) { return a.id == serve.artifact_id; });
    mark_offered(services, product.name, view.release, artifact->id, "nonos", principal);
    auto blob = services.blob_cache.blob(artifact->sha256);
    if (!blob)
        throw std::runtime_error("artifact " + std::to_string(artifact->id) + " names blob " + artifact->sha256 +
                                 ", which has no row");
    // Range, If-Range and the conditional headers as on every download route, so a
    // cut transfer resumes (curl -C -, wget -c). The URL names a channel or version,
    // not bytes: caches revalidate every time (the ETag makes that a 304).
    const std::string download_name = file->slot + ".bin";  // the name asked for, as Espressif's server did
    const std::string last_modified = util::http_date(artifact->created_at);
    Representation rep;
    rep.blob = blob.get();
    rep.filename = download_name;
    rep.last_modified = last_modified;
    rep.last_modified_unix = artifact->created_at;
    rep.cache_control = principal.empty() ? "public, no-cache" : "private, no-cache";
    Response response = download_response(request, rep);
    if (request.method != Method::head)
        util::log_event(compat_log(), spdlog::level::info, "nonos_download",
                        {{"product", product.name},
                         {"version", view.release.version},
                         {"file", std::string(filename)},
                         {"layout", std::string(domain::to_string(serve.layout))},
                         {"artifact", std::to_string(artifact->id)},
                         {"status", std::to_string(response.status)},
                         {"principal", principal}});
    response.principal = std::move(principal);
    return response;
}

Response nonos_rom(Request& request, Services& services) {
    const storage::Product product = nonos_product(request, services);
    std::string principal = require_access(request, services, product.id);
    if (request.query_param("is_format_simple"))
        return nonos_rom_version(request, services, product, std::move(principal));
    auto action = request.query_param("action");
    if (!action || *action != "download_rom")
        throw ProblemError(400, "bad-request",
                           "expected ?action=download_rom&version=V&filename=user1.bin|user2.bin or "
                           "?is_format_simple=true");
    auto filename = request.query_param("filename");
    if (!filename || filename->empty())
        throw ProblemError(400, "bad-request", "missing query parameter filename (user1.bin or user2.bin)");
    return nonos_download(request, services, product, std::move(principal), *filename);
}

// The AT custom-server build fetches GET /user1.bin or /user2.bin (channel's version).
Response nonos_plain_file(Request& request, Services& services, std::string_view filename) {
    const storage::Product product = nonos_product(request, services);
    std::string principal = require_access(request, services, product.id);
    return nonos_download(request, services, product, std::move(principal), filename);
}

}  // namespace

void add_compat_routes(Router& router, Services& services) {
    // SQLite lookups: on the worker pool. Images count as downloads. Legacy
    // clients often cannot do TLS: served on the plain listener too.
    const RouteOptions options{.runs_inline = false, .is_download = true, .on_plain_listener = true};
    router.add(
        Method::get, "/api/v1/arduino/{product}",
        [&services](Request& r) { return guarded([&] { return arduino_check(r, services); }); }, options);
    // HEAD falls back to these GET routes (Router).
    for (const char* path : {"/v1/device/rom/", "/v1/device/rom"})
        router.add(
            Method::get, path, [&services](Request& r) { return guarded([&] { return nonos_rom(r, services); }); },
            options);
    for (const char* name : {"user1.bin", "user2.bin"})
        router.add(
            Method::get, std::string("/") + name,
            [&services, name](Request& r) { return guarded([&] { return nonos_plain_file(r, services, name); }); },
            options);
}

}  // namespace otad::api
