#pragma once
// What handlers reach: settings and the domain/storage objects, owned by the
// caller (cli's serve) and alive for as long as the router is used.

#include <filesystem>

#include "otad/config/config.hpp"

namespace otad::storage {
class Database;
class BlobStore;
}  // namespace otad::storage

namespace otad::api {

struct Services {
    const config::Config& config;
    storage::Database& database;
    storage::BlobStore& blobs;
};

}  // namespace otad::api
