#pragma once
// Pre-signed download URLs: a path plus "?expires=<t>&sig=<mac>" that any
// client can fetch until t without other credentials.
//
//   mac = base64url_nopad(HMAC-SHA256(secret, path + "\n" + expires_decimal))
//
// `path` is whatever the caller signs and later verifies, byte for byte; use the
// percent-decoded request path (api::Request::path) on both sides. The query
// values need no percent-encoding (digits and the base64url alphabet).
//
// Manifest caching: expiry_window_end rounds an expiry up to a window boundary,
//   expires = ceil((now + min_validity) / window) * window
// so every manifest built within the same window carries the same URLs (and the
// same bytes, hence the same ETag/signature) while each URL stays valid for at
// least min_validity and at most min_validity + window - 1 seconds.

#include <cstdint>
#include <string>
#include <string_view>

namespace otad::domain {

// "expires=<expires_unix>&sig=<mac>". Throws std::invalid_argument for an empty
// secret or a negative expiry.
std::string presign(std::string_view secret, std::string_view path, std::int64_t expires_unix);

// The mac alone (the `sig` value).
std::string presign_signature(std::string_view secret, std::string_view path, std::int64_t expires_unix);

enum class PresignCheck { ok, expired, bad_signature };
std::string_view to_string(PresignCheck check) noexcept;

// Checks the query values of a request. The signature is checked first (in
// constant time), so a forged or malformed URL is bad_signature even when its
// expiry has passed; a genuine one is expired once now >= expires. `expires_str`
// must be the canonical decimal presign wrote (digits only, at most 18);
// anything else, an empty secret or a missing sig is bad_signature.
PresignCheck verify_presigned(std::string_view secret, std::string_view path, std::string_view expires_str,
                              std::string_view sig_str, std::int64_t now_unix) noexcept;

// See the header comment. window_seconds <= 0 means no rounding (now + min_validity).
// min_validity < 0 counts as 0. Saturates instead of overflowing.
std::int64_t expiry_window_end(std::int64_t now_unix, std::int64_t window_seconds,
                               std::int64_t min_validity_seconds) noexcept;

}  // namespace otad::domain
