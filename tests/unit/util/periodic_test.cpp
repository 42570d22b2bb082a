#include "otad/util/periodic.hpp"

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

using otad::util::PeriodicTask;
using namespace std::chrono_literals;

namespace {

template <class Predicate>
bool eventually(Predicate predicate) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
        if (predicate()) return true;
        std::this_thread::sleep_for(2ms);
    }
    return predicate();
}

TEST(PeriodicTaskTest, RunsEveryPeriodAndAThrowingRunDoesNotStopIt) {
    std::atomic<int> runs{0};
    PeriodicTask task("test", 5ms, [&] {
        if (++runs == 1) throw std::runtime_error("first run fails");
    });
    task.start();
    EXPECT_TRUE(eventually([&] { return runs.load() >= 3; }));
    task.stop();
    const int after_stop = runs.load();
    std::this_thread::sleep_for(30ms);
    EXPECT_EQ(runs.load(), after_stop);
}

TEST(PeriodicTaskTest, StopWakesALongPeriodAtOnceAndZeroNeverRuns) {
    std::atomic<int> runs{0};
    PeriodicTask hourly("hourly", std::chrono::hours(1), [&] { ++runs; });
    hourly.start();
    const auto before = std::chrono::steady_clock::now();
    hourly.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - before, 5s);
    PeriodicTask disabled("disabled", 0ms, [&] { ++runs; });
    disabled.start();
    std::this_thread::sleep_for(20ms);
    disabled.stop();
    EXPECT_EQ(runs.load(), 0);
}

}  // namespace
