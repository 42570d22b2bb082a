#include "otad/api/byte_ranges.hpp"

#include "otad/util/crypto.hpp"
#include "otad/util/strings.hpp"

#include <limits>
#include <stdexcept>

namespace otad::api {
namespace {

constexpr std::uint64_t kU64Max = std::numeric_limits<std::uint64_t>::max();

bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

std::string_view trim_ows(std::string_view s) noexcept {
    while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
    return s;
}

bool equals_icase(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
        if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
        if (x != y) return false;
    }
    return true;
}

// Non-empty run of ASCII digits, saturating at 2^64-1; nullopt on anything else.
std::optional<std::uint64_t> parse_position(std::string_view s) noexcept {
    if (s.empty()) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        const auto d = static_cast<std::uint64_t>(c - '0');
        v = (v > (kU64Max - d) / 10) ? kU64Max : v * 10 + d;
    }
    return v;
}

bool touches(const ByteRange& a, const ByteRange& b) noexcept {
    // Overlapping or adjacent; last < total <= 2^64-1, so last + 1 cannot overflow.
    return a.first <= b.last + 1 && b.first <= a.last + 1;
}

// Adds r keeping `out` pairwise disjoint and non-adjacent: r absorbs every range
// it touches and takes the position of the earliest of them.
void add_coalesced(std::vector<ByteRange>& out, ByteRange r) {
    std::size_t position = out.size();
    for (std::size_t i = 0; i < out.size();) {
        if (touches(out[i], r)) {
            r.first = std::min(r.first, out[i].first);
            r.last = std::max(r.last, out[i].last);
            if (position == out.size()) {
                position = i;
                ++i;
            } else {
                out.erase(out.begin() + static_cast<std::ptrdiff_t>(i));
            }
        } else {
            ++i;
        }
    }
    if (position == out.size())
        out.push_back(r);
    else
        out[position] = r;
}

bool is_etagc(unsigned char c) noexcept { return c == 0x21 || (c >= 0x23 && c <= 0x7E) || c >= 0x80; }

// One entity-tag at the start of s; on success advances s past it.
std::optional<EntityTag> take_entity_tag(std::string_view& s) noexcept {
    EntityTag tag;
    std::string_view rest = s;
    if (rest.size() >= 2 && rest[0] == 'W' && rest[1] == '/') {
        tag.weak = true;
        rest.remove_prefix(2);
    }
    if (rest.empty() || rest[0] != '"') return std::nullopt;
    std::size_t close = 1;
    while (close < rest.size() && rest[close] != '"') {
        if (!is_etagc(static_cast<unsigned char>(rest[close]))) return std::nullopt;
        ++close;
    }
    if (close >= rest.size()) return std::nullopt;
    tag.opaque = rest.substr(0, close + 1);
    s = rest.substr(close + 1);
    return tag;
}

struct TagList {
    bool any = false;  // "*"
    std::vector<EntityTag> tags;
};

// "*" or 1#entity-tag (empty list elements allowed); nullopt if malformed.
std::optional<TagList> parse_tag_list(std::string_view value) {
    value = trim_ows(value);
    TagList list;
    if (value == "*") {
        list.any = true;
        return list;
    }
    while (true) {
        while (!value.empty() && (is_ows(value.front()) || value.front() == ',')) value.remove_prefix(1);
        if (value.empty()) break;
        auto tag = take_entity_tag(value);
        if (!tag) return std::nullopt;
        list.tags.push_back(*tag);
        value = trim_ows(value);
        if (!value.empty() && value.front() != ',') return std::nullopt;
    }
    if (list.tags.empty()) return std::nullopt;
    return list;
}

bool strong_match(const EntityTag& a, const EntityTag& b) noexcept {
    return !a.weak && !b.weak && a.opaque == b.opaque;
}
bool weak_match(const EntityTag& a, const EntityTag& b) noexcept { return a.opaque == b.opaque; }

bool is_boundary_char(char c) noexcept {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '\'' || c == '+' ||
           c == '_' || c == '.' || c == '-';
}

}  // namespace

RangeRequest parse_range(std::string_view range_header, std::uint64_t total, std::size_t max_parts) {
    const RangeRequest ignore{RangeDisposition::ignore, {}};
    const std::string_view value = trim_ows(range_header);
    const std::size_t eq = value.find('=');
    if (eq == std::string_view::npos || !equals_icase(trim_ows(value.substr(0, eq)), "bytes")) return ignore;

    std::vector<ByteRange> satisfiable;
    std::size_t spec_count = 0;
    for (std::string_view element : util::split(value.substr(eq + 1), ',')) {
        const std::string_view spec = trim_ows(element);
        if (spec.empty()) continue;  // "#rule" lists may contain empty elements
        if (++spec_count > kMaxRangeSpecs) return ignore;
        const std::size_t dash = spec.find('-');
        if (dash == std::string_view::npos) return ignore;
        const std::string_view first_text = spec.substr(0, dash), last_text = spec.substr(dash + 1);

        if (first_text.empty()) {  // suffix-range "-N"
            const auto suffix = parse_position(last_text);
            if (!suffix) return ignore;
            if (*suffix == 0 || total == 0) continue;  // unsatisfiable
            add_coalesced(satisfiable, ByteRange{*suffix >= total ? 0 : total - *suffix, total - 1});
            continue;
        }
        const auto first = parse_position(first_text);
        if (!first) return ignore;
        std::uint64_t last = kU64Max;
        if (!last_text.empty()) {
            const auto parsed_last = parse_position(last_text);
            if (!parsed_last || *parsed_last < *first) return ignore;
            last = *parsed_last;
        }
        if (*first >= total) continue;  // unsatisfiable
        add_coalesced(satisfiable, ByteRange{*first, std::min(last, total - 1)});
    }
    if (spec_count == 0) return ignore;
    if (satisfiable.empty()) return {RangeDisposition::unsatisfiable, {}};
    if (satisfiable.size() > max_parts) return ignore;
    return {RangeDisposition::partial, std::move(satisfiable)};
}

std::string content_range(const ByteRange& range, std::uint64_t total) {
    return "bytes " + std::to_string(range.first) + "-" + std::to_string(range.last) + "/" + std::to_string(total);
}

std::string unsatisfied_content_range(std::uint64_t total) { return "bytes */" + std::to_string(total); }

std::optional<EntityTag> parse_entity_tag(std::string_view text) noexcept {
    text = trim_ows(text);
    auto tag = take_entity_tag(text);
    if (!tag || !text.empty()) return std::nullopt;
    return tag;
}

bool evaluate_if_range(std::string_view if_range, std::string_view etag,
                       std::optional<std::int64_t> last_modified_unix) {
    const std::string_view value = trim_ows(if_range);
    if (!value.empty() && (value.front() == '"' || value.substr(0, 2) == "W/")) {
        const auto wanted = parse_entity_tag(value);
        const auto current = parse_entity_tag(etag);
        return wanted && current && strong_match(*wanted, *current);
    }
    if (!last_modified_unix) return false;
    const auto date = util::parse_http_date(value);
    return date && *date == *last_modified_unix;
}

bool if_match_passes(std::string_view if_match, std::string_view etag) noexcept {
    try {
        const auto list = parse_tag_list(if_match);
        if (!list) return false;
        if (list->any) return true;
        const auto current = parse_entity_tag(etag);
        if (!current) return false;
        for (const auto& tag : list->tags)
            if (strong_match(tag, *current)) return true;
        return false;
    } catch (...) {  // allocation failure: fail safe
        return false;
    }
}

bool if_none_match_passes(std::string_view if_none_match, std::string_view etag) noexcept {
    try {
        const auto list = parse_tag_list(if_none_match);
        if (!list) return true;  // malformed: ignored
        if (list->any) return false;
        const auto current = parse_entity_tag(etag);
        if (!current) return true;
        for (const auto& tag : list->tags)
            if (weak_match(tag, *current)) return false;
        return true;
    } catch (...) {
        return true;
    }
}

Precondition evaluate_preconditions(const ConditionalHeaders& headers, std::string_view etag,
                                    std::optional<std::int64_t> last_modified_unix, bool get_or_head) {
    if (headers.if_match) {
        if (!if_match_passes(*headers.if_match, etag)) return Precondition::failed;
    } else if (headers.if_unmodified_since && last_modified_unix) {
        const auto date = util::parse_http_date(trim_ows(*headers.if_unmodified_since));
        if (date && *last_modified_unix > *date) return Precondition::failed;
    }
    if (headers.if_none_match) {
        if (!if_none_match_passes(*headers.if_none_match, etag))
            return get_or_head ? Precondition::not_modified : Precondition::failed;
    } else if (get_or_head && headers.if_modified_since && last_modified_unix) {
        const auto date = util::parse_http_date(trim_ows(*headers.if_modified_since));
        if (date && *last_modified_unix <= *date) return Precondition::not_modified;
    }
    return Precondition::proceed;
}

MultipartPlan plan_multipart_byteranges(std::span<const ByteRange> ranges, std::uint64_t total,
                                        std::string_view part_content_type, std::string_view boundary) {
    if (ranges.empty()) throw std::invalid_argument("multipart/byteranges needs at least one range");
    if (boundary.empty() || boundary.size() > 70)
        throw std::invalid_argument("multipart boundary must be 1-70 characters");
    for (char c : boundary)
        if (!is_boundary_char(c))
            throw std::invalid_argument("multipart boundary has a character outside [0-9A-Za-z'+_.-]");

    MultipartPlan plan;
    plan.content_type = "multipart/byteranges; boundary=" + std::string(boundary);
    plan.trailer = "\r\n--" + std::string(boundary) + "--\r\n";
    plan.content_length = plan.trailer.size();
    for (const ByteRange& r : ranges) {
        if (r.last < r.first || r.last >= total)
            throw std::invalid_argument("range " + std::to_string(r.first) + "-" + std::to_string(r.last) +
                                        " lies outside a representation of " + std::to_string(total) + " bytes");
        MultipartPart part;
        part.header = "\r\n--" + std::string(boundary) + "\r\nContent-Type: " + std::string(part_content_type) +
                      "\r\nContent-Range: " + content_range(r, total) + "\r\n\r\n";
        part.range = r;
        plan.content_length += part.header.size() + r.length();
        plan.parts.push_back(std::move(part));
    }
    return plan;
}

std::string make_multipart_boundary() { return util::to_hex(util::random_bytes(16)); }

std::vector<BodyPart> multipart_body(const MultipartPlan& plan, std::shared_ptr<const platform::MappedFile> file,
                                     std::uint64_t file_offset) {
    std::vector<BodyPart> body;
    body.reserve(plan.parts.size() * 2 + 1);
    for (const MultipartPart& part : plan.parts) {
        body.emplace_back(part.header);
        body.emplace_back(FileSlice{file, file_offset + part.range.first, part.range.length()});
    }
    body.emplace_back(plan.trailer);
    return body;
}

}  // namespace otad::api
