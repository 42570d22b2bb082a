#include "otad/api/problem.hpp"

#include <nlohmann/json.hpp>

namespace otad::api {

std::string_view reason_phrase(unsigned status) noexcept {
    switch (status) {
        case 200:
            return "OK";
        case 201:
            return "Created";
        case 204:
            return "No Content";
        case 206:
            return "Partial Content";
        case 304:
            return "Not Modified";
        case 400:
            return "Bad Request";
        case 401:
            return "Unauthorized";
        case 403:
            return "Forbidden";
        case 404:
            return "Not Found";
        case 405:
            return "Method Not Allowed";
        case 408:
            return "Request Timeout";
        case 409:
            return "Conflict";
        case 411:
            return "Length Required";
        case 412:
            return "Precondition Failed";
        case 413:
            return "Content Too Large";
        case 415:
            return "Unsupported Media Type";
        case 416:
            return "Range Not Satisfiable";
        case 422:
            return "Unprocessable Content";
        case 429:
            return "Too Many Requests";
        case 431:
            return "Request Header Fields Too Large";
        case 500:
            return "Internal Server Error";
        case 501:
            return "Not Implemented";
        case 503:
            return "Service Unavailable";
        case 507:
            return "Insufficient Storage";
        default:
            return "Unknown";
    }
}

Response problem(unsigned status, std::string_view type, std::string_view detail) {
    return problem(status, type, detail, nlohmann::json::object());
}

Response problem(unsigned status, std::string_view type, std::string_view detail, const nlohmann::json& extra) {
    nlohmann::json body = {
        {"type", "https://otad.dev/problems/" + std::string(type)},
        {"title", std::string(reason_phrase(status))},
        {"status", status},
        {"detail", std::string(detail)},
    };
    if (extra.is_object())
        for (const auto& [k, v] : extra.items()) body[k] = v;
    Response r;
    r.status = status;
    r.set_body(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/problem+json");
    if (status == 401) r.headers.set("WWW-Authenticate", R"(Bearer realm="otad")");
    return r;
}

Response json_response(unsigned status, const nlohmann::json& body) {
    Response r;
    r.status = status;
    r.set_body(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), "application/json");
    return r;
}

}  // namespace otad::api
