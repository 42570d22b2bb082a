#include "tls.hpp"

#include <cstdio>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "otad/util/strings.hpp"

namespace otad::net {
namespace {

// Drains OpenSSL's error queue into one readable line.
std::string openssl_errors() {
    std::string text;
    while (unsigned long code = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(code, buf, sizeof buf);
        if (!text.empty()) text += "; ";
        text += buf;
    }
    return text.empty() ? "unknown OpenSSL error" : text;
}

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what + ": " + openssl_errors()); }

void require_readable(const std::filesystem::path& path, std::string_view role) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec))
        throw std::runtime_error(std::string(role) + " '" + path.string() + "' does not exist");
    if (!std::filesystem::is_regular_file(path, ec))
        throw std::runtime_error(std::string(role) + " '" + path.string() + "' is not a regular file");
    std::ifstream probe(path, std::ios::binary);
    if (!probe) throw std::runtime_error(std::string(role) + " '" + path.string() + "' is not readable");
}

template <class T, void (*Free)(T*)>
struct Deleter {
    void operator()(T* p) const noexcept { Free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using ExtPtr = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION, X509_EXTENSION_free>>;
using OctetPtr = std::unique_ptr<ASN1_OCTET_STRING, Deleter<ASN1_OCTET_STRING, ASN1_OCTET_STRING_free>>;

std::string bio_to_string(BIO* bio) {
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    return std::string(data, static_cast<std::size_t>(n));
}

bool is_ip_literal(const std::string& host) {
    OctetPtr ip(a2i_IPADDRESS(host.c_str()));
    ERR_clear_error();
    return ip != nullptr;
}

bool is_dns_name(const std::string& host) {
    if (host.empty() || host.size() > 253) return false;
    for (char c : host) {
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                  c == '*';
        if (!ok) return false;
    }
    return true;
}

void add_extension(X509* cert, int nid, const std::string& value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
    ExtPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
    if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) fail("cannot add certificate extension '" + value + "'");
}

// Writes `content` to `path` through a temporary file and a rename, so readers
// never see half a file; `owner_only` restricts it to 0600 before any byte is written.
void write_file_atomically(const std::filesystem::path& path, const std::string& content, bool owner_only) {
    auto dir = path.parent_path();
    std::error_code ec;
    if (!dir.empty()) std::filesystem::create_directories(dir, ec);
    unsigned char random[6];
    RAND_bytes(random, sizeof random);
    char suffix[32];
    std::snprintf(suffix, sizeof suffix, ".tmp-%02x%02x%02x%02x%02x%02x", random[0], random[1], random[2], random[3],
                  random[4], random[5]);
    auto temp = path;
    temp += suffix;
    try {
        {
            std::ofstream out(temp, std::ios::binary | std::ios::trunc);
            if (!out) throw std::runtime_error("cannot create '" + temp.string() + "'");
            if (owner_only)
                std::filesystem::permissions(temp,
                                             std::filesystem::perms::owner_read | std::filesystem::perms::owner_write,
                                             std::filesystem::perm_options::replace);
            out.write(content.data(), static_cast<std::streamsize>(content.size()));
            out.flush();
            if (!out) throw std::runtime_error("cannot write '" + temp.string() + "'");
        }
        std::filesystem::rename(temp, path);
    } catch (const std::exception& e) {
        std::filesystem::remove(temp, ec);
        throw std::runtime_error("cannot write '" + path.string() + "': " + e.what());
    }
}

}  // namespace

namespace detail {

void configure_tls_context(SSL_CTX* ctx, const TlsOptions& tls) {
    ERR_clear_error();
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) fail("cannot set the minimum TLS version");
    if (SSL_CTX_set_max_proto_version(ctx, 0) != 1) fail("cannot enable TLS 1.3");
    // Mozilla "intermediate" for TLS 1.2: forward secrecy and AEAD only. TLS 1.3
    // suites are OpenSSL's defaults (all AEAD).
    static constexpr const char* tls12_ciphers =
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
    if (SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1) fail("cannot set the TLS 1.2 cipher list");
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1);
    // Session tickets (on unless SSL_OP_NO_TICKET) give stateless resumption;
    // the server-side cache serves TLS 1.2 clients that resume by session id.
    SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    static constexpr unsigned char session_context[] = "otad";
    SSL_CTX_set_session_id_context(ctx, session_context, sizeof session_context - 1);
    SSL_CTX_set_num_tickets(ctx, 1);  // TLS 1.3: one ticket is enough for one-connection-per-range devices
    // Idle connections give their record buffers back (memory per idle connection).
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

    require_readable(tls.cert_file, "TLS certificate");
    require_readable(tls.key_file, "TLS private key");
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(ctx, tls.cert_file.c_str()) != 1)
        fail("cannot load TLS certificate '" + tls.cert_file.string() + "'");
    const std::string mismatch =
        "TLS private key '" + tls.key_file.string() + "' does not match certificate '" + tls.cert_file.string() + "'";
    if (SSL_CTX_use_PrivateKey_file(ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) fail(mismatch);
        fail("cannot load TLS private key '" + tls.key_file.string() + "'");
    }
    if (SSL_CTX_check_private_key(ctx) != 1) fail(mismatch);
}

namespace {

std::string name_text(const X509_NAME* name) {
    BioPtr out(BIO_new(BIO_s_mem()));
    if (!out || X509_NAME_print_ex(out.get(), name, 0, XN_FLAG_RFC2253) < 0) return {};
    return bio_to_string(out.get());
}

// `time` as unix seconds, through its distance from now (no timegm needed).
std::int64_t unix_time_of(const ASN1_TIME* time) {
    int days = 0;
    int seconds = 0;
    if (ASN1_TIME_diff(&days, &seconds, nullptr, time) != 1) fail("cannot read a certificate date");
    return util::unix_now() + static_cast<std::int64_t>(days) * 86'400 + seconds;
}

}  // namespace

CertificateInfo describe_certificate(SSL_CTX* ctx) {
    ERR_clear_error();
    X509* cert = SSL_CTX_get0_certificate(ctx);
    if (cert == nullptr) throw std::runtime_error("the TLS context has no certificate");
    CertificateInfo info;
    info.subject = name_text(X509_get_subject_name(cert));
    info.issuer = name_text(X509_get_issuer_name(cert));
    info.not_before = unix_time_of(X509_get0_notBefore(cert));
    info.not_after = unix_time_of(X509_get0_notAfter(cert));
    info.self_signed = X509_self_signed(cert, /*verify_signature=*/1) == 1;
    ERR_clear_error();
    return info;
}

}  // namespace detail

bool ensure_self_signed_certificate(const std::filesystem::path& cert_file, const std::filesystem::path& key_file,
                                    const std::vector<std::string>& host_names) {
    std::error_code ec;
    bool cert_exists = std::filesystem::exists(cert_file, ec);
    bool key_exists = std::filesystem::exists(key_file, ec);
    if (cert_exists && key_exists) return false;
    // Never overwrite a certificate whose key is missing: that is an operator mistake to fix by hand.
    if (cert_exists)
        throw std::runtime_error("TLS certificate '" + cert_file.string() + "' exists but its key '" +
                                 key_file.string() + "' does not; refusing to overwrite it");

    std::vector<std::string> names = host_names;
    if (names.empty()) names = {"localhost", "127.0.0.1", "::1"};
    std::string alt_names;
    for (const auto& name : names) {
        if (!alt_names.empty()) alt_names += ',';
        if (is_ip_literal(name))
            alt_names += "IP:" + name;
        else if (is_dns_name(name))
            alt_names += "DNS:" + name;
        else
            throw std::invalid_argument("'" + name + "' is neither a DNS name nor an IP address");
    }

    ERR_clear_error();
    PkeyPtr key;
    if (key_exists) {
        // A key without its certificate (an interrupted first start, or an operator's own key):
        // certify that key rather than replace it.
        BioPtr in(BIO_new_file(key_file.c_str(), "rb"));
        if (in) key.reset(PEM_read_bio_PrivateKey(in.get(), nullptr, nullptr, nullptr));
        if (!key) fail("cannot load TLS private key '" + key_file.string() + "'");
    } else {
        key.reset(EVP_EC_gen("P-256"));
        if (!key) fail("cannot generate an ECDSA P-256 key");
    }

    X509Ptr cert(X509_new());
    if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) fail("cannot create a certificate");
    unsigned char serial_bytes[16];
    if (RAND_bytes(serial_bytes, sizeof serial_bytes) != 1) fail("cannot draw a certificate serial number");
    serial_bytes[0] &= 0x7f;  // positive
    serial_bytes[0] |= 0x01;  // and never zero
    BnPtr serial(BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr));
    if (!serial || !BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())))
        fail("cannot set the certificate serial number");
    constexpr long ten_years = 3650L * 24 * 60 * 60;
    if (!X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(cert.get()), ten_years))
        fail("cannot set the certificate validity");
    if (X509_set_pubkey(cert.get(), key.get()) != 1) fail("cannot set the certificate key");
    X509_NAME* subject = X509_get_subject_name(cert.get());
    const std::string common_name = names.front().substr(0, 64);
    if (X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>("otad self-signed"), -1, -1, 0) != 1 ||
        X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8,
                                   reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0) != 1 ||
        X509_set_issuer_name(cert.get(), subject) != 1)
        fail("cannot set the certificate subject");
    add_extension(cert.get(), NID_basic_constraints, "critical,CA:FALSE");
    add_extension(cert.get(), NID_key_usage, "critical,digitalSignature");
    add_extension(cert.get(), NID_ext_key_usage, "serverAuth");
    add_extension(cert.get(), NID_subject_key_identifier, "hash");
    add_extension(cert.get(), NID_subject_alt_name, alt_names);
    if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) fail("cannot sign the certificate");

    BioPtr key_pem(BIO_new(BIO_s_mem()));
    BioPtr cert_pem(BIO_new(BIO_s_mem()));
    if (!key_pem || !cert_pem ||
        PEM_write_bio_PrivateKey(key_pem.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
        PEM_write_bio_X509(cert_pem.get(), cert.get()) != 1)
        fail("cannot encode the certificate and key as PEM");
    // The key first: a certificate on disk then always has its key beside it, and
    // an interrupted run leaves a key that the next run certifies (above).
    if (!key_exists) {
        std::string key_text = bio_to_string(key_pem.get());
        write_file_atomically(key_file, key_text, true);
        OPENSSL_cleanse(key_text.data(), key_text.size());
    }
    write_file_atomically(cert_file, bio_to_string(cert_pem.get()), false);
    return true;
}

}  // namespace otad::net
