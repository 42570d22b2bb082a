#pragma once
// Operator API tokens. The plaintext secret is returned once, at creation; only
// its SHA-256 (hex) is stored, and lookups go through that hash's UNIQUE index.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace otad::storage {

class Connection;

enum class TokenRole { admin, uploader, viewer };
std::string_view to_string(TokenRole role) noexcept;
std::optional<TokenRole> parse_token_role(std::string_view text) noexcept;

struct TokenRecord {
    std::int64_t id = 0;
    std::string name;
    TokenRole role = TokenRole::viewer;
    std::int64_t created_at = 0;
    std::optional<std::int64_t> last_used_at;
    std::optional<std::int64_t> revoked_at;
    bool active() const noexcept { return !revoked_at.has_value(); }
};

struct CreatedToken {
    TokenRecord record;
    std::string secret;  // "otad_" + 43 base64url chars; show once, never log
};

// Works on the caller's connection; write methods join the caller's WriteTransaction
// or open their own. Errors: StorageError (conflict when an active token already
// has the name, invalid for a name the schema refuses).
class TokenRepository {
public:
    explicit TokenRepository(Connection& connection) : connection_(connection) {}

    // A new token with a fresh 32-byte random secret.
    CreatedToken create(std::string_view name, TokenRole role);
    // Registers a secret chosen elsewhere (bootstrap from a file or environment).
    TokenRecord create_with_secret(std::string_view name, TokenRole role, std::string_view secret);

    // All tokens, oldest first; revoked ones only with include_revoked.
    std::vector<TokenRecord> list(bool include_revoked = true);
    std::optional<TokenRecord> find_active_by_name(std::string_view name);
    // Revokes the active token called `name`; false if there is none.
    bool revoke(std::string_view name);

    // The active token whose secret this is, or nullopt (unknown or revoked).
    std::optional<TokenRecord> find_by_secret(std::string_view secret);

    // Batched use times (token id, unix seconds), in one write: last_used_at becomes
    // the later of the stored and the given time. Unknown ids are skipped.
    void record_uses(const std::vector<std::pair<std::int64_t, std::int64_t>>& uses);

    // Active admin tokens (to refuse revoking the last one).
    std::int64_t count_admins();

    // The stored form of a secret: lower-case hex SHA-256.
    static std::string hash_secret(std::string_view secret);

private:
    Connection& connection_;
};

}  // namespace otad::storage
