// Fuzzes the configuration loader (config/config): the JSON config file (with
// comments), OTAD_<KEY> environment variables and command-line overrides, and the
// checks that follow (host:port, tls pair, public_url).
//
// Input (text, so seeds read like a config): the config file's text, then
// optionally a line "%%" and environment lines NAME=VALUE, then optionally another
// "%%" line and override lines key=value (as --set would pass them). An empty
// file part means no config file. The file is handed over through a memfd, so
// nothing touches the disk.
// A finding is a crash, a sanitizer report, an exception other than ConfigError
// (load() promises that type, with a message naming the key), or a Config that
// load() returned although it breaks its own checks.

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "otad/config/config.hpp"

namespace {

using namespace otad::config;

[[noreturn]] void contract_broken(const char* what) {
    __builtin_printf("config_fuzz: contract broken: %s\n", what);
    std::abort();
}

// One memfd for the whole run, rewritten for each input.
const std::string& config_file_with(std::string_view text) {
    static const int fd = [] {
        int f = ::memfd_create("otad-config-fuzz", 0);
        if (f < 0) contract_broken("memfd_create failed");
        return f;
    }();
    static const std::string path = "/proc/self/fd/" + std::to_string(fd);
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()))
        contract_broken("cannot write the memfd");
    return path;
}

// Splits off the text before the next "\n%%\n" line (or the rest).
std::string_view next_section(std::string_view& text) {
    constexpr std::string_view kSeparator = "\n%%\n";
    const auto at = text.find(kSeparator);
    std::string_view section = text.substr(0, at);
    text = at == std::string_view::npos ? std::string_view{} : text.substr(at + kSeparator.size());
    return section;
}

std::map<std::string, std::string> assignments(std::string_view lines) {
    std::map<std::string, std::string> out;
    while (!lines.empty()) {
        const auto eol = lines.find('\n');
        const std::string_view line = lines.substr(0, eol);
        lines = eol == std::string_view::npos ? std::string_view{} : lines.substr(eol + 1);
        const auto eq = line.find('=');
        if (eq != std::string_view::npos) out[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view text(reinterpret_cast<const char*>(data), size);
    const std::string_view file_text = next_section(text);
    const auto environment = assignments(next_section(text));
    const auto overrides = assignments(text);

    std::optional<std::filesystem::path> file;
    if (!file_text.empty()) file = config_file_with(file_text);
    try {
        const Config c = load(file, environment, overrides);
        (void)parse_host_port("listen", c.listen);
        if (!c.http_listen.empty()) (void)parse_host_port("http_listen", c.http_listen);
        if (c.data_dir.empty()) contract_broken("an empty data_dir accepted");
        if (c.tls_cert.empty() != c.tls_key.empty()) contract_broken("tls_cert without tls_key accepted");
        if (!c.public_url.empty() && c.public_url.back() == '/') contract_broken("public_url kept a trailing '/'");
        (void)c.database_path();
    } catch (const ConfigError& e) {
        if (std::string_view(e.what()).empty()) contract_broken("a ConfigError without a message");
    }
    return 0;
}
