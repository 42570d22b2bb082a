#include "listener_policy.hpp"

#include <string>

#include "otad/api/problem.hpp"

namespace otad::net::detail {

std::optional<api::Response> refuse_on_listener(const api::RouteOptions& route, bool secure,
                                                const ServerOptions& options) {
    if (secure || route.on_plain_listener || options.plain_http_serves_all_routes) return std::nullopt;
    // 403 rather than 404: the resource exists, and whoever sent an operator
    // request here needs to hear that it must go over HTTPS, and that what it
    // sent (an admin token, perhaps) has crossed the network in clear.
    return api::problem(403, "https-required",
                        "this route is served over HTTPS only; the plain-HTTP listener serves device routes. "
                        "Credentials sent with this request crossed the network unencrypted: rotate them if that "
                        "network is not trusted");
}

void add_listener_headers(api::Response& response, bool secure, const ServerOptions& options) {
    if (!secure || options.hsts_max_age_s == 0) return;
    response.headers.set("Strict-Transport-Security", "max-age=" + std::to_string(options.hsts_max_age_s));
}

}  // namespace otad::net::detail
