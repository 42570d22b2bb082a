#include "otad/net/access_log.hpp"

#include <array>

#include "otad/api/http.hpp"
#include "otad/net/request_target.hpp"
#include "otad/util/logging.hpp"

namespace otad::net {

bool is_secret_query_name(std::string_view decoded_name) noexcept {
    static constexpr std::array<std::string_view, 5> secret_names = {"key", "token", "sig", "signature",
                                                                     "access_token"};
    for (auto name : secret_names)
        if (api::iequals(decoded_name, name)) return true;
    return false;
}

namespace {
// A raw query name: decoded only when it holds an escape (rare), so the
// access log line of a pre-signed URL costs no allocation here.
bool is_secret_name(std::string_view raw_name) {
    if (raw_name.find_first_of("%+") == std::string_view::npos) return is_secret_query_name(raw_name);
    return is_secret_query_name(percent_decode(raw_name, true));
}
}  // namespace

std::string redact_target(std::string_view target) {
    auto question = target.find('?');
    if (question == std::string_view::npos) return std::string(target);
    std::string out;
    out.reserve(target.size() + 8);
    out.append(target.substr(0, question + 1));
    std::string_view query = target.substr(question + 1);
    bool first = true;
    while (true) {
        auto amp = query.find('&');
        std::string_view piece = query.substr(0, amp);
        if (!first) out.push_back('&');
        first = false;
        auto eq = piece.find('=');
        if (eq != std::string_view::npos && is_secret_name(piece.substr(0, eq))) {
            out.append(piece.substr(0, eq + 1));
            out.append("REDACTED");
        } else {
            out.append(piece);
        }
        if (amp == std::string_view::npos) break;
        query.remove_prefix(amp + 1);
    }
    return out;
}

void log_access(spdlog::logger& access_log, const AccessLogEntry& e) {
    util::log_event(access_log, spdlog::level::info, "request",
                    {{"remote", e.remote},
                     {"method", e.method.empty() ? std::string_view("-") : e.method},
                     {"target", redact_target(e.target.empty() ? "-" : e.target)},
                     {"status", std::to_string(e.status)},
                     {"bytes", std::to_string(e.bytes)},
                     {"duration_ms", std::to_string(e.duration_ms)},
                     {"principal", e.principal},
                     {"tls", e.tls ? "true" : "false"},
                     {"version", e.version == 10 ? "1.0" : "1.1"}});
}

}  // namespace otad::net
