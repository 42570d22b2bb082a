#include "otad/domain/readiness.hpp"

#include <filesystem>

#include <gtest/gtest.h>

#include "device_test_support.hpp"
#include "otad/storage/blob_store.hpp"
#include "otad/storage/settings_repository.hpp"

using namespace otad::domain;
namespace fs = std::filesystem;

namespace {

class ReadinessTest : public otad::domain::testing::DatabaseTest {
protected:
    void SetUp() override {
        DatabaseTest::SetUp();
        blobs = std::make_unique<otad::storage::BlobStore>(dir.path());
    }
    std::unique_ptr<otad::storage::BlobStore> blobs;
};

TEST_F(ReadinessTest, ReadyWhenBothTakeARealWrite) {
    Readiness readiness(*db, *blobs, std::chrono::milliseconds(0));
    ReadinessReport report = readiness.check();
    EXPECT_TRUE(report.ready);
    EXPECT_TRUE(report.database.ok);
    EXPECT_TRUE(report.blob_dir.ok);
    EXPECT_GE(report.schema_version, 1);
    // The database probe wrote for real.
    auto written =
        db->read([](otad::storage::Connection& c) { return otad::storage::SettingsRepository(c).get("readyz_probe"); });
    EXPECT_TRUE(written.has_value());
    EXPECT_TRUE(fs::is_empty(blobs->temp_dir()));
}

TEST_F(ReadinessTest, ABlobDirectoryThatTakesNoWriteIsNotReadyAndAnswersAreReused) {
    Readiness fresh(*db, *blobs, std::chrono::milliseconds(0));
    Readiness reused(*db, *blobs, std::chrono::hours(1));
    ASSERT_TRUE(fresh.check().ready);
    ASSERT_TRUE(reused.check().ready);

    const fs::path aside = blobs->temp_dir().string() + "-aside";
    fs::rename(blobs->temp_dir(), aside);  // the probe's file cannot be created
    ReadinessReport report = fresh.check();
    EXPECT_FALSE(report.ready);
    EXPECT_TRUE(report.database.ok);
    EXPECT_FALSE(report.blob_dir.ok);
    EXPECT_EQ(report.blob_dir.error, "cannot write");
    EXPECT_TRUE(reused.check().ready);  // within its reuse period: the last answer

    fs::rename(aside, blobs->temp_dir());
    EXPECT_TRUE(fresh.check().ready);  // recovers by itself
}

}  // namespace
