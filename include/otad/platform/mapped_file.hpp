#pragma once
// A read-only, immutable file kept open and mapped into memory, shared by every
// connection that serves it. Blobs are content-addressed and never rewritten in
// place, so a mapping stays valid for as long as a response holds it.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string_view>

namespace otad::platform {

class MappedFile {
public:
    // Opens and maps `path`. Throws std::system_error naming the path on failure.
    static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path);

    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const char* data() const noexcept { return data_; }
    std::uint64_t size() const noexcept { return size_; }
    std::string_view bytes(std::uint64_t offset, std::uint64_t length) const noexcept {
        return {data_ + offset, static_cast<std::size_t>(length)};
    }
    // The OS file descriptor for zero-copy sends (sendfile); -1 where there is none.
    int native_handle() const noexcept { return fd_; }
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    MappedFile() = default;
    std::filesystem::path path_;
    const char* data_ = nullptr;
    std::uint64_t size_ = 0;
    int fd_ = -1;
    void* fallback_ = nullptr;  // heap copy where mmap is unavailable
};

}  // namespace otad::platform
