// Staged rollouts, device tags and device overrides (docs/rollouts.md):
//   POST/GET /api/v1/products/{p}/rollouts                     start (admin) / list (viewer)
//   GET      /api/v1/products/{p}/rollouts/{id}                status (viewer)
//   POST     /api/v1/products/{p}/rollouts/{id}/pause|resume|advance|abort   (admin)
//   PUT      /api/v1/devices/{id}/tags                         replace a device's tags (admin)
//   POST     /api/v1/products/{p}/devices/tags                 add/remove tags by filter (admin)
//   PUT/DELETE /api/v1/devices/{id}/override                   pin or exclude a device (admin)
// Thin handlers: parse, authenticate, call domain::Rollouts, render.

#include <algorithm>

#include <nlohmann/json.hpp>

#include "otad/api/auth.hpp"
#include "otad/api/pre_body_auth.hpp"
#include "otad/api/json_body.hpp"
#include "otad/api/problem.hpp"
#include "otad/api/routes.hpp"
#include "otad/domain/rollouts.hpp"
#include "otad/storage/error.hpp"
#include "otad/util/strings.hpp"

namespace otad::api {
namespace {

using json = nlohmann::json;
using domain::RolloutError;

constexpr std::uint64_t kBodyLimit = 64 * 1024;
constexpr std::size_t kDefaultPage = 50;

unsigned status_of(RolloutError::Kind kind) {
    switch (kind) {
        case RolloutError::Kind::invalid:
            return 400;
        case RolloutError::Kind::not_found:
            return 404;
        case RolloutError::Kind::conflict:
            return 409;
        case RolloutError::Kind::unprocessable:
            return 422;
    }
    return 400;
}

// An admin or viewer route whose handler may throw what the domain throws.
template <class Fn>
Handler route(Services& services, Role role, Fn fn) {
    return [&services, role, fn](Request& request) -> Response {
        Operator op = require_operator(request, services, role);
        Response response;
        try {
            response = fn(request, *services.rollouts, op);
        } catch (const RolloutError& e) {
            response = problem(status_of(e.kind()), e.code(), e.what(), e.extra());
        } catch (const storage::StorageError& e) {
            if (e.kind() != storage::StorageErrorKind::busy) throw;
            response = problem(503, "busy", "the database is busy; retry shortly");
            response.headers.set("Retry-After", "1");
        }
        response.principal = op.token_name;
        return response;
    };
}

bool flag(const json& body, const char* name) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) return false;
    if (!it->is_boolean()) throw ProblemError(400, "invalid-body", std::string(name) + " must be true or false");
    return it->get<bool>();
}

std::optional<std::string> text(const json& body, const char* name, std::size_t max = 256) {
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) return std::nullopt;
    if (!it->is_string() || it->get<std::string>().size() > max)
        throw ProblemError(400, "invalid-body",
                           std::string(name) + " must be a string of at most " + std::to_string(max) + " bytes");
    return it->get<std::string>();
}

std::vector<std::string> string_list(const json& body, const char* name) {
    std::vector<std::string> out;
    auto it = body.find(name);
    if (it == body.end() || it->is_null()) return out;
    if (!it->is_array()) throw ProblemError(400, "invalid-body", std::string(name) + " must be a list of strings");
    for (const auto& item : *it) {
        if (!item.is_string())
            throw ProblemError(400, "invalid-body", std::string(name) + " must be a list of strings");
        out.push_back(item.get<std::string>());
    }
    if (out.size() > 256) throw ProblemError(400, "invalid-body", std::string(name) + " lists more than 256 tags");
    return out;
}

std::int64_t rollout_id(const Request& request) {
    auto id = util::parse_u64(request.param("id"));
    if (!id || *id == 0 || *id > static_cast<std::uint64_t>(INT64_MAX))
        throw ProblemError(404, "rollout-not-found", "no rollout with id '" + std::string(request.param("id")) + "'");
    return static_cast<std::int64_t>(*id);
}

std::string device_id(const Request& request) {
    std::string id(request.param("id"));
    if (id.empty() || id.size() > 128) throw ProblemError(404, "device-not-found", "no such device");
    return id;
}

std::size_t limit(const Request& request) {
    auto text = request.query_param("limit");
    if (!text) return kDefaultPage;
    auto n = util::parse_u64(*text);
    if (!n || *n < 1 || *n > 500)
        throw ProblemError(400, "invalid-limit", "limit must be a whole number from 1 to 500");
    return static_cast<std::size_t>(*n);
}

json override_json(const storage::DeviceOverride& o) {
    return {{"device", o.device_id},
            {"kind", storage::to_string(o.kind)},
            {"version", o.kind == storage::OverrideKind::pin ? json(o.version) : json(nullptr)},
            {"reason", o.reason},
            {"created_by", o.created_by},
            {"created_at", util::rfc3339(o.created_at)}};
}

}  // namespace

void add_rollout_routes(Router& router, Services& services) {
    if (services.rollouts == nullptr) return;  // not served (a test wiring only other areas)
    const std::string products = "/api/v1/products/{product}";
    // JSON bodies are buffered, and read only for an admin (every route that takes one is admin's).
    const RouteOptions body{.body = BodyPolicy::buffered,
                            .max_body_bytes = kBodyLimit,
                            .authorize = operator_before_body(services, Role::admin)};
    using domain::Rollouts;

    router.add(Method::post, products + "/rollouts",
               route(services, Role::admin,
                     [](Request& r, Rollouts& rollouts, const Operator& op) {
                         json body = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
                         if (body.is_discarded())
                             throw ProblemError(400, "invalid-body", "the request body must be a JSON object");
                         auto spec = domain::parse_rollout_spec(body, rollouts.options());
                         auto created = rollouts.create(r.param("product"), spec, op.actor());
                         Response response = json_response(201, rollouts.to_json(created, r.param("product")));
                         response.headers.set("Location", "/api/v1/products/" +
                                                              util::percent_encode(r.param("product")) + "/rollouts/" +
                                                              std::to_string(created.id));
                         return response;
                     }),
               body);
    router.add(Method::get, products + "/rollouts",
               route(services, Role::viewer, [](Request& r, Rollouts& rollouts, const Operator&) {
                   json items = json::array();
                   for (const auto& rollout : rollouts.list(r.param("product"), limit(r)))
                       items.push_back(rollouts.to_json(rollout, r.param("product")));
                   return json_response(200, {{"rollouts", items}});
               }));
    router.add(Method::get, products + "/rollouts/{id}",
               route(services, Role::viewer, [](Request& r, Rollouts& rollouts, const Operator&) {
                   return json_response(
                       200, rollouts.to_json(rollouts.get(r.param("product"), rollout_id(r)), r.param("product")));
               }));
    router.add(Method::post, products + "/rollouts/{id}/pause",
               route(services, Role::admin,
                     [](Request& r, Rollouts& rollouts, const Operator& op) {
                         object_body(r, {}, EmptyBody::empty_object);
                         auto done = rollouts.pause(r.param("product"), rollout_id(r), op.actor());
                         return json_response(200, rollouts.to_json(done, r.param("product")));
                     }),
               body);
    router.add(Method::post, products + "/rollouts/{id}/resume",
               route(services, Role::admin,
                     [](Request& r, Rollouts& rollouts, const Operator& op) {
                         json b = object_body(r, {"force"}, EmptyBody::empty_object);
                         auto done = rollouts.resume(r.param("product"), rollout_id(r), flag(b, "force"), op.actor());
                         return json_response(200, rollouts.to_json(done, r.param("product")));
                     }),
               body);
    router.add(Method::post, products + "/rollouts/{id}/advance",
               route(services, Role::admin,
                     [](Request& r, Rollouts& rollouts, const Operator& op) {
                         object_body(r, {}, EmptyBody::empty_object);
                         auto done = rollouts.advance(r.param("product"), rollout_id(r), op.actor());
                         return json_response(200, rollouts.to_json(done, r.param("product")));
                     }),
               body);
    router.add(Method::post, products + "/rollouts/{id}/abort",
               route(services, Role::admin,
                     [](Request& r, Rollouts& rollouts, const Operator& op) {
                         json b = object_body(r, {"revert"}, EmptyBody::empty_object);
                         auto done = rollouts.abort(r.param("product"), rollout_id(r), flag(b, "revert"), op.actor());
                         return json_response(200, rollouts.to_json(done, r.param("product")));
                     }),
               body);

    // --- tags
    router.add(Method::put, "/api/v1/devices/{id}/tags",
               route(services, Role::admin,
                     [](Request& r, Rollouts& rollouts, const Operator& op) {
                         json b = object_body(r, {"tags"}, EmptyBody::empty_object);
                         if (!b.contains("tags")) throw ProblemError(400, "invalid-body", "tags (a list) is required");
                         auto tags = rollouts.set_tags(device_id(r), string_list(b, "tags"), op.actor());
                         return json_response(200, {{"device", device_id(r)}, {"tags", tags}});
                     }),
               body);
    router.add(
        Method::post, products + "/devices/tags",
        route(services, Role::admin,
              [](Request& r, Rollouts& rollouts, const Operator& op) {
                  json b = object_body(r, {"filter", "add", "remove"}, EmptyBody::empty_object);
                  storage::DeviceSelection selection;
                  if (auto f = b.find("filter"); f != b.end() && !f->is_null()) {
                      if (!f->is_object()) throw ProblemError(400, "invalid-body", "filter must be an object");
                      for (const auto& [key, value] : f->items())
                          if (key != "chip" && key != "layout" && key != "version" && key != "channel" && key != "tag")
                              throw ProblemError(400, "invalid-body",
                                                 "unknown filter member '" + key.substr(0, 64) +
                                                     "'; allowed: chip, layout, version, channel, tag");
                      selection.chip = text(*f, "chip", 64);
                      selection.layout = text(*f, "layout", 64);
                      selection.version = text(*f, "version", 64);
                      selection.channel = text(*f, "channel", 64);
                      selection.tag = text(*f, "tag", 64);
                  }
                  auto n = rollouts.change_tags(r.param("product"), selection, string_list(b, "add"),
                                                string_list(b, "remove"), op.actor());
                  return json_response(200, {{"devices", n}});
              }),
        body);

    // --- overrides
    router.add(Method::put, "/api/v1/devices/{id}/override",
               route(services, Role::admin,
                     [](Request& r, Rollouts& rollouts, const Operator& op) {
                         json b = object_body(r, {"pin", "exclude", "reason"}, EmptyBody::empty_object);
                         auto pin = text(b, "pin", 64);
                         const bool exclude = flag(b, "exclude");
                         if (pin.has_value() == exclude)
                             throw ProblemError(400, "invalid-body",
                                                "give either pin (a release version) or exclude: true");
                         const std::string reason = text(b, "reason").value_or("");
                         auto o = pin ? rollouts.pin(device_id(r), *pin, reason, op.actor())
                                      : rollouts.exclude(device_id(r), reason, op.actor());
                         return json_response(200, override_json(o));
                     }),
               body);
    router.add(Method::del, "/api/v1/devices/{id}/override",
               route(services, Role::admin, [](Request& r, Rollouts& rollouts, const Operator& op) {
                   rollouts.clear_override(device_id(r), op.actor());
                   Response response;
                   response.status = 204;
                   return response;
               }));
}

}  // namespace otad::api
