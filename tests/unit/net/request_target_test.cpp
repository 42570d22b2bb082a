#include "otad/net/request_target.hpp"

#include <gtest/gtest.h>

namespace otad::net {
namespace {

using Query = std::vector<std::pair<std::string, std::string>>;

TEST(RequestTarget, DecodesPathAndQuery) {
    auto t = parse_request_target("/v1/device/rom/?action=download_rom&version=v1.0%2B2&filename=user2.bin&x=a+b");
    ASSERT_TRUE(t.ok) << t.error;
    EXPECT_EQ(t.path, "/v1/device/rom/");
    EXPECT_EQ(t.query,
              (Query{{"action", "download_rom"}, {"version", "v1.0+2"}, {"filename", "user2.bin"}, {"x", "a b"}}));
}

TEST(RequestTarget, PercentDecodesPathSegmentsButKeepsPlus) {
    auto t = parse_request_target("/files/a%20b+c");
    ASSERT_TRUE(t.ok);
    EXPECT_EQ(t.path, "/files/a b+c");
    EXPECT_TRUE(t.query.empty());
}

TEST(RequestTarget, RootAndEmptyQueryAndFlags) {
    auto root = parse_request_target("/");
    ASSERT_TRUE(root.ok);
    EXPECT_EQ(root.path, "/");
    auto flags = parse_request_target("/x?&flag&y=");
    ASSERT_TRUE(flags.ok);
    EXPECT_EQ(flags.query, (Query{{"flag", ""}, {"y", ""}}));
}

TEST(RequestTarget, AcceptsAbsoluteForm) {
    auto t = parse_request_target("http://192.168.1.10:8080/fw/user1.bin?v=2");
    ASSERT_TRUE(t.ok) << t.error;
    EXPECT_EQ(t.path, "/fw/user1.bin");
    EXPECT_EQ(t.query, (Query{{"v", "2"}}));
    auto bare = parse_request_target("http://host");
    ASSERT_TRUE(bare.ok);
    EXPECT_EQ(bare.path, "/");
}

TEST(RequestTarget, RefusesConfusingPaths) {
    EXPECT_FALSE(parse_request_target("/a/../etc/passwd").ok);
    EXPECT_FALSE(parse_request_target("/a/%2e%2e/b").ok);
    EXPECT_FALSE(parse_request_target("/a/./b").ok);
    EXPECT_FALSE(parse_request_target("/a%2Fb").ok);
    EXPECT_FALSE(parse_request_target("/a%00b").ok);
    EXPECT_FALSE(parse_request_target("*").ok);
    EXPECT_FALSE(parse_request_target("").ok);
    EXPECT_FALSE(parse_request_target("/bad path").ok);
    EXPECT_FALSE(parse_request_target("/a%zz").ok);
}

TEST(PercentDecode, KeepsMalformedEscapes) {
    EXPECT_EQ(percent_decode("%41%4a%zz%4", false), "AJ%zz%4");
    EXPECT_EQ(percent_decode("a+b", true), "a b");
    EXPECT_EQ(percent_decode("a+b", false), "a+b");
}

}  // namespace
}  // namespace otad::net
