#pragma once
// RFC 9457 problem documents: every error otad answers is one of these, with a
// stable `type` (a short slug under https://otad.dev/problems/) and a human `detail`.

#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "otad/api/http.hpp"

namespace otad::api {

// e.g. problem(404, "not-found", "no product named 'x'")
Response problem(unsigned status, std::string_view type, std::string_view detail);
Response problem(unsigned status, std::string_view type, std::string_view detail, const nlohmann::json& extra);
std::string_view reason_phrase(unsigned status) noexcept;

// Thrown by handlers and helpers to answer with a problem; the dispatcher turns it
// into the response. Lets validation helpers stop a handler in one line.
class ProblemError : public std::runtime_error {
public:
    ProblemError(unsigned status, std::string type, std::string detail)
        : std::runtime_error(detail), status_(status), type_(std::move(type)) {}
    unsigned status() const noexcept { return status_; }
    const std::string& type() const noexcept { return type_; }
    // Who was refused, for the access log ("token:<name>", "device:<id>"; never a
    // secret). Set where the caller is known, so a 403 can be attributed.
    ProblemError& with_principal(std::string principal) {
        principal_ = std::move(principal);
        return *this;
    }
    const std::string& principal() const noexcept { return principal_; }
    Response to_response() const {
        Response r = problem(status_, type_, what());
        r.principal = principal_;
        return r;
    }

private:
    unsigned status_;
    std::string type_;
    std::string principal_;
};

Response json_response(unsigned status, const nlohmann::json& body);

}  // namespace otad::api
