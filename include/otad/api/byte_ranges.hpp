#pragma once
// HTTP range requests and conditional requests (RFC 9110 §13, §14), pure logic:
// no I/O, no Beast. Handlers for firmware downloads call these and build the
// Response; see docs/protocols.md#rule-range-206 for why every satisfiable Range gets a 206.
//
// Range policy (parse_range):
//  * Unit "bytes", case-insensitive; OWS is tolerated around '=' and around list
//    elements ("bytes= 0-1, 3-4"); empty list elements are skipped.
//  * "S-E" with E >= total is clipped to total-1 (IDF asks for bytes=S-LEN);
//    "S-" runs to the end; "-N" is the last N bytes (the whole file if N >= total).
//  * A spec with S >= total, or "-0", is unsatisfiable and dropped; when none is
//    left the answer is 416 with "Content-Range: bytes */total". A zero-length
//    representation therefore answers every Range with 416.
//  * A syntax error anywhere (other unit, no '=', garbage, E < S, "-", sign or space
//    inside a number) ignores the whole header: serve 200 with the full body.
//  * Numbers too large for 64 bits saturate (a huge start is simply unsatisfiable).
//  * Several ranges: overlapping or adjacent ones are coalesced (RFC 9110
//    §15.3.7 allows it) into the position of the first of them; otherwise the request
//    order is kept. If more than kMaxRangeSpecs specs are sent, or more than
//    max_parts ranges remain after coalescing, the header is ignored (200), which
//    §14.2 permits and which defeats many-small-ranges amplification. One range
//    left means a plain 206 with Content-Range; two or more mean multipart/byteranges.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "otad/api/http.hpp"

namespace otad::api {

struct ByteRange {
    std::uint64_t first = 0;
    std::uint64_t last = 0;  // inclusive
    std::uint64_t length() const noexcept { return last - first + 1; }
    friend bool operator==(const ByteRange&, const ByteRange&) = default;
};

enum class RangeDisposition {
    ignore,         // no usable Range: 200 with the whole representation
    partial,        // 206: `ranges` holds 1..max_parts ranges, each within [0, total)
    unsatisfiable,  // 416 with Content-Range: bytes */total
};

struct RangeRequest {
    RangeDisposition disposition = RangeDisposition::ignore;
    std::vector<ByteRange> ranges;
};

inline constexpr std::size_t kMaxRangeParts = 16;
inline constexpr std::size_t kMaxRangeSpecs = 128;

RangeRequest parse_range(std::string_view range_header, std::uint64_t total, std::size_t max_parts = kMaxRangeParts);

// "bytes S-E/T" for a 206 (or a multipart part); "bytes */T" for a 416.
std::string content_range(const ByteRange& range, std::uint64_t total);
std::string unsatisfied_content_range(std::uint64_t total);

// ---- validators and conditional requests ----

// Entity-tag syntax: [W/]"<etagc*>". `opaque` keeps the quotes.
struct EntityTag {
    bool weak = false;
    std::string_view opaque;
};
std::optional<EntityTag> parse_entity_tag(std::string_view text) noexcept;

// If-Range (§13.1.5): true = honour the Range. An entity-tag must match `etag`
// strongly (neither weak, same opaque-tag); an HTTP-date (IMF-fixdate) must equal
// last_modified_unix exactly. Anything else, a weak tag included: false (send 200).
bool evaluate_if_range(std::string_view if_range, std::string_view etag,
                       std::optional<std::int64_t> last_modified_unix);

// If-Match (§13.1.1, strong comparison): true when "*" or any listed tag matches
// `etag` strongly. A malformed value does not match (412, fail safe).
bool if_match_passes(std::string_view if_match, std::string_view etag) noexcept;
// If-None-Match (§13.1.2, weak comparison): false when "*" or any listed tag
// matches `etag` weakly (-> 304 for GET/HEAD, 412 otherwise). A malformed value is
// ignored (passes).
bool if_none_match_passes(std::string_view if_none_match, std::string_view etag) noexcept;

enum class Precondition { proceed, not_modified /*304*/, failed /*412*/ };

// Header values as received (nullopt = absent). If-Range is separate: it only
// decides whether a Range is honoured (evaluate_if_range).
struct ConditionalHeaders {
    std::optional<std::string_view> if_match;
    std::optional<std::string_view> if_none_match;
    std::optional<std::string_view> if_modified_since;
    std::optional<std::string_view> if_unmodified_since;
};

// §13.2.2 order: If-Match (412) or else If-Unmodified-Since (412); then
// If-None-Match (304 for GET/HEAD, else 412) or else, for GET/HEAD only,
// If-Modified-Since (304). Unparseable dates are ignored. `etag` is the current
// representation's strong ETag (quoted); the representation is assumed to exist.
Precondition evaluate_preconditions(const ConditionalHeaders& headers, std::string_view etag,
                                    std::optional<std::int64_t> last_modified_unix, bool get_or_head);

// ---- multipart/byteranges ----
//
// Body layout (RFC 9110 §14.6, RFC 2046 §5.1.1): every part starts with CRLF,
// the first one too (an empty preamble, as nginx does), so all parts look alike:
//   "\r\n--B\r\nContent-Type: T\r\nContent-Range: bytes S-E/TOTAL\r\n\r\n" <bytes S..E>
// and the body ends with "\r\n--B--\r\n".

struct MultipartPart {
    std::string header;  // the prefix above, sent before the part's bytes
    ByteRange range;
};

struct MultipartPlan {
    std::string content_type;  // "multipart/byteranges; boundary=B" for the response header
    std::vector<MultipartPart> parts;
    std::string trailer;               // "\r\n--B--\r\n"
    std::uint64_t content_length = 0;  // exact total of headers, bytes and trailer
};

// Throws std::invalid_argument when `ranges` is empty, a range lies outside
// [0, total) or has last < first, or the boundary is not 1-70 characters of
// [0-9A-Za-z'+_.-] (safe unquoted in a header and by RFC 2046).
MultipartPlan plan_multipart_byteranges(std::span<const ByteRange> ranges, std::uint64_t total,
                                        std::string_view part_content_type, std::string_view boundary);

// 32 random hex characters (never found in a body in practice).
std::string make_multipart_boundary();

// The plan as Response body parts over a mapped file whose bytes [file_offset,
// file_offset + total) are the representation.
std::vector<BodyPart> multipart_body(const MultipartPlan& plan, std::shared_ptr<const platform::MappedFile> file,
                                     std::uint64_t file_offset = 0);

}  // namespace otad::api
