#pragma once
// Private to src/net: a server-side TLS stream that runs OpenSSL directly on
// the socket's descriptor, for the sessions in session.cpp.
//
// Why not asio::ssl::stream: its engine always holds two ~17 KiB buffers plus a
// BIO pair (2 x ~17 KiB) per connection, ~70 KiB even while a keep-alive
// connection sits idle. Here OpenSSL reads and writes the socket itself
// (non-blocking, through a small BIO that never raises SIGPIPE) and, with
// SSL_MODE_RELEASE_BUFFERS, frees its record buffers whenever nothing is pending.
//
// Model: AsyncReadStream / AsyncWriteStream for Beast. Each operation tries the
// OpenSSL call first; on WANT_READ / WANT_WRITE it waits for the socket to be
// ready (socket.async_wait) and tries again. Errors: a close_notify is
// asio::error::eof, an end without one asio::ssl::error::stream_truncated, a
// passed deadline beast::error::timeout, cancel() asio::error::operation_aborted.
//
// Deadlines follow beast::tcp_stream: expires_after() applies to the operations
// that follow it until the next expires_after/expires_never; when it passes, the
// pending operation (or the next one started) fails with beast::error::timeout.
// One operation of each direction at a time, all on the stream's executor (never two handlers at once).

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <memory>
#include <utility>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/basic_waitable_timer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/error.hpp>

namespace otad::net::detail {

namespace tls_stream_detail {

namespace asio = boost::asio;

// A socket BIO that uses send(MSG_NOSIGNAL)/recv: a peer that resets the
// connection must give EPIPE, not kill the process.
inline int bio_fd(BIO* bio) { return static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio))); }

inline int bio_write(BIO* bio, const char* data, int size) {
    BIO_clear_retry_flags(bio);
    ssize_t n = ::send(bio_fd(bio), data, static_cast<std::size_t>(size), MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_write(bio);
    return static_cast<int>(n);
}

inline int bio_read(BIO* bio, char* data, int size) {
    BIO_clear_retry_flags(bio);
    ssize_t n = ::recv(bio_fd(bio), data, static_cast<std::size_t>(size), 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_read(bio);
    if (n == 0) BIO_set_flags(bio, BIO_FLAGS_IN_EOF);  // lets OpenSSL tell a truncation from a retry
    return static_cast<int>(n);
}

// SSL_get_error needs an empty error queue before each TLS call. Clearing it
// costs a walk over all its slots; peeking first is cheaper, and it is almost
// always empty (failures clear it themselves in classify()).
inline void clear_error_queue() {
    if (ERR_peek_error() != 0) ERR_clear_error();
}

inline int bio_puts(BIO* bio, const char* text) { return bio_write(bio, text, static_cast<int>(std::strlen(text))); }

inline long bio_ctrl(BIO* bio, int cmd, long, void*) {
    switch (cmd) {
        case BIO_CTRL_FLUSH:
            return 1;
        case BIO_CTRL_EOF:
            return BIO_test_flags(bio, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
        default:
            return 0;
    }
}

inline int bio_create(BIO* bio) {
    BIO_set_init(bio, 1);
    return 1;
}

inline int bio_destroy(BIO*) { return 1; }  // the socket belongs to the stream

inline const BIO_METHOD* socket_bio_method() {
    static const BIO_METHOD* method = [] {
        BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "otad socket");
        if (m == nullptr) return static_cast<BIO_METHOD*>(nullptr);
        BIO_meth_set_write(m, bio_write);
        BIO_meth_set_read(m, bio_read);
        BIO_meth_set_puts(m, bio_puts);
        BIO_meth_set_ctrl(m, bio_ctrl);
        BIO_meth_set_create(m, bio_create);
        BIO_meth_set_destroy(m, bio_destroy);
        return m;
    }();
    return method;
}

}  // namespace tls_stream_detail

class TlsSocketStream {
public:
    // The io_context's own executor, not any_io_executor: the socket, the timer
    // and every pending operation then carry an 8-byte executor instead of a
    // type-erased one (memory per idle connection, and no type-erased calls).
    using executor_type = boost::asio::io_context::executor_type;
    using socket_type = boost::asio::basic_stream_socket<boost::asio::ip::tcp, executor_type>;
    using timer_type =
        boost::asio::basic_waitable_timer<std::chrono::steady_clock,
                                          boost::asio::wait_traits<std::chrono::steady_clock>, executor_type>;
    using error_code = boost::system::error_code;
    using tcp = boost::asio::ip::tcp;

    // Takes over a connected socket. Throws boost::system::system_error when
    // OpenSSL cannot allocate the connection's state.
    TlsSocketStream(socket_type socket, boost::asio::ssl::context& context)
        : core_(std::make_shared<Core>(std::move(socket))) {
        error_code ec;
        core_->socket.non_blocking(true, ec);
        if (ec) throw boost::system::system_error(ec, "cannot make the TLS socket non-blocking");
        core_->ssl = SSL_new(context.native_handle());
        BIO* bio = nullptr;
        if (const BIO_METHOD* method = tls_stream_detail::socket_bio_method()) bio = BIO_new(method);
        if (core_->ssl == nullptr || bio == nullptr) {
            if (bio != nullptr) BIO_free(bio);
            ERR_clear_error();
            throw boost::system::system_error(make_error_code(boost::system::errc::not_enough_memory),
                                              "cannot create the TLS connection state");
        }
        BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(core_->socket.native_handle())));
        SSL_set_bio(core_->ssl, bio, bio);  // the SSL owns the BIO (one reference for both directions)
        SSL_set_mode(core_->ssl,
                     SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
        // One recv per read instead of one per record header and body; the read
        // buffer is still released once it is empty.
        SSL_set_read_ahead(core_->ssl, 1);
        SSL_set_accept_state(core_->ssl);
    }

    TlsSocketStream(TlsSocketStream&&) noexcept = default;
    TlsSocketStream& operator=(TlsSocketStream&&) noexcept = default;
    ~TlsSocketStream() {
        if (core_) {
            core_->timer.cancel();
            error_code ignored;
            core_->socket.close(ignored);
        }
    }

    executor_type get_executor() noexcept { return core_->socket.get_executor(); }
    socket_type& socket() noexcept { return core_->socket; }
    SSL* native_handle() noexcept { return core_->ssl; }

    // Deadlines (see the header comment).
    void expires_after(std::chrono::steady_clock::duration timeout) {
        core_->timed_out = false;
        ++core_->deadline_generation;
        core_->timer.expires_after(timeout);
        core_->timer.async_wait(
            [weak = std::weak_ptr<Core>(core_), generation = core_->deadline_generation](const error_code& ec) {
                if (ec) return;
                auto core = weak.lock();
                if (!core || core->deadline_generation != generation) return;
                core->timed_out = true;
                error_code ignored;
                core->socket.cancel(ignored);
            });
    }
    void expires_never() {
        core_->timed_out = false;
        ++core_->deadline_generation;
        core_->timer.cancel();
    }
    // Pending operations end with operation_aborted.
    void cancel() {
        error_code ignored;
        core_->socket.cancel(ignored);
    }
    // True when OpenSSL holds bytes of a record already read from the socket.
    bool has_buffered_input() const noexcept { return SSL_has_pending(core_->ssl) == 1; }
    void close() {
        core_->timer.cancel();
        error_code ignored;
        core_->socket.close(ignored);
    }

    // Server handshake. Signature: void(error_code).
    template <class Token>
    auto async_handshake(Token&& token) {
        return boost::asio::async_compose<Token, void(error_code)>(Op<Kind::handshake>{core_.get(), nullptr, 0}, token,
                                                                   core_->socket);
    }

    // Signature: void(error_code, std::size_t).
    template <class MutableBuffers, class Token>
    auto async_read_some(const MutableBuffers& buffers, Token&& token) {
        auto first =
            first_non_empty(boost::asio::buffer_sequence_begin(buffers), boost::asio::buffer_sequence_end(buffers));
        return boost::asio::async_compose<Token, void(error_code, std::size_t)>(
            Op<Kind::read>{core_.get(), first.data(), first.size()}, token, core_->socket);
    }

    // Writes at least one byte unless it fails. Signature: void(error_code, std::size_t).
    template <class ConstBuffers, class Token>
    auto async_write_some(const ConstBuffers& buffers, Token&& token) {
        auto first =
            first_non_empty(boost::asio::buffer_sequence_begin(buffers), boost::asio::buffer_sequence_end(buffers));
        return boost::asio::async_compose<Token, void(error_code, std::size_t)>(
            Op<Kind::write>{core_.get(), const_cast<void*>(static_cast<const void*>(first.data())), first.size()},
            token, core_->socket);
    }

    // Writes what the socket takes right now, without waiting: returns the bytes
    // written (maybe 0). `ec` is set only for a real failure, never for "would
    // block". As with async_write_some, a record OpenSSL could not finish stays
    // in flight: the next write must offer the same bytes again.
    std::size_t write_some_now(const void* data, std::size_t size, error_code& ec) {
        ec = {};
        Core& c = *core_;
        if (!c.socket.is_open()) {
            ec = boost::asio::error::bad_descriptor;
            return 0;
        }
        std::size_t done = 0;
        while (done < size) {
            tls_stream_detail::clear_error_queue();
            errno = 0;
            std::size_t n = 0;
            const int result_code = SSL_write_ex(c.ssl, static_cast<const char*>(data) + done, size - done, &n);
            if (result_code == 1) {
                done += n;
                continue;
            }
            const int saved_errno = errno;
            boost::asio::socket_base::wait_type wait = boost::asio::socket_base::wait_write;
            bool retry = false;
            ec = classify(c, SSL_get_error(c.ssl, result_code), saved_errno, wait, retry);
            break;  // retry: the socket is full (or a renegotiation read is due): the async path waits
        }
        return done;
    }

    // Copies decrypted bytes OpenSSL already holds (the rest of a record a read
    // has started) without touching the socket; 0 when it holds none.
    std::size_t read_buffered(void* data, std::size_t size) {
        Core& c = *core_;
        const int pending = SSL_pending(c.ssl);
        if (pending <= 0 || size == 0 || !c.socket.is_open()) return 0;
        tls_stream_detail::clear_error_queue();
        std::size_t n = 0;
        if (SSL_read_ex(c.ssl, data, std::min<std::size_t>(size, static_cast<std::size_t>(pending)), &n) != 1) {
            ERR_clear_error();  // the next asynchronous read reports whatever went wrong
            return 0;
        }
        return n;
    }

    // Sends close_notify and waits for the peer's (best effort). Signature: void(error_code).
    template <class Token>
    auto async_shutdown(Token&& token) {
        return boost::asio::async_compose<Token, void(error_code)>(Op<Kind::shutdown>{core_.get(), nullptr, 0}, token,
                                                                   core_->socket);
    }

private:
    struct Core {
        explicit Core(socket_type s) : socket(std::move(s)), timer(socket.get_executor()) {}
        ~Core() {
            if (ssl != nullptr) SSL_free(ssl);
        }
        Core(const Core&) = delete;
        Core& operator=(const Core&) = delete;
        socket_type socket;
        timer_type timer;
        SSL* ssl = nullptr;
        std::uint64_t deadline_generation = 0;
        bool timed_out = false;
        bool failed = false;  // a fatal TLS error happened: no shutdown afterwards
    };

    enum class Kind { handshake, read, write, shutdown };

    template <class Iterator>
    static auto first_non_empty(Iterator begin, Iterator end) {
        using Buffer = std::decay_t<decltype(*begin)>;
        for (auto it = begin; it != end; ++it)
            if (Buffer b(*it); b.size() > 0) return b;
        return Buffer{};
    }

    // Turns a failed OpenSSL call into an error code; 0 when the call must be
    // retried once the socket is ready (`wait` tells for what).
    static error_code classify(Core& core, int ssl_error, int saved_errno, boost::asio::socket_base::wait_type& wait,
                               bool& retry) {
        namespace asio = boost::asio;
        retry = false;
        switch (ssl_error) {
            case SSL_ERROR_WANT_READ:
                wait = asio::socket_base::wait_read;
                retry = true;
                return {};
            case SSL_ERROR_WANT_WRITE:
                wait = asio::socket_base::wait_write;
                retry = true;
                return {};
            case SSL_ERROR_ZERO_RETURN:
                return asio::error::eof;
            case SSL_ERROR_SYSCALL: {
                core.failed = true;
                ERR_clear_error();
                // No errno: the peer closed the TCP connection without close_notify.
                if (saved_errno == 0) return asio::ssl::error::stream_truncated;
                return error_code(saved_errno, boost::system::system_category());
            }
            default: {
                core.failed = true;
                const unsigned long code = ERR_peek_last_error();
                ERR_clear_error();
                if (ERR_GET_REASON(code) == SSL_R_UNEXPECTED_EOF_WHILE_READING)
                    return asio::ssl::error::stream_truncated;
                if (code == 0) return asio::ssl::error::unspecified_system_error;
                return error_code(static_cast<int>(code), asio::error::get_ssl_category());
            }
        }
    }

    // One operation. Completion is never inline with its initiation (as with
    // Asio's own streams): a result known at once is posted, so loops of
    // immediate reads or writes cannot grow the stack.
    template <Kind kind>
    struct Op {
        Core* core;
        void* data;
        std::size_t size;
        std::size_t done = 0;
        unsigned zero_shutdowns = 0;
        enum class Phase { initiating, waited, deferred } phase = Phase::initiating;
        error_code result{};

        template <class Self>
        void operator()(Self& self, error_code wait_ec = {}) {
            namespace asio = boost::asio;
            Core& c = *core;
            if (phase == Phase::deferred) return complete(self, result);
            if (wait_ec) {
                if (wait_ec == asio::error::operation_aborted && c.timed_out) wait_ec = boost::beast::error::timeout;
                return finish(self, wait_ec);
            }
            if (c.timed_out) return finish(self, boost::beast::error::timeout);
            // The BIO holds the descriptor number: never touch it once closed (it may be reused).
            if (!c.socket.is_open()) return finish(self, asio::error::bad_descriptor);
            if constexpr (kind == Kind::read || kind == Kind::write) {
                if (size == 0) return finish(self, {});
            }
            for (;;) {
                tls_stream_detail::clear_error_queue();
                errno = 0;
                int result_code = 0;
                if constexpr (kind == Kind::handshake) {
                    result_code = SSL_do_handshake(c.ssl);
                    if (result_code == 1) return finish(self, {});
                } else if constexpr (kind == Kind::read) {
                    std::size_t n = 0;
                    result_code = SSL_read_ex(c.ssl, data, size, &n);
                    if (result_code == 1) {
                        done = n;
                        return finish(self, {});
                    }
                } else if constexpr (kind == Kind::write) {
                    // Partial writes: each successful call takes at least one record.
                    std::size_t n = 0;
                    result_code = SSL_write_ex(c.ssl, static_cast<const char*>(data) + done, size - done, &n);
                    if (result_code == 1) {
                        done += n;
                        if (done < size) continue;
                        return finish(self, {});
                    }
                } else {
                    if (c.failed) return finish(self, {});
                    result_code = SSL_shutdown(c.ssl);
                    if (result_code == 1) return finish(self, {});
                    // 0: our close_notify is out; call again to wait for the peer's.
                    if (result_code == 0) {
                        if (++zero_shutdowns > 2) return finish(self, {});
                        continue;
                    }
                }
                const int saved_errno = errno;
                asio::socket_base::wait_type wait = asio::socket_base::wait_read;
                bool retry = false;
                error_code ec = classify(c, SSL_get_error(c.ssl, result_code), saved_errno, wait, retry);
                if (!retry) return finish(self, ec);
                // Bytes already written are this write's result; OpenSSL keeps the
                // record in flight and the caller's next write (same bytes) resumes it.
                if constexpr (kind == Kind::write) {
                    if (done > 0) return finish(self, {});
                }
                if (c.timed_out) return finish(self, boost::beast::error::timeout);
                phase = Phase::waited;
                c.socket.async_wait(wait, std::move(self));
                return;
            }
        }

        template <class Self>
        void finish(Self& self, error_code ec) {
            if (phase == Phase::initiating) {
                phase = Phase::deferred;
                result = ec;
                auto executor = core->socket.get_executor();
                boost::asio::post(executor, std::move(self));
                return;
            }
            complete(self, ec);
        }

        template <class Self>
        void complete(Self& self, error_code ec) {
            if constexpr (kind == Kind::read || kind == Kind::write)
                self.complete(ec, ec ? 0 : done);
            else
                self.complete(ec);
        }
    };

    std::shared_ptr<Core> core_;
};

}  // namespace otad::net::detail
