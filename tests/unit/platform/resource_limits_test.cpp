#include "otad/platform/resource_limits.hpp"

#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace otad::platform {
namespace {

TEST(OpenFileLimit, ReportsWhatGetrlimitSays) {
    rlimit expected{};
    ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &expected), 0);
    auto limit = open_file_limit();
    ASSERT_TRUE(limit.has_value());
    if (expected.rlim_cur != RLIM_INFINITY) {
        EXPECT_EQ(limit->soft, expected.rlim_cur);
    }
    if (expected.rlim_max != RLIM_INFINITY) {
        EXPECT_EQ(limit->hard, expected.rlim_max);
    }
    EXPECT_LE(limit->soft, limit->hard);
}

// In a child process, so the test binary's own limit is left alone.
TEST(OpenFileLimit, RaisesTheSoftLimitUpToTheHardOneAndNeverLowersIt) {
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        rlimit low{};
        ::getrlimit(RLIMIT_NOFILE, &low);
        if (low.rlim_max != RLIM_INFINITY && low.rlim_max < 200) ::_exit(10);  // cannot test here
        low.rlim_cur = 100;
        low.rlim_max = 200;
        if (::setrlimit(RLIMIT_NOFILE, &low) != 0) ::_exit(11);
        auto same = raise_open_file_limit(50);  // lower than in force: unchanged
        if (!same || same->soft != 100) ::_exit(1);
        auto raised = raise_open_file_limit(150);
        if (!raised || raised->soft != 150 || raised->hard != 200) ::_exit(2);
        auto capped = raise_open_file_limit(10'000);  // past the hard limit: up to it
        if (!capped || capped->soft != 200 || capped->hard != 200) ::_exit(3);
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 10) GTEST_SKIP() << "hard open-file limit below 200";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "1: lowered, 2: not raised, 3: not capped at the hard limit";
}

}  // namespace
}  // namespace otad::platform
