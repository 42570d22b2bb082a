// What each listener serves and adds: device routes only on plain HTTP (unless
// configured otherwise), HSTS on HTTPS, certificate reload, and how the
// open-file limit is shared out.

#include <atomic>
#include <fstream>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "net_test_support.hpp"

namespace otad::net::test {
namespace {

api::Response text(std::string body) {
    api::Response r;
    r.set_body(std::move(body), "text/plain");
    return r;
}

class ListenerTest : public ::testing::Test {
protected:
    void SetUp() override {
        router_.add(api::Method::get, "/device", [](api::Request&) { return text("device"); },
                    {.runs_inline = true, .on_plain_listener = true});
        router_.add(api::Method::get, "/operator", [this](api::Request&) {
            ++operator_runs_;
            return text("operator");
        });
        router_.add(api::Method::post, "/operator",
                    [this](api::Request& req) {
                        ++operator_runs_;
                        return text("got " + std::to_string(req.body.size()));
                    },
                    {.max_body_bytes = 4 * 1024 * 1024});
    }
    void TearDown() override { server_.reset(); }

    TestServer& start(ServerOptions options) {
        server_ = std::make_unique<TestServer>(router_, std::move(options));
        server_->start();
        return *server_;
    }
    static ServerOptions device_only() {
        auto o = test_options();
        o.plain_http_serves_all_routes = false;  // the default
        return o;
    }
    std::unique_ptr<TlsConnection> tls_connect() {
        TlsClientOptions o;  // no verification: reload tests swap certificates
        auto c = std::make_unique<TlsConnection>(server_->https_port(), o);
        EXPECT_TRUE(c->connected()) << c->handshake_message();
        return c;
    }

    api::Router router_;
    std::unique_ptr<TestServer> server_;
    std::atomic<int> operator_runs_{0};
};

TEST(ListenerDefaults, PlainListenerServesDeviceRoutesOnlyAndHstsIsOn) {
    ServerOptions o;
    EXPECT_FALSE(o.plain_http_serves_all_routes);
    EXPECT_EQ(o.hsts_max_age_s, 31'536'000u);
    EXPECT_FALSE(api::RouteOptions{}.on_plain_listener);
}

TEST_F(ListenerTest, PlainListenerRefusesOperatorRoutesWithoutRunningThem) {
    start(device_only());
    PlainConnection c(server_->http_port());
    auto r = roundtrip(c, get_request("/operator", "Authorization: Bearer s3cr3t\r\n"));
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(r.status, 403u);
    EXPECT_EQ(r.header("content-type"), "application/problem+json");
    EXPECT_NE(r.body.find("https-required"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("HTTPS"), std::string::npos) << r.body;
    EXPECT_FALSE(r.has("strict-transport-security"));
    // The connection stays usable for device routes.
    auto device = roundtrip(c, get_request("/device"));
    EXPECT_EQ(device.status, 200u);
    EXPECT_EQ(device.body, "device");
    EXPECT_EQ(operator_runs_.load(), 0);
}

TEST_F(ListenerTest, RefusalComesBeforeAnyBodyByteIsRead) {
    start(device_only());
    PlainConnection c(server_->http_port());
    // A body announced but never sent: the answer cannot wait for it.
    auto r = roundtrip(c, "POST /operator HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n");
    ASSERT_TRUE(r.ok);
    EXPECT_EQ(r.status, 403u);
    EXPECT_EQ(r.header("connection"), "close");  // the unread body makes the connection unusable
    EXPECT_EQ(operator_runs_.load(), 0);
}

TEST_F(ListenerTest, HttpsServesEveryRoute) {
    start(device_only());
    auto c = tls_connect();
    EXPECT_EQ(roundtrip(*c, get_request("/operator")).status, 200u);
    EXPECT_EQ(roundtrip(*c, get_request("/device")).status, 200u);
    EXPECT_EQ(operator_runs_.load(), 1);
}

TEST_F(ListenerTest, SwitchServesEveryRouteOnPlainHttp) {
    auto o = device_only();
    o.plain_http_serves_all_routes = true;
    start(o);
    PlainConnection c(server_->http_port());
    auto r = roundtrip(c, get_request("/operator"));
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.body, "operator");
}

TEST_F(ListenerTest, HstsOnEveryHttpsAnswerAndNeverOnPlainHttp) {
    start(device_only());
    auto c = tls_connect();
    auto ok = roundtrip(*c, get_request("/device"));
    EXPECT_EQ(ok.header("strict-transport-security"), "max-age=31536000");
    auto missing = roundtrip(*c, get_request("/nope"));
    EXPECT_EQ(missing.status, 404u);
    EXPECT_EQ(missing.header("strict-transport-security"), "max-age=31536000");
    PlainConnection plain(server_->http_port());
    auto r = roundtrip(plain, get_request("/device"));
    EXPECT_EQ(r.status, 200u);
    EXPECT_FALSE(r.has("strict-transport-security"));
}

TEST_F(ListenerTest, HstsMaxAgeZeroSendsNoHeader) {
    auto o = device_only();
    o.hsts_max_age_s = 0;
    start(o);
    auto c = tls_connect();
    auto r = roundtrip(*c, get_request("/device"));
    EXPECT_EQ(r.status, 200u);
    EXPECT_FALSE(r.has("strict-transport-security"));
}

// ---------------------------------------------------------------------------
// Certificate: expiry in the log, reload without dropping connections

std::string file_text(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

void copy_over(const std::filesystem::path& from, const std::filesystem::path& to) {
    std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
}

// The certificate the server presented on `c`, as PEM.
std::string peer_certificate_pem(TlsConnection& c) {
    X509* cert = SSL_get1_peer_certificate(c.ssl());
    if (cert == nullptr) return {};
    BIO* out = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(out, cert);
    char* data = nullptr;
    long n = BIO_get_mem_data(out, &data);
    std::string pem(data, static_cast<std::size_t>(n));
    BIO_free(out);
    X509_free(cert);
    return pem;
}

class CertificateReload : public ListenerTest {
protected:
    void SetUp() override {
        ListenerTest::SetUp();
        dir_ = make_temp_dir("reload");
        ensure_self_signed_certificate(dir_ / "a.crt", dir_ / "a.key", {"127.0.0.1"});
        ensure_self_signed_certificate(dir_ / "b.crt", dir_ / "b.key", {"localhost"});
        copy_over(dir_ / "a.crt", dir_ / "server.crt");
        copy_over(dir_ / "a.key", dir_ / "server.key");
    }
    void TearDown() override {
        ListenerTest::TearDown();
        std::filesystem::remove_all(dir_);
    }
    ServerOptions options() {
        auto o = device_only();
        o.tls.cert_file = dir_ / "server.crt";
        o.tls.key_file = dir_ / "server.key";
        return o;
    }
    std::size_t log_count(const std::string& needle) {
        std::size_t n = 0;
        for (const auto& line : server_->log().lines())
            if (line.find(needle) != std::string::npos) ++n;
        return n;
    }
    std::filesystem::path dir_;
};

TEST_F(CertificateReload, StartUpLogsTheCertificateExpiry) {
    start(options());
    ASSERT_TRUE(server_->log().contains("tls_certificate"));
    std::string line;
    for (const auto& l : server_->log().lines())
        if (l.find("tls_certificate") != std::string::npos) line = l;
    EXPECT_NE(line.find("not_after="), std::string::npos) << line;
    EXPECT_NE(line.find("issuer=self-signed"), std::string::npos) << line;
    // Generated for ten years (3650 days; the last one may have begun).
    EXPECT_TRUE(line.find("days_left=3649") != std::string::npos || line.find("days_left=3650") != std::string::npos)
        << line;
}

TEST_F(CertificateReload, NewHandshakesGetTheNewPairAndOpenConnectionsKeepWorking) {
    start(options());
    auto before = tls_connect();
    ASSERT_EQ(roundtrip(*before, get_request("/device")).status, 200u);
    EXPECT_EQ(peer_certificate_pem(*before), file_text(dir_ / "a.crt"));

    copy_over(dir_ / "b.key", dir_ / "server.key");
    copy_over(dir_ / "b.crt", dir_ / "server.crt");
    server_->reload();
    ASSERT_TRUE(eventually([&] { return log_count("tls_certificate_reloaded") == 1; }));

    auto after = tls_connect();
    EXPECT_EQ(peer_certificate_pem(*after), file_text(dir_ / "b.crt"));
    EXPECT_EQ(roundtrip(*after, get_request("/device")).status, 200u);
    // The connection made before the reload goes on with its own session.
    EXPECT_EQ(roundtrip(*before, get_request("/device")).status, 200u);
}

TEST_F(CertificateReload, ABadPairIsLoggedAndTheCurrentOneKept) {
    start(options());
    // A key that does not match the certificate (half of a rotation).
    copy_over(dir_ / "b.key", dir_ / "server.key");
    server_->reload();
    ASSERT_TRUE(eventually([&] { return log_count("tls_reload_failed") == 1; }));
    EXPECT_TRUE(server_->log().contains("does not match"));
    auto c = tls_connect();
    EXPECT_EQ(peer_certificate_pem(*c), file_text(dir_ / "a.crt"));
    EXPECT_EQ(roundtrip(*c, get_request("/device")).status, 200u);

    std::ofstream(dir_ / "server.crt", std::ios::trunc) << "not a certificate\n";
    server_->reload();
    ASSERT_TRUE(eventually([&] { return log_count("tls_reload_failed") == 2; }));
    auto again = tls_connect();
    EXPECT_EQ(peer_certificate_pem(*again), file_text(dir_ / "a.crt"));
}

// ---------------------------------------------------------------------------
// Descriptor plan

TEST(DescriptorPlan, DerivedMaxConnectionsLeavesHeadroomUnderTheLimit) {
    // Debian's usual soft limit, 2 I/O threads, 4 workers: 32 + 8 + 16 + 128 mapped files reserved.
    auto plan = plan_descriptors(1024, 0, 2, 4);
    EXPECT_TRUE(plan.derived);
    EXPECT_TRUE(plan.fits);
    EXPECT_EQ(plan.mapped_files, 128u);
    EXPECT_EQ(plan.reserved, 184u);
    EXPECT_EQ(plan.max_connections, 1024u - 184u);
    EXPECT_LT(plan.max_connections + plan.reserved, 1025u);
}

TEST(DescriptorPlan, DerivedMaxConnectionsIsCappedAndNeverZero) {
    EXPECT_EQ(plan_descriptors(1'048'576, 0, 2, 4).max_connections, kMaxDerivedConnections);
    EXPECT_EQ(plan_descriptors(UINT64_MAX, 0, 2, 4).max_connections, kMaxDerivedConnections);
    EXPECT_EQ(plan_descriptors(1'048'576, 0, 2, 4).mapped_files, 1024u);
    auto tiny = plan_descriptors(40, 0, 2, 4);  // less than the reserve itself
    EXPECT_EQ(tiny.max_connections, 10u);
    EXPECT_EQ(plan_descriptors(0, 0, 1, 1).max_connections, 1u);
}

TEST(DescriptorPlan, ConfiguredMaxConnectionsIsKeptAndCheckedAgainstTheLimit) {
    auto fits = plan_descriptors(65'536, 20'000, 2, 4);
    EXPECT_FALSE(fits.derived);
    EXPECT_TRUE(fits.fits);
    EXPECT_EQ(fits.max_connections, 20'000u);
    auto too_many = plan_descriptors(1024, 20'000, 2, 4);
    EXPECT_FALSE(too_many.fits);
    EXPECT_EQ(too_many.max_connections, 20'000u);  // the operator's choice, with a warning
}

TEST(DescriptorPlan, WantedOpenFilesMakesRoomForTheWholePlan) {
    for (std::uint32_t configured : {0u, 500u, 50'000u}) {
        auto wanted = wanted_open_files(configured, 8, 4);
        auto plan = plan_descriptors(wanted, configured, 8, 4);
        EXPECT_TRUE(plan.fits) << configured;
        EXPECT_EQ(plan.max_connections, configured ? configured : kMaxDerivedConnections);
    }
}

}  // namespace
}  // namespace otad::net::test
