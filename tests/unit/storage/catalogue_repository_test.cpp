#include "otad/storage/catalogue_repository.hpp"

#include <functional>

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include "otad/storage/error.hpp"
#include "storage_test_support.hpp"

using namespace otad::storage;

namespace {

const std::string sha_a(64, 'a');
const std::string sha_b(64, 'b');
const std::string md5_a(32, 'a');

class CatalogueRepositoryTest : public otad::storage::testing::MigratedDatabaseTest {
protected:
    void SetUp() override {
        MigratedDatabaseTest::SetUp();
        lease.emplace(db->lease());
        catalogue.emplace(lease->get());
    }
    void TearDown() override {
        catalogue.reset();
        lease.reset();
        MigratedDatabaseTest::TearDown();
    }

    NewArtifact artifact(std::int64_t release_id, std::string chip = "esp8266", std::string layout = "512+512",
                         std::string slot = "user1", const std::string& sha = sha_a, std::uint64_t size = 1000) {
        NewArtifact a;
        a.release_id = release_id;
        a.chip = std::move(chip);
        a.layout = std::move(layout);
        a.slot = std::move(slot);
        a.filename = "user1.bin";
        a.sha256 = sha;
        a.md5 = md5_a;
        a.size = size;
        a.metadata_json = R"({"magic":"0xEA"})";
        return a;
    }

    static void expect_kind(StorageErrorKind kind, const std::function<void()>& action) {
        try {
            action();
            ADD_FAILURE() << "expected StorageError(" << to_string(kind) << ")";
        } catch (const StorageError& e) {
            EXPECT_EQ(e.kind(), kind) << e.what();
        }
    }

    std::optional<ConnectionLease> lease;
    std::optional<CatalogueRepository> catalogue;
};

TEST_F(CatalogueRepositoryTest, ProductsAreCreatedFoundAndUnique) {
    Product app = catalogue->create_product("app");
    EXPECT_GT(app.id, 0);
    EXPECT_EQ(app.name, "app");
    EXPECT_FALSE(app.allow_project_mismatch);
    EXPECT_FALSE(app.project_name.has_value());
    catalogue->create_product("another", true);

    EXPECT_EQ(catalogue->find_product("app")->id, app.id);
    EXPECT_EQ(catalogue->get_product(app.id)->name, "app");
    EXPECT_FALSE(catalogue->find_product("nope").has_value());
    auto all = catalogue->list_products();
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].name, "another");
    EXPECT_TRUE(all[0].allow_project_mismatch);

    expect_kind(StorageErrorKind::conflict, [&] { catalogue->create_product("app"); });
    expect_kind(StorageErrorKind::invalid, [&] { catalogue->create_product(""); });
}

TEST_F(CatalogueRepositoryTest, ProjectNameIsClaimedByTheFirstUploadOnly) {
    Product app = catalogue->create_product("app");
    EXPECT_TRUE(catalogue->claim_project_name(app.id, "blink"));
    EXPECT_FALSE(catalogue->claim_project_name(app.id, "other"));
    EXPECT_EQ(catalogue->get_product(app.id)->project_name, "blink");
    EXPECT_TRUE(catalogue->set_allow_project_mismatch(app.id, true));
    EXPECT_TRUE(catalogue->get_product(app.id)->allow_project_mismatch);
}

TEST_F(CatalogueRepositoryTest, ReleaseVersionsAreUniquePerProduct) {
    Product app = catalogue->create_product("app");
    Product other = catalogue->create_product("other");
    Release r = catalogue->create_release(app.id, "1.0.0", "first");
    EXPECT_EQ(r.product_id, app.id);
    EXPECT_EQ(r.version, "1.0.0");
    EXPECT_EQ(r.notes, "first");
    EXPECT_FALSE(r.offered);
    catalogue->create_release(other.id, "1.0.0");
    expect_kind(StorageErrorKind::conflict, [&] { catalogue->create_release(app.id, "1.0.0"); });
    expect_kind(StorageErrorKind::reference, [&] { catalogue->create_release(9999, "1.0.0"); });
    EXPECT_EQ(catalogue->find_release(app.id, "1.0.0")->id, r.id);
    EXPECT_FALSE(catalogue->find_release(app.id, "2.0.0").has_value());
    EXPECT_TRUE(catalogue->set_release_notes(r.id, "edited"));
    EXPECT_EQ(catalogue->get_release(r.id)->notes, "edited");
}

TEST_F(CatalogueRepositoryTest, ReleasesArePaginatedNewestFirst) {
    Product app = catalogue->create_product("app");
    std::vector<std::int64_t> ids;
    for (int i = 0; i < 5; ++i) ids.push_back(catalogue->create_release(app.id, "1.0." + std::to_string(i)).id);

    std::vector<std::int64_t> seen;
    std::optional<ReleaseCursor> cursor;
    int pages = 0;
    do {
        ReleasePage page = catalogue->list_releases(app.id, 2, cursor);
        for (const auto& r : page.releases) seen.push_back(r.id);
        cursor = page.next;
        ++pages;
    } while (cursor && pages < 10);
    EXPECT_EQ(seen, (std::vector<std::int64_t>{ids[4], ids[3], ids[2], ids[1], ids[0]}));
    EXPECT_EQ(pages, 3);

    auto all = catalogue->all_releases(app.id);
    ASSERT_EQ(all.size(), 5u);
    EXPECT_EQ(all.front().id, ids[0]);
}

TEST_F(CatalogueRepositoryTest, BlobRowsAreInsertedOnceWithOneSize) {
    EXPECT_TRUE(catalogue->insert_blob(sha_a, 1000));
    EXPECT_FALSE(catalogue->insert_blob(sha_a, 1000));
    expect_kind(StorageErrorKind::conflict, [&] { catalogue->insert_blob(sha_a, 999); });
    expect_kind(StorageErrorKind::invalid, [&] { catalogue->insert_blob("not-hex", 1); });
    auto blob = catalogue->find_blob(sha_a);
    ASSERT_TRUE(blob.has_value());
    EXPECT_EQ(blob->size, 1000u);
    EXPECT_EQ(catalogue->blob_reference_count(sha_a), 0);
}

TEST_F(CatalogueRepositoryTest, ArtifactSlotIsUniquePerRelease) {
    Product app = catalogue->create_product("app");
    Release r = catalogue->create_release(app.id, "1.0.0");
    catalogue->insert_blob(sha_a, 1000);
    catalogue->insert_blob(sha_b, 1000);

    Artifact user1 = catalogue->insert_artifact(artifact(r.id));
    EXPECT_EQ(user1.chip, "esp8266");
    EXPECT_EQ(user1.layout, "512+512");
    EXPECT_EQ(user1.slot, "user1");
    EXPECT_EQ(user1.sha256, sha_a);
    EXPECT_EQ(user1.size, 1000u);
    EXPECT_EQ(user1.metadata_json, R"({"magic":"0xEA"})");

    expect_kind(StorageErrorKind::conflict,
                [&] { catalogue->insert_artifact(artifact(r.id, "esp8266", "512+512", "user1", sha_b)); });
    catalogue->insert_artifact(artifact(r.id, "esp8266", "512+512", "user2", sha_b));
    catalogue->insert_artifact(artifact(r.id, "esp32", "", ""));
    expect_kind(StorageErrorKind::conflict, [&] { catalogue->insert_artifact(artifact(r.id, "esp32", "", "")); });

    EXPECT_EQ(catalogue->blob_reference_count(sha_a), 2);
    EXPECT_EQ(catalogue->find_artifact(r.id, "esp8266", "512+512", "user2")->sha256, sha_b);
    EXPECT_FALSE(catalogue->find_artifact(r.id, "esp8266", "1024+1024", "user1").has_value());
    auto listed = catalogue->list_artifacts(r.id);
    ASSERT_EQ(listed.size(), 3u);
    EXPECT_EQ(listed[0].chip, "esp32");
    EXPECT_EQ(listed[2].slot, "user2");
}

TEST_F(CatalogueRepositoryTest, ArtifactNeedsItsBlobRowWithTheSameSize) {
    Product app = catalogue->create_product("app");
    Release r = catalogue->create_release(app.id, "1.0.0");
    expect_kind(StorageErrorKind::reference, [&] { catalogue->insert_artifact(artifact(r.id)); });
    catalogue->insert_blob(sha_a, 1000);
    expect_kind(StorageErrorKind::rejected,
                [&] { catalogue->insert_artifact(artifact(r.id, "esp32", "", "", sha_a, 999)); });
    NewArtifact bad_json = artifact(r.id);
    bad_json.metadata_json = "{";
    expect_kind(StorageErrorKind::invalid, [&] { catalogue->insert_artifact(bad_json); });
    NewArtifact bad_name = artifact(r.id);
    bad_name.filename = "../user1.bin";
    expect_kind(StorageErrorKind::invalid, [&] { catalogue->insert_artifact(bad_name); });
    EXPECT_TRUE(catalogue->list_artifacts(r.id).empty());
}

TEST_F(CatalogueRepositoryTest, ChannelRestrictsReleaseDeletion) {
    Product app = catalogue->create_product("app");
    Release r1 = catalogue->create_release(app.id, "1.0.0");
    Release r2 = catalogue->create_release(app.id, "1.1.0");
    catalogue->insert_blob(sha_a, 1000);
    catalogue->insert_artifact(artifact(r1.id));

    Channel stable = catalogue->set_channel(app.id, "stable", r1.id);
    EXPECT_EQ(stable.release_id, r1.id);
    EXPECT_FALSE(stable.allow_rollback);
    expect_kind(StorageErrorKind::reference, [&] { catalogue->delete_release(r1.id); });
    EXPECT_TRUE(catalogue->get_release(r1.id).has_value());

    Channel moved = catalogue->set_channel(app.id, "stable", r2.id, true);
    EXPECT_EQ(moved.release_id, r2.id);
    EXPECT_TRUE(moved.allow_rollback);
    EXPECT_EQ(catalogue->get_channel(app.id, "stable")->release_id, r2.id);

    EXPECT_TRUE(catalogue->delete_release(r1.id));
    EXPECT_FALSE(catalogue->get_release(r1.id).has_value());
    EXPECT_TRUE(catalogue->list_artifacts(r1.id).empty());  // cascaded
    EXPECT_EQ(catalogue->blob_reference_count(sha_a), 0);   // blob row stays, now an orphan
    EXPECT_TRUE(catalogue->find_blob(sha_a).has_value());
    EXPECT_FALSE(catalogue->delete_release(r1.id));
}

TEST_F(CatalogueRepositoryTest, ChannelMustPointAtItsOwnProduct) {
    Product app = catalogue->create_product("app");
    Product other = catalogue->create_product("other");
    Release foreign = catalogue->create_release(other.id, "9.9.9");
    Release own = catalogue->create_release(app.id, "1.0.0");
    expect_kind(StorageErrorKind::rejected, [&] { catalogue->set_channel(app.id, "stable", foreign.id); });
    catalogue->set_channel(app.id, "stable", own.id);
    expect_kind(StorageErrorKind::rejected, [&] { catalogue->set_channel(app.id, "stable", foreign.id); });
    expect_kind(StorageErrorKind::reference, [&] { catalogue->set_channel(app.id, "beta", 12345); });
    EXPECT_EQ(catalogue->get_channel(app.id, "stable")->release_id, own.id);
}

TEST_F(CatalogueRepositoryTest, ChannelsListAndDelete) {
    Product app = catalogue->create_product("app");
    Release r = catalogue->create_release(app.id, "1.0.0");
    catalogue->set_channel(app.id, "stable", r.id);
    catalogue->set_channel(app.id, "beta", r.id);
    auto channels = catalogue->list_channels(app.id);
    ASSERT_EQ(channels.size(), 2u);
    EXPECT_EQ(channels[0].name, "beta");
    EXPECT_TRUE(catalogue->delete_channel(app.id, "beta"));
    EXPECT_FALSE(catalogue->delete_channel(app.id, "beta"));
    EXPECT_FALSE(catalogue->get_channel(app.id, "beta").has_value());
}

TEST_F(CatalogueRepositoryTest, OfferedReleaseIsFrozenButCanBeDeletedWhole) {
    Product app = catalogue->create_product("app");
    Release r = catalogue->create_release(app.id, "1.0.0");
    catalogue->insert_blob(sha_a, 1000);
    Artifact a = catalogue->insert_artifact(artifact(r.id));

    EXPECT_TRUE(catalogue->mark_release_offered(r.id));
    EXPECT_FALSE(catalogue->mark_release_offered(r.id));
    EXPECT_TRUE(catalogue->get_release(r.id)->offered);

    expect_kind(StorageErrorKind::rejected,
                [&] { catalogue->insert_artifact(artifact(r.id, "esp8266", "512+512", "user2")); });
    expect_kind(StorageErrorKind::rejected, [&] { catalogue->delete_artifact(a.id); });
    EXPECT_THROW(lease->get().execute_script("UPDATE releases SET offered = 0"), SQLite::Exception);
    EXPECT_THROW(lease->get().execute_script("UPDATE releases SET version = '1.0.1'"), SQLite::Exception);
    EXPECT_TRUE(catalogue->get_artifact(a.id).has_value());
    EXPECT_TRUE(catalogue->set_release_notes(r.id, "notes stay editable"));

    EXPECT_TRUE(catalogue->delete_release(r.id));
    EXPECT_FALSE(catalogue->get_artifact(a.id).has_value());
}

TEST_F(CatalogueRepositoryTest, DeletingAnOfferedReleaseLeavesAPermanentTombstone) {
    Product app = catalogue->create_product("app");
    Product other = catalogue->create_product("other");
    catalogue->insert_blob(sha_a, 1000);
    catalogue->insert_blob(sha_b, 2000);
    Release offered = catalogue->create_release(app.id, "1.0.0");
    catalogue->insert_artifact(artifact(offered.id, "esp8266", "512+512", "user2", sha_b, 2000));
    catalogue->insert_artifact(artifact(offered.id));
    Release never = catalogue->create_release(app.id, "1.1.0");
    catalogue->insert_artifact(artifact(never.id));
    ASSERT_TRUE(catalogue->mark_release_offered(offered.id));

    EXPECT_TRUE(catalogue->list_tombstones(app.id, "1.0.0").empty());  // only once it is deleted
    EXPECT_TRUE(catalogue->delete_release(offered.id));
    EXPECT_TRUE(catalogue->delete_release(never.id));

    const auto tombstone = catalogue->list_tombstones(app.id, "1.0.0");
    ASSERT_EQ(tombstone.size(), 2u);  // by chip, layout, slot
    EXPECT_EQ(tombstone[0].slot, "user1");
    EXPECT_EQ(tombstone[0].sha256, sha_a);
    EXPECT_EQ(tombstone[0].size, 1000u);
    EXPECT_EQ(tombstone[1].slot, "user2");
    EXPECT_EQ(tombstone[1].sha256, sha_b);
    EXPECT_EQ(tombstone[1].chip, "esp8266");
    EXPECT_EQ(tombstone[1].layout, "512+512");
    EXPECT_GT(tombstone[0].deleted_at, 0);
    EXPECT_TRUE(catalogue->list_tombstones(app.id, "1.1.0").empty());  // never offered
    EXPECT_TRUE(catalogue->list_tombstones(other.id, "1.0.0").empty());

    EXPECT_THROW(lease->get().execute_script("DELETE FROM release_tombstones"), SQLite::Exception);
    EXPECT_THROW(lease->get().execute_script("UPDATE release_tombstones SET sha256 = '" + sha_b + "'"),
                 SQLite::Exception);
    EXPECT_EQ(catalogue->list_tombstones(app.id, "1.0.0").size(), 2u);
}

TEST_F(CatalogueRepositoryTest, UploadRowsCommitTogetherOrNotAtAll) {
    Product app = catalogue->create_product("app");
    Release r = catalogue->create_release(app.id, "1.0.0");
    {
        WriteTransaction tx(lease->get());
        catalogue->insert_blob(sha_a, 1000);
        catalogue->insert_artifact(artifact(r.id));
        // dropped without commit: e.g. the request failed after the inserts
    }
    EXPECT_FALSE(catalogue->find_blob(sha_a).has_value());
    EXPECT_TRUE(catalogue->list_artifacts(r.id).empty());
    {
        WriteTransaction tx(lease->get());
        catalogue->insert_blob(sha_a, 1000);
        catalogue->insert_artifact(artifact(r.id));
        tx.commit();
    }
    EXPECT_EQ(catalogue->list_artifacts(r.id).size(), 1u);
}

}  // namespace
