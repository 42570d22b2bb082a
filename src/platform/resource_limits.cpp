#include "otad/platform/resource_limits.hpp"

#include <limits>

#if !defined(_WIN32)
#include <sys/resource.h>
#endif

namespace otad::platform {

#if !defined(_WIN32)

namespace {

std::uint64_t from_rlim(rlim_t value) noexcept {
    if (value == RLIM_INFINITY) return std::numeric_limits<std::uint64_t>::max();
    return static_cast<std::uint64_t>(value);
}

}  // namespace

std::optional<OpenFileLimit> open_file_limit() noexcept {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return std::nullopt;
    return OpenFileLimit{from_rlim(limit.rlim_cur), from_rlim(limit.rlim_max)};
}

std::optional<OpenFileLimit> raise_open_file_limit(std::uint64_t wanted) noexcept {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return std::nullopt;
    const std::uint64_t soft = from_rlim(limit.rlim_cur);
    const std::uint64_t hard = from_rlim(limit.rlim_max);
    const std::uint64_t target = wanted < hard ? wanted : hard;
    if (target > soft) {
        rlimit raised = limit;
        raised.rlim_cur =
            target == std::numeric_limits<std::uint64_t>::max() ? RLIM_INFINITY : static_cast<rlim_t>(target);
        ::setrlimit(RLIMIT_NOFILE, &raised);  // on failure the old limit stays, reported below
    }
    return open_file_limit();
}

#else

std::optional<OpenFileLimit> open_file_limit() noexcept { return std::nullopt; }
std::optional<OpenFileLimit> raise_open_file_limit(std::uint64_t) noexcept { return std::nullopt; }

#endif

}  // namespace otad::platform
