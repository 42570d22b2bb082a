// Fuzzes the streaming multipart/form-data reader (api/multipart) the way the
// upload handler drives it: Content-Type check and boundary, then every part,
// the "file" part streamed through a small buffer and the others read as text,
// then the epilogue.
//
// Input (text, so seeds read like requests): byte 0 picks how the body arrives
// (the size of each read the BodySource returns) and the reader's limits
// (buffer, part-header and part-count limits); then
// the Content-Type header value up to the first '\n'; then the body, as sent.
// A finding is a crash, a sanitizer report, an exception other than
// MultipartError, or a reader that hands out more bytes than the body holds.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

#include "otad/api/multipart.hpp"

namespace {

using namespace otad::api;

[[noreturn]] void contract_broken(const char* what) {
    __builtin_printf("multipart_fuzz: contract broken: %s\n", what);
    std::abort();
}

// A body arriving in reads of a fixed size (1 byte to everything at once).
class ChunkedBody final : public BodySource {
public:
    ChunkedBody(std::string_view bytes, std::size_t chunk) : bytes_(bytes), chunk_(chunk) {}
    std::size_t read(std::span<char> out) override {
        const std::size_t n = std::min({out.size(), chunk_, bytes_.size() - at_});
        std::memcpy(out.data(), bytes_.data() + at_, n);
        at_ += n;
        return n;
    }

private:
    std::string_view bytes_;
    std::size_t chunk_;
    std::size_t at_ = 0;
};

constexpr std::size_t kChunks[] = {1 << 20, 1, 3, 7, 64, 1000, 4096, 65536};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t mode = data[0];
    std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
    const auto eol = text.find('\n');
    if (eol == std::string_view::npos) return 0;
    const std::string_view content_type = text.substr(0, eol);
    const std::string_view body = text.substr(eol + 1);

    // A 4 KiB read buffer unless asked: boundaries then straddle refills often, and
    // each input costs less than the handler's 256 KiB (bit 0x80) to allocate.
    MultipartLimits limits;
    limits.buffer_bytes = (mode & 0x80) ? MultipartLimits{}.buffer_bytes : (mode & 0x08) ? 1024 : 4096;
    if (mode & 0x10) limits.max_header_bytes = 64;
    if (mode & 0x20) limits.max_parts = 2;
    ChunkedBody source(body, kChunks[mode % std::size(kChunks)]);

    (void)is_multipart_form_data(content_type);
    try {
        const std::string boundary = multipart_boundary(content_type);
        if (boundary.empty() || boundary.size() > 70) contract_broken("a boundary of 0 or more than 70 characters");
        MultipartReader reader(source, boundary, limits);
        std::size_t handed_out = 0;
        char scratch[509];  // an odd size, so reads end anywhere
        while (auto part = reader.next_part()) {
            if (part->name == "file") {
                while (std::size_t n = reader.read(scratch)) {
                    if (n > sizeof scratch) contract_broken("read() past the buffer it was given");
                    handed_out += n;
                }
            } else {
                const std::string value = reader.read_text(1024);
                if (value.size() > 1024) contract_broken("read_text() past its limit");
                handed_out += value.size();
            }
            if (handed_out > body.size()) contract_broken("more part bytes than body bytes");
        }
        reader.finish();
    } catch (const MultipartError&) {
        // Malformed input: the handler answers 400 malformed-multipart.
    }
    return 0;
}
