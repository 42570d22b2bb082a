#include "otad/net/request_target.hpp"

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

namespace otad::net {
namespace {

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

RequestTarget refuse(std::string why) {
    RequestTarget t;
    t.error = std::move(why);
    return t;
}

}  // namespace

std::string percent_decode(std::string_view text, bool plus_as_space) {
    // Nearly every name and value has nothing to decode: one copy, no scan per character.
    if (text.find_first_of(plus_as_space ? std::string_view("%+") : std::string_view("%")) == std::string_view::npos)
        return std::string(text);
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        char c = text[i];
        if (c == '%' && i + 2 < text.size()) {
            int hi = hex_value(text[i + 1]);
            int lo = hex_value(text[i + 2]);
            if (hi >= 0 && lo >= 0) {
                out.push_back(static_cast<char>(hi * 16 + lo));
                i += 2;
                continue;
            }
        }
        out.push_back(plus_as_space && c == '+' ? ' ' : c);
    }
    return out;
}

RequestTarget parse_request_target(std::string_view target) {
    namespace urls = boost::urls;
    urls::url_view url;
    if (!target.empty() && target.front() == '/') {
        auto parsed = urls::parse_origin_form(target);
        if (!parsed) return refuse("malformed request target");
        url = *parsed;
    } else {
        // RFC 9112 §3.2.2: servers must accept the absolute form too.
        auto parsed = urls::parse_absolute_uri(target);
        if (!parsed) return refuse("malformed request target");
        url = *parsed;
        if (!url.encoded_path().empty() && !url.is_path_absolute()) return refuse("malformed request target");
    }

    RequestTarget out;
    out.path = "/";
    bool first = true;
    out.path.reserve(url.encoded_path().size());
    std::string decoded;
    for (auto segment : url.encoded_segments()) {
        // Without an escape the segment is its own decoding (no '/' or NUL can hide in it).
        const bool escaped = segment.find('%') != std::string_view::npos;
        if (escaped) decoded = percent_decode(segment, false);
        const std::string_view text = escaped ? std::string_view(decoded) : std::string_view(segment);
        if (text == "." || text == "..") return refuse("dot segments are not allowed in the path");
        if (escaped && (text.find('/') != std::string_view::npos || text.find('\0') != std::string_view::npos))
            return refuse("encoded '/' or NUL in the path");
        if (!first) out.path.push_back('/');
        out.path += text;
        first = false;
    }

    if (url.has_query()) {
        out.query.reserve(4);
        for (auto param : url.encoded_params()) {
            if (param.key.empty() && !param.has_value) continue;  // "a=1&&b=2"
            out.query.emplace_back(percent_decode(param.key, true),
                                   param.has_value ? percent_decode(param.value, true) : std::string());
        }
    }
    out.ok = true;
    return out;
}

}  // namespace otad::net
