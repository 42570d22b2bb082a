#pragma once
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace otad::util {

std::string_view trim(std::string_view s) noexcept;
std::vector<std::string_view> split(std::string_view s, char sep);
// ASCII case folding, as HTTP field names, tokens and otad's own names need:
// std::tolower would cost a locale-aware call per character on every header lookup.
constexpr char ascii_lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }
inline bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    return true;
}
std::string to_lower(std::string_view s);
bool starts_with_icase(std::string_view s, std::string_view prefix) noexcept;
// RFC 3986 percent-encoding of everything but unreserved characters: safe
// as one path segment or query value.
std::string percent_encode(std::string_view s);
// "a, b, c" (for messages that list names).
std::string join(const std::vector<std::string>& items, std::string_view separator = ", ");

// Whole-string unsigned decimal parse; nullopt on anything else (sign, space, overflow).
std::optional<std::uint64_t> parse_u64(std::string_view s) noexcept;

// Seconds since the Unix epoch, and RFC 3339 / IMF-fixdate renderings of it.
std::int64_t unix_now() noexcept;
std::string rfc3339(std::int64_t unix_seconds);
std::string http_date(std::int64_t unix_seconds);
std::optional<std::int64_t> parse_http_date(std::string_view text);

}  // namespace otad::util
