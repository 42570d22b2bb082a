#include "otad/api/pre_body_auth.hpp"

#include "otad/api/device_auth.hpp"
#include "otad/domain/device_registry.hpp"

namespace otad::api {

Authorizer operator_before_body(Services& services, Role minimum) {
    return [&services, minimum](Request& request) -> std::optional<Response> {
        require_operator(request, services, minimum);  // throws ProblemError to refuse
        return std::nullopt;
    };
}

Authorizer device_report_before_body(Services& services) {
    return [&services](Request& request) -> std::optional<Response> {
        if (services.device_registry == nullptr) return std::nullopt;
        const auto product_id = services.device_registry->product_of(request.param("id"));
        if (product_id)
            require_device_access(request, services, *product_id);
        else
            require_right_to_learn_unknown_device(request, services);
        return std::nullopt;
    };
}

}  // namespace otad::api
