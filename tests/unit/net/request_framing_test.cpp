// Framing rules (RFC 9112) and body limits that net enforces, one at a time.

#include "otad/net/request_framing.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace otad::net {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TransferCoding classify(std::vector<std::string_view> values) { return classify_transfer_encoding(values); }

TEST(TransferEncoding, ChunkedAloneInAnyCaseFrames) {
    EXPECT_EQ(classify({}), TransferCoding::none);
    EXPECT_EQ(classify({"chunked"}), TransferCoding::chunked);
    EXPECT_EQ(classify({"Chunked"}), TransferCoding::chunked);
    EXPECT_EQ(classify({" chunked "}), TransferCoding::chunked);
    EXPECT_EQ(classify({", chunked,"}), TransferCoding::chunked);  // empty list elements are allowed
}

TEST(TransferEncoding, AFinalCodingOtherThanChunkedIsInvalid) {
    // RFC 9112 §6.3: the length cannot be known; the body would be read as the next request.
    EXPECT_EQ(classify({"gzip"}), TransferCoding::invalid);
    EXPECT_EQ(classify({"chunked, gzip"}), TransferCoding::invalid);
    EXPECT_EQ(classify({"xchunked"}), TransferCoding::invalid);
    EXPECT_EQ(classify({"chunked;ext=1"}), TransferCoding::invalid);
    EXPECT_EQ(classify({"identity"}), TransferCoding::invalid);
    EXPECT_EQ(classify({""}), TransferCoding::invalid);
    EXPECT_EQ(classify({"chunked", "gzip"}), TransferCoding::invalid);
}

TEST(TransferEncoding, ChunkedTwiceIsInvalid) {
    EXPECT_EQ(classify({"chunked, chunked"}), TransferCoding::invalid);
    EXPECT_EQ(classify({"chunked", "chunked"}), TransferCoding::invalid);
}

TEST(TransferEncoding, OtherCodingsBeforeChunkedAreUnsupported) {
    EXPECT_EQ(classify({"gzip, chunked"}), TransferCoding::unsupported);
    EXPECT_EQ(classify({"gzip", "chunked"}), TransferCoding::unsupported);  // several fields form one list
}

TEST(HostFields, Http11NeedsExactlyOneAndHttp10AtMostOne) {
    EXPECT_FALSE(host_field_problem(11, 1));
    EXPECT_TRUE(host_field_problem(11, 0));
    EXPECT_TRUE(host_field_problem(11, 2));
    EXPECT_FALSE(host_field_problem(10, 0));
    EXPECT_FALSE(host_field_problem(10, 1));
    EXPECT_TRUE(host_field_problem(10, 2));
}

TEST(ByteBudget, NeverGoesPastItsCapacity) {
    ByteBudget budget(100);
    EXPECT_TRUE(budget.try_take(60));
    EXPECT_FALSE(budget.try_take(41));
    EXPECT_EQ(budget.in_use(), 60u);
    EXPECT_TRUE(budget.try_take(40));
    EXPECT_FALSE(budget.try_take(1));
    budget.give_back(100);
    EXPECT_EQ(budget.in_use(), 0u);
    EXPECT_FALSE(budget.try_take(101));
}

TEST(ByteBudget, ReservationsGrowShrinkAndGiveBackOnDestruction) {
    ByteBudget budget(100);
    {
        BudgetReservation a(budget);
        EXPECT_TRUE(a.hold(30));
        EXPECT_TRUE(a.hold(70));
        EXPECT_EQ(budget.in_use(), 70u);
        BudgetReservation b(budget);
        EXPECT_FALSE(b.hold(31));  // refused, holding nothing
        EXPECT_EQ(b.held(), 0u);
        EXPECT_TRUE(a.hold(10));
        EXPECT_TRUE(b.hold(90));
        EXPECT_EQ(budget.in_use(), 100u);
    }
    EXPECT_EQ(budget.in_use(), 0u);
}

TEST(ByteBudget, ConcurrentTakersNeverOvercommit) {
    ByteBudget budget(1000);
    std::atomic<int> granted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < 1000; ++i)
                if (budget.try_take(7)) granted.fetch_add(1);
        });
    for (auto& t : threads) t.join();
    EXPECT_EQ(granted.load(), 1000 / 7);
    EXPECT_EQ(budget.in_use(), 7u * (1000 / 7));
}

TEST(StreamedReadDeadline, AReadWaitsBodyTimeoutAtMost) {
    const auto start = Clock::now();
    // Plenty received: only the wait for the next bytes bounds the read.
    EXPECT_EQ(streamed_read_deadline(start, start + 5s, 1'000'000, 1000ms, 1000), start + 5s + 1000ms);
    EXPECT_EQ(streamed_read_deadline(start, start + 5s, 0, 1000ms, 0), start + 5s + 1000ms);
}

TEST(StreamedReadDeadline, ATricklingSenderRunsOutOfTime) {
    const auto start = Clock::now();
    // Nothing received: the grace of body_timeout is all it gets.
    EXPECT_EQ(streamed_read_deadline(start, start, 0, 1000ms, 1000), start + 1000ms);
    // Each min_rate bytes earn a second beyond the grace.
    EXPECT_EQ(streamed_read_deadline(start, start + 2s, 1500, 1000ms, 1000), start + 2500ms);
    // At a quarter of the minimum rate, the deadline is passed before long.
    auto now = start;
    std::uint64_t received = 0;
    int reads = 0;
    while (streamed_read_deadline(start, now, received, 1000ms, 1000) > now && reads < 1000) {
        now += 100ms;
        received += 25;
        ++reads;
    }
    EXPECT_LT(now - start, 2s);
}

}  // namespace
}  // namespace otad::net
