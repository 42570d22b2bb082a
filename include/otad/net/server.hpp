#pragma once
// The HTTP(S) front door: listeners, TLS, per-connection sessions with deadlines
// and limits, handler dispatch, graceful shutdown. Beast and Asio stay behind this
// header (see src/net/); callers only see options and a run() that blocks.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "otad/api/router.hpp"

namespace otad::net {

struct Endpoint {
    std::string host;        // IP literal or name; "0.0.0.0" / "::" for all
    std::uint16_t port = 0;  // 0 picks a free port (tests)
};

struct TlsOptions {
    std::filesystem::path cert_file;  // PEM chain
    std::filesystem::path key_file;   // PEM private key
};

struct ServerOptions {
    std::optional<Endpoint> https;  // HTTPS listener
    std::optional<Endpoint> http;   // optional plain-HTTP listener (legacy devices)
    TlsOptions tls;
    unsigned io_threads = 0;      // 0: hardware concurrency
    unsigned worker_threads = 4;  // handlers that block (SQLite, fsync)
    std::chrono::milliseconds handshake_timeout{10'000};
    std::chrono::milliseconds header_timeout{10'000};  // whole request header (and a new connection's first byte)
    // A buffered body must arrive whole within body_timeout; a streamed one
    // (upload) may wait this long for each read, and beyond it must average
    // min_upload_rate (see streamed_read_deadline in request_framing.hpp).
    std::chrono::milliseconds body_timeout{30'000};
    std::chrono::milliseconds send_timeout{30'000};      // response cut after this long without progress
    std::chrono::milliseconds idle_timeout{60'000};      // keep-alive wait for the next request's first byte
    std::chrono::milliseconds shutdown_timeout{10'000};  // in-flight grace on SIGTERM
    std::uint32_t max_header_bytes = 8 * 1024;           // 431 past it
    std::uint64_t max_body_bytes = 1024 * 1024;          // default per-route body limit
    std::uint32_t max_connections = 20'000;              // accepted sockets at once (otad serve: plan_descriptors)
    std::uint32_t max_concurrent_downloads = 1'000;      // 503 + Retry-After past it
    // Streamed bodies (uploads) at once, each on a thread of the upload pool
    // (never the worker pool); 503 + Retry-After past it.
    std::uint32_t max_concurrent_uploads = 8;
    std::uint64_t min_upload_rate = 4 * 1024;  // bytes/s an upload must average; 0: off
    // Memory for buffered request bodies across all connections: a body's
    // Content-Length (or, chunked, the route's limit) is reserved before it is
    // read; 503 + Retry-After when the reservation does not fit.
    std::uint64_t max_buffered_body_bytes_total = 64ull * 1024 * 1024;
    std::uint32_t retry_after_s = 10;     // base of the jittered Retry-After
    bool install_signal_handlers = true;  // SIGTERM/SIGINT: graceful stop; SIGHUP: reload_tls()
    // The plain-HTTP listener serves only routes marked RouteOptions::on_plain_listener
    // (device routes); true serves every route there, operator tokens included, in clear.
    bool plain_http_serves_all_routes = false;
    // Strict-Transport-Security max-age (seconds) on every HTTPS answer; 0: no header.
    std::uint32_t hsts_max_age_s = 31'536'000;
};

struct ListenerInfo {
    std::string scheme;  // "https" or "http"
    Endpoint bound;      // with the real port
};

class Server {
public:
    Server(ServerOptions options, const api::Router& router, std::shared_ptr<spdlog::logger> access_log,
           std::shared_ptr<spdlog::logger> log);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // `router` must outlive the server. Null loggers default to util::logger("access")
    // and util::logger("otad").
    //
    // Binds the listeners (throws std::runtime_error naming the endpoint or the
    // certificate on failure) and returns what was bound. Idempotent; run() calls it
    // if needed.
    std::vector<ListenerInfo> bind();
    // Serves on io_threads threads (this one included) until stop() or a signal.
    // A graceful stop closes the listeners and idle connections at once, lets
    // requests in flight finish (answered with Connection: close), and returns when
    // the last connection ends or shutdown_timeout passes; a second signal stops
    // the I/O at once. Either way run() then waits for handlers already running on
    // the worker pool to return (they are never interrupted; a blocked
    // BodySource::read throws BodyError(closed)). Call it once.
    void run();
    // Thread-safe, callable before or during run(): begins a graceful stop.
    void stop();
    // Thread-safe; takes effect while run() runs (SIGHUP does the same): reads
    // tls.cert_file and tls.key_file again. New handshakes use the new pair;
    // connections already open keep theirs. A pair that fails to load (missing,
    // malformed, mismatched) is logged as tls_reload_failed and the current one
    // kept. Logged as tls_certificate_reloaded with the new expiry.
    void reload_tls();

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// How the process's open-file limit is shared out at start-up. Connections are
// what grows with load; the rest is reserved so that a full house of
// connections never makes a blob open, a database file or an upload fail with
// EMFILE (and accept() never fails in a loop).
struct DescriptorPlan {
    std::uint32_t max_connections = 0;  // the configured value, or derived from the limit
    bool derived = false;               // max_connections came from the limit
    bool fits = true;                   // false: a configured max_connections exceeds what the limit leaves
    std::uint64_t mapped_files = 0;     // download blobs kept open and mapped (BlobCache max_blobs)
    std::uint64_t reserved = 0;         // descriptors kept for everything but connections (mapped files included)
};

// Connections at most when max_connections is left to otad, whatever the limit:
// beyond this, memory rather than descriptors is what runs out.
inline constexpr std::uint32_t kMaxDerivedConnections = 20'000;

// Shares `open_file_limit` (the soft RLIMIT_NOFILE; UINT64_MAX: unlimited) out.
// Reserved: 32 (listeners, logs, the data-dir lock, signals), 4 per I/O thread
// (epoll, eventfd, timerfd), 4 per worker thread (its database connection's file
// and WAL, an upload's temp file) and the mapped blobs: an eighth of the limit,
// from 16 to 1024. `configured_max_connections` 0 derives max_connections: what
// the limit leaves, at most kMaxDerivedConnections and at least 1 (a quarter of
// the limit when the reserve alone exceeds it).
DescriptorPlan plan_descriptors(std::uint64_t open_file_limit, std::uint32_t configured_max_connections,
                                unsigned io_threads, unsigned worker_threads);

// The open-file limit plan_descriptors would like, to raise the soft limit to
// (toward the hard one) before planning: room for the configured (or the largest
// derived) number of connections plus the largest reserve.
std::uint64_t wanted_open_files(std::uint32_t configured_max_connections, unsigned io_threads, unsigned worker_threads);

// Creates an ECDSA P-256 self-signed certificate (X.509 v3, SHA-256, valid ten
// years) for `host_names` (DNS names or IP literals, as subjectAltName; empty:
// localhost, 127.0.0.1, ::1) unless both files already exist. The key file is
// written owner-only (0600); each file is written to a temporary name and renamed.
// A key without its certificate is kept and certified; a certificate without its
// key throws std::runtime_error (never overwritten). A name that is neither a DNS
// name nor an IP literal throws std::invalid_argument. Returns true when it wrote
// a certificate.
bool ensure_self_signed_certificate(const std::filesystem::path& cert_file, const std::filesystem::path& key_file,
                                    const std::vector<std::string>& host_names);

}  // namespace otad::net
