#include "otad/platform/send_file.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <string>

#include <fcntl.h>
#include <poll.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include "otad/platform/mapped_file.hpp"

namespace otad::platform {
namespace {

struct SocketPair {
    int sender = -1;
    int receiver = -1;
    SocketPair() {
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) throw std::runtime_error("socketpair");
        sender = fds[0];
        receiver = fds[1];
        ::fcntl(sender, F_SETFL, ::fcntl(sender, F_GETFL) | O_NONBLOCK);
    }
    ~SocketPair() {
        if (sender >= 0) ::close(sender);
        if (receiver >= 0) ::close(receiver);
    }
};

class SendFileTest : public ::testing::Test {
protected:
    void SetUp() override {
        path_ = std::filesystem::temp_directory_path() / ("otad-sendfile-" + std::to_string(::getpid()));
        content_.resize(3 * 1024 * 1024 + 17);
        std::mt19937 rng(11);
        for (auto& c : content_) c = static_cast<char>(rng());
        std::ofstream(path_, std::ios::binary) << content_;
    }
    void TearDown() override { std::filesystem::remove(path_); }
    std::filesystem::path path_;
    std::string content_;
};

// Receives whatever is readable without blocking.
void drain_into(int fd, std::string& out) {
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) return;
        out.append(buf, static_cast<std::size_t>(n));
    }
}

TEST_F(SendFileTest, SendsRangeByteExactAcrossWouldBlock) {
    if (!send_file_supported()) GTEST_SKIP() << "no sendfile on this platform";
    auto file = MappedFile::open(path_);
    SocketPair pair;
    const std::uint64_t offset = 12345;
    const std::uint64_t count = content_.size() - offset - 99;
    std::string received;
    std::uint64_t sent = 0;
    bool saw_would_block = false;
    for (int round = 0; round < 100'000 && sent < count; ++round) {
        auto r = send_file(pair.sender, file->native_handle(), offset + sent, count - sent);
        ASSERT_FALSE(r.error) << r.error.message();
        ASSERT_FALSE(r.unsupported);
        sent += r.bytes_sent;
        if (r.would_block) {
            saw_would_block = true;
            pollfd p{pair.receiver, POLLIN, 0};
            ASSERT_EQ(::poll(&p, 1, 5000), 1);
            drain_into(pair.receiver, received);
        }
    }
    ASSERT_EQ(sent, count);
    while (received.size() < count) {
        pollfd p{pair.receiver, POLLIN, 0};
        ASSERT_EQ(::poll(&p, 1, 5000), 1);
        drain_into(pair.receiver, received);
    }
    EXPECT_TRUE(saw_would_block) << "3 MiB should overflow a socket buffer";
    ASSERT_EQ(received.size(), count);
    EXPECT_TRUE(received == content_.substr(offset, count));
    // The shared descriptor's own offset is untouched.
    EXPECT_EQ(::lseek(file->native_handle(), 0, SEEK_CUR), 0);
}

TEST_F(SendFileTest, ZeroCountSendsNothing) {
    if (!send_file_supported()) GTEST_SKIP();
    auto file = MappedFile::open(path_);
    SocketPair pair;
    auto r = send_file(pair.sender, file->native_handle(), 0, 0);
    EXPECT_EQ(r.bytes_sent, 0u);
    EXPECT_FALSE(r.would_block);
    EXPECT_FALSE(r.error);
}

TEST_F(SendFileTest, RangePastEndOfFileIsAnError) {
    if (!send_file_supported()) GTEST_SKIP();
    auto file = MappedFile::open(path_);
    SocketPair pair;
    auto r = send_file(pair.sender, file->native_handle(), content_.size() - 10, 20);
    EXPECT_EQ(r.bytes_sent, 10u);
    EXPECT_TRUE(r.error);
}

TEST_F(SendFileTest, BadSocketReportsError) {
    if (!send_file_supported()) GTEST_SKIP();
    auto file = MappedFile::open(path_);
    auto r = send_file(-1, file->native_handle(), 0, 10);
    EXPECT_EQ(r.bytes_sent, 0u);
    EXPECT_EQ(r.error, std::errc::bad_file_descriptor);
}

}  // namespace
}  // namespace otad::platform

namespace otad::platform {
namespace {

TEST(SocketQueue, ReportsUnacknowledgedBytesOnTcp) {
#if !defined(__linux__)
    GTEST_SKIP() << "no SIOCOUTQ here";
#else
    int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener, 1), 0);
    socklen_t len = sizeof addr;
    ::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
    int client = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    int server = ::accept(listener, nullptr, nullptr);
    ASSERT_GE(server, 0);
    auto idle = socket_unacknowledged_bytes(server);
    ASSERT_TRUE(idle.has_value());
    EXPECT_EQ(*idle, 0u);
    EXPECT_FALSE(socket_unacknowledged_bytes(-1).has_value());
    ::close(server);
    ::close(client);
    ::close(listener);
#endif
}

}  // namespace
}  // namespace otad::platform
