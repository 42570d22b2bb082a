#pragma once
// Assembles every route otad serves. Each area (health, operator, device,
// downloads, compatibility front-ends) registers its own routes in its own file.

#include <memory>

#include "otad/api/router.hpp"
#include "otad/api/services.hpp"

namespace otad::api {

Router build_router(Services& services);

void add_health_routes(Router& router, Services& services);
// The operator REST API under /api/v1 (catalogue, channels, audit); docs/operator-api.md.
void add_operator_routes(Router& router, Services& services);
// GET/HEAD /api/v1/blobs/{sha256} and /firmware/{product}/{version}/{filename}; docs/downloads.md.
void add_download_routes(Router& router, Services& services);
// Arduino httpUpdate (/api/v1/arduino/{product}) and NONOS FOTA (/v1/device/rom/); docs/compat.md.
void add_compat_routes(Router& router, Services& services);
// Device poll, reports, device registry views, device keys, public signing keys; docs/device-api.md.
void add_device_routes(Router& router, Services& services);
// Staged rollouts, device tags and pins/exclusions; docs/rollouts.md.
void add_rollout_routes(Router& router, Services& services);

}  // namespace otad::api
