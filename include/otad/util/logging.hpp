#pragma once
// One spdlog logger per subsystem ("otad", "access", "storage", ...), all sharing
// one sink and one format. Structured events render as key=value text or as one
// JSON object per line, chosen once at start-up (--log-format).

#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <spdlog/logger.h>

namespace otad::util {

enum class LogFormat { text, json };

// Sets level ("trace".."off") and format for every logger made after and before.
// Throws std::invalid_argument naming a bad level.
void init_logging(std::string_view level, LogFormat format);
LogFormat log_format() noexcept;
// The named logger, created on first use with the shared sink.
std::shared_ptr<spdlog::logger> logger(const std::string& name);

// Views, not copies: a value may be a temporary (std::to_string(n)) as it lives
// until the log_event call returns; never keep a LogField beyond that.
using LogField = std::pair<std::string_view, std::string_view>;
// Logs `event` with fields: `event k1=v1 k2="v 2"` in text, or
// {"event":..., "k1":"v1", ...} in JSON. Values are never secrets by contract.
void log_event(spdlog::logger& log, spdlog::level::level_enum level, std::string_view event,
               std::initializer_list<LogField> fields);

}  // namespace otad::util
