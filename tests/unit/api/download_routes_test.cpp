// The download routes' handlers called directly (no sockets): authorization
// order, headers of every status, HEAD vs GET, Cache-Control decisions, and
// Content-Disposition for names the catalogue's API would refuse but the schema
// allows. Byte-exact transfers over real connections are in tests/e2e/test_downloads.py.

#include <gtest/gtest.h>

#include "../storage/storage_test_support.hpp"
#include "otad/api/problem.hpp"
#include "otad/api/routes.hpp"
#include "otad/domain/blob_cache.hpp"
#include "otad/domain/catalogue.hpp"
#include "otad/domain/url_signer.hpp"
#include "otad/storage/blob_store.hpp"
#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/device_key_repository.hpp"
#include "otad/storage/token_repository.hpp"
#include "otad/util/strings.hpp"

namespace {

using namespace otad;
using api::Method;
using api::Request;
using api::Response;

class DownloadRoutesTest : public storage::testing::MigratedDatabaseTest {
protected:
    void SetUp() override {
        MigratedDatabaseTest::SetUp();
        store = std::make_unique<storage::BlobStore>(dir.path());
        cache = std::make_unique<domain::BlobCache>(*db, *store);
        catalogue = std::make_unique<domain::Catalogue>(*db, *store, domain::CatalogueOptions{}, cache.get());
        services = std::make_unique<api::Services>(api::Services{config, *db, *store, *catalogue, *cache, signer});
        api::add_download_routes(router, *services);
    }

    std::string put_blob(const std::string& bytes) {
        auto writer = store->open_writer(1 << 20);
        writer.write(bytes);
        auto info = writer.commit();
        db->write([&](storage::Connection& c) { storage::CatalogueRepository(c).insert_blob(info.sha256, info.size); });
        md5s[info.sha256] = info.md5;
        sizes[info.sha256] = info.size;
        return info.sha256;
    }

    // product/version/filename -> sha; returns the product id.
    std::int64_t publish(const std::string& product, const std::string& version, const std::string& filename,
                         const std::string& sha, const std::string& chip = "esp32") {
        return db->write([&](storage::Connection& c) {
            storage::CatalogueRepository repo(c);
            auto p = repo.find_product(product);
            std::int64_t pid = p ? p->id : repo.create_product(product).id;
            auto r = repo.find_release(pid, version);
            std::int64_t rid = r ? r->id : repo.create_release(pid, version).id;
            storage::NewArtifact a;
            a.release_id = rid;
            a.chip = chip;
            a.filename = filename;
            a.sha256 = sha;
            a.md5 = md5s.at(sha);
            a.size = sizes.at(sha);
            repo.insert_artifact(a);
            return pid;
        });
    }

    Response call(Method method, const std::string& path, std::vector<std::pair<std::string, std::string>> headers = {},
                  std::vector<std::pair<std::string, std::string>> query = {}) {
        Request request;
        request.method = method;
        request.method_name = std::string(api::to_string(method));
        request.path = path;
        request.target = path;
        request.query = std::move(query);
        for (auto& [k, v] : headers) request.headers.add(k, v);
        auto match = router.match(method, path);
        if (match.kind != api::Router::Match::Kind::found) return api::problem(404, "not-found", "no route");
        request.params = match.params;
        try {
            return match.route->handler(request);
        } catch (const api::ProblemError& e) {
            return e.to_response();
        }
    }

    static std::string header(const Response& r, std::string_view name) {
        return std::string(r.headers.get(name).value_or("<absent>"));
    }

    static std::string body_text(const Response& r) {
        std::string out;
        for (const auto& part : r.body) {
            if (auto* s = std::get_if<std::string>(&part))
                out += *s;
            else {
                const auto& slice = std::get<api::FileSlice>(part);
                out += slice.file->bytes(slice.offset, slice.length);
            }
        }
        return out;
    }

    static std::string problem_type(const Response& r) {
        auto text = body_text(r);
        auto at = text.find("problems/");
        return at == std::string::npos ? "" : text.substr(at + 9, text.find('"', at) - at - 9);
    }

    config::Config config;
    domain::UrlSigner signer{"unit-test-secret", 3600, 86400};
    std::unique_ptr<storage::BlobStore> store;
    std::unique_ptr<domain::BlobCache> cache;
    std::unique_ptr<domain::Catalogue> catalogue;
    std::unique_ptr<api::Services> services;
    api::Router router;
    std::map<std::string, std::string> md5s;
    std::map<std::string, std::uint64_t> sizes;
};

TEST_F(DownloadRoutesTest, RoutesRunInlineAndCountAsDownloads) {
    for (const char* path : {"/api/v1/blobs/x", "/firmware/a/b/c"}) {
        auto match = router.match(Method::get, path);
        ASSERT_EQ(match.kind, api::Router::Match::Kind::found) << path;
        EXPECT_TRUE(match.route->options.runs_inline);
        EXPECT_TRUE(match.route->options.is_download);
        EXPECT_EQ(match.route->options.body, api::BodyPolicy::none);
    }
}

TEST_F(DownloadRoutesTest, FriendlyPathFullGetHeaders) {
    std::string sha = put_blob("0123456789");
    publish("lamp", "1.0", "lamp.bin", sha);
    auto r = call(Method::get, "/firmware/lamp/1.0/lamp.bin");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(body_text(r), "0123456789");
    EXPECT_EQ(header(r, "ETag"), "\"" + sha + "\"");
    EXPECT_EQ(header(r, "Accept-Ranges"), "bytes");
    EXPECT_EQ(header(r, "Content-Type"), "application/octet-stream");
    EXPECT_EQ(header(r, "Content-Disposition"), "attachment; filename=\"lamp.bin\"");
    EXPECT_EQ(header(r, "Cache-Control"), "public, max-age=300");
    EXPECT_EQ(header(r, "Content-Length"), "<absent>");  // net's job
    EXPECT_EQ(header(r, "Content-Encoding"), "<absent>");
    auto artifact = cache->artifact("lamp", "1.0", "lamp.bin").artifact;
    EXPECT_EQ(header(r, "Last-Modified"), util::http_date(artifact->created_at));
}

TEST_F(DownloadRoutesTest, HeadIgnoresRangeAndHasGetsHeaders) {
    std::string sha = put_blob("0123456789");
    publish("lamp", "1.0", "lamp.bin", sha);
    auto get = call(Method::get, "/firmware/lamp/1.0/lamp.bin");
    auto head = call(Method::head, "/firmware/lamp/1.0/lamp.bin", {{"Range", "bytes=0-1"}});
    EXPECT_EQ(head.status, 200u);
    EXPECT_EQ(head.headers.fields(), get.headers.fields());
    EXPECT_EQ(head.body_size(), 10u);  // net sends the length, not the body
}

TEST_F(DownloadRoutesTest, SingleMultiUnsatisfiableAndMalformedRanges) {
    std::string sha = put_blob("0123456789");
    publish("lamp", "1.0", "lamp.bin", sha);
    const std::string path = "/firmware/lamp/1.0/lamp.bin";
    auto single = call(Method::get, path, {{"Range", "bytes=8-10"}});  // IDF's one-past-the-end
    EXPECT_EQ(single.status, 206u);
    EXPECT_EQ(header(single, "Content-Range"), "bytes 8-9/10");
    EXPECT_EQ(body_text(single), "89");

    auto multi = call(Method::get, path, {{"Range", "bytes=0-1,-2"}});
    EXPECT_EQ(multi.status, 206u);
    std::string type = header(multi, "Content-Type");
    ASSERT_EQ(type.rfind("multipart/byteranges; boundary=", 0), 0u) << type;
    std::string boundary = type.substr(type.find('=') + 1);
    EXPECT_EQ(body_text(multi),
              "\r\n--" + boundary + "\r\nContent-Type: application/octet-stream\r\n" +
                  "Content-Range: bytes 0-1/10\r\n\r\n01\r\n--" + boundary +
                  "\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes 8-9/10\r\n\r\n89"
                  "\r\n--" +
                  boundary + "--\r\n");
    EXPECT_EQ(header(multi, "Content-Range"), "<absent>");

    auto unsatisfiable = call(Method::get, path, {{"Range", "bytes=10-"}});
    EXPECT_EQ(unsatisfiable.status, 416u);
    EXPECT_EQ(header(unsatisfiable, "Content-Range"), "bytes */10");
    EXPECT_EQ(header(unsatisfiable, "ETag"), "\"" + sha + "\"");

    auto malformed = call(Method::get, path, {{"Range", "bytes=5-1"}});
    EXPECT_EQ(malformed.status, 200u);
    EXPECT_EQ(body_text(malformed), "0123456789");
}

TEST_F(DownloadRoutesTest, ConditionalRequests) {
    std::string sha = put_blob("0123456789");
    publish("lamp", "1.0", "lamp.bin", sha);
    const std::string path = "/firmware/lamp/1.0/lamp.bin";
    const std::string etag = "\"" + sha + "\"";
    auto not_modified = call(Method::get, path, {{"If-None-Match", etag}});
    EXPECT_EQ(not_modified.status, 304u);
    EXPECT_TRUE(not_modified.body.empty());
    EXPECT_EQ(header(not_modified, "ETag"), etag);
    EXPECT_EQ(header(not_modified, "Cache-Control"), "public, max-age=300");

    auto failed = call(Method::get, path, {{"If-Match", "\"other\""}, {"Range", "bytes=0-0"}});
    EXPECT_EQ(failed.status, 412u);
    EXPECT_EQ(problem_type(failed), "precondition-failed");

    auto stale_range = call(Method::get, path, {{"If-Range", "\"other\""}, {"Range", "bytes=0-0"}});
    EXPECT_EQ(stale_range.status, 200u);
    EXPECT_EQ(body_text(stale_range), "0123456789");
    auto fresh_range = call(Method::get, path, {{"If-Range", etag}, {"Range", "bytes=0-0"}});
    EXPECT_EQ(fresh_range.status, 206u);
}

TEST_F(DownloadRoutesTest, EmptyImage) {
    std::string sha = put_blob("");
    publish("lamp", "1.0", "empty.bin", sha);
    auto full = call(Method::get, "/firmware/lamp/1.0/empty.bin");
    EXPECT_EQ(full.status, 200u);
    EXPECT_EQ(full.body_size(), 0u);
    auto ranged = call(Method::get, "/firmware/lamp/1.0/empty.bin", {{"Range", "bytes=0-"}});
    EXPECT_EQ(ranged.status, 416u);
    EXPECT_EQ(header(ranged, "Content-Range"), "bytes */0");
}

TEST_F(DownloadRoutesTest, PresignedUrls) {
    std::string sha = put_blob("abcdef");
    const std::string path = "/api/v1/blobs/" + sha;
    const std::int64_t now = util::unix_now();
    std::string expires = std::to_string(now + 100);
    std::string sig = domain::presign_signature("unit-test-secret", path, now + 100);
    auto ok = call(Method::get, path, {{"Range", "bytes=1-2"}}, {{"expires", expires}, {"sig", sig}});
    EXPECT_EQ(ok.status, 206u);
    EXPECT_EQ(body_text(ok), "bc");
    EXPECT_EQ(ok.principal, "presigned");
    std::string cc = header(ok, "Cache-Control");
    EXPECT_TRUE(cc == "public, max-age=100, immutable" || cc == "public, max-age=99, immutable") << cc;
    // No artifact uses it yet: the fallback name.
    EXPECT_EQ(header(ok, "Content-Disposition"), "attachment; filename=\"" + sha + ".bin\"");

    // Again: the signature is remembered, the answer the same.
    auto again = call(Method::get, path, {{"Range", "bytes=1-2"}}, {{"expires", expires}, {"sig", sig}});
    EXPECT_EQ(again.status, 206u);
    EXPECT_EQ(cache->stats().verified_urls, 1u);

    std::string old = std::to_string(now - 1);
    auto expired = call(Method::get, path, {},
                        {{"expires", old}, {"sig", domain::presign_signature("unit-test-secret", path, now - 1)}});
    EXPECT_EQ(expired.status, 403u);
    EXPECT_EQ(problem_type(expired), "url-expired");
    auto expired_again =
        call(Method::get, path, {},
             {{"expires", old}, {"sig", domain::presign_signature("unit-test-secret", path, now - 1)}});
    EXPECT_EQ(problem_type(expired_again), "url-expired");  // remembered signature, still expired
    auto forged = call(Method::get, path, {}, {{"expires", expires}, {"sig", sig.substr(1) + "A"}});
    EXPECT_EQ(forged.status, 403u);
    EXPECT_EQ(problem_type(forged), "url-invalid");
    auto other_blob =
        call(Method::get, "/api/v1/blobs/" + std::string(64, 'e'), {}, {{"expires", expires}, {"sig", sig}});
    EXPECT_EQ(other_blob.status, 403u);
    auto only_expires = call(Method::get, path, {}, {{"expires", expires}});
    EXPECT_EQ(only_expires.status, 403u);
    std::string missing_sha(64, 'd');
    auto missing =
        call(Method::get, "/api/v1/blobs/" + missing_sha, {},
             {{"expires", expires},
              {"sig", domain::presign_signature("unit-test-secret", "/api/v1/blobs/" + missing_sha, now + 100)}});
    EXPECT_EQ(missing.status, 404u);
}

TEST_F(DownloadRoutesTest, BlobRouteCredentials) {
    std::string sha = put_blob("abcdef");
    const std::string path = "/api/v1/blobs/" + sha;
    auto anonymous = call(Method::get, path);
    EXPECT_EQ(anonymous.status, 401u);  // no product uses it: no open door either
    EXPECT_EQ(header(anonymous, "WWW-Authenticate"), "Bearer realm=\"otad\"");

    auto token = db->write([&](storage::Connection& c) {
        return storage::TokenRepository(c).create("viewer", storage::TokenRole::viewer).secret;
    });
    auto op = call(Method::get, path, {{"Authorization", "Bearer " + token}});
    EXPECT_EQ(op.status, 200u);
    EXPECT_EQ(op.principal, "token:viewer");
    EXPECT_EQ(header(op, "Cache-Control"), "private, max-age=31536000, immutable");
    EXPECT_EQ(call(Method::get, path, {{"Authorization", "Bearer otad_unknown"}}).status, 401u);

    // Used by an open product: public.
    publish("open", "1.0", "o.bin", sha);
    cache->invalidate_product(std::string_view("open"));
    auto open = call(Method::get, path);
    EXPECT_EQ(open.status, 200u);
    EXPECT_EQ(header(open, "Cache-Control"), "public, max-age=31536000, immutable");
    EXPECT_EQ(header(open, "Content-Disposition"), "attachment; filename=\"o.bin\"");
}

TEST_F(DownloadRoutesTest, KeyedProductsNeedTheirKeyBeforeAnything) {
    std::string sha = put_blob("secret firmware");
    auto pid = publish("keyed", "1.0", "k.bin", sha);
    auto other = publish("other", "1.0", "x.bin", put_blob("other firmware"));
    db->write([&](storage::Connection& c) {
        storage::DeviceKeyRepository(c).create_with_secret(pid, "k1", "key-of-keyed-product");
        storage::DeviceKeyRepository(c).create_with_secret(other, "k2", "key-of-other-product");
    });
    EXPECT_EQ(call(Method::get, "/firmware/keyed/1.0/k.bin").status, 401u);
    EXPECT_EQ(call(Method::get, "/firmware/keyed/2.0/k.bin").status, 401u);  // not 404: no probing
    EXPECT_EQ(call(Method::get, "/firmware/keyed/1.0/k.bin", {{"Authorization", "Bearer key-of-other-product"}}).status,
              401u);
    auto ok = call(Method::get, "/firmware/keyed/1.0/k.bin", {{"Authorization", "token key-of-keyed-product"}});
    EXPECT_EQ(ok.status, 200u);
    EXPECT_EQ(ok.principal, "key:k1");
    EXPECT_EQ(header(ok, "Cache-Control"), "private, max-age=300");
    auto missing = call(Method::get, "/firmware/keyed/2.0/k.bin", {{"Authorization", "Bearer key-of-keyed-product"}});
    EXPECT_EQ(missing.status, 404u);

    const std::string blob = "/api/v1/blobs/" + sha;
    EXPECT_EQ(call(Method::get, blob).status, 401u);
    EXPECT_EQ(call(Method::get, blob, {{"Authorization", "Bearer key-of-other-product"}}).status, 401u);
    auto by_key = call(Method::get, blob, {}, {{"key", "key-of-keyed-product"}});
    EXPECT_EQ(by_key.status, 200u);
    EXPECT_EQ(by_key.principal, "key:k1");
    EXPECT_EQ(call(Method::get, "/firmware/nobody/1.0/k.bin").status, 404u);
}

TEST_F(DownloadRoutesTest, AmbiguousFileNameIsAConflict) {
    std::string a = put_blob("image for esp8266");
    std::string b = put_blob("image for esp8285");
    publish("plug", "1.0", "user1.bin", a, "esp8266");
    publish("plug", "1.0", "user1.bin", b, "esp8285");
    auto r = call(Method::get, "/firmware/plug/1.0/user1.bin");
    EXPECT_EQ(r.status, 409u);
    EXPECT_EQ(problem_type(r), "ambiguous-file");
}

TEST_F(DownloadRoutesTest, ContentDispositionEscapesOddNames) {
    std::string sha = put_blob("x");
    publish("odd", "1.0", "a\"b\\c\xc3\xa9.bin", sha);
    auto r = call(Method::get, "/firmware/odd/1.0/a\"b\\c\xc3\xa9.bin");
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(header(r, "Content-Disposition"),
              "attachment; filename=\"a\\\"b\\\\c__.bin\"; filename*=UTF-8''a%22b%5Cc%C3%A9.bin");
}

}  // namespace
