// net::plan_descriptors: how max_connections follows the open-file limit.
// Arithmetic only (no Asio): the OS call is platform::open_file_limit().

#include <algorithm>

#include "otad/net/server.hpp"

namespace otad::net {
namespace {

constexpr std::uint64_t kBaseReserve = 32;
constexpr std::uint64_t kPerIoThread = 4;
constexpr std::uint64_t kPerWorker = 4;
constexpr std::uint64_t kMinMappedFiles = 16;
constexpr std::uint64_t kMaxMappedFiles = 1024;

std::uint64_t fixed_reserve(unsigned io_threads, unsigned worker_threads) {
    return kBaseReserve + kPerIoThread * std::max(1u, io_threads) + kPerWorker * std::max(1u, worker_threads);
}

}  // namespace

DescriptorPlan plan_descriptors(std::uint64_t open_file_limit, std::uint32_t configured_max_connections,
                                unsigned io_threads, unsigned worker_threads) {
    DescriptorPlan plan;
    plan.mapped_files = std::clamp<std::uint64_t>(open_file_limit / 8, kMinMappedFiles, kMaxMappedFiles);
    plan.reserved = fixed_reserve(io_threads, worker_threads) + plan.mapped_files;
    const std::uint64_t left = open_file_limit > plan.reserved ? open_file_limit - plan.reserved
                                                               : std::max<std::uint64_t>(1, open_file_limit / 4);
    if (configured_max_connections == 0) {
        plan.derived = true;
        plan.max_connections = static_cast<std::uint32_t>(std::clamp<std::uint64_t>(left, 1, kMaxDerivedConnections));
    } else {
        plan.max_connections = configured_max_connections;
        plan.fits = open_file_limit > plan.reserved && configured_max_connections <= left;
    }
    return plan;
}

std::uint64_t wanted_open_files(std::uint32_t configured_max_connections, unsigned io_threads,
                                unsigned worker_threads) {
    const std::uint64_t connections = configured_max_connections ? configured_max_connections : kMaxDerivedConnections;
    return connections + fixed_reserve(io_threads, worker_threads) + kMaxMappedFiles;
}

}  // namespace otad::net
