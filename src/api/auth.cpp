#include "otad/api/auth.hpp"

#include "otad/api/problem.hpp"
#include "otad/domain/token_usage.hpp"
#include "otad/storage/database.hpp"
#include "otad/storage/token_repository.hpp"
#include "otad/util/strings.hpp"

namespace otad::api {

std::string_view to_string(Role role) noexcept {
    switch (role) {
        case Role::viewer:
            return "viewer";
        case Role::uploader:
            return "uploader";
        case Role::admin:
            return "admin";
    }
    return "viewer";
}

std::string_view authorization_credential(const Request& request, std::string_view scheme) {
    auto header = request.headers.get("Authorization");
    if (!header) return {};
    std::string_view value = util::trim(*header);
    if (value.size() <= scheme.size() || !util::starts_with_icase(value, scheme) || value[scheme.size()] != ' ')
        return {};
    return util::trim(value.substr(scheme.size() + 1));
}

namespace {
Role from_storage(storage::TokenRole r) {
    switch (r) {
        case storage::TokenRole::admin:
            return Role::admin;
        case storage::TokenRole::uploader:
            return Role::uploader;
        case storage::TokenRole::viewer:
            return Role::viewer;
    }
    return Role::viewer;
}
}  // namespace

Operator require_operator(const Request& request, Services& services, Role minimum) {
    std::string_view secret = authorization_credential(request, "Bearer");
    if (secret.empty())
        throw ProblemError(401, "unauthorized", "this route needs an operator token: Authorization: Bearer <token>");
    auto record = services.database.read([&](storage::Connection& c) -> std::optional<storage::TokenRecord> {
        storage::TokenRepository tokens(c);
        return tokens.find_by_secret(secret);
    });
    if (!record) throw ProblemError(401, "unauthorized", "the token is unknown or revoked");
    // A refused call is a use too: the token was presented and is valid.
    if (services.token_usage != nullptr) services.token_usage->record(record->id);
    Operator op{record->name, from_storage(record->role)};
    if (static_cast<int>(op.role) < static_cast<int>(minimum))
        throw ProblemError(403, "forbidden",
                           "token '" + op.token_name + "' has role " + std::string(to_string(op.role)) +
                               "; this route needs " + std::string(to_string(minimum)))
            .with_principal(op.actor());
    return op;
}

}  // namespace otad::api
