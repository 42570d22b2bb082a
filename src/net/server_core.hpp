#pragma once
// Private to src/net: the state the listeners (server.cpp) and the connection
// sessions (session.cpp) share. Asio only, no Beast header: server.cpp includes it.

#include <atomic>
#include <chrono>
#include <exception>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "otad/net/request_framing.hpp"
#include "otad/net/server.hpp"
#include "otad/util/logging.hpp"

namespace otad::net::detail {

namespace asio = boost::asio;

// What the server knows of one live connection: enough to close it when draining.
struct ConnectionControl {
    // Closes the connection if it is waiting for a request (TLS handshake or
    // keep-alive idle). Set and cleared by the session; only ever called on the
    // connection's own executor.
    std::function<void()> close_if_idle;
    // A parked connection (idle TLS keep-alive, see Session::park) has no timer
    // of its own: it stores its idle deadline here (steady clock, ms; 0 while not
    // parked) and the server's idle sweep closes it once the deadline passes.
    std::atomic<std::int64_t> parked_deadline_ms{0};
};

// Milliseconds of the steady clock, the unit of parked_deadline_ms.
inline std::int64_t steady_now_ms() noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

class ServerCore {
public:
    ServerCore(const ServerOptions& options, const api::Router& router, spdlog::logger& access_log, spdlog::logger& log,
               asio::thread_pool::executor_type workers, asio::thread_pool::executor_type uploads)
        : options(options),
          router(router),
          access_log(access_log),
          log(log),
          workers(workers),
          uploads(uploads),
          buffered_bodies(options.max_buffered_body_bytes_total) {}

    const ServerOptions& options;
    const api::Router& router;
    spdlog::logger& access_log;
    spdlog::logger& log;
    asio::thread_pool::executor_type workers;  // handlers that may block on the disk or SQLite
    // Handlers of streamed routes, which block on the network while their body
    // trickles in: a pool of their own (max_concurrent_uploads threads), so
    // they never hold the threads other requests need.
    asio::thread_pool::executor_type uploads;
    // Memory for buffered request bodies, shared by every connection.
    ByteBudget buffered_bodies;

    // Accepting: false (and nothing counted) past max_connections.
    bool try_admit_connection();
    // Called once per accepted connection by its session, on the connection's executor.
    std::uint64_t register_connection(asio::io_context::executor_type executor,
                                      std::shared_ptr<ConnectionControl> control);
    // Called when the session ends; finishing the last one completes a drain.
    void unregister_connection(std::uint64_t id);
    // Gives back the slot of an admitted connection whose session could not be
    // created (SSL_new or allocation failed), so max_connections stays exact.
    void release_admitted_connection() { unregister_connection(0); }  // ids start at 1: nothing to erase
    std::uint32_t connection_count() const noexcept { return connections_.load(); }
    // Logs at warn, at most once per second, that a connection was refused.
    void note_refused_connection();

    // Downloads in progress (routes with is_download), capped by max_concurrent_downloads.
    bool try_begin_download();
    void end_download() noexcept;
    // Streamed-body handlers in progress, capped by max_concurrent_uploads (one
    // upload-pool thread each, so an admitted upload never waits for a thread).
    bool try_begin_upload();
    void end_upload() noexcept;
    // Retry-After for a 503: retry_after_s plus a random jitter in [0, retry_after_s].
    std::uint32_t retry_after_seconds();

    // Closes (through close_if_idle, on each one's executor) the parked
    // connections whose idle deadline has passed. Called periodically by Server.
    void close_expired_parked_connections();

    // Graceful stop: new requests are refused, idle connections closed, and
    // `on_drained` runs (once, on some thread) when the last connection ends.
    void begin_drain(std::function<void()> on_drained);
    bool draining() const noexcept { return draining_.load(); }
    // After the I/O threads have stopped: blocked body reads give up.
    void mark_stopped() noexcept { stopped_.store(true); }
    bool stopped() const noexcept { return stopped_.load(); }

private:
    std::atomic<std::uint32_t> connections_{0};
    std::atomic<std::uint32_t> downloads_{0};
    std::atomic<std::uint32_t> uploads_{0};
    std::atomic<bool> draining_{false};
    std::atomic<bool> stopped_{false};
    std::atomic<std::int64_t> last_refusal_log_ms_{0};
    std::atomic<std::uint64_t> refused_since_log_{0};

    struct Entry {
        asio::io_context::executor_type executor;  // 8 bytes, not a type-erased 48 (one per connection)
        std::shared_ptr<ConnectionControl> control;
    };
    std::mutex mutex_;
    std::uint64_t next_id_ = 1;
    std::unordered_map<std::uint64_t, Entry> live_;
    std::function<void()> on_drained_;
};

// Completion handler for a connection's coroutine (co_spawn): an exception that
// escapes it ends that connection only, and is logged as connection_failed.
inline auto log_connection_failure(spdlog::logger& log) {
    return [&log](std::exception_ptr error) {
        if (!error) return;
        try {
            std::rethrow_exception(error);
        } catch (const std::exception& e) {
            util::log_event(log, spdlog::level::err, "connection_failed", {{"error", e.what()}});
        }
    };
}

// Serves one accepted connection to its end: TLS handshake when `tls` is set,
// then requests until the peer or a limit closes it. Runs on the socket's
// executor, which must never run two handlers at once (a single-threaded
// io_context, as Server gives each connection).
// The socket is bound to its I/O thread's io_context (concrete executor type).
using ConnectionSocket = asio::basic_stream_socket<asio::ip::tcp, asio::io_context::executor_type>;
asio::awaitable<void> serve_connection(ConnectionSocket socket, ServerCore& core, asio::ssl::context* tls);

}  // namespace otad::net::detail
