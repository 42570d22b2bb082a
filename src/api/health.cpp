#include <chrono>
#include <memory>
#include <mutex>
#include <optional>

#include <nlohmann/json.hpp>

#include "otad/api/problem.hpp"
#include "otad/api/routes.hpp"
#include "otad/storage/blob_store.hpp"
#include "otad/storage/database.hpp"
#include "otad/storage/error.hpp"
#include "otad/storage/settings_repository.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"

namespace otad::api {
namespace {

// A probe costs a commit (fsync) and a file create+fsync+unlink, so one answer
// serves every /readyz call within this long: a load balancer asking ten times a
// second costs one probe a second.
constexpr std::chrono::milliseconds kProbeReuse{1000};
// The settings row the database probe rewrites (a real, durable write).
constexpr std::string_view kProbeSetting = "readyz_probe";

// What a failed check says: the kind only. /readyz needs no credentials, so paths
// and SQL stay in the log.
std::string_view failure_text(const storage::StorageError& e) {
    switch (e.kind()) {
        case storage::StorageErrorKind::no_space: return "no space left on the device";
        case storage::StorageErrorKind::busy: return "busy";
        default: return "cannot write";
    }
}

struct Readiness {
    std::mutex mutex;  // one probe at a time; callers meanwhile wait for its answer
    std::optional<std::chrono::steady_clock::time_point> probed_at;
    bool ready = false;
    nlohmann::json checks;

    // Runs both probes: each must complete a real, synced write.
    void probe(Services& services) {
        auto log = util::logger("otad");
        nlohmann::json database = {{"ok", true}};
        nlohmann::json blob_dir = {{"ok", true}};
        try {
            database["schema_version"] = services.database.ping();
            services.database.write([](storage::Connection& c) {
                storage::SettingsRepository(c).set(kProbeSetting, std::to_string(util::unix_now()));
            });
        } catch (const storage::StorageError& e) {
            database = {{"ok", false}, {"error", failure_text(e)}};
            if (ready || !probed_at)
                util::log_event(*log, spdlog::level::warn, "readiness: database write failed", {{"error", e.what()}});
        } catch (const std::exception& e) {
            database = {{"ok", false}, {"error", "database unavailable"}};
            if (ready || !probed_at)
                util::log_event(*log, spdlog::level::warn, "readiness: database write failed", {{"error", e.what()}});
        }
        try {
            services.blobs.probe_write();
        } catch (const storage::StorageError& e) {
            blob_dir = {{"ok", false}, {"error", failure_text(e)}};
            if (ready || !probed_at)
                util::log_event(*log, spdlog::level::warn, "readiness: blob directory write failed",
                                {{"error", e.what()}});
        }
        const bool now_ready = database["ok"].get<bool>() && blob_dir["ok"].get<bool>();
        if (now_ready && !ready && probed_at) util::log_event(*log, spdlog::level::info, "readiness: ready again", {});
        ready = now_ready;
        checks = {{"database", std::move(database)}, {"blob_dir", std::move(blob_dir)}};
        probed_at = std::chrono::steady_clock::now();
    }
};

}  // namespace

void add_health_routes(Router& router, Services& services) {
    // Liveness: answered on the I/O thread without touching the disk.
    router.add(Method::get, "/healthz",
               [](Request&) { return json_response(200, {{"status", "ok"}}); }, {.runs_inline = true, .on_plain_listener = true});

    // Readiness: the database commits a write and the blob directory takes an
    // fsynced file, so a full or read-only disk answers 503 (docs/operator-api.md).
    auto readiness = std::make_shared<Readiness>();
    router.add(Method::get, "/readyz", [&services, readiness](Request&) {
        std::lock_guard lock(readiness->mutex);
        const auto now = std::chrono::steady_clock::now();
        if (!readiness->probed_at || now - *readiness->probed_at >= kProbeReuse) readiness->probe(services);
        if (!readiness->ready)
            return problem(503, "not-ready", "otad is not ready", {{"checks", readiness->checks}});
        return json_response(200, {{"status", "ready"}, {"checks", readiness->checks}});
    });
}

}  // namespace otad::api
