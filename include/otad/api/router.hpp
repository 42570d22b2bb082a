#pragma once
// Maps (method, path) to a handler. Patterns are '/'-separated; a segment
// "{name}" captures one path segment into Request::params.

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "otad/api/http.hpp"

namespace otad::api {

using Handler = std::function<Response(Request&)>;

// What a route does with a request body. A request announces one with
// Content-Length > 0 or Transfer-Encoding: chunked.
enum class BodyPolicy {
    // Takes none: an announced body is refused (413 body-not-allowed) before a
    // byte of it is read, and the connection is closed.
    none,
    // Read whole into Request::body before the handler runs, on the I/O thread,
    // under the server's memory budget for buffered bodies and one deadline for
    // the whole body.
    buffered,
    // Pulled by the handler through Request::body_source (uploads). The handler
    // runs on the server's upload pool, never on the worker pool, so a slow
    // sender cannot hold the threads other requests need.
    streamed,
};

// Checks a request before its body is read: returns a response (401, 403...)
// to refuse it, nullopt to go on. It may throw ProblemError, which refuses too.
// Request::body is still empty and Request::body_source null when it runs.
using Authorizer = std::function<std::optional<Response>(Request&)>;

struct RouteOptions {
    // Where net runs the handler (and `authorize`): on the I/O thread (must not
    // block: cached lookups only) or on the worker pool (SQLite, file writes,
    // fsync). Streamed routes always run on the upload pool.
    bool runs_inline = false;
    BodyPolicy body = BodyPolicy::none;
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
    // Runs after routing and before any body byte is read, only when the
    // request announces a body; so an unauthenticated client never gets the
    // server to buffer or stream its bytes. The handler keeps its own checks
    // (requests without a body skip this hook). Empty: no pre-body check.
    Authorizer authorize = nullptr;
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
