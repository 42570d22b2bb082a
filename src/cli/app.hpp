#pragma once
// What every subcommand that touches the data dir opens: settings, the migrated
// database and the blob store. Private to cli/.

#include <memory>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "otad/config/config.hpp"
#include "otad/storage/blob_store.hpp"
#include "otad/storage/database.hpp"

namespace otad::cli {

// Settings from --config (or OTAD_CONFIG), the environment and flag overrides.
struct ConfigSource {
    std::string config_file;
    std::map<std::string, std::string> overrides;  // key -> text
};
config::Config load_config(const ConfigSource& source);

// The flags every data-dir subcommand shares (--config, --data-dir, --log-level,
// --log-format); they override the config file and the environment.
struct DataDirFlags {
    ConfigSource source;
    std::string data_dir;
    std::string log_level;
    std::string log_format;

    void add_to(CLI::App& cmd);
    // Loads the settings and starts logging with them.
    config::Config load();
};

struct DataDir {
    config::Config config;
    std::unique_ptr<storage::Database> database;
    std::unique_ptr<storage::BlobStore> blobs;
    int schema_before = 0;
    int schema_now = 0;
};
// Creates the data dir (0700) if needed, opens the database and migrates it.
// Throws MigrationError / StorageError / std::system_error with a clear message.
DataDir open_data_dir(config::Config config);

}  // namespace otad::cli
