// TLS policy and the self-signed certificate helper.

#include <fstream>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "net_test_support.hpp"

namespace otad::net::test {
namespace {

api::Router hello_router() {
    api::Router router;
    router.add(api::Method::get, "/hello",
               [](api::Request&) {
                   api::Response r;
                   r.set_body("hello", "text/plain");
                   return r;
               },
               {.runs_inline = true});
    return router;
}

std::string bind_error(const ServerOptions& options) {
    api::Router router;
    Server server(options, router, nullptr, nullptr);
    try {
        server.bind();
    } catch (const std::runtime_error& e) {
        return e.what();
    }
    return "";
}

X509* read_certificate(const std::filesystem::path& path) {
    FILE* f = std::fopen(path.c_str(), "r");
    if (!f) return nullptr;
    X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    return cert;
}

TEST(Tls, Tls13IsNegotiatedAndCertificateVerifiesForIp) {
    auto router = hello_router();
    TestServer server(router, test_options(true, false));
    server.start();
    TlsClientOptions o;
    o.trust_file = TestCertificate::get().cert.string();
    o.expect_ip = "127.0.0.1";
    TlsConnection c(server.https_port(), o);
    ASSERT_TRUE(c.connected()) << c.handshake_message();
    EXPECT_EQ(c.version(), TLS1_3_VERSION);
    auto r = roundtrip(c, get_request("/hello"));
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(r.body, "hello");
    EXPECT_TRUE(eventually([&] { return server.access().contains("tls=true"); }));
}

TEST(Tls, Tls12WorksWithEcdheAead) {
    auto router = hello_router();
    TestServer server(router, test_options(true, false));
    server.start();
    TlsClientOptions o;
    o.max_version = TLS1_2_VERSION;
    TlsConnection c(server.https_port(), o);
    ASSERT_TRUE(c.connected()) << c.handshake_message();
    EXPECT_EQ(c.version(), TLS1_2_VERSION);
    std::string cipher = SSL_get_cipher_name(c.ssl());
    EXPECT_EQ(cipher.rfind("ECDHE-", 0), 0u) << cipher;
    EXPECT_TRUE(cipher.find("GCM") != std::string::npos || cipher.find("CHACHA20") != std::string::npos) << cipher;
}

TEST(Tls, Tls11AndOlderAreRefused) {
    auto router = hello_router();
    TestServer server(router, test_options(true, false));
    server.start();
    for (int version : {TLS1_1_VERSION, TLS1_VERSION}) {
        TlsClientOptions o;
        o.min_version = version;
        o.max_version = version;
        o.legacy = true;
        TlsConnection c(server.https_port(), o);
        EXPECT_FALSE(c.connected());
        // Refused by the server (a protocol_version alert), not by our own client.
        EXPECT_EQ(ERR_GET_REASON(c.handshake_error()), SSL_R_TLSV1_ALERT_PROTOCOL_VERSION) << c.handshake_message();
    }
}

TEST(Tls, SessionTicketsAllowResumption) {
    auto router = hello_router();
    TestServer server(router, test_options(true, false));
    server.start();
    // TLS 1.2 resumption is observable right after the handshake.
    SSL_SESSION* session = nullptr;
    {
        TlsClientOptions o;
        o.max_version = TLS1_2_VERSION;
        TlsConnection c(server.https_port(), o);
        ASSERT_TRUE(c.connected()) << c.handshake_message();
        ASSERT_EQ(roundtrip(c, get_request("/hello")).status, 200u);
        session = SSL_get1_session(c.ssl());
        ASSERT_NE(session, nullptr);
        EXPECT_TRUE(SSL_SESSION_has_ticket(session));
    }
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    int fd = connect_tcp(server.https_port());
    ASSERT_GE(fd, 0);
    SSL* ssl = SSL_new(ctx);
    SSL_set_session(ssl, session);
    SSL_set_fd(ssl, fd);
    ASSERT_EQ(SSL_connect(ssl), 1);
    EXPECT_TRUE(SSL_session_reused(ssl));
    SSL_free(ssl);
    SSL_SESSION_free(session);
    SSL_CTX_free(ctx);
    ::close(fd);
}

TEST(Tls, MissingCertificateIsAClearError) {
    auto options = test_options(true, false);
    options.tls.cert_file = "/nonexistent/otad-cert.pem";
    auto message = bind_error(options);
    EXPECT_NE(message.find("/nonexistent/otad-cert.pem"), std::string::npos) << message;
    EXPECT_NE(message.find("does not exist"), std::string::npos) << message;
}

TEST(Tls, MalformedCertificateNamesFileAndOpenSslReason) {
    auto dir = make_temp_dir("badcert");
    std::ofstream(dir / "bad.pem") << "not a certificate\n";
    auto options = test_options(true, false);
    options.tls.cert_file = dir / "bad.pem";
    auto message = bind_error(options);
    EXPECT_NE(message.find("bad.pem"), std::string::npos) << message;
    EXPECT_NE(message.find("cannot load TLS certificate"), std::string::npos) << message;
    EXPECT_NE(message.find("PEM"), std::string::npos) << "OpenSSL's reason: " << message;
    std::filesystem::remove_all(dir);
}

TEST(Tls, MismatchedKeyIsAClearError) {
    auto dir = make_temp_dir("mismatch");
    ASSERT_TRUE(ensure_self_signed_certificate(dir / "other.crt", dir / "other.key", {"localhost"}));
    auto options = test_options(true, false);
    options.tls.key_file = dir / "other.key";
    auto message = bind_error(options);
    EXPECT_NE(message.find("does not match"), std::string::npos) << message;
    EXPECT_NE(message.find("other.key"), std::string::npos) << message;
    std::filesystem::remove_all(dir);
}

TEST(Tls, BindFailureNamesTheEndpoint) {
    auto router = hello_router();
    TestServer first(router, test_options(false, true));
    first.start();
    auto options = test_options(false, true);
    options.http = Endpoint{"127.0.0.1", first.http_port()};
    auto message = bind_error(options);
    EXPECT_NE(message.find("127.0.0.1:" + std::to_string(first.http_port())), std::string::npos) << message;
}

TEST(SelfSignedCertificate, CreatesP256CertificateWithSansAndPrivateKey) {
    auto dir = make_temp_dir("selfsigned");
    auto cert_path = dir / "sub" / "c.pem";
    auto key_path = dir / "sub" / "k.pem";
    ASSERT_TRUE(ensure_self_signed_certificate(cert_path, key_path, {"otad.example", "192.0.2.7", "::1"}));
    auto perms = std::filesystem::status(key_path).permissions();
    EXPECT_EQ(perms & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    for (const auto& entry : std::filesystem::directory_iterator(dir / "sub"))
        EXPECT_EQ(entry.path().string().find(".tmp-"), std::string::npos) << "leftover " << entry.path();

    X509* cert = read_certificate(cert_path);
    ASSERT_NE(cert, nullptr);
    EXPECT_EQ(X509_get_version(cert), X509_VERSION_3);
    EXPECT_EQ(X509_check_host(cert, "otad.example", 0, 0, nullptr), 1);
    EXPECT_EQ(X509_check_ip_asc(cert, "192.0.2.7", 0), 1);
    EXPECT_EQ(X509_check_ip_asc(cert, "::1", 0), 1);
    EXPECT_NE(X509_check_host(cert, "other.example", 0, 0, nullptr), 1);
    EXPECT_EQ(X509_get_signature_nid(cert), NID_ecdsa_with_SHA256);
    EVP_PKEY* pub = X509_get0_pubkey(cert);
    EXPECT_EQ(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
    EXPECT_EQ(EVP_PKEY_get_bits(pub), 256);
    // About ten years of validity.
    int days = 0, seconds = 0;
    ASSERT_EQ(ASN1_TIME_diff(&days, &seconds, X509_get0_notBefore(cert), X509_get0_notAfter(cert)), 1);
    EXPECT_GE(days, 3649);
    EXPECT_LE(days, 3651);
    X509_free(cert);

    // Both exist: reused, not rewritten.
    auto before = std::filesystem::last_write_time(cert_path);
    EXPECT_FALSE(ensure_self_signed_certificate(cert_path, key_path, {"otad.example"}));
    EXPECT_EQ(std::filesystem::last_write_time(cert_path), before);
    std::filesystem::remove_all(dir);
}

TEST(SelfSignedCertificate, KeyWithoutCertificateIsCertifiedNotReplaced) {
    auto dir = make_temp_dir("keyonly");
    ASSERT_TRUE(ensure_self_signed_certificate(dir / "c.pem", dir / "k.pem", {"localhost"}));
    std::ifstream key_in(dir / "k.pem");
    std::string key_before((std::istreambuf_iterator<char>(key_in)), {});
    std::filesystem::remove(dir / "c.pem");
    EXPECT_TRUE(ensure_self_signed_certificate(dir / "c.pem", dir / "k.pem", {"localhost"}));
    std::ifstream key_again(dir / "k.pem");
    EXPECT_EQ(std::string((std::istreambuf_iterator<char>(key_again)), {}), key_before);
    // And the pair loads.
    ServerOptions options = test_options(true, false);
    options.tls = TlsOptions{dir / "c.pem", dir / "k.pem"};
    EXPECT_EQ(bind_error(options), "");
    std::filesystem::remove_all(dir);
}

TEST(SelfSignedCertificate, CertificateWithoutKeyIsRefused) {
    auto dir = make_temp_dir("certonly");
    ASSERT_TRUE(ensure_self_signed_certificate(dir / "c.pem", dir / "k.pem", {"localhost"}));
    std::filesystem::remove(dir / "k.pem");
    EXPECT_THROW(ensure_self_signed_certificate(dir / "c.pem", dir / "k.pem", {"localhost"}), std::runtime_error);
    EXPECT_TRUE(std::filesystem::exists(dir / "c.pem"));
    EXPECT_THROW(ensure_self_signed_certificate(dir / "x.pem", dir / "y.pem", {"bad name,DNS:evil"}),
                 std::invalid_argument);
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace otad::net::test
