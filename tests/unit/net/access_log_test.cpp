#include "otad/net/access_log.hpp"

#include <gtest/gtest.h>

#include "net_test_support.hpp"

namespace otad::net {
namespace {

TEST(RedactTarget, ReplacesSecretValuesOnly) {
    EXPECT_EQ(redact_target("/fw?key=abc&version=1.2&token=t0k"), "/fw?key=REDACTED&version=1.2&token=REDACTED");
    EXPECT_EQ(redact_target("/d?sig=1&signature=2&access_token=3&expires=99"),
              "/d?sig=REDACTED&signature=REDACTED&access_token=REDACTED&expires=99");
    // Names are matched case-insensitively and after percent-decoding.
    EXPECT_EQ(redact_target("/d?Token=x&%6Bey=y&keys=z"), "/d?Token=REDACTED&%6Bey=REDACTED&keys=z");
    // Unchanged when there is nothing to hide.
    EXPECT_EQ(redact_target("/plain/path"), "/plain/path");
    EXPECT_EQ(redact_target("/p?"), "/p?");
    EXPECT_EQ(redact_target("/p?a=1&&b=2&token"), "/p?a=1&&b=2&token");
    EXPECT_EQ(redact_target("/p?token=&x=1"), "/p?token=REDACTED&x=1");
}

TEST(LogAccess, WritesOneEventWithAllFieldsAndNoSecret) {
    auto sink = std::make_shared<test::CaptureSink>();
    spdlog::logger log("access-unit", sink);
    log_access(log, AccessLogEntry{"10.0.0.1:5000", "GET", "/v1/device/rom/?action=download_rom&key=deadbeef", 200,
                                   1234, 17, "device-7", true, 10});
    auto lines = sink->lines();
    ASSERT_EQ(lines.size(), 1u);
    EXPECT_EQ(lines[0],
              "request remote=10.0.0.1:5000 method=GET target=\"/v1/device/rom/?action=download_rom&key=REDACTED\" "
              "status=200 bytes=1234 duration_ms=17 principal=device-7 tls=true version=1.0");
}

TEST(LogAccess, UnparsedRequestLineIsDashed) {
    auto sink = std::make_shared<test::CaptureSink>();
    spdlog::logger log("access-unit-2", sink);
    log_access(log, AccessLogEntry{"1.2.3.4:1", "", "", 400, 0, 0, "", false, 11});
    ASSERT_EQ(sink->lines().size(), 1u);
    EXPECT_NE(sink->lines()[0].find("method=- target=- status=400"), std::string::npos) << sink->lines()[0];
}

}  // namespace
}  // namespace otad::net
