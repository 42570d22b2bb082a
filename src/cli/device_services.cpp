#include "device_services.hpp"

#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/database.hpp"
#include "otad/util/logging.hpp"

namespace otad::cli {
namespace {

// How stale the operator-change signal may be (see change_watch.hpp): at most one
// audit-table read per interval on the poll path; a change this process commits
// is seen at once (touch()), one made by another process within this interval.
constexpr std::chrono::microseconds kChangeCheckInterval{1000};

domain::SignatureAlgorithm preferred(const config::Config& config) {
    return domain::parse_signature_algorithm(config.signing_algorithm).value_or(domain::SignatureAlgorithm::es256);
}

domain::DeviceRegistryOptions registry_options(const config::Config& config) {
    domain::DeviceRegistryOptions o;
    o.flush_interval = std::chrono::milliseconds(std::max<std::uint64_t>(config.device_flush_interval_ms, 1));
    o.rollback_after_s = static_cast<std::int64_t>(config.rollback_after_s);
    return o;
}

domain::DeviceUpdatesOptions update_options(const config::Config& config) {
    domain::DeviceUpdatesOptions o;
    o.public_url = config.public_url;
    o.poll_interval_s = config.poll_interval_s;
    o.poll_jitter_s = config.poll_jitter_s;
    return o;
}

domain::RolloutOptions rollout_options(const config::Config& config) {
    domain::RolloutOptions o;
    o.tick = std::chrono::milliseconds(config.rollout_tick_ms);
    o.time_scale = static_cast<std::int64_t>(config.rollout_time_scale);
    return o;
}

}  // namespace

void log_device_access(spdlog::logger& log, const std::vector<std::string>& open_products, std::size_t products) {
    std::string names;
    for (const auto& n : open_products) names += (names.empty() ? "" : ",") + n;
    // A product is created by its first upload, with no device key: open until an
    // admin gives it one. Every line says so, since no product is protected from birth.
    const char* event = products == 0 ? "device access: no products yet; a new product is open to any device "
                                        "until it has a device key"
                        : open_products.empty()
                            ? "device access: every existing product requires a device key; a new product is open "
                              "to any device until it has one"
                            : "device access: products open to any device (no device key); a new product is open "
                              "too until it has one";
    util::log_event(log, open_products.empty() ? spdlog::level::info : spdlog::level::warn, event,
                    {{"count", std::to_string(open_products.size())},
                     {"products", names.empty() ? "-" : names},
                     {"total_products", std::to_string(products)}});
}

DeviceServices::DeviceServices(storage::Database& database, const domain::UrlSigner& urls, const config::Config& config)
    : watch_(database, kChangeCheckInterval),
      signing_keys_(database, preferred(config), &watch_),
      device_keys_(database, &watch_),
      rollouts_(database, &watch_, rollout_options(config)),
      registry_(database, registry_options(config)),
      updates_(database, signing_keys_, urls, &registry_, &watch_, update_options(config)) {
    registry_.set_observer(&rollouts_);
    updates_.set_release_resolver(&rollouts_);
    auto log = util::logger("otad");
    if (auto created = signing_keys_.ensure_active_key("system"))
        util::log_event(
            *log, spdlog::level::warn, "signing_key_created_at_start",
            {{"key_id", created->key_id}, {"algorithm", std::string(domain::to_string(created->algorithm))}});
    for (const auto& k : signing_keys_.list())
        if (k.signing)
            util::log_event(*log, spdlog::level::info, "manifests_signed_by",
                            {{"key_id", k.key_id}, {"algorithm", std::string(domain::to_string(k.algorithm))}});
    const std::size_t products =
        database.read([](storage::Connection& c) { return storage::CatalogueRepository(c).list_products().size(); });
    log_device_access(*log, device_keys_.open_products(), products);
}

DeviceServices::~DeviceServices() { stop(); }

void DeviceServices::attach(api::Services& services) {
    services.device_updates = &updates_;
    services.device_registry = &registry_;
    services.device_keys = &device_keys_;
    services.signing_keys = &signing_keys_;
    services.rollouts = &rollouts_;
}

void DeviceServices::start() {
    registry_.start();
    rollouts_.start();
}
void DeviceServices::stop() noexcept {
    rollouts_.stop();
    registry_.stop();
}

}  // namespace otad::cli
