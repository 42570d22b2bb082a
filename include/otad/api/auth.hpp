#pragma once
// Operator authentication: `Authorization: Bearer <token>` checked against the
// token table (SHA-256 of the secret; only the hash is stored) and the route's
// minimum role. viewer < uploader < admin.

#include <string>
#include <string_view>

#include "otad/api/http.hpp"
#include "otad/api/services.hpp"

namespace otad::api {

enum class Role { viewer = 0, uploader = 1, admin = 2 };
std::string_view to_string(Role role) noexcept;

struct Operator {
    std::string token_name;
    Role role = Role::viewer;
    // "token:<name>", the actor recorded in the audit table.
    std::string actor() const { return "token:" + token_name; }
};

// Returns the authenticated operator, or throws ProblemError: 401 (with
// WWW-Authenticate) without a token or with an unknown/revoked one, 403 when its
// role is below `minimum` (carrying the principal "token:<name>", so the access
// log says who was refused). Every valid token's use is recorded in
// services.token_usage (batched). Handlers set Response::principal to op.actor().
Operator require_operator(const Request& request, Services& services, Role minimum);

// The credential of an Authorization header of the given scheme ("Bearer",
// "token"), compared case-insensitively; empty when absent.
std::string_view authorization_credential(const Request& request, std::string_view scheme);

}  // namespace otad::api
