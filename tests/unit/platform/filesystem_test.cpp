#include "otad/platform/filesystem.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <system_error>

#include <gtest/gtest.h>

namespace fs = std::filesystem;
using namespace otad::platform;

namespace {

class FilesystemTest : public ::testing::Test {
protected:
    void SetUp() override {
        std::string pattern = "/tmp/otad-fs-test-XXXXXX";
        ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
        dir = pattern;
    }
    void TearDown() override {
        std::error_code ignored;
        fs::remove_all(dir, ignored);
    }

    static std::string read(const fs::path& path) {
        std::ifstream in(path, std::ios::binary);
        std::ostringstream out;
        out << in.rdbuf();
        return out.str();
    }
    static unsigned mode_of(const fs::path& path) {
        struct stat st {};
        EXPECT_EQ(::stat(path.c_str(), &st), 0);
        return st.st_mode & 0777;
    }
    std::size_t entries_in(const fs::path& path) const {
        return static_cast<std::size_t>(std::distance(fs::directory_iterator(path), fs::directory_iterator()));
    }

    fs::path dir;
};

TEST_F(FilesystemTest, AtomicWriteCreatesOwnerOnlyFileWithoutLeavingTemps) {
    const fs::path key = dir / "server.key";
    atomic_write_file(key, "secret key bytes", true);
    EXPECT_EQ(read(key), "secret key bytes");
    EXPECT_EQ(mode_of(key), 0600u);
    EXPECT_EQ(entries_in(dir), 1u);
}

TEST_F(FilesystemTest, AtomicWriteReplacesExistingContent) {
    const fs::path cert = dir / "server.crt";
    atomic_write_file(cert, "first version, longer than the second", false);
    atomic_write_file(cert, "second", false);
    EXPECT_EQ(read(cert), "second");
    EXPECT_EQ(entries_in(dir), 1u);
}

TEST_F(FilesystemTest, AtomicWriteIntoMissingDirectoryFailsNamingThePath) {
    try {
        atomic_write_file(dir / "missing" / "file", "x", false);
        FAIL() << "expected std::system_error";
    } catch (const std::system_error& e) {
        EXPECT_NE(std::string(e.what()).find((dir / "missing").string()), std::string::npos) << e.what();
    }
    EXPECT_EQ(entries_in(dir), 0u);
}

TEST_F(FilesystemTest, SetOwnerOnlyRestrictsFilesAndDirectories) {
    const fs::path file = dir / "f";
    std::ofstream(file) << "x";
    fs::permissions(file, fs::perms::all);
    const fs::path sub = dir / "d";
    fs::create_directory(sub);
    fs::permissions(sub, fs::perms::all);

    set_owner_only(file);
    set_owner_only(sub);
    EXPECT_EQ(mode_of(file), 0600u);
    EXPECT_EQ(mode_of(sub), 0700u);
}

TEST_F(FilesystemTest, SetOwnerOnlyOnMissingPathThrows) {
    EXPECT_THROW(set_owner_only(dir / "nope"), std::system_error);
}

TEST_F(FilesystemTest, EnsureDirectoryCreatesParentsOnceAndRestricts) {
    const fs::path nested = dir / "a" / "b" / "c";
    EXPECT_TRUE(ensure_directory(nested, true));
    EXPECT_TRUE(fs::is_directory(nested));
    EXPECT_EQ(mode_of(nested), 0700u);
    EXPECT_FALSE(ensure_directory(nested, true));
}

TEST_F(FilesystemTest, EnsureDirectoryOverAFileFails) {
    const fs::path file = dir / "file";
    std::ofstream(file) << "x";
    EXPECT_THROW(ensure_directory(file / "sub"), std::system_error);
}

TEST_F(FilesystemTest, FsyncOfExistingPathsSucceedsAndMissingOnesThrow) {
    const fs::path file = dir / "f";
    std::ofstream(file) << "x";
    EXPECT_NO_THROW(fsync_file(file));
    EXPECT_NO_THROW(fsync_directory(dir));
    EXPECT_THROW(fsync_file(dir / "missing"), std::system_error);
    EXPECT_THROW(fsync_directory(dir / "missing"), std::system_error);
    EXPECT_THROW(fsync_file(-1), std::system_error);
}

TEST_F(FilesystemTest, WritableFileIsExclusiveAndWritesEverything) {
    const fs::path path = dir / "w";
    {
        WritableFile file = WritableFile::create_exclusive(path, true);
        std::string big(1 << 20, 'z');
        file.write("head:");
        file.write(big);
        file.sync();
        file.close();
        EXPECT_FALSE(file.is_open());
        EXPECT_THROW(file.write("late"), std::system_error);
    }
    EXPECT_EQ(fs::file_size(path), 5u + (1u << 20));
    EXPECT_EQ(mode_of(path), 0600u);
    EXPECT_THROW(WritableFile::create_exclusive(path, true), std::system_error);
}

TEST_F(FilesystemTest, WritableFileMovesOwnership) {
    const fs::path path = dir / "m";
    WritableFile first = WritableFile::create_exclusive(path, false);
    WritableFile second = std::move(first);
    EXPECT_FALSE(first.is_open());
    EXPECT_TRUE(second.is_open());
    second.write("moved");
    second.close();
    EXPECT_EQ(read(path), "moved");
}

TEST_F(FilesystemTest, FileLockIsExclusiveUntilReleased) {
    const fs::path path = dir / "otad.lock";
    {
        FileLock first = FileLock::try_acquire(path);
        ASSERT_TRUE(first.owns_lock());
        FileLock second = FileLock::try_acquire(path);
        EXPECT_FALSE(second.owns_lock());
    }
    FileLock again = FileLock::try_acquire(path);
    EXPECT_TRUE(again.owns_lock());
}

}  // namespace
