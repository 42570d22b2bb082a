#include "otad/domain/token_usage.hpp"

#include <utility>
#include <vector>

#include "otad/storage/database.hpp"
#include "otad/storage/token_repository.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"

namespace otad::domain {

TokenUsage::TokenUsage(storage::Database& database, std::chrono::milliseconds flush_interval, std::int64_t resolution_s,
                       Clock clock)
    : database_(database),
      resolution_s_(resolution_s),
      clock_(std::move(clock)),
      task_("token use flush", flush_interval, [this] { flush(); }) {}

TokenUsage::~TokenUsage() { stop(); }

std::int64_t TokenUsage::now() const { return clock_ ? clock_() : util::unix_now(); }

void TokenUsage::record(std::int64_t token_id) {
    const std::int64_t at = now();
    std::lock_guard lock(mutex_);
    auto [queued, first] = queued_.try_emplace(token_id, at);
    if (!first) {
        if (at - queued->second < resolution_s_) return;
        queued->second = at;
    }
    pending_[token_id] = at;
}

std::size_t TokenUsage::pending() const {
    std::lock_guard lock(mutex_);
    return pending_.size();
}

bool TokenUsage::flush() noexcept {
    std::lock_guard flushing(flush_mutex_);
    std::vector<std::pair<std::int64_t, std::int64_t>> batch;
    {
        std::lock_guard lock(mutex_);
        batch.assign(pending_.begin(), pending_.end());
        pending_.clear();
    }
    if (batch.empty()) return true;
    try {
        database_.write([&](storage::Connection& c) { storage::TokenRepository(c).record_uses(batch); },
                        storage::Durability::normal);
        return true;
    } catch (const std::exception& e) {
        util::log_event(*util::logger("storage"), spdlog::level::warn, "token_use_not_recorded",
                        {{"tokens", std::to_string(batch.size())}, {"error", e.what()}});
    }
    // Keep them for the next flush, unless a newer use was queued meanwhile.
    std::lock_guard lock(mutex_);
    for (const auto& [id, at] : batch) pending_.try_emplace(id, at);
    return false;
}

void TokenUsage::start() { task_.start(); }

void TokenUsage::stop() noexcept {
    task_.stop();
    flush();
}

}  // namespace otad::domain
