#include "otad/api/device_auth.hpp"

#include "otad/api/auth.hpp"
#include "otad/api/problem.hpp"
#include "otad/domain/device_keys.hpp"
#include "otad/storage/database.hpp"
#include "otad/storage/device_key_repository.hpp"

namespace otad::api {
namespace {

[[noreturn]] void refuse(std::string_view presented, std::string_view who) {
    throw ProblemError(401, "device-key-required",
                       presented.empty() ? "this product requires a device key (Authorization: Bearer KEY, "
                                           "Authorization: token KEY, or ?key=KEY)"
                                         : "the device key is unknown, revoked, or not for this product")
        .with_principal(std::string(who));
}

}  // namespace

std::string_view presented_device_key(const Request& request) {
    if (auto bearer = authorization_credential(request, "Bearer"); !bearer.empty()) return bearer;
    if (auto token = authorization_credential(request, "token"); !token.empty()) return token;
    if (auto key = request.query_param("key")) return *key;
    return {};
}

std::optional<std::string> require_device_access(const Request& request, Services& services, std::int64_t product_id,
                                                 std::string_view who) {
    std::string_view key = presented_device_key(request);
    // The served path: answered from DeviceKeys' memory (see device_keys.hpp).
    if (services.device_keys != nullptr) {
        auto decision = services.device_keys->check(product_id, key);
        switch (decision.access) {
            case domain::DeviceAccess::open:
                return std::nullopt;
            case domain::DeviceAccess::granted:
                return std::move(decision.key_name);
            case domain::DeviceAccess::denied:
                refuse(key, who);
        }
    }
    // Without the cache (tests that build Services by hand): straight from the database.
    return services.database.read([&](storage::Connection& c) -> std::optional<std::string> {
        storage::DeviceKeyRepository keys(c);
        if (!key.empty()) {
            auto found = keys.find_by_secret(key);
            if (found && found->active() && found->product_id == product_id) return found->name;
        }
        if (keys.list(product_id, /*include_revoked=*/false).empty()) return std::nullopt;  // open product
        refuse(key, who);
    });
}

void require_right_to_learn_unknown_device(const Request& request, Services& services, std::string_view who) {
    std::string_view key = presented_device_key(request);
    if (services.device_keys != nullptr) {
        if (!services.device_keys->may_learn_unknown_device(key)) refuse(key, who);
        return;
    }
    services.database.read([&](storage::Connection& c) {
        storage::DeviceKeyRepository keys(c);
        if (!key.empty() && keys.find_by_secret(key)) return;
        if (keys.any_active()) refuse(key, who);
    });
}

}  // namespace otad::api
