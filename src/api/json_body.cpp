#include "otad/api/json_body.hpp"

#include <algorithm>
#include <string>

#include "otad/api/problem.hpp"
#include "otad/util/strings.hpp"

namespace otad::api {

nlohmann::json object_body(const Request& request, std::initializer_list<std::string_view> allowed, EmptyBody empty) {
    if (empty == EmptyBody::empty_object && util::trim(request.body).empty()) return nlohmann::json::object();
    nlohmann::json body = nlohmann::json::parse(request.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded() || !body.is_object())
        throw ProblemError(400, "invalid-body", "the request body must be a JSON object");
    for (const auto& [key, value] : body.items())
        if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
            std::string names;
            for (auto a : allowed) names += (names.empty() ? "" : ", ") + std::string(a);
            // The member name is the caller's: cut it, so the answer stays small.
            throw ProblemError(400, "invalid-body", "unknown member '" + key.substr(0, 64) + "'; allowed: " + names);
        }
    return body;
}

}  // namespace otad::api
