#include "otad/platform/mapped_file.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <unistd.h>

namespace otad::platform {
namespace {

class MappedFileTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ =
            std::filesystem::temp_directory_path() / ("otad-mapped-" + std::to_string(::getpid()) + "-" +
                                                      ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(dir_);
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }

    std::filesystem::path write(const std::string& name, const std::string& content) {
        auto path = dir_ / name;
        std::ofstream(path, std::ios::binary) << content;
        return path;
    }
    std::filesystem::path dir_;
};

TEST_F(MappedFileTest, MapsWholeFileByteExact) {
    std::string content(300'000, '\0');
    std::mt19937 rng(7);
    for (auto& c : content) c = static_cast<char>(rng());
    auto path = write("blob", content);

    auto file = MappedFile::open(path);
    ASSERT_EQ(file->size(), content.size());
    EXPECT_EQ(std::string(file->data(), file->size()), content);
    EXPECT_EQ(file->bytes(1000, 5), content.substr(1000, 5));
    EXPECT_GE(file->native_handle(), 0);
    EXPECT_EQ(file->path(), path);
}

TEST_F(MappedFileTest, EmptyFileHasNonNullDataAndZeroSize) {
    auto file = MappedFile::open(write("empty", ""));
    EXPECT_EQ(file->size(), 0u);
    EXPECT_NE(file->data(), nullptr);
    EXPECT_EQ(file->bytes(0, 0), "");
}

TEST_F(MappedFileTest, MissingFileThrowsSystemErrorNamingPath) {
    auto path = dir_ / "does-not-exist.bin";
    try {
        (void)MappedFile::open(path);
        FAIL() << "expected std::system_error";
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
        EXPECT_NE(std::string(e.what()).find("does-not-exist.bin"), std::string::npos) << e.what();
    }
}

TEST_F(MappedFileTest, DirectoryIsRefused) { EXPECT_THROW((void)MappedFile::open(dir_), std::system_error); }

TEST_F(MappedFileTest, DescriptorIsClosedOnDestruction) {
    int fd = -1;
    {
        auto file = MappedFile::open(write("x", "abc"));
        fd = file->native_handle();
        ASSERT_GE(fd, 0);
        EXPECT_GE(::fcntl(fd, F_GETFD), 0);
    }
    EXPECT_EQ(::fcntl(fd, F_GETFD), -1);
}

}  // namespace
}  // namespace otad::platform
