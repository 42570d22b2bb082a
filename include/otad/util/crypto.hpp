#pragma once
// Small wrappers over OpenSSL's EVP API: streaming digests, encodings, random
// bytes and constant-time comparison. No other layer calls EVP digests directly.

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <optional>
#include <vector>

namespace otad::util {

// Incremental digest ("sha256", "md5", "sha1"). Feed with update(), then finish() once.
class Digest {
public:
    explicit Digest(std::string_view algorithm);
    ~Digest();
    Digest(Digest&&) noexcept;
    Digest& operator=(Digest&&) noexcept;
    void update(std::string_view bytes);
    void update(std::span<const unsigned char> bytes);
    std::vector<unsigned char> finish();  // raw digest

private:
    struct Ctx;
    std::unique_ptr<Ctx> ctx_;
};

std::string sha256_hex(std::string_view bytes);
std::vector<unsigned char> sha256(std::string_view bytes);
std::vector<unsigned char> hmac_sha256(std::string_view key, std::string_view message);

std::string to_hex(std::span<const unsigned char> bytes);                  // lower case
std::optional<std::vector<unsigned char>> from_hex(std::string_view hex);  // any case; nullopt if malformed
std::string base64_encode(std::span<const unsigned char> bytes);           // standard alphabet, padded
std::optional<std::vector<unsigned char>> base64_decode(std::string_view text);
std::string base64url_encode(std::span<const unsigned char> bytes);  // no padding
std::optional<std::vector<unsigned char>> base64url_decode(std::string_view text);

// Cryptographically secure random bytes (RAND_bytes).
std::vector<unsigned char> random_bytes(std::size_t n);
// A random token of n bytes as URL-safe base64.
std::string random_token(std::size_t n = 32);

// Compares in time independent of where the inputs differ (CRYPTO_memcmp).
bool constant_time_equals(std::string_view a, std::string_view b) noexcept;

inline std::span<const unsigned char> as_bytes(std::string_view s) {
    return {reinterpret_cast<const unsigned char*>(s.data()), s.size()};
}

}  // namespace otad::util
