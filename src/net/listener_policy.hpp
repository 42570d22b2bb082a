#pragma once
// Private to src/net: what differs between the HTTPS and the plain-HTTP listener
// once a request is routed. No Asio, no Beast: session.cpp calls these two hooks
// and nothing else here.

#include <optional>

#include "otad/api/http.hpp"
#include "otad/api/router.hpp"
#include "otad/net/server.hpp"

namespace otad::net::detail {

// The answer for a route this listener does not serve, or nullopt to go on.
// On the plain-HTTP listener only routes marked on_plain_listener (the device
// routes) are served, unless options.plain_http_serves_all_routes; any other
// gets 403 https-required. Called right after routing, so a refused request
// never reaches its handler and none of its body is read.
std::optional<api::Response> refuse_on_listener(const api::RouteOptions& route, bool secure,
                                                const ServerOptions& options);

// Adds the headers every answer on this listener carries: on HTTPS,
// Strict-Transport-Security (max-age=hsts_max_age_s; none when it is 0). Never
// on plain HTTP, where a browser would ignore it anyway (RFC 6797 §8.1).
void add_listener_headers(api::Response& response, bool secure, const ServerOptions& options);

}  // namespace otad::net::detail
