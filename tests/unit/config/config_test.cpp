#include "otad/config/config.hpp"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace otad::config {
namespace {

namespace fs = std::filesystem;

fs::path write_temp(const std::string& name, const std::string& text) {
    auto p = fs::temp_directory_path() / ("otad-config-test-" + std::to_string(::getpid()) + "-" + name);
    std::ofstream(p) << text;
    return p;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const ConfigError& e) {
        return e.what();
    }
    return "";
}

TEST(Config, ShippedFileDocumentsEveryKeyWithItsDefault) {
    std::ifstream in(fs::path(OTAD_SOURCE_DIR) / "config" / "otad.json");
    std::stringstream text;
    text << in.rdbuf();
    auto shipped = nlohmann::json::parse(text.str(), nullptr, true, true);
    EXPECT_EQ(shipped, nlohmann::json::parse(defaults_json()));
    EXPECT_EQ(shipped.size(), keys().size());
}

TEST(Config, LayersApplyInOrderDefaultsFileEnvFlags) {
    auto file = write_temp("layers.json", R"({ // comment allowed
        "listen": "127.0.0.1:9000", "worker_threads": 2, "log_level": "debug" })");
    auto c = load(file,
                  {{"OTAD_WORKER_THREADS", "3"},
                   {"OTAD_TLS_HOSTNAMES", "a.example, b.example"},
                   {"PATH", "/bin"},
                   {"OTAD_BOOTSTRAP_TOKEN", "x"},
                   {"OTAD_TOKEN", "t"},
                   {"OTAD_SERVER", "https://x"}},
                  {{"log_level", "warn"}});
    EXPECT_EQ(c.listen, "127.0.0.1:9000");
    EXPECT_EQ(c.worker_threads, 3u);
    EXPECT_EQ(c.log_level, "warn");
    EXPECT_EQ(c.tls_hostnames, (std::vector<std::string>{"a.example", "b.example"}));
    EXPECT_EQ(c.max_artifact_bytes, 64u * 1024 * 1024);
    EXPECT_EQ(c.database_path(), fs::path("otad-data") / "otad.db");
    fs::remove(file);
}

TEST(Config, UnknownKeysAndBadValuesNameTheKey) {
    auto file = write_temp("unknown.json", R"({"listne": "x"})");
    EXPECT_NE(error_of([&] { load(file, {}, {}); }).find("unknown config key 'listne'"), std::string::npos);
    fs::remove(file);
    EXPECT_NE(error_of([] {
                  load(std::nullopt, {{"OTAD_WORKER_THREADS", "many"}}, {});
              }).find("'worker_threads' (environment variable OTAD_WORKER_THREADS): expected an integer"),
              std::string::npos);
    EXPECT_NE(error_of([] { load(std::nullopt, {{"OTAD_LISTN", "x"}}, {}); }).find("OTAD_LISTN"), std::string::npos);
    EXPECT_NE(error_of([] {
                  load(std::nullopt, {}, {{"log_format", "xml"}});
              }).find("one of text|json"),
              std::string::npos);
    EXPECT_NE(error_of([] { load(std::nullopt, {}, {{"listen", "8443"}}); }).find("'listen'"), std::string::npos);
    EXPECT_NE(error_of([] {
                  load(std::nullopt, {}, {{"tls_cert", "/a.pem"}});
              }).find("set together"),
              std::string::npos);
    EXPECT_NE(error_of([] {
                  load(std::nullopt, {}, {{"max_header_bytes", "10"}});
              }).find("from 1024"),
              std::string::npos);
    EXPECT_NE(error_of([] { load(fs::path("/nonexistent/otad.json"), {}, {}); }).find("cannot read"),
              std::string::npos);
    auto bad = write_temp("bad.json", "{ nope");
    EXPECT_NE(error_of([&] { load(bad, {}, {}); }).find("not valid JSON"), std::string::npos);
    fs::remove(bad);
}

// Found by tests/fuzz/config_fuzz (corpus/config/regression-int-key-not-utf8): a
// non-UTF-8 value for an integer key, from a flag or the environment, escaped as a
// JSON serialisation error instead of a ConfigError naming the key.
TEST(Config, NonUtf8IntegerValueIsAConfigErrorNamingTheKey) {
    std::string message;
    EXPECT_NO_THROW(message = error_of([] { load(std::nullopt, {}, {{"io_threads", "\xff"}}); }));
    EXPECT_NE(message.find("'io_threads' (command line): expected an integer"), std::string::npos) << message;
    EXPECT_NO_THROW(message = error_of([] { load(std::nullopt, {{"OTAD_WORKER_THREADS", "4\xc3"}}, {}); }));
    EXPECT_NE(message.find("'worker_threads' (environment variable OTAD_WORKER_THREADS)"), std::string::npos)
        << message;
}

// Found by tests/fuzz/config_fuzz (corpus/config/regression-number-overflow): a
// number too large for a double ("2e322") is not a json::parse_error but an
// out_of_range error, and escaped load() instead of becoming a ConfigError.
TEST(Config, NumberOverflowInTheFileIsAConfigError) {
    for (const char* text : {"2e322", R"({"max_body_bytes": 1e999})"}) {
        auto file = write_temp("overflow.json", text);
        std::string message;
        EXPECT_NO_THROW(message = error_of([&] { load(file, {}, {}); })) << text;
        EXPECT_NE(message.find("is not valid JSON"), std::string::npos) << text << ": " << message;
        fs::remove(file);
    }
}

TEST(Config, HostPortForms) {
    EXPECT_EQ(parse_host_port("listen", "127.0.0.1:8443"), (std::pair<std::string, std::uint16_t>{"127.0.0.1", 8443}));
    EXPECT_EQ(parse_host_port("listen", "[::1]:0"), (std::pair<std::string, std::uint16_t>{"::1", 0}));
    EXPECT_THROW(parse_host_port("listen", "::1:80"), ConfigError);
    EXPECT_THROW(parse_host_port("listen", "host:70000"), ConfigError);
    EXPECT_THROW(parse_host_port("listen", ":80"), ConfigError);
}

TEST(Config, PublicUrlIsValidatedAndTrimmed) {
    EXPECT_EQ(load(std::nullopt, {}, {{"public_url", "https://ota.example.com/"}}).public_url,
              "https://ota.example.com");
    EXPECT_THROW(load(std::nullopt, {}, {{"public_url", "ota.example.com"}}), ConfigError);
}

}  // namespace
}  // namespace otad::config
