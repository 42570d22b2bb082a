#pragma once
// otad's settings: one flat set of keys, each with a default, read in this order
// (later wins): built-in defaults, the JSON config file, OTAD_<KEY> environment
// variables, command-line flags. config/otad.json documents every key.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace otad::config {

struct Config {
    std::string listen = "127.0.0.1:8443";
    std::string http_listen;                    // empty: no plain-HTTP listener
    bool plain_http_serves_all_routes = false;  // false: only device routes on http_listen
    std::string data_dir = "otad-data";
    std::string database;  // empty: <data_dir>/otad.db
    std::string tls_cert;  // empty: self-signed, <data_dir>/tls/
    std::string tls_key;
    std::vector<std::string> tls_hostnames = {"localhost", "127.0.0.1", "::1"};
    std::uint64_t hsts_max_age_s = 31'536'000;  // Strict-Transport-Security on HTTPS; 0: off
    std::string public_url;                     // empty: from the request's Host header
    unsigned io_threads = 0;
    unsigned worker_threads = 4;
    std::string log_level = "info";
    std::string log_format = "text";
    std::uint64_t handshake_timeout_ms = 10'000;
    std::uint64_t header_timeout_ms = 10'000;
    std::uint64_t body_timeout_ms = 30'000;
    std::uint64_t send_timeout_ms = 30'000;
    std::uint64_t idle_timeout_ms = 60'000;
    std::uint64_t shutdown_timeout_ms = 10'000;
    std::uint64_t max_header_bytes = 8 * 1024;
    std::uint64_t max_body_bytes = 1024 * 1024;
    std::uint64_t max_artifact_bytes = 64ull * 1024 * 1024;
    std::uint64_t max_connections = 0;  // 0: derived from the open-file limit (RLIMIT_NOFILE)
    std::uint64_t max_concurrent_downloads = 1'000;
    std::uint64_t retry_after_s = 10;
    std::uint64_t db_busy_timeout_ms = 5'000;
    std::uint64_t poll_interval_s = 3'600;
    std::uint64_t poll_jitter_s = 300;
    std::uint64_t url_validity_s = 86'400;
    std::uint64_t url_window_s = 3'600;
    std::string signing_algorithm = "es256";
    std::uint64_t device_flush_interval_ms = 1'000;
    std::uint64_t rollback_after_s = 3'600;
    std::uint64_t max_concurrent_uploads = 8;
    std::uint64_t min_upload_rate_bytes_per_s = 4 * 1024;
    std::uint64_t max_buffered_body_bytes_total = 64ull * 1024 * 1024;
    std::uint64_t orphan_collect_interval_s = 3'600;  // 0: only at start-up
    std::uint64_t rollout_tick_ms = 2'000;            // docs/rollouts.md: gate and hold checks
    std::uint64_t rollout_time_scale = 1;             // holds and staleness run this many times faster (tests)

    std::filesystem::path database_path() const;
    std::filesystem::path tls_cert_path() const;
    std::filesystem::path tls_key_path() const;
};

// Bad configuration: the message names the key (and source) and the expected form.
class ConfigError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct KeyInfo {
    std::string name;
    std::string type;  // "string", "integer", "boolean", "list", or "one of a|b"
    std::string description;
};
// Every key, in documentation order.
const std::vector<KeyInfo>& keys();

// Loads a config: defaults, then `file` (if given; must exist), then environment
// variables (`environ`-style map, only OTAD_<KEY> for known keys; other OTAD_*
// variables that look like keys are errors), then `overrides` (key -> text, from flags).
// Throws ConfigError.
Config load(const std::optional<std::filesystem::path>& file, const std::map<std::string, std::string>& environment,
            const std::map<std::string, std::string>& overrides);

// The process environment as a map (for load()).
std::map<std::string, std::string> process_environment();

// The defaults rendered as the JSON text of config/otad.json minus comments.
std::string defaults_json();

// "host:port" or "[v6]:port" -> (host, port). Throws ConfigError naming `key`.
std::pair<std::string, std::uint16_t> parse_host_port(const std::string& key, const std::string& text);

}  // namespace otad::config
