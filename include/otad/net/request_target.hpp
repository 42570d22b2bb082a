#pragma once
// Splits an HTTP request-target into the percent-decoded path and query that
// api::Request carries. Beast-free (Boost.URL underneath).

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace otad::net {

struct RequestTarget {
    bool ok = false;
    std::string error;                                       // why the target was refused, when !ok
    std::string path;                                        // decoded, always starts with '/'
    std::vector<std::pair<std::string, std::string>> query;  // decoded ('+' is a space), in order
};

// Accepts origin-form ("/a/b?x=1") and absolute-form ("http://host/a?x=1").
// Refuses, with a reason, anything else and paths whose decoded segments are "."
// or "..", or contain '/' or NUL after decoding (they would confuse routing and
// file-name captures).
RequestTarget parse_request_target(std::string_view target);

}  // namespace otad::net

namespace otad::net {

// Decodes %XX escapes (and '+' as a space when `plus_as_space`). A '%' not
// followed by two hex digits is kept literally.
std::string percent_decode(std::string_view text, bool plus_as_space);

}  // namespace otad::net
