#pragma once
// A streaming multipart/form-data reader (RFC 7578 over RFC 2046) on top of a
// BodySource: it yields one part at a time, gives small form fields as strings
// and streams a large part (a firmware file) chunk by chunk through a bounded
// buffer, so a body of any size costs a fixed amount of memory.
//
// Accepted: a preamble before the first boundary, transport padding (spaces and
// tabs) after a boundary, an epilogue after the closing one, a boundary line
// split across any number of reads. A "\r\n--boundary" followed by anything but
// "--", padding or CRLF is content, as RFC 2046 says. Every malformed input
// throws MultipartError with a message naming what is wrong (-> 400); a failing
// BodySource's BodyError passes through unchanged.

#include <cstddef>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "otad/api/http.hpp"

namespace otad::api {

class MultipartError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// True for "multipart/form-data" (any case, with or without parameters).
bool is_multipart_form_data(std::string_view content_type) noexcept;
// The boundary parameter of a multipart/form-data Content-Type (quoted or not).
// Throws MultipartError when it is missing or not 1..70 valid characters.
std::string multipart_boundary(std::string_view content_type);

struct MultipartLimits {
    std::size_t max_header_bytes = 8 * 1024;  // all header lines of one part
    std::size_t max_parts = 64;
    std::size_t buffer_bytes = 256 * 1024;  // read buffer (at least 1 KiB)
};

struct PartHeaders {
    std::string name;                     // Content-Disposition name
    std::optional<std::string> filename;  // Content-Disposition filename, when given
    std::string content_type;             // "" when absent
};

// Not thread-safe; reads `source` from the calling thread only.
class MultipartReader {
public:
    MultipartReader(BodySource& source, std::string boundary, MultipartLimits limits = {});

    // Moves to the next part (skipping what is left of the current one) and
    // returns its headers; nullopt after the closing boundary.
    std::optional<PartHeaders> next_part();
    // Up to out.size() bytes of the current part; 0 at its end.
    std::size_t read(std::span<char> out);
    // The rest of the current part as text; MultipartError if longer than max_bytes.
    std::string read_text(std::size_t max_bytes);
    // After next_part() returned nullopt: reads the epilogue to the end of the body.
    void finish();

private:
    enum class State { preamble, headers, body, done };
    enum class Verdict { delimiter, content, need_more };
    struct Scan {
        std::size_t content = 0;  // bytes at the front that are surely content
        bool delimiter = false;   // a delimiter starts right after them
    };

    std::string_view buffered() const noexcept;
    bool fill();  // compacts and reads more; false at the end of the body
    Scan scan();
    Verdict classify(std::string_view after_delimiter) const noexcept;
    void consume_delimiter();
    PartHeaders read_headers();

    BodySource& source_;
    std::string delimiter_;  // "\r\n--" + boundary
    MultipartLimits limits_;
    std::vector<char> buffer_;
    std::size_t begin_ = 0;
    std::size_t end_ = 0;
    bool source_ended_ = false;
    State state_ = State::preamble;
    std::size_t parts_ = 0;
};

}  // namespace otad::api
