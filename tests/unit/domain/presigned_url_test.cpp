#include "otad/domain/presigned_url.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace otad::domain {
namespace {

constexpr std::string_view kSecret = "s3cret";
constexpr std::string_view kPath = "/d/artifacts/42/firmware.bin";
constexpr std::int64_t kExpires = 1700003600;
// Independently computed: printf '/d/artifacts/42/firmware.bin\n1700003600' |
//   openssl dgst -sha256 -hmac s3cret -binary | base64 | tr '+/' '-_' | tr -d '='
constexpr std::string_view kSig = "YlrWWAgXa1VMjy_J0qYmi_L9GZf7fSR_cPJGCwobvZY";

TEST(Presign, KnownAnswer) {
    EXPECT_EQ(presign_signature(kSecret, kPath, kExpires), kSig);
    EXPECT_EQ(presign(kSecret, kPath, kExpires), "expires=1700003600&sig=" + std::string(kSig));
}

TEST(Presign, RejectsEmptySecretAndNegativeExpiry) {
    EXPECT_THROW(presign("", kPath, kExpires), std::invalid_argument);
    EXPECT_THROW(presign(kSecret, kPath, -1), std::invalid_argument);
}

TEST(VerifyPresigned, OkBeforeExpiry) {
    EXPECT_EQ(verify_presigned(kSecret, kPath, "1700003600", kSig, kExpires - 1), PresignCheck::ok);
    EXPECT_EQ(verify_presigned(kSecret, kPath, "1700003600", kSig, 0), PresignCheck::ok);
}

TEST(VerifyPresigned, ExpiredAtAndAfterExpiry) {
    EXPECT_EQ(verify_presigned(kSecret, kPath, "1700003600", kSig, kExpires), PresignCheck::expired);
    EXPECT_EQ(verify_presigned(kSecret, kPath, "1700003600", kSig, kExpires + 86400), PresignCheck::expired);
}

TEST(VerifyPresigned, BadSignatureCases) {
    const std::int64_t now = kExpires - 10;
    EXPECT_EQ(verify_presigned("other", kPath, "1700003600", kSig, now), PresignCheck::bad_signature);
    EXPECT_EQ(verify_presigned(kSecret, "/d/artifacts/43/firmware.bin", "1700003600", kSig, now),
              PresignCheck::bad_signature);
    EXPECT_EQ(verify_presigned(kSecret, kPath, "1700003601", kSig, now), PresignCheck::bad_signature);  // extended
    EXPECT_EQ(verify_presigned(kSecret, kPath, "01700003600", kSig, now), PresignCheck::bad_signature);
    EXPECT_EQ(verify_presigned(kSecret, kPath, "+1700003600", kSig, now), PresignCheck::bad_signature);
    EXPECT_EQ(verify_presigned(kSecret, kPath, "1700003600 ", kSig, now), PresignCheck::bad_signature);
    EXPECT_EQ(verify_presigned(kSecret, kPath, "", kSig, now), PresignCheck::bad_signature);
    EXPECT_EQ(verify_presigned(kSecret, kPath, "99999999999999999999", kSig, now), PresignCheck::bad_signature);
    EXPECT_EQ(verify_presigned(kSecret, kPath, "1700003600", "", now), PresignCheck::bad_signature);
    EXPECT_EQ(verify_presigned(kSecret, kPath, "1700003600", std::string(kSig) + "=", now),
              PresignCheck::bad_signature);
    EXPECT_EQ(verify_presigned(kSecret, kPath, "1700003600", std::string(kSig).substr(1), now),
              PresignCheck::bad_signature);
    std::string flipped(kSig);
    flipped[5] = flipped[5] == 'A' ? 'B' : 'A';
    EXPECT_EQ(verify_presigned(kSecret, kPath, "1700003600", flipped, now), PresignCheck::bad_signature);
    EXPECT_EQ(verify_presigned("", kPath, "1700003600", kSig, now), PresignCheck::bad_signature);
}

TEST(VerifyPresigned, ForgedAndExpiredIsBadSignature) {
    // The signature is judged before the expiry.
    EXPECT_EQ(verify_presigned(kSecret, kPath, "1000", kSig, kExpires), PresignCheck::bad_signature);
}

TEST(VerifyPresigned, RoundTripOfPresign) {
    const std::string query = presign("k", "/x", 42);
    ASSERT_EQ(query.substr(0, 15), "expires=42&sig=");
    EXPECT_EQ(verify_presigned("k", "/x", "42", query.substr(15), 41), PresignCheck::ok);
    EXPECT_EQ(verify_presigned("k", "/x", "42", query.substr(15), 42), PresignCheck::expired);
    EXPECT_EQ(verify_presigned("k", "/x", "0", presign_signature("k", "/x", 0), -1), PresignCheck::ok);
}

TEST(PresignCheckNames, Strings) {
    EXPECT_EQ(to_string(PresignCheck::ok), "ok");
    EXPECT_EQ(to_string(PresignCheck::expired), "expired");
    EXPECT_EQ(to_string(PresignCheck::bad_signature), "bad_signature");
}

TEST(ExpiryWindowEnd, RoundsUpToWindowBoundary) {
    // ceil((now + min) / window) * window
    EXPECT_EQ(expiry_window_end(1000, 300, 600), 1800);  // 1600 -> 1800
    EXPECT_EQ(expiry_window_end(1001, 300, 600), 1800);
    EXPECT_EQ(expiry_window_end(1199, 300, 600), 1800);  // 1799 -> 1800
    EXPECT_EQ(expiry_window_end(1200, 300, 600), 1800);  // exactly on a boundary stays
    EXPECT_EQ(expiry_window_end(1201, 300, 600), 2100);
    EXPECT_EQ(expiry_window_end(1700000000, 3600, 86400), 1700089200);
}

TEST(ExpiryWindowEnd, SameWindowSameExpiryAndMinimumValidityHolds) {
    const std::int64_t window = 900, min_validity = 3600;
    const std::int64_t first = expiry_window_end(10'000'000, window, min_validity);
    for (std::int64_t now = 10'000'000; now < 10'000'000 + 3 * window; ++now) {
        const std::int64_t e = expiry_window_end(now, window, min_validity);
        EXPECT_EQ(e % window, 0) << now;
        EXPECT_GE(e - now, min_validity) << now;
        EXPECT_LT(e - now, min_validity + window) << now;
        if (now + min_validity <= first) {
            EXPECT_EQ(e, first) << now;
        }
    }
}

TEST(ExpiryWindowEnd, DegenerateInputs) {
    EXPECT_EQ(expiry_window_end(1000, 0, 60), 1060);  // no rounding
    EXPECT_EQ(expiry_window_end(1000, -5, 60), 1060);
    EXPECT_EQ(expiry_window_end(1000, 300, -60), 1200);  // negative minimum counts as 0
    EXPECT_EQ(expiry_window_end(1200, 300, 0), 1200);
    EXPECT_EQ(expiry_window_end(-1000, 300, 0), -900);  // ceil toward +inf for negatives
    constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
    EXPECT_EQ(expiry_window_end(kMax - 10, 300, 60), kMax);  // saturates
    EXPECT_EQ(expiry_window_end(kMax - 100, 1000, 0), kMax);
}

}  // namespace
}  // namespace otad::domain
