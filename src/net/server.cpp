// Listeners, the io_context and its threads, signals and graceful shutdown.
// Asio only: the server's HTTP handling lives in session.cpp.

#include "otad/net/server.hpp"

#include <algorithm>
#include <csignal>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/as_tuple.hpp>

#include "otad/platform/send_file.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"
#include "server_core.hpp"
#include "tls.hpp"

namespace otad::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

// ---------------------------------------------------------------------------
// ServerCore

namespace detail {

bool ServerCore::try_admit_connection() {
    auto current = connections_.load();
    do {
        if (current >= options.max_connections) return false;
    } while (!connections_.compare_exchange_weak(current, current + 1));
    return true;
}

std::uint64_t ServerCore::register_connection(asio::io_context::executor_type executor,
                                              std::shared_ptr<ConnectionControl> control) {
    std::lock_guard lock(mutex_);
    auto id = next_id_++;
    live_.emplace(id, Entry{std::move(executor), std::move(control)});
    return id;
}

void ServerCore::unregister_connection(std::uint64_t id) {
    std::function<void()> drained;
    {
        std::lock_guard lock(mutex_);
        live_.erase(id);
        if (connections_.fetch_sub(1) == 1 && draining_.load() && !stopped_.load()) drained = std::move(on_drained_);
    }
    if (drained) drained();
}

void ServerCore::note_refused_connection() {
    refused_since_log_.fetch_add(1);
    auto now =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count();
    auto last = last_refusal_log_ms_.load();
    if (now - last < 1000 || !last_refusal_log_ms_.compare_exchange_strong(last, now)) return;
    util::log_event(log, spdlog::level::warn, "connection_refused",
                    {{"reason", "max_connections"},
                     {"max_connections", std::to_string(options.max_connections)},
                     {"refused_since_last_log", std::to_string(refused_since_log_.exchange(0))}});
}

bool ServerCore::try_begin_download() {
    auto current = downloads_.load();
    do {
        if (current >= options.max_concurrent_downloads) return false;
    } while (!downloads_.compare_exchange_weak(current, current + 1));
    return true;
}

void ServerCore::end_download() noexcept { downloads_.fetch_sub(1); }

bool ServerCore::try_begin_upload() {
    auto current = uploads_.load();
    do {
        if (current >= options.max_concurrent_uploads) return false;
    } while (!uploads_.compare_exchange_weak(current, current + 1));
    return true;
}

void ServerCore::end_upload() noexcept { uploads_.fetch_sub(1); }

std::uint32_t ServerCore::retry_after_seconds() {
    // Jitter spreads a fleet's retries instead of bringing it back all at once.
    thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_int_distribution<std::uint32_t> jitter(0, options.retry_after_s);
    return options.retry_after_s + jitter(rng);
}

void ServerCore::close_expired_parked_connections() {
    const auto now = steady_now_ms();
    std::lock_guard lock(mutex_);
    for (auto& [id, entry] : live_) {
        const auto deadline = entry.control->parked_deadline_ms.load(std::memory_order_relaxed);
        if (deadline == 0 || deadline > now) continue;
        asio::post(entry.executor, [control = entry.control] {
            if (control->close_if_idle) control->close_if_idle();
        });
    }
}

void ServerCore::begin_drain(std::function<void()> on_drained) {
    std::vector<Entry> live;
    bool already_empty = false;
    {
        std::lock_guard lock(mutex_);
        if (draining_.exchange(true)) return;
        on_drained_ = std::move(on_drained);
        live.reserve(live_.size());
        for (auto& [id, entry] : live_) live.push_back(entry);
        already_empty = connections_.load() == 0;
    }
    for (auto& entry : live)
        asio::post(entry.executor, [control = entry.control] {
            if (control->close_if_idle) control->close_if_idle();
        });
    if (already_empty) {
        std::function<void()> drained;
        {
            std::lock_guard lock(mutex_);
            drained = std::move(on_drained_);
        }
        if (drained) drained();
    }
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Server

namespace {

std::string describe(const Endpoint& e) { return e.host + ":" + std::to_string(e.port); }

// accept() errors that only say the peer gave up before we took its
// connection: the queue moved on, so accepting again at once is right.
bool is_aborted_connection(const boost::system::error_code& ec) {
    return ec == asio::error::connection_aborted || ec == asio::error::connection_reset;
}

// While accept() fails for want of descriptors (EMFILE, ENFILE) or memory, the
// pending connection stays queued and the next accept() would fail the same way
// at once: the loop sleeps this long between tries instead of spinning.
constexpr std::chrono::milliseconds accept_backoff{100};
// A pause that lasts is reported again this often (and once when it ends),
// never once per failed accept().
constexpr std::chrono::seconds accept_pause_report_interval{10};
// A certificate closer than this to its end is logged as a warning.
constexpr std::int64_t certificate_warning_days = 30;

}  // namespace

struct Server::Impl {
    struct Listener {
        explicit Listener(asio::io_context& ioc) : acceptor(ioc) {}
        tcp::acceptor acceptor;
        bool tls = false;
    };

    Impl(ServerOptions opts, const api::Router& router, std::shared_ptr<spdlog::logger> access,
         std::shared_ptr<spdlog::logger> main_log)
        : options(std::move(opts)),
          access_log(access ? std::move(access) : util::logger("access")),
          log(main_log ? std::move(main_log) : util::logger("otad")),
          io_threads(options.io_threads ? options.io_threads : std::max(1u, std::thread::hardware_concurrency())),
          ioc(1),
          workers(std::max(1u, options.worker_threads)),
          uploads(std::max(1u, options.max_concurrent_uploads)) {
        // A peer resetting the connection during sendfile must give EPIPE, not end the process.
        platform::ignore_broken_pipe_signal();
        core = std::make_unique<detail::ServerCore>(options, router, *access_log, *log, workers.get_executor(),
                                                    uploads.get_executor());
        connection_contexts.push_back(&ioc);
        for (unsigned i = 1; i < io_threads; ++i) {
            extra_contexts.push_back(std::make_unique<asio::io_context>(1));
            connection_contexts.push_back(extra_contexts.back().get());
        }
        for (auto* context : connection_contexts) keep_running.push_back(asio::make_work_guard(*context));
    }

    ~Impl() {
        // Sessions still alive when the io_context is destroyed (after a hard
        // stop) must not call back into a half-destroyed server.
        core->mark_stopped();
        workers.stop();
        uploads.stop();
        workers.join();
        uploads.join();
    }

    std::vector<ListenerInfo> bind();
    void start_listening();
    void begin_shutdown(std::string_view reason);
    void stop_now();
    asio::awaitable<void> accept_loop(Listener& listener);
    void schedule_idle_sweep();
    void install_signal_handlers();
    void wait_for_signal();
    // On ioc: loads the certificate and key again into a new TLS context for the
    // handshakes that follow; on failure logs why and keeps the current one.
    void reload_tls(std::string_view reason);
    void log_certificate(std::string_view event, std::string_view reason);

    ServerOptions options;
    std::shared_ptr<spdlog::logger> access_log;
    std::shared_ptr<spdlog::logger> log;
    unsigned io_threads;
    // Destruction runs bottom-up: listeners and timers, the worker and upload
    // pools (joined in ~Impl; their queues may still own suspended sessions), the io_contexts
    // (destroying sessions still suspended in them), and only then the TLS
    // context and the core those sessions refer to.
    std::unique_ptr<detail::ServerCore> core;
    // The context new TLS connections are accepted under; replaced (on ioc only)
    // by reload_tls(). A connection holds a reference until its SSL object exists
    // (SSL_new takes its own), so a replaced context lives on for the connections
    // made from it, and existing connections never notice a reload.
    std::shared_ptr<asio::ssl::context> tls;
    // One single-threaded io_context per I/O thread. A connection stays on the
    // context it was accepted onto, so its handlers never run concurrently
    // without a strand, and a request never wakes another thread. `ioc` (the
    // thread that calls run()) also owns the listeners, signals and timers.
    // The extra contexts are declared first so they outlive `ioc`: a pending
    // accept on `ioc` holds a socket of one of them, destroyed with `ioc`.
    std::vector<std::unique_ptr<asio::io_context>> extra_contexts;
    asio::io_context ioc;
    std::vector<asio::io_context*> connection_contexts;  // ioc, then extra_contexts
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> keep_running;
    std::size_t next_context = 0;  // round robin; only touched by the accept loops on ioc
    asio::thread_pool workers;
    asio::thread_pool uploads;  // streamed-body handlers (ServerCore::uploads)
    std::vector<std::unique_ptr<Listener>> listeners;
    std::vector<ListenerInfo> bound;
    std::optional<asio::signal_set> signals;
    std::optional<asio::steady_timer> shutdown_deadline;
    std::optional<asio::steady_timer> idle_sweep;  // closes parked connections past idle_timeout
    bool shutting_down = false;                    // on the io_context only
    bool running = false;
};

std::vector<ListenerInfo> Server::Impl::bind() {
    if (!bound.empty()) return bound;
    if (!options.https && !options.http) throw std::runtime_error("no listener configured (neither https nor http)");
    if (options.https) {
        tls = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
        detail::configure_tls_context(tls->native_handle(), options.tls);
        log_certificate("tls_certificate", "start");
    }
    auto open_listener = [&](const Endpoint& endpoint, bool secure) {
        const char* scheme = secure ? "https" : "http";
        boost::system::error_code ec;
        tcp::endpoint local;
        auto address = asio::ip::make_address(endpoint.host, ec);
        if (!ec) {
            local = tcp::endpoint(address, endpoint.port);
        } else {
            tcp::resolver resolver(ioc);
            auto results = resolver.resolve(endpoint.host, std::to_string(endpoint.port),
                                            tcp::resolver::passive | tcp::resolver::numeric_service, ec);
            if (ec || results.empty())
                throw std::runtime_error(std::string("cannot resolve ") + scheme + " listen address '" + endpoint.host +
                                         "': " + (ec ? ec.message() : "no address"));
            local = results.begin()->endpoint();
        }
        auto listener = std::make_unique<Listener>(ioc);
        listener->tls = secure;
        auto& acceptor = listener->acceptor;
        auto check = [&](const char* step) {
            if (ec)
                throw std::runtime_error(std::string("cannot listen on ") + scheme + " " + describe(endpoint) + " (" +
                                         step + "): " + ec.message());
        };
        acceptor.open(local.protocol(), ec);
        check("open");
        acceptor.set_option(asio::socket_base::reuse_address(true), ec);
        check("SO_REUSEADDR");
        acceptor.bind(local, ec);
        check("bind");
        acceptor.listen(asio::socket_base::max_listen_connections, ec);
        check("listen");
        auto actual = acceptor.local_endpoint(ec);
        check("local_endpoint");
        bound.push_back(ListenerInfo{scheme, Endpoint{actual.address().to_string(), actual.port()}});
        listeners.push_back(std::move(listener));
    };
    try {
        if (options.https) open_listener(*options.https, true);
        if (options.http) open_listener(*options.http, false);
    } catch (...) {
        listeners.clear();
        bound.clear();
        throw;
    }
    return bound;  // the caller announces them (cli's "listening" line)
}

asio::awaitable<void> Server::Impl::accept_loop(Listener& listener) {
    using Clock = std::chrono::steady_clock;
    const char* scheme = listener.tls ? "https" : "http";
    // A pause: accept() failing (out of descriptors or memory) since `paused_since`.
    std::optional<Clock::time_point> paused_since;
    Clock::time_point last_report;
    std::uint64_t failures = 0;  // in this pause
    std::uint64_t failures_reported = 0;
    asio::steady_timer backoff(ioc);
    for (;;) {
        // Connections are dealt to the I/O threads' contexts in turn.
        auto& context = *connection_contexts[next_context++ % connection_contexts.size()];
        auto [ec, socket] =
            co_await listener.acceptor.async_accept(context.get_executor(), asio::as_tuple(asio::use_awaitable));
        if (ec) {
            if (ec == asio::error::operation_aborted || !listener.acceptor.is_open()) co_return;
            if (is_aborted_connection(ec)) continue;
            // EMFILE, ENFILE, ENOBUFS, ENOMEM or worse: back off instead of spinning,
            // and log the pause when it starts, every report interval, and when it ends.
            const auto now = Clock::now();
            ++failures;
            if (!paused_since || now - last_report >= accept_pause_report_interval) {
                util::log_event(*log, spdlog::level::warn, paused_since ? "accept_still_paused" : "accept_paused",
                                {{"scheme", scheme},
                                 {"error", ec.message()},
                                 {"connections", std::to_string(core->connection_count())},
                                 {"max_connections", std::to_string(options.max_connections)},
                                 {"failed_accepts", std::to_string(failures - failures_reported)},
                                 {"retry_ms", std::to_string(accept_backoff.count())}});
                if (!paused_since) paused_since = now;
                last_report = now;
                failures_reported = failures;
            }
            backoff.expires_after(accept_backoff);
            co_await backoff.async_wait(asio::as_tuple(asio::use_awaitable));
            continue;
        }
        if (paused_since) {
            const auto paused_ms =
                std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - *paused_since).count();
            util::log_event(*log, spdlog::level::info, "accept_resumed",
                            {{"scheme", scheme},
                             {"paused_ms", std::to_string(paused_ms)},
                             {"failed_accepts", std::to_string(failures)}});
            paused_since.reset();
            failures = 0;
            failures_reported = 0;
        }
        if (core->draining()) co_return;
        if (!core->try_admit_connection()) {
            boost::system::error_code ignored;
            socket.close(ignored);
            core->note_refused_connection();
            continue;
        }
        auto executor = socket.get_executor();
        // The completion handler holds the TLS context until the connection's
        // coroutine ends, so a reload meanwhile cannot free it under SSL_new.
        std::shared_ptr<asio::ssl::context> context_in_use = listener.tls ? tls : nullptr;
        auto* tls_context = context_in_use.get();
        asio::co_spawn(executor, detail::serve_connection(std::move(socket), *core, tls_context),
                       [report = detail::log_connection_failure(*log),
                        context_in_use = std::move(context_in_use)](std::exception_ptr error) { report(error); });
    }
}

void Server::Impl::schedule_idle_sweep() {
    // A quarter of the idle timeout (50 ms to 1 s): a parked connection is
    // closed at most that late, and 10,000 of them cost one pass per interval.
    const auto interval = std::clamp<std::chrono::milliseconds>(options.idle_timeout / 4, std::chrono::milliseconds(50),
                                                                std::chrono::milliseconds(1000));
    if (!idle_sweep) idle_sweep.emplace(ioc);
    idle_sweep->expires_after(interval);
    idle_sweep->async_wait([this](const boost::system::error_code& ec) {
        if (ec || shutting_down) return;
        core->close_expired_parked_connections();
        schedule_idle_sweep();
    });
}

void Server::Impl::install_signal_handlers() {
    if (!options.install_signal_handlers || signals) return;
    signals.emplace(ioc, SIGINT, SIGTERM);
#if defined(SIGHUP)
    signals->add(SIGHUP);  // reload the certificate (and the terminal closing no longer stops otad)
#endif
    wait_for_signal();
}

void Server::Impl::wait_for_signal() {
    signals->async_wait([this](const boost::system::error_code& ec, int signal_number) {
        if (ec) return;
#if defined(SIGHUP)
        if (signal_number == SIGHUP) {
            if (!shutting_down) reload_tls("SIGHUP");
            wait_for_signal();
            return;
        }
#endif
        if (!shutting_down) {
            begin_shutdown(signal_number == SIGINT ? "SIGINT" : "SIGTERM");
            wait_for_signal();
        } else {
            util::log_event(*log, spdlog::level::warn, "shutdown_forced", {{"reason", "second signal"}});
            stop_now();
        }
    });
}

void Server::Impl::log_certificate(std::string_view event, std::string_view reason) {
    auto info = detail::describe_certificate(tls->native_handle());
    const std::int64_t seconds_left = info.not_after - util::unix_now();
    const std::int64_t days_left = seconds_left / 86'400;
    const auto level = seconds_left <= 0                      ? spdlog::level::err
                       : days_left < certificate_warning_days ? spdlog::level::warn
                                                              : spdlog::level::info;
    util::log_event(*log, level, event,
                    {{"reason", reason},
                     {"cert", options.tls.cert_file.string()},
                     {"subject", info.subject},
                     {"issuer", info.self_signed ? std::string("self-signed") : info.issuer},
                     {"not_after", util::rfc3339(info.not_after)},
                     {"days_left", std::to_string(days_left)},
                     {"expired", seconds_left <= 0 ? "true" : "false"}});
}

void Server::Impl::reload_tls(std::string_view reason) {
    if (!tls) {
        util::log_event(*log, spdlog::level::info, "tls_reload_skipped",
                        {{"reason", reason}, {"detail", "no HTTPS listener"}});
        return;
    }
    std::shared_ptr<asio::ssl::context> fresh;
    try {
        fresh = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
        detail::configure_tls_context(fresh->native_handle(), options.tls);
        detail::describe_certificate(fresh->native_handle());  // has a certificate we can read
    } catch (const std::exception& e) {
        // Half-written files, a key that does not match: keep serving the old pair.
        util::log_event(*log, spdlog::level::err, "tls_reload_failed",
                        {{"reason", reason},
                         {"cert", options.tls.cert_file.string()},
                         {"error", e.what()},
                         {"kept", "the certificate loaded before"}});
        return;
    }
    tls = std::move(fresh);  // new handshakes from the next accept on
    log_certificate("tls_certificate_reloaded", reason);
}

void Server::Impl::begin_shutdown(std::string_view reason) {
    if (shutting_down) return;
    shutting_down = true;
    util::log_event(*log, spdlog::level::info, "shutdown_started",
                    {{"reason", std::string(reason)}, {"connections", std::to_string(core->connection_count())}});
    boost::system::error_code ignored;
    for (auto& listener : listeners) listener->acceptor.close(ignored);
    if (idle_sweep) idle_sweep->cancel();  // draining closes the idle connections itself
    shutdown_deadline.emplace(ioc, options.shutdown_timeout);
    shutdown_deadline->async_wait([this](const boost::system::error_code& ec) {
        if (ec) return;
        util::log_event(*log, spdlog::level::warn, "shutdown_deadline_passed",
                        {{"connections_cut", std::to_string(core->connection_count())}});
        stop_now();
    });
    core->begin_drain([this] { asio::post(ioc, [this] { stop_now(); }); });
}

void Server::Impl::stop_now() {
    keep_running.clear();
    for (auto* context : connection_contexts) context->stop();
}

Server::Server(ServerOptions options, const api::Router& router, std::shared_ptr<spdlog::logger> access_log,
               std::shared_ptr<spdlog::logger> log)
    : impl_(std::make_unique<Impl>(std::move(options), router, std::move(access_log), std::move(log))) {}

Server::~Server() = default;

std::vector<ListenerInfo> Server::bind() {
    auto bound = impl_->bind();
    // Catch SIGTERM from the moment the ports are announced: a signal that
    // arrives before run() is queued and starts the graceful stop when it runs.
    impl_->install_signal_handlers();
    return bound;
}

void Server::run() {
    auto& impl = *impl_;
    if (impl.running) throw std::logic_error("Server::run() called twice");
    impl.running = true;
    impl.bind();
    for (auto& listener : impl.listeners) asio::co_spawn(impl.ioc, impl.accept_loop(*listener), asio::detached);
    impl.schedule_idle_sweep();
    impl.install_signal_handlers();
    std::vector<std::thread> threads;
    threads.reserve(impl.extra_contexts.size());
    for (auto& context : impl.extra_contexts) threads.emplace_back([context = context.get()] { context->run(); });
    impl.ioc.run();
    // stop_now() stopped every context; make sure, should ioc have ended another way.
    impl.stop_now();
    for (auto& t : threads) t.join();
    // No I/O runs from here on: handlers blocked on a body read give up, and
    // those still running on the pool finish before run() returns.
    impl.core->mark_stopped();
    impl.workers.stop();
    impl.uploads.stop();
    impl.workers.join();
    impl.uploads.join();
    util::log_event(*impl.log, spdlog::level::info, "shutdown_complete",
                    {{"connections_cut", std::to_string(impl.core->connection_count())}});
}

void Server::stop() {
    asio::post(impl_->ioc, [impl = impl_.get()] { impl->begin_shutdown("stop()"); });
}

void Server::reload_tls() {
    asio::post(impl_->ioc, [impl = impl_.get()] { impl->reload_tls("reload_tls()"); });
}

}  // namespace otad::net
