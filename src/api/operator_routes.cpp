// The operator REST API under /api/v1 (docs/operator-api.md): thin handlers that
// authenticate, read parameters, call domain::Catalogue and render its result.
// Business rules live in the catalogue; this file only maps HTTP to them.
//
// Roles: viewer reads; uploader also uploads; admin also replaces, deletes, moves
// channels, changes products and reads the audit log.

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "otad/api/auth.hpp"
#include "otad/api/multipart.hpp"
#include "otad/api/pre_body_auth.hpp"
#include "otad/api/json_body.hpp"
#include "otad/api/problem.hpp"
#include "otad/api/routes.hpp"
#include "otad/domain/catalogue.hpp"
#include "otad/storage/error.hpp"
#include "otad/util/crypto.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"

namespace otad::api {
namespace {

using domain::CatalogueError;
using domain::CatalogueErrorKind;
using nlohmann::json;

constexpr std::string_view kBase = "/api/v1";
constexpr std::size_t kDefaultPageSize = 50;
constexpr std::size_t kMaxFieldBytes = 1024;
// A multipart body carries the file plus its envelope (boundaries, part headers,
// a few short fields): the route accepts this much more than max_artifact_bytes,
// and the file itself is held to max_artifact_bytes while it streams.
constexpr std::uint64_t kMultipartAllowance = 64 * 1024;
constexpr std::uint64_t kJsonBodyLimit = 64 * 1024;
// An upload refused before its body was read is answered after swallowing up to
// this much of the body, so a client still sending reads the answer instead of a
// connection reset. Larger bodies come with "Expect: 100-continue" from curl and
// most tools, and are then never sent.
constexpr std::uint64_t kDrainOnErrorBytes = 4 * 1024 * 1024;

unsigned status_of(CatalogueErrorKind kind) {
    switch (kind) {
        case CatalogueErrorKind::invalid:
            return 400;
        case CatalogueErrorKind::not_found:
            return 404;
        case CatalogueErrorKind::conflict:
            return 409;
        case CatalogueErrorKind::unprocessable:
            return 422;
        case CatalogueErrorKind::too_large:
            return 413;
    }
    return 400;
}

// Runs a handler body and maps what the layers below throw to problem documents.
// ProblemError and BodyError pass through to the dispatcher, which maps them.
template <class Fn>
Response guarded(Fn&& fn) {
    try {
        return fn();
    } catch (const CatalogueError& e) {
        return problem(status_of(e.kind()), e.code(), e.what(), e.extra());
    } catch (const MultipartError& e) {
        return problem(400, "malformed-multipart", e.what());
    } catch (const storage::StorageError& e) {
        if (e.kind() == storage::StorageErrorKind::no_space)
            return problem(507, "insufficient-storage",
                           "the server's disk is full; nothing was stored (free space on the data directory and "
                           "retry)");
        if (e.kind() != storage::StorageErrorKind::busy) throw;
        Response r = problem(503, "busy", "the database is busy; retry shortly");
        r.headers.set("Retry-After", "1");
        return r;
    }
}

// A route that needs an operator of at least `role`: fn(request, operator).
template <class Fn>
Handler operator_route(Services& services, Role role, Fn fn) {
    return [&services, role, fn](Request& request) -> Response {
        Operator op = require_operator(request, services, role);
        Response response;
        try {
            response = guarded([&] { return fn(request, op); });
        } catch (const ProblemError& e) {
            response = e.to_response();  // refused or invalid: still attributed
        }
        response.principal = op.actor();
        return response;
    };
}

std::string param(const Request& request, std::string_view name) { return std::string(request.param(name)); }

std::int64_t artifact_id_param(const Request& request) {
    auto id = util::parse_u64(request.param("id"));
    if (!id || *id == 0 || *id > static_cast<std::uint64_t>(INT64_MAX))
        throw ProblemError(404, "not-found", "no artifact with id '" + std::string(request.param("id")) + "'");
    return static_cast<std::int64_t>(*id);
}

std::size_t limit_param(const Request& request) {
    auto text = request.query_param("limit");
    if (!text) return kDefaultPageSize;
    auto limit = util::parse_u64(*text);
    if (!limit || *limit < 1 || *limit > 500)
        throw ProblemError(400, "invalid-limit", "limit must be a whole number between 1 and 500");
    return static_cast<std::size_t>(*limit);
}

std::optional<std::string_view> cursor_param(const Request& request) {
    auto cursor = request.query_param("cursor");
    if (cursor && cursor->empty()) return std::nullopt;
    return cursor;
}

json optional_string(const std::optional<std::string>& text) { return text ? json(*text) : json(nullptr); }

// --- upload ------------------------------------------------------------------

bool flag_value(std::string_view name, std::string_view text) {
    if (text == "true" || text == "1") return true;
    if (text == "false" || text == "0" || text.empty()) return false;
    throw ProblemError(400, "invalid-parameter", std::string(name) + " must be true or false");
}

bool version_mismatch_value(std::string_view text) {
    if (text == "allow") return true;
    if (text == "deny" || text.empty()) return false;
    throw ProblemError(400, "invalid-parameter", "version_mismatch must be allow or deny");
}

bool trailing_data_value(std::string_view text) {
    if (text == "allow") return true;
    if (text == "deny" || text.empty()) return false;
    throw ProblemError(400, "invalid-parameter", "trailing_data must be allow or deny");
}

// RFC 9530 Content-Digest: the sha-256 member as hex; nullopt when the header or
// that member is absent (other algorithms are ignored, as the RFC allows).
std::optional<std::string> content_digest_sha256(const Request& request) {
    auto header = request.headers.get("Content-Digest");
    if (!header) return std::nullopt;
    for (std::string_view member : util::split(*header, ',')) {
        member = util::trim(member);
        auto eq = member.find('=');
        if (eq == std::string_view::npos) continue;
        if (util::to_lower(util::trim(member.substr(0, eq))) != "sha-256") continue;
        std::string_view value = util::trim(member.substr(eq + 1));
        std::optional<std::vector<unsigned char>> bytes;
        if (value.size() >= 2 && value.front() == ':' && value.back() == ':')
            bytes = util::base64_decode(value.substr(1, value.size() - 2));
        if (!bytes || bytes->size() != 32)
            throw ProblemError(400, "invalid-digest",
                               "Content-Digest sha-256 must be ':<base64 of 32 bytes>:' (RFC 9530)");
        return util::to_hex(*bytes);
    }
    return std::nullopt;
}

std::optional<std::string> checksum_header_sha256(const Request& request) {
    auto header = request.headers.get("X-Checksum-Sha256");
    if (!header) return std::nullopt;
    std::string_view value = util::trim(*header);
    if (value.size() != 64 || !util::from_hex(value))
        throw ProblemError(400, "invalid-digest", "X-Checksum-Sha256 must be 64 hex digits");
    return util::to_lower(value);
}

[[noreturn]] void digest_mismatch(std::string_view what) {
    throw CatalogueError(CatalogueErrorKind::invalid, "digest-mismatch", std::string(what));
}

// The raw request body as the catalogue's byte source.
class BodyBytes final : public domain::ByteSource {
public:
    explicit BodyBytes(BodySource& body) : body_(body) {}
    std::size_t read(std::span<char> out) override { return body_.read(out); }

private:
    BodySource& body_;
};

// The current part of a multipart body as the catalogue's byte source.
class PartBytes final : public domain::ByteSource {
public:
    explicit PartBytes(MultipartReader& reader) : reader_(reader) {}
    std::size_t read(std::span<char> out) override { return reader_.read(out); }

private:
    MultipartReader& reader_;
};

// Hashes every body byte that passes, for Content-Digest over a multipart body.
class HashingBody final : public BodySource {
public:
    explicit HashingBody(BodySource& inner) : inner_(inner), sha256_("sha256") {}
    std::size_t read(std::span<char> out) override {
        std::size_t n = inner_.read(out);
        sha256_.update(std::string_view(out.data(), n));
        return n;
    }
    std::string hex() { return util::to_hex(sha256_.finish()); }

private:
    BodySource& inner_;
    util::Digest sha256_;
};

// Sets `target` from a form field unless the query already gave a different value.
void merge_field(std::string& target, std::string_view name, std::string value) {
    if (!target.empty() && target != value)
        throw ProblemError(400, "invalid-parameter",
                           std::string(name) + " is given twice with different values (query and form field)");
    target = std::move(value);
}

Response upload(Request& request, Services& services, const Operator& op) {
    domain::Catalogue& catalogue = services.catalogue;
    domain::UploadSpec spec;
    spec.product = param(request, "product");
    spec.version = param(request, "version");
    spec.chip = std::string(request.query_param("chip").value_or(""));
    spec.layout = std::string(request.query_param("layout").value_or(""));
    spec.slot = std::string(request.query_param("slot").value_or(""));
    spec.filename = std::string(request.query_param("filename").value_or(""));
    std::string replace_text(request.query_param("replace").value_or(""));
    std::string version_mismatch_text(request.query_param("version_mismatch").value_or(""));
    std::string trailing_data_text(request.query_param("trailing_data").value_or(""));
    catalogue.check_names(spec.product, spec.version);

    const auto content_digest = content_digest_sha256(request);
    const auto checksum_header = checksum_header_sha256(request);
    const std::string content_type(request.headers.get("Content-Type").value_or(""));
    if (request.body_source == nullptr) throw std::logic_error("upload route must stream its body");

    std::optional<domain::PendingUpload> pending;
    if (is_multipart_form_data(content_type)) {
        std::string boundary = multipart_boundary(content_type);
        HashingBody body(*request.body_source);
        MultipartReader reader(body, boundary);
        std::string field_replace, field_version_mismatch, field_trailing_data;
        while (auto part = reader.next_part()) {
            if (part->name == "file") {
                if (pending) throw MultipartError("the multipart body has more than one 'file' part");
                PartBytes bytes(reader);
                pending.emplace(catalogue.receive(bytes));
                if (part->filename) spec.suggested_filename = *part->filename;
                continue;
            }
            std::string* target = part->name == "chip"               ? &spec.chip
                                  : part->name == "layout"           ? &spec.layout
                                  : part->name == "slot"             ? &spec.slot
                                  : part->name == "filename"         ? &spec.filename
                                  : part->name == "replace"          ? &field_replace
                                  : part->name == "version_mismatch" ? &field_version_mismatch
                                  : part->name == "trailing_data"    ? &field_trailing_data
                                                                     : nullptr;
            if (target == nullptr)
                throw ProblemError(400, "invalid-parameter",
                                   "unknown form field '" + part->name.substr(0, 64) +
                                       "'; fields: file, chip, layout, slot, filename, replace, version_mismatch, "
                                       "trailing_data");
            std::string value(util::trim(reader.read_text(kMaxFieldBytes)));
            if (target == &field_replace)
                merge_field(replace_text, "replace", std::move(value));
            else if (target == &field_version_mismatch)
                merge_field(version_mismatch_text, "version_mismatch", std::move(value));
            else if (target == &field_trailing_data)
                merge_field(trailing_data_text, "trailing_data", std::move(value));
            else
                merge_field(*target, part->name, std::move(value));
        }
        reader.finish();
        if (!pending) throw MultipartError("the multipart body has no 'file' part");
        if (content_digest && *content_digest != body.hex())
            digest_mismatch(
                "Content-Digest does not match the request body (for multipart/form-data it covers the "
                "whole body; send X-Checksum-Sha256 for the file)");
        spec.expected_sha256 = checksum_header;
    } else {
        const std::uint64_t limit = catalogue.options().max_artifact_bytes;
        if (request.content_length && *request.content_length > limit)
            throw ProblemError(413, "payload-too-large",
                               "the artifact of " + std::to_string(*request.content_length) +
                                   " bytes exceeds max_artifact_bytes (" + std::to_string(limit) + " bytes)");
        if (content_digest && checksum_header && *content_digest != *checksum_header)
            digest_mismatch("Content-Digest and X-Checksum-Sha256 name different SHA-256 digests");
        spec.expected_sha256 = content_digest ? content_digest : checksum_header;
    }

    spec.replace = flag_value("replace", replace_text);
    spec.allow_version_mismatch = version_mismatch_value(version_mismatch_text);
    spec.allow_trailing_data = trailing_data_value(trailing_data_text);
    if (spec.replace && op.role != Role::admin)
        throw ProblemError(403, "forbidden",
                           "replace=true needs an admin token; token '" + op.token_name + "' has role " +
                               std::string(to_string(op.role)));
    catalogue.resolve(spec);  // a raw body's declaration is refused before its bytes are read

    if (!pending) {
        BodyBytes bytes(*request.body_source);
        pending.emplace(catalogue.receive(bytes));
    }
    domain::UploadResult result = catalogue.store(std::move(*pending), spec, op.actor());

    json body = to_json(result.artifact);
    if (result.replaced_artifact_id) body["replaced_artifact_id"] = *result.replaced_artifact_id;
    Response response = json_response(result.outcome == domain::UploadOutcome::unchanged ? 200 : 201, body);
    if (result.outcome != domain::UploadOutcome::unchanged)
        response.headers.set("Location", std::string(kBase) + "/products/" +
                                             util::percent_encode(result.artifact.product) + "/releases/" +
                                             util::percent_encode(result.artifact.version) + "/artifacts/" +
                                             std::to_string(result.artifact.id));
    return response;
}

// Runs the upload and, when it is refused (other than 413: that body must not be
// read), reads what is left of a small body before answering.
Response upload_route(Request& request, Services& services, const Operator& op) {
    Response response;
    try {
        response = guarded([&] { return upload(request, services, op); });
    } catch (const ProblemError& e) {
        response = e.to_response();
    }
    if (response.status >= 400 && response.status != 413 && request.body_source != nullptr) {
        try {
            std::vector<char> scratch(64 * 1024);
            std::uint64_t drained = 0;
            while (drained < kDrainOnErrorBytes) {
                std::size_t n = request.body_source->read(scratch);
                if (n == 0) break;
                drained += n;
            }
        } catch (const BodyError&) {
            // The body is broken anyway; the answer stands.
        }
    }
    return response;
}

}  // namespace

void add_operator_routes(Router& router, Services& services) {
    domain::Catalogue& catalogue = services.catalogue;
    const std::string base(kBase);
    // JSON bodies are buffered; only an admin gets one read (both routes that take one are admin's).
    const RouteOptions admin_json_body{.body = BodyPolicy::buffered,
                                       .max_body_bytes = kJsonBodyLimit,
                                       .authorize = operator_before_body(services, Role::admin)};

    // --- products
    router.add(Method::get, base + "/products", operator_route(services, Role::viewer, [&](Request&, const Operator&) {
                   json products = json::array();
                   for (const auto& p : catalogue.list_products()) products.push_back(to_json(p));
                   return json_response(200, {{"products", products}});
               }));
    router.add(Method::get, base + "/products/{product}",
               operator_route(services, Role::viewer, [&](Request& r, const Operator&) {
                   return json_response(200, to_json(catalogue.get_product(r.param("product"))));
               }));
    router.add(
        Method::patch, base + "/products/{product}",
        operator_route(services, Role::admin,
                       [&](Request& r, const Operator& op) {
                           json body = object_body(r, {"allow_project_mismatch"});
                           if (!body.contains("allow_project_mismatch") || !body["allow_project_mismatch"].is_boolean())
                               throw ProblemError(400, "invalid-body",
                                                  "allow_project_mismatch (true or false) is required");
                           return json_response(
                               200, to_json(catalogue.set_allow_project_mismatch(
                                        r.param("product"), body["allow_project_mismatch"].get<bool>(), op.actor())));
                       }),
        admin_json_body);

    // --- releases
    router.add(
        Method::get, base + "/products/{product}/releases",
        operator_route(services, Role::viewer, [&](Request& r, const Operator&) {
            auto page = catalogue.list_releases(r.param("product"), limit_param(r), cursor_param(r));
            json releases = json::array();
            for (const auto& release : page.releases) releases.push_back(to_json(release));
            return json_response(200, {{"releases", releases}, {"next_cursor", optional_string(page.next_cursor)}});
        }));
    router.add(Method::get, base + "/products/{product}/releases/{version}",
               operator_route(services, Role::viewer, [&](Request& r, const Operator&) {
                   return json_response(200, to_json(catalogue.get_release(r.param("product"), r.param("version"))));
               }));
    router.add(Method::del, base + "/products/{product}/releases/{version}",
               operator_route(services, Role::admin, [&](Request& r, const Operator& op) {
                   catalogue.delete_release(r.param("product"), r.param("version"), op.actor());
                   Response response;
                   response.status = 204;
                   return response;
               }));

    // --- artifacts
    router.add(Method::post, base + "/products/{product}/releases/{version}/artifacts",
               operator_route(services, Role::uploader,
                              [&](Request& r, const Operator& op) { return upload_route(r, services, op); }),
               RouteOptions{.body = BodyPolicy::streamed,
                            .max_body_bytes = services.config.max_artifact_bytes + kMultipartAllowance,
                            .authorize = operator_before_body(services, Role::uploader)});
    router.add(Method::get, base + "/products/{product}/releases/{version}/artifacts/{id}",
               operator_route(services, Role::viewer, [&](Request& r, const Operator&) {
                   return json_response(200, to_json(catalogue.get_artifact(r.param("product"), r.param("version"),
                                                                            artifact_id_param(r))));
               }));
    router.add(Method::del, base + "/products/{product}/releases/{version}/artifacts/{id}",
               operator_route(services, Role::admin, [&](Request& r, const Operator& op) {
                   catalogue.delete_artifact(r.param("product"), r.param("version"), artifact_id_param(r), op.actor());
                   Response response;
                   response.status = 204;
                   return response;
               }));

    // --- channels
    router.add(Method::get, base + "/products/{product}/channels",
               operator_route(services, Role::viewer, [&](Request& r, const Operator&) {
                   json channels = json::array();
                   for (const auto& c : catalogue.list_channels(r.param("product"))) channels.push_back(to_json(c));
                   return json_response(200, {{"channels", channels}});
               }));
    router.add(Method::get, base + "/products/{product}/channels/{channel}",
               operator_route(services, Role::viewer, [&](Request& r, const Operator&) {
                   return json_response(200, to_json(catalogue.get_channel(r.param("product"), r.param("channel"))));
               }));
    router.add(Method::put, base + "/products/{product}/channels/{channel}",
               operator_route(
                   services, Role::admin,
                   [&](Request& r, const Operator& op) {
                       json body = object_body(r, {"version", "allow_rollback", "force"});
                       if (!body.contains("version") || !body["version"].is_string())
                           throw ProblemError(400, "invalid-body", "version (a string) is required");
                       auto flag = [&](const char* name) {
                           if (!body.contains(name)) return false;
                           if (!body[name].is_boolean())
                               throw ProblemError(400, "invalid-body", std::string(name) + " must be true or false");
                           return body[name].get<bool>();
                       };
                       const bool allow_rollback = flag("allow_rollback");
                       const bool force = flag("force");  // past the 512+512 check (docs/rollouts.md)
                       return json_response(200, to_json(catalogue.set_channel(r.param("product"), r.param("channel"),
                                                                               body["version"].get<std::string>(),
                                                                               allow_rollback, op.actor(), force)));
                   }),
               admin_json_body);
    router.add(Method::del, base + "/products/{product}/channels/{channel}",
               operator_route(services, Role::admin, [&](Request& r, const Operator& op) {
                   catalogue.delete_channel(r.param("product"), r.param("channel"), op.actor());
                   Response response;
                   response.status = 204;
                   return response;
               }));

    // --- audit
    router.add(
        Method::get, base + "/audit", operator_route(services, Role::admin, [&](Request& r, const Operator&) {
            auto page = catalogue.list_audit(limit_param(r), cursor_param(r));
            json entries = json::array();
            for (const auto& e : page.entries) entries.push_back(domain::to_json(e));
            return json_response(200, {{"entries", entries}, {"next_cursor", optional_string(page.next_cursor)}});
        }));
}

}  // namespace otad::api
