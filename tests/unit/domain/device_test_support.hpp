#pragma once
// Fixtures for the device-facing domain tests: a migrated database in a temp
// directory, and helpers that put products, releases, artifacts and channels in it
// through the storage repositories (the catalogue's own rules are tested elsewhere).

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "otad/storage/audit_repository.hpp"
#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/database.hpp"
#include "otad/storage/migrations.hpp"
#include "../storage/storage_test_support.hpp"
#include "otad/util/crypto.hpp"

namespace otad::domain::testing {

using storage::testing::TempDir;

// A migrated database (storage's fixture) plus catalogue helpers.
class DatabaseTest : public storage::testing::MigratedDatabaseTest {
protected:
    std::int64_t add_product(const std::string& name) {
        return db->write(
            [&](storage::Connection& c) { return storage::CatalogueRepository(c).create_product(name).id; });
    }
    std::int64_t add_release(std::int64_t product, const std::string& version) {
        return db->write([&](storage::Connection& c) {
            return storage::CatalogueRepository(c).create_release(product, version).id;
        });
    }
    // An artifact whose "bytes" are `content` (only the digests matter here).
    storage::Artifact add_artifact(std::int64_t release, const std::string& chip, const std::string& layout,
                                   const std::string& slot, const std::string& content,
                                   nlohmann::json metadata = nlohmann::json::object()) {
        return db->write([&](storage::Connection& c) {
            storage::CatalogueRepository cat(c);
            std::string sha = util::sha256_hex(content);
            cat.insert_blob(sha, content.size());
            util::Digest md5("md5");
            md5.update(content);
            storage::NewArtifact a;
            a.release_id = release;
            a.chip = chip;
            a.layout = layout;
            a.slot = slot;
            a.filename = slot.empty() ? "firmware.bin" : slot + ".bin";
            a.sha256 = sha;
            a.md5 = util::to_hex(md5.finish());
            a.size = content.size();
            a.metadata_json = metadata.dump();
            return cat.insert_artifact(a);
        });
    }
    // Points the channel at the release and records an audit entry, the way the
    // catalogue does (the audit id is the caches' change signal).
    void set_channel(std::int64_t product, const std::string& channel, std::int64_t release, bool rollback = false) {
        db->write([&](storage::Connection& c) {
            storage::CatalogueRepository(c).set_channel(product, channel, release, rollback);
            storage::AuditRepository(c).append("test", "channel.set", "channel/" + channel);
        });
    }
};

}  // namespace otad::domain::testing
