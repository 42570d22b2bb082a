#include "otad/domain/version.hpp"

#include <charconv>

namespace otad::domain {
namespace {

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
bool is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_identifier_char(char c) noexcept { return is_digit(c) || is_alpha(c) || c == '-'; }

bool all_digits(std::string_view s) noexcept {
    if (s.empty()) return false;
    for (char c : s)
        if (!is_digit(c)) return false;
    return true;
}

int sign(int v) noexcept { return v < 0 ? -1 : (v > 0 ? 1 : 0); }

// Compares two digit strings as unbounded non-negative integers.
int compare_numeric(std::string_view a, std::string_view b) noexcept {
    while (a.size() > 1 && a.front() == '0') a.remove_prefix(1);
    while (b.size() > 1 && b.front() == '0') b.remove_prefix(1);
    if (a.size() != b.size()) return a.size() < b.size() ? -1 : 1;
    return sign(a.compare(b));
}

std::string_view strip_leading_v(std::string_view s) noexcept {
    if (s.size() >= 2 && (s[0] == 'v' || s[0] == 'V') && is_digit(s[1])) s.remove_prefix(1);
    return s;
}

std::optional<std::uint64_t> parse_semver_number(std::string_view s) noexcept {
    if (!all_digits(s) || (s.size() > 1 && s[0] == '0')) return std::nullopt;
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return value;
}

// Splits at '.' keeping empty pieces ("a..b" -> a, "", b).
std::vector<std::string_view> split_dots(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    while (true) {
        std::size_t dot = s.find('.', start);
        if (dot == std::string_view::npos) {
            out.push_back(s.substr(start));
            return out;
        }
        out.push_back(s.substr(start, dot - start));
        start = dot + 1;
    }
}

// Step 5 of the header's rule, also SemVer's identifier rule.
int compare_identifier(std::string_view a, std::string_view b) noexcept {
    const bool a_num = all_digits(a), b_num = all_digits(b);
    if (a_num && b_num) return compare_numeric(a, b);
    if (a_num != b_num) return a_num ? -1 : 1;
    return sign(a.compare(b));
}

// Step 3: run-by-run comparison of release parts.
int compare_runs(std::string_view a, std::string_view b) noexcept {
    std::size_t i = 0, j = 0;
    while (i < a.size() && j < b.size()) {
        const bool a_digit = is_digit(a[i]), b_digit = is_digit(b[j]);
        std::size_t i_end = i, j_end = j;
        while (i_end < a.size() && is_digit(a[i_end]) == a_digit) ++i_end;
        while (j_end < b.size() && is_digit(b[j_end]) == b_digit) ++j_end;
        const std::string_view run_a = a.substr(i, i_end - i), run_b = b.substr(j, j_end - j);
        int c;
        if (a_digit && b_digit)
            c = compare_numeric(run_a, run_b);
        else if (a_digit != b_digit)
            c = a_digit ? -1 : 1;
        else
            c = sign(run_a.compare(run_b));
        if (c != 0) return c;
        i = i_end;
        j = j_end;
    }
    if (i < a.size()) return 1;
    if (j < b.size()) return -1;
    return 0;
}

std::string_view trim_space(std::string_view s) noexcept {
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (!s.empty() && space(s.front())) s.remove_prefix(1);
    while (!s.empty() && space(s.back())) s.remove_suffix(1);
    return s;
}

struct VersionParts {
    std::string_view release;
    std::optional<std::string_view> prerelease;
};

VersionParts split_version(std::string_view text) noexcept {
    text = strip_leading_v(trim_space(text));
    if (auto plus = text.find('+'); plus != std::string_view::npos) text = text.substr(0, plus);
    VersionParts parts;
    if (auto dash = text.find('-'); dash != std::string_view::npos) {
        parts.release = text.substr(0, dash);
        parts.prerelease = text.substr(dash + 1);
    } else {
        parts.release = text;
    }
    return parts;
}

// Next '.'-separated identifier of s from pos; advances pos past the dot.
std::string_view next_identifier(std::string_view s, std::size_t& pos) noexcept {
    std::size_t dot = s.find('.', pos);
    if (dot == std::string_view::npos) dot = s.size();
    std::string_view id = s.substr(pos, dot - pos);
    pos = dot + 1;  // one past the end once s is used up
    return id;
}

int compare_prerelease(std::string_view a, std::string_view b) noexcept {
    std::size_t i = 0, j = 0;
    while (i <= a.size() && j <= b.size()) {
        if (int c = compare_identifier(next_identifier(a, i), next_identifier(b, j)); c != 0) return c;
    }
    if (i > a.size() && j > b.size()) return 0;
    return i > a.size() ? -1 : 1;
}

}  // namespace

std::string SemVer::to_string() const {
    std::string out = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
    for (std::size_t k = 0; k < prerelease.size(); ++k) {
        out += k == 0 ? '-' : '.';
        out += prerelease[k];
    }
    if (!build.empty()) out += "+" + build;
    return out;
}

std::optional<SemVer> parse_semver(std::string_view text) {
    text = strip_leading_v(text);
    SemVer v;
    std::string_view core = text, pre, build;
    bool has_pre = false, has_build = false;
    if (auto plus = core.find('+'); plus != std::string_view::npos) {
        build = core.substr(plus + 1);
        core = core.substr(0, plus);
        has_build = true;
    }
    if (auto dash = core.find('-'); dash != std::string_view::npos) {
        pre = core.substr(dash + 1);
        core = core.substr(0, dash);
        has_pre = true;
    }
    const auto numbers = split_dots(core);
    if (numbers.size() != 3) return std::nullopt;
    auto major = parse_semver_number(numbers[0]);
    auto minor = parse_semver_number(numbers[1]);
    auto patch = parse_semver_number(numbers[2]);
    if (!major || !minor || !patch) return std::nullopt;
    v.major = *major;
    v.minor = *minor;
    v.patch = *patch;
    if (has_pre) {
        for (std::string_view id : split_dots(pre)) {
            if (id.empty()) return std::nullopt;
            for (char c : id)
                if (!is_identifier_char(c)) return std::nullopt;
            if (all_digits(id) && id.size() > 1 && id[0] == '0') return std::nullopt;
            v.prerelease.emplace_back(id);
        }
    }
    if (has_build) {
        for (std::string_view id : split_dots(build)) {
            if (id.empty()) return std::nullopt;
            for (char c : id)
                if (!is_identifier_char(c)) return std::nullopt;
        }
        v.build = std::string(build);
    }
    return v;
}

bool is_semver(std::string_view text) { return parse_semver(text).has_value(); }

int compare_semver(const SemVer& a, const SemVer& b) noexcept {
    if (a.major != b.major) return a.major < b.major ? -1 : 1;
    if (a.minor != b.minor) return a.minor < b.minor ? -1 : 1;
    if (a.patch != b.patch) return a.patch < b.patch ? -1 : 1;
    const bool a_pre = !a.prerelease.empty(), b_pre = !b.prerelease.empty();
    if (a_pre != b_pre) return a_pre ? -1 : 1;
    for (std::size_t k = 0; k < a.prerelease.size() && k < b.prerelease.size(); ++k)
        if (int c = compare_identifier(a.prerelease[k], b.prerelease[k]); c != 0) return c;
    if (a.prerelease.size() == b.prerelease.size()) return 0;
    return a.prerelease.size() < b.prerelease.size() ? -1 : 1;
}

int compare_versions(std::string_view a, std::string_view b) noexcept {
    const VersionParts pa = split_version(a), pb = split_version(b);
    if (int c = compare_runs(pa.release, pb.release); c != 0) return c;
    if (pa.prerelease.has_value() != pb.prerelease.has_value()) return pa.prerelease ? -1 : 1;
    if (!pa.prerelease) return 0;
    return compare_prerelease(*pa.prerelease, *pb.prerelease);
}

}  // namespace otad::domain
