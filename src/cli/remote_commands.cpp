#include "remote_commands.hpp"

#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "app.hpp"
#include "otad/net/http_client.hpp"
#include "otad/util/strings.hpp"
#include "otad/platform/terminal.hpp"
#include "otad/util/crypto.hpp"

namespace otad::cli {
namespace {

using json = nlohmann::json;

struct Remote {
    std::string server;
    std::string token;
    std::string cacert;
    bool insecure = false;

    void add_to(CLI::App& cmd) {
        cmd.add_option("--server", server, "otad base URL, e.g. https://ota.example.com:8443 (or $OTAD_SERVER)");
        cmd.add_option("--token", token, "operator token (or $OTAD_TOKEN)");
        cmd.add_option("--cacert", cacert, "PEM certificate to trust (e.g. otad-data/tls/cert.pem)");
        cmd.add_flag("--insecure", insecure, "do not verify the server certificate");
    }
    void resolve() {
        if (server.empty())
            if (const char* s = std::getenv("OTAD_SERVER")) server = s;
        if (token.empty())
            if (const char* t = std::getenv("OTAD_TOKEN")) token = t;
        if (server.empty()) throw CLI::ValidationError("--server", "is required (or set OTAD_SERVER)");
        if (token.empty()) throw CLI::ValidationError("--token", "is required (or set OTAD_TOKEN)");
        while (!server.empty() && server.back() == '/') server.pop_back();
    }
    net::ClientOptions options() const {
        net::ClientOptions o;
        o.ca_file = cacert;
        o.insecure = insecure;
        return o;
    }
    net::ClientResponse call(net::ClientRequest req) const {
        req.url = server + req.url;
        req.headers.emplace_back("Authorization", "Bearer " + token);
        return net::http_request(req, options());
    }
};

// "422 Unprocessable Content: <detail>" from a problem document, or the raw body.
std::string failure_text(const net::ClientResponse& res) {
    std::string text = std::to_string(res.status);
    try {
        auto doc = json::parse(res.body);
        if (doc.contains("title")) text += " " + doc["title"].get<std::string>();
        if (doc.contains("detail")) text += ": " + doc["detail"].get<std::string>();
        return text;
    } catch (const std::exception&) {
        return text + ": " + res.body.substr(0, 500);
    }
}

// The server's problem details name its query parameters; say which flag sends them.
std::string push_hint(const net::ClientResponse& res) {
    try {
        auto doc = json::parse(res.body);
        const std::string type = doc.value("type", std::string());
        const std::string code = doc.value("code", std::string());
        if (code == "version-mismatch") return "\n(otad push: add --version-mismatch allow to upload it anyway)";
        if (type.ends_with("/artifact-exists"))
            return "\n(otad push: an admin token may add --replace while the release has not been offered)";
    } catch (const std::exception&) {
        // Not a problem document: nothing to add.
    }
    return {};
}

std::string file_sha256_base64(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    util::Digest d("sha256");
    std::vector<char> buf(1 << 20);
    while (in) {
        in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        if (in.gcount() > 0) d.update(std::string_view(buf.data(), static_cast<std::size_t>(in.gcount())));
    }
    return util::base64_encode(d.finish());
}

class ProgressBar {
public:
    explicit ProgressBar(bool enabled) : enabled_(enabled) {}
    void update(std::uint64_t sent, std::uint64_t total) {
        if (!enabled_ || total == 0) return;
        int pct = static_cast<int>(sent * 100 / total);
        if (pct == last_) return;
        last_ = pct;
        int filled = pct * 40 / 100;
        std::fprintf(stderr, "\r[%-40s] %3d%% %llu/%llu bytes", std::string(filled, '#').c_str(), pct,
                     static_cast<unsigned long long>(sent), static_cast<unsigned long long>(total));
        if (sent == total) std::fprintf(stderr, "\n");
        std::fflush(stderr);
    }

private:
    bool enabled_;
    int last_ = -1;
};

}  // namespace

std::function<int()> add_remote_commands(CLI::App& app) {
    auto remote = std::make_shared<Remote>();

    struct PushArgs {
        std::string file, product, version, chip, layout, slot, filename, channel, version_mismatch;
        bool replace = false;
    };
    auto push = std::make_shared<PushArgs>();
    auto* push_cmd = app.add_subcommand("push", "upload a firmware image to a running otad");
    push_cmd->add_option("FILE", push->file, "image file")->required()->check(CLI::ExistingFile);
    remote->add_to(*push_cmd);
    push_cmd->add_option("--product", push->product, "product name")->required();
    push_cmd->add_option("--version", push->version, "release version")->required();
    push_cmd->add_option("--chip", push->chip, "esp8266, esp32, esp32s3, ..., or generic")->required();
    push_cmd->add_option("--layout", push->layout, "256+256, 512+512, 1024+1024, ota or single");
    push_cmd->add_option("--slot", push->slot, "user1/user2 for NONOS layouts");
    push_cmd->add_option("--filename", push->filename, "file name devices see (default: the file's name)");
    push_cmd->add_option("--channel", push->channel, "after uploading, point this channel at the release");
    push_cmd
        ->add_option("--version-mismatch", push->version_mismatch,
                     "allow: accept an image whose own app version differs from --version (deny: the default)")
        ->check(CLI::IsMember({"allow", "deny"}));
    push_cmd->add_flag("--replace", push->replace,
                       "replace the release's artifact of the same chip/layout/slot (admin token; only until the "
                       "release is offered to a device)");

    auto ls_product = std::make_shared<std::string>();
    auto* ls_cmd = app.add_subcommand("ls", "list products, or one product's releases and channels");
    remote->add_to(*ls_cmd);
    ls_cmd->add_option("PRODUCT", *ls_product, "product to list");

    auto health_url = std::make_shared<std::string>();
    auto health_flags = std::make_shared<ConfigSource>();
    auto* health_cmd =
        app.add_subcommand("healthcheck", "exit 0 when the local otad answers /healthz (for container HEALTHCHECK)");
    health_cmd->add_option("--url", *health_url, "URL to probe (default: https://<listen>/healthz from the config)");
    health_cmd->add_option("--config", health_flags->config_file, "JSON config file");

    return [=]() -> int {
        if (push_cmd->parsed()) {
            remote->resolve();
            std::string filename =
                push->filename.empty() ? std::filesystem::path(push->file).filename().string() : push->filename;
            std::string path = "/api/v1/products/" + util::percent_encode(push->product) + "/releases/" +
                               util::percent_encode(push->version) +
                               "/artifacts?chip=" + util::percent_encode(push->chip) +
                               "&filename=" + util::percent_encode(filename);
            if (!push->layout.empty()) path += "&layout=" + util::percent_encode(push->layout);
            if (!push->slot.empty()) path += "&slot=" + util::percent_encode(push->slot);
            if (!push->version_mismatch.empty()) path += "&version_mismatch=" + push->version_mismatch;
            if (push->replace) path += "&replace=true";
            net::ClientRequest req;
            req.method = "POST";
            req.url = path;
            req.body_file = push->file;
            req.headers = {{"Content-Type", "application/octet-stream"},
                           {"Content-Digest", "sha-256=:" + file_sha256_base64(push->file) + ":"}};
            ProgressBar bar(platform::stderr_is_terminal());
            req.on_progress = [&bar](std::uint64_t s, std::uint64_t t) { bar.update(s, t); };
            auto res = remote->call(req);
            if (res.status != 200 && res.status != 201) {
                std::cerr << "otad push: " << failure_text(res) << push_hint(res) << std::endl;
                return 1;
            }
            try {
                std::cout << json::parse(res.body).dump(2) << std::endl;
            } catch (const std::exception&) {
                std::cout << res.body << std::endl;
            }
            if (!push->channel.empty()) {
                net::ClientRequest move;
                move.method = "PUT";
                move.url = "/api/v1/products/" + util::percent_encode(push->product) + "/channels/" +
                           util::percent_encode(push->channel);
                move.body = json{{"version", push->version}}.dump();
                move.headers = {{"Content-Type", "application/json"}};
                auto moved = remote->call(move);
                if (moved.status != 200 && moved.status != 201) {
                    std::cerr << "otad push: uploaded, but moving channel '" << push->channel
                              << "' failed: " << failure_text(moved) << std::endl;
                    return 1;
                }
                std::cerr << "channel '" << push->channel << "' now offers " << push->version << std::endl;
            }
            return 0;
        }
        if (ls_cmd->parsed()) {
            remote->resolve();
            net::ClientRequest req;
            req.url = ls_product->empty()
                          ? "/api/v1/products"
                          : "/api/v1/products/" + util::percent_encode(*ls_product) + "/releases?limit=100";
            auto res = remote->call(req);
            if (res.status != 200) {
                std::cerr << "otad ls: " << failure_text(res) << std::endl;
                return 1;
            }
            std::cout << json::parse(res.body).dump(2) << std::endl;
            if (!ls_product->empty()) {
                net::ClientRequest ch;
                ch.url = "/api/v1/products/" + util::percent_encode(*ls_product) + "/channels";
                auto chres = remote->call(ch);
                if (chres.status == 200) std::cout << json::parse(chres.body).dump(2) << std::endl;
            }
            return 0;
        }
        if (health_cmd->parsed()) {
            std::string url = *health_url;
            if (url.empty()) {
                config::Config c = load_config(*health_flags);
                auto [host, port] = config::parse_host_port("listen", c.listen);
                if (host == "0.0.0.0" || host == "::" || host.empty()) host = "127.0.0.1";
                if (host.find(':') != std::string::npos) host = "[" + host + "]";
                url = "https://" + host + ":" + std::to_string(port) + "/healthz";
            }
            net::ClientOptions o;
            o.insecure = true;  // a loopback liveness probe, not a trust decision
            o.timeout = std::chrono::seconds(5);
            try {
                net::ClientRequest req;
                req.url = url;
                auto res = net::http_request(req, o);
                if (res.status == 200) return 0;
                std::cerr << "otad healthcheck: " << url << " answered " << res.status << std::endl;
            } catch (const std::exception& e) {
                std::cerr << "otad healthcheck: " << e.what() << std::endl;
            }
            return 1;
        }
        return -1;
    };
}

}  // namespace otad::cli
