// The device API (docs/device-api.md):
//   GET  /api/v1/update                        poll: 200 signed manifest / 204 up to date
//   POST /api/v1/devices/{id}/report           status report from a device
//   GET  /api/v1/devices, /api/v1/devices/{id} operator views (viewer)
//   POST/GET /api/v1/products/{p}/device-keys, DELETE .../{name}   device keys (admin / viewer)
//   GET  /api/v1/keys                          public manifest-signing keys (no auth)
// Handlers parse and validate, authenticate, and call the domain objects in Services.

#include <algorithm>
#include <charconv>

#include <nlohmann/json.hpp>

#include "otad/api/auth.hpp"
#include "otad/api/device_auth.hpp"
#include "otad/api/pre_body_auth.hpp"
#include "otad/api/json_body.hpp"
#include "otad/api/problem.hpp"
#include "otad/api/routes.hpp"
#include "otad/domain/blob_cache.hpp"
#include "otad/domain/catalogue.hpp"
#include "otad/domain/device_keys.hpp"
#include "otad/domain/device_registry.hpp"
#include "otad/domain/device_updates.hpp"
#include "otad/domain/rollouts.hpp"
#include "otad/domain/signing.hpp"
#include "otad/domain/signing_keys.hpp"
#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/database.hpp"
#include "otad/storage/device_repository.hpp"
#include "otad/util/strings.hpp"

namespace otad::api {
namespace {

using json = nlohmann::json;

constexpr std::uint64_t kReportBodyLimit = 16 * 1024;
constexpr std::uint64_t kKeyBodyLimit = 4 * 1024;
constexpr std::size_t kMaxVersionLength = 64;
constexpr std::size_t kMaxDeviceIdLength = 128;

// ProblemError carries no extra members; this one does (valid values, the parameter).
struct ParameterProblem {
    std::string parameter;
    std::string detail;
    json extra;
};

Response parameter_problem(const ParameterProblem& p) {
    json extra = p.extra.is_object() ? p.extra : json::object();
    extra["parameter"] = p.parameter;
    return problem(400, "invalid-parameter", p.detail, extra);
}

std::vector<std::string> names_of(std::string_view comma_separated) {
    std::vector<std::string> out;
    for (auto part : util::split(comma_separated, ',')) {
        auto name = util::trim(part);
        if (!name.empty()) out.emplace_back(name);
    }
    return out;
}

bool is_device_id(std::string_view id) {
    if (id.empty() || id.size() > kMaxDeviceIdLength) return false;
    return std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == '-' || c == ':' || c == '@';
    });
}

bool is_printable(std::string_view text) {
    return std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

// Host header value usable in a URL we hand out: a name or address and a port.
bool is_host(std::string_view host) {
    if (host.empty() || host.size() > 255) return false;
    return std::all_of(host.begin(), host.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
               c == ':' || c == '[' || c == ']' || c == '_';
    });
}

std::string base_url_of(const Request& request) {
    auto host = request.headers.get("Host");
    if (!host || !is_host(util::trim(*host))) return {};
    return std::string(request.secure ? "https://" : "http://") + std::string(util::trim(*host));
}

std::variant<domain::PollRequest, ParameterProblem> parse_poll(const Request& r) {
    auto required = [&](std::string_view name) -> std::variant<std::string, ParameterProblem> {
        auto value = r.query_param(name);
        if (!value)
            return ParameterProblem{std::string(name), "missing query parameter '" + std::string(name) + "'", {}};
        return std::string(*value);
    };
    domain::PollRequest p;

    auto product = required("product");
    if (auto* e = std::get_if<ParameterProblem>(&product)) return *e;
    p.product = std::get<std::string>(product);
    if (!domain::is_valid_product_name(p.product))
        return ParameterProblem{"product", "product '" + p.product + "' is not a valid product name", {}};

    auto chip = required("chip");
    if (auto* e = std::get_if<ParameterProblem>(&chip)) return *e;
    auto parsed_chip = domain::parse_chip(std::get<std::string>(chip));
    if (!parsed_chip)
        return ParameterProblem{
            "chip",
            "unknown chip '" + std::get<std::string>(chip) + "'; valid chips: " + domain::valid_chip_names(),
            {{"valid", names_of(domain::valid_chip_names())}}};
    p.device.chip = *parsed_chip;

    auto layout = required("layout");
    if (auto* e = std::get_if<ParameterProblem>(&layout)) return *e;
    auto parsed_layout = domain::parse_layout(std::get<std::string>(layout));
    if (!parsed_layout)
        return ParameterProblem{
            "layout",
            "unknown layout '" + std::get<std::string>(layout) + "'; valid layouts: " + domain::valid_layout_names(),
            {{"valid", names_of(domain::valid_layout_names())}}};
    p.device.layout = *parsed_layout;

    if (auto slots = r.query_param("slots")) {
        auto n = util::parse_u64(*slots);
        if (!n || *n < 1 || *n > static_cast<std::uint64_t>(domain::kMaxOtaSlotCount))
            return ParameterProblem{"slots",
                                    "slots must be the number of OTA partitions, 1.." +
                                        std::to_string(domain::kMaxOtaSlotCount) + "; got '" + std::string(*slots) +
                                        "'",
                                    {}};
        p.device.ota_slots = static_cast<int>(*n);
    }

    if (auto slot = r.query_param("slot")) {
        p.device.running_slot = std::string(*slot);
    } else if (p.device.layout != domain::Layout::single) {
        std::string valid;
        for (const auto& s : domain::valid_running_slots(p.device.layout, p.device.ota_slots))
            valid += (valid.empty() ? "" : ", ") + s;
        return ParameterProblem{"slot",
                                "missing query parameter 'slot': the running slot of a " +
                                    std::string(domain::to_string(p.device.layout)) + " device, one of " + valid,
                                {}};
    }

    auto version = required("version");
    if (auto* e = std::get_if<ParameterProblem>(&version)) return *e;
    p.device.version = std::get<std::string>(version);
    if (p.device.version.size() > kMaxVersionLength || !is_printable(p.device.version))
        return ParameterProblem{"version", "version must be at most 64 printable ASCII characters", {}};

    auto device = required("device");
    if (auto* e = std::get_if<ParameterProblem>(&device)) return *e;
    p.device_id = std::get<std::string>(device);
    if (!is_device_id(p.device_id))
        return ParameterProblem{"device", "device id must be 1..128 of A-Z a-z 0-9 . _ - : @", {}};

    if (auto channel = r.query_param("channel")) {
        p.channel = std::string(*channel);
        if (!domain::is_valid_channel_name(p.channel))
            return ParameterProblem{"channel", "channel '" + p.channel + "' is not a valid channel name", {}};
    }

    if (auto sv = r.query_param("secure_version")) {
        auto n = util::parse_u64(*sv);
        if (!n || *n > UINT32_MAX)
            return ParameterProblem{"secure_version",
                                    "secure_version must be an integer 0..4294967295; got '" + std::string(*sv) + "'",
                                    {}};
        p.device.secure_version = static_cast<std::uint32_t>(*n);
    }
    p.base_url = base_url_of(r);
    p.remote_address = r.remote_address;
    return p;
}

Response update_error(const domain::DeviceUpdateError& e) {
    unsigned status = 500;
    switch (e.kind()) {
        case domain::DeviceUpdateError::Kind::bad_request:
            status = 400;
            break;
        case domain::DeviceUpdateError::Kind::not_found:
            status = 404;
            break;
        case domain::DeviceUpdateError::Kind::unavailable:
            status = 503;
            break;
    }
    Response r = problem(status, e.code(), e.what(), e.extra());
    if (status == 503) r.headers.set("Retry-After", "60");
    return r;
}

Response poll(Request& request, Services& services) {
    auto parsed = parse_poll(request);
    if (auto* p = std::get_if<ParameterProblem>(&parsed)) return parameter_problem(*p);
    auto& poll_request = std::get<domain::PollRequest>(parsed);
    auto& updates = *services.device_updates;

    auto product_id = updates.product_id(poll_request.product);
    if (!product_id) return problem(404, "product-not-found", "no product named '" + poll_request.product + "'");
    poll_request.product_id = *product_id;
    require_device_access(request, services, *product_id, "device:" + poll_request.device_id);

    domain::PollOutcome outcome;
    try {
        outcome = updates.poll(poll_request);
    } catch (const domain::DeviceUpdateError& e) {
        return update_error(e);
    }
    Response response;
    response.principal = "device:" + poll_request.device_id;
    response.headers.set("Cache-Control", "no-store");
    response.headers.set(std::string(domain::kPollIntervalHeader), std::to_string(outcome.poll_interval_s));
    if (!outcome.manifest) {
        response.status = 204;
        response.headers.set("X-Otad-No-Update", std::string(domain::to_string(outcome.no_update->reason)));
        return response;
    }
    response.status = 200;
    response.headers.set(std::string(domain::kSignatureHeader), outcome.manifest->signature_header);
    response.set_body(outcome.manifest->body, "application/json");
    return response;
}

std::optional<std::string> string_member(const json& body, const char* name, std::size_t max_length) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) throw ProblemError(400, "invalid-body", std::string(name) + " must be a string");
    auto value = it->get<std::string>();
    if (value.size() > max_length)
        throw ProblemError(400, "invalid-body",
                           std::string(name) + " must be at most " + std::to_string(max_length) + " bytes");
    return value;
}

Response report(Request& request, Services& services) {
    const std::string device_id(request.param("id"));
    if (!is_device_id(device_id))
        return problem(400, "invalid-parameter", "device id must be 1..128 of A-Z a-z 0-9 . _ - : @");
    json body = object_body(request, {"status", "version", "detail"});
    auto status_text = string_member(body, "status", 32);
    if (!status_text)
        return problem(400, "invalid-body", "status is required; one of " + domain::valid_device_statuses(),
                       {{"valid", names_of(domain::valid_device_statuses())}});
    auto status = domain::parse_device_status(*status_text);
    if (!status)
        return problem(400, "invalid-body",
                       "unknown status '" + *status_text + "'; one of " + domain::valid_device_statuses(),
                       {{"valid", names_of(domain::valid_device_statuses())}});
    auto version = string_member(body, "version", kMaxVersionLength).value_or("");
    auto detail = string_member(body, "detail", 4096).value_or("");

    auto& registry = *services.device_registry;
    auto product_id = registry.product_of(device_id);
    if (!product_id) {
        require_right_to_learn_unknown_device(request, services, "device:" + device_id);  // no probing without a key
        return problem(404, "device-not-found",
                       "no device '" + device_id + "' (a device is known from its first poll)");
    }
    require_device_access(request, services, *product_id, "device:" + device_id);
    if (!registry.report({device_id, *status, version, detail, 0}))
        return problem(404, "device-not-found", "no device '" + device_id + "'");
    Response response;
    response.status = 204;
    response.principal = "device:" + device_id;
    return response;
}

// --- operator views

json optional_time(const std::optional<std::int64_t>& t) { return t ? json(util::rfc3339(*t)) : json(nullptr); }
json optional_text(const std::optional<std::string>& t) { return t ? json(*t) : json(nullptr); }

std::string product_name(const std::vector<storage::Product>& products, std::int64_t id) {
    for (const auto& p : products)
        if (p.id == id) return p.name;
    return std::to_string(id);
}

json device_json(const storage::Device& d, const std::string& product) {
    return {{"id", d.id},
            {"product", product},
            {"chip", d.chip},
            {"layout", d.layout},
            {"slot", d.slot},
            {"version", d.version},
            {"channel", d.channel},
            {"secure_version", d.secure_version ? json(*d.secure_version) : json(nullptr)},
            {"remote_address", d.remote_address},
            {"first_seen", util::rfc3339(d.first_seen)},
            {"last_seen", util::rfc3339(d.last_seen)},
            {"offered_version", optional_text(d.offered_version)},
            {"offered_at", optional_time(d.offered_at)},
            {"last_status", optional_text(d.last_status)},
            {"last_status_version", optional_text(d.last_status_version)},
            {"last_status_at", optional_time(d.last_status_at)}};
}

std::size_t limit_param(const Request& r, std::size_t fallback) {
    auto text = r.query_param("limit");
    if (!text) return fallback;
    auto n = util::parse_u64(*text);
    if (!n || *n < 1 || *n > 1000)
        throw ProblemError(400, "invalid-parameter",
                           "limit must be an integer 1..1000; got '" + std::string(*text) + "'");
    return static_cast<std::size_t>(*n);
}

Response list_devices(Request& request, Services& services) {
    require_operator(request, services, Role::viewer);
    storage::DeviceFilter filter;
    filter.limit = limit_param(request, 100);
    if (auto v = request.query_param("version"); v && !v->empty()) filter.version = std::string(*v);
    if (auto c = request.query_param("channel"); c && !c->empty()) filter.channel = std::string(*c);
    if (auto s = request.query_param("status"); s && !s->empty()) {
        if (!domain::parse_device_status(*s))
            return problem(400, "invalid-parameter",
                           "unknown status '" + std::string(*s) + "'; one of " + domain::valid_device_statuses(),
                           {{"parameter", "status"}, {"valid", names_of(domain::valid_device_statuses())}});
        filter.status = std::string(*s);
    }
    if (auto a = request.query_param("after"); a && !a->empty()) filter.after_id = std::string(*a);
    services.device_registry->flush();  // every poll answered so far is visible

    return services.database.read([&](storage::Connection& c) {
        storage::CatalogueRepository catalogue(c);
        auto products = catalogue.list_products();
        if (auto p = request.query_param("product"); p && !p->empty()) {
            auto found = catalogue.find_product(*p);
            if (!found) throw ProblemError(404, "product-not-found", "no product named '" + std::string(*p) + "'");
            filter.product_id = found->id;
        }
        storage::DeviceRepository devices(c);
        auto page = devices.list(filter);
        json items = json::array();
        for (const auto& d : page) items.push_back(device_json(d, product_name(products, d.product_id)));
        json out = {{"devices", items}, {"total", devices.count(filter)}};
        out["next_after"] = page.size() == filter.limit ? json(page.back().id) : json(nullptr);
        return json_response(200, out);
    });
}

Response get_device(Request& request, Services& services) {
    require_operator(request, services, Role::viewer);
    const std::string id(request.param("id"));
    const std::size_t limit = limit_param(request, 100);
    std::optional<std::int64_t> before;
    if (auto b = request.query_param("before"); b && !b->empty()) {
        auto n = util::parse_u64(*b);
        if (!n || *n > static_cast<std::uint64_t>(INT64_MAX))
            return problem(400, "invalid-parameter", "before must be an event id");
        before = static_cast<std::int64_t>(*n);
    }
    services.device_registry->flush();
    // Rollouts (docs/rollouts.md): tags, pin/exclusion and why the device gets what it
    // gets. Read before the lease below (one connection at a time).
    json rollout_view = nullptr;
    if (services.rollouts) {
        try {
            rollout_view = services.rollouts->device_view(id);
        } catch (const domain::RolloutError&) {
            // An unknown device: answered 404 below.
        }
    }
    return services.database.read([&](storage::Connection& c) {
        storage::DeviceRepository devices(c);
        auto device = devices.get(id);
        if (!device) return problem(404, "device-not-found", "no device '" + id + "'");
        storage::CatalogueRepository catalogue(c);
        auto product = catalogue.get_product(device->product_id);
        auto events = devices.history(id, limit, before);
        json history = json::array();
        for (const auto& e : events) {
            json detail = json::parse(e.detail_json, nullptr, /*allow_exceptions=*/false);
            history.push_back({{"id", e.id},
                               {"at", util::rfc3339(e.at)},
                               {"kind", storage::to_string(e.kind)},
                               {"version", optional_text(e.version)},
                               {"status", optional_text(e.status)},
                               {"detail", detail.is_discarded() ? json::object() : detail}});
        }
        json out = device_json(*device, product ? product->name : std::to_string(device->product_id));
        if (rollout_view.is_object())
            for (const auto& [key, value] : rollout_view.items()) out[key] = value;
        out["history"] = history;
        out["history_next_before"] = events.size() == limit ? json(events.back().id) : json(nullptr);
        return json_response(200, out);
    });
}

// --- device keys

storage::Product require_product(Services& services, std::string_view name) {
    auto product = services.database.read(
        [&](storage::Connection& c) { return storage::CatalogueRepository(c).find_product(name); });
    if (!product) throw ProblemError(404, "product-not-found", "no product named '" + std::string(name) + "'");
    return *product;
}

json device_key_json(const domain::DeviceKeyInfo& k) {
    return {{"name", k.name},
            {"created_at", util::rfc3339(k.created_at)},
            {"revoked_at", optional_time(k.revoked_at)},
            {"active", k.active()}};
}

Response device_key_error(const domain::DeviceKeyError& e) {
    switch (e.kind()) {
        case domain::DeviceKeyError::Kind::invalid:
            return problem(400, "invalid-body", e.what());
        case domain::DeviceKeyError::Kind::weak_secret:
            return problem(422, "weak-device-key", e.what());
        case domain::DeviceKeyError::Kind::conflict:
            return problem(409, "conflict", e.what());
        case domain::DeviceKeyError::Kind::not_found:
            return problem(404, "device-key-not-found", e.what());
    }
    return problem(500, "internal-error", "internal error");
}

Response create_device_key(Request& request, Services& services) {
    Operator op = require_operator(request, services, Role::admin);
    auto product = require_product(services, request.param("product"));
    json body = object_body(request, {"name", "key"});
    auto name = string_member(body, "name", 64);
    if (!name) return problem(400, "invalid-body", "name (a string) is required");
    auto supplied = string_member(body, "key", 256);
    try {
        auto created = services.device_keys->create(
            product.id, product.name, *name, supplied ? std::optional<std::string_view>(*supplied) : std::nullopt,
            op.actor());
        services.blob_cache.invalidate_product(product.id);
        json out = device_key_json(created.key);
        out["product"] = product.name;
        out["key"] = created.secret;
        Response r = json_response(201, out);
        r.headers.set("Cache-Control", "no-store");
        r.principal = op.actor();
        return r;
    } catch (const domain::DeviceKeyError& e) {
        return device_key_error(e);
    }
}

Response list_device_keys(Request& request, Services& services) {
    require_operator(request, services, Role::viewer);
    auto product = require_product(services, request.param("product"));
    json keys = json::array();
    for (const auto& k : services.device_keys->list(product.id)) keys.push_back(device_key_json(k));
    return json_response(200, {{"product", product.name},
                               {"requires_key", services.device_keys->product_requires_key(product.id)},
                               {"keys", keys}});
}

Response revoke_device_key(Request& request, Services& services) {
    Operator op = require_operator(request, services, Role::admin);
    auto product = require_product(services, request.param("product"));
    try {
        services.device_keys->revoke(product.id, product.name, request.param("name"), op.actor());
    } catch (const domain::DeviceKeyError& e) {
        return device_key_error(e);
    }
    services.blob_cache.invalidate_product(product.id);
    Response r;
    r.status = 204;
    r.principal = op.actor();
    return r;
}

// --- public signing keys

Response public_keys(Request&, Services& services) {
    json keys = json::array();
    for (const auto& k : services.signing_keys->list())
        keys.push_back({{"key_id", k.key_id},
                        {"alg", domain::to_string(k.algorithm)},
                        {"status", k.active() ? "active" : "retired"},
                        {"signing", k.signing},
                        {"public_key_pem", k.public_pem},
                        {"created_at", util::rfc3339(k.created_at)},
                        {"retired_at", optional_time(k.retired_at)}});
    return json_response(200, {{"keys", keys}});
}

template <class Fn>
Handler bind(Services& services, Fn fn) {
    return [&services, fn](Request& r) { return fn(r, services); };
}

}  // namespace

void add_device_routes(Router& router, Services& services) {
    if (services.device_updates == nullptr || services.device_registry == nullptr || services.device_keys == nullptr ||
        services.signing_keys == nullptr)
        return;  // not served (a test wiring only other areas)
    // On the worker pool: a poll is cached lookups, but a cache miss reads SQLite and the first
    // offer of a release commits a write. Measured inline on the I/O thread it was no faster
    // here (2 cores) and its p99 latency was worse (docs/device-api.md).
    // Polls and reports are the device side: on the plain listener too. The rest
    // (operator views, device keys, and the public signing keys, a trust anchor
    // that must not be fetched in clear) is HTTPS only.
    router.add(Method::get, "/api/v1/update", bind(services, poll), {.on_plain_listener = true});
    router.add(Method::post, "/api/v1/devices/{id}/report", bind(services, report),
               {.body = BodyPolicy::buffered,
                .max_body_bytes = kReportBodyLimit,
                .on_plain_listener = true,
                .authorize = device_report_before_body(services)});
    router.add(Method::get, "/api/v1/devices", bind(services, list_devices));
    router.add(Method::get, "/api/v1/devices/{id}", bind(services, get_device));
    router.add(Method::post, "/api/v1/products/{product}/device-keys", bind(services, create_device_key),
               {.body = BodyPolicy::buffered,
                .max_body_bytes = kKeyBodyLimit,
                .authorize = operator_before_body(services, Role::admin)});
    router.add(Method::get, "/api/v1/products/{product}/device-keys", bind(services, list_device_keys));
    router.add(Method::del, "/api/v1/products/{product}/device-keys/{name}", bind(services, revoke_device_key));
    router.add(Method::get, "/api/v1/keys", bind(services, public_keys));
}

}  // namespace otad::api
