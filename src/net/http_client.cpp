#include "otad/net/http_client.hpp"

#include <fstream>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>

#include "otad/api/http.hpp"

namespace otad::net {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct Target {
    bool tls = true;
    std::string host;
    std::string port;
    std::string path;
};

Target parse_url(const std::string& url) {
    auto parsed = boost::urls::parse_absolute_uri(url);
    if (!parsed) throw ClientError("not an absolute URL: '" + url + "'");
    Target t;
    std::string scheme(parsed->scheme());
    if (scheme == "https")
        t.tls = true;
    else if (scheme == "http")
        t.tls = false;
    else
        throw ClientError("URL must start with http:// or https://: '" + url + "'");
    t.host = std::string(parsed->host_address());
    if (t.host.empty()) throw ClientError("URL has no host: '" + url + "'");
    t.port = parsed->has_port() ? std::string(parsed->port()) : (t.tls ? "443" : "80");
    t.path = std::string(parsed->encoded_path());
    if (t.path.empty()) t.path = "/";
    if (parsed->has_query()) t.path += "?" + std::string(parsed->encoded_query());
    return t;
}

template <class Stream>
ClientResponse exchange(Stream& stream, beast::tcp_stream& lowest, const ClientRequest& req, const Target& target,
                        const ClientOptions& options) {
    http::request<http::empty_body> head{http::string_to_verb(req.method), target.path, 11};
    if (head.method() == http::verb::unknown) throw ClientError("unknown HTTP method " + req.method);
    head.set(http::field::host, target.host + ":" + target.port);
    head.set(http::field::user_agent, "otad-cli");
    head.set(http::field::connection, "close");
    for (const auto& [k, v] : req.headers) head.set(k, v);

    std::uint64_t total = req.body.size();
    std::ifstream file;
    if (req.body_file) {
        file.open(*req.body_file, std::ios::binary);
        if (!file) throw ClientError("cannot read " + req.body_file->string());
        total = std::filesystem::file_size(*req.body_file);
    }
    if (total > 0 || req.method == "POST" || req.method == "PUT") head.content_length(total);

    lowest.expires_after(options.timeout);
    http::request_serializer<http::empty_body> sr{head};
    http::write_header(stream, sr);
    // The body is sent in plain writes after the header: Content-Length is set,
    // and this way a large file is streamed in bounded chunks with progress.
    std::uint64_t sent = 0;
    if (req.body_file) {
        std::vector<char> chunk(256 * 1024);
        while (sent < total) {
            file.read(chunk.data(), static_cast<std::streamsize>(std::min<std::uint64_t>(chunk.size(), total - sent)));
            auto n = static_cast<std::size_t>(file.gcount());
            if (n == 0) throw ClientError("file " + req.body_file->string() + " shrank while being sent");
            lowest.expires_after(options.timeout);
            asio::write(stream, asio::buffer(chunk.data(), n));
            sent += n;
            if (req.on_progress) req.on_progress(sent, total);
        }
    } else if (!req.body.empty()) {
        asio::write(stream, asio::buffer(req.body));
        sent = total;
        if (req.on_progress) req.on_progress(sent, total);
    }

    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64ull * 1024 * 1024);
    lowest.expires_after(options.timeout);
    http::read(stream, buffer, parser);
    auto& res = parser.get();
    ClientResponse out;
    out.status = res.result_int();
    for (const auto& f : res) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
    out.body = std::move(res.body());
    return out;
}

}  // namespace

std::optional<std::string> ClientResponse::header(std::string_view name) const {
    for (const auto& [k, v] : headers)
        if (api::iequals(k, name)) return v;
    return std::nullopt;
}

ClientResponse http_request(const ClientRequest& request, const ClientOptions& options) {
    Target target = parse_url(request.url);
    try {
        asio::io_context ioc;
        tcp::resolver resolver(ioc);
        auto endpoints = resolver.resolve(target.host, target.port);
        if (!target.tls) {
            beast::tcp_stream stream(ioc);
            stream.expires_after(options.timeout);
            stream.connect(endpoints);
            auto res = exchange(stream, stream, request, target, options);
            beast::error_code ec;
            stream.socket().shutdown(tcp::socket::shutdown_both, ec);
            return res;
        }
        asio::ssl::context ctx(asio::ssl::context::tls_client);
        ctx.set_options(asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
        if (options.insecure) {
            ctx.set_verify_mode(asio::ssl::verify_none);
        } else {
            ctx.set_verify_mode(asio::ssl::verify_peer);
            if (!options.ca_file.empty())
                ctx.load_verify_file(options.ca_file.string());
            else
                ctx.set_default_verify_paths();
        }
        beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
        if (!options.insecure) {
            // Verify the name (or IP) the user typed against the certificate.
            stream.set_verify_callback(asio::ssl::host_name_verification(target.host));
        }
        if (!SSL_set_tlsext_host_name(stream.native_handle(), target.host.c_str()))
            throw ClientError("cannot set SNI for " + target.host);
        beast::get_lowest_layer(stream).expires_after(options.timeout);
        beast::get_lowest_layer(stream).connect(endpoints);
        stream.handshake(asio::ssl::stream_base::client);
        auto res = exchange(stream, beast::get_lowest_layer(stream), request, target, options);
        beast::error_code ec;
        stream.shutdown(ec);  // a missing close_notify from the server is harmless here
        return res;
    } catch (const ClientError&) {
        throw;
    } catch (const std::exception& e) {
        throw ClientError(request.method + " " + request.url + ": " + e.what());
    }
}

}  // namespace otad::net
