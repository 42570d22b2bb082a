#include "otad/api/http.hpp"

#include <algorithm>
#include <cctype>

namespace otad::api {

std::string_view to_string(Method m) noexcept {
    switch (m) {
        case Method::get:
            return "GET";
        case Method::head:
            return "HEAD";
        case Method::post:
            return "POST";
        case Method::put:
            return "PUT";
        case Method::patch:
            return "PATCH";
        case Method::del:
            return "DELETE";
        case Method::options:
            return "OPTIONS";
        case Method::other:
            break;
    }
    return "OTHER";
}

Method parse_method(std::string_view text) noexcept {
    if (text == "GET") return Method::get;
    if (text == "HEAD") return Method::head;
    if (text == "POST") return Method::post;
    if (text == "PUT") return Method::put;
    if (text == "PATCH") return Method::patch;
    if (text == "DELETE") return Method::del;
    if (text == "OPTIONS") return Method::options;
    return Method::other;
}

void Headers::add(std::string name, std::string value) {
    // One allocation for a typical request's or response's fields instead of regrowing 1, 2, 4, 8.
    if (fields_.capacity() == 0) fields_.reserve(8);
    fields_.emplace_back(std::move(name), std::move(value));
}

void Headers::set(std::string name, std::string value) {
    erase(name);
    add(std::move(name), std::move(value));
}

void Headers::erase(std::string_view name) {
    std::erase_if(fields_, [&](const Field& f) { return iequals(f.first, name); });
}

std::optional<std::string_view> Headers::get(std::string_view name) const {
    for (const auto& f : fields_)
        if (iequals(f.first, name)) return std::string_view(f.second);
    return std::nullopt;
}

std::optional<std::string_view> Request::query_param(std::string_view name) const {
    for (const auto& [k, v] : query)
        if (k == name) return std::string_view(v);
    return std::nullopt;
}

std::string_view Request::param(std::string_view name) const {
    auto it = params.find(name);
    return it == params.end() ? std::string_view() : std::string_view(it->second);
}

std::uint64_t Response::body_size() const noexcept {
    std::uint64_t n = 0;
    for (const auto& part : body) {
        if (const auto* s = std::get_if<std::string>(&part))
            n += s->size();
        else
            n += std::get<FileSlice>(part).length;
    }
    return n;
}

void Response::set_body(std::string text, std::string_view content_type) {
    body.clear();
    body.emplace_back(std::move(text));
    headers.set("Content-Type", std::string(content_type));
}

}  // namespace otad::api
