// HTTP/1.1 sessions: one coroutine per connection, one templated code path for
// TLS and plain TCP. The server's only user of Beast's HTTP parser (the other user
// is http_client.cpp, the command-line client); asio_beast_impl.cpp compiles Beast once.
//
// A request's way: wait for its first byte (idle deadline) -> header (one
// deadline, size limit) -> framing (Transfer-Encoding, Host) -> route -> the
// route's body policy and limit -> pre-body authorization -> admission ->
// body (buffered under the memory budget and one deadline, or streamed to the
// handler through BodySource) -> handler (streamed: the upload pool; else the
// worker pool unless the route runs inline) -> response (header block and a
// small body in one write tried at once; anything left under a progress
// watchdog) -> one access-log line.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <variant>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

#include "otad/api/problem.hpp"
#include "otad/net/access_log.hpp"
#include "otad/net/request_framing.hpp"
#include "otad/net/request_target.hpp"
#include "otad/platform/send_file.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"
#include "listener_policy.hpp"
#include "server_core.hpp"
#include "tls_socket_stream.hpp"

namespace otad::net::detail {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;
using PlainStream = beast::tcp_stream;
// OpenSSL straight on the socket: no per-connection Asio engine buffers (memory per idle connection).
using TlsStream = TlsSocketStream;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Bytes offered to one write_some from memory. Big enough for TLS to fill
// 16 KiB records back to back; the deadline is re-armed before each write, so
// a slow device that keeps taking bytes is never cut off.
constexpr std::size_t max_write_size = 1024 * 1024;
// A body up to this size (text or file bytes) is sent in the same write as the header.
constexpr std::uint64_t coalesce_limit = 16 * 1024;
// Closing: how long to wait for TLS close_notify, and how much unread request
// body to swallow so the client sees our answer instead of a reset.
constexpr std::chrono::seconds close_timeout{2};
constexpr std::chrono::seconds linger_timeout{3};
constexpr std::chrono::milliseconds linger_gap{500};
constexpr std::uint64_t linger_max_bytes = 4 * 1024 * 1024;
constexpr std::string_view continue_response = "HTTP/1.1 100 Continue\r\n\r\n";
// A TLS keep-alive connection with no next request after this long is parked
// (Session::park): busy clients (esp_https_ota's 4 KiB ranges, wrk) send their
// next request sooner and never pay for parking and waking; idle ones do not
// keep a coroutine stack for the rest of idle_timeout.
constexpr std::chrono::milliseconds park_after{100};
// Plain TCP: bytes read at once after a request's first byte (Beast starts at 512 too).
constexpr std::size_t initial_read_size = 1024;

// The peer went away or a deadline passed: nothing to answer, just close.
bool is_disconnect(const error_code& ec) {
    return ec == asio::error::eof || ec == asio::ssl::error::stream_truncated || ec == asio::error::connection_reset ||
           ec == asio::error::connection_aborted || ec == asio::error::broken_pipe ||
           ec == asio::error::operation_aborted || ec == asio::error::not_connected ||
           ec == asio::error::bad_descriptor || ec == beast::error::timeout || ec == http::error::end_of_stream ||
           ec == http::error::partial_message;
}

// The io_context behind a connection's executor (Server binds every socket to one).
asio::io_context::executor_type io_executor_of(const asio::io_context::executor_type& executor) { return executor; }
asio::io_context::executor_type io_executor_of(const asio::any_io_executor& executor) {
    if (const auto* io = executor.target<asio::io_context::executor_type>()) return *io;
    throw std::logic_error("connection socket not bound to an io_context");
}

std::string endpoint_text(const tcp::endpoint& e) {
    auto address = e.address();
    if (address.is_v6() && address.to_v6().is_v4_mapped())
        address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
    // Appended piecewise: g++ 12 warns falsely (-Wrestrict) on "[" + std::string.
    std::string text;
    if (address.is_v6()) text += '[';
    text += address.to_string();
    if (address.is_v6()) text += ']';
    text += ':';
    text += std::to_string(e.port());
    return text;
}

std::string_view canonical_name(std::string_view name) {
    // Handlers write canonical names ("Content-Type", "ETag"); only a name that
    // starts in lower case is looked up (a hash lookup per header otherwise).
    if (name.empty() || name.front() < 'a' || name.front() > 'z') return name;
    auto field = http::string_to_field(name);
    if (field == http::field::unknown) return name;
    auto known = http::to_string(field);
    return {known.data(), known.size()};
}

// The Date header's value, formatted once per second per I/O thread.
std::string_view current_http_date() {
    thread_local std::int64_t cached_second = -1;
    thread_local std::string cached;
    const std::int64_t now = util::unix_now();
    if (now != cached_second) {
        cached = util::http_date(now);
        cached_second = now;
    }
    return cached;
}

// Framing is net's job; handlers never set these.
bool is_net_owned_header(std::string_view name) {
    switch (name.size()) {  // compare only with the names of the same length
        case 4:
            return api::iequals(name, "Date");
        case 6:
            return api::iequals(name, "Server");
        case 10:
            return api::iequals(name, "Connection") || api::iequals(name, "Keep-Alive");
        case 14:
            return api::iequals(name, "Content-Length");
        case 17:
            return api::iequals(name, "Transfer-Encoding");
        default:
            return false;
    }
}

bool is_safe_header(std::string_view name, std::string_view value) {
    if (name.empty()) return false;
    for (char c : name)
        if (c <= ' ' || c == ':' || static_cast<unsigned char>(c) >= 0x7f) return false;
    for (char c : value)  // one comparison per character in the common case
        if (static_cast<unsigned char>(c) < 0x20 && (c == '\r' || c == '\n' || c == '\0')) return false;
    return true;
}

std::string_view reason_for(unsigned status) {
    auto known = http::int_to_status(status);
    if (known != http::status::unknown) return http::obsolete_reason(known);
    return api::reason_phrase(status);
}

// `extra` is room reserved for a body the caller appends (coalesced small bodies).
std::string build_header_block(const api::Response& res, bool has_length, std::uint64_t content_length, bool keep_alive,
                               unsigned version, spdlog::logger& log, std::size_t extra) {
    std::string out;
    out.reserve(512 + extra);
    out += "HTTP/1.1 ";
    out += std::to_string(res.status);
    out += ' ';
    out += reason_for(res.status);
    out += "\r\nServer: otad\r\nDate: ";
    out += current_http_date();
    out += "\r\n";
    for (const auto& [name, value] : res.headers.fields()) {
        if (is_net_owned_header(name)) continue;
        if (!is_safe_header(name, value)) {
            util::log_event(log, spdlog::level::err, "response_header_dropped", {{"name", name}});
            continue;
        }
        out += canonical_name(name);
        out += ": ";
        out += value;
        out += "\r\n";
    }
    // Exact Content-Length, canonical casing, never chunked: device updaters parse it by hand.
    if (has_length) {
        out += "Content-Length: ";
        out += std::to_string(content_length);
        out += "\r\n";
    }
    if (!keep_alive)
        out += "Connection: close\r\n";
    else if (version == 10)
        out += "Connection: keep-alive\r\n";
    out += "\r\n";
    return out;
}

api::Response problem_for(const api::BodyError& e) {
    switch (e.kind()) {
        case api::BodyError::Kind::too_large:
            return api::problem(413, "payload-too-large", e.what());
        case api::BodyError::Kind::timeout:
            return api::problem(408, "request-timeout", e.what());
        case api::BodyError::Kind::closed:
        case api::BodyError::Kind::malformed:
            break;
    }
    return api::problem(400, "bad-request", e.what());
}

api::BodyError body_error_from(const error_code& ec, std::uint64_t limit) {
    using Kind = api::BodyError::Kind;
    if (ec == http::error::body_limit)
        return {Kind::too_large, "request body exceeds the limit of " + std::to_string(limit) + " bytes"};
    if (ec == beast::error::timeout) return {Kind::timeout, "request body not received in time"};
    if (is_disconnect(ec)) return {Kind::closed, "connection closed before the request body ended"};
    return {Kind::malformed, "malformed request body: " + ec.message()};
}

api::Response invoke_handler(const api::Route& route, api::Request& request, spdlog::logger& log) {
    try {
        return route.handler(request);
    } catch (const api::ProblemError& e) {
        return e.to_response();
    } catch (const api::BodyError& e) {
        return problem_for(e);
    } catch (const std::exception& e) {
        util::log_event(log, spdlog::level::err, "handler_failed",
                        {{"method", request.method_name}, {"path", request.path}, {"error", e.what()}});
    } catch (...) {
        util::log_event(log, spdlog::level::err, "handler_failed",
                        {{"method", request.method_name}, {"path", request.path}, {"error", "unknown exception"}});
    }
    return api::problem(500, "internal-error", "internal error");
}

// A pre-body authorization hook's verdict; its exceptions are answered as a handler's are.
std::optional<api::Response> invoke_authorizer(const api::Route& route, api::Request& request, spdlog::logger& log) {
    try {
        return route.options.authorize(request);
    } catch (const api::ProblemError& e) {
        return e.to_response();
    } catch (const std::exception& e) {
        util::log_event(log, spdlog::level::err, "authorizer_failed",
                        {{"method", request.method_name}, {"path", request.path}, {"error", e.what()}});
    } catch (...) {
        util::log_event(log, spdlog::level::err, "authorizer_failed",
                        {{"method", request.method_name}, {"path", request.path}, {"error", "unknown exception"}});
    }
    return api::problem(500, "internal-error", "internal error");
}

// A 503 for a full pool or budget; the client is told when to come back.
api::Response busy(ServerCore& core, std::string_view detail) {
    auto response = api::problem(503, "busy", detail);
    response.headers.set("Retry-After", std::to_string(core.retry_after_seconds()));
    return response;
}

// Holds one of the server's download or upload slots for as long as it lives.
class AdmissionSlot {
public:
    using Take = bool (ServerCore::*)();
    using Give = void (ServerCore::*)() noexcept;
    AdmissionSlot(Take take, Give give) : take_(take), give_(give) {}
    AdmissionSlot(const AdmissionSlot&) = delete;
    AdmissionSlot& operator=(const AdmissionSlot&) = delete;
    ~AdmissionSlot() {
        if (core_) (core_->*give_)();
    }
    bool acquire(ServerCore& core) {
        if (!(core.*take_)()) return false;
        core_ = &core;
        return true;
    }

private:
    Take take_;
    Give give_;
    ServerCore* core_ = nullptr;
};

// A deadline for request body reads that cancels the read when it passes, and
// leaves the socket open: beast::tcp_stream's own deadline closes the socket,
// and the 408 could then not be sent. Owned by the session (created at its
// first body); a timer callback that outlives it finds it gone (weak_ptr).
struct BodyDeadline {
    explicit BodyDeadline(asio::io_context::executor_type executor) : timer(executor) {}
    asio::basic_waitable_timer<Clock, asio::wait_traits<Clock>, asio::io_context::executor_type> timer;
    std::uint64_t generation = 0;  // bumped by each arm and disarm: a stale expiry is ignored
    bool fired = false;
};

// How far a streamed body has come, for its rate deadline.
struct BodyProgress {
    std::optional<Clock::time_point> started;  // set by the first read
    std::uint64_t received = 0;
};

// Watches one response while it is sent. A deadline per write is not enough:
// the socket only turns writable again once a third of its (auto-tuned, possibly
// megabytes large) send buffer has drained, which can take a slow but healthy
// device longer than send_timeout. So the watchdog counts any progress, the
// bytes we hand over and the bytes the peer acknowledges (the socket's send
// queue shrinking), and cuts the connection only after send_timeout with none.
struct SendWatch {
    explicit SendWatch(asio::any_io_executor executor) : timer(std::move(executor)) {}
    asio::steady_timer timer;
    std::uint64_t written = 0;  // bytes handed to the stream so far
    bool done = false;          // the response is over: stop watching
    bool fired = false;         // we cut the connection for lack of progress
};

// Runs on the connection's executor beside the writes. `cut` is only called
// while the response is still being written, so the session is alive then.
asio::awaitable<void> watch_sends(std::shared_ptr<SendWatch> watch, int socket_fd, std::chrono::milliseconds timeout,
                                  std::function<void()> cut) {
    std::uint64_t last_written = watch->written;
    auto last_queued = platform::socket_unacknowledged_bytes(socket_fd);
    for (;;) {
        if (watch->done) co_return;  // a quick response may be over before we ever start
        watch->timer.expires_after(timeout);
        co_await watch->timer.async_wait(use_tuple);
        if (watch->done) co_return;
        auto queued = platform::socket_unacknowledged_bytes(socket_fd);
        const bool progressed = watch->written != last_written || (queued && last_queued && *queued < *last_queued);
        if (!progressed) {
            watch->fired = true;
            cut();
            co_return;
        }
        last_written = watch->written;
        last_queued = queued;
    }
}

// How far a response's body has been sent: the part, and the bytes of it already out.
struct BodyCursor {
    std::size_t part = 0;
    std::uint64_t offset = 0;
};

struct BodyChunk {
    std::size_t bytes = 0;  // 0 without error: the body has ended
    error_code ec;
};

struct Exchange {
    Clock::time_point started;
    std::string method;
    std::string target;
    unsigned version = 11;
    bool head = false;
};

template <class Stream>
class StreamedBody;

template <class Stream>
class Session {
public:
    static constexpr bool is_tls = !std::is_same_v<Stream, PlainStream>;

    Session(Stream stream, ServerCore& core, std::string remote)
        : stream_(std::move(stream)),
          core_(core),
          remote_(std::move(remote)),
          control_(std::make_shared<ConnectionControl>()) {
        control_->close_if_idle = [this] {
            if (idle_) lowest().cancel();
        };
        id_ = core_.register_connection(io_executor_of(stream_.get_executor()), control_);
    }
    ~Session() {
        control_->close_if_idle = nullptr;
        core_.unregister_connection(id_);
    }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Serves the connection: the TLS handshake first when `fresh`, then requests.
    // Returns `closed` once the connection is closed, or (TLS only) `idle` when it
    // waits for a next request with nothing read yet: the caller parks it.
    // `wake`: how the parked wait ended (an error or timeout closes).
    enum class Pause { closed, idle };
    asio::awaitable<Pause> serve(bool fresh, error_code wake);
    // Waits for an idle session's next request with no coroutine frame alive,
    // only this object and a socket wait: the memory an idle keep-alive
    // connection costs. Resumes serve() (through serve_session) when it is readable.
    // TLS only: plain-TCP sessions wait inside serve(), under tcp_stream's deadlines.
    static void park(std::unique_ptr<Session> self);

    // For StreamedBody: reads the next piece of a streamed body into `out`, on
    // this connection's executor while the handler waits on its upload thread.
    asio::awaitable<BodyChunk> read_body_chunk(http::request_parser<http::buffer_body>& parser, std::span<char> out,
                                               BodyProgress& progress);
    asio::any_io_executor executor() { return stream_.get_executor(); }
    ServerCore& core() noexcept { return core_; }

private:
    // Deadlines, cancel, close and the socket: tcp_stream's for plain TCP, the
    // TLS stream's own (same semantics) for TLS.
    auto& lowest() {
        if constexpr (is_tls)
            return stream_;
        else
            return beast::get_lowest_layer(stream_);
    }

    // Waiting for the next request's first byte (and taking what else is ready):
    // `request`: bytes are in buffer_; `park` (TLS, when `may_park`): none came
    // within park_after, so the caller parks the session; `closed` otherwise.
    enum class Wait { request, park, closed };
    // In serve()'s loop, not a coroutine of its own (one frame less per request):
    // begin_wait arms the wait's deadline, then serve() awaits one byte
    // (stream_.async_read_some into `probe`), then end_wait classifies it.
    void begin_wait(bool first, bool may_park);
    Wait end_wait(const error_code& ec, std::size_t n, char probe, bool may_park);
    asio::awaitable<bool> serve_request();
    asio::awaitable<bool> respond(const Exchange& exchange, api::Response response, bool keep_alive, bool linger);
    // Writes all of `bytes`, adding to `written` as they go. With a watch, the
    // watch guards progress; without one, each write gets send_timeout.
    asio::awaitable<error_code> write_all(std::string_view bytes, std::uint64_t& written, SendWatch* watch = nullptr);
    // Writes what the socket takes at once, without waiting; `ec` only for a
    // real failure. `more_follows`: the body comes next (plain TCP holds the
    // bytes back to share a packet with it).
    std::size_t write_now(std::string_view bytes, bool more_follows, error_code& ec);
    // Pushes body parts from `cursor` on while the socket takes them at once;
    // stops, with `cursor` at the first unsent byte, when it would block.
    void push_body_now(const std::vector<api::BodyPart>& body, BodyCursor& cursor, std::uint64_t& written,
                       error_code& ec);
    // Sends `slice` from byte `start` of it on.
    asio::awaitable<error_code> write_slice(const api::FileSlice& slice, SendWatch& watch, std::uint64_t start);
    asio::awaitable<error_code> send_file_slice(const api::FileSlice& slice, SendWatch& watch, std::uint64_t& done,
                                                bool& unsupported);
    asio::awaitable<void> close();
    // Arms the body deadline for the read that follows (the stream's own
    // deadline is turned off); disarm after it. `disarm_body_deadline` maps the
    // read's error: the cancel the deadline caused becomes beast::error::timeout.
    void arm_body_deadline(Clock::time_point at);
    void disarm_body_deadline(error_code& ec);

    Stream stream_;
    beast::flat_buffer buffer_;
    ServerCore& core_;
    std::string remote_;
    std::shared_ptr<ConnectionControl> control_;
    std::uint64_t id_ = 0;
    std::shared_ptr<BodyDeadline> body_deadline_;  // made at the first request body
    bool idle_ = false;                            // waiting for a request: drain may close us
    bool continue_owed_ = false;                   // "100 Continue" due before the first body read
    bool orderly_close_ = false;                   // we chose to close after a complete answer
    bool linger_ = false;                          // unread request body left on the wire
};

// The handler's view of a streamed request body. read() runs on a worker
// thread: it hands the read to the connection's executor and blocks until the
// bytes (or an error) are back.
template <class Stream>
class StreamedBody final : public api::BodySource {
public:
    StreamedBody(Session<Stream>& session, http::request_parser<http::buffer_body>& parser, std::uint64_t limit)
        : session_(session), parser_(parser), limit_(limit) {}

    std::size_t read(std::span<char> out) override {
        if (error_) throw *error_;
        if (ended_ || out.empty()) return 0;
        struct Pending {
            std::mutex mutex;
            std::condition_variable done_cv;
            bool done = false;
            BodyChunk chunk;
        };
        auto pending = std::make_shared<Pending>();
        asio::co_spawn(session_.executor(), session_.read_body_chunk(parser_, out, progress_),
                       [pending](std::exception_ptr failure, BodyChunk chunk) {
                           if (failure) chunk = BodyChunk{0, make_error_code(boost::system::errc::io_error)};
                           std::lock_guard lock(pending->mutex);
                           pending->chunk = chunk;
                           pending->done = true;
                           pending->done_cv.notify_one();
                       });
        std::unique_lock lock(pending->mutex);
        while (!pending->done) {
            // After a hard stop no I/O thread will ever answer: give up rather than hang the pool.
            if (session_.core().stopped()) {
                error_.emplace(api::BodyError::Kind::closed, "server stopped");
                throw *error_;
            }
            pending->done_cv.wait_for(lock, std::chrono::milliseconds(100));
        }
        if (pending->chunk.ec) {
            error_.emplace(body_error_from(pending->chunk.ec, limit_));
            throw *error_;
        }
        if (pending->chunk.bytes == 0) ended_ = true;
        return pending->chunk.bytes;
    }

    bool failed() const noexcept { return error_.has_value(); }

private:
    Session<Stream>& session_;
    http::request_parser<http::buffer_body>& parser_;
    std::uint64_t limit_;
    BodyProgress progress_;  // touched only by read_body_chunk, on the connection's executor
    bool ended_ = false;
    std::optional<api::BodyError> error_;
};

template <class Stream>
asio::awaitable<typename Session<Stream>::Pause> Session<Stream>::serve(bool fresh, error_code wake) {
    if constexpr (is_tls) {
        if (fresh) {
            idle_ = true;
            lowest().expires_after(core_.options.handshake_timeout);
            auto [ec] = co_await stream_.async_handshake(use_tuple);
            idle_ = false;
            if (ec) {
                // Scanners and old clients fail here all day long: debug, not warn.
                util::log_event(core_.log, spdlog::level::debug, "tls_handshake_failed",
                                {{"remote", remote_}, {"error", ec.message()}});
                lowest().close();
                co_return Pause::closed;
            }
        }
    }
    bool first = fresh;
    bool woken = !fresh;  // a parked session wakes up with bytes to read
    for (;;) {
        if (core_.draining()) {
            orderly_close_ = true;
            break;
        }
        if (wake) break;  // the parked wait timed out, was cancelled or failed
        bool may_park = false;
        if constexpr (is_tls) may_park = !first && !woken && core_.options.idle_timeout > park_after;
        woken = false;
        Wait wait = Wait::request;  // a pipelined request may already be in buffer_
        if (buffer_.size() == 0) {
            begin_wait(first, may_park);
            // Wait for one byte rather than for the whole header: the header's own
            // deadline starts when the request does, and the wait needs no buffer.
            char probe = 0;
            auto [ec, n] = co_await stream_.async_read_some(asio::buffer(&probe, 1), use_tuple);
            wait = end_wait(ec, n, probe, may_park);
        }
        if (wait == Wait::park) co_return Pause::idle;
        if (wait == Wait::closed) break;
        first = false;
        if (!co_await serve_request()) break;
    }
    co_await close();
    co_return Pause::closed;
}

// Runs a session until it closes or parks; owns it meanwhile.
template <class Stream>
asio::awaitable<void> serve_session(std::unique_ptr<Session<Stream>> session, bool fresh,
                                    boost::system::error_code wake) {
    const auto pause = co_await session->serve(fresh, wake);
    if constexpr (Session<Stream>::is_tls) {  // plain TCP keeps waiting inside serve() (Beast's deadlines)
        if (pause == Session<Stream>::Pause::idle) Session<Stream>::park(std::move(session));
    }
}

template <class Stream>
void Session<Stream>::park(std::unique_ptr<Session> self) {
    Session& session = *self;
    session.buffer_.shrink_to_fit();
    session.body_deadline_.reset();  // made again by the next body, if one comes
    session.idle_ = true;            // close_if_idle (drain, or the idle sweep past the deadline) cancels the wait
    // No timer while parked (one less pending operation per idle connection):
    // the server's idle sweep enforces idle_timeout from this deadline.
    session.lowest().expires_never();
    session.control_->parked_deadline_ms.store(
        steady_now_ms() + (session.core_.options.idle_timeout - park_after).count(), std::memory_order_relaxed);
    auto& socket = session.lowest().socket();
    socket.async_wait(tcp::socket::wait_read, [self = std::move(self)](error_code ec) mutable {
        Session& s = *self;
        s.idle_ = false;
        s.control_->parked_deadline_ms.store(0, std::memory_order_relaxed);
        auto executor = s.executor();
        spdlog::logger& log = s.core_.log;
        asio::co_spawn(executor, serve_session(std::move(self), false, ec), log_connection_failure(log));
    });
}

template <class Stream>
void Session<Stream>::begin_wait(bool first, bool may_park) {
    // Idle connections should cost little: give the read buffer back.
    buffer_.shrink_to_fit();
    idle_ = true;
    lowest().expires_after(first ? core_.options.header_timeout : (may_park ? park_after : core_.options.idle_timeout));
}

template <class Stream>
typename Session<Stream>::Wait Session<Stream>::end_wait(const error_code& ec, std::size_t n, char probe,
                                                         bool may_park) {
    idle_ = false;
    if (may_park && ec == beast::error::timeout && !core_.draining()) return Wait::park;
    if (ec || n == 0) return Wait::closed;
    // The rest of the request is usually here too: take what is ready without
    // waiting, so serve_request can often parse the header with no read at all.
    if constexpr (is_tls) {
        auto room = buffer_.prepare(1 + static_cast<std::size_t>(std::max(SSL_pending(stream_.native_handle()), 0)));
        *static_cast<char*>(room.data()) = probe;
        buffer_.commit(1 + stream_.read_buffered(static_cast<char*>(room.data()) + 1, room.size() - 1));
    } else {
        auto room = buffer_.prepare(initial_read_size);
        *static_cast<char*>(room.data()) = probe;
        error_code ignored;  // would_block or an error: the header read that follows sees it
        const std::size_t more =
            lowest().socket().read_some(asio::buffer(static_cast<char*>(room.data()) + 1, room.size() - 1), ignored);
        buffer_.commit(1 + more);
    }
    return Wait::request;
}

template <class Stream>
asio::awaitable<bool> Session<Stream>::serve_request() {
    const auto& options = core_.options;
    continue_owed_ = false;
    Exchange exchange;
    exchange.started = Clock::now();

    auto header_parser = std::make_unique<http::request_parser<http::empty_body>>();
    header_parser->header_limit(options.max_header_bytes);
    // Beast would check Content-Length against its limit only here, with the
    // wrong (global) limit; the route's limit is checked below instead.
    header_parser->body_limit(boost::none);
    // Parse what end_wait already took; read (under the header deadline) only if it is not all here.
    error_code read_ec;
    buffer_.consume(header_parser->put(buffer_.data(), read_ec));
    if (read_ec == http::error::need_more) {
        lowest().expires_after(options.header_timeout);
        std::tie(read_ec, std::ignore) = co_await http::async_read_header(stream_, buffer_, *header_parser, use_tuple);
    }
    {
        const auto& partial = header_parser->get();
        exchange.method = std::string(partial.method_string());
        exchange.target = std::string(partial.target());
        exchange.version = partial.version() == 10 ? 10 : 11;
    }
    if (read_ec) {
        if (read_ec == http::error::header_limit) {
            co_return co_await respond(
                exchange,
                api::problem(431, "header-too-large",
                             "request header exceeds " + std::to_string(options.max_header_bytes) + " bytes"),
                false, true);
        }
        if (is_disconnect(read_ec) || read_ec.category() != http::make_error_code(http::error::bad_target).category())
            co_return false;
        co_return co_await respond(
            exchange, api::problem(400, "bad-request", "malformed request: " + read_ec.message()), false, true);
    }

    const auto& header = header_parser->get();
    exchange.head = header.method() == http::verb::head;
    bool keep_alive = header.keep_alive();
    bool body_pending = !header_parser->is_done();
    if (header.version() != 10 && header.version() != 11) {
        co_return co_await respond(
            exchange, api::problem(505, "http-version-not-supported", "only HTTP/1.0 and 1.1 are served"), false, true);
    }

    auto target = parse_request_target(exchange.target);
    if (!target.ok) co_return co_await respond(exchange, api::problem(400, "bad-request", target.error), false, true);

    api::Request request;
    request.method_name = exchange.method;
    request.method = api::parse_method(request.method_name);
    request.target = exchange.target;
    request.path = std::move(target.path);
    request.query = std::move(target.query);
    std::size_t host_fields = 0;
    bool has_transfer_encoding = false;
    for (const auto& field : header) {
        if (field.name() == http::field::host)
            ++host_fields;
        else if (field.name() == http::field::transfer_encoding)
            has_transfer_encoding = true;
        request.headers.add(std::string(field.name_string()), std::string(field.value()));
    }

    // Framing first (RFC 9112): a body whose end cannot be known must never be
    // read as the next request, so these answers close the connection and what
    // follows on it is swallowed, not parsed.
    if (has_transfer_encoding) {
        std::vector<std::string_view> codings;
        for (const auto& field : header)
            if (field.name() == http::field::transfer_encoding)
                codings.emplace_back(field.value().data(), field.value().size());
        const auto coding = classify_transfer_encoding(codings);
        if (coding == TransferCoding::unsupported)
            co_return co_await respond(
                exchange,
                api::problem(501, "transfer-coding-not-implemented", "only the chunked transfer coding is supported"),
                false, true);
        // Beast frames a chunked body only when chunked is the final coding of one field line.
        if (coding != TransferCoding::chunked || !header_parser->chunked())
            co_return co_await respond(exchange,
                                       api::problem(400, "bad-request",
                                                    "Transfer-Encoding must be chunked, applied once and last "
                                                    "(RFC 9112 section 6.3)"),
                                       false, true);
        // An HTTP/1.0 message with Transfer-Encoding has faulty framing: answer it, then close (RFC 9112 §6.1).
        if (exchange.version == 10) keep_alive = false;
    }
    if (auto host_problem = host_field_problem(exchange.version, host_fields))
        co_return co_await respond(exchange, api::problem(400, "bad-request", *host_problem), false, body_pending);

    request.remote_address = remote_;
    request.secure = is_tls;
    request.http_version = exchange.version;
    if (auto length = header_parser->content_length()) request.content_length = *length;
    const bool expects_continue =
        exchange.version == 11 && api::iequals(util::trim(request.headers.get("Expect").value_or("")), "100-continue");

    auto match = core_.router.match(request.method, request.path);
    if (match.kind == api::Router::Match::Kind::not_found)
        co_return co_await respond(exchange, api::problem(404, "not-found", "no resource at " + request.path),
                                   keep_alive && !body_pending, body_pending);
    if (match.kind == api::Router::Match::Kind::method_not_allowed) {
        std::string allow;
        for (auto method : match.allowed) {
            if (!allow.empty()) allow += ", ";
            allow += api::to_string(method);
        }
        auto response = api::problem(405, "method-not-allowed",
                                     "method " + request.method_name + " is not allowed on " + request.path);
        response.headers.set("Allow", allow);
        co_return co_await respond(exchange, std::move(response), keep_alive && !body_pending, body_pending);
    }
    const api::Route& route = *match.route;
    request.params = std::move(match.params);
    // Listener policy (listener_policy.hpp): before anything reads the body or runs the handler.
    if (auto refusal = refuse_on_listener(route.options, is_tls, options))
        co_return co_await respond(exchange, std::move(*refusal), keep_alive && !body_pending, body_pending);
    const api::BodyPolicy policy = route.options.body;

    // Every refusal below comes before a byte of the body is read; the
    // connection is then closed (after a bounded linger), as the body is not drained.
    if (body_pending && policy == api::BodyPolicy::none) {
        // 413, not 400: the request is well-formed, its content is just more
        // than this route takes (none); clients know not to resend it as is.
        co_return co_await respond(
            exchange,
            api::problem(413, "body-not-allowed", request.method_name + " " + request.path + " takes no request body"),
            false, true);
    }
    const std::uint64_t limit = route.options.max_body_bytes ? route.options.max_body_bytes : options.max_body_bytes;
    if (request.content_length && *request.content_length > limit) {
        // Before reading a byte of it (Beast would only compare with its global limit).
        co_return co_await respond(exchange,
                                   api::problem(413, "payload-too-large",
                                                "request body of " + std::to_string(*request.content_length) +
                                                    " bytes exceeds the limit of " + std::to_string(limit) + " bytes"),
                                   false, true);
    }
    // Authentication before the body: an unknown client never gets us to buffer or stream its bytes.
    if (body_pending && route.options.authorize) {
        std::optional<api::Response> refusal;
        if (route.options.runs_inline) {
            refusal = invoke_authorizer(route, request, core_.log);
        } else {
            refusal = co_await asio::co_spawn(
                core_.workers,
                [&]() -> asio::awaitable<std::optional<api::Response>> {
                    co_return invoke_authorizer(route, request, core_.log);
                },
                asio::use_awaitable);
        }
        if (refusal) co_return co_await respond(exchange, std::move(*refusal), false, true);
    }

    AdmissionSlot download(&ServerCore::try_begin_download, &ServerCore::end_download);
    if (route.options.is_download && !exchange.head && !download.acquire(core_))
        co_return co_await respond(exchange, busy(core_, "too many downloads in progress; retry later"),
                                   keep_alive && !body_pending, body_pending);
    AdmissionSlot upload(&ServerCore::try_begin_upload, &ServerCore::end_upload);
    if (policy == api::BodyPolicy::streamed && !upload.acquire(core_))
        co_return co_await respond(exchange, busy(core_, "too many uploads in progress; retry later"),
                                   keep_alive && !body_pending, body_pending);

    BudgetReservation body_memory(core_.buffered_bodies);  // held until the handler is done with request.body
    std::optional<http::request_parser<http::buffer_body>> stream_parser;
    std::optional<StreamedBody<Stream>> streamed_body;
    if (policy == api::BodyPolicy::streamed) {
        stream_parser.emplace(std::move(*header_parser));
        stream_parser->body_limit(limit);
        continue_owed_ = expects_continue && body_pending;  // sent by the first read(), if any
        streamed_body.emplace(*this, *stream_parser, limit);
        request.body_source = &*streamed_body;
    } else if (body_pending) {
        // A chunked body may grow to the route's limit: that much is reserved.
        if (!body_memory.hold(request.content_length.value_or(limit)))
            co_return co_await respond(
                exchange, busy(core_, "the server's memory for request bodies is in use; retry later"), false, true);
        http::request_parser<http::string_body> body_parser(std::move(*header_parser));
        body_parser.body_limit(limit);  // chunked bodies: enforced as the chunks arrive
        if (expects_continue) {
            std::uint64_t ignored = 0;
            if (co_await write_all(continue_response, ignored)) co_return false;
        }
        // One deadline for the whole body, not one per read: a sender that
        // trickles a byte now and then cannot keep its buffer.
        const auto deadline = Clock::now() + options.body_timeout;
        while (!body_parser.is_done()) {
            arm_body_deadline(deadline);
            auto [ec, n] = co_await http::async_read_some(stream_, buffer_, body_parser, use_tuple);
            disarm_body_deadline(ec);
            // Answered (and logged) even when the peer is gone: the write then just fails.
            if (ec) co_return co_await respond(exchange, problem_for(body_error_from(ec, limit)), false, true);
        }
        request.body = std::move(body_parser.get().body());
        body_pending = false;
    }
    header_parser.reset();

    api::Response response;
    if (policy == api::BodyPolicy::streamed) {
        // read() blocks on the network: on the upload pool, never the I/O thread or the worker pool.
        response = co_await asio::co_spawn(
            core_.uploads,
            [&]() -> asio::awaitable<api::Response> { co_return invoke_handler(route, request, core_.log); },
            asio::use_awaitable);
    } else if (route.options.runs_inline) {
        response = invoke_handler(route, request, core_.log);
    } else {
        response = co_await asio::co_spawn(
            core_.workers,
            [&]() -> asio::awaitable<api::Response> { co_return invoke_handler(route, request, core_.log); },
            asio::use_awaitable);
    }
    if (stream_parser) body_pending = !stream_parser->is_done() || streamed_body->failed();
    co_return co_await respond(exchange, std::move(response), keep_alive && !body_pending, body_pending);
}

template <class Stream>
void Session<Stream>::arm_body_deadline(Clock::time_point at) {
    lowest().expires_never();
    if (!body_deadline_) body_deadline_ = std::make_shared<BodyDeadline>(io_executor_of(stream_.get_executor()));
    BodyDeadline& deadline = *body_deadline_;
    deadline.fired = false;
    const std::uint64_t generation = ++deadline.generation;
    deadline.timer.expires_at(at);
    deadline.timer.async_wait([this, weak = std::weak_ptr<BodyDeadline>(body_deadline_), generation](error_code ec) {
        if (ec) return;
        // The session owns the deadline (on this same thread): if it is alive, so is `this`.
        auto alive = weak.lock();
        if (!alive || alive->generation != generation) return;
        alive->fired = true;
        lowest().cancel();  // the read ends with operation_aborted; the socket stays open for the 408
    });
}

template <class Stream>
void Session<Stream>::disarm_body_deadline(error_code& ec) {
    BodyDeadline& deadline = *body_deadline_;
    ++deadline.generation;
    deadline.timer.cancel();
    // A read that got its bytes just as the deadline passed keeps them; the
    // next read starts past the deadline and is cancelled at once.
    if (deadline.fired && ec == asio::error::operation_aborted) ec = beast::error::timeout;
}

template <class Stream>
asio::awaitable<bool> Session<Stream>::respond(const Exchange& exchange, api::Response response, bool keep_alive,
                                               bool linger) {
    if (core_.draining()) keep_alive = false;
    // A handler may ask to close (Connection itself is net's to write).
    if (api::iequals(util::trim(response.headers.get("Connection").value_or("")), "close")) keep_alive = false;
    // Interim (1xx) answers are net's business (100 Continue); a handler's must be final.
    bool valid = response.status >= 200 && response.status <= 999;
    for (const auto& part : response.body) {
        if (const auto* slice = std::get_if<api::FileSlice>(&part)) {
            if (!slice->file || slice->offset > slice->file->size() ||
                slice->length > slice->file->size() - slice->offset)
                valid = false;
        }
    }
    if (!valid) {
        util::log_event(core_.log, spdlog::level::err, "invalid_response",
                        {{"status", std::to_string(response.status)}, {"target", redact_target(exchange.target)}});
        response = api::problem(500, "internal-error", "internal error");
    }
    add_listener_headers(response, is_tls, core_.options);  // HSTS on HTTPS (listener_policy.hpp)

    const unsigned status = response.status;
    const bool bodiless_status = status == 204 || status == 304;
    const std::uint64_t content_length = bodiless_status ? 0 : response.body_size();
    const bool send_body = !exchange.head && !bodiless_status && content_length > 0;

    // A small body rides in the header's write: one TLS record, one send. That
    // is what a 4 KiB range from esp_https_ota costs.
    const bool coalesce = send_body && content_length <= coalesce_limit;
    std::string block = build_header_block(response, !bodiless_status, content_length, keep_alive, exchange.version,
                                           core_.log, coalesce ? static_cast<std::size_t>(content_length) : 0);
    const std::uint64_t header_size = block.size();
    if (coalesce) {
        for (const auto& part : response.body) {
            if (const auto* text = std::get_if<std::string>(&part))
                block += *text;
            else {
                const auto& slice = std::get<api::FileSlice>(part);
                block += slice.file->bytes(slice.offset, slice.length);
            }
        }
    }
    const bool more_follows = send_body && !coalesce;

    // Most answers fit the socket's send buffer: written at once, with no
    // deadline or watchdog to arm.
    std::uint64_t written = 0;
    error_code ec;
    std::string_view pending = block;
    const std::size_t sent_now = write_now(pending, more_follows, ec);
    written += sent_now;
    pending.remove_prefix(sent_now);
    BodyCursor cursor;
    if (!more_follows)
        cursor.part = response.body.size();  // no body, or it went with the header
    else if (!ec && pending.empty())
        push_body_now(response.body, cursor, written, ec);
    bool stalled = false;
    if (!ec && (!pending.empty() || cursor.part < response.body.size())) {
        // One watchdog for the rest of the response instead of a deadline per write.
        auto watch = std::make_shared<SendWatch>(stream_.get_executor());
        watch->written = written;
        lowest().expires_never();
        asio::co_spawn(stream_.get_executor(),
                       watch_sends(watch, lowest().socket().native_handle(), core_.options.send_timeout,
                                   [this] { lowest().cancel(); }),
                       asio::detached);
        if (!pending.empty()) ec = co_await write_all(pending, watch->written, watch.get());
        for (; !ec && cursor.part < response.body.size(); ++cursor.part, cursor.offset = 0) {
            const auto& part = response.body[cursor.part];
            if (const auto* text = std::get_if<std::string>(&part))
                ec = co_await write_all(std::string_view(*text).substr(cursor.offset), watch->written, watch.get());
            else
                ec = co_await write_slice(std::get<api::FileSlice>(part), *watch, cursor.offset);
        }
        watch->done = true;
        watch->timer.cancel();
        written = watch->written;
        stalled = watch->fired;
    }
    const std::uint64_t body_bytes = written > header_size ? written - header_size : 0;

    log_access(core_.access_log,
               AccessLogEntry{
                   remote_, exchange.method, exchange.target, status, body_bytes,
                   static_cast<std::uint64_t>(
                       std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - exchange.started).count()),
                   response.principal, is_tls, exchange.version});
    if (ec) {
        if (stalled)
            util::log_event(core_.log, spdlog::level::info, "response_stalled",
                            {{"remote", remote_}, {"bytes", std::to_string(body_bytes)}});
        else if (!is_disconnect(ec))
            util::log_event(core_.log, spdlog::level::info, "response_write_failed",
                            {{"remote", remote_}, {"error", ec.message()}});
        co_return false;
    }
    if (!keep_alive) {
        orderly_close_ = true;
        linger_ = linger;
    }
    co_return keep_alive;
}

template <class Stream>
std::size_t Session<Stream>::write_now(std::string_view bytes, bool more_follows, error_code& ec) {
    ec = {};
    if (bytes.empty()) return 0;
    if constexpr (is_tls) {
        return stream_.write_some_now(bytes.data(), bytes.size(), ec);
    } else {
        // The socket is non-blocking (serve_connection): would_block just means "later".
        const int flags = more_follows ? platform::more_data_send_flags() : 0;
        const std::size_t n = lowest().socket().send(asio::buffer(bytes.data(), bytes.size()), flags, ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) ec = {};
        return n;
    }
}

template <class Stream>
asio::awaitable<error_code> Session<Stream>::write_all(std::string_view bytes, std::uint64_t& written,
                                                       SendWatch* watch) {
    while (!bytes.empty()) {
        if (!watch) lowest().expires_after(core_.options.send_timeout);
        auto [ec, n] = co_await stream_.async_write_some(
            asio::buffer(bytes.data(), std::min<std::size_t>(bytes.size(), max_write_size)), use_tuple);
        written += n;
        bytes.remove_prefix(n);
        if (ec) co_return ec;
    }
    co_return error_code{};
}

template <class Stream>
void Session<Stream>::push_body_now(const std::vector<api::BodyPart>& body, BodyCursor& cursor, std::uint64_t& written,
                                    error_code& ec) {
    for (; cursor.part < body.size(); ++cursor.part, cursor.offset = 0) {
        const auto& part = body[cursor.part];
        std::string_view bytes;
        if (const auto* text = std::get_if<std::string>(&part)) {
            bytes = std::string_view(*text).substr(cursor.offset);
        } else {
            const auto& slice = std::get<api::FileSlice>(part);
            if constexpr (!is_tls) {
                if (slice.file->native_handle() >= 0 && platform::send_file_supported()) {
                    auto result = platform::send_file(lowest().socket().native_handle(), slice.file->native_handle(),
                                                      slice.offset + cursor.offset, slice.length - cursor.offset);
                    cursor.offset += result.bytes_sent;
                    written += result.bytes_sent;
                    if (result.error) {
                        ec = error_code(result.error.value(), boost::system::generic_category());
                        return;
                    }
                    if (result.would_block) return;
                    if (!result.unsupported) continue;  // all sent
                }
            }
            bytes = slice.file->bytes(slice.offset + cursor.offset, slice.length - cursor.offset);
        }
        const std::size_t n = write_now(bytes, false, ec);
        cursor.offset += n;
        written += n;
        if (ec || n < bytes.size()) return;
    }
}

template <class Stream>
asio::awaitable<error_code> Session<Stream>::write_slice(const api::FileSlice& slice, SendWatch& watch,
                                                         std::uint64_t start) {
    std::uint64_t done = start;
    if constexpr (!is_tls) {
        if (slice.file->native_handle() >= 0 && platform::send_file_supported()) {
            bool unsupported = false;
            auto ec = co_await send_file_slice(slice, watch, done, unsupported);
            if (ec || !unsupported) co_return ec;
            // No zero-copy path for this file: send the rest from memory.
        }
    }
    co_return co_await write_all(slice.file->bytes(slice.offset + done, slice.length - done), watch.written, &watch);
}

template <class Stream>
asio::awaitable<error_code> Session<Stream>::send_file_slice(const api::FileSlice& slice, SendWatch& watch,
                                                             std::uint64_t& done, bool& unsupported) {
    auto& socket = lowest().socket();
    error_code ec;
    if (!socket.non_blocking()) socket.non_blocking(true, ec);
    if (ec) {
        unsupported = true;
        co_return error_code{};
    }
    while (done < slice.length) {
        auto result = platform::send_file(socket.native_handle(), slice.file->native_handle(), slice.offset + done,
                                          slice.length - done);
        done += result.bytes_sent;
        watch.written += result.bytes_sent;
        if (result.unsupported) {
            unsupported = true;
            co_return error_code{};
        }
        if (result.error) co_return error_code(result.error.value(), boost::system::generic_category());
        if (result.would_block) {
            // The watch cancels this wait if the peer stops taking bytes.
            auto [wait_ec] = co_await socket.async_wait(tcp::socket::wait_write, use_tuple);
            if (wait_ec) co_return wait_ec;
        }
    }
    co_return error_code{};
}

template <class Stream>
asio::awaitable<BodyChunk> Session<Stream>::read_body_chunk(http::request_parser<http::buffer_body>& parser,
                                                            std::span<char> out, BodyProgress& progress) {
    if (continue_owed_) {
        continue_owed_ = false;
        std::uint64_t ignored = 0;
        if (auto ec = co_await write_all(continue_response, ignored)) co_return BodyChunk{0, ec};
    }
    if (!progress.started) progress.started = Clock::now();
    for (;;) {
        if (parser.is_done()) co_return BodyChunk{};
        auto& body = parser.get().body();
        body.data = out.data();
        body.size = out.size();
        arm_body_deadline(streamed_read_deadline(*progress.started, Clock::now(), progress.received,
                                                 core_.options.body_timeout, core_.options.min_upload_rate));
        // Beast sizes each socket read by the buffer's free capacity, which is
        // near zero after the header: without this, uploads arrive 513 bytes a read.
        if (buffer_.capacity() < 64 * 1024) buffer_.reserve(64 * 1024);
        auto [ec, n] = co_await http::async_read_some(stream_, buffer_, parser, use_tuple);
        disarm_body_deadline(ec);
        const std::size_t got = out.size() - body.size;
        body.data = nullptr;
        body.size = 0;
        progress.received += got;
        if (ec == http::error::need_buffer) ec = {};
        if (ec) co_return BodyChunk{0, ec};
        if (got > 0) co_return BodyChunk{got, {}};
    }
}

template <class Stream>
asio::awaitable<void> Session<Stream>::close() {
    auto& socket = lowest().socket();
    if (!socket.is_open()) co_return;
    if (orderly_close_) {
        error_code ignored;
        if constexpr (!is_tls) socket.shutdown(tcp::socket::shutdown_send, ignored);
        if (linger_) {
            // We answered before the client finished sending its body. Closing
            // now, with its bytes unread, would reset the connection and could
            // destroy our answer in flight: swallow what it still sends (bounded)
            // until it stops, as nginx's lingering close does.
            // It ends when the client closes, pauses for linger_gap, or passes
            // linger_timeout or linger_max_bytes in all.
            std::uint64_t swallowed = 0;
            std::unique_ptr<char[]> scratch(new char[16 * 1024]);
            const auto give_up = Clock::now() + linger_timeout;
            while (swallowed < linger_max_bytes && Clock::now() < give_up) {
                lowest().expires_after(std::min<Clock::duration>(linger_gap, give_up - Clock::now()));
                auto [ec, n] = co_await stream_.async_read_some(asio::buffer(scratch.get(), 16 * 1024), use_tuple);
                if (ec) break;
                swallowed += n;
            }
        }
        if constexpr (is_tls) {
            // close_notify, and the peer's under a short deadline; a truncated
            // reply is a normal end here.
            if (socket.is_open()) {
                lowest().expires_after(close_timeout);
                co_await stream_.async_shutdown(use_tuple);
            }
        }
    }
    if (socket.is_open()) lowest().close();
}

}  // namespace

asio::awaitable<void> serve_connection(ConnectionSocket socket, ServerCore& core, asio::ssl::context* tls) {
    error_code ec;
    auto peer = socket.remote_endpoint(ec);
    std::string remote = ec ? std::string("unknown") : endpoint_text(peer);
    // Header blocks and small answers must not wait for delayed ACKs.
    socket.set_option(tcp::no_delay(true), ec);
    // Out of memory (SSL_new, the session): drop this connection, keep serving the others.
    auto refuse = [&core](const std::exception& e) {
        core.release_admitted_connection();
        util::log_event(core.log, spdlog::level::err, "connection_failed", {{"error", e.what()}});
    };
    if (tls != nullptr) {
        std::unique_ptr<Session<TlsStream>> session;
        try {
            session = std::make_unique<Session<TlsStream>>(TlsStream(std::move(socket), *tls), core, std::move(remote));
        } catch (const std::exception& e) {
            refuse(e);
            co_return;
        }
        co_await serve_session(std::move(session), true, {});
    } else {
        // Non-blocking, so a response can be tried at once (Session::write_now) and sendfile never waits.
        socket.non_blocking(true, ec);
        std::unique_ptr<Session<PlainStream>> session;
        try {
            session = std::make_unique<Session<PlainStream>>(PlainStream(tcp::socket(std::move(socket))), core,
                                                             std::move(remote));
        } catch (const std::exception& e) {
            refuse(e);
            co_return;
        }
        co_await serve_session(std::move(session), true, {});
    }
}

}  // namespace otad::net::detail
