#pragma once
// Manifest signing keys (PEM). At most one active (unretired) key per algorithm;
// retired keys stay so old signatures can still be checked. Records hold private
// keys: never log them.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace otad::storage {

class Connection;

enum class SigningAlgorithm { es256, ed25519 };
std::string_view to_string(SigningAlgorithm algorithm) noexcept;
std::optional<SigningAlgorithm> parse_signing_algorithm(std::string_view text) noexcept;

struct SigningKey {
    std::string key_id;
    SigningAlgorithm algorithm = SigningAlgorithm::es256;
    std::string private_key_pem;
    std::string public_key_pem;
    std::int64_t created_at = 0;
    std::optional<std::int64_t> retired_at;
};

class SigningKeyRepository {
public:
    explicit SigningKeyRepository(Connection& connection) : connection_(connection) {}

    // Stores the key (created_at as given, or now when 0). conflict: the key_id
    // exists, or another active key has the algorithm (retire it first, in the
    // same transaction, to rotate).
    void insert(const SigningKey& key);
    std::optional<SigningKey> get(std::string_view key_id);
    std::optional<SigningKey> active(SigningAlgorithm algorithm);
    std::vector<SigningKey> list();        // oldest first, retired included
    bool retire(std::string_view key_id);  // false if unknown or already retired

private:
    Connection& connection_;
};

}  // namespace otad::storage
