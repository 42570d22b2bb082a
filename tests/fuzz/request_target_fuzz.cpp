// Fuzzes the request-target parser (net/request_target): origin and absolute
// form, percent-decoding of the path and of query names and values.
//
// Input: the request-target as received (any bytes; net hands over what the
// request line held). A finding is a crash, a sanitizer report, an exception, or
// an accepted target whose decoded path breaks the header's promise: it starts
// with '/', and no segment is "." or ".." or holds a NUL.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "otad/net/request_target.hpp"

namespace {

[[noreturn]] void contract_broken(const char* what) {
    __builtin_printf("request_target_fuzz: contract broken: %s\n", what);
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view target(reinterpret_cast<const char*>(data), size);
    const otad::net::RequestTarget parsed = otad::net::parse_request_target(target);
    if (!parsed.ok) {
        if (parsed.error.empty()) contract_broken("a refusal without a reason");
    } else {
        if (parsed.path.empty() || parsed.path.front() != '/') contract_broken("a path not starting with '/'");
        if (parsed.path.find('\0') != std::string::npos) contract_broken("a NUL in the decoded path");
        std::string_view rest = std::string_view(parsed.path).substr(1);
        while (true) {
            const auto slash = rest.find('/');
            const std::string_view segment = rest.substr(0, slash);
            if (segment == "." || segment == "..") contract_broken("a dot segment in the decoded path");
            if (slash == std::string_view::npos) break;
            rest = rest.substr(slash + 1);
        }
    }
    for (bool plus_as_space : {false, true})
        if (otad::net::percent_decode(target, plus_as_space).size() > target.size())
            contract_broken("percent_decode made the text longer");
    return 0;
}
