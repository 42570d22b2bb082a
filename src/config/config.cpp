#include "otad/config/config.hpp"

#include <fstream>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "otad/util/strings.hpp"

#if defined(_WIN32)
#include <stdlib.h>
#else
extern char** environ;
#endif

namespace otad::config {
namespace {

using json = nlohmann::json;

// One row per key: how to read it from JSON or from text, and how to show its default.
struct Binding {
    KeyInfo info;
    std::function<void(Config&, const json&, const std::string& where)> from_json;
    std::function<json(const Config&)> to_json;
};

[[noreturn]] void fail(const std::string& key, const std::string& where, const std::string& expected) {
    throw ConfigError("config key '" + key + "' (" + where + "): expected " + expected);
}

Binding string_key(std::string name, std::string description, std::string Config::*member) {
    std::string n = name;
    return {{name, "string", std::move(description)},
            [n, member](Config& c, const json& v, const std::string& where) {
                if (!v.is_string()) fail(n, where, "a string");
                c.*member = v.get<std::string>();
            },
            [member](const Config& c) { return json(c.*member); }};
}

Binding choice_key(std::string name, std::string description, std::string Config::*member,
                   std::vector<std::string> choices) {
    std::string n = name;
    std::string joined;
    for (const auto& ch : choices) joined += (joined.empty() ? "" : "|") + ch;
    return {{name, "one of " + joined, std::move(description)},
            [n, member, choices, joined](Config& c, const json& v, const std::string& where) {
                if (!v.is_string()) fail(n, where, "one of " + joined);
                auto s = v.get<std::string>();
                if (std::find(choices.begin(), choices.end(), s) == choices.end())
                    fail(n, where, "one of " + joined + ", got '" + s + "'");
                c.*member = s;
            },
            [member](const Config& c) { return json(c.*member); }};
}

template <typename Int>
Binding int_key(std::string name, std::string description, Int Config::*member, std::uint64_t min, std::uint64_t max) {
    std::string n = name;
    std::string range = "an integer from " + std::to_string(min) + " to " + std::to_string(max);
    return {{name, "integer", std::move(description)},
            [n, member, min, max, range](Config& c, const json& v, const std::string& where) {
                std::optional<std::uint64_t> value;
                if (v.is_number_unsigned())
                    value = v.get<std::uint64_t>();
                else if (v.is_number_integer() && v.get<std::int64_t>() >= 0)
                    value = v.get<std::uint64_t>();
                else if (v.is_string())
                    value = util::parse_u64(v.get<std::string>());
                // replace: a flag or environment value need not be UTF-8, and the message must still name the key.
                if (!value || *value < min || *value > max)
                    fail(n, where, range + ", got " + v.dump(-1, ' ', false, json::error_handler_t::replace));
                c.*member = static_cast<Int>(*value);
            },
            [member](const Config& c) { return json(c.*member); }};
}

Binding bool_key(std::string name, std::string description, bool Config::*member) {
    std::string n = name;
    return {{name, "boolean", std::move(description)},
            [n, member](Config& c, const json& v, const std::string& where) {
                if (v.is_boolean()) {
                    c.*member = v.get<bool>();
                    return;
                }
                // From the environment or a flag: text.
                const std::string text = v.is_string() ? util::to_lower(v.get<std::string>()) : std::string();
                if (text == "true" || text == "1")
                    c.*member = true;
                else if (text == "false" || text == "0")
                    c.*member = false;
                else
                    fail(n, where, "true or false, got " + v.dump());
            },
            [member](const Config& c) { return json(c.*member); }};
}

Binding list_key(std::string name, std::string description, std::vector<std::string> Config::*member) {
    std::string n = name;
    return {{name, "list", std::move(description)},
            [n, member](Config& c, const json& v, const std::string& where) {
                std::vector<std::string> out;
                if (v.is_string()) {  // from the environment or a flag: comma-separated
                    const std::string text = v.get<std::string>();
                    for (auto part : util::split(text, ','))
                        if (!util::trim(part).empty()) out.emplace_back(util::trim(part));
                } else if (v.is_array()) {
                    for (const auto& item : v) {
                        if (!item.is_string()) fail(n, where, "a list of strings");
                        out.push_back(item.get<std::string>());
                    }
                } else {
                    fail(n, where, "a list of strings (or comma-separated text)");
                }
                c.*member = std::move(out);
            },
            [member](const Config& c) { return json(c.*member); }};
}

constexpr std::uint64_t kDay = 86'400;
constexpr std::uint64_t kHourMs = 3'600'000;

const std::vector<Binding>& bindings() {
    static const std::vector<Binding> all = {
        string_key("listen", "HTTPS listener, host:port ([v6]:port for IPv6)", &Config::listen),
        string_key("http_listen", "plain-HTTP listener for legacy devices, host:port; empty: off",
                   &Config::http_listen),
        bool_key("plain_http_serves_all_routes",
                 "serve every route on http_listen, operator API included (tokens in clear); false: device routes only",
                 &Config::plain_http_serves_all_routes),
        string_key("data_dir", "where the database, blobs and generated certificate live", &Config::data_dir),
        string_key("database", "SQLite file; empty: <data_dir>/otad.db", &Config::database),
        string_key("tls_cert", "PEM certificate chain; empty: self-signed, generated once into <data_dir>/tls/",
                   &Config::tls_cert),
        string_key("tls_key", "PEM private key for tls_cert", &Config::tls_key),
        list_key("tls_hostnames", "names and IPs the self-signed certificate is made for", &Config::tls_hostnames),
        int_key("hsts_max_age_s", "Strict-Transport-Security max-age on HTTPS answers; 0: no header",
                &Config::hsts_max_age_s, 0, 2 * 365 * kDay),
        string_key("public_url", "base URL devices use to reach otad, e.g. https://ota.example.com; empty: Host header",
                   &Config::public_url),
        int_key("io_threads", "network threads; 0: one per core", &Config::io_threads, 0, 256),
        int_key("worker_threads", "threads for handlers that touch the database or disk", &Config::worker_threads, 1,
                256),
        choice_key("log_level", "log verbosity", &Config::log_level,
                   {"trace", "debug", "info", "warn", "error", "critical", "off"}),
        choice_key("log_format", "log line format", &Config::log_format, {"text", "json"}),
        int_key("handshake_timeout_ms", "TLS handshake deadline", &Config::handshake_timeout_ms, 100, kHourMs),
        int_key("header_timeout_ms", "deadline for a whole request header", &Config::header_timeout_ms, 100, kHourMs),
        int_key("body_timeout_ms", "deadline for a whole API request body, and for each read of an upload",
                &Config::body_timeout_ms, 100, kHourMs),
        int_key("send_timeout_ms", "deadline for each write of a response (a stalled device is dropped)",
                &Config::send_timeout_ms, 100, kHourMs),
        int_key("idle_timeout_ms", "keep-alive connection idle deadline", &Config::idle_timeout_ms, 100, kHourMs),
        int_key("shutdown_timeout_ms", "how long SIGTERM waits for in-flight requests", &Config::shutdown_timeout_ms, 0,
                kHourMs),
        int_key("max_header_bytes", "request header limit (431 past it)", &Config::max_header_bytes, 1024, 1 << 20),
        int_key("max_body_bytes", "request body limit for API calls other than uploads (413 past it)",
                &Config::max_body_bytes, 1024, 1ull << 30),
        int_key("max_artifact_bytes", "firmware upload limit (413 past it)", &Config::max_artifact_bytes, 1024,
                1ull << 40),
        int_key("max_connections",
                "open connections at once; more are closed at accept. 0: derived from the open-file limit",
                &Config::max_connections, 0, 1'000'000),
        int_key("max_concurrent_downloads", "firmware downloads at once; more get 503 + Retry-After",
                &Config::max_concurrent_downloads, 1, 1'000'000),
        int_key("retry_after_s", "base Retry-After for 503 (a random jitter up to the same again is added)",
                &Config::retry_after_s, 1, kDay),
        int_key("db_busy_timeout_ms", "how long a database call waits for a lock", &Config::db_busy_timeout_ms, 0,
                600'000),
        int_key("poll_interval_s", "poll interval suggested to devices in manifests", &Config::poll_interval_s, 1,
                30 * kDay),
        int_key("poll_jitter_s", "random jitter added to poll_interval_s", &Config::poll_jitter_s, 0, 30 * kDay),
        int_key("url_validity_s", "minimum lifetime of a pre-signed download URL", &Config::url_validity_s, 60,
                365 * kDay),
        int_key("url_window_s",
                "pre-signed URL expiries are rounded up to this window (manifests are cached per window)",
                &Config::url_window_s, 1, 30 * kDay),
        choice_key("signing_algorithm", "algorithm of newly created manifest signing keys", &Config::signing_algorithm,
                   {"es256", "ed25519"}),
        int_key("device_flush_interval_ms",
                "device last-seen and token last-used updates are written in one batch this often",
                &Config::device_flush_interval_ms, 10, 600'000),
        int_key("rollback_after_s", "a device still on its old version this long after an offer counts as rolled back",
                &Config::rollback_after_s, 1, 365 * kDay),
        int_key("max_concurrent_uploads", "firmware uploads at once, each on a thread of its own; more get 503",
                &Config::max_concurrent_uploads, 1, 256),
        int_key("min_upload_rate_bytes_per_s",
                "bytes per second an upload must average once past body_timeout_ms (408 below it); 0: off",
                &Config::min_upload_rate_bytes_per_s, 0, 1ull << 30),
        int_key("max_buffered_body_bytes_total",
                "memory for API request bodies across all connections; past it 503 + Retry-After",
                &Config::max_buffered_body_bytes_total, 64 * 1024, 1ull << 40),
        int_key("orphan_collect_interval_s",
                "how often blobs no artifact uses (left by a crash) are removed while serving; 0: only at start-up",
                &Config::orphan_collect_interval_s, 0, 30 * kDay),
        int_key("rollout_tick_ms", "how often rollout health gates are judged and stage holds checked",
                &Config::rollout_tick_ms, 50, 600'000),
        int_key("rollout_time_scale", "rollout holds and staleness run this many times faster than the clock (tests)",
                &Config::rollout_time_scale, 1, 1'000'000),
    };
    return all;
}

const Binding* find(std::string_view name) {
    for (const auto& b : bindings())
        if (b.info.name == name) return &b;
    return nullptr;
}

std::string valid_keys_hint() {
    std::string out;
    for (const auto& b : bindings()) out += (out.empty() ? "" : ", ") + b.info.name;
    return out;
}

}  // namespace

std::filesystem::path Config::database_path() const {
    return database.empty() ? std::filesystem::path(data_dir) / "otad.db" : std::filesystem::path(database);
}
std::filesystem::path Config::tls_cert_path() const {
    return tls_cert.empty() ? std::filesystem::path(data_dir) / "tls" / "cert.pem" : std::filesystem::path(tls_cert);
}
std::filesystem::path Config::tls_key_path() const {
    return tls_key.empty() ? std::filesystem::path(data_dir) / "tls" / "key.pem" : std::filesystem::path(tls_key);
}

const std::vector<KeyInfo>& keys() {
    static const std::vector<KeyInfo> all = [] {
        std::vector<KeyInfo> out;
        for (const auto& b : bindings()) out.push_back(b.info);
        return out;
    }();
    return all;
}

Config load(const std::optional<std::filesystem::path>& file, const std::map<std::string, std::string>& environment,
            const std::map<std::string, std::string>& overrides) {
    Config c;
    if (file) {
        std::ifstream in(*file);
        if (!in) throw ConfigError("cannot read config file " + file->string());
        std::stringstream text;
        text << in.rdbuf();
        json doc;
        try {
            doc = json::parse(text.str(), nullptr, true, /*ignore_comments=*/true);
        } catch (const json::exception& e) {  // parse_error, and out_of_range for a number like 1e999
            throw ConfigError("config file " + file->string() + " is not valid JSON: " + e.what());
        }
        if (!doc.is_object()) throw ConfigError("config file " + file->string() + " must hold a JSON object");
        for (const auto& [key, value] : doc.items()) {
            const Binding* b = find(key);
            if (!b)
                throw ConfigError("unknown config key '" + key + "' in " + file->string() +
                                  "; valid keys: " + valid_keys_hint());
            b->from_json(c, value, file->string());
        }
    }
    // OTAD_<KEY> for every known key. Other OTAD_ variables are left alone unless
    // they look like a misspelt key, which would otherwise be ignored silently.
    static const std::vector<std::string> not_keys = {
        "OTAD_BOOTSTRAP_TOKEN", "OTAD_BOOTSTRAP_TOKEN_FILE", "OTAD_TOKEN", "OTAD_SERVER", "OTAD_BIN",
        "OTAD_TOOLS_DIR",       "OTAD_SOURCE_DIR",           "OTAD_CONFIG"};
    for (const auto& [name, value] : environment) {
        if (name.rfind("OTAD_", 0) != 0) continue;
        if (std::find(not_keys.begin(), not_keys.end(), name) != not_keys.end()) continue;
        std::string key = util::to_lower(name.substr(5));
        const Binding* b = find(key);
        if (!b)
            throw ConfigError("unknown setting in environment variable " + name + "; valid: OTAD_<KEY> for keys " +
                              valid_keys_hint());
        b->from_json(c, json(value), "environment variable " + name);
    }
    for (const auto& [key, value] : overrides) {
        const Binding* b = find(key);
        if (!b) throw ConfigError("unknown config key '" + key + "'");
        b->from_json(c, json(value), "command line");
    }
    parse_host_port("listen", c.listen);
    if (!c.http_listen.empty()) parse_host_port("http_listen", c.http_listen);
    if (c.data_dir.empty()) throw ConfigError("config key 'data_dir': expected a directory path, got ''");
    if (c.tls_cert.empty() != c.tls_key.empty())
        throw ConfigError("config keys 'tls_cert' and 'tls_key' must be set together (or both left empty)");
    if (!c.public_url.empty() && c.public_url.rfind("https://", 0) != 0 && c.public_url.rfind("http://", 0) != 0)
        throw ConfigError("config key 'public_url': expected an http:// or https:// URL, got '" + c.public_url + "'");
    while (!c.public_url.empty() && c.public_url.back() == '/') c.public_url.pop_back();
    return c;
}

std::map<std::string, std::string> process_environment() {
    std::map<std::string, std::string> out;
#if !defined(_WIN32)
    for (char** e = environ; e && *e; ++e) {
        std::string_view kv(*e);
        auto eq = kv.find('=');
        if (eq != std::string_view::npos) out.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
#else
    for (const auto& b : bindings()) {
        std::string name = "OTAD_" + b.info.name;
        for (auto& ch : name) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
        if (const char* v = std::getenv(name.c_str())) out.emplace(name, v);
    }
#endif
    return out;
}

std::string defaults_json() {
    json doc = json::object();
    Config c;
    for (const auto& b : bindings()) doc[b.info.name] = b.to_json(c);
    return doc.dump(2);
}

std::pair<std::string, std::uint16_t> parse_host_port(const std::string& key, const std::string& text) {
    std::string host;
    std::string port;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
            fail(key, "value '" + text + "'", "[ipv6]:port");
        host = text.substr(1, close - 1);
        port = text.substr(close + 2);
    } else {
        auto colon = text.rfind(':');
        if (colon == std::string::npos || text.find(':') != colon)
            fail(key, "value '" + text + "'", "host:port, e.g. 127.0.0.1:8443 or [::1]:8443");
        host = text.substr(0, colon);
        port = text.substr(colon + 1);
    }
    auto p = util::parse_u64(port);
    if (host.empty() || !p || *p > 65535) fail(key, "value '" + text + "'", "host:port with a port from 0 to 65535");
    return {host, static_cast<std::uint16_t>(*p)};
}

}  // namespace otad::config
