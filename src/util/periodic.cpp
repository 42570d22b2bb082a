#include "otad/util/periodic.hpp"

#include "otad/util/logging.hpp"

namespace otad::util {

PeriodicTask::PeriodicTask(std::string name, std::chrono::milliseconds period, std::function<void()> work)
    : name_(std::move(name)), period_(period), work_(std::move(work)) {}

PeriodicTask::~PeriodicTask() { stop(); }

void PeriodicTask::start() {
    std::lock_guard lock(mutex_);
    if (thread_.joinable() || stopping_ || period_.count() <= 0) return;
    thread_ = std::thread([this] { loop(); });
}

void PeriodicTask::stop() noexcept {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void PeriodicTask::loop() {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
        wake_.wait_for(lock, period_, [this] { return stopping_; });
        if (stopping_) break;
        lock.unlock();
        try {
            work_();
        } catch (const std::exception& e) {
            log_event(*logger("otad"), spdlog::level::err, "periodic_task_failed",
                      {{"task", name_}, {"error", e.what()}});
        } catch (...) {
            log_event(*logger("otad"), spdlog::level::err, "periodic_task_failed",
                      {{"task", name_}, {"error", "unknown"}});
        }
        lock.lock();
    }
}

}  // namespace otad::util
