#include "otad/api/routes.hpp"

namespace otad::api {

Router build_router(Services& services) {
    Router router;
    add_health_routes(router, services);
    add_operator_routes(router, services);
    add_download_routes(router, services);
    add_compat_routes(router, services);
    add_device_routes(router, services);
    add_rollout_routes(router, services);
    return router;
}

}  // namespace otad::api
