#pragma once
// The access log: one line per request, written when the response is done.
// Beast-free so it can be tested without sockets.

#include <cstdint>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

namespace otad::net {

// Query parameters whose values are secrets and never reach a log.
// Names compare case-insensitively after percent-decoding.
bool is_secret_query_name(std::string_view decoded_name) noexcept;

// `target` with the value of every secret query parameter (key, token, sig,
// signature, access_token) replaced by "REDACTED"; everything else is kept as sent.
std::string redact_target(std::string_view target);

struct AccessLogEntry {
    std::string_view remote;  // "ip:port"
    std::string_view method;  // as sent; "-" when the request line never parsed
    std::string_view target;  // raw request-target: redacted by log_access
    unsigned status = 0;
    std::uint64_t bytes = 0;  // body bytes actually sent
    std::uint64_t duration_ms = 0;
    std::string_view principal;  // token name or device id; never a secret
    bool tls = false;
    unsigned version = 11;  // 10 or 11
};

// Writes the "request" event at info level on `access_log`. Never logs headers.
void log_access(spdlog::logger& access_log, const AccessLogEntry& entry);

}  // namespace otad::net
