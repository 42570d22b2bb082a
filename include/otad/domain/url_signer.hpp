#pragma once
// Pre-signed download URLs for blobs: /api/v1/blobs/<sha256>?expires=<t>&sig=<hmac>.
// The HMAC secret is created once per data dir (settings table) so URLs survive
// restarts; expiries are rounded up to a window so a manifest naming the URL can be
// computed and signed once per window and cached.

#include <cstdint>
#include <string>
#include <string_view>

#include "otad/domain/presigned_url.hpp"

namespace otad::storage {
class Database;
}

namespace otad::domain {

class UrlSigner {
public:
    // Loads the secret from the settings table, creating a random one the first time.
    static UrlSigner load_or_create(storage::Database& database, std::int64_t window_seconds,
                                    std::int64_t min_validity_seconds);
    UrlSigner(std::string secret, std::int64_t window_seconds, std::int64_t min_validity_seconds);

    // The blob path with its signed query, valid until the end of the window that
    // covers now + min_validity.
    std::string signed_blob_path(std::string_view sha256, std::int64_t now_unix) const;
    // When URLs signed at `now_unix` expire.
    std::int64_t expiry(std::int64_t now_unix) const noexcept;
    // Checks a request for `/api/v1/blobs/<sha256>` carrying expires & sig.
    PresignCheck verify_blob_path(std::string_view sha256, std::string_view expires, std::string_view sig,
                                  std::int64_t now_unix) const;
    static std::string blob_path(std::string_view sha256);

private:
    std::string secret_;
    std::int64_t window_seconds_;
    std::int64_t min_validity_seconds_;
};

}  // namespace otad::domain
