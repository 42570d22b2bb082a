#include "otad/util/logging.hpp"

#include <atomic>
#include <mutex>
#include <stdexcept>

#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/spdlog.h>

#include "otad/platform/terminal.hpp"

namespace otad::util {
namespace {
std::atomic<LogFormat> g_format{LogFormat::text};
std::atomic<spdlog::level::level_enum> g_level{spdlog::level::info};
std::mutex g_mutex;

// Every logger's sink: stderr, so stdout stays free for command output (tokens,
// JSON listings). spdlog's stderr sink holds one mutex across fwrite + fflush;
// with an access-log line per request from every I/O thread, that lock turned
// into a futex wait on most requests. Here each thread formats with its own
// copy of the formatter and hands the line to one write call, with no lock.
class StderrLineSink final : public spdlog::sinks::sink {
public:
    StderrLineSink() : formatter_(std::make_unique<spdlog::pattern_formatter>()) {}

    void log(const spdlog::details::log_msg& msg) override {
        struct PerThread {
            const StderrLineSink* sink = nullptr;
            std::uint64_t generation = 0;
            std::unique_ptr<spdlog::formatter> formatter;
            spdlog::memory_buf_t line;
        };
        thread_local PerThread local;
        const auto generation = generation_.load(std::memory_order_acquire);
        if (local.sink != this || local.generation != generation || !local.formatter) {
            std::lock_guard lock(mutex_);
            local.formatter = formatter_->clone();
            local.generation = generation_.load(std::memory_order_relaxed);
            local.sink = this;
        }
        local.line.clear();
        local.formatter->format(msg, local.line);
        platform::write_to_stderr(std::string_view(local.line.data(), local.line.size()));
    }
    void flush() override {}  // nothing is buffered
    void set_pattern(const std::string& pattern) override {
        set_formatter(std::make_unique<spdlog::pattern_formatter>(pattern));
    }
    void set_formatter(std::unique_ptr<spdlog::formatter> formatter) override {
        std::lock_guard lock(mutex_);
        formatter_ = std::move(formatter);
        generation_.fetch_add(1, std::memory_order_release);
    }

private:
    std::mutex mutex_;  // guards formatter_ (cloned by each thread when it changes)
    std::unique_ptr<spdlog::formatter> formatter_;
    std::atomic<std::uint64_t> generation_{1};
};

spdlog::sink_ptr shared_sink() {
    static spdlog::sink_ptr sink = std::make_shared<StderrLineSink>();
    return sink;
}

void apply_format(spdlog::logger& l) {
    if (g_format.load() == LogFormat::json)
        l.set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","logger":"%n",%v})",
                      spdlog::pattern_time_type::utc);
    else
        l.set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %-5l %n: %v", spdlog::pattern_time_type::utc);
    l.set_level(g_level.load());
}
}  // namespace

void init_logging(std::string_view level, LogFormat format) {
    auto lvl = spdlog::level::from_str(std::string(level));
    if (lvl == spdlog::level::off && level != "off")
        throw std::invalid_argument("log level must be one of trace, debug, info, warn, error, critical, off");
    g_level = lvl;
    g_format = format;
    std::lock_guard lock(g_mutex);
    spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { apply_format(*l); });
}

LogFormat log_format() noexcept { return g_format.load(); }

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
    std::lock_guard lock(g_mutex);
    if (auto existing = spdlog::get(name)) return existing;
    auto l = std::make_shared<spdlog::logger>(name, shared_sink());
    apply_format(*l);
    l->flush_on(spdlog::level::info);
    spdlog::register_logger(l);
    return l;
}

namespace {
bool needs_quotes(std::string_view v) {
    if (v.empty()) return true;
    for (char c : v)
        if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) return true;
    return false;
}

// Appends `v` as a JSON string. Printable ASCII (nearly every value: addresses,
// paths, numbers) is escaped here; anything else goes through nlohmann, which
// also replaces invalid UTF-8. The access log calls this for every request.
void append_json_string(std::string& out, std::string_view v) {
    bool escapes = false;
    for (char c : v) {
        if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
            out += nlohmann::json(v).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
            return;
        }
        escapes |= c == '"' || c == '\\';
    }
    out += '"';
    if (!escapes) {
        out += v;
    } else {
        for (char c : v) {
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
    }
    out += '"';
}
}  // namespace

void log_event(spdlog::logger& log, spdlog::level::level_enum level, std::string_view event,
               std::initializer_list<LogField> fields) {
    if (!log.should_log(level)) return;
    std::string line;
    line.reserve(256);
    if (g_format.load() == LogFormat::json) {
        // The JSON pattern wraps %v as the tail of an object: emit `"event":...,"k":"v"`.
        line += "\"event\":";
        append_json_string(line, event);
        for (const auto& [k, v] : fields) {
            line += ',';
            append_json_string(line, k);
            line += ':';
            append_json_string(line, v);
        }
    } else {
        line.assign(event);
        for (const auto& [k, v] : fields) {
            line += ' ';
            line += k;
            line += '=';
            if (needs_quotes(v))
                append_json_string(line, v);
            else
                line += v;
        }
    }
    // The string_view overload: no format-string parse and no copy into fmt's
    // 250-byte buffer (an access-log line is longer, so that copy allocated).
    log.log(level, spdlog::string_view_t(line.data(), line.size()));
}

}  // namespace otad::util
