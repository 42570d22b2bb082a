#pragma once
// A small blocking HTTP(S) client for otad's own command line (push, ls,
// healthcheck). Beast stays in src/net/http_client.cpp.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace otad::net {

struct ClientOptions {
    std::filesystem::path ca_file;     // trust this PEM (e.g. otad's self-signed cert); empty: system store
    bool insecure = false;             // skip certificate verification (loopback health checks only)
    std::chrono::seconds timeout{60};  // per read/write
};

struct ClientRequest {
    std::string method = "GET";
    std::string url;  // http:// or https://
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;                                // used when body_file is empty
    std::optional<std::filesystem::path> body_file;  // streamed from disk
    // Called as body bytes are sent: (sent, total).
    std::function<void(std::uint64_t, std::uint64_t)> on_progress;
};

struct ClientResponse {
    unsigned status = 0;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::optional<std::string> header(std::string_view name) const;
};

class ClientError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Sends one request on a fresh connection and reads the whole response (limited
// to 64 MiB). Throws ClientError naming the URL on connection, TLS or protocol failure.
ClientResponse http_request(const ClientRequest& request, const ClientOptions& options);

}  // namespace otad::net
