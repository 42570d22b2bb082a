#include "otad/domain/signing.hpp"

#include "otad/util/crypto.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace otad::domain {
namespace {

namespace fs = std::filesystem;

const std::string kBody = R"({"version":"1.2.3","url":"https://ota.example/a/1","sha256":"00ff"})";

std::string tampered(std::string s) {
    s[s.size() / 2] ^= 0x01;
    return s;
}

class SigningBothAlgorithms : public ::testing::TestWithParam<SignatureAlgorithm> {};

TEST_P(SigningBothAlgorithms, SignVerifyRoundTrip) {
    const SigningKey key = SigningKey::generate(GetParam());
    EXPECT_EQ(key.algorithm(), GetParam());
    const auto sig = key.sign(kBody);
    EXPECT_TRUE(key.verify(kBody, sig));
    EXPECT_TRUE(key.verifying_key().verify(kBody, sig));
    if (GetParam() == SignatureAlgorithm::ed25519) {
        EXPECT_EQ(sig.size(), 64u);
        EXPECT_EQ(key.sign(kBody), sig);  // Ed25519 is deterministic
    } else {
        // DER SEQUENCE { INTEGER r, INTEGER s }
        ASSERT_GE(sig.size(), 8u);
        EXPECT_LE(sig.size(), 72u);
        EXPECT_EQ(sig[0], 0x30);
        EXPECT_EQ(sig[1], sig.size() - 2);
        EXPECT_EQ(sig[2], 0x02);
    }
}

TEST_P(SigningBothAlgorithms, TamperedBodyOrSignatureFails) {
    const SigningKey key = SigningKey::generate(GetParam());
    const auto sig = key.sign(kBody);
    EXPECT_FALSE(key.verify(tampered(kBody), sig));
    EXPECT_FALSE(key.verify(kBody + " ", sig));
    EXPECT_FALSE(key.verify("", sig));
    auto bad_sig = sig;
    bad_sig[bad_sig.size() - 1] ^= 0x01;
    EXPECT_FALSE(key.verify(kBody, bad_sig));
    EXPECT_FALSE(key.verify(kBody, std::span(sig).first(sig.size() - 1)));
    EXPECT_FALSE(key.verify(kBody, std::span<const unsigned char>{}));
    // Another key of the same kind does not accept it.
    EXPECT_FALSE(SigningKey::generate(GetParam()).verify(kBody, sig));
}

TEST_P(SigningBothAlgorithms, PemRoundTrip) {
    const SigningKey key = SigningKey::generate(GetParam());
    const std::string priv = key.private_pem();
    const std::string pub = key.public_pem();
    EXPECT_EQ(priv.rfind("-----BEGIN PRIVATE KEY-----\n", 0), 0u) << "PKCS#8 expected";
    EXPECT_EQ(pub.rfind("-----BEGIN PUBLIC KEY-----\n", 0), 0u) << "SubjectPublicKeyInfo expected";

    const SigningKey reloaded = SigningKey::from_private_pem(priv);
    EXPECT_EQ(reloaded.algorithm(), GetParam());
    EXPECT_EQ(reloaded.key_id(), key.key_id());
    EXPECT_EQ(reloaded.private_pem(), priv);
    EXPECT_EQ(reloaded.public_pem(), pub);

    const VerifyingKey pub_only = VerifyingKey::from_public_pem(pub);
    EXPECT_EQ(pub_only.algorithm(), GetParam());
    EXPECT_EQ(pub_only.key_id(), key.key_id());
    EXPECT_EQ(pub_only.public_pem(), pub);
    // Signatures cross between the original, reloaded and public-only keys.
    EXPECT_TRUE(pub_only.verify(kBody, reloaded.sign(kBody)));
    EXPECT_TRUE(reloaded.verify(kBody, key.sign(kBody)));
}

TEST_P(SigningBothAlgorithms, KeyIdIsSha256PrefixOfSpki) {
    const SigningKey key = SigningKey::generate(GetParam());
    const auto der = key.verifying_key().public_der();
    const std::string expected =
        util::sha256_hex(std::string_view(reinterpret_cast<const char*>(der.data()), der.size())).substr(0, 16);
    EXPECT_EQ(key.key_id(), expected);
    EXPECT_EQ(key.key_id().size(), 16u);
    EXPECT_EQ(key_id_for_public_der(der), expected);
    EXPECT_NE(SigningKey::generate(GetParam()).key_id(), key.key_id());
}

TEST_P(SigningBothAlgorithms, HeaderFormatAndParse) {
    const SigningKey key = SigningKey::generate(GetParam());
    const std::string value = signature_header_value(key, kBody);
    const std::string prefix = "keyid=" + key.key_id() + ",alg=" + std::string(to_string(GetParam())) + ",sig=";
    ASSERT_EQ(value.rfind(prefix, 0), 0u) << value;
    auto parsed = parse_signature_header(value);
    ASSERT_TRUE(parsed);
    EXPECT_EQ(parsed->key_id, key.key_id());
    EXPECT_EQ(parsed->algorithm, GetParam());
    EXPECT_TRUE(key.verify(kBody, parsed->signature));
    EXPECT_EQ(util::base64_encode(parsed->signature), value.substr(prefix.size()));
}

INSTANTIATE_TEST_SUITE_P(Algorithms, SigningBothAlgorithms,
                         ::testing::Values(SignatureAlgorithm::es256, SignatureAlgorithm::ed25519),
                         [](const auto& info) { return std::string(to_string(info.param)); });

TEST(SigningHeader, KnownValue) {
    const std::vector<unsigned char> sig = {0x01, 0x02, 0x03, 0xfe};
    EXPECT_EQ(format_signature_header("0123456789abcdef", SignatureAlgorithm::es256, sig),
              "keyid=0123456789abcdef,alg=es256,sig=AQID/g==");
    EXPECT_EQ(kSignatureHeader, "X-Otad-Signature");
}

TEST(SigningHeader, ParseRejectsMalformed) {
    EXPECT_TRUE(parse_signature_header("keyid=ab,alg=ed25519,sig=AQID/g=="));
    EXPECT_TRUE(parse_signature_header("sig=AQID/g==, alg=es256 ,keyid=ab"));
    for (const char* bad :
         {"", "keyid=ab,alg=es256", "keyid=ab,alg=rs256,sig=AQID", "keyid=ab,alg=es256,sig=!!!!",
          "keyid=,alg=es256,sig=AQID", "keyid=ab,alg=es256,sig=AQID,keyid=cd", "keyid=ab,alg=es256,sig=AQID,extra=1",
          "keyid=ab,alg=es256,sig=", "keyid=ab;alg=es256;sig=AQID", "keyid=ab,alg=es256,sig=AQID,"}) {
        EXPECT_FALSE(parse_signature_header(bad)) << bad;
    }
}

TEST(SigningAlgorithmNames, ParseAndPrint) {
    EXPECT_EQ(parse_signature_algorithm("es256"), SignatureAlgorithm::es256);
    EXPECT_EQ(parse_signature_algorithm("ed25519"), SignatureAlgorithm::ed25519);
    EXPECT_FALSE(parse_signature_algorithm("ES256"));
    EXPECT_FALSE(parse_signature_algorithm("rs256"));
}

TEST(SigningImport, RejectsGarbageAndUnsupportedKeys) {
    EXPECT_THROW(SigningKey::from_private_pem("not a pem"), SigningError);
    EXPECT_THROW(VerifyingKey::from_public_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
                 SigningError);
    // A public key is not a private key.
    const auto key = SigningKey::generate(SignatureAlgorithm::es256);
    EXPECT_THROW(SigningKey::from_private_pem(key.public_pem()), SigningError);

    // Truncated base64 inside valid armour must not crash either.
    EXPECT_THROW(SigningKey::from_private_pem(
                     "-----BEGIN PRIVATE KEY-----\nMIG2AgEAMBAGByqGSM49AgEG\n-----END PRIVATE KEY-----\n"),
                 SigningError);
}

// ---- interoperability with the openssl command line ----

struct TempDir {
    fs::path path;
    TempDir() {
        path = fs::temp_directory_path() / ("otad-signing-" + util::random_token(9));
        fs::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

void write_file(const fs::path& p, std::string_view bytes) {
    std::ofstream out(p, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good()) << p;
}

std::string read_file(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct CommandResult {
    int exit_code;
    std::string output;
};

// Runs a shell command with stdout+stderr captured in a file of the temp dir.
CommandResult run(const TempDir& dir, const std::string& command) {
    const fs::path out = dir.path / "out.txt";
    const std::string full = command + " > '" + out.string() + "' 2>&1";
    const int status = std::system(full.c_str());
    const int code = (status != -1 && WIFEXITED(status)) ? WEXITSTATUS(status) : -1;
    return {code, read_file(out)};
}

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

TEST(SigningOpensslCli, Es256DerSignatureVerifiesWithOpensslDgst) {
    TempDir dir;
    const auto key = SigningKey::generate(SignatureAlgorithm::es256);
    write_file(dir.path / "pub.pem", key.public_pem());
    write_file(dir.path / "body", kBody);
    write_file(dir.path / "tampered", tampered(kBody));
    const auto sig = key.sign(kBody);
    write_file(dir.path / "sig.der", std::string_view(reinterpret_cast<const char*>(sig.data()), sig.size()));

    const std::string verify =
        "openssl dgst -sha256 -verify " + q(dir.path / "pub.pem") + " -signature " + q(dir.path / "sig.der") + " ";
    auto good = run(dir, verify + q(dir.path / "body"));
    EXPECT_EQ(good.exit_code, 0) << good.output;
    EXPECT_EQ(good.output, "Verified OK\n");

    auto bad = run(dir, verify + q(dir.path / "tampered"));
    EXPECT_EQ(bad.exit_code, 1) << bad.output;
    EXPECT_NE(bad.output.find("Verification failure"), std::string::npos) << bad.output;
    EXPECT_EQ(bad.output.find("Verified OK"), std::string::npos) << bad.output;
}

TEST(SigningOpensslCli, Ed25519SignatureVerifiesWithOpensslPkeyutl) {
    TempDir dir;
    const auto key = SigningKey::generate(SignatureAlgorithm::ed25519);
    write_file(dir.path / "pub.pem", key.public_pem());
    write_file(dir.path / "body", kBody);
    write_file(dir.path / "tampered", tampered(kBody));
    const auto sig = key.sign(kBody);
    write_file(dir.path / "sig", std::string_view(reinterpret_cast<const char*>(sig.data()), sig.size()));

    const std::string verify = "openssl pkeyutl -verify -pubin -inkey " + q(dir.path / "pub.pem") +
                               " -rawin -sigfile " + q(dir.path / "sig") + " -in ";
    auto good = run(dir, verify + q(dir.path / "body"));
    EXPECT_EQ(good.exit_code, 0) << good.output;
    EXPECT_EQ(good.output, "Signature Verified Successfully\n");

    auto bad = run(dir, verify + q(dir.path / "tampered"));
    EXPECT_EQ(bad.exit_code, 1) << bad.output;
    EXPECT_NE(bad.output.find("Signature Verification Failure"), std::string::npos) << bad.output;
}

TEST(SigningOpensslCli, KeysMadeByOpensslImportAndSignatureVerifies) {
    TempDir dir;
    auto gen = run(
        dir, "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + q(dir.path / "ec.pem") +
                 " && openssl genpkey -algorithm ED25519 -out " + q(dir.path / "ed.pem") +
                 " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out " + q(dir.path / "p384.pem") +
                 " && openssl pkey -in " + q(dir.path / "ec.pem") + " -pubout -out " + q(dir.path / "ec.pub"));
    ASSERT_EQ(gen.exit_code, 0) << gen.output;

    const auto ec = SigningKey::from_private_pem(read_file(dir.path / "ec.pem"));
    EXPECT_EQ(ec.algorithm(), SignatureAlgorithm::es256);
    EXPECT_EQ(ec.public_pem(), read_file(dir.path / "ec.pub"));
    const auto ed = SigningKey::from_private_pem(read_file(dir.path / "ed.pem"));
    EXPECT_EQ(ed.algorithm(), SignatureAlgorithm::ed25519);
    EXPECT_TRUE(ed.verify(kBody, ed.sign(kBody)));

    try {
        SigningKey::from_private_pem(read_file(dir.path / "p384.pem"));
        ADD_FAILURE() << "P-384 key accepted";
    } catch (const SigningError& e) {
        EXPECT_EQ(std::string(e.what()), "EC key on curve secp384r1 is not supported; use P-256 (es256)");
    }

    // A signature made by the openssl CLI verifies here (DER in, DER out).
    write_file(dir.path / "body", kBody);
    auto sig = run(dir, "openssl dgst -sha256 -sign " + q(dir.path / "ec.pem") + " -out " + q(dir.path / "cli.sig") +
                            " " + q(dir.path / "body"));
    ASSERT_EQ(sig.exit_code, 0) << sig.output;
    const std::string cli_sig = read_file(dir.path / "cli.sig");
    EXPECT_TRUE(ec.verify(kBody, util::as_bytes(cli_sig)));
    EXPECT_FALSE(ec.verify(tampered(kBody), util::as_bytes(cli_sig)));
}

}  // namespace
}  // namespace otad::domain
