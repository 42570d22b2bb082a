#include "otad/platform/mapped_file.hpp"

#include <cerrno>
#include <cstdlib>
#include <string>
#include <system_error>

#if defined(_WIN32)
#include <fstream>
#else
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace otad::platform {
namespace {

// data() of an empty file: non-null so callers can form empty views without special cases.
constexpr char empty_file_bytes[1] = {0};

[[noreturn]] void throw_errno(int error, const std::string& what, const std::filesystem::path& path) {
    throw std::system_error(error, std::generic_category(), what + " '" + path.string() + "'");
}

}  // namespace

#if defined(_WIN32)

// No mmap here: read the (immutable) file into one heap buffer instead.
std::shared_ptr<const MappedFile> MappedFile::open(const std::filesystem::path& path) {
    std::shared_ptr<MappedFile> file(new MappedFile());
    file->path_ = path;
    std::ifstream in(path, std::ios::binary);
    if (!in)
        throw std::system_error(std::make_error_code(std::errc::no_such_file_or_directory),
                                "cannot open '" + path.string() + "'");
    std::error_code ec;
    auto size = std::filesystem::file_size(path, ec);
    if (ec) throw std::system_error(ec, "cannot stat '" + path.string() + "'");
    if (size == 0) {
        file->data_ = empty_file_bytes;
        return file;
    }
    file->fallback_ = std::malloc(static_cast<std::size_t>(size));
    if (file->fallback_ == nullptr)
        throw std::system_error(std::make_error_code(std::errc::not_enough_memory),
                                "cannot buffer '" + path.string() + "'");
    in.read(static_cast<char*>(file->fallback_), static_cast<std::streamsize>(size));
    if (static_cast<std::uint64_t>(in.gcount()) != size)
        throw std::system_error(std::make_error_code(std::errc::io_error), "cannot read '" + path.string() + "'");
    file->data_ = static_cast<const char*>(file->fallback_);
    file->size_ = size;
    return file;
}

MappedFile::~MappedFile() { std::free(fallback_); }

#else

std::shared_ptr<const MappedFile> MappedFile::open(const std::filesystem::path& path) {
    std::shared_ptr<MappedFile> file(new MappedFile());
    file->path_ = path;
    file->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (file->fd_ < 0) throw_errno(errno, "cannot open", path);
    struct stat st {};
    if (::fstat(file->fd_, &st) != 0) throw_errno(errno, "cannot stat", path);
    if (!S_ISREG(st.st_mode)) throw_errno(EINVAL, "not a regular file:", path);
    file->size_ = static_cast<std::uint64_t>(st.st_size);
    if (file->size_ == 0) {
        file->data_ = empty_file_bytes;  // mmap refuses length 0
        return file;
    }
    void* mapping = ::mmap(nullptr, static_cast<std::size_t>(file->size_), PROT_READ, MAP_SHARED, file->fd_, 0);
    if (mapping == MAP_FAILED) {
        file->size_ = 0;  // nothing for the destructor to unmap
        throw_errno(errno, "cannot map", path);
    }
    file->data_ = static_cast<const char*>(mapping);
    // Downloads read front to back: ask for aggressive read-ahead. Advice only; failure is harmless.
    (void)::madvise(mapping, static_cast<std::size_t>(file->size_), MADV_SEQUENTIAL);
    return file;
}

MappedFile::~MappedFile() {
    if (size_ > 0 && data_ != nullptr && fallback_ == nullptr)
        ::munmap(const_cast<char*>(data_), static_cast<std::size_t>(size_));
    if (fd_ >= 0) ::close(fd_);
    std::free(fallback_);
}

#endif

}  // namespace otad::platform
