#include "otad/domain/change_watch.hpp"

#include "otad/storage/audit_repository.hpp"
#include "otad/storage/database.hpp"

namespace otad::domain {
namespace {

std::int64_t steady_ns() noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

}  // namespace

ChangeWatch::ChangeWatch(storage::Database& database, std::chrono::microseconds min_interval)
    : database_(database), min_interval_(min_interval) {}

std::int64_t ChangeWatch::generation() {
    const std::int64_t now = steady_ns();
    const std::int64_t checked = checked_at_ns_.load(std::memory_order_acquire);
    if (checked != 0 && min_interval_.count() > 0 && now - checked < min_interval_.count())
        return cached_.load(std::memory_order_acquire);
    std::int64_t newest = database_.read([](storage::Connection& c) -> std::int64_t {
        auto entries = storage::AuditRepository(c).list(1);
        return entries.empty() ? 0 : entries.front().id;
    });
    // Concurrent readers may finish out of order; never move the generation back.
    std::int64_t seen = cached_.load(std::memory_order_acquire);
    while (newest > seen && !cached_.compare_exchange_weak(seen, newest, std::memory_order_acq_rel)) {}
    checked_at_ns_.store(now == 0 ? 1 : now, std::memory_order_release);
    return std::max(newest, seen);
}

void ChangeWatch::touch() noexcept { checked_at_ns_.store(0, std::memory_order_release); }

}  // namespace otad::domain
