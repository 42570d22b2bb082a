#include "otad/api/router.hpp"

#include <algorithm>

#include "otad/util/strings.hpp"

namespace otad::api {
namespace {

// Matches `path` against `pattern` segment by segment, filling captures.
bool match_pattern(std::string_view pattern, std::string_view path,
                   std::map<std::string, std::string, std::less<>>& params) {
    auto want = util::split(pattern, '/');
    auto got = util::split(path, '/');
    if (want.size() != got.size()) return false;
    std::map<std::string, std::string, std::less<>> captured;
    for (std::size_t i = 0; i < want.size(); ++i) {
        std::string_view w = want[i];
        if (w.size() >= 2 && w.front() == '{' && w.back() == '}') {
            if (got[i].empty()) return false;
            captured.emplace(std::string(w.substr(1, w.size() - 2)), std::string(got[i]));
        } else if (w != got[i]) {
            return false;
        }
    }
    params = std::move(captured);
    return true;
}

}  // namespace

void Router::add(Method method, std::string pattern, Handler handler, RouteOptions options) {
    routes_.push_back(Route{method, std::move(pattern), std::move(handler), options});
}

Router::Match Router::match(Method method, std::string_view path) const {
    Match result;
    const Route* get_fallback = nullptr;
    std::map<std::string, std::string, std::less<>> get_params;
    for (const auto& route : routes_) {
        std::map<std::string, std::string, std::less<>> params;
        if (!match_pattern(route.pattern, path, params)) continue;
        if (route.method == method) {
            result.kind = Match::Kind::found;
            result.route = &route;
            result.params = std::move(params);
            return result;
        }
        if (method == Method::head && route.method == Method::get && get_fallback == nullptr) {
            get_fallback = &route;
            get_params = std::move(params);
        }
        if (std::find(result.allowed.begin(), result.allowed.end(), route.method) == result.allowed.end())
            result.allowed.push_back(route.method);
    }
    if (get_fallback != nullptr) {
        result.kind = Match::Kind::found;
        result.route = get_fallback;
        result.params = std::move(get_params);
        result.allowed.clear();
        return result;
    }
    if (!result.allowed.empty()) {
        // A GET route also answers HEAD: say so in Allow.
        if (std::find(result.allowed.begin(), result.allowed.end(), Method::get) != result.allowed.end() &&
            std::find(result.allowed.begin(), result.allowed.end(), Method::head) == result.allowed.end())
            result.allowed.push_back(Method::head);
        result.kind = Match::Kind::method_not_allowed;
    }
    return result;
}

}  // namespace otad::api
