#include "otad/storage/blob_store.hpp"

#include <cctype>
#include <cerrno>
#include <chrono>
#include <thread>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/error.hpp"
#include "otad/util/crypto.hpp"
#include "storage_test_support.hpp"

using namespace otad::storage;
namespace fs = std::filesystem;

namespace {

// "hello world"
constexpr const char* hello_sha256 = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
constexpr const char* hello_md5 = "5eb63bbbe01eeed093cb22bb8f5acdc3";

std::string read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

std::size_t entries_in(const fs::path& path) {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(path), fs::directory_iterator()));
}

std::size_t blob_files(const BlobStore& store) {
    std::size_t n = 0;
    store.for_each_blob([&](const std::string&) { ++n; });
    return n;
}

BlobInfo store_bytes(BlobStore& store, std::string_view bytes) {
    BlobWriter writer = store.open_writer(1 << 20);
    writer.write(bytes);
    return writer.commit();
}

// The rows an upload writes after committing its blob: product app, release
// 1.0.0, the blob row and an artifact using it.
void record_artifact(Database& db, const BlobInfo& blob) {
    db.write([&](Connection& c) {
        CatalogueRepository catalogue(c);
        auto release = catalogue.create_release(catalogue.create_product("app").id, "1.0.0");
        catalogue.insert_blob(blob.sha256, blob.size);
        NewArtifact artifact;
        artifact.release_id = release.id;
        artifact.chip = "esp32";
        artifact.filename = "app.bin";
        artifact.sha256 = blob.sha256;
        artifact.md5 = blob.md5;
        artifact.size = blob.size;
        catalogue.insert_artifact(artifact);
    });
}

class BlobStoreTest : public otad::storage::testing::MigratedDatabaseTest {
protected:
    void SetUp() override {
        MigratedDatabaseTest::SetUp();
        store = std::make_unique<BlobStore>(dir.path());
    }
    std::unique_ptr<BlobStore> store;
};

TEST_F(BlobStoreTest, CommitStoresAtContentAddressWithDigests) {
    BlobWriter writer = store->open_writer(100);
    writer.write("hello ");
    writer.write("world");
    EXPECT_EQ(writer.bytes_written(), 11u);
    BlobInfo info = writer.commit();
    EXPECT_EQ(info.sha256, hello_sha256);
    EXPECT_EQ(info.md5, hello_md5);
    EXPECT_EQ(info.size, 11u);

    const fs::path expected = dir.path() / "blobs" / "b9" / "4d" / hello_sha256;
    EXPECT_EQ(store->path_for(hello_sha256), expected);
    EXPECT_EQ(read(expected), "hello world");
    EXPECT_TRUE(store->exists(hello_sha256));
    EXPECT_TRUE(store->verify(hello_sha256));
    EXPECT_EQ(entries_in(store->temp_dir()), 0u);
}

TEST_F(BlobStoreTest, UncommittedWriterRemovesItsTempFile) {
    {
        BlobWriter writer = store->open_writer(100);
        writer.write("partial upload");
        EXPECT_EQ(entries_in(store->temp_dir()), 1u);
    }
    EXPECT_EQ(entries_in(store->temp_dir()), 0u);
    EXPECT_EQ(blob_files(*store), 0u);
}

TEST_F(BlobStoreTest, MovedWriterKeepsItsTempFileUntilCommit) {
    BlobWriter first = store->open_writer(100);
    first.write("hello ");
    BlobWriter second = std::move(first);
    second.write("world");
    EXPECT_EQ(second.commit().sha256, hello_sha256);
    EXPECT_TRUE(store->verify(hello_sha256));
}

TEST_F(BlobStoreTest, IdenticalBytesAreStoredOnce) {
    BlobInfo a = store_bytes(*store, "hello world");
    BlobInfo b = store_bytes(*store, "hello world");
    EXPECT_EQ(a.sha256, b.sha256);
    EXPECT_EQ(blob_files(*store), 1u);
    EXPECT_EQ(entries_in(store->temp_dir()), 0u);
    store_bytes(*store, "other bytes");
    EXPECT_EQ(blob_files(*store), 2u);
}

TEST_F(BlobStoreTest, LimitIsEnforcedExactly) {
    BlobWriter at_limit = store->open_writer(11);
    at_limit.write("hello world");
    EXPECT_EQ(at_limit.commit().size, 11u);

    BlobWriter over = store->open_writer(10);
    over.write("hello");
    try {
        over.write(" world");
        FAIL() << "expected BlobTooLarge";
    } catch (const BlobTooLarge& e) {
        EXPECT_EQ(e.limit(), 10u);
        EXPECT_EQ(e.kind(), StorageErrorKind::too_large);
    }
    EXPECT_EQ(entries_in(store->temp_dir()), 0u);  // dropped at once, not at destruction
    EXPECT_THROW(over.write("x"), std::logic_error);
}

TEST_F(BlobStoreTest, ExpectedDigestMismatchStoresNothing) {
    BlobWriter writer = store->open_writer(100);
    writer.write("hello world");
    try {
        writer.commit(std::string(64, 'a'));
        FAIL() << "expected StorageError(mismatch)";
    } catch (const StorageError& e) {
        EXPECT_EQ(e.kind(), StorageErrorKind::mismatch);
    }
    EXPECT_FALSE(store->exists(hello_sha256));
    EXPECT_EQ(entries_in(store->temp_dir()), 0u);
}

TEST_F(BlobStoreTest, ExpectedDigestMatchesInAnyCase) {
    BlobWriter writer = store->open_writer(100);
    writer.write("hello world");
    std::string upper = hello_sha256;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(writer.commit(upper).sha256, hello_sha256);
}

TEST_F(BlobStoreTest, CleanupRemovesLeftoverTempFiles) {
    std::ofstream(store->temp_dir() / "upload-crashed-1") << "abc";
    std::ofstream(store->temp_dir() / "upload-crashed-2") << "def";
    EXPECT_EQ(store->cleanup_temp_files(std::chrono::hours(1)), 0u);  // too young
    EXPECT_EQ(store->cleanup_temp_files(), 2u);
    EXPECT_EQ(entries_in(store->temp_dir()), 0u);
    EXPECT_EQ(store->cleanup_temp_files(), 0u);
}

TEST_F(BlobStoreTest, PathForRejectsAnythingButLowerHex) {
    EXPECT_THROW(store->path_for("../../etc/passwd"), std::invalid_argument);
    EXPECT_THROW(store->path_for(std::string(64, 'A')), std::invalid_argument);
    EXPECT_THROW(store->path_for(std::string(63, 'a')), std::invalid_argument);
    EXPECT_THROW(store->exists("../x"), std::invalid_argument);
    EXPECT_NO_THROW(store->path_for(std::string(64, 'a')));
}

TEST_F(BlobStoreTest, VerifyDetectsCorruptionAndMissingFiles) {
    BlobInfo info = store_bytes(*store, "hello world");
    EXPECT_TRUE(store->verify(info.sha256));
    {
        std::ofstream out(store->path_for(info.sha256), std::ios::binary | std::ios::trunc);
        out << "hello w0rld";
    }
    EXPECT_FALSE(store->verify(info.sha256));
    EXPECT_TRUE(store->remove(info.sha256));
    EXPECT_FALSE(store->remove(info.sha256));
    EXPECT_FALSE(store->verify(info.sha256));
}

TEST_F(BlobStoreTest, CommitReplacesATruncatedExistingFile) {
    BlobInfo info = store_bytes(*store, "hello world");
    std::ofstream(store->path_for(info.sha256), std::ios::binary | std::ios::trunc) << "hello";
    store_bytes(*store, "hello world");
    EXPECT_TRUE(store->verify(info.sha256));
}

TEST_F(BlobStoreTest, OrphanCollectionKeepsReferencedAndFreshBlobs) {
    BlobInfo referenced = store_bytes(*store, "referenced image");
    BlobInfo orphan_row = store_bytes(*store, "row without artifacts");
    BlobInfo orphan_file = store_bytes(*store, "file without row");
    record_artifact(*db, referenced);
    db->write([&](Connection& c) { CatalogueRepository(c).insert_blob(orphan_row.sha256, orphan_row.size); });

    // Everything is younger than an hour: nothing goes.
    EXPECT_EQ(collect_orphan_blobs(*db, *store, std::chrono::hours(1)), 0u);
    EXPECT_EQ(blob_files(*store), 3u);

    EXPECT_EQ(collect_orphan_blobs(*db, *store, std::chrono::seconds(0)), 2u);
    EXPECT_TRUE(store->exists(referenced.sha256));
    EXPECT_FALSE(store->exists(orphan_row.sha256));
    EXPECT_FALSE(store->exists(orphan_file.sha256));
    db->read([&](Connection& c) {
        CatalogueRepository catalogue(c);
        EXPECT_TRUE(catalogue.find_blob(referenced.sha256).has_value());
        EXPECT_FALSE(catalogue.find_blob(orphan_row.sha256).has_value());
    });
}

TEST_F(BlobStoreTest, RemoveIfStaleSparesRecentlyCommittedBlobs) {
    BlobInfo info = store_bytes(*store, "hello world");
    EXPECT_FALSE(store->remove_if_stale(info.sha256, std::chrono::hours(1)));
    EXPECT_TRUE(store->exists(info.sha256));
    // An old blob re-committed by a new upload becomes fresh again.
    fs::last_write_time(store->path_for(info.sha256), fs::file_time_type::clock::now() - std::chrono::hours(2));
    EXPECT_GE(store->age_seconds(info.sha256).value(), 7200);
    store_bytes(*store, "hello world");
    EXPECT_LT(store->age_seconds(info.sha256).value(), 60);
    EXPECT_FALSE(store->remove_if_stale(info.sha256, std::chrono::hours(1)));
}

TEST(AtomicWriteTest, SmallFilesAreReplacedWhole) {
    otad::storage::testing::TempDir dir;
    const fs::path path = dir.path() / "hmac.key";
    otad::platform::atomic_write_file(path, "k1", true);
    otad::platform::atomic_write_file(path, "k2", true);
    EXPECT_EQ(read(path), "k2");
    EXPECT_EQ(entries_in(dir.path()), 1u);
}

}  // namespace

namespace {

// Waits (bounded) for a condition the collector's thread makes true.
template <class Predicate>
bool eventually(Predicate predicate, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (predicate()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return predicate();
}

void age(const BlobStore& store, const std::string& sha256, std::chrono::hours by) {
    fs::last_write_time(store.path_for(sha256), fs::file_time_type::clock::now() - by);
}

}  // namespace

TEST_F(BlobStoreTest, PeriodicCollectorRemovesOldOrphansWhileUploadsInProgressAreSpared) {
    // An old orphan (a crash between an upload's commit and its rows, long ago), a
    // referenced old blob, a blob just committed whose rows are not written yet (an
    // upload in progress), and an upload still receiving its bytes (a temp file).
    BlobInfo old_orphan = store_bytes(*store, "left behind by a crash");
    BlobInfo referenced = store_bytes(*store, "a released image");
    record_artifact(*db, referenced);
    age(*store, old_orphan.sha256, std::chrono::hours(2));
    age(*store, referenced.sha256, std::chrono::hours(2));
    BlobInfo committed_not_recorded = store_bytes(*store, "committed, rows not yet written");
    BlobWriter receiving = store->open_writer(1 << 20);
    receiving.write("half of an upload");

    OrphanBlobCollector collector(*db, *store, std::chrono::milliseconds(20), std::chrono::hours(1));
    collector.start();
    EXPECT_TRUE(eventually([&] { return !store->exists(old_orphan.sha256); })) << "the old orphan was not collected";
    // Two more runs after that: whatever survives them is spared for good reasons.
    const auto runs = collector.runs();
    EXPECT_TRUE(eventually([&] { return collector.runs() >= runs + 2; }));
    collector.stop();

    EXPECT_TRUE(store->exists(referenced.sha256));
    EXPECT_TRUE(store->verify(referenced.sha256));
    EXPECT_TRUE(store->exists(committed_not_recorded.sha256));
    // The upload in progress ends normally.
    receiving.write(" and the rest");
    BlobInfo finished = receiving.commit();
    EXPECT_TRUE(store->verify(finished.sha256));
    // A stopped collector does not run again.
    const auto final_runs = collector.runs();
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    EXPECT_EQ(collector.runs(), final_runs);
}

TEST_F(BlobStoreTest, ZeroPeriodDisablesThePeriodicCollector) {
    BlobInfo orphan = store_bytes(*store, "orphan");
    age(*store, orphan.sha256, std::chrono::hours(2));
    OrphanBlobCollector collector(*db, *store, std::chrono::milliseconds(0));
    collector.start();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(collector.runs(), 0u);
    EXPECT_TRUE(store->exists(orphan.sha256));
    EXPECT_EQ(collector.run_once(), std::optional<std::size_t>(1));  // by hand it still works
}

TEST_F(BlobStoreTest, ProbeWriteLeavesNothingBehind) {
    store->probe_write();
    store->probe_write();
    EXPECT_EQ(entries_in(store->temp_dir()), 0u);
    EXPECT_EQ(blob_files(*store), 0u);
}

TEST(StorageErrorTest, OutOfSpaceErrorsAreRecognised) {
    EXPECT_TRUE(is_no_space(std::error_code(ENOSPC, std::generic_category())));
    EXPECT_TRUE(is_no_space(std::error_code(ENOSPC, std::system_category())));
    EXPECT_TRUE(is_no_space(std::error_code(EDQUOT, std::generic_category())));
    EXPECT_FALSE(is_no_space(std::error_code(EIO, std::generic_category())));
    EXPECT_FALSE(is_no_space(std::error_code(EACCES, std::system_category())));
    EXPECT_EQ(to_string(StorageErrorKind::no_space), "no_space");
}
