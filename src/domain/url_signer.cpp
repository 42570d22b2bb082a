#include "otad/domain/url_signer.hpp"

#include "otad/storage/database.hpp"
#include "otad/storage/settings_repository.hpp"
#include "otad/util/crypto.hpp"

namespace otad::domain {

UrlSigner UrlSigner::load_or_create(storage::Database& database, std::int64_t window_seconds,
                                    std::int64_t min_validity_seconds) {
    std::string secret = database.write([](storage::Connection& c) {
        return storage::SettingsRepository(c).get_or_create("url_signing_secret",
                                                            [] { return util::random_token(32); });
    });
    return UrlSigner(std::move(secret), window_seconds, min_validity_seconds);
}

UrlSigner::UrlSigner(std::string secret, std::int64_t window_seconds, std::int64_t min_validity_seconds)
    : secret_(std::move(secret)), window_seconds_(window_seconds), min_validity_seconds_(min_validity_seconds) {}

std::string UrlSigner::blob_path(std::string_view sha256) { return "/api/v1/blobs/" + std::string(sha256); }

std::int64_t UrlSigner::expiry(std::int64_t now_unix) const noexcept {
    return expiry_window_end(now_unix, window_seconds_, min_validity_seconds_);
}

std::string UrlSigner::signed_blob_path(std::string_view sha256, std::int64_t now_unix) const {
    std::string path = blob_path(sha256);
    return path + "?" + presign(secret_, path, expiry(now_unix));
}

PresignCheck UrlSigner::verify_blob_path(std::string_view sha256, std::string_view expires, std::string_view sig,
                                         std::int64_t now_unix) const {
    return verify_presigned(secret_, blob_path(sha256), expires, sig, now_unix);
}

}  // namespace otad::domain
