#pragma once
// A background thread that runs one piece of work every `period` until stopped:
// the shape of otad's housekeeping (orphan blob collection, batched token-use
// writes). stop() wakes the thread at once instead of waiting out the period.
//
// The work runs only on that thread, never twice at the same time. It must not
// throw (catch and log inside); an escaping exception is logged and the loop
// goes on. Thread-safe: start() and stop() may be called from any thread.

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace otad::util {

class PeriodicTask {
public:
    // `name` appears in the log if the work throws. A period of zero never runs
    // the work (start() is then a no-op): a disabled task.
    PeriodicTask(std::string name, std::chrono::milliseconds period, std::function<void()> work);
    ~PeriodicTask();  // stop()
    PeriodicTask(const PeriodicTask&) = delete;
    PeriodicTask& operator=(const PeriodicTask&) = delete;

    // Starts the thread; the first run is one period after it (idempotent).
    void start();
    // Wakes and joins the thread; the work is not run again (idempotent, never throws).
    void stop() noexcept;

    std::chrono::milliseconds period() const noexcept { return period_; }

private:
    void loop();

    std::string name_;
    std::chrono::milliseconds period_;
    std::function<void()> work_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::thread thread_;
};

}  // namespace otad::util
