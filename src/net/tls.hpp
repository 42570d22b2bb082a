#pragma once
// Private to src/net: TLS policy applied to the server's OpenSSL context.
// OpenSSL only (no Asio, no Beast), so it compiles fast and can be tested alone.

#include <cstdint>
#include <string>

#include <openssl/ssl.h>

#include "otad/net/server.hpp"

namespace otad::net::detail {

// Applies otad's TLS policy to `ctx` and loads the certificate chain and key:
// TLS 1.2 minimum (1.1 and older refused), TLS 1.3 on, ECDHE + AEAD ciphers for
// TLS 1.2 in server order, session tickets and cache on (cheap resumption for
// devices that open one connection per range), buffers released while idle.
// Throws std::runtime_error naming the file and OpenSSL's reason when the
// certificate or key is missing, unreadable, malformed or mismatched.
void configure_tls_context(SSL_CTX* ctx, const TlsOptions& tls);

// What start-up and reload log about the certificate a context serves.
struct CertificateInfo {
    std::string subject;  // RFC 2253, e.g. "CN=localhost,O=otad self-signed"
    std::string issuer;
    std::int64_t not_before = 0;  // unix seconds
    std::int64_t not_after = 0;   // unix seconds
    bool self_signed = false;     // issued by its own key
};
// The leaf certificate `ctx` serves (configure_tls_context loaded it). Throws
// std::runtime_error when the context has none.
CertificateInfo describe_certificate(SSL_CTX* ctx);

}  // namespace otad::net::detail
