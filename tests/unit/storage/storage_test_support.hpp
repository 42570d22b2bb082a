#pragma once
// Shared fixtures for the storage tests: a temp directory under /tmp removed at
// the end, and a freshly migrated database inside it.

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "otad/storage/database.hpp"
#include "otad/storage/migrations.hpp"

namespace otad::storage::testing {

class TempDir {
public:
    TempDir() {
        std::string pattern = "/tmp/otad-storage-test-XXXXXX";
        if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
};

inline DatabaseOptions options_in(const TempDir& dir) {
    DatabaseOptions options;
    options.path = dir.path() / "otad.db";
    return options;
}

// A test with a migrated database at <tmp>/otad.db.
class MigratedDatabaseTest : public ::testing::Test {
protected:
    void SetUp() override {
        db = std::make_unique<Database>(options_in(dir));
        migrate(*db);
    }
    void TearDown() override { db.reset(); }

    TempDir dir;
    std::unique_ptr<Database> db;
};

}  // namespace otad::storage::testing
