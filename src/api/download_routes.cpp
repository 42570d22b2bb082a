// Firmware downloads: GET and HEAD of /api/v1/blobs/{sha256} (content-addressed,
// what manifests hand out, usually pre-signed) and of the friendly path
// /firmware/{product}/{version}/{filename}. docs/downloads.md is the contract;
// docs/protocols.md#server-rules (rules 1-6) and docs/protocols.md#esp-https-ota say
// why every detail is the way it is.
//
// Both routes run on the I/O thread (runs_inline): a cache hit costs a mutex and
// a hash lookup, the answer is a header block plus FileSlices of the mapped blob
// that net sends without copying (sendfile on plain HTTP). A miss does one short
// indexed SQLite read and, the first time, an open+mmap (BlobCache).

#include <algorithm>
#include <string>
#include <string_view>

#include "otad/api/auth.hpp"
#include "otad/api/device_auth.hpp"
#include "otad/api/download_response.hpp"
#include "otad/api/problem.hpp"
#include "otad/api/routes.hpp"
#include "otad/domain/blob_cache.hpp"
#include "otad/domain/url_signer.hpp"
#include "otad/storage/blob_store.hpp"
#include "otad/storage/error.hpp"
#include "otad/util/crypto.hpp"
#include "otad/util/strings.hpp"

namespace otad::api {
namespace {

constexpr std::int64_t kOneYear = 31'536'000;
// The friendly path can be re-bound to other bytes (a release deleted and
// uploaded again under the same version), so caches keep it briefly and then
// revalidate with the ETag (a 304 when nothing changed).
constexpr std::string_view kFriendlyMaxAge = "max-age=300";

// A digest of the presented device key ("" for none), so access decisions can be
// remembered without keeping the secret itself.
std::string key_digest(const Request& request) {
    std::string_view key = presented_device_key(request);
    return key.empty() ? std::string() : util::sha256_hex(key);
}

// require_device_access, remembered by the cache for a short while so a run of
// range requests checks the key once. Returns the principal for the access log
// ("key:<name>", or "" for an open product); throws ProblemError 401 like
// require_device_access when the product needs a key the request lacks.
std::string require_cached_device_access(const Request& request, Services& services, std::int64_t product_id,
                                         const std::string& digest) {
    auto& cache = services.blob_cache;
    std::optional<std::optional<std::string>> grant = cache.recall_access(product_id, digest);
    if (!grant) {
        grant = require_device_access(request, services, product_id);
        cache.remember_access(product_id, digest, *grant);
    }
    return *grant ? "key:" + **grant : std::string();
}

// Maps failures of the cache's storage to answers: a busy database asks the
// device to come back; anything else is the dispatcher's 500.
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

// A pre-signed query: valid, or 403. A signature verified before is remembered
// (BlobCache), so only its expiry is compared again.
void check_presigned(const Request& request, Services& services, std::string_view sha256) {
    const std::string_view expires = request.query_param("expires").value_or("");
    const std::string_view sig = request.query_param("sig").value_or("");
    // Only blob names were ever signed; this also keeps the memo key below unambiguous
    // (hex, digits and base64url around one '?' and one '&').
    if (!storage::BlobStore::is_valid_sha256(sha256))
        throw ProblemError(403, "url-invalid", "this download URL's signature is not valid");
    std::string url;
    url.reserve(sha256.size() + expires.size() + sig.size() + 2);
    url.append(sha256).append("?").append(expires).append("&").append(sig);
    auto check = domain::PresignCheck::ok;
    if (!services.blob_cache.recall_verified_url(url)) {
        check = services.url_signer.verify_blob_path(sha256, expires, sig, util::unix_now());
        if (check != domain::PresignCheck::bad_signature) services.blob_cache.remember_verified_url(url);
    }
    if (check == domain::PresignCheck::ok) {
        // Remembered or not: the expiry against the clock (verify_blob_path accepted its digits).
        auto expiry = util::parse_u64(expires);
        if (!expiry || static_cast<std::int64_t>(*expiry) <= util::unix_now()) check = domain::PresignCheck::expired;
    }
    if (check == domain::PresignCheck::expired)
        throw ProblemError(403, "url-expired", "this download URL has expired; ask for a fresh one");
    if (check != domain::PresignCheck::ok)
        throw ProblemError(403, "url-invalid", "this download URL's signature is not valid");
}

Response not_found_blob(std::string_view sha256) { return problem(404, "not-found", "no blob " + std::string(sha256)); }

// /api/v1/blobs/{sha256}: who may fetch it (docs/downloads.md "Authorization"):
//  1. a pre-signed query (expires + sig): valid -> yes; expired or forged -> 403,
//     whatever else the request carries;
//  2. an operator token (Authorization: Bearer), any role;
//  3. device access to any product with an artifact using the blob: its device key,
//     or no key at all when that product is open (its friendly path is public anyway).
Response get_blob(Request& request, Services& services) {
    std::string_view sha256 = request.param("sha256");
    const bool presigned = request.query_param("sig") || request.query_param("expires");
    if (presigned) check_presigned(request, services, sha256);
    auto blob = services.blob_cache.blob(sha256);
    if (!blob) return not_found_blob(sha256);

    Representation rep;
    rep.blob = blob.get();
    rep.filename = blob->filenames.empty() ? std::string_view() : std::string_view(blob->filenames.front());
    std::string fallback_name;
    if (rep.filename.empty()) {
        fallback_name = blob->sha256 + ".bin";
        rep.filename = fallback_name;
    }
    rep.last_modified = blob->last_modified;
    rep.last_modified_unix = blob->created_at;

    std::string principal;
    if (presigned) {
        // Shared caches may keep it, but not past the URL's own expiry.
        std::int64_t expires =
            static_cast<std::int64_t>(util::parse_u64(request.query_param("expires").value_or("")).value_or(0));
        std::int64_t max_age = std::clamp<std::int64_t>(expires - util::unix_now(), 0, kOneYear);
        rep.cache_control = "public, max-age=" + std::to_string(max_age) + ", immutable";
        principal = "presigned";
    } else {
        bool allowed = false;
        bool private_answer = true;
        const std::string digest = key_digest(request);
        // A device's run of range requests: its grant is remembered, no SQL at all.
        for (std::int64_t product_id : blob->product_ids) {
            if (auto grant = services.blob_cache.recall_access(product_id, digest)) {
                principal = *grant ? "key:" + **grant : std::string();
                allowed = true;
                private_answer = grant->has_value();
                break;
            }
        }
        if (!allowed && !authorization_credential(request, "Bearer").empty()) {
            try {
                principal = require_operator(request, services, Role::viewer).actor();
                allowed = true;
            } catch (const ProblemError& e) {
                if (e.status() != 401) throw;  // not an operator token: maybe a device key
            }
        }
        if (!allowed) {
            for (std::int64_t product_id : blob->product_ids) {
                try {
                    principal = require_cached_device_access(request, services, product_id, digest);
                } catch (const ProblemError& e) {
                    if (e.status() != 401) throw;
                    continue;  // not this product's key: maybe another user of the blob
                }
                allowed = true;
                private_answer = !principal.empty();  // an open product: no credential involved
                break;
            }
        }
        if (!allowed) {
            Response denied = problem(401, "unauthorized",
                                      "this blob needs a pre-signed URL, an operator token, or the device key of a "
                                      "product that uses it");
            denied.headers.set("WWW-Authenticate", "Bearer realm=\"otad\"");
            return denied;
        }
        rep.cache_control = std::string(private_answer ? "private" : "public") +
                            ", max-age=" + std::to_string(kOneYear) + ", immutable";
    }
    Response response = download_response(request, rep);
    response.principal = std::move(principal);
    return response;
}

// /firmware/{product}/{version}/{filename}: the product's device access rules
// (open products need no key), checked before saying whether the file exists.
Response get_firmware(Request& request, Services& services) {
    auto found =
        services.blob_cache.artifact(request.param("product"), request.param("version"), request.param("filename"));
    std::string principal;
    bool private_answer = false;
    if (found.product_id != 0) {
        principal = require_cached_device_access(request, services, found.product_id, key_digest(request));
        private_answer = !principal.empty();
    }
    if (found.status == domain::ArtifactLookup::Status::ambiguous)
        throw ProblemError(409, "ambiguous-file", found.detail);
    if (found.status != domain::ArtifactLookup::Status::found) throw ProblemError(404, "not-found", found.detail);

    const domain::CachedArtifact& artifact = *found.artifact;
    Representation rep;
    rep.blob = artifact.blob.get();
    rep.filename = artifact.filename;
    rep.last_modified = artifact.last_modified;
    rep.last_modified_unix = artifact.created_at;
    rep.cache_control = std::string(private_answer ? "private, " : "public, ") + std::string(kFriendlyMaxAge);
    Response response = download_response(request, rep);
    response.principal = std::move(principal);
    return response;
}

}  // namespace

void add_download_routes(Router& router, Services& services) {
    // HEAD falls back to these GET routes (Router); net counts GETs, not HEADs,
    // against max_concurrent_downloads.
    // Devices without TLS fetch firmware on the plain listener too.
    const RouteOptions options{.runs_inline = true, .is_download = true, .on_plain_listener = true};
    router.add(
        Method::get, "/api/v1/blobs/{sha256}",
        [&services](Request& request) { return guarded([&] { return get_blob(request, services); }); }, options);
    router.add(
        Method::get, "/firmware/{product}/{version}/{filename}",
        [&services](Request& request) { return guarded([&] { return get_firmware(request, services); }); }, options);
}

}  // namespace otad::api
