#include "app.hpp"

#include <cstdlib>

#include "otad/platform/filesystem.hpp"
#include "otad/storage/migrations.hpp"
#include "otad/util/logging.hpp"

namespace otad::cli {

config::Config load_config(const ConfigSource& source) {
    auto env = config::process_environment();
    std::optional<std::filesystem::path> file;
    if (!source.config_file.empty())
        file = source.config_file;
    else if (auto it = env.find("OTAD_CONFIG"); it != env.end() && !it->second.empty())
        file = it->second;
    return config::load(file, env, source.overrides);
}

void DataDirFlags::add_to(CLI::App& cmd) {
    cmd.add_option("--config", source.config_file, "JSON config file (default: $OTAD_CONFIG if set)");
    cmd.add_option("--data-dir", data_dir, "data directory (database, blobs, certificate)");
    cmd.add_option("--log-level", log_level, "trace|debug|info|warn|error|critical|off");
    cmd.add_option("--log-format", log_format, "text|json");
}

config::Config DataDirFlags::load() {
    if (!data_dir.empty()) source.overrides["data_dir"] = data_dir;
    if (!log_level.empty()) source.overrides["log_level"] = log_level;
    if (!log_format.empty()) source.overrides["log_format"] = log_format;
    config::Config c = load_config(source);
    util::init_logging(c.log_level, c.log_format == "json" ? util::LogFormat::json : util::LogFormat::text);
    return c;
}

DataDir open_data_dir(config::Config cfg) {
    DataDir d;
    platform::ensure_directory(cfg.data_dir, /*owner_only=*/true);
    storage::DatabaseOptions options;
    options.path = cfg.database_path();
    options.busy_timeout = std::chrono::milliseconds(cfg.db_busy_timeout_ms);
    options.max_connections = cfg.worker_threads + 2;
    d.database = std::make_unique<storage::Database>(options);
    auto result = storage::migrate(*d.database);
    d.schema_before = result.previous_version;
    d.schema_now = result.current_version;
    d.blobs = std::make_unique<storage::BlobStore>(cfg.data_dir);
    d.config = std::move(cfg);
    return d;
}

}  // namespace otad::cli
