#include "otad/domain/version.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace otad::domain {
namespace {

// Every adjacent pair must be strictly increasing; also checks all pairs, both ways.
void expect_strictly_increasing(const std::vector<std::string>& ordered) {
    for (std::size_t i = 0; i < ordered.size(); ++i) {
        for (std::size_t j = 0; j < ordered.size(); ++j) {
            const int expected = i < j ? -1 : (i > j ? 1 : 0);
            EXPECT_EQ(compare_versions(ordered[i], ordered[j]), expected) << ordered[i] << " vs " << ordered[j];
        }
    }
}

TEST(SemVerParse, AcceptsFullForm) {
    auto v = parse_semver("1.2.3-alpha.1+build.5");
    ASSERT_TRUE(v);
    EXPECT_EQ(v->major, 1u);
    EXPECT_EQ(v->minor, 2u);
    EXPECT_EQ(v->patch, 3u);
    EXPECT_EQ(v->prerelease, (std::vector<std::string>{"alpha", "1"}));
    EXPECT_EQ(v->build, "build.5");
    EXPECT_EQ(v->to_string(), "1.2.3-alpha.1+build.5");
}

TEST(SemVerParse, AcceptsLeadingV) {
    auto v = parse_semver("v1.2.3");
    ASSERT_TRUE(v);
    EXPECT_EQ(v->to_string(), "1.2.3");
    EXPECT_TRUE(is_semver("V0.0.1"));
}

TEST(SemVerParse, RejectsNonSemver) {
    for (const char* text : {"",
                             "1",
                             "1.2",
                             "1.2.3.4",
                             "01.2.3",
                             "1.02.3",
                             "1.2.03",
                             "1.2.3-",
                             "1.2.3-01",
                             "1.2.3-a..b",
                             "1.2.3+",
                             "1.2.3+a..b",
                             "1.2.3-a_b",
                             " 1.2.3",
                             "1.2.3 ",
                             "2024.05.01-rc",
                             "build42",
                             "vv1.2.3",
                             "v",
                             "1.2.x",
                             "-1.2.3",
                             "1.2.3-\xc3\xa4",
                             "99999999999999999999.0.0"}) {
        EXPECT_FALSE(is_semver(text)) << text;
    }
}

TEST(SemVerParse, AcceptsEdgeForms) {
    for (const char* text : {"0.0.0", "1.2.3-0", "1.2.3-0a", "1.2.3-00a", "1.2.3--", "1.2.3-a-b.c", "1.2.3+001",
                             "1.2.3+a-b", "18446744073709551615.0.0"}) {
        EXPECT_TRUE(is_semver(text)) << text;
    }
}

TEST(CompareVersions, SemVerSpecPrecedenceExample) {
    // SemVer 2.0.0 §11.4, verbatim.
    expect_strictly_increasing({"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
                                "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"});
}

TEST(CompareVersions, SemVerSpecCoreExample) {
    // SemVer 2.0.0 §11.2: 1.0.0 < 2.0.0 < 2.1.0 < 2.1.1.
    expect_strictly_increasing({"1.0.0", "2.0.0", "2.1.0", "2.1.1"});
}

TEST(CompareVersions, NumericNotLexical) {
    EXPECT_EQ(compare_versions("1.10.0", "1.9.2"), 1);
    EXPECT_EQ(compare_versions("1.9.2", "1.10.0"), -1);
    EXPECT_EQ(compare_versions("10.0.0", "9.99.99"), 1);
    EXPECT_EQ(compare_versions("1.0.0-beta.11", "1.0.0-beta.2"), 1);
}

TEST(CompareVersions, PrereleaseBelowRelease) {
    EXPECT_EQ(compare_versions("1.0.0-rc.1", "1.0.0"), -1);
    EXPECT_EQ(compare_versions("1.0.0", "1.0.0-rc.1"), 1);
    EXPECT_EQ(compare_versions("1.0.1-alpha", "1.0.0"), 1);
}

TEST(CompareVersions, NumericIdentifierBelowAlphanumeric) {
    EXPECT_EQ(compare_versions("1.0.0-1", "1.0.0-a"), -1);
    EXPECT_EQ(compare_versions("1.0.0-999", "1.0.0-0a"), -1);
    // Alphanumeric identifiers compare as ASCII text: upper case first, "rc10" < "rc2".
    EXPECT_EQ(compare_versions("1.0.0-RC", "1.0.0-rc"), -1);
    EXPECT_EQ(compare_versions("1.0.0-rc10", "1.0.0-rc2"), -1);
}

TEST(CompareVersions, BuildMetadataIgnored) {
    EXPECT_EQ(compare_versions("1.0.0+a", "1.0.0+b"), 0);
    EXPECT_EQ(compare_versions("1.0.0+a", "1.0.0"), 0);
    EXPECT_EQ(compare_versions("1.0.0-rc.1+x", "1.0.0-rc.1+y"), 0);
    EXPECT_EQ(compare_versions("1.0.0-rc.1+zzz", "1.0.0"), -1);
}

TEST(CompareVersions, LeadingVAndWhitespaceIgnored) {
    EXPECT_EQ(compare_versions("v1.2.3", "1.2.3"), 0);
    EXPECT_EQ(compare_versions("V1.2.3", "v1.2.3"), 0);
    EXPECT_EQ(compare_versions("v1.2.4", "1.2.3"), 1);
    EXPECT_EQ(compare_versions(" 1.2.3\r\n", "1.2.3"), 0);
    // 'v' not followed by a digit is text.
    EXPECT_EQ(compare_versions("version", "1.0.0"), 1);
}

TEST(CompareVersions, HugeNumbersCompareWithoutOverflow) {
    EXPECT_EQ(compare_versions("1.0.99999999999999999999999", "1.0.99999999999999999999998"), 1);
    EXPECT_EQ(compare_versions("18446744073709551616.0.0", "18446744073709551615.0.0"), 1);
}

TEST(CompareVersions, FallbackRunsForNonSemver) {
    EXPECT_EQ(compare_versions("1.2", "1.10"), -1);
    EXPECT_EQ(compare_versions("1.2", "1.2.0"), -1);  // prefix is lower
    EXPECT_EQ(compare_versions("1.2", "1.2"), 0);
    EXPECT_EQ(compare_versions("build42", "build9"), 1);
    EXPECT_EQ(compare_versions("build42", "build42"), 0);
    EXPECT_EQ(compare_versions("2024.05.01", "2024.5.1"), 0);  // numbers, not text
    EXPECT_EQ(compare_versions("2024.05.01", "2024.04.30"), 1);
    EXPECT_EQ(compare_versions("2024.05.01-rc", "2024.05.01"), -1);  // pre-release below release
    EXPECT_EQ(compare_versions("2024.05.01-rc", "2024.04.30"), 1);
    EXPECT_EQ(compare_versions("2024.05.01-rc", "2024.05.01-rc.1"), -1);
    EXPECT_EQ(compare_versions("r100", "r99"), 1);
    EXPECT_EQ(compare_versions("1a", "1b"), -1);
    EXPECT_EQ(compare_versions("1.a", "1.1"), 1);   // text run after digit run
    EXPECT_EQ(compare_versions("1.0", "1_0"), -1);  // '.' (0x2E) < '_' (0x5F)
    EXPECT_EQ(compare_versions("", "0"), -1);
    EXPECT_EQ(compare_versions("", ""), 0);
}

TEST(CompareVersions, SemverAgainstNonSemverUsesTheSameRule) {
    EXPECT_EQ(compare_versions("1.2", "1.2.0"), -1);
    EXPECT_EQ(compare_versions("1.2.0", "1.3"), -1);
    EXPECT_EQ(compare_versions("1.0.0-rc.01", "1.0.0-rc.1"), 0);  // "01" is numeric 1
    EXPECT_EQ(compare_versions("1.0.0-rc.01", "1.0.0"), -1);
    EXPECT_EQ(compare_versions("1.0.0", "build42"), -1);  // digit run before text run
    EXPECT_EQ(compare_versions("1.0.0.1", "1.0.0"), 1);
    EXPECT_EQ(compare_versions("1.0.0.1", "1.0.1"), -1);
}

TEST(CompareVersions, AgreesWithCompareSemverOnSemverStrings) {
    const std::vector<std::string> all = {
        "0.0.0",      "0.0.1",        "0.1.0",         "1.0.0-0",       "1.0.0-1",          "1.0.0-2",
        "1.0.0-10",   "1.0.0-0a",     "1.0.0-alpha",   "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-alpha-1",
        "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1",    "1.0.0-rc.1+b",     "1.0.0",
        "1.0.0+x",    "v1.0.0",       "1.0.1",         "1.1.0",         "1.10.0",           "1.9.2",
        "2.0.0",      "10.0.0",       "1.0.0--",       "1.0.0-A",       "1.0.0-a.b.c.d",    "1.0.0-a.b.c"};
    for (const auto& a : all) {
        for (const auto& b : all) {
            auto sa = parse_semver(a), sb = parse_semver(b);
            ASSERT_TRUE(sa && sb) << a << " / " << b;
            int expected = compare_semver(*sa, *sb);
            expected = expected < 0 ? -1 : (expected > 0 ? 1 : 0);
            EXPECT_EQ(compare_versions(a, b), expected) << a << " vs " << b;
        }
    }
}

TEST(CompareVersions, StrictWeakOrderingOnMixedList) {
    const std::vector<std::string> mixed = {
        "1.0.0",      "1.0.0-rc.1", "1.0.0-rc.01", "1.0.0+build",    "v1.0.0",        "1.10.0",
        "1.9.2",      "1.2",        "1.2.0",       "1.2.0.0",        "2024.05.01-rc", "2024.5.1",
        "2024.05.01", "build42",    "build9",      "1.0.0-beta",     "1.0.0-beta.11", "1.0.0-beta.2",
        "",           "0",          "1.0-",        "1.0.0-",         "1.0.0-alpha",   "r100",
        "1a",         "1.a",        "1_0",         "1.0.0-RC.1",     "1.0.0-rc10",    "1.0.0-rc2",
        "v",          "-",          "+",           "1.0.0-x.7.z.92", " 1.0.0 "};
    auto less = VersionLess{};
    for (const auto& a : mixed) {
        EXPECT_FALSE(less(a, a)) << "irreflexive: " << a;
        for (const auto& b : mixed) {
            EXPECT_EQ(compare_versions(a, b), -compare_versions(b, a)) << "antisymmetric: " << a << " / " << b;
            if (less(a, b)) {
                EXPECT_FALSE(less(b, a)) << "asymmetric: " << a << " / " << b;
            }
            for (const auto& c : mixed) {
                if (less(a, b) && less(b, c)) {
                    EXPECT_TRUE(less(a, c)) << "transitive: " << a << " < " << b << " < " << c;
                }
                const bool ab = !less(a, b) && !less(b, a), bc = !less(b, c) && !less(c, b);
                const bool ac = !less(a, c) && !less(c, a);
                if (ab && bc) {
                    EXPECT_TRUE(ac) << "equivalence transitive: " << a << ", " << b << ", " << c;
                }
            }
        }
    }
    // And std::sort produces a sequence that is non-decreasing under the comparator.
    auto sorted = mixed;
    std::sort(sorted.begin(), sorted.end(), less);
    for (std::size_t i = 1; i < sorted.size(); ++i) EXPECT_LE(compare_versions(sorted[i - 1], sorted[i]), 0);
    EXPECT_TRUE(std::is_sorted(sorted.begin(), sorted.end(), less));
}

TEST(CompareVersions, HelpersMatchCompare) {
    EXPECT_TRUE(version_less("1.9.2", "1.10.0"));
    EXPECT_FALSE(version_less("1.10.0", "1.9.2"));
    EXPECT_TRUE(versions_equivalent("v1.0.0+a", "1.0.0"));
    EXPECT_FALSE(versions_equivalent("1.0.0-rc.1", "1.0.0"));
}

}  // namespace
}  // namespace otad::domain
