#pragma once
// JSON request bodies of the operator and device APIs: one parse and one set of
// 400 invalid-body answers for every route that takes a JSON object.

#include <initializer_list>
#include <string_view>

#include <nlohmann/json.hpp>

#include "otad/api/http.hpp"

namespace otad::api {

// What an empty (or all-white-space) body means.
enum class EmptyBody { refused, empty_object };

// The body as a JSON object whose members are all named in `allowed`; throws
// ProblemError 400 invalid-body otherwise (naming an unknown member and the allowed ones).
nlohmann::json object_body(const Request& request, std::initializer_list<std::string_view> allowed,
                           EmptyBody empty = EmptyBody::refused);

}  // namespace otad::api
