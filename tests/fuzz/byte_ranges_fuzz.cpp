// Fuzzes the Range and conditional-request parsers (api/byte_ranges): parse_range,
// the multipart/byteranges plan built from its result, entity tags, If-Range,
// If-Match, If-None-Match, the HTTP dates of If-(Un)Modified-Since and their
// evaluation order.
//
// Input (text, so seeds read like requests): byte 0 picks the representation size
// and the part limit; then '\n'-separated header values, in this order:
//   Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since
// A missing line is an absent header. The representation's ETag is kEtag and its
// Last-Modified kLastModified (Tue, 14 Nov 2023 22:13:20 GMT).
// A finding is a crash, a sanitizer report, an exception, or a result outside
// what byte_ranges.hpp promises (checked below).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <optional>
#include <string_view>
#include <vector>

#include "otad/api/byte_ranges.hpp"

namespace {

using namespace otad::api;

constexpr std::string_view kEtag = "\"5d41402abc4b2a76b9719d911017c592\"";
constexpr std::int64_t kLastModified = 1'700'000'000;
constexpr std::uint64_t kTotals[] = {
    0, 1, 2, 100, 1000, 1 << 20, std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::uint64_t>::max()};
constexpr std::size_t kMaxParts[] = {kMaxRangeParts, 1, 2, 3};

[[noreturn]] void contract_broken(const char* what) {
    __builtin_printf("byte_ranges_fuzz: contract broken: %s\n", what);
    std::abort();
}

void check_ranges(const RangeRequest& request, std::uint64_t total, std::size_t max_parts) {
    switch (request.disposition) {
        case RangeDisposition::ignore:
        case RangeDisposition::unsatisfiable:
            return;
        case RangeDisposition::partial:
            break;
    }
    if (request.ranges.empty() || request.ranges.size() > max_parts) contract_broken("206 with 0 or too many ranges");
    for (std::size_t i = 0; i < request.ranges.size(); ++i) {
        const ByteRange& r = request.ranges[i];
        if (r.first > r.last || r.last >= total) contract_broken("a range outside [0, total)");
        for (std::size_t j = 0; j < i; ++j) {
            const ByteRange& o = request.ranges[j];
            // Coalesced: no two ranges overlap or touch.
            if (r.first <= o.last + 1 && o.first <= r.last + 1) contract_broken("overlapping or adjacent ranges");
        }
        (void)content_range(r, total);
    }
    if (request.ranges.size() < 2) return;
    MultipartPlan plan =
        plan_multipart_byteranges(request.ranges, total, "application/octet-stream", "fuzz-Boundary_1");
    if (plan.parts.size() != request.ranges.size()) contract_broken("multipart plan lost a part");
    std::uint64_t length = plan.trailer.size();
    for (const auto& part : plan.parts) length += part.header.size() + part.range.length();
    if (length != plan.content_length) contract_broken("multipart Content-Length differs from its parts");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint64_t total = kTotals[data[0] % std::size(kTotals)];
    const std::size_t max_parts = kMaxParts[(data[0] / std::size(kTotals)) % std::size(kMaxParts)];
    std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);

    std::vector<std::optional<std::string_view>> lines(6);
    for (std::size_t i = 0; i < lines.size() && !text.empty(); ++i) {
        const auto eol = text.find('\n');
        lines[i] = text.substr(0, eol);
        text = eol == std::string_view::npos ? std::string_view{} : text.substr(eol + 1);
    }

    if (lines[0]) check_ranges(parse_range(*lines[0], total, max_parts), total, max_parts);
    (void)unsatisfied_content_range(total);

    for (const auto& line : lines) {
        if (!line) continue;
        if (auto tag = parse_entity_tag(*line)) {
            const std::string_view opaque = tag->opaque;
            if (opaque.size() < 2 || opaque.front() != '"' || opaque.back() != '"')
                contract_broken("an entity-tag whose opaque part is not quoted");
            if (opaque.data() < line->data() || opaque.data() + opaque.size() > line->data() + line->size())
                contract_broken("an entity-tag outside the text it was parsed from");
        }
    }
    if (lines[1]) {
        (void)evaluate_if_range(*lines[1], kEtag, kLastModified);
        (void)evaluate_if_range(*lines[1], kEtag, std::nullopt);
    }
    if (lines[2] && if_match_passes(*lines[2], kEtag) && lines[2]->find(kEtag) == std::string_view::npos &&
        lines[2]->find('*') == std::string_view::npos)
        contract_broken("If-Match passed without naming the ETag or '*'");
    if (lines[3]) (void)if_none_match_passes(*lines[3], kEtag);

    ConditionalHeaders headers{lines[2], lines[3], lines[4], lines[5]};
    for (bool get_or_head : {true, false}) {
        const Precondition p = evaluate_preconditions(headers, kEtag, kLastModified, get_or_head);
        if (p == Precondition::not_modified && !get_or_head) contract_broken("304 for a method other than GET/HEAD");
        (void)evaluate_preconditions(headers, kEtag, std::nullopt, get_or_head);
    }
    return 0;
}
