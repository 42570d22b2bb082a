#include <fstream>

#include <nlohmann/json.hpp>

#include "otad/api/problem.hpp"
#include "otad/api/routes.hpp"
#include "otad/storage/blob_store.hpp"
#include "otad/storage/database.hpp"
#include "otad/util/crypto.hpp"

namespace otad::api {

void add_health_routes(Router& router, Services& services) {
    // Liveness: answered on the I/O thread without touching the disk.
    router.add(Method::get, "/healthz",
               [](Request&) { return json_response(200, {{"status", "ok"}}); }, {.runs_inline = true, .on_plain_listener = true});

    // Readiness: the database answers and the blob directory takes a write.
    router.add(Method::get, "/readyz", [&services](Request&) {
        nlohmann::json checks;
        bool ready = true;
        try {
            checks["database"] = {{"ok", true}, {"schema_version", services.database.ping()}};
        } catch (const std::exception& e) {
            ready = false;
            checks["database"] = {{"ok", false}, {"error", "database unavailable"}};
        }
        auto probe = services.blobs.temp_dir() / (".readyz-" + util::random_token(8));
        {
            std::ofstream out(probe);
            out << "ok";
            bool ok = static_cast<bool>(out);
            out.close();
            checks["blob_dir"] = {{"ok", ok}};
            ready = ready && ok;
        }
        std::error_code ec;
        std::filesystem::remove(probe, ec);
        if (!ready) return problem(503, "not-ready", "otad is not ready", {{"checks", checks}});
        return json_response(200, {{"status", "ready"}, {"checks", checks}});
    });
}

}  // namespace otad::api
