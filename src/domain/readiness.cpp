#include "otad/domain/readiness.hpp"

#include "otad/storage/blob_store.hpp"
#include "otad/storage/database.hpp"
#include "otad/storage/error.hpp"
#include "otad/storage/settings_repository.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"

namespace otad::domain {
namespace {

// The settings row the database probe rewrites (a real, durable write).
constexpr std::string_view kProbeSetting = "readyz_probe";

std::string failure_text(const storage::StorageError& e) {
    switch (e.kind()) {
        case storage::StorageErrorKind::no_space:
            return "no space left on the device";
        case storage::StorageErrorKind::busy:
            return "busy";
        default:
            return "cannot write";
    }
}

}  // namespace

Readiness::Readiness(storage::Database& database, storage::BlobStore& blobs, std::chrono::milliseconds reuse)
    : database_(database), blobs_(blobs), reuse_(reuse) {}

ReadinessReport Readiness::check() {
    std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    if (!probed_at_ || now - *probed_at_ >= reuse_) probe();
    return last_;
}

void Readiness::probe() {
    auto log = util::logger("otad");
    // Log a failure when readiness is lost (or at the first probe), not every second.
    const bool was_ready = !probed_at_ || last_.ready;
    ReadinessReport report;
    report.database.ok = true;
    report.blob_dir.ok = true;
    try {
        report.schema_version = database_.ping();
        database_.write([](storage::Connection& c) {
            storage::SettingsRepository(c).set(kProbeSetting, std::to_string(util::unix_now()));
        });
    } catch (const storage::StorageError& e) {
        report.database = {false, failure_text(e)};
        if (was_ready)
            util::log_event(*log, spdlog::level::warn, "readiness_database_write_failed", {{"error", e.what()}});
    } catch (const std::exception& e) {
        report.database = {false, "database unavailable"};
        if (was_ready)
            util::log_event(*log, spdlog::level::warn, "readiness_database_write_failed", {{"error", e.what()}});
    }
    try {
        blobs_.probe_write();
    } catch (const storage::StorageError& e) {
        report.blob_dir = {false, failure_text(e)};
        if (was_ready)
            util::log_event(*log, spdlog::level::warn, "readiness_blob_directory_write_failed", {{"error", e.what()}});
    }
    report.ready = report.database.ok && report.blob_dir.ok;
    if (report.ready && probed_at_ && !last_.ready)
        util::log_event(*log, spdlog::level::info, "readiness_ready_again", {});
    last_ = std::move(report);
    probed_at_ = std::chrono::steady_clock::now();
}

}  // namespace otad::domain
