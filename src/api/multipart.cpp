#include "otad/api/multipart.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "otad/util/strings.hpp"

namespace otad::api {
namespace {

constexpr std::size_t kMaxBoundary = 70;  // RFC 2046 section 5.1.1
constexpr std::size_t kMaxPadding = 64;   // spaces/tabs accepted after a boundary
constexpr std::size_t kMinBuffer = 1024;

// A header value of the form `type; name=value; name="quoted value"`.
struct HeaderValue {
    std::string type;
    std::vector<std::pair<std::string, std::string>> params;  // names lower-cased

    std::optional<std::string> param(std::string_view name) const {
        for (const auto& [k, v] : params)
            if (k == name) return v;
        return std::nullopt;
    }
};

HeaderValue parse_header_value(std::string_view text, std::string_view header) {
    HeaderValue out;
    std::size_t i = text.find(';');
    out.type = util::to_lower(util::trim(text.substr(0, i)));
    while (i != std::string_view::npos && i < text.size()) {
        ++i;  // past ';'
        while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
        if (i >= text.size()) break;
        std::size_t name_end = text.find_first_of("=;", i);
        std::string name =
            util::to_lower(util::trim(text.substr(i, name_end == std::string_view::npos ? name_end : name_end - i)));
        if (name_end == std::string_view::npos || text[name_end] == ';') {
            // A parameter without a value: keep it (empty) and go on.
            if (!name.empty()) out.params.emplace_back(std::move(name), std::string());
            i = name_end;
            continue;
        }
        i = name_end + 1;
        while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
        std::string value;
        if (i < text.size() && text[i] == '"') {
            ++i;
            bool closed = false;
            while (i < text.size()) {
                char c = text[i];
                if (c == '\\' && i + 1 < text.size() && (text[i + 1] == '"' || text[i + 1] == '\\')) {
                    value.push_back(text[i + 1]);
                    i += 2;
                    continue;
                }
                if (c == '"') {
                    closed = true;
                    ++i;
                    break;
                }
                value.push_back(c);
                ++i;
            }
            if (!closed)
                throw MultipartError(std::string(header) + ": unterminated quoted value of parameter '" + name + "'");
            i = text.find(';', i);
        } else {
            std::size_t value_end = text.find(';', i);
            value = std::string(
                util::trim(text.substr(i, value_end == std::string_view::npos ? value_end : value_end - i)));
            i = value_end;
        }
        out.params.emplace_back(std::move(name), std::move(value));
    }
    return out;
}

bool is_boundary_char(char c) noexcept {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
    return std::string_view("'()+_,-./:=? ").find(c) != std::string_view::npos;
}

}  // namespace

bool is_multipart_form_data(std::string_view content_type) noexcept {
    std::string_view type = util::trim(content_type.substr(0, content_type.find(';')));
    return iequals(type, "multipart/form-data");
}

std::string multipart_boundary(std::string_view content_type) {
    if (!is_multipart_form_data(content_type)) throw MultipartError("Content-Type is not multipart/form-data");
    auto boundary = parse_header_value(content_type, "Content-Type").param("boundary");
    if (!boundary || boundary->empty())
        throw MultipartError("Content-Type multipart/form-data has no boundary parameter");
    if (boundary->size() > kMaxBoundary || boundary->back() == ' ' ||
        !std::all_of(boundary->begin(), boundary->end(), is_boundary_char))
        throw MultipartError("multipart boundary must be 1-70 characters of letters, digits and '()+_,-./:=? " +
                             std::string("(not ending in a space)"));
    return *boundary;
}

MultipartReader::MultipartReader(BodySource& source, std::string boundary, MultipartLimits limits)
    : source_(source), delimiter_("\r\n--" + boundary), limits_(limits) {
    // Room for a whole header block and for a delimiter with its padding, so a
    // full buffer always holds something the scanner can decide on.
    limits_.buffer_bytes = std::max(
        {limits_.buffer_bytes, kMinBuffer, limits_.max_header_bytes + 4, 2 * (delimiter_.size() + kMaxPadding + 2)});
    buffer_.resize(limits_.buffer_bytes);
    // The first boundary may open the body without a CRLF before it: pretend
    // there was one, so every delimiter looks the same to the scanner.
    buffer_[0] = '\r';
    buffer_[1] = '\n';
    end_ = 2;
}

std::string_view MultipartReader::buffered() const noexcept {
    return std::string_view(buffer_.data() + begin_, end_ - begin_);
}

bool MultipartReader::fill() {
    if (source_ended_) return false;
    if (begin_ > 0) {
        std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
        end_ -= begin_;
        begin_ = 0;
    }
    if (end_ == buffer_.size()) return true;  // full: the caller consumes first
    std::size_t n = source_.read(std::span<char>(buffer_.data() + end_, buffer_.size() - end_));
    if (n == 0) {
        source_ended_ = true;
        return false;
    }
    end_ += n;
    return true;
}

MultipartReader::Verdict MultipartReader::classify(std::string_view rest) const noexcept {
    // The close delimiter "--boundary--" ends the body; what follows is epilogue.
    if (rest.size() >= 2 && rest[0] == '-' && rest[1] == '-') return Verdict::delimiter;
    if (rest.size() == 1 && rest[0] == '-') return source_ended_ ? Verdict::content : Verdict::need_more;
    std::size_t i = 0;
    while (i < rest.size() && i <= kMaxPadding && (rest[i] == ' ' || rest[i] == '\t')) ++i;
    if (i > kMaxPadding) return Verdict::content;
    if (rest.size() - i < 2) {
        if (rest.size() - i == 1 && rest[i] != '\r') return Verdict::content;
        return source_ended_ ? Verdict::content : Verdict::need_more;
    }
    return rest[i] == '\r' && rest[i + 1] == '\n' ? Verdict::delimiter : Verdict::content;
}

MultipartReader::Scan MultipartReader::scan() {
    for (;;) {
        std::string_view data = buffered();
        std::size_t from = 0;
        for (;;) {
            std::size_t k = data.find(delimiter_, from);
            if (k == std::string_view::npos) {
                // The last delimiter_.size() - 1 bytes may be the start of a delimiter.
                std::size_t keep = std::min(data.size(), delimiter_.size() - 1);
                if (source_ended_) keep = 0;
                if (data.size() - keep > 0) return {data.size() - keep, false};
                break;
            }
            Verdict verdict = classify(data.substr(k + delimiter_.size()));
            if (verdict == Verdict::delimiter) return {k, true};
            if (verdict == Verdict::content) {
                from = k + 1;
                continue;
            }
            if (k > 0) return {k, false};  // hand out what surely is content first
            break;
        }
        if (source_ended_) throw MultipartError("the multipart body ends before its closing boundary");
        fill();
    }
}

void MultipartReader::consume_delimiter() {
    begin_ += delimiter_.size();
    std::string_view rest = buffered();
    if (rest.size() >= 2 && rest[0] == '-' && rest[1] == '-') {
        begin_ += 2;
        state_ = State::done;
        return;
    }
    while (begin_ < end_ && (buffer_[begin_] == ' ' || buffer_[begin_] == '\t')) ++begin_;
    begin_ += 2;  // CRLF, checked by classify()
    state_ = State::headers;
}

PartHeaders MultipartReader::read_headers() {
    PartHeaders part;
    bool have_disposition = false;
    std::size_t header_bytes = 0;
    for (;;) {
        std::string_view data = buffered();
        std::size_t eol = data.find("\r\n");
        if (eol == std::string_view::npos) {
            if (header_bytes + data.size() > limits_.max_header_bytes)
                throw MultipartError("a multipart part's headers exceed " + std::to_string(limits_.max_header_bytes) +
                                     " bytes");
            if (!fill()) throw MultipartError("the multipart body ends inside a part's headers");
            continue;
        }
        header_bytes += eol + 2;
        if (header_bytes > limits_.max_header_bytes)
            throw MultipartError("a multipart part's headers exceed " + std::to_string(limits_.max_header_bytes) +
                                 " bytes");
        std::string line(data.substr(0, eol));
        begin_ += eol + 2;
        if (line.empty()) break;  // end of the headers
        std::size_t colon = line.find(':');
        if (colon == std::string::npos || colon == 0)
            throw MultipartError("malformed multipart part header line (no 'name:')");
        std::string_view name = util::trim(std::string_view(line).substr(0, colon));
        std::string_view value = util::trim(std::string_view(line).substr(colon + 1));
        if (iequals(name, "Content-Disposition")) {
            HeaderValue disposition = parse_header_value(value, "Content-Disposition");
            if (disposition.type != "form-data")
                throw MultipartError("multipart part has Content-Disposition '" + disposition.type +
                                     "', expected form-data");
            auto field = disposition.param("name");
            if (!field) throw MultipartError("multipart part's Content-Disposition has no name");
            part.name = *field;
            part.filename = disposition.param("filename");
            have_disposition = true;
        } else if (iequals(name, "Content-Type")) {
            part.content_type = std::string(value);
        }
    }
    if (!have_disposition) throw MultipartError("multipart part without a Content-Disposition header");
    state_ = State::body;
    return part;
}

std::optional<PartHeaders> MultipartReader::next_part() {
    if (state_ == State::body) {
        std::vector<char> scratch(64 * 1024);
        while (read(scratch) > 0) {}
    }
    if (state_ == State::preamble) {
        for (;;) {
            Scan s = scan();
            begin_ += s.content;  // the preamble is ignored
            if (s.delimiter) break;
        }
        consume_delimiter();
    }
    if (state_ == State::done) return std::nullopt;
    if (++parts_ > limits_.max_parts)
        throw MultipartError("the multipart body has more than " + std::to_string(limits_.max_parts) + " parts");
    return read_headers();
}

std::size_t MultipartReader::read(std::span<char> out) {
    if (state_ != State::body || out.empty()) return 0;
    Scan s = scan();
    if (s.content == 0 && s.delimiter) {
        consume_delimiter();
        return 0;
    }
    std::size_t n = std::min(out.size(), s.content);
    std::memcpy(out.data(), buffer_.data() + begin_, n);
    begin_ += n;
    return n;
}

std::string MultipartReader::read_text(std::size_t max_bytes) {
    std::string text;
    char chunk[1024];
    for (;;) {
        std::size_t n = read(chunk);
        if (n == 0) return text;
        if (text.size() + n > max_bytes)
            throw MultipartError("a multipart form field is longer than " + std::to_string(max_bytes) + " bytes");
        text.append(chunk, n);
    }
}

void MultipartReader::finish() {
    if (state_ != State::done) throw MultipartError("the multipart body is not complete");
    begin_ = end_ = 0;
    while (fill()) begin_ = end_ = 0;
}

}  // namespace otad::api
