#pragma once
// Maps (method, path) to a handler. Patterns are '/'-separated; a segment
// "{name}" captures one path segment into Request::params.

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "otad/api/http.hpp"

namespace otad::api {

using Handler = std::function<Response(Request&)>;

struct RouteOptions {
    // Where net runs the handler: on the I/O thread (must not block: cached
    // lookups only) or on the worker pool (SQLite, file writes, fsync).
    bool runs_inline = false;
    // Stream the body through Request::body_source instead of buffering it.
    bool stream_body = false;
    // Body limit in bytes; 0 means the server-wide max_body_bytes.
    std::uint64_t max_body_bytes = 0;
    // Counts against the server's cap on concurrent downloads (503 past it).
    bool is_download = false;
    // Served on the plain-HTTP listener too: device routes (polls, reports,
    // firmware downloads, the Arduino and NONOS front-ends) and the liveness
    // probe. Every other route is HTTPS only: on the plain listener net answers
    // 403 https-required without running the handler or reading the body (unless
    // the server is configured to serve every route there).
    bool on_plain_listener = false;
};

struct Route {
    Method method;
    std::string pattern;
    Handler handler;
    RouteOptions options;
    // The pattern split at '/', once, at add(): matching a request then
    // compares views and allocates only for the captures of the route it picks.
    std::vector<std::string> segments;
};

class Router {
public:
    void add(Method method, std::string pattern, Handler handler, RouteOptions options = {});

    struct Match {
        enum class Kind { found, not_found, method_not_allowed } kind = Kind::not_found;
        const Route* route = nullptr;
        std::map<std::string, std::string, std::less<>> params;
        std::vector<Method> allowed;  // for 405's Allow header
    };
    // HEAD falls back to the GET route of the same path.
    Match match(Method method, std::string_view path) const;

    const std::vector<Route>& routes() const noexcept { return routes_; }

private:
    std::vector<Route> routes_;
};

}  // namespace otad::api
