#include "otad/api/multipart.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace otad::api {
namespace {

// A request body handed out in reads of the given sizes (cycled), so tests can
// split boundaries, CRLFs and headers across reads at every position.
class ChunkedBody final : public BodySource {
public:
    ChunkedBody(std::string bytes, std::vector<std::size_t> sizes)
        : bytes_(std::move(bytes)), sizes_(std::move(sizes)) {}
    std::size_t read(std::span<char> out) override {
        std::size_t want = sizes_[reads_++ % sizes_.size()];
        std::size_t n = std::min({out.size(), want, bytes_.size() - offset_});
        std::copy_n(bytes_.data() + offset_, n, out.data());
        offset_ += n;
        return n;
    }
    std::size_t consumed() const { return offset_; }

private:
    std::string bytes_;
    std::vector<std::size_t> sizes_;
    std::size_t reads_ = 0;
    std::size_t offset_ = 0;
};

// Fails like net's body source past a route's limit.
class FailingBody final : public BodySource {
public:
    explicit FailingBody(std::string head) : head_(std::move(head)) {}
    std::size_t read(std::span<char> out) override {
        if (offset_ < head_.size()) {
            std::size_t n = std::min(out.size(), head_.size() - offset_);
            std::copy_n(head_.data() + offset_, n, out.data());
            offset_ += n;
            return n;
        }
        throw BodyError(BodyError::Kind::too_large, "request body exceeds the limit of 100 bytes");
    }

private:
    std::string head_;
    std::size_t offset_ = 0;
};

struct Part {
    std::string name;
    std::optional<std::string> filename;
    std::string content_type;
    std::string body;
};

// Reads every part whole, the file part in small reads.
std::vector<Part> read_all(BodySource& body, const std::string& boundary, MultipartLimits limits = {}) {
    MultipartReader reader(body, boundary, limits);
    std::vector<Part> parts;
    while (auto headers = reader.next_part()) {
        Part p{headers->name, headers->filename, headers->content_type, {}};
        char chunk[7];
        while (std::size_t n = reader.read(chunk)) p.body.append(chunk, n);
        EXPECT_EQ(reader.read(chunk), 0u);  // stays at the end of the part
        parts.push_back(std::move(p));
    }
    reader.finish();
    return parts;
}

const std::string kBoundary = "------------------------d74496d66958873e";

std::string field(const std::string& name, const std::string& value) {
    return "--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n";
}
std::string file_part(const std::string& content, const std::string& filename = "fw.bin") {
    return "--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + filename +
           "\"\r\nContent-Type: application/octet-stream\r\n\r\n" + content + "\r\n";
}
std::string closing() { return "--" + kBoundary + "--\r\n"; }

std::string binary_content() {
    std::string s;
    for (int i = 0; i < 3; ++i)
        for (int c = 0; c < 256; ++c) s.push_back(static_cast<char>(c));
    // Things that look like the start of a delimiter but are not one.
    s += "\r\n--" + kBoundary.substr(0, 20) + "\r\n";
    s += "\r\n--" + kBoundary + "X\r\n";
    s += "\r\n-\r\n--\r\n\r\n";
    s += "\r\n--" + kBoundary + " x\r\n";  // padding followed by something other than CRLF
    s += "\r\n\r\n";                       // ends in CRLFs: they belong to the content
    return s;
}

TEST(MultipartBoundary, ParsedFromContentType) {
    EXPECT_EQ(multipart_boundary("multipart/form-data; boundary=abc"), "abc");
    EXPECT_EQ(multipart_boundary("Multipart/Form-Data;BOUNDARY=\"a b:c\""), "a b:c");
    EXPECT_EQ(multipart_boundary("multipart/form-data; charset=utf-8; boundary=----X_y.z"), "----X_y.z");
    EXPECT_TRUE(is_multipart_form_data("multipart/form-data"));
    EXPECT_TRUE(is_multipart_form_data(" MULTIPART/FORM-DATA ; boundary=x"));
    EXPECT_FALSE(is_multipart_form_data("application/octet-stream"));
    EXPECT_FALSE(is_multipart_form_data("multipart/mixed; boundary=x"));
    EXPECT_THROW(multipart_boundary("multipart/form-data"), MultipartError);
    EXPECT_THROW(multipart_boundary("multipart/form-data; boundary="), MultipartError);
    EXPECT_THROW(multipart_boundary("multipart/form-data; boundary=\"unterminated"), MultipartError);
    EXPECT_THROW(multipart_boundary("multipart/form-data; boundary=" + std::string(71, 'a')), MultipartError);
    EXPECT_NO_THROW(multipart_boundary("multipart/form-data; boundary=" + std::string(70, 'a')));
    EXPECT_THROW(multipart_boundary("multipart/form-data; boundary=\"ends in space \""), MultipartError);
    EXPECT_THROW(multipart_boundary("multipart/form-data; boundary=a{b}"), MultipartError);
    EXPECT_THROW(multipart_boundary("application/json"), MultipartError);
}

TEST(MultipartReader, FieldsAndFileSurviveEveryReadSize) {
    const std::string content = binary_content();
    const std::string body = field("chip", "esp32") + file_part(content) + field("slot", "") + closing();
    for (std::size_t size : {1, 2, 3, 5, 7, 13, 41, 64, 100, 1000, 1 << 20}) {
        SCOPED_TRACE(size);
        ChunkedBody source(body, {size});
        auto parts = read_all(source, kBoundary);
        ASSERT_EQ(parts.size(), 3u);
        EXPECT_EQ(parts[0].name, "chip");
        EXPECT_EQ(parts[0].body, "esp32");
        EXPECT_FALSE(parts[0].filename);
        EXPECT_EQ(parts[1].name, "file");
        EXPECT_EQ(parts[1].filename, "fw.bin");
        EXPECT_EQ(parts[1].content_type, "application/octet-stream");
        EXPECT_EQ(parts[1].body, content);
        EXPECT_EQ(parts[2].name, "slot");
        EXPECT_EQ(parts[2].body, "");
        EXPECT_EQ(source.consumed(), body.size());
    }
}

TEST(MultipartReader, IrregularReadsSplitTheDelimiterAnywhere) {
    const std::string content = binary_content();
    const std::string body = file_part(content) + closing();
    // Every split point of the delimiter after the content: first read ends there.
    const std::size_t delimiter_at = body.find("\r\n--" + kBoundary + "--");
    for (std::size_t cut = delimiter_at - 3; cut < delimiter_at + kBoundary.size() + 8; ++cut) {
        ChunkedBody source(body, {cut, 1, 3, 1000});
        auto parts = read_all(source, kBoundary);
        ASSERT_EQ(parts.size(), 1u) << cut;
        EXPECT_EQ(parts[0].body, content) << cut;
    }
}

TEST(MultipartReader, LargeRandomFileThroughASmallBuffer) {
    std::mt19937 rng(42);
    std::string content(1 << 20, '\0');
    for (auto& c : content) c = static_cast<char>(rng());
    const std::string body = field("layout", "512+512") + file_part(content) + closing();
    ChunkedBody source(body, {4096, 1, 65536, 333});
    MultipartLimits limits;
    limits.buffer_bytes = 1024;
    auto parts = read_all(source, kBoundary, limits);
    ASSERT_EQ(parts.size(), 2u);
    EXPECT_EQ(parts[0].body, "512+512");
    EXPECT_EQ(parts[1].body, content);
}

TEST(MultipartReader, PreamblePaddingAndEpilogueAreIgnored) {
    const std::string body = "This is a preamble.\r\n--" + kBoundary + " \t\r\n" +
                             "content-disposition: form-data; name=\"a\"\r\n\r\nA\r\n--" + kBoundary +
                             "--\r\nepilogue bytes, ignored\r\n";
    ChunkedBody source(body, {3});
    auto parts = read_all(source, kBoundary);
    ASSERT_EQ(parts.size(), 1u);
    EXPECT_EQ(parts[0].name, "a");
    EXPECT_EQ(parts[0].body, "A");
    EXPECT_EQ(source.consumed(), body.size());  // finish() drained the epilogue
}

TEST(MultipartReader, ClosingBoundaryWithoutTrailingCrlfAndEmptyForm) {
    ChunkedBody with_part(field("a", "1") + "--" + kBoundary + "--", {5});
    auto parts = read_all(with_part, kBoundary);
    ASSERT_EQ(parts.size(), 1u);
    EXPECT_EQ(parts[0].body, "1");

    ChunkedBody empty("--" + kBoundary + "--\r\n", {5});
    EXPECT_TRUE(read_all(empty, kBoundary).empty());
}

TEST(MultipartReader, UnreadPartsAreSkipped) {
    const std::string body = file_part(std::string(100000, 'z')) + field("chip", "esp8266") + closing();
    ChunkedBody source(body, {1000});
    MultipartReader reader(source, kBoundary);
    auto file = reader.next_part();
    ASSERT_TRUE(file);
    EXPECT_EQ(file->name, "file");
    auto chip = reader.next_part();
    ASSERT_TRUE(chip);
    EXPECT_EQ(chip->name, "chip");
    EXPECT_EQ(reader.read_text(100), "esp8266");
    EXPECT_FALSE(reader.next_part());
    EXPECT_FALSE(reader.next_part());
}

TEST(MultipartReader, QuotedParametersWithEscapesAndSemicolons) {
    const std::string body =
        "--" + kBoundary +
        "\r\nContent-Disposition: form-data; filename=\"a \\\"q\\\"; b.bin\"; name=file\r\n\r\nX\r\n" + closing();
    ChunkedBody source(body, {11});
    auto parts = read_all(source, kBoundary);
    ASSERT_EQ(parts.size(), 1u);
    EXPECT_EQ(parts[0].name, "file");
    EXPECT_EQ(parts[0].filename, "a \"q\"; b.bin");
}

TEST(MultipartReader, MalformedBodiesThrowNamingTheProblem) {
    auto error_of = [](const std::string& body, MultipartLimits limits = {}) -> std::string {
        ChunkedBody source(body, {17});
        try {
            read_all(source, kBoundary, limits);
        } catch (const MultipartError& e) {
            return e.what();
        }
        return "no error";
    };
    // No closing boundary: the body just stops.
    EXPECT_NE(error_of(file_part("abc")).find("ends before its closing boundary"), std::string::npos);
    EXPECT_NE(error_of(field("a", "1") + "--" + kBoundary).find("ends before"), std::string::npos);
    // No boundary at all.
    EXPECT_NE(error_of("just some bytes").find("ends before"), std::string::npos);
    EXPECT_NE(error_of("").find("ends before"), std::string::npos);
    // Headers.
    EXPECT_NE(error_of("--" + kBoundary + "\r\nContent-Type: text/plain\r\n\r\nx\r\n" + closing())
                  .find("without a Content-Disposition"),
              std::string::npos);
    EXPECT_NE(error_of("--" + kBoundary + "\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n" + closing())
                  .find("expected form-data"),
              std::string::npos);
    EXPECT_NE(
        error_of("--" + kBoundary + "\r\nContent-Disposition: form-data\r\n\r\nx\r\n" + closing()).find("has no name"),
        std::string::npos);
    EXPECT_NE(error_of("--" + kBoundary + "\r\nno colon here\r\n\r\nx\r\n" + closing()).find("malformed"),
              std::string::npos);
    EXPECT_NE(error_of("--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"a\"\r\n")
                  .find("inside a part's headers"),
              std::string::npos);
    MultipartLimits small;
    small.max_header_bytes = 100;
    EXPECT_NE(error_of("--" + kBoundary + "\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Long: " +
                           std::string(200, 'h') + "\r\n\r\nx\r\n" + closing(),
                       small)
                  .find("exceed 100 bytes"),
              std::string::npos);
    // Too many parts.
    std::string many;
    for (int i = 0; i < 5; ++i) many += field("f" + std::to_string(i), "v");
    MultipartLimits few;
    few.max_parts = 4;
    EXPECT_NE(error_of(many + closing(), few).find("more than 4 parts"), std::string::npos);
}

TEST(MultipartReader, ReadTextEnforcesItsLimit) {
    ChunkedBody source(field("chip", std::string(2000, 'c')) + closing(), {100});
    MultipartReader reader(source, kBoundary);
    ASSERT_TRUE(reader.next_part());
    EXPECT_THROW(reader.read_text(1024), MultipartError);
}

TEST(MultipartReader, FinishBeforeTheEndIsAnError) {
    ChunkedBody source(field("a", "1") + closing(), {100});
    MultipartReader reader(source, kBoundary);
    ASSERT_TRUE(reader.next_part());
    EXPECT_THROW(reader.finish(), MultipartError);
}

TEST(MultipartReader, BodyLimitErrorsPassThrough) {
    FailingBody source(field("a", std::string(50, 'a')).substr(0, 120));
    MultipartReader reader(source, kBoundary);
    ASSERT_TRUE(reader.next_part());
    char chunk[64];
    try {
        while (reader.read(chunk) > 0) {}
        FAIL() << "no error";
    } catch (const BodyError& e) {
        EXPECT_EQ(e.kind(), BodyError::Kind::too_large);
    }
}

}  // namespace
}  // namespace otad::api
