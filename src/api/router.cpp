#include "otad/api/router.hpp"

#include <algorithm>

#include "otad/util/strings.hpp"

namespace otad::api {
namespace {

bool is_capture(std::string_view segment) {
    return segment.size() >= 2 && segment.front() == '{' && segment.back() == '}';
}

bool segments_match(const std::vector<std::string>& want, const std::vector<std::string_view>& got) {
    if (want.size() != got.size()) return false;
    for (std::size_t i = 0; i < want.size(); ++i) {
        if (is_capture(want[i])) {
            if (got[i].empty()) return false;
        } else if (want[i] != got[i]) {
            return false;
        }
    }
    return true;
}

std::map<std::string, std::string, std::less<>> captures(const Route& route, const std::vector<std::string_view>& got) {
    std::map<std::string, std::string, std::less<>> params;
    for (std::size_t i = 0; i < route.segments.size(); ++i)
        if (is_capture(route.segments[i]))
            params.emplace(route.segments[i].substr(1, route.segments[i].size() - 2), std::string(got[i]));
    return params;
}

}  // namespace

void Router::add(Method method, std::string pattern, Handler handler, RouteOptions options) {
    std::vector<std::string> segments;
    for (auto part : util::split(pattern, '/')) segments.emplace_back(part);
    routes_.push_back(Route{method, std::move(pattern), std::move(handler), options, std::move(segments)});
}

Router::Match Router::match(Method method, std::string_view path) const {
    Match result;
    const std::vector<std::string_view> got = util::split(path, '/');
    const Route* get_fallback = nullptr;
    for (const auto& route : routes_) {
        if (!segments_match(route.segments, got)) continue;
        if (route.method == method) {
            result.kind = Match::Kind::found;
            result.route = &route;
            result.params = captures(route, got);
            return result;
        }
        if (method == Method::head && route.method == Method::get && get_fallback == nullptr) get_fallback = &route;
        if (std::find(result.allowed.begin(), result.allowed.end(), route.method) == result.allowed.end())
            result.allowed.push_back(route.method);
    }
    if (get_fallback != nullptr) {
        result.kind = Match::Kind::found;
        result.route = get_fallback;
        result.params = captures(*get_fallback, got);
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
