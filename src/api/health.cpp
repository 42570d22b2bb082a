#include <memory>

#include <nlohmann/json.hpp>

#include "otad/api/problem.hpp"
#include "otad/api/routes.hpp"
#include "otad/domain/readiness.hpp"

namespace otad::api {
namespace {

nlohmann::json check_json(const domain::ReadinessCheck& check) {
    if (check.ok) return {{"ok", true}};
    return {{"ok", false}, {"error", check.error}};
}

}  // namespace

void add_health_routes(Router& router, Services& services) {
    // Liveness: answered on the I/O thread without touching the disk.
    router.add(Method::get, "/healthz",
               [](Request&) {
                   return json_response(200, {{"status", "ok"}});
               },
               {.runs_inline = true, .on_plain_listener = true});

    // Readiness: the database commits a write and the blob directory takes an
    // fsynced file, so a full or read-only disk answers 503 (docs/operator-api.md).
    // On the worker pool: the probe waits for fsyncs, at most once a second.
    auto readiness = std::make_shared<domain::Readiness>(services.database, services.blobs);
    router.add(Method::get, "/readyz", [readiness](Request&) {
        const domain::ReadinessReport report = readiness->check();
        nlohmann::json database = check_json(report.database);
        if (report.database.ok) database["schema_version"] = report.schema_version;
        const nlohmann::json checks = {{"database", database}, {"blob_dir", check_json(report.blob_dir)}};
        if (!report.ready) return problem(503, "not-ready", "otad is not ready", {{"checks", checks}});
        return json_response(200, {{"status", "ready"}, {"checks", checks}});
    });
}

}  // namespace otad::api
