#include "otad/util/crypto.hpp"
#include "otad/util/strings.hpp"

#include <gtest/gtest.h>

namespace otad::util {
namespace {

TEST(Crypto, Sha256OfKnownVector) {
    EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Crypto, StreamingDigestEqualsOneShot) {
    Digest d("sha256");
    d.update(std::string_view("a"));
    d.update(std::string_view("bc"));
    EXPECT_EQ(to_hex(d.finish()), sha256_hex("abc"));
    Digest md5("md5");
    md5.update(std::string_view("abc"));
    EXPECT_EQ(to_hex(md5.finish()), "900150983cd24fb0d6963f7d28e17f72");
}

TEST(Crypto, HexRoundTripAndRejectsGarbage) {
    auto raw = from_hex("00ffA0");
    ASSERT_TRUE(raw);
    EXPECT_EQ(to_hex(*raw), "00ffa0");
    EXPECT_FALSE(from_hex("abc"));
    EXPECT_FALSE(from_hex("zz"));
}

TEST(Crypto, Base64RoundTrips) {
    for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
        auto enc = base64_encode(as_bytes(s));
        auto dec = base64_decode(enc);
        ASSERT_TRUE(dec) << s;
        EXPECT_EQ(std::string(dec->begin(), dec->end()), s);
        auto u = base64url_decode(base64url_encode(as_bytes(s)));
        ASSERT_TRUE(u);
        EXPECT_EQ(std::string(u->begin(), u->end()), s);
    }
    EXPECT_EQ(base64_encode(as_bytes("foobar")), "Zm9vYmFy");
    EXPECT_FALSE(base64_decode("Zm9v!mFy"));
    EXPECT_FALSE(base64_decode("Zm9"));
}

TEST(Crypto, HmacSha256Rfc4231Case2) {
    EXPECT_EQ(to_hex(hmac_sha256("Jefe", "what do ya want for nothing?")),
              "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Crypto, ConstantTimeEquals) {
    EXPECT_TRUE(constant_time_equals("secret", "secret"));
    EXPECT_FALSE(constant_time_equals("secret", "secreT"));
    EXPECT_FALSE(constant_time_equals("secret", "secret2"));
}

TEST(Crypto, RandomTokensDiffer) {
    EXPECT_NE(random_token(), random_token());
    EXPECT_EQ(random_token(32).size(), 43u);
}

TEST(Strings, ParseU64IsStrict) {
    EXPECT_EQ(parse_u64("42"), 42u);
    EXPECT_FALSE(parse_u64(""));
    EXPECT_FALSE(parse_u64("-1"));
    EXPECT_FALSE(parse_u64(" 1"));
    EXPECT_FALSE(parse_u64("99999999999999999999999"));
}

TEST(Strings, HttpDateRoundTrip) {
    EXPECT_EQ(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
    EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), 784111777);
    EXPECT_FALSE(parse_http_date("yesterday"));
    EXPECT_EQ(rfc3339(0), "1970-01-01T00:00:00Z");
}

}  // namespace
}  // namespace otad::util
