#include "otad/domain/token_usage.hpp"

#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "device_test_support.hpp"
#include "otad/storage/token_repository.hpp"

using namespace otad::domain;
using otad::storage::TokenRepository;
using otad::storage::TokenRole;

namespace {

class TokenUsageTest : public otad::domain::testing::DatabaseTest {
protected:
    std::int64_t add_token(const std::string& name) {
        return db->write(
            [&](otad::storage::Connection& c) { return TokenRepository(c).create(name, TokenRole::viewer).record.id; });
    }
    std::optional<std::int64_t> last_used(const std::string& name) {
        return db->read(
            [&](otad::storage::Connection& c) { return TokenRepository(c).find_active_by_name(name)->last_used_at; });
    }
};

TEST_F(TokenUsageTest, UsesAreKeptInMemoryUntilAFlushWritesThemAtMostOncePerResolution) {
    std::atomic<std::int64_t> now{1000};
    TokenUsage usage(*db, std::chrono::milliseconds(0), 60, [&] { return now.load(); });
    const auto ci = add_token("ci");
    const auto viewer = add_token("viewer");

    usage.record(ci);
    usage.record(ci);
    usage.record(viewer);
    EXPECT_EQ(usage.pending(), 2u);
    EXPECT_EQ(last_used("ci"), std::nullopt);  // nothing written by a request
    ASSERT_TRUE(usage.flush());
    EXPECT_EQ(usage.pending(), 0u);
    EXPECT_EQ(last_used("ci"), 1000);
    EXPECT_EQ(last_used("viewer"), 1000);

    now = 1059;  // within the resolution: not queued again
    usage.record(ci);
    EXPECT_EQ(usage.pending(), 0u);
    now = 1060;
    usage.record(ci);
    EXPECT_EQ(usage.pending(), 1u);
    ASSERT_TRUE(usage.flush());
    EXPECT_EQ(last_used("ci"), 1060);
    EXPECT_EQ(last_used("viewer"), 1000);
}

TEST_F(TokenUsageTest, TheBackgroundWriterFlushesAndStopWritesWhatIsLeft) {
    const auto ci = add_token("ci");
    {
        TokenUsage usage(*db, std::chrono::milliseconds(10));
        usage.start();
        usage.record(ci);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!last_used("ci") && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        EXPECT_TRUE(last_used("ci").has_value());
    }
    const auto other = add_token("other");
    {
        TokenUsage usage(*db, std::chrono::hours(1));  // never flushes on its own in this test
        usage.start();
        usage.record(other);
        usage.stop();
        EXPECT_EQ(usage.pending(), 0u);
    }
    EXPECT_TRUE(last_used("other").has_value());
}

}  // namespace
