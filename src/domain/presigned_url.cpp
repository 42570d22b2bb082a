#include "otad/domain/presigned_url.hpp"

#include "otad/util/crypto.hpp"

#include <limits>
#include <stdexcept>

namespace otad::domain {
namespace {

constexpr std::size_t kMaxExpiresDigits = 18;  // fits int64 without overflow checks

std::string mac(std::string_view secret, std::string_view path, std::string_view expires_decimal) {
    std::string message;
    message.reserve(path.size() + 1 + expires_decimal.size());
    message.append(path).append("\n").append(expires_decimal);
    return util::base64url_encode(util::hmac_sha256(secret, message));
}

}  // namespace

std::string presign_signature(std::string_view secret, std::string_view path, std::int64_t expires_unix) {
    if (secret.empty()) throw std::invalid_argument("presign: the URL signing secret is empty");
    if (expires_unix < 0) throw std::invalid_argument("presign: negative expiry " + std::to_string(expires_unix));
    return mac(secret, path, std::to_string(expires_unix));
}

std::string presign(std::string_view secret, std::string_view path, std::int64_t expires_unix) {
    return "expires=" + std::to_string(expires_unix) + "&sig=" + presign_signature(secret, path, expires_unix);
}

std::string_view to_string(PresignCheck check) noexcept {
    switch (check) {
        case PresignCheck::ok:
            return "ok";
        case PresignCheck::expired:
            return "expired";
        case PresignCheck::bad_signature:
            return "bad_signature";
    }
    return "unknown";
}

PresignCheck verify_presigned(std::string_view secret, std::string_view path, std::string_view expires_str,
                              std::string_view sig_str, std::int64_t now_unix) noexcept {
    if (secret.empty() || sig_str.empty() || expires_str.empty() || expires_str.size() > kMaxExpiresDigits)
        return PresignCheck::bad_signature;
    std::int64_t expires = 0;
    for (char c : expires_str) {
        if (c < '0' || c > '9') return PresignCheck::bad_signature;
        expires = expires * 10 + (c - '0');
    }
    // Only the canonical form was ever signed: "007" cannot match, and no
    // second spelling of a signed expiry exists.
    if (expires_str.size() > 1 && expires_str[0] == '0') return PresignCheck::bad_signature;
    try {
        if (!util::constant_time_equals(mac(secret, path, expires_str), sig_str)) return PresignCheck::bad_signature;
    } catch (...) {  // HMAC or allocation failure: refuse
        return PresignCheck::bad_signature;
    }
    return now_unix >= expires ? PresignCheck::expired : PresignCheck::ok;
}

std::int64_t expiry_window_end(std::int64_t now_unix, std::int64_t window_seconds,
                               std::int64_t min_validity_seconds) noexcept {
    constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
    if (min_validity_seconds < 0) min_validity_seconds = 0;
    if (now_unix > kMax - min_validity_seconds) return kMax;
    const std::int64_t earliest = now_unix + min_validity_seconds;
    if (window_seconds <= 0) return earliest;
    // ceil(earliest / window) * window, correct for negative values too.
    std::int64_t quotient = earliest / window_seconds;
    if (earliest % window_seconds != 0 && earliest > 0) ++quotient;
    if (quotient > kMax / window_seconds) return kMax;  // the boundary lies past int64
    return quotient * window_seconds;
}

}  // namespace otad::domain
