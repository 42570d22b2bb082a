#pragma once
// The answer to a GET or HEAD of firmware bytes, shared by every route that sends
// them (/api/v1/blobs/{sha256}, /firmware/{p}/{v}/{name}, the NONOS front-end's
// /v1/device/rom/ and /user1.bin, /user2.bin), so they all behave alike:
// validators (ETag, Last-Modified), preconditions (If-Match, If-None-Match,
// If-Modified-Since, If-Unmodified-Since: 304 / 412), then for GET the Range and
// If-Range rules of api/byte_ranges (206, multipart/byteranges, 416). A Range on
// HEAD is ignored (RFC 9110 §14.2). docs/downloads.md is the contract.

#include <cstdint>
#include <string>
#include <string_view>

#include "otad/api/http.hpp"

namespace otad::domain {
struct CachedBlob;
}

namespace otad::api {

// What one download answers with, whichever route found it. The views must
// outlive the download_response call.
struct Representation {
    const domain::CachedBlob* blob = nullptr;  // the bytes and their ETag
    std::string_view filename;                 // for Content-Disposition
    std::string_view last_modified;            // IMF-fixdate
    std::int64_t last_modified_unix = 0;
    std::string cache_control;
};

// The response for `request` (GET or HEAD); net omits a HEAD's body.
Response download_response(const Request& request, const Representation& rep);

// `attachment; filename="..."` (RFC 6266), with filename* for names beyond
// printable ASCII when short enough for hand-written device parsers.
std::string content_disposition(std::string_view filename);

}  // namespace otad::api
