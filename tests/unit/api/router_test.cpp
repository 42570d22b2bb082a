#include "otad/api/router.hpp"

#include <gtest/gtest.h>

namespace otad::api {
namespace {

Response ok(Request&) { return Response{}; }

TEST(Router, MatchesLiteralAndCapturesSegments) {
    Router r;
    r.add(Method::get, "/api/v1/products/{product}/releases/{version}", ok);
    auto m = r.match(Method::get, "/api/v1/products/thermo/releases/1.2.0");
    ASSERT_EQ(m.kind, Router::Match::Kind::found);
    EXPECT_EQ(m.params.at("product"), "thermo");
    EXPECT_EQ(m.params.at("version"), "1.2.0");
}

TEST(Router, ARouteTakesNoBodyAndHasNoPreBodyHookUnlessItSaysSo) {
    Router r;
    r.add(Method::get, "/a", ok);
    r.add(Method::post, "/b", ok, {.body = BodyPolicy::buffered});
    EXPECT_EQ(r.match(Method::get, "/a").route->options.body, BodyPolicy::none);
    EXPECT_FALSE(r.match(Method::get, "/a").route->options.authorize);
    EXPECT_EQ(r.match(Method::post, "/b").route->options.body, BodyPolicy::buffered);
}

TEST(Router, UnknownPathIsNotFound) {
    Router r;
    r.add(Method::get, "/healthz", ok);
    EXPECT_EQ(r.match(Method::get, "/nope").kind, Router::Match::Kind::not_found);
    EXPECT_EQ(r.match(Method::get, "/healthz/extra").kind, Router::Match::Kind::not_found);
    EXPECT_EQ(r.match(Method::get, "/api/v1/products//releases").kind, Router::Match::Kind::not_found);
}

TEST(Router, WrongMethodListsAllowedIncludingHeadForGet) {
    Router r;
    r.add(Method::get, "/x/{id}", ok);
    r.add(Method::del, "/x/{id}", ok);
    auto m = r.match(Method::post, "/x/1");
    ASSERT_EQ(m.kind, Router::Match::Kind::method_not_allowed);
    EXPECT_EQ(m.allowed, (std::vector<Method>{Method::get, Method::del, Method::head}));
}

TEST(Router, HeadFallsBackToGet) {
    Router r;
    r.add(Method::get, "/blob/{sha}", ok);
    auto m = r.match(Method::head, "/blob/abc");
    ASSERT_EQ(m.kind, Router::Match::Kind::found);
    EXPECT_EQ(m.route->method, Method::get);
    EXPECT_EQ(m.params.at("sha"), "abc");
}

TEST(Headers, CaseInsensitiveGetSetErase) {
    Headers h;
    h.add("Content-Type", "a");
    h.add("X-Two", "1");
    h.add("x-two", "2");
    EXPECT_EQ(h.get("content-type").value(), "a");
    EXPECT_EQ(h.get("X-TWO").value(), "1");
    h.set("X-Two", "3");
    EXPECT_EQ(h.fields().size(), 2u);
    EXPECT_EQ(h.get("x-two").value(), "3");
    h.erase("CONTENT-TYPE");
    EXPECT_FALSE(h.has("Content-Type"));
}

TEST(Response, BodySizeSumsStringsAndSlices) {
    Response r;
    r.body.emplace_back(std::string("abc"));
    r.body.emplace_back(FileSlice{nullptr, 10, 90});
    EXPECT_EQ(r.body_size(), 93u);
}

}  // namespace
}  // namespace otad::api
