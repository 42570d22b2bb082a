#pragma once
// Manifest signing keys (OpenSSL EVP).
//
// Algorithms:
//  * "es256": ECDSA over P-256 with SHA-256. Signatures are DER-encoded
//    ECDSA-Sig-Value (SEQUENCE { r INTEGER, s INTEGER }, 70-72 bytes), the form
//    `openssl dgst -sha256 -verify pub.pem -signature sig.der body` and mbedTLS's
//    mbedtls_pk_verify (what ESP devices link) accept. Not the 64-byte r||s of JOSE.
//  * "ed25519": pure Ed25519 (RFC 8032) over the message itself, 64 bytes; checked by
//    `openssl pkeyutl -verify -pubin -inkey pub.pem -rawin -in body -sigfile sig`.
//
// Keys travel as PEM: private keys as unencrypted PKCS#8 ("BEGIN PRIVATE KEY"; SEC1
// "BEGIN EC PRIVATE KEY" is accepted on import), public keys as SubjectPublicKeyInfo
// ("BEGIN PUBLIC KEY"). key_id = the first 16 hex characters (lower case) of
// SHA-256 over the DER SubjectPublicKeyInfo, so anyone holding the public key can
// compute it. Import rejects keys of other types or curves with a SigningError
// naming what was found.
//
// Key objects are immutable and cheap to copy (shared OpenSSL key); const member
// functions may be called from several threads at once.

#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace otad::domain {

enum class SignatureAlgorithm { es256, ed25519 };
std::string_view to_string(SignatureAlgorithm alg) noexcept;                                  // "es256", "ed25519"
std::optional<SignatureAlgorithm> parse_signature_algorithm(std::string_view text) noexcept;  // exact, lower case

class SigningError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

namespace detail {
struct PkeyHandle;  // owns an EVP_PKEY
}

// A public key: verifies signatures.
class VerifyingKey {
public:
    // Throws SigningError on malformed PEM or an unsupported key type.
    static VerifyingKey from_public_pem(std::string_view pem);

    SignatureAlgorithm algorithm() const noexcept { return algorithm_; }
    const std::string& key_id() const noexcept { return key_id_; }
    std::string public_pem() const;
    std::vector<unsigned char> public_der() const;  // SubjectPublicKeyInfo
    // False for a wrong, malformed or truncated signature; never throws on bad input.
    bool verify(std::string_view message, std::span<const unsigned char> signature) const noexcept;

private:
    friend class SigningKey;
    VerifyingKey(std::shared_ptr<const detail::PkeyHandle> key, SignatureAlgorithm alg);
    std::shared_ptr<const detail::PkeyHandle> key_;
    SignatureAlgorithm algorithm_;
    std::string key_id_;
};

// A private key: signs, and verifies through its public half.
class SigningKey {
public:
    static SigningKey generate(SignatureAlgorithm alg);
    // Throws SigningError on malformed PEM, an encrypted key, or an unsupported key type.
    static SigningKey from_private_pem(std::string_view pem);

    SignatureAlgorithm algorithm() const noexcept { return public_.algorithm(); }
    const std::string& key_id() const noexcept { return public_.key_id(); }
    const VerifyingKey& verifying_key() const noexcept { return public_; }
    // Unencrypted PKCS#8. A secret: never log it; store it with mode 0600.
    std::string private_pem() const;
    std::string public_pem() const { return public_.public_pem(); }

    // es256: DER ECDSA signature (randomized); ed25519: 64 bytes (deterministic).
    // Throws SigningError only if OpenSSL fails.
    std::vector<unsigned char> sign(std::string_view message) const;
    bool verify(std::string_view message, std::span<const unsigned char> signature) const noexcept {
        return public_.verify(message, signature);
    }

private:
    SigningKey(std::shared_ptr<const detail::PkeyHandle> key, VerifyingKey pub);
    std::shared_ptr<const detail::PkeyHandle> key_;
    VerifyingKey public_;
};

// key_id for a DER SubjectPublicKeyInfo (see above).
std::string key_id_for_public_der(std::span<const unsigned char> spki_der);

// The X-Otad-Signature header: "keyid=<id>,alg=<es256|ed25519>,sig=<standard base64>".
inline constexpr std::string_view kSignatureHeader = "X-Otad-Signature";
std::string format_signature_header(std::string_view key_id, SignatureAlgorithm alg,
                                    std::span<const unsigned char> signature);
// Signs and formats in one step.
std::string signature_header_value(const SigningKey& key, std::string_view message);

struct ParsedSignatureHeader {
    std::string key_id;
    SignatureAlgorithm algorithm = SignatureAlgorithm::es256;
    std::vector<unsigned char> signature;
};
// Parses the header value (parameters in any order, OWS around ',' allowed);
// nullopt if a parameter is missing, repeated, unknown or malformed.
std::optional<ParsedSignatureHeader> parse_signature_header(std::string_view value);

}  // namespace otad::domain
