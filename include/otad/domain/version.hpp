#pragma once
// Firmware version ordering.
//
// compare_versions(a, b) is ONE total preorder over every string (a strict weak
// ordering for sorting), so releases, device reports and channel rules can mix
// semantic and free-form versions safely. The rule, applied to both strings:
//
//  0. Surrounding whitespace is ignored; a leading 'v' or 'V' followed by a digit
//     is dropped ("v1.2.3" == "1.2.3").
//  1. Everything from the first '+' on is build metadata and is ignored
//     ("1.0.0+a" == "1.0.0+b").
//  2. The rest splits at its first '-' into a release part and an optional
//     pre-release part ("2024.05.01-rc" -> "2024.05.01" and "rc").
//  3. Release parts are cut into runs of digits and runs of non-digits, compared
//     run by run: two digit runs numerically ("10" > "9", "05" == "5", no size limit),
//     two text runs by byte value ("." < "a"), a digit run before a text run; when
//     one list of runs is a prefix of the other, the shorter is lower ("1.2" < "1.2.1").
//  4. With equal release parts, a string with a pre-release part is lower than one
//     without ("1.0.0-rc.1" < "1.0.0").
//  5. Pre-release parts are split at '.' into identifiers compared left to right:
//     all-digit identifiers numerically, others by byte value, all-digit before
//     others; fewer identifiers is lower when all before are equal.
//
// On two valid SemVer 2.0.0 strings this is exactly SemVer precedence (§11)
// (unit tests check it against compare_semver), so one rule orders mixed lists
// consistently and no string pair is ever compared two ways. (Splitting the whole
// string into runs would not do: it ranks "1.0.0" below "1.0.0-rc.01" while SemVer
// ranks "1.0.0-rc.1" below "1.0.0", and with "rc.01" == "rc.1" a mixed list would
// have a cycle.) Consequences worth knowing: "rc10" < "rc2" inside a pre-release
// (SemVer compares alphanumeric identifiers as text; write "rc.10"), "1.2" < "1.2.0",
// and "01" == "1".

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace otad::domain {

struct SemVer {
    std::uint64_t major = 0;
    std::uint64_t minor = 0;
    std::uint64_t patch = 0;
    std::vector<std::string> prerelease;  // dot-separated identifiers, in order
    std::string build;                    // after '+', without it; ignored by precedence

    std::string to_string() const;  // canonical form, without a 'v'
};

// Strict SemVer 2.0.0 parse (no leading zeros, non-empty identifiers, [0-9A-Za-z-]),
// with an optional leading 'v'/'V'. Numbers above 2^64-1 are not accepted (such
// strings still order correctly through compare_versions). No whitespace allowed.
std::optional<SemVer> parse_semver(std::string_view text);
bool is_semver(std::string_view text);

// SemVer §11 precedence: <0, 0, >0. Build metadata is ignored.
int compare_semver(const SemVer& a, const SemVer& b) noexcept;

// The total preorder described above: -1, 0 or 1. Allocation-free.
int compare_versions(std::string_view a, std::string_view b) noexcept;

inline bool version_less(std::string_view a, std::string_view b) noexcept { return compare_versions(a, b) < 0; }
inline bool versions_equivalent(std::string_view a, std::string_view b) noexcept { return compare_versions(a, b) == 0; }

// Comparator for std::sort / std::map (transparent).
struct VersionLess {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const noexcept { return version_less(a, b); }
};

}  // namespace otad::domain
