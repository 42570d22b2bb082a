#pragma once
// Beast-free HTTP message types shared by net (which fills and sends them) and
// api (whose handlers read requests and build responses). Keeping Beast out of
// this header keeps it out of every handler's translation unit.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "otad/platform/mapped_file.hpp"
#include "otad/util/strings.hpp"

namespace otad::api {

enum class Method { get, head, post, put, patch, del, options, other };
std::string_view to_string(Method m) noexcept;
Method parse_method(std::string_view text) noexcept;

// Header fields in arrival order; names compare case-insensitively.
class Headers {
public:
    using Field = std::pair<std::string, std::string>;
    void add(std::string name, std::string value);
    // Replaces every field of that name.
    void set(std::string name, std::string value);
    void erase(std::string_view name);
    std::optional<std::string_view> get(std::string_view name) const;
    bool has(std::string_view name) const { return get(name).has_value(); }
    const std::vector<Field>& fields() const noexcept { return fields_; }

private:
    std::vector<Field> fields_;
};

using util::iequals;  // ASCII, as field names are

// Thrown by BodySource::read when the body cannot be read to its end.
class BodyError : public std::runtime_error {
public:
    enum class Kind { too_large, timeout, closed, malformed };
    BodyError(Kind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
    Kind kind() const noexcept { return kind_; }

private:
    Kind kind_;
};

// Pulls a request body chunk by chunk, for routes that stream their body
// (uploads). Implemented by net; blocking; call it only from the handler's thread.
class BodySource {
public:
    virtual ~BodySource() = default;
    // Reads up to out.size() bytes; returns 0 once the body has ended.
    // Throws BodyError on a timeout, a closed connection, or a body over the route's limit.
    virtual std::size_t read(std::span<char> out) = 0;
};

struct Request {
    Method method = Method::get;
    std::string method_name;                                 // as sent, for logs and 405s
    std::string target;                                      // raw request-target
    std::string path;                                        // percent-decoded path, no query
    std::vector<std::pair<std::string, std::string>> query;  // decoded, in order
    Headers headers;
    std::string remote_address;  // "ip:port"
    bool secure = false;         // arrived over TLS
    unsigned http_version = 11;  // 10 or 11
    std::optional<std::uint64_t> content_length;
    std::string body;                                        // whole body, for routes that buffer it
    BodySource* body_source = nullptr;                       // for routes that stream it
    std::map<std::string, std::string, std::less<>> params;  // {name} captures of the route

    // First value of a query parameter.
    std::optional<std::string_view> query_param(std::string_view name) const;
    std::string_view param(std::string_view name) const;  // route capture, "" if absent
};

// A byte range of a mapped, immutable file: sent without copying it into a string.
struct FileSlice {
    std::shared_ptr<const platform::MappedFile> file;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
};
using BodyPart = std::variant<std::string, FileSlice>;

struct Response {
    unsigned status = 200;
    Headers headers;
    // Sent in order. net sets Content-Length to the sum of the parts (for HEAD
    // too, where it sends no body), so handlers never set it themselves.
    std::vector<BodyPart> body;
    // Who asked, for the access log: a token name or device id, never a secret.
    std::string principal;

    std::uint64_t body_size() const noexcept;
    void set_body(std::string text, std::string_view content_type);
};

}  // namespace otad::api
