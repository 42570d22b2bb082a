#pragma once
// The manifest signing key ring: the keys in the database (signing_keys table),
// which one signs, and their public halves for GET /api/v1/keys.
//
// Rules:
//  * A key is active until retired; retired keys stay listed (status "retired")
//    so a signature made before a rotation can still be checked.
//  * At most one active key per algorithm (the schema enforces it). Creating a
//    key of an algorithm that has an active key ROTATES: the old key is retired
//    in the same transaction, so there is never a moment without a signer.
//  * Several keys are active at once when they differ in algorithm (an es256 and
//    an ed25519 key, e.g. while a fleet moves from one to the other). The signer
//    is the active key of the preferred algorithm (config signing_algorithm), else
//    the oldest active key of another algorithm.
//  * Retiring the last active key is refused unless `allow_none`: without an
//    active key no manifest can be signed (polls that would offer an update then
//    answer 503).
//  * Every create/retire appends an audit entry in the same transaction.
//
// The ring is cached in memory and rebuilt when the ChangeWatch generation moves,
// so a key created or retired with the `otad keys` command while the daemon runs
// takes effect on the next poll. Private keys are parsed once per rebuild and
// never leave this object except through signer().
//
// Thread-safe.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "otad/domain/signing.hpp"

namespace otad::storage {
class Database;
}

namespace otad::domain {

class ChangeWatch;

// A key refused or not found; what() is written for the operator.
class SigningKeyError : public std::runtime_error {
public:
    enum class Kind { not_found, refused };
    SigningKeyError(Kind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    Kind kind() const noexcept { return kind_; }

private:
    Kind kind_;
};

// What is public about a key.
struct PublicKeyInfo {
    std::string key_id;
    SignatureAlgorithm algorithm = SignatureAlgorithm::es256;
    std::string public_pem;
    std::int64_t created_at = 0;
    std::optional<std::int64_t> retired_at;
    bool signing = false;  // the key signing manifests now
    bool active() const noexcept { return !retired_at.has_value(); }
};

struct CreatedSigningKey {
    PublicKeyInfo key;
    std::optional<std::string> retired_key_id;  // the key this creation rotated out
};

class SigningKeyRing {
public:
    // `watch` may be null: the ring then only sees changes made through it.
    SigningKeyRing(storage::Database& database, SignatureAlgorithm preferred, ChangeWatch* watch = nullptr);
    SigningKeyRing(const SigningKeyRing&) = delete;
    SigningKeyRing& operator=(const SigningKeyRing&) = delete;

    SignatureAlgorithm preferred() const noexcept { return preferred_; }

    // Generates and stores a key (see the rotation rule above).
    CreatedSigningKey create(SignatureAlgorithm algorithm, std::string_view actor);
    // Retires an active key. Throws SigningKeyError: not_found (unknown or already
    // retired), refused (the last active key and !allow_none).
    PublicKeyInfo retire(std::string_view key_id, std::string_view actor, bool allow_none = false);
    // Creates a key of the preferred algorithm when no key is active. Returns it, or nullopt.
    std::optional<PublicKeyInfo> ensure_active_key(std::string_view actor);

    // Every key, oldest first, retired included.
    std::vector<PublicKeyInfo> list();
    // The key that signs now; nullptr when no key is active.
    std::shared_ptr<const SigningKey> signer();

private:
    struct Ring {
        std::int64_t generation = -1;
        std::vector<PublicKeyInfo> keys;
        std::shared_ptr<const SigningKey> signer;
    };
    std::shared_ptr<const Ring> current();
    std::shared_ptr<const Ring> load(std::int64_t generation);
    void invalidate();

    storage::Database& database_;
    SignatureAlgorithm preferred_;
    ChangeWatch* watch_;
    std::mutex mutex_;
    std::shared_ptr<const Ring> ring_;
};

}  // namespace otad::domain
