#include "app.hpp"

#include <cstdlib>

#include "otad/platform/filesystem.hpp"
#include "otad/storage/migrations.hpp"

namespace otad::cli {

config::Config load_config(const ConfigSource& source) {
    auto env = config::process_environment();
    std::optional<std::filesystem::path> file;
    if (!source.config_file.empty()) file = source.config_file;
    else if (auto it = env.find("OTAD_CONFIG"); it != env.end() && !it->second.empty()) file = it->second;
    return config::load(file, env, source.overrides);
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
