#include "otad/api/download_response.hpp"

#include "otad/api/byte_ranges.hpp"
#include "otad/api/problem.hpp"
#include "otad/domain/blob_cache.hpp"

namespace otad::api {
namespace {

constexpr std::string_view kOctetStream = "application/octet-stream";

bool is_token_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '+' || c == '~';
}

void add_validators(Response& response, const Representation& rep) {
    response.headers.add("ETag", rep.blob->etag);
    response.headers.add("Last-Modified", std::string(rep.last_modified));
    response.headers.add("Cache-Control", rep.cache_control);
    response.headers.add("Accept-Ranges", "bytes");
}

}  // namespace

// `attachment; filename="..."` (RFC 6266): the quoted name keeps printable ASCII,
// escaping '"' and '\'; other bytes become '_'. A name with such bytes also gets
// `filename*=UTF-8''<percent-encoded>`, unless that would make the header long:
// hand-written device parsers look for Content-Length within the first ~1 KB of
// the response (docs/protocols.md#rule-content-length), and net writes Content-Length last.
std::string content_disposition(std::string_view filename) {
    std::string value = "attachment; filename=\"";
    bool plain = true;
    for (unsigned char c : filename) {
        if (c == '"' || c == '\\') {
            value += '\\';
            value += static_cast<char>(c);
        } else if (c >= 0x20 && c < 0x7f) {
            value += static_cast<char>(c);
        } else {
            value += '_';
            plain = false;
        }
    }
    value += '"';
    if (!plain && filename.size() <= 100) {
        static constexpr char hex[] = "0123456789ABCDEF";
        value += "; filename*=UTF-8''";
        for (unsigned char c : filename) {
            if (is_token_char(c)) {
                value += static_cast<char>(c);
            } else {
                value += '%';
                value += hex[c >> 4];
                value += hex[c & 0x0f];
            }
        }
    }
    return value;
}

// RFC 9110: preconditions (§13.2.2), then Range (§14) for GET only: a Range on
// HEAD is ignored (§14.2), so HEAD always shows the whole representation's headers.
Response download_response(const Request& request, const Representation& rep) {
    const domain::CachedBlob& blob = *rep.blob;
    const bool is_get = request.method == Method::get;
    const auto& h = request.headers;

    ConditionalHeaders conditions{h.get("If-Match"), h.get("If-None-Match"), h.get("If-Modified-Since"),
                                  h.get("If-Unmodified-Since")};
    switch (evaluate_preconditions(conditions, blob.etag, rep.last_modified_unix, /*get_or_head=*/true)) {
        case Precondition::failed: {
            Response failed = problem(
                412, "precondition-failed",
                "the firmware's current ETag is " + blob.etag + "; it does not meet If-Match / If-Unmodified-Since");
            add_validators(failed, rep);
            return failed;
        }
        case Precondition::not_modified: {
            Response not_modified;
            not_modified.status = 304;
            add_validators(not_modified, rep);
            return not_modified;
        }
        case Precondition::proceed:
            break;
    }

    Response response;
    add_validators(response, rep);
    response.headers.add("Content-Disposition", content_disposition(rep.filename));

    std::optional<std::string_view> range = is_get ? h.get("Range") : std::nullopt;
    if (range) {
        auto if_range = h.get("If-Range");
        if (if_range && !evaluate_if_range(*if_range, blob.etag, rep.last_modified_unix)) range.reset();
    }
    if (range) {
        RangeRequest ranges = parse_range(*range, blob.size);
        if (ranges.disposition == RangeDisposition::unsatisfiable) {
            Response unsatisfiable = problem(
                416, "range-not-satisfiable",
                "the firmware is " + std::to_string(blob.size) + " bytes long; no requested range starts inside it");
            add_validators(unsatisfiable, rep);
            unsatisfiable.headers.add("Content-Range", unsatisfied_content_range(blob.size));
            return unsatisfiable;
        }
        if (ranges.disposition == RangeDisposition::partial) {
            response.status = 206;
            if (ranges.ranges.size() == 1) {
                const ByteRange& r = ranges.ranges.front();
                response.headers.add("Content-Type", std::string(kOctetStream));
                response.headers.add("Content-Range", content_range(r, blob.size));
                response.body.emplace_back(FileSlice{blob.file, r.first, r.length()});
            } else {
                auto plan =
                    plan_multipart_byteranges(ranges.ranges, blob.size, kOctetStream, make_multipart_boundary());
                response.headers.add("Content-Type", plan.content_type);
                response.body = multipart_body(plan, blob.file);
            }
            return response;
        }
        // RangeDisposition::ignore: malformed or too many parts: the whole body.
    }
    response.headers.add("Content-Type", std::string(kOctetStream));
    if (blob.size > 0) response.body.emplace_back(FileSlice{blob.file, 0, blob.size});
    return response;
}

}  // namespace otad::api
