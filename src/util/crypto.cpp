#include "otad/util/crypto.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace otad::util {

struct Digest::Ctx {
    EVP_MD_CTX* ctx = nullptr;
    ~Ctx() { EVP_MD_CTX_free(ctx); }
};

Digest::Digest(std::string_view algorithm) : ctx_(std::make_unique<Ctx>()) {
    const EVP_MD* md = EVP_get_digestbyname(std::string(algorithm).c_str());
    if (md == nullptr) throw std::invalid_argument("unknown digest " + std::string(algorithm));
    ctx_->ctx = EVP_MD_CTX_new();
    if (ctx_->ctx == nullptr || EVP_DigestInit_ex(ctx_->ctx, md, nullptr) != 1)
        throw std::runtime_error("EVP_DigestInit_ex failed");
}
Digest::~Digest() = default;
Digest::Digest(Digest&&) noexcept = default;
Digest& Digest::operator=(Digest&&) noexcept = default;

void Digest::update(std::string_view bytes) { update(as_bytes(bytes)); }
void Digest::update(std::span<const unsigned char> bytes) {
    if (EVP_DigestUpdate(ctx_->ctx, bytes.data(), bytes.size()) != 1)
        throw std::runtime_error("EVP_DigestUpdate failed");
}
std::vector<unsigned char> Digest::finish() {
    std::vector<unsigned char> out(EVP_MAX_MD_SIZE);
    unsigned int len = 0;
    if (EVP_DigestFinal_ex(ctx_->ctx, out.data(), &len) != 1) throw std::runtime_error("EVP_DigestFinal_ex failed");
    out.resize(len);
    return out;
}

std::vector<unsigned char> sha256(std::string_view bytes) {
    Digest d("sha256");
    d.update(bytes);
    return d.finish();
}
std::string sha256_hex(std::string_view bytes) { return to_hex(sha256(bytes)); }

std::vector<unsigned char> hmac_sha256(std::string_view key, std::string_view message) {
    std::vector<unsigned char> out(EVP_MAX_MD_SIZE);
    unsigned int len = 0;
    if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
             reinterpret_cast<const unsigned char*>(message.data()), message.size(), out.data(), &len) == nullptr)
        throw std::runtime_error("HMAC failed");
    out.resize(len);
    return out;
}

std::string to_hex(std::span<const unsigned char> bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char b : bytes) {
        out.push_back(digits[b >> 4]);
        out.push_back(digits[b & 0xF]);
    }
    return out;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::optional<std::vector<unsigned char>> from_hex(std::string_view hex) {
    if (hex.size() % 2 != 0) return std::nullopt;
    std::vector<unsigned char> out(hex.size() / 2);
    for (std::size_t i = 0; i < out.size(); ++i) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out[i] = static_cast<unsigned char>(hi << 4 | lo);
    }
    return out;
}

std::string base64_encode(std::span<const unsigned char> bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3), '\0');
    int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(), static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::optional<std::vector<unsigned char>> base64_decode(std::string_view text) {
    if (text.size() % 4 != 0) return std::nullopt;
    for (char c : text)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=')) return std::nullopt;
    std::vector<unsigned char> out(3 * text.size() / 4 + 1);
    int n =
        EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
    if (n < 0) return std::nullopt;
    // EVP_DecodeBlock counts padding as zero bytes: drop them.
    std::size_t pad = 0;
    if (!text.empty() && text.back() == '=') ++pad;
    if (text.size() > 1 && text[text.size() - 2] == '=') ++pad;
    out.resize(static_cast<std::size_t>(n) - pad);
    return out;
}

std::string base64url_encode(std::span<const unsigned char> bytes) {
    std::string s = base64_encode(bytes);
    while (!s.empty() && s.back() == '=') s.pop_back();
    for (char& c : s) {
        if (c == '+')
            c = '-';
        else if (c == '/')
            c = '_';
    }
    return s;
}

std::optional<std::vector<unsigned char>> base64url_decode(std::string_view text) {
    std::string s(text);
    for (char& c : s) {
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (c == '+' || c == '/' || c == '=')
            return std::nullopt;
    }
    while (s.size() % 4 != 0) s.push_back('=');
    return base64_decode(s);
}

std::vector<unsigned char> random_bytes(std::size_t n) {
    std::vector<unsigned char> out(n);
    if (RAND_bytes(out.data(), static_cast<int>(n)) != 1) throw std::runtime_error("RAND_bytes failed");
    return out;
}

std::string random_token(std::size_t n) { return base64url_encode(random_bytes(n)); }

bool constant_time_equals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace otad::util
