#include "serve.hpp"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <thread>

#include "otad/api/routes.hpp"
#include "otad/domain/blob_cache.hpp"
#include "otad/domain/catalogue.hpp"
#include "otad/domain/token_usage.hpp"
#include "device_services.hpp"
#include "otad/domain/url_signer.hpp"
#include "otad/net/server.hpp"
#include "otad/platform/filesystem.hpp"
#include "otad/platform/resource_limits.hpp"
#include "otad/storage/audit_repository.hpp"
#include "otad/storage/token_repository.hpp"
#include "otad/util/logging.hpp"
#include "otad/version.hpp"

namespace otad::cli {
namespace {

net::Endpoint endpoint(const std::string& key, const std::string& text) {
    auto [host, port] = config::parse_host_port(key, text);
    return net::Endpoint{host, port};
}

// Makes sure an operator can log in on a fresh install: OTAD_BOOTSTRAP_TOKEN (the
// docker way) or, failing that, a generated admin token written to an owner-only file.
void ensure_admin_token(DataDir& d, spdlog::logger& log) {
    // OTAD_BOOTSTRAP_TOKEN_FILE names a file holding it (docker/compose secrets).
    std::string from_file;
    if (const char* file = std::getenv("OTAD_BOOTSTRAP_TOKEN_FILE"); file != nullptr && *file != '\0') {
        std::ifstream in(file);
        if (!in) throw std::runtime_error(std::string("cannot read OTAD_BOOTSTRAP_TOKEN_FILE ") + file);
        std::getline(in, from_file);
        while (!from_file.empty() && (from_file.back() == '\r' || from_file.back() == ' ')) from_file.pop_back();
    }
    const char* bootstrap = from_file.empty() ? std::getenv("OTAD_BOOTSTRAP_TOKEN") : from_file.c_str();
    d.database->write([&](storage::Connection& c) {
        storage::TokenRepository tokens(c);
        if (tokens.count_admins() > 0) return;
        storage::AuditRepository audit(c);
        if (bootstrap != nullptr && *bootstrap != '\0') {
            std::string_view secret(bootstrap);
            if (secret.size() < 16)
                throw std::runtime_error("OTAD_BOOTSTRAP_TOKEN must be at least 16 characters long");
            tokens.create_with_secret("bootstrap", storage::TokenRole::admin, secret);
            audit.append("system", "token.create", "token/bootstrap",
                         R"({"role":"admin","source":"OTAD_BOOTSTRAP_TOKEN"})");
            util::log_event(log, spdlog::level::info, "admin_token_bootstrapped", {{"name", "bootstrap"}});
            return;
        }
        auto created = tokens.create("admin", storage::TokenRole::admin);
        auto path = std::filesystem::path(d.config.data_dir) / "admin-token";
        platform::atomic_write_file(path, created.secret + "\n", /*owner_only=*/true);
        audit.append("system", "token.create", "token/admin", R"({"role":"admin","source":"first start"})");
        util::log_event(log, spdlog::level::warn, "first_start_admin_token_created",
                        {{"name", "admin"}, {"token_file", path.string()}});
    });
}

// Shares the open-file limit out (net::plan_descriptors), raising the soft
// limit toward the hard one first as far as the plan would like.
struct Descriptors {
    net::DescriptorPlan plan;
    std::optional<platform::OpenFileLimit> limit;  // nullopt: the OS has none (or will not tell)
};

Descriptors plan_descriptors(const config::Config& c) {
    const unsigned io_threads = c.io_threads ? c.io_threads : std::max(1u, std::thread::hardware_concurrency());
    const auto configured = static_cast<std::uint32_t>(c.max_connections);
    Descriptors d;
    d.limit = platform::raise_open_file_limit(net::wanted_open_files(configured, io_threads, c.worker_threads));
    const std::uint64_t soft = d.limit ? d.limit->soft : std::numeric_limits<std::uint64_t>::max();
    d.plan = net::plan_descriptors(soft, configured, io_threads, c.worker_threads);
    return d;
}

std::string limit_text(std::uint64_t value) {
    return value == std::numeric_limits<std::uint64_t>::max() ? std::string("unlimited") : std::to_string(value);
}

void warn_about_listener_choices(const config::Config& c, const Descriptors& d, spdlog::logger& log) {
    if (!c.http_listen.empty() && c.plain_http_serves_all_routes)
        util::log_event(log, spdlog::level::warn, "plain_http_serves_all_routes",
                        {{"http_listen", c.http_listen},
                         {"detail",
                          "plain_http_serves_all_routes is on: operator tokens and device keys cross the "
                          "network in clear on that listener"}});
    if (!d.plan.fits)
        util::log_event(log, spdlog::level::warn, "max_connections_over_file_limit",
                        {{"max_connections", std::to_string(d.plan.max_connections)},
                         {"open_file_limit", d.limit ? limit_text(d.limit->soft) : std::string("unknown")},
                         {"reserved", std::to_string(d.plan.reserved)},
                         {"detail",
                          "accept() will fail for want of descriptors before max_connections refuses "
                          "anyone: raise the limit (ulimit -n, LimitNOFILE=) or set max_connections "
                          "to 0 (derived)"}});
}

}  // namespace

int serve(const config::Config& cfg_in) {
    config::Config cfg = cfg_in;
    auto log = util::logger("otad");
    // One daemon per data dir: a second one would remove the first one's
    // in-flight upload temp files at start-up.
    platform::ensure_directory(cfg.data_dir, /*owner_only=*/true);
    auto lock = platform::FileLock::try_acquire(std::filesystem::path(cfg.data_dir) / "otad.lock");
    if (!lock.owns_lock()) throw std::runtime_error("another otad serve is already using data dir " + cfg.data_dir);
    DataDir d = open_data_dir(cfg);
    std::size_t stale_temps = d.blobs->cleanup_temp_files();
    std::size_t orphans = storage::collect_orphan_blobs(*d.database, *d.blobs);
    ensure_admin_token(d, *log);

    net::ServerOptions options;
    options.https = endpoint("listen", d.config.listen);
    if (!d.config.http_listen.empty()) options.http = endpoint("http_listen", d.config.http_listen);
    options.tls.cert_file = d.config.tls_cert_path();
    options.tls.key_file = d.config.tls_key_path();
    if (d.config.tls_cert.empty()) {
        if (net::ensure_self_signed_certificate(options.tls.cert_file, options.tls.key_file, d.config.tls_hostnames))
            util::log_event(*log, spdlog::level::info, "tls_certificate_generated",
                            {{"cert", options.tls.cert_file.string()}});
    }
    options.io_threads = d.config.io_threads;
    options.worker_threads = d.config.worker_threads;
    options.handshake_timeout = std::chrono::milliseconds(d.config.handshake_timeout_ms);
    options.header_timeout = std::chrono::milliseconds(d.config.header_timeout_ms);
    options.body_timeout = std::chrono::milliseconds(d.config.body_timeout_ms);
    options.send_timeout = std::chrono::milliseconds(d.config.send_timeout_ms);
    options.idle_timeout = std::chrono::milliseconds(d.config.idle_timeout_ms);
    options.shutdown_timeout = std::chrono::milliseconds(d.config.shutdown_timeout_ms);
    options.max_header_bytes = static_cast<std::uint32_t>(d.config.max_header_bytes);
    options.max_body_bytes = d.config.max_body_bytes;
    options.plain_http_serves_all_routes = d.config.plain_http_serves_all_routes;
    options.hsts_max_age_s = static_cast<std::uint32_t>(d.config.hsts_max_age_s);
    const Descriptors descriptors = plan_descriptors(d.config);
    options.max_connections = descriptors.plan.max_connections;
    options.max_concurrent_downloads = static_cast<std::uint32_t>(d.config.max_concurrent_downloads);
    options.retry_after_s = static_cast<std::uint32_t>(d.config.retry_after_s);
    options.max_concurrent_uploads = static_cast<std::uint32_t>(d.config.max_concurrent_uploads);
    options.min_upload_rate = d.config.min_upload_rate_bytes_per_s;
    options.max_buffered_body_bytes_total = d.config.max_buffered_body_bytes_total;

    // Shared by every connection: mapped blobs and download lookups (docs/downloads.md).
    domain::BlobCacheOptions cache_options;
    cache_options.max_blobs = static_cast<std::size_t>(descriptors.plan.mapped_files);  // one descriptor each
    domain::BlobCache blob_cache(*d.database, *d.blobs, cache_options);
    const auto url_signer =
        domain::UrlSigner::load_or_create(*d.database, static_cast<std::int64_t>(d.config.url_window_s),
                                          static_cast<std::int64_t>(d.config.url_validity_s));
    domain::Catalogue catalogue(*d.database, *d.blobs, domain::CatalogueOptions{d.config.max_artifact_bytes},
                                &blob_cache);
    api::Services services{d.config, *d.database, *d.blobs, catalogue, blob_cache, url_signer};
    // Device API: signing keys, device keys, batched registry, poll decisions (docs/device-api.md).
    DeviceServices device(*d.database, url_signer, d.config);
    device.attach(services);
    // Operator tokens' "last used", written in batches like device last-seen.
    domain::TokenUsage token_usage(
        *d.database, std::chrono::milliseconds(std::max<std::uint64_t>(d.config.device_flush_interval_ms, 1)));
    services.token_usage = &token_usage;
    // Orphans left by a crash go once they are an hour old, not at the next start-up.
    storage::OrphanBlobCollector orphan_collector(*d.database, *d.blobs,
                                                  std::chrono::seconds(d.config.orphan_collect_interval_s));
    api::Router router = api::build_router(services);
    net::Server server(options, router, util::logger("access"), util::logger("net"));
    auto bound = server.bind();

    util::log_event(*log, spdlog::level::info, "otad_started",
                    {{"version", kVersion},
                     {"data_dir", std::filesystem::absolute(d.config.data_dir).string()},
                     {"database", d.config.database_path().string()},
                     {"schema_version", std::to_string(d.schema_now)},
                     {"migrated_from", std::to_string(d.schema_before)},
                     {"temp_files_removed", std::to_string(stale_temps)},
                     {"orphan_blobs_removed", std::to_string(orphans)},
                     {"orphan_collect_interval_s", std::to_string(d.config.orphan_collect_interval_s)},
                     {"open_file_limit", descriptors.limit ? limit_text(descriptors.limit->soft) : "unknown"},
                     {"max_connections", std::to_string(descriptors.plan.max_connections)},
                     {"max_connections_from", descriptors.plan.derived ? "open_file_limit" : "config"},
                     {"plain_http_routes", d.config.http_listen.empty()            ? "off"
                                           : d.config.plain_http_serves_all_routes ? "all"
                                                                                   : "device"}});
    warn_about_listener_choices(d.config, descriptors, *log);
    for (const auto& l : bound) {
        std::string host = l.bound.host.find(':') != std::string::npos ? "[" + l.bound.host + "]" : l.bound.host;
        std::string address = host + ":" + std::to_string(l.bound.port);
        util::log_event(*log, spdlog::level::info, "listening",
                        {{"scheme", l.scheme}, {"address", address}, {"url", l.scheme + "://" + address + "/"}});
    }
    device.start();
    token_usage.start();
    orphan_collector.start();
    server.run();
    orphan_collector.stop();
    token_usage.stop();
    device.stop();  // the last batch of device sightings
    util::log_event(*log, spdlog::level::info, "otad_stopped", {});
    return 0;
}

}  // namespace otad::cli
