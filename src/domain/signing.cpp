#include "otad/domain/signing.hpp"

#include "otad/util/crypto.hpp"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

namespace otad::domain {

namespace detail {
struct PkeyHandle {
    EVP_PKEY* pkey = nullptr;
    explicit PkeyHandle(EVP_PKEY* p) : pkey(p) {}
    ~PkeyHandle() { EVP_PKEY_free(pkey); }
    PkeyHandle(const PkeyHandle&) = delete;
    PkeyHandle& operator=(const PkeyHandle&) = delete;
};
}  // namespace detail

namespace {

using detail::PkeyHandle;

struct BioFree {
    void operator()(BIO* b) const noexcept { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

struct MdCtxFree {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, MdCtxFree>;

// The most recent OpenSSL error as text (and the queue cleared), for messages.
std::string openssl_error() {
    unsigned long code = ERR_get_error();
    ERR_clear_error();
    if (code == 0) return "no OpenSSL detail";
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    return buf;
}

BioPtr read_bio(std::string_view text) {
    if (text.size() > 1024 * 1024) throw SigningError("PEM text larger than 1 MiB");
    BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
    if (!bio) throw SigningError("BIO_new_mem_buf failed");
    return bio;
}

std::string drain(BIO* bio) {
    char* data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    return std::string(data, static_cast<std::size_t>(len));
}

// Refuses encrypted PEM instead of prompting on the terminal.
int no_password(char*, int, int, void*) { return -1; }

// Classifies a key; throws naming what it is when it is neither P-256 nor Ed25519.
SignatureAlgorithm algorithm_of(EVP_PKEY* pkey) {
    const int type = EVP_PKEY_get_base_id(pkey);
    if (type == EVP_PKEY_ED25519) return SignatureAlgorithm::ed25519;
    if (type == EVP_PKEY_EC) {
        char group[80] = {};
        std::size_t len = 0;
        if (EVP_PKEY_get_group_name(pkey, group, sizeof group, &len) != 1) {
            ERR_clear_error();
            throw SigningError("EC key without a named curve is not supported; use P-256 (es256)");
        }
        int nid = OBJ_sn2nid(group);
        if (nid == NID_undef) nid = EC_curve_nist2nid(group);
        if (nid == NID_X9_62_prime256v1) return SignatureAlgorithm::es256;
        throw SigningError("EC key on curve " + std::string(group) + " is not supported; use P-256 (es256)");
    }
    const char* name = OBJ_nid2sn(type);
    throw SigningError(std::string("key type ") + (name ? name : "unknown") +
                       " is not supported; use an ECDSA P-256 (es256) or Ed25519 key");
}

std::vector<unsigned char> spki_der(EVP_PKEY* pkey) {
    int len = i2d_PUBKEY(pkey, nullptr);
    if (len <= 0) throw SigningError("cannot encode public key: " + openssl_error());
    std::vector<unsigned char> out(static_cast<std::size_t>(len));
    unsigned char* p = out.data();
    if (i2d_PUBKEY(pkey, &p) != len) throw SigningError("cannot encode public key: " + openssl_error());
    return out;
}

const EVP_MD* digest_for(SignatureAlgorithm alg) {
    // Ed25519 hashes internally (pure EdDSA): no digest may be given.
    return alg == SignatureAlgorithm::es256 ? EVP_sha256() : nullptr;
}

// The public half of a private key as its own EVP_PKEY, so a VerifyingKey never holds secrets.
std::shared_ptr<const PkeyHandle> public_only(EVP_PKEY* pkey) {
    const auto der = spki_der(pkey);
    const unsigned char* p = der.data();
    EVP_PKEY* pub = d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size()));
    if (pub == nullptr) throw SigningError("cannot decode public key: " + openssl_error());
    return std::make_shared<const PkeyHandle>(pub);
}

std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace

std::string_view to_string(SignatureAlgorithm alg) noexcept {
    switch (alg) {
        case SignatureAlgorithm::es256:
            return "es256";
        case SignatureAlgorithm::ed25519:
            return "ed25519";
    }
    return "unknown";
}

std::optional<SignatureAlgorithm> parse_signature_algorithm(std::string_view text) noexcept {
    if (text == "es256") return SignatureAlgorithm::es256;
    if (text == "ed25519") return SignatureAlgorithm::ed25519;
    return std::nullopt;
}

std::string key_id_for_public_der(std::span<const unsigned char> spki) {
    const auto digest = util::sha256(std::string_view(reinterpret_cast<const char*>(spki.data()), spki.size()));
    return util::to_hex(digest).substr(0, 16);
}

// ---- VerifyingKey ----

VerifyingKey::VerifyingKey(std::shared_ptr<const detail::PkeyHandle> key, SignatureAlgorithm alg)
    : key_(std::move(key)), algorithm_(alg), key_id_(key_id_for_public_der(spki_der(key_->pkey))) {}

VerifyingKey VerifyingKey::from_public_pem(std::string_view pem) {
    BioPtr bio = read_bio(pem);
    EVP_PKEY* pkey = PEM_read_bio_PUBKEY(bio.get(), nullptr, no_password, nullptr);
    if (pkey == nullptr) throw SigningError("not a PEM public key (BEGIN PUBLIC KEY): " + openssl_error());
    auto handle = std::make_shared<const PkeyHandle>(pkey);
    return VerifyingKey(handle, algorithm_of(pkey));
}

std::string VerifyingKey::public_pem() const {
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || PEM_write_bio_PUBKEY(bio.get(), key_->pkey) != 1)
        throw SigningError("cannot write public key PEM: " + openssl_error());
    return drain(bio.get());
}

std::vector<unsigned char> VerifyingKey::public_der() const { return spki_der(key_->pkey); }

bool VerifyingKey::verify(std::string_view message, std::span<const unsigned char> signature) const noexcept {
    MdCtxPtr ctx(EVP_MD_CTX_new());
    bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, digest_for(algorithm_), nullptr, key_->pkey) == 1 &&
              EVP_DigestVerify(ctx.get(), signature.data(), signature.size(),
                               reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
    ERR_clear_error();  // a failed verification leaves errors behind; they are not ours to report
    return ok;
}

// ---- SigningKey ----

SigningKey::SigningKey(std::shared_ptr<const detail::PkeyHandle> key, VerifyingKey pub)
    : key_(std::move(key)), public_(std::move(pub)) {}

SigningKey SigningKey::generate(SignatureAlgorithm alg) {
    EVP_PKEY* pkey = alg == SignatureAlgorithm::es256 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")
                                                      : EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    if (pkey == nullptr)
        throw SigningError("cannot generate " + std::string(to_string(alg)) + " key: " + openssl_error());
    auto handle = std::make_shared<const PkeyHandle>(pkey);
    return SigningKey(handle, VerifyingKey(public_only(pkey), alg));
}

SigningKey SigningKey::from_private_pem(std::string_view pem) {
    BioPtr bio = read_bio(pem);
    EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr);
    if (pkey == nullptr)
        throw SigningError("not an unencrypted PEM private key (BEGIN PRIVATE KEY): " + openssl_error());
    auto handle = std::make_shared<const PkeyHandle>(pkey);
    const SignatureAlgorithm alg = algorithm_of(pkey);
    return SigningKey(handle, VerifyingKey(public_only(pkey), alg));
}

std::string SigningKey::private_pem() const {
    // Secure-heap BIO where available, so the encoded key is wiped when freed.
    BioPtr bio(BIO_new(BIO_s_secmem()));
    if (!bio || PEM_write_bio_PrivateKey(bio.get(), key_->pkey, nullptr, nullptr, 0, nullptr, nullptr) != 1)
        throw SigningError("cannot write private key PEM: " + openssl_error());
    return drain(bio.get());
}

std::vector<unsigned char> SigningKey::sign(std::string_view message) const {
    MdCtxPtr ctx(EVP_MD_CTX_new());
    if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, digest_for(algorithm()), nullptr, key_->pkey) != 1)
        throw SigningError("EVP_DigestSignInit failed: " + openssl_error());
    const auto* data = reinterpret_cast<const unsigned char*>(message.data());
    std::size_t len = 0;
    if (EVP_DigestSign(ctx.get(), nullptr, &len, data, message.size()) != 1)
        throw SigningError("EVP_DigestSign (size) failed: " + openssl_error());
    std::vector<unsigned char> sig(len);
    if (EVP_DigestSign(ctx.get(), sig.data(), &len, data, message.size()) != 1)
        throw SigningError("EVP_DigestSign failed: " + openssl_error());
    sig.resize(len);  // DER ECDSA signatures are often shorter than the maximum
    return sig;
}

// ---- header ----

std::string format_signature_header(std::string_view key_id, SignatureAlgorithm alg,
                                    std::span<const unsigned char> signature) {
    return "keyid=" + std::string(key_id) + ",alg=" + std::string(to_string(alg)) +
           ",sig=" + util::base64_encode(signature);
}

std::string signature_header_value(const SigningKey& key, std::string_view message) {
    return format_signature_header(key.key_id(), key.algorithm(), key.sign(message));
}

std::optional<ParsedSignatureHeader> parse_signature_header(std::string_view value) {
    ParsedSignatureHeader out;
    bool have_id = false, have_alg = false, have_sig = false;
    std::size_t start = 0;
    while (start <= value.size()) {
        std::size_t comma = value.find(',', start);
        if (comma == std::string_view::npos) comma = value.size();
        const std::string_view item = trim_ows(value.substr(start, comma - start));
        start = comma + 1;
        const std::size_t eq = item.find('=');
        if (eq == std::string_view::npos) return std::nullopt;
        const std::string_view name = item.substr(0, eq), val = item.substr(eq + 1);
        if (name == "keyid") {
            if (have_id || val.empty()) return std::nullopt;
            out.key_id = std::string(val);
            have_id = true;
        } else if (name == "alg") {
            auto alg = parse_signature_algorithm(val);
            if (have_alg || !alg) return std::nullopt;
            out.algorithm = *alg;
            have_alg = true;
        } else if (name == "sig") {
            auto sig = util::base64_decode(val);
            if (have_sig || !sig || sig->empty()) return std::nullopt;
            out.signature = std::move(*sig);
            have_sig = true;
        } else {
            return std::nullopt;
        }
    }
    if (!have_id || !have_alg || !have_sig) return std::nullopt;
    return out;
}

}  // namespace otad::domain
