#include "otad/api/byte_ranges.hpp"

#include "otad/util/strings.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

namespace otad::api {
namespace {

using Ranges = std::vector<ByteRange>;

RangeRequest partial(Ranges r) { return {RangeDisposition::partial, std::move(r)}; }
const RangeRequest kIgnore{RangeDisposition::ignore, {}};
const RangeRequest kUnsatisfiable{RangeDisposition::unsatisfiable, {}};

std::string describe(const RangeRequest& r) {
    std::string out = r.disposition == RangeDisposition::ignore    ? "ignore"
                      : r.disposition == RangeDisposition::partial ? "partial"
                                                                   : "unsatisfiable";
    for (const auto& b : r.ranges) out += " " + std::to_string(b.first) + "-" + std::to_string(b.last);
    return out;
}

void expect_range(std::string_view header, std::uint64_t total, const RangeRequest& expected) {
    const RangeRequest got = parse_range(header, total);
    EXPECT_EQ(describe(got), describe(expected)) << "Range: " << header << " (total " << total << ")";
}

// ---- single ranges ----

TEST(ParseRange, FirstByteOnly) { expect_range("bytes=0-0", 10, partial({{0, 0}})); }
TEST(ParseRange, ClosedRange) { expect_range("bytes=2-5", 10, partial({{2, 5}})); }
TEST(ParseRange, LastByteExactly) { expect_range("bytes=9-9", 10, partial({{9, 9}})); }
TEST(ParseRange, OpenEnded) { expect_range("bytes=3-", 10, partial({{3, 9}})); }
TEST(ParseRange, OpenEndedFromZero) { expect_range("bytes=0-", 10, partial({{0, 9}})); }
TEST(ParseRange, EndPastTotalIsClipped) { expect_range("bytes=0-99999", 10, partial({{0, 9}})); }
TEST(ParseRange, IdfEndOnePastLastByteIsClipped) { expect_range("bytes=4-10", 10, partial({{4, 9}})); }
TEST(ParseRange, Suffix) { expect_range("bytes=-3", 10, partial({{7, 9}})); }
TEST(ParseRange, SuffixOfOneByteFile) { expect_range("bytes=-1", 1, partial({{0, 0}})); }
TEST(ParseRange, SuffixLongerThanFileIsWholeFile) { expect_range("bytes=-500", 10, partial({{0, 9}})); }
TEST(ParseRange, HugeNumbersSaturate) {
    expect_range("bytes=0-99999999999999999999999999", 10, partial({{0, 9}}));
    expect_range("bytes=-99999999999999999999999999", 10, partial({{0, 9}}));
    expect_range("bytes=99999999999999999999999999-", 10, kUnsatisfiable);
}

// ---- unsatisfiable ----

TEST(ParseRange, StartAtTotalIsUnsatisfiable) { expect_range("bytes=5-", 5, kUnsatisfiable); }
TEST(ParseRange, StartPastTotalIsUnsatisfiable) { expect_range("bytes=7-9", 5, kUnsatisfiable); }
TEST(ParseRange, SuffixZeroIsUnsatisfiable) { expect_range("bytes=-0", 10, kUnsatisfiable); }
TEST(ParseRange, EmptyRepresentationIsUnsatisfiable) {
    expect_range("bytes=0-", 0, kUnsatisfiable);
    expect_range("bytes=-5", 0, kUnsatisfiable);
}
TEST(ParseRange, AllOfSeveralUnsatisfiable) { expect_range("bytes=10-, -0, 20-30", 10, kUnsatisfiable); }
TEST(ParseRange, UnsatisfiableSpecsAreDroppedFromASatisfiableSet) {
    expect_range("bytes=10-20,0-1", 10, partial({{0, 1}}));
    expect_range("bytes=-0,8-", 10, partial({{8, 9}}));
}

// ---- ignored (serve 200) ----

TEST(ParseRange, LastBeforeFirstIsIgnored) { expect_range("bytes=1-0", 10, kIgnore); }
TEST(ParseRange, LastBeforeFirstIgnoredEvenWhenOthersAreValid) { expect_range("bytes=0-1,5-4", 10, kIgnore); }
TEST(ParseRange, OtherUnitIsIgnored) { expect_range("items=0-1", 10, kIgnore); }
TEST(ParseRange, GarbageIsIgnored) {
    for (const char* h : {"", "bytes", "bytes=", "bytes=,", "bytes= , ", "bytes=-", "bytes=a-b", "bytes=1-2-3",
                          "bytes=0x10-", "bytes=+1-2", "bytes=1-+2", "bytes=--1", "bytes=1", "bytes=0 - 1",
                          "bytes=1 -2", "bytes=0-1;2-3", "bytes 0-1", "=0-1", "bytes=\xe2\x85\xa7-9"}) {
        expect_range(h, 10, kIgnore);
    }
}
TEST(ParseRange, MalformedEvenWhenUnsatisfiableIsIgnored) { expect_range("bytes=20-10", 5, kIgnore); }

// ---- tolerance ----

TEST(ParseRange, WhitespaceTolerance) {
    expect_range("bytes= 0-1, 3-4", 10, partial({{0, 1}, {3, 4}}));
    expect_range("  bytes = 0-1 ,\t3-4  ", 10, partial({{0, 1}, {3, 4}}));
}
TEST(ParseRange, UnitIsCaseInsensitive) { expect_range("Bytes=0-1", 10, partial({{0, 1}})); }
TEST(ParseRange, EmptyListElementsSkipped) { expect_range("bytes=,0-1,,3-4,", 10, partial({{0, 1}, {3, 4}})); }

// ---- several ranges ----

TEST(ParseRange, MultipleRangesKeepRequestOrder) {
    expect_range("bytes=0-1,5-6", 10, partial({{0, 1}, {5, 6}}));
    expect_range("bytes=5-6,0-1", 10, partial({{5, 6}, {0, 1}}));
    expect_range("bytes=-2,0-0", 10, partial({{8, 9}, {0, 0}}));
}
TEST(ParseRange, OverlappingRangesCoalesce) {
    expect_range("bytes=0-4,2-6", 10, partial({{0, 6}}));
    expect_range("bytes=0-1,0-1", 10, partial({{0, 1}}));
    expect_range("bytes=0-,5-6", 10, partial({{0, 9}}));
}
TEST(ParseRange, AdjacentRangesCoalesce) { expect_range("bytes=0-1,2-3", 10, partial({{0, 3}})); }
TEST(ParseRange, CoalescedRangeTakesPositionOfFirst) {
    // 8-9 first, then 0-1, then 2-8 joins both into 0-9 at position 0.
    expect_range("bytes=8-9,0-1,2-7", 10, partial({{0, 9}}));
    expect_range("bytes=6-7,0-1,3-3,2-2", 10, partial({{6, 7}, {0, 3}}));
}
TEST(ParseRange, NonAdjacentDoNotCoalesce) { expect_range("bytes=0-1,3-4", 10, partial({{0, 1}, {3, 4}})); }

TEST(ParseRange, PartCountLimit) {
    std::string sixteen = "bytes=", seventeen;
    for (int i = 0; i < 16; ++i) sixteen += (i ? "," : "") + std::to_string(i * 2) + "-" + std::to_string(i * 2);
    seventeen = sixteen + ",40-40";
    auto r16 = parse_range(sixteen, 100);
    EXPECT_EQ(r16.disposition, RangeDisposition::partial);
    EXPECT_EQ(r16.ranges.size(), 16u);
    EXPECT_EQ(parse_range(seventeen, 100).disposition, RangeDisposition::ignore);
    EXPECT_EQ(parse_range(seventeen, 100, 17).disposition, RangeDisposition::partial);
    // Many specs that coalesce into few parts are fine ...
    std::string overlapping = "bytes=";
    for (int i = 0; i < 100; ++i) overlapping += (i ? "," : "") + std::string("0-9");
    EXPECT_EQ(describe(parse_range(overlapping, 100)), "partial 0-9");
    // ... but more specs than kMaxRangeSpecs are ignored outright.
    std::string too_many = "bytes=";
    for (std::size_t i = 0; i <= kMaxRangeSpecs; ++i) too_many += (i ? "," : "") + std::string("0-0");
    EXPECT_EQ(parse_range(too_many, 100).disposition, RangeDisposition::ignore);
}

// ---- Content-Range ----

TEST(ContentRange, Format) {
    EXPECT_EQ(content_range({0, 0}, 1), "bytes 0-0/1");
    EXPECT_EQ(content_range({100, 65635}, 1048576), "bytes 100-65635/1048576");
    EXPECT_EQ(unsatisfied_content_range(5), "bytes */5");
}

// ---- entity tags ----

TEST(EntityTag, Parse) {
    auto strong = parse_entity_tag("\"abc\"");
    ASSERT_TRUE(strong);
    EXPECT_FALSE(strong->weak);
    EXPECT_EQ(strong->opaque, "\"abc\"");
    auto weak = parse_entity_tag(" W/\"abc\" ");
    ASSERT_TRUE(weak);
    EXPECT_TRUE(weak->weak);
    EXPECT_EQ(weak->opaque, "\"abc\"");
    EXPECT_TRUE(parse_entity_tag("\"\""));
    for (const char* bad : {"", "abc", "\"abc", "abc\"", "w/\"abc\"", "W/abc", "\"a\"b\"", "\"a b\"", "\"a\" x"})
        EXPECT_FALSE(parse_entity_tag(bad)) << bad;
}

// ---- If-Range ----

constexpr std::string_view kEtag = "\"sha256-ab12\"";
constexpr std::int64_t kLastModified = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT

TEST(IfRange, StrongEtagMatchHonoursRange) { EXPECT_TRUE(evaluate_if_range("\"sha256-ab12\"", kEtag, kLastModified)); }
TEST(IfRange, EtagMismatchSendsWhole) { EXPECT_FALSE(evaluate_if_range("\"sha256-ffff\"", kEtag, kLastModified)); }
TEST(IfRange, WeakEtagNeverHonoured) {
    EXPECT_FALSE(evaluate_if_range("W/\"sha256-ab12\"", kEtag, kLastModified));
    EXPECT_FALSE(evaluate_if_range("\"sha256-ab12\"", "W/\"sha256-ab12\"", kLastModified));
}
TEST(IfRange, DateEqualToLastModifiedHonoursRange) {
    EXPECT_EQ(util::http_date(kLastModified), "Sun, 06 Nov 1994 08:49:37 GMT");
    EXPECT_TRUE(evaluate_if_range("Sun, 06 Nov 1994 08:49:37 GMT", kEtag, kLastModified));
}
TEST(IfRange, DateMismatchSendsWhole) {
    EXPECT_FALSE(evaluate_if_range("Sun, 06 Nov 1994 08:49:38 GMT", kEtag, kLastModified));
    EXPECT_FALSE(evaluate_if_range("Sun, 06 Nov 1994 08:49:36 GMT", kEtag, kLastModified));
    EXPECT_FALSE(evaluate_if_range("Sun, 06 Nov 1994 08:49:37 GMT", kEtag, std::nullopt));
}
TEST(IfRange, GarbageSendsWhole) {
    EXPECT_FALSE(evaluate_if_range("", kEtag, kLastModified));
    EXPECT_FALSE(evaluate_if_range("yesterday", kEtag, kLastModified));
    EXPECT_FALSE(evaluate_if_range("\"unterminated", kEtag, kLastModified));
}

// ---- If-None-Match / If-Match ----

TEST(IfNoneMatch, MatchingTagFails) {
    EXPECT_FALSE(if_none_match_passes("\"sha256-ab12\"", kEtag));
    EXPECT_FALSE(if_none_match_passes("W/\"sha256-ab12\"", kEtag));  // weak comparison
    EXPECT_FALSE(if_none_match_passes("\"x\", \"sha256-ab12\"", kEtag));
    EXPECT_FALSE(if_none_match_passes("\"x\",W/\"sha256-ab12\" , \"y\"", kEtag));
    EXPECT_FALSE(if_none_match_passes("*", kEtag));
    EXPECT_FALSE(if_none_match_passes(" * ", kEtag));
}
TEST(IfNoneMatch, NoMatchPasses) {
    EXPECT_TRUE(if_none_match_passes("\"x\", \"y\"", kEtag));
    EXPECT_TRUE(if_none_match_passes("\"sha256-AB12\"", kEtag));  // opaque tags are case-sensitive
    // ',' is a valid etagc: it does not split a quoted tag.
    EXPECT_FALSE(if_none_match_passes("\"x,y\", \"z\"", "\"x,y\""));
    EXPECT_TRUE(if_none_match_passes("\"x,y\", \"z\"", "\"x\""));
}
TEST(IfNoneMatch, MalformedIsIgnored) {
    EXPECT_TRUE(if_none_match_passes("sha256-ab12", kEtag));
    EXPECT_TRUE(if_none_match_passes("", kEtag));
    EXPECT_TRUE(if_none_match_passes("\"sha256-ab12\" junk", kEtag));
}

TEST(IfMatch, StrongComparison) {
    EXPECT_TRUE(if_match_passes("\"sha256-ab12\"", kEtag));
    EXPECT_TRUE(if_match_passes("\"a\", \"sha256-ab12\"", kEtag));
    EXPECT_TRUE(if_match_passes("*", kEtag));
    EXPECT_FALSE(if_match_passes("W/\"sha256-ab12\"", kEtag));
    EXPECT_FALSE(if_match_passes("\"sha256-ab12\"", "W/\"sha256-ab12\""));
    EXPECT_FALSE(if_match_passes("\"other\"", kEtag));
}
TEST(IfMatch, MalformedFails) {
    EXPECT_FALSE(if_match_passes("sha256-ab12", kEtag));
    EXPECT_FALSE(if_match_passes("", kEtag));
    EXPECT_FALSE(if_match_passes(",", kEtag));
}

// ---- evaluate_preconditions ----

TEST(Preconditions, NoHeadersProceed) {
    EXPECT_EQ(evaluate_preconditions({}, kEtag, kLastModified, true), Precondition::proceed);
}
TEST(Preconditions, IfNoneMatchGives304ForGetAnd412Otherwise) {
    ConditionalHeaders h;
    h.if_none_match = "\"sha256-ab12\"";
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, true), Precondition::not_modified);
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, false), Precondition::failed);
    h.if_none_match = "*";
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, true), Precondition::not_modified);
    h.if_none_match = "\"other\"";
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, true), Precondition::proceed);
}
TEST(Preconditions, IfMatchMismatchGives412) {
    ConditionalHeaders h;
    h.if_match = "\"other\"";
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, true), Precondition::failed);
    h.if_match = "\"sha256-ab12\"";
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, true), Precondition::proceed);
}
TEST(Preconditions, IfMatchCheckedBeforeIfNoneMatch) {
    ConditionalHeaders h;
    h.if_match = "\"other\"";
    h.if_none_match = "\"sha256-ab12\"";
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, true), Precondition::failed);
}
TEST(Preconditions, IfModifiedSince) {
    ConditionalHeaders h;
    h.if_modified_since = "Sun, 06 Nov 1994 08:49:37 GMT";
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, true), Precondition::not_modified);
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, false), Precondition::proceed);  // GET/HEAD only
    h.if_modified_since = "Sun, 06 Nov 1994 08:49:36 GMT";
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, true), Precondition::proceed);
    h.if_modified_since = "not a date";
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, true), Precondition::proceed);
    // If-None-Match present: If-Modified-Since is not evaluated.
    h.if_modified_since = "Sun, 06 Nov 1994 08:49:37 GMT";
    h.if_none_match = "\"other\"";
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, true), Precondition::proceed);
}
TEST(Preconditions, IfUnmodifiedSince) {
    ConditionalHeaders h;
    h.if_unmodified_since = "Sun, 06 Nov 1994 08:49:36 GMT";
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, true), Precondition::failed);
    h.if_unmodified_since = "Sun, 06 Nov 1994 08:49:37 GMT";
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, true), Precondition::proceed);
    // If-Match present: If-Unmodified-Since is not evaluated.
    h.if_unmodified_since = "Sun, 06 Nov 1994 08:49:36 GMT";
    h.if_match = "*";
    EXPECT_EQ(evaluate_preconditions(h, kEtag, kLastModified, true), Precondition::proceed);
}

// ---- multipart/byteranges ----

TEST(Multipart, PlanIsExact) {
    const Ranges ranges = {{0, 1}, {5, 7}};
    const auto plan = plan_multipart_byteranges(ranges, 10, "application/octet-stream", "B0UND");
    EXPECT_EQ(plan.content_type, "multipart/byteranges; boundary=B0UND");
    ASSERT_EQ(plan.parts.size(), 2u);
    EXPECT_EQ(plan.parts[0].header,
              "\r\n--B0UND\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-1/10\r\n\r\n");
    EXPECT_EQ(plan.parts[0].range, (ByteRange{0, 1}));
    EXPECT_EQ(plan.parts[1].header,
              "\r\n--B0UND\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 5-7/10\r\n\r\n");
    EXPECT_EQ(plan.trailer, "\r\n--B0UND--\r\n");

    // Render it against a known body and compare byte for byte, length included.
    const std::string data = "0123456789";
    std::string body;
    for (const auto& p : plan.parts) body += p.header + data.substr(p.range.first, p.range.length());
    body += plan.trailer;
    EXPECT_EQ(body,
              "\r\n--B0UND\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 0-1/10\r\n\r\n01"
              "\r\n--B0UND\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 5-7/10\r\n\r\n567"
              "\r\n--B0UND--\r\n");
    EXPECT_EQ(plan.content_length, body.size());
}

TEST(Multipart, InvalidInputsThrow) {
    const Ranges ok = {{0, 1}};
    EXPECT_THROW(plan_multipart_byteranges({}, 10, "t", "b"), std::invalid_argument);
    EXPECT_THROW(plan_multipart_byteranges(Ranges{{0, 10}}, 10, "t", "b"), std::invalid_argument);
    EXPECT_THROW(plan_multipart_byteranges(Ranges{{3, 2}}, 10, "t", "b"), std::invalid_argument);
    EXPECT_THROW(plan_multipart_byteranges(ok, 10, "t", ""), std::invalid_argument);
    EXPECT_THROW(plan_multipart_byteranges(ok, 10, "t", std::string(71, 'a')), std::invalid_argument);
    EXPECT_THROW(plan_multipart_byteranges(ok, 10, "t", "a b"), std::invalid_argument);
    EXPECT_THROW(plan_multipart_byteranges(ok, 10, "t", "a\r\nX: y"), std::invalid_argument);
    EXPECT_NO_THROW(plan_multipart_byteranges(ok, 10, "t", std::string(70, 'a')));
}

TEST(Multipart, BoundaryIsRandomHex) {
    const std::string a = make_multipart_boundary(), b = make_multipart_boundary();
    EXPECT_EQ(a.size(), 32u);
    EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
    EXPECT_NE(a, b);
    EXPECT_NO_THROW(plan_multipart_byteranges(Ranges{{0, 0}}, 1, "application/octet-stream", a));
}

TEST(Multipart, BodyPartsReferenceTheFile) {
    const auto plan = plan_multipart_byteranges(Ranges{{2, 3}, {8, 9}}, 10, "application/octet-stream", "b");
    const auto body = multipart_body(plan, nullptr, 100);
    ASSERT_EQ(body.size(), 5u);
    EXPECT_EQ(std::get<std::string>(body[0]), plan.parts[0].header);
    EXPECT_EQ(std::get<FileSlice>(body[1]).offset, 102u);
    EXPECT_EQ(std::get<FileSlice>(body[1]).length, 2u);
    EXPECT_EQ(std::get<std::string>(body[2]), plan.parts[1].header);
    EXPECT_EQ(std::get<FileSlice>(body[3]).offset, 108u);
    EXPECT_EQ(std::get<FileSlice>(body[3]).length, 2u);
    EXPECT_EQ(std::get<std::string>(body[4]), plan.trailer);
    std::uint64_t sum = 0;
    for (const auto& part : body)
        sum += std::holds_alternative<std::string>(part) ? std::get<std::string>(part).size()
                                                         : std::get<FileSlice>(part).length;
    EXPECT_EQ(sum, plan.content_length);
}

}  // namespace
}  // namespace otad::api
