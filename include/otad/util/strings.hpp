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
std::string to_lower(std::string_view s);
bool starts_with_icase(std::string_view s, std::string_view prefix) noexcept;

// Whole-string unsigned decimal parse; nullopt on anything else (sign, space, overflow).
std::optional<std::uint64_t> parse_u64(std::string_view s) noexcept;

// Seconds since the Unix epoch, and RFC 3339 / IMF-fixdate renderings of it.
std::int64_t unix_now() noexcept;
std::string rfc3339(std::int64_t unix_seconds);
std::string http_date(std::int64_t unix_seconds);
std::optional<std::int64_t> parse_http_date(std::string_view text);

}  // namespace otad::util
