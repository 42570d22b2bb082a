// Fuzzes the JSON request bodies of the API: the parsing and validation inside
// the handlers, driven through the real Router with an in-memory Request against
// a real (temporary) database, exactly as net dispatches them:
//   0  PATCH /api/v1/products/{p}                 {"allow_project_mismatch": bool}   admin
//   1  PUT   /api/v1/products/{p}/channels/{c}    {"version", "allow_rollback"}       admin
//   2  POST  /api/v1/devices/{id}/report          {"status", "version", "detail"}    device key
//   3  POST  /api/v1/products/{p}/device-keys     {"name", "key"}                     admin
//
// Input: byte 0 picks the route (modulo 4); the rest is the body. A body over the
// route's limit is skipped (net answers 413 before a handler runs).
// A finding is a crash, a sanitizer report, or an answer net would turn into a
// 500: any exception other than ProblemError, or a 5xx response. Bad JSON must
// get a 4xx problem document.
//
// The database lives in a temporary directory (under /dev/shm when there is one)
// and is rebuilt every kResetEvery inputs, so what successful calls add (keys,
// audit entries) cannot grow without bound over a long run.

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "otad/api/http.hpp"
#include "otad/api/problem.hpp"
#include "otad/api/router.hpp"
#include "otad/api/routes.hpp"
#include "otad/api/services.hpp"
#include "otad/config/config.hpp"
#include "otad/domain/blob_cache.hpp"
#include "otad/domain/catalogue.hpp"
#include "otad/domain/change_watch.hpp"
#include "otad/domain/device_keys.hpp"
#include "otad/domain/device_registry.hpp"
#include "otad/domain/device_updates.hpp"
#include "otad/domain/signing_keys.hpp"
#include "otad/domain/url_signer.hpp"
#include "otad/storage/blob_store.hpp"
#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/database.hpp"
#include "otad/storage/migrations.hpp"
#include "otad/storage/token_repository.hpp"
#include "otad/util/logging.hpp"

namespace {

using namespace otad;

constexpr std::string_view kAdminSecret = "fuzz-admin-secret-0123456789abcdef0123456789";
constexpr std::string_view kProduct = "thermo";
constexpr std::string_view kDevice = "dev-1";
constexpr unsigned kResetEvery = 2000;

[[noreturn]] void finding(const std::string& what) {
    __builtin_printf("json_body_fuzz: %s\n", what.c_str());
    std::abort();
}

class TempDir {
public:
    TempDir() {
        std::string pattern =
            (std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp") + std::string("/otad-json-fuzz-XXXXXX");
        if (::mkdtemp(pattern.data()) == nullptr) finding("mkdtemp failed");
        path_ = pattern;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
};

storage::DatabaseOptions database_options(const TempDir& dir) {
    storage::DatabaseOptions o;
    o.path = dir.path() / "otad.db";
    return o;
}

// What `otad serve` wires (cli/serve.cpp, cli/device_services.cpp), over a
// database with an admin token, a product with two releases, a device key and a
// known device.
struct Fixture {
    TempDir dir;
    config::Config config;
    storage::Database database{database_options(dir)};
    storage::BlobStore blobs{dir.path()};
    domain::BlobCache blob_cache{database, blobs};
    domain::UrlSigner url_signer{"fuzz-url-secret", 3600, 86400};
    domain::Catalogue catalogue{database, blobs, domain::CatalogueOptions{}, &blob_cache};
    domain::ChangeWatch watch{database};
    domain::SigningKeyRing signing_keys{database, domain::SignatureAlgorithm::ed25519, &watch};
    domain::DeviceKeys device_keys{database, &watch};
    domain::DeviceRegistry registry{database, domain::DeviceRegistryOptions{}};
    domain::DeviceUpdates updates{database,  signing_keys, url_signer,
                                  &registry, &watch,       domain::DeviceUpdatesOptions{}};
    api::Services services{config, database, blobs, catalogue, blob_cache, url_signer};
    api::Router router;
    std::string device_key;

    Fixture() {
        storage::migrate(database);
        signing_keys.ensure_active_key("fuzz");
        std::int64_t product_id = 0;
        database.write([&](storage::Connection& c) {
            storage::TokenRepository(c).create_with_secret("fuzz-admin", storage::TokenRole::admin, kAdminSecret);
            storage::CatalogueRepository repo(c);
            product_id = repo.create_product(kProduct).id;
            const std::string sha(64, 'a');
            repo.insert_blob(sha, 4);
            for (std::string_view version : {"1.0.0", "1.1.0"}) {
                storage::NewArtifact a;
                a.release_id = repo.create_release(product_id, version).id;
                a.chip = "esp32";
                a.layout = "ota";
                a.filename = "app.bin";
                a.sha256 = sha;
                a.md5 = std::string(32, 'b');
                a.size = 4;
                repo.insert_artifact(a);
            }
        });
        device_key = device_keys.create(product_id, kProduct, "fuzz-key", std::nullopt, "fuzz").secret;
        storage::DeviceSighting sighting;
        sighting.id = kDevice;
        sighting.product_id = product_id;
        sighting.chip = "esp32";
        sighting.layout = "ota";
        sighting.version = "1.0.0";
        sighting.channel = "stable";
        sighting.remote_address = "127.0.0.1:1";
        sighting.seen_at = 1'700'000'000;
        registry.record_poll(sighting, std::nullopt);
        registry.flush();
        services.device_updates = &updates;
        services.device_registry = &registry;
        services.device_keys = &device_keys;
        services.signing_keys = &signing_keys;
        router = api::build_router(services);
    }
};

struct Call {
    api::Method method;
    std::string path;
    bool as_device;
};

const Call kCalls[] = {
    {api::Method::patch, "/api/v1/products/thermo", false},
    {api::Method::put, "/api/v1/products/thermo/channels/stable", false},
    {api::Method::post, "/api/v1/devices/dev-1/report", true},
    {api::Method::post, "/api/v1/products/thermo/device-keys", false},
};

Fixture& fixture() {
    static std::unique_ptr<Fixture> current;
    static unsigned calls = 0;
    if (!current || ++calls % kResetEvery == 0) {
        current.reset();
        current = std::make_unique<Fixture>();
    }
    return *current;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    util::init_logging("off", util::LogFormat::text);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const Call& call = kCalls[data[0] % std::size(kCalls)];
    Fixture& f = fixture();

    api::Router::Match match = f.router.match(call.method, call.path);
    if (match.kind != api::Router::Match::Kind::found) finding("route not found: " + call.path);
    const std::uint64_t limit =
        match.route->options.max_body_bytes ? match.route->options.max_body_bytes : f.config.max_body_bytes;
    if (size - 1 > limit) return 0;

    api::Request request;
    request.method = call.method;
    request.method_name = std::string(api::to_string(call.method));
    request.target = call.path;
    request.path = call.path;
    request.params = std::move(match.params);
    request.remote_address = "127.0.0.1:40000";
    request.secure = true;
    request.body.assign(reinterpret_cast<const char*>(data) + 1, size - 1);
    request.content_length = request.body.size();
    request.headers.add("Content-Type", "application/json");
    request.headers.add("Authorization", "Bearer " + (call.as_device ? f.device_key : std::string(kAdminSecret)));

    api::Response response;
    try {
        response = match.route->handler(request);
    } catch (const api::ProblemError& e) {
        response = e.to_response();
    } catch (const std::exception& e) {
        finding(request.method_name + " " + call.path + ": escaped exception (a 500): " + e.what());
    }
    if (response.status >= 500)
        finding(request.method_name + " " + call.path + ": status " + std::to_string(response.status));
    return 0;
}
