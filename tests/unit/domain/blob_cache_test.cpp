#include "otad/domain/blob_cache.hpp"

#include <atomic>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

#include "../storage/storage_test_support.hpp"
#include "otad/storage/blob_store.hpp"
#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/database.hpp"
#include "otad/util/strings.hpp"

namespace {

using otad::domain::ArtifactLookup;
using otad::domain::BlobCache;
using otad::domain::BlobCacheOptions;
using namespace otad::storage;

class BlobCacheTest : public otad::storage::testing::MigratedDatabaseTest {
protected:
    void SetUp() override {
        MigratedDatabaseTest::SetUp();
        store = std::make_unique<BlobStore>(dir.path());
    }

    // Stores `bytes` as a blob (file and row) and returns its SHA-256.
    std::string put_blob(const std::string& bytes) {
        auto writer = store->open_writer(1 << 20);
        writer.write(bytes);
        auto info = writer.commit();
        db->write([&](Connection& c) { CatalogueRepository(c).insert_blob(info.sha256, info.size); });
        md5s[info.sha256] = info.md5;
        sizes[info.sha256] = info.size;
        return info.sha256;
    }

    std::int64_t product(const std::string& name) {
        return db->write([&](Connection& c) { return CatalogueRepository(c).create_product(name).id; });
    }

    std::int64_t release(std::int64_t product_id, const std::string& version) {
        return db->write([&](Connection& c) { return CatalogueRepository(c).create_release(product_id, version).id; });
    }

    std::int64_t artifact(std::int64_t release_id, const std::string& sha, const std::string& filename,
                          const std::string& chip = "esp32") {
        NewArtifact a;
        a.release_id = release_id;
        a.chip = chip;
        a.filename = filename;
        a.sha256 = sha;
        a.md5 = md5s.at(sha);
        a.size = sizes.at(sha);
        return db->write([&](Connection& c) { return CatalogueRepository(c).insert_artifact(a).id; });
    }

    std::unique_ptr<BlobStore> store;
    std::map<std::string, std::string> md5s;
    std::map<std::string, std::uint64_t> sizes;
};

TEST_F(BlobCacheTest, UnknownOrInvalidNamesAreNull) {
    BlobCache cache(*db, *store);
    EXPECT_EQ(cache.blob(std::string(64, 'a')), nullptr);
    EXPECT_EQ(cache.blob("../../etc/passwd"), nullptr);
    EXPECT_EQ(cache.blob(std::string(64, 'A')), nullptr);  // upper case is not a blob name
    EXPECT_EQ(cache.stats().blobs, 0u);
}

TEST_F(BlobCacheTest, BlobCarriesBytesValidatorsAndUsers) {
    std::string bytes = "firmware image bytes";
    std::string sha = put_blob(bytes);
    auto p1 = product("alpha");
    auto p2 = product("beta");
    artifact(release(p2, "1.0"), sha, "b.bin");
    artifact(release(p1, "1.0"), sha, "a.bin");
    artifact(release(p1, "1.1"), sha, "b.bin");

    BlobCache cache(*db, *store);
    auto blob = cache.blob(sha);
    ASSERT_NE(blob, nullptr);
    EXPECT_EQ(blob->sha256, sha);
    EXPECT_EQ(blob->size, bytes.size());
    EXPECT_EQ(blob->file->bytes(0, blob->size), bytes);
    EXPECT_EQ(blob->etag, "\"" + sha + "\"");
    auto created = db->read([&](Connection& c) { return CatalogueRepository(c).find_blob(sha)->created_at; });
    EXPECT_EQ(blob->created_at, created);
    EXPECT_EQ(blob->last_modified, otad::util::http_date(created));
    EXPECT_EQ(blob->filenames, (std::vector<std::string>{"b.bin", "a.bin"}));  // oldest artifact first, no repeats
    EXPECT_EQ(blob->product_ids, (std::vector<std::int64_t>{std::min(p1, p2), std::max(p1, p2)}));
}

TEST_F(BlobCacheTest, SecondLookupIsAHitWithoutReopening) {
    std::string sha = put_blob("abc");
    BlobCache cache(*db, *store);
    auto first = cache.blob(sha);
    auto second = cache.blob(sha);
    EXPECT_EQ(first, second);  // the very same entry
    auto s = cache.stats();
    EXPECT_EQ(s.misses, 1u);
    EXPECT_EQ(s.hits, 1u);
    EXPECT_EQ(s.files_opened, 1u);
    EXPECT_EQ(s.blobs, 1u);
}

TEST_F(BlobCacheTest, EmptyBlobIsServable) {
    std::string sha = put_blob("");
    BlobCache cache(*db, *store);
    auto blob = cache.blob(sha);
    ASSERT_NE(blob, nullptr);
    EXPECT_EQ(blob->size, 0u);
    EXPECT_TRUE(blob->filenames.empty());
    EXPECT_TRUE(blob->product_ids.empty());
}

TEST_F(BlobCacheTest, RowWithoutFileIsAnError) {
    std::string sha = put_blob("will vanish");
    std::filesystem::remove(store->path_for(sha));
    BlobCache cache(*db, *store);
    try {
        cache.blob(sha);
        FAIL() << "expected an error";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(sha), std::string::npos) << e.what();
    }
}

TEST_F(BlobCacheTest, FileOfAnotherSizeIsAnError) {
    std::string sha = put_blob("twelve bytes");
    auto path = store->path_for(sha);
    std::filesystem::permissions(path, std::filesystem::perms::owner_all, std::filesystem::perm_options::add);
    std::filesystem::resize_file(path, 5);
    BlobCache cache(*db, *store);
    EXPECT_THROW(cache.blob(sha), std::runtime_error);
}

TEST_F(BlobCacheTest, FriendlyPathFindsTheArtifact) {
    std::string sha = put_blob("image one");
    auto p = product("lamp");
    auto r = release(p, "2.0.1");
    auto a = artifact(r, sha, "lamp.bin");

    BlobCache cache(*db, *store);
    auto found = cache.artifact("lamp", "2.0.1", "lamp.bin");
    ASSERT_EQ(found.status, ArtifactLookup::Status::found) << found.detail;
    EXPECT_EQ(found.artifact->product_id, p);
    EXPECT_EQ(found.artifact->release_id, r);
    EXPECT_EQ(found.artifact->artifact_id, a);
    EXPECT_EQ(found.artifact->filename, "lamp.bin");
    EXPECT_EQ(found.artifact->blob->sha256, sha);
    EXPECT_EQ(found.artifact->last_modified, otad::util::http_date(found.artifact->created_at));

    auto again = cache.artifact("lamp", "2.0.1", "lamp.bin");
    EXPECT_EQ(again.artifact, found.artifact);
    EXPECT_EQ(cache.stats().files_opened, 1u);
}

TEST_F(BlobCacheTest, FriendlyPathNotFoundSaysWhat) {
    std::string sha = put_blob("image");
    auto p = product("lamp");
    artifact(release(p, "1.0"), sha, "lamp.bin");
    BlobCache cache(*db, *store);

    auto no_product = cache.artifact("fan", "1.0", "lamp.bin");
    EXPECT_EQ(no_product.status, ArtifactLookup::Status::not_found);
    EXPECT_EQ(no_product.detail, "no product named 'fan'");
    EXPECT_EQ(no_product.product_id, 0);
    auto no_release = cache.artifact("lamp", "9.9", "lamp.bin");
    EXPECT_EQ(no_release.detail, "product 'lamp' has no release '9.9'");
    EXPECT_EQ(no_release.product_id, p);  // so the route can check access before answering 404
    auto no_file = cache.artifact("lamp", "1.0", "other.bin");
    EXPECT_EQ(no_file.status, ArtifactLookup::Status::not_found);
    EXPECT_EQ(no_file.detail, "release '1.0' of product 'lamp' has no file named 'other.bin'");
    EXPECT_EQ(cache.stats().artifacts, 0u);  // refusals are not cached
}

TEST_F(BlobCacheTest, SameNameDifferentBytesIsAmbiguousSameBytesIsNot) {
    std::string sha1 = put_blob("user1 for 512+512");
    std::string sha2 = put_blob("user1 for 1024+1024");
    auto p = product("plug");
    auto r1 = release(p, "1.0");
    artifact(r1, sha1, "user1.bin", "esp8266");
    artifact(r1, sha2, "user1.bin", "esp8285");
    auto r2 = release(p, "2.0");
    artifact(r2, sha1, "user1.bin", "esp8266");
    artifact(r2, sha1, "user1.bin", "esp8285");

    BlobCache cache(*db, *store);
    auto ambiguous = cache.artifact("plug", "1.0", "user1.bin");
    EXPECT_EQ(ambiguous.status, ArtifactLookup::Status::ambiguous);
    EXPECT_EQ(ambiguous.artifact, nullptr);
    EXPECT_NE(ambiguous.detail.find("2 different images"), std::string::npos) << ambiguous.detail;
    auto same = cache.artifact("plug", "2.0", "user1.bin");
    ASSERT_EQ(same.status, ArtifactLookup::Status::found);
    EXPECT_EQ(same.artifact->blob->sha256, sha1);
}

TEST_F(BlobCacheTest, InvalidateDropsBlobAndItsPaths) {
    std::string sha = put_blob("image");
    auto p = product("lamp");
    artifact(release(p, "1.0"), sha, "lamp.bin");
    BlobCache cache(*db, *store);
    ASSERT_EQ(cache.artifact("lamp", "1.0", "lamp.bin").status, ArtifactLookup::Status::found);
    EXPECT_EQ(cache.stats().blobs, 1u);
    EXPECT_EQ(cache.stats().artifacts, 1u);

    cache.invalidate(sha);
    auto s = cache.stats();
    EXPECT_EQ(s.blobs, 0u);
    EXPECT_EQ(s.artifacts, 0u);
    EXPECT_EQ(s.invalidations, 2u);
    ASSERT_NE(cache.blob(sha), nullptr);
    EXPECT_EQ(cache.stats().files_opened, 2u);  // opened again
}

TEST_F(BlobCacheTest, InvalidateProductDropsPathsAndRereadsUsersKeepingTheMapping) {
    std::string sha = put_blob("shared image");
    auto p1 = product("one");
    auto p2 = product("two");
    artifact(release(p1, "1.0"), sha, "x.bin");
    BlobCache cache(*db, *store);
    ASSERT_EQ(cache.artifact("one", "1.0", "x.bin").status, ArtifactLookup::Status::found);
    auto before = cache.blob(sha);
    EXPECT_EQ(before->product_ids, (std::vector<std::int64_t>{p1}));

    artifact(release(p2, "1.0"), sha, "y.bin");
    EXPECT_EQ(cache.blob(sha)->product_ids, (std::vector<std::int64_t>{p1}));  // still cached
    cache.invalidate_product(p2);
    EXPECT_EQ(cache.stats().artifacts, 1u);  // product one's path stays
    auto after = cache.blob(sha);
    EXPECT_EQ(after->product_ids, (std::vector<std::int64_t>{p1, p2}));
    EXPECT_EQ(after->filenames, (std::vector<std::string>{"x.bin", "y.bin"}));
    EXPECT_EQ(after->file, before->file);  // same mapping
    EXPECT_EQ(cache.stats().files_opened, 1u);

    cache.invalidate_product(p1);
    EXPECT_EQ(cache.stats().artifacts, 0u);
}

TEST_F(BlobCacheTest, InvalidateProductByNameDropsItsPathsEvenWhenTheProductIsGone) {
    std::string sha = put_blob("image");
    auto p = product("lamp");
    auto other = product("lampshade");
    artifact(release(p, "1.0"), sha, "lamp.bin");
    artifact(release(other, "1.0"), sha, "lamp.bin");
    BlobCacheOptions options;
    options.revalidate_after = std::chrono::hours(1);
    BlobCache cache(*db, *store, options);
    cache.remember_access(p, "", std::nullopt);
    ASSERT_EQ(cache.artifact("lamp", "1.0", "lamp.bin").status, ArtifactLookup::Status::found);
    ASSERT_EQ(cache.artifact("lampshade", "1.0", "lamp.bin").status, ArtifactLookup::Status::found);
    ASSERT_EQ(cache.artifact("ghost", "1.0", "lamp.bin").status, ArtifactLookup::Status::not_found);

    cache.invalidate_product(std::string_view("lamp"));
    EXPECT_EQ(cache.stats().artifacts, 1u);  // "lampshade" is another product
    EXPECT_FALSE(cache.recall_access(p, "").has_value());
    cache.invalidate_product(std::string_view("lampshade"));
    EXPECT_EQ(cache.stats().artifacts, 0u);
    cache.invalidate_product(std::string_view("ghost"));  // unknown: harmless
}

TEST_F(BlobCacheTest, RevalidationSeesChangesMadeElsewhere) {
    std::string sha = put_blob("image");
    auto p = product("lamp");
    auto r = release(p, "1.0");
    artifact(r, sha, "lamp.bin");
    BlobCacheOptions options;
    options.revalidate_after = std::chrono::milliseconds(0);
    BlobCache cache(*db, *store, options);
    ASSERT_EQ(cache.artifact("lamp", "1.0", "lamp.bin").status, ArtifactLookup::Status::found);

    // Another process (the CLI) deletes the release: no invalidate() here.
    db->write([&](Connection& c) { CatalogueRepository(c).delete_release(r); });
    EXPECT_EQ(cache.artifact("lamp", "1.0", "lamp.bin").status, ArtifactLookup::Status::not_found);
    EXPECT_EQ(cache.stats().artifacts, 0u);
    EXPECT_TRUE(cache.blob(sha)->product_ids.empty());
    EXPECT_EQ(cache.stats().files_opened, 1u);
}

TEST_F(BlobCacheTest, WithoutRevalidationChangesNeedInvalidation) {
    std::string sha = put_blob("image");
    auto p = product("lamp");
    auto r = release(p, "1.0");
    artifact(r, sha, "lamp.bin");
    BlobCacheOptions options;
    options.revalidate_after = std::chrono::hours(1);
    BlobCache cache(*db, *store, options);
    ASSERT_EQ(cache.artifact("lamp", "1.0", "lamp.bin").status, ArtifactLookup::Status::found);
    db->write([&](Connection& c) { CatalogueRepository(c).delete_release(r); });
    EXPECT_EQ(cache.artifact("lamp", "1.0", "lamp.bin").status, ArtifactLookup::Status::found);  // cached
    cache.invalidate_product(p);
    EXPECT_EQ(cache.artifact("lamp", "1.0", "lamp.bin").status, ArtifactLookup::Status::not_found);
}

TEST_F(BlobCacheTest, EvictsLeastRecentlyUsedAndKeepsHeldMappingsValid) {
    BlobCacheOptions options;
    options.max_blobs = 2;
    BlobCache cache(*db, *store, options);
    std::string a = put_blob("aaaa");
    std::string b = put_blob("bbbb");
    std::string c = put_blob("cccc");
    auto held = cache.blob(a);
    cache.blob(b);
    cache.blob(a);  // a is now the most recent: b goes first
    cache.blob(c);
    auto s = cache.stats();
    EXPECT_EQ(s.blobs, 2u);
    EXPECT_EQ(s.evictions, 1u);
    cache.blob(a);
    EXPECT_EQ(cache.stats().files_opened, 3u);  // a stayed
    cache.blob(b);
    EXPECT_EQ(cache.stats().files_opened, 4u);  // b was evicted

    cache.clear();
    EXPECT_EQ(held->file->bytes(0, 4), "aaaa");  // the response holding it still reads it
}

TEST_F(BlobCacheTest, AccessDecisionsAreRememberedForTheirTtl) {
    BlobCacheOptions options;
    options.access_ttl = std::chrono::hours(1);
    BlobCache cache(*db, *store, options);
    EXPECT_FALSE(cache.recall_access(1, "digest").has_value());
    cache.remember_access(1, "digest", std::string("key-1"));
    cache.remember_access(2, "", std::nullopt);
    auto recalled = cache.recall_access(1, "digest");
    ASSERT_TRUE(recalled.has_value());
    EXPECT_EQ(*recalled, std::optional<std::string>("key-1"));
    auto open = cache.recall_access(2, "");
    ASSERT_TRUE(open.has_value());
    EXPECT_FALSE(open->has_value());
    EXPECT_FALSE(cache.recall_access(1, "other").has_value());
    EXPECT_FALSE(cache.recall_access(2, "digest").has_value());

    cache.invalidate_product(1);
    EXPECT_FALSE(cache.recall_access(1, "digest").has_value());
    EXPECT_TRUE(cache.recall_access(2, "").has_value());

    BlobCacheOptions expiring;
    expiring.access_ttl = std::chrono::milliseconds(0);
    BlobCache short_lived(*db, *store, expiring);
    short_lived.remember_access(1, "d", std::nullopt);
    EXPECT_FALSE(short_lived.recall_access(1, "d").has_value());
}

TEST_F(BlobCacheTest, VerifiedUrlsAreRememberedBounded) {
    BlobCacheOptions options;
    options.max_verified_urls = 2;
    BlobCache cache(*db, *store, options);
    EXPECT_FALSE(cache.recall_verified_url("a?1&x"));
    cache.remember_verified_url("a?1&x");
    cache.remember_verified_url("b?1&y");
    EXPECT_TRUE(cache.recall_verified_url("a?1&x"));
    EXPECT_FALSE(cache.recall_verified_url("a?1&y"));
    cache.remember_verified_url("c?1&z");  // evicts b, the least recently used
    EXPECT_FALSE(cache.recall_verified_url("b?1&y"));
    EXPECT_TRUE(cache.recall_verified_url("a?1&x"));
    EXPECT_EQ(cache.stats().verified_urls, 2u);
    cache.clear();
    EXPECT_FALSE(cache.recall_verified_url("a?1&x"));
}

TEST_F(BlobCacheTest, ConcurrentLookupsAndInvalidationsAgree) {
    std::vector<std::string> shas;
    for (int i = 0; i < 8; ++i) shas.push_back(put_blob("blob number " + std::to_string(i)));
    BlobCacheOptions options;
    options.max_blobs = 5;
    BlobCache cache(*db, *store, options);
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 400; ++i) {
                std::size_t k = static_cast<std::size_t>((i * 7 + t) % 8);
                if (i % 50 == 0) cache.invalidate(shas[k]);
                auto blob = cache.blob(shas[k]);
                if (!blob || blob->file->bytes(0, blob->size) != "blob number " + std::to_string(k)) ++wrong;
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(wrong.load(), 0);
    auto s = cache.stats();
    EXPECT_LE(s.blobs, 5u);
    EXPECT_EQ(s.hits + s.misses, 1600u);
}

}  // namespace
