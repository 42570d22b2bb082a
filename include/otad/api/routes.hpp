#pragma once
// Assembles every route otad serves. Each area (health, operator, device,
// downloads, compatibility front-ends) registers its own routes in its own file.

#include <memory>

#include "otad/api/router.hpp"
#include "otad/api/services.hpp"

namespace otad::api {

Router build_router(Services& services);

void add_health_routes(Router& router, Services& services);

}  // namespace otad::api
