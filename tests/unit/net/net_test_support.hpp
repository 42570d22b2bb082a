#pragma once
// Helpers for the net tests: an in-process otad::net::Server on 127.0.0.1:0 and
// small blocking HTTP clients over POSIX sockets and OpenSSL. Every blocking
// call has a deadline (socket timeouts), so a broken server fails a test
// instead of hanging it.

#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "otad/api/router.hpp"
#include "otad/net/server.hpp"

namespace otad::net::test {

using namespace std::chrono_literals;

// Bounded wait for a condition (no fixed sleeps): polls `done` until it holds
// or `timeout` passes.
inline bool eventually(const std::function<bool()>& done, std::chrono::milliseconds timeout = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (done()) return true;
        std::this_thread::sleep_for(2ms);
    }
    return done();
}

// One-shot event handlers can block on, released by the test.
class Gate {
public:
    void open() {
        std::lock_guard lock(mutex_);
        open_ = true;
        cv_.notify_all();
    }
    bool wait(std::chrono::milliseconds timeout = 10'000ms) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, timeout, [&] { return open_; });
    }
    bool is_open() {
        std::lock_guard lock(mutex_);
        return open_;
    }

private:
    std::mutex mutex_;
    std::condition_variable cv_;
    bool open_ = false;
};

// Collects log lines so tests can look at the access log.
class CaptureSink : public spdlog::sinks::base_sink<std::mutex> {
public:
    std::vector<std::string> lines() {
        std::lock_guard lock(this->mutex_);
        return lines_;
    }
    bool contains(const std::string& needle) {
        for (const auto& line : lines())
            if (line.find(needle) != std::string::npos) return true;
        return false;
    }

protected:
    void sink_it_(const spdlog::details::log_msg& msg) override {
        lines_.emplace_back(msg.payload.data(), msg.payload.size());
    }
    void flush_() override {}

private:
    std::vector<std::string> lines_;
};

inline std::filesystem::path make_temp_dir(const std::string& tag) {
    std::mt19937_64 rng(std::random_device{}());
    auto dir = std::filesystem::temp_directory_path() /
               ("otad-net-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(rng() % 1000000));
    std::filesystem::create_directories(dir);
    return dir;
}

inline std::string random_bytes(std::size_t n, unsigned seed) {
    std::string s(n, '\0');
    std::mt19937 rng(seed);
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
}

// ---------------------------------------------------------------------------
// Clients

class Connection {
public:
    virtual ~Connection() { close_socket(); }
    virtual long send_some(const char* data, std::size_t n) = 0;
    virtual long recv_some(char* data, std::size_t n) = 0;  // 0: orderly end, <0: error/timeout

    void send_all(std::string_view bytes) {
        while (!bytes.empty()) {
            long n = send_some(bytes.data(), bytes.size());
            if (n <= 0) throw std::runtime_error("send failed");
            bytes.remove_prefix(static_cast<std::size_t>(n));
        }
    }
    // Reads until `needle` is in the received bytes; false on end/timeout.
    bool read_until(const std::string& needle) {
        while (pending_.find(needle) == std::string::npos) {
            char buf[16384];
            long n = recv_some(buf, sizeof buf);
            if (n <= 0) return false;
            pending_.append(buf, static_cast<std::size_t>(n));
        }
        return true;
    }
    bool read_exactly(std::size_t n) {
        while (pending_.size() < n) {
            char buf[65536];
            long got = recv_some(buf, sizeof buf);
            if (got <= 0) return false;
            pending_.append(buf, static_cast<std::size_t>(got));
        }
        return true;
    }
    // True when the server closed the connection (orderly or reset) before the deadline.
    bool closed_by_peer() {
        if (!pending_.empty()) return false;
        char buf[256];
        long n = recv_some(buf, sizeof buf);
        if (n > 0) {
            pending_.append(buf, static_cast<std::size_t>(n));
            return false;
        }
        return n == 0 || errno == ECONNRESET;
    }
    std::string take(std::size_t n) {
        std::string out = pending_.substr(0, n);
        pending_.erase(0, n);
        return out;
    }
    std::string& pending() { return pending_; }
    int fd() const { return fd_; }
    void close_socket() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

protected:
    int fd_ = -1;
    std::string pending_;
};

// `receive_buffer` > 0 shrinks the socket's receive buffer (a slow device's small window).
inline int connect_tcp(std::uint16_t port, std::chrono::seconds timeout = 10s, int receive_buffer = 0) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error("socket failed");
    if (receive_buffer > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    timeval tv{static_cast<time_t>(timeout.count()), 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        return -1;
    }
    return fd;
}

class PlainConnection : public Connection {
public:
    explicit PlainConnection(std::uint16_t port, int receive_buffer = 0) {
        fd_ = connect_tcp(port, 10s, receive_buffer);
        if (fd_ < 0) throw std::runtime_error("connect failed");
    }
    long send_some(const char* data, std::size_t n) override { return ::send(fd_, data, n, MSG_NOSIGNAL); }
    long recv_some(char* data, std::size_t n) override { return ::recv(fd_, data, n, 0); }
};

struct TlsClientOptions {
    int min_version = TLS1_2_VERSION;
    int max_version = 0;     // 0: highest
    bool legacy = false;     // security level 0, for trying obsolete protocols
    std::string trust_file;  // verify the server against this certificate when set
    std::string expect_ip;   // ... and its subjectAltName IP
    int receive_buffer = 0;  // see connect_tcp
};

class TlsConnection : public Connection {
public:
    TlsConnection(std::uint16_t port, const TlsClientOptions& options) {
        ctx_ = SSL_CTX_new(TLS_client_method());
        // A TCP end without close_notify reads as an end (HTTP framing tells completeness).
        SSL_CTX_set_options(ctx_, SSL_OP_IGNORE_UNEXPECTED_EOF);
        if (options.legacy) {
            SSL_CTX_set_security_level(ctx_, 0);
            SSL_CTX_set_cipher_list(ctx_, "ALL:@SECLEVEL=0");
        }
        SSL_CTX_set_min_proto_version(ctx_, options.min_version);
        SSL_CTX_set_max_proto_version(ctx_, options.max_version);
        if (!options.trust_file.empty()) {
            SSL_CTX_load_verify_locations(ctx_, options.trust_file.c_str(), nullptr);
            SSL_CTX_set_verify(ctx_, SSL_VERIFY_PEER, nullptr);
        }
        fd_ = connect_tcp(port, 10s, options.receive_buffer);
        if (fd_ < 0) throw std::runtime_error("connect failed");
        ssl_ = SSL_new(ctx_);
        if (!options.expect_ip.empty()) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), options.expect_ip.c_str());
        SSL_set_fd(ssl_, fd_);
        ERR_clear_error();
        int rc = SSL_connect(ssl_);
        if (rc != 1) {
            handshake_error_ = ERR_peek_last_error();
            char buf[256];
            ERR_error_string_n(handshake_error_, buf, sizeof buf);
            handshake_message_ = buf;
            ERR_clear_error();
        } else {
            connected_ = true;
        }
    }
    ~TlsConnection() override {
        // close_notify first: without it OpenSSL marks the session not resumable.
        if (ssl_ && connected_) SSL_shutdown(ssl_);
        if (ssl_) SSL_free(ssl_);
        if (ctx_) SSL_CTX_free(ctx_);
    }
    bool connected() const { return connected_; }
    unsigned long handshake_error() const { return handshake_error_; }
    const std::string& handshake_message() const { return handshake_message_; }
    int version() const { return SSL_version(ssl_); }
    SSL* ssl() { return ssl_; }

    long send_some(const char* data, std::size_t n) override { return SSL_write(ssl_, data, static_cast<int>(n)); }
    long recv_some(char* data, std::size_t n) override {
        int got = SSL_read(ssl_, data, static_cast<int>(n));
        if (got > 0) return got;
        int err = SSL_get_error(ssl_, got);
        ERR_clear_error();
        if (err == SSL_ERROR_ZERO_RETURN) return 0;            // close_notify
        if (err == SSL_ERROR_SYSCALL && errno == 0) return 0;  // TCP end without close_notify
        return -1;
    }

private:
    SSL_CTX* ctx_ = nullptr;
    SSL* ssl_ = nullptr;
    bool connected_ = false;
    unsigned long handshake_error_ = 0;
    std::string handshake_message_;
};

struct HttpResponse {
    unsigned status = 0;
    std::string header_block;                    // raw, as received
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
    bool ok = false;  // a complete response was read

    std::string header(const std::string& lower_name) const {
        auto it = headers.find(lower_name);
        return it == headers.end() ? std::string() : it->second;
    }
    bool has(const std::string& lower_name) const { return headers.count(lower_name) != 0; }
};

// Reads one response; `head` when it answers a HEAD (no body follows).
inline HttpResponse read_response(Connection& c, bool head = false) {
    HttpResponse r;
    if (!c.read_until("\r\n\r\n")) return r;
    auto end = c.pending().find("\r\n\r\n");
    r.header_block = c.take(end + 4);
    std::size_t line_end = r.header_block.find("\r\n");
    std::string status_line = r.header_block.substr(0, line_end);
    if (status_line.size() < 12) return r;
    r.status = static_cast<unsigned>(std::stoi(status_line.substr(9, 3)));
    std::size_t pos = line_end + 2;
    while (pos < r.header_block.size() - 2) {
        auto next = r.header_block.find("\r\n", pos);
        std::string line = r.header_block.substr(pos, next - pos);
        auto colon = line.find(':');
        std::string name = line.substr(0, colon);
        for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        r.headers[name] = value;
        pos = next + 2;
    }
    std::size_t length = 0;
    if (r.has("content-length")) length = std::stoull(r.header("content-length"));
    if (head || r.status / 100 == 1 || r.status == 204 || r.status == 304) length = 0;
    if (!c.read_exactly(length)) return r;
    r.body = c.take(length);
    r.ok = true;
    return r;
}

inline HttpResponse roundtrip(Connection& c, const std::string& request, bool head = false) {
    c.send_all(request);
    return read_response(c, head);
}

inline std::string get_request(const std::string& target, const std::string& extra_headers = "") {
    return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra_headers + "\r\n";
}

// ---------------------------------------------------------------------------
// Server

class TestServer {
public:
    TestServer(api::Router& router, ServerOptions options) : router_(router), options_(std::move(options)) {
        access_sink_ = std::make_shared<CaptureSink>();
        log_sink_ = std::make_shared<CaptureSink>();
        static std::atomic<int> counter{0};
        auto n = std::to_string(counter++);
        access_log_ = std::make_shared<spdlog::logger>("test-access-" + n, access_sink_);
        log_ = std::make_shared<spdlog::logger>("test-otad-" + n, log_sink_);
        log_->set_level(spdlog::level::debug);
    }
    ~TestServer() { stop(); }

    void start() {
        server_ = std::make_unique<Server>(options_, router_, access_log_, log_);
        for (const auto& info : server_->bind()) {
            if (info.scheme == "https")
                https_port_ = info.bound.port;
            else
                http_port_ = info.bound.port;
        }
        thread_ = std::thread([this] {
            server_->run();
            returned_ = true;
        });
    }
    void request_stop() {
        if (server_) server_->stop();
    }
    void reload() {
        if (server_) server_->reload_tls();
    }
    void stop() {
        if (!server_) return;
        server_->stop();
        if (thread_.joinable()) thread_.join();
        server_.reset();
    }
    bool returned() const { return returned_.load(); }
    void join() {
        if (thread_.joinable()) thread_.join();
    }

    std::uint16_t https_port() const { return https_port_; }
    std::uint16_t http_port() const { return http_port_; }
    CaptureSink& access() { return *access_sink_; }
    CaptureSink& log() { return *log_sink_; }

private:
    api::Router& router_;
    ServerOptions options_;
    std::shared_ptr<CaptureSink> access_sink_;
    std::shared_ptr<CaptureSink> log_sink_;
    std::shared_ptr<spdlog::logger> access_log_;
    std::shared_ptr<spdlog::logger> log_;
    std::unique_ptr<Server> server_;
    std::thread thread_;
    std::atomic<bool> returned_{false};
    std::uint16_t https_port_ = 0;
    std::uint16_t http_port_ = 0;
};

// A certificate for 127.0.0.1/localhost, made once per test binary.
struct TestCertificate {
    std::filesystem::path dir;
    std::filesystem::path cert;
    std::filesystem::path key;
    TestCertificate() : dir(make_temp_dir("cert")), cert(dir / "server.crt"), key(dir / "server.key") {
        ensure_self_signed_certificate(cert, key, {"localhost", "127.0.0.1"});
    }
    ~TestCertificate() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    static const TestCertificate& get() {
        static TestCertificate instance;
        return instance;
    }
};

inline ServerOptions test_options(bool https = true, bool http = true) {
    ServerOptions o;
    if (https) o.https = Endpoint{"127.0.0.1", 0};
    if (http) o.http = Endpoint{"127.0.0.1", 0};
    o.tls.cert_file = TestCertificate::get().cert;
    o.tls.key_file = TestCertificate::get().key;
    o.io_threads = 2;
    o.worker_threads = 4;
    o.install_signal_handlers = false;
    o.handshake_timeout = 5s;
    o.header_timeout = 5s;
    o.body_timeout = 5s;
    o.send_timeout = 5s;
    o.idle_timeout = 5s;
    o.shutdown_timeout = 5s;
    // The plain listener is a second transport for most tests; which routes it
    // serves by default has its own tests (listener_test.cpp).
    o.plain_http_serves_all_routes = true;
    return o;
}

}  // namespace otad::net::test
