// Every route says whether it takes a body, and the routes that take one check
// their caller before net reads it (RouteOptions::authorize).

#include <gtest/gtest.h>

#include "../storage/storage_test_support.hpp"
#include "otad/api/problem.hpp"
#include "otad/api/routes.hpp"
#include "otad/domain/blob_cache.hpp"
#include "otad/domain/catalogue.hpp"
#include "otad/domain/url_signer.hpp"
#include "otad/storage/blob_store.hpp"
#include "otad/storage/token_repository.hpp"

namespace {

using namespace otad;
using api::BodyPolicy;
using api::Method;

class RouteBodyPolicyTest : public storage::testing::MigratedDatabaseTest {
protected:
    void SetUp() override {
        MigratedDatabaseTest::SetUp();
        store = std::make_unique<storage::BlobStore>(dir.path());
        cache = std::make_unique<domain::BlobCache>(*db, *store);
        catalogue = std::make_unique<domain::Catalogue>(*db, *store, domain::CatalogueOptions{}, cache.get());
        services = std::make_unique<api::Services>(api::Services{config, *db, *store, *catalogue, *cache, signer});
        router = api::build_router(*services);
    }

    std::string token(storage::TokenRole role, const char* name) {
        return db->write([&](storage::Connection& c) { return storage::TokenRepository(c).create(name, role).secret; });
    }

    // The pre-body hook's verdict for `method path` with `bearer` (empty: none): 0 when it lets the request on.
    unsigned pre_body_status(Method method, const std::string& path, const std::string& bearer) {
        auto match = router.match(method, path);
        EXPECT_EQ(match.kind, api::Router::Match::Kind::found) << path;
        if (match.kind != api::Router::Match::Kind::found) return 999;
        api::Request request;
        request.method = method;
        request.path = path;
        request.params = match.params;
        if (!bearer.empty()) request.headers.add("Authorization", "Bearer " + bearer);
        if (!match.route->options.authorize) return 998;
        try {
            auto refusal = match.route->options.authorize(request);
            return refusal ? refusal->status : 0;
        } catch (const api::ProblemError& e) {
            return e.status();
        }
    }

    config::Config config;
    domain::UrlSigner signer{"unit-test-secret", 3600, 86400};
    std::unique_ptr<storage::BlobStore> store;
    std::unique_ptr<domain::BlobCache> cache;
    std::unique_ptr<domain::Catalogue> catalogue;
    std::unique_ptr<api::Services> services;
    api::Router router;
};

TEST_F(RouteBodyPolicyTest, OnlyRoutesThatWriteTakeABodyAndTheyCheckTheCallerFirst) {
    ASSERT_FALSE(router.routes().empty());
    for (const auto& route : router.routes()) {
        const bool writes =
            route.method == Method::post || route.method == Method::put || route.method == Method::patch;
        if (writes) {
            EXPECT_NE(route.options.body, BodyPolicy::none) << route.pattern;
            EXPECT_TRUE(static_cast<bool>(route.options.authorize)) << route.pattern;
            EXPECT_FALSE(route.options.runs_inline) << route.pattern << ": its hook reads the database";
        } else {
            EXPECT_EQ(route.options.body, BodyPolicy::none) << route.pattern;
        }
    }
    auto upload = router.match(Method::post, "/api/v1/products/p/releases/1.0/artifacts");
    ASSERT_EQ(upload.kind, api::Router::Match::Kind::found);
    EXPECT_EQ(upload.route->options.body, BodyPolicy::streamed);
    auto channel = router.match(Method::put, "/api/v1/products/p/channels/stable");
    ASSERT_EQ(channel.kind, api::Router::Match::Kind::found);
    EXPECT_EQ(channel.route->options.body, BodyPolicy::buffered);
}

TEST_F(RouteBodyPolicyTest, OperatorHooksAskForTheHandlersRole) {
    const auto viewer = token(storage::TokenRole::viewer, "v");
    const auto uploader = token(storage::TokenRole::uploader, "u");
    const auto admin = token(storage::TokenRole::admin, "a");
    const std::string upload = "/api/v1/products/p/releases/1.0/artifacts";
    EXPECT_EQ(pre_body_status(Method::post, upload, ""), 401u);
    EXPECT_EQ(pre_body_status(Method::post, upload, "not-a-token"), 401u);
    EXPECT_EQ(pre_body_status(Method::post, upload, viewer), 403u);
    EXPECT_EQ(pre_body_status(Method::post, upload, uploader), 0u);
    EXPECT_EQ(pre_body_status(Method::post, upload, admin), 0u);
    for (auto [method, path] : {std::pair{Method::put, "/api/v1/products/p/channels/stable"},
                                std::pair{Method::patch, "/api/v1/products/p"}}) {
        EXPECT_EQ(pre_body_status(method, path, ""), 401u) << path;
        EXPECT_EQ(pre_body_status(method, path, uploader), 403u) << path;
        EXPECT_EQ(pre_body_status(method, path, admin), 0u) << path;
    }
}

}  // namespace
