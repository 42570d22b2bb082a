#pragma once
// The device API's objects for `otad serve`, built and wired in one place so
// serve.cpp stays short: change watch, signing key ring (a key is created at
// start when none is active), device keys, the batched device registry and the
// poll logic, and staged rollouts (docs/rollouts.md). Private to cli/.

#include <memory>

#include "otad/api/services.hpp"
#include "otad/config/config.hpp"
#include "otad/domain/change_watch.hpp"
#include "otad/domain/device_keys.hpp"
#include "otad/domain/device_registry.hpp"
#include "otad/domain/device_updates.hpp"
#include "otad/domain/rollouts.hpp"
#include "otad/domain/signing_keys.hpp"

namespace otad::cli {

class DeviceServices {
public:
    // Creates a signing key when none is active and logs which products are open
    // to any device. Throws on database failures (the daemon must not start).
    DeviceServices(storage::Database& database, const domain::UrlSigner& urls, const config::Config& config);
    ~DeviceServices();  // stops the registry (flushing it)

    // Points the Services at these objects (before build_router).
    void attach(api::Services& services);
    void start();          // the registry's background flusher and the rollout task
    void stop() noexcept;  // stops them and flushes what is pending

    domain::DeviceRegistry& registry() noexcept { return registry_; }

private:
    domain::ChangeWatch watch_;
    domain::SigningKeyRing signing_keys_;
    domain::DeviceKeys device_keys_;
    domain::Rollouts rollouts_;  // before registry_: the registry's last flush reports to it
    domain::DeviceRegistry registry_;
    domain::DeviceUpdates updates_;
};

}  // namespace otad::cli
