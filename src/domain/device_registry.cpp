#include "otad/domain/device_registry.hpp"

#include <nlohmann/json.hpp>

#include "otad/domain/version.hpp"
#include "otad/storage/database.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"

namespace otad::domain {
namespace {

constexpr std::size_t kMaxReportDetail = 1024;

bool same_version(const std::optional<std::string>& a, std::string_view b) { return a && versions_equivalent(*a, b); }

// Cuts at a UTF-8 character boundary at most `limit` bytes in.
std::string cut_utf8(std::string_view text, std::size_t limit) {
    if (text.size() <= limit) return std::string(text);
    std::size_t end = limit;
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
    return std::string(text.substr(0, end));
}

}  // namespace

std::string_view to_string(DeviceStatus status) noexcept {
    switch (status) {
        case DeviceStatus::downloading:
            return "downloading";
        case DeviceStatus::downloaded:
            return "downloaded";
        case DeviceStatus::installing:
            return "installing";
        case DeviceStatus::installed:
            return "installed";
        case DeviceStatus::failed:
            return "failed";
        case DeviceStatus::rolled_back:
            return "rolled_back";
    }
    return "failed";
}

std::optional<DeviceStatus> parse_device_status(std::string_view text) noexcept {
    for (auto s : {DeviceStatus::downloading, DeviceStatus::downloaded, DeviceStatus::installing,
                   DeviceStatus::installed, DeviceStatus::failed, DeviceStatus::rolled_back})
        if (to_string(s) == text) return s;
    return std::nullopt;
}

std::string valid_device_statuses() { return "downloading, downloaded, installing, installed, failed, rolled_back"; }

std::int64_t DeviceRegistry::default_now() { return util::unix_now(); }

// FNV-1a over every field a sighting writes except its time, with separators.
std::uint64_t DeviceRegistry::fields_digest(const storage::DeviceSighting& s) noexcept {
    std::uint64_t h = 1469598103934665603ull;
    auto mix = [&h](std::string_view text) {
        for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
        h = (h ^ 0xFFu) * 1099511628211ull;
    };
    mix(std::to_string(s.product_id));
    mix(s.chip);
    mix(s.layout);
    mix(s.slot);
    mix(s.version);
    mix(s.channel);
    mix(s.secure_version ? std::to_string(*s.secure_version) : std::string("-"));
    mix(s.remote_address);
    return h;
}

DeviceRegistry::DeviceRegistry(storage::Database& database, DeviceRegistryOptions options, Clock clock)
    : database_(database), options_(options), clock_(std::move(clock)) {}

DeviceRegistry::~DeviceRegistry() { stop(); }

void DeviceRegistry::start() {
    std::lock_guard lock(thread_mutex_);
    if (thread_.joinable() || stopping_) return;
    thread_ = std::thread([this] { run(); });
}

void DeviceRegistry::stop() noexcept {
    {
        std::lock_guard lock(thread_mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
    flush();
}

void DeviceRegistry::run() {
    std::unique_lock lock(thread_mutex_);
    while (!stopping_) {
        wake_.wait_for(lock, options_.flush_interval, [this] { return stopping_; });
        if (stopping_) break;
        lock.unlock();
        flush();
        lock.lock();
    }
}

void DeviceRegistry::record_poll(storage::DeviceSighting sighting, std::optional<std::string> offered_version) {
    std::lock_guard lock(pending_mutex_);
    auto it = pending_.find(sighting.id);
    if (it == pending_.end()) {
        if (pending_.size() >= options_.max_pending) {
            if (!overflow_warned_) {
                overflow_warned_ = true;
                util::log_event(*util::logger("devices"), spdlog::level::warn, "device_sightings_dropped",
                                {{"reason", "pending sightings at their cap; the database is not keeping up"},
                                 {"max_pending", std::to_string(options_.max_pending)}});
            }
            return;
        }
        std::string id = sighting.id;
        pending_.emplace(std::move(id), Pending{std::move(sighting), std::move(offered_version)});
        return;
    }
    // The latest sighting wins; an offer made by an earlier poll of the batch stays
    // unless this poll offered something.
    if (sighting.seen_at >= it->second.sighting.seen_at) it->second.sighting = std::move(sighting);
    if (offered_version) it->second.offered_version = std::move(offered_version);
}

std::size_t DeviceRegistry::pending() const {
    std::lock_guard lock(pending_mutex_);
    return pending_.size();
}

FlushStats DeviceRegistry::flush() noexcept {
    try {
        std::lock_guard lock(write_mutex_);
        return flush_locked();
    } catch (const std::exception& e) {
        util::log_event(*util::logger("devices"), spdlog::level::err, "device_flush_failed", {{"error", e.what()}});
    } catch (...) {}
    FlushStats failed;
    failed.failed = true;
    return failed;
}

FlushStats DeviceRegistry::flush_locked() {
    // Swap the map out (O(1)) so polls never wait for the batch to be copied.
    std::unordered_map<std::string, Pending> taken;
    {
        std::lock_guard lock(pending_mutex_);
        if (pending_.empty()) return {};
        taken.swap(pending_);
        overflow_warned_ = false;
    }
    std::vector<Pending> batch;
    batch.reserve(taken.size());
    for (auto& [id, p] : taken) batch.push_back(std::move(p));
    taken.clear();

    FlushStats stats;
    std::vector<std::pair<std::string, Known>> updated;
    updated.reserve(batch.size());
    try {
        storage::WriteTransaction tx(database_, storage::Durability::normal);
        storage::DeviceRepository devices(tx.connection());

        // 1. What each device was before this batch.
        std::vector<std::optional<Known>> prior(batch.size());
        for (std::size_t i = 0; i < batch.size(); ++i) {
            const std::string& id = batch[i].sighting.id;
            if (auto it = known_.find(id); it != known_.end()) {
                prior[i] = it->second;
            } else if (auto row = devices.get(id)) {
                storage::DeviceSighting stored{
                    row->id,      row->product_id, row->chip,           row->layout,         row->slot,
                    row->version, row->channel,    row->secure_version, row->remote_address, row->last_seen};
                prior[i] = Known{row->version,     row->offered_version,     row->offered_at,
                                 row->last_status, row->last_status_version, fields_digest(stored),
                                 row->last_seen};
            }
        }

        // 2. The sightings that change something (see last_seen_resolution_s), in one statement loop.
        std::vector<storage::DeviceSighting> sightings;
        std::vector<bool> written(batch.size(), false);
        sightings.reserve(batch.size());
        for (std::size_t i = 0; i < batch.size(); ++i) {
            const auto& s = batch[i].sighting;
            written[i] = !prior[i] || prior[i]->fields != fields_digest(s) ||
                         s.seen_at - prior[i]->last_seen >= options_.last_seen_resolution_s;
            if (written[i]) sightings.push_back(s);
        }
        devices.upsert_many(sightings);
        stats.devices = sightings.size();
        stats.unchanged = batch.size() - sightings.size();

        // 3. Events derived from the change.
        auto event = [&](const storage::DeviceSighting& s, storage::DeviceEventKind kind,
                         std::optional<std::string> version, std::optional<std::string> status, nlohmann::json detail) {
            devices.append_event({s.id, s.seen_at, kind, std::move(version), std::move(status), detail.dump()});
            ++stats.events;
        };
        std::vector<std::optional<std::string>> rolled_back(batch.size());  // for the observer
        for (std::size_t i = 0; i < batch.size(); ++i) {
            const storage::DeviceSighting& s = batch[i].sighting;
            const std::optional<std::string>& offered = batch[i].offered_version;
            Known state = prior[i].value_or(Known{});
            if (!prior[i]) {
                event(s, storage::DeviceEventKind::first_seen, s.version, std::nullopt,
                      {{"chip", s.chip}, {"layout", s.layout}, {"slot", s.slot}, {"channel", s.channel}});
            } else if (state.version != s.version) {
                event(s, storage::DeviceEventKind::version_changed, s.version, std::nullopt,
                      {{"from", state.version}, {"to", s.version}});
            }
            state.version = s.version;
            if (written[i]) {
                state.fields = fields_digest(s);
                state.last_seen = std::max(state.last_seen, s.seen_at);
            }

            // Implicit rollback: offered X, still not running X.
            if (prior[i] && state.offered_version && !s.version.empty() &&
                !versions_equivalent(*state.offered_version, s.version)) {
                const std::string& x = *state.offered_version;
                const bool already = state.last_status == "rolled_back" && same_version(state.last_status_version, x);
                const bool installing = state.last_status == "installing" && same_version(state.last_status_version, x);
                const bool timed_out = options_.rollback_after_s > 0 && state.offered_at &&
                                       s.seen_at - *state.offered_at >= options_.rollback_after_s;
                if (!already && (installing || timed_out)) {
                    event(s, storage::DeviceEventKind::rolled_back, x, std::string("rolled_back"),
                          {{"source", "implicit"},
                           {"running", s.version},
                           {"reason", installing ? "installing_reported" : "timeout"}});
                    devices.record_status(s.id, "rolled_back", x, s.seen_at);
                    rolled_back[i] = x;
                    state.last_status = "rolled_back";
                    state.last_status_version = x;
                    ++stats.rollbacks;
                    util::log_event(*util::logger("devices"), spdlog::level::warn, "implicit_rollback",
                                    {{"device", s.id},
                                     {"offered", x},
                                     {"running", s.version},
                                     {"reason", installing ? "installing_reported" : "timeout"}});
                }
            }

            if (offered && !same_version(state.offered_version, *offered)) {
                devices.record_offer(s.id, *offered, s.seen_at);
                event(s, storage::DeviceEventKind::poll_offer, *offered, std::nullopt, {{"running", s.version}});
                state.offered_version = *offered;
                state.offered_at = s.seen_at;
            }
            updated.emplace_back(s.id, std::move(state));
        }
        if (observer_) {  // rollout counters (docs/rollouts.md), in this transaction
            std::vector<DeviceActivity> activity(batch.size());
            for (std::size_t i = 0; i < batch.size(); ++i)
                activity[i] = {&batch[i].sighting, batch[i].offered_version ? &*batch[i].offered_version : nullptr,
                               rolled_back[i] ? &*rolled_back[i] : nullptr};
            observer_->on_flush(tx.connection(), activity);
        }
        tx.commit();
    } catch (const std::exception& e) {
        util::log_event(*util::logger("devices"), spdlog::level::warn, "device_flush_retrying",
                        {{"devices", std::to_string(batch.size())}, {"error", e.what()}});
        // Keep the batch for the next flush unless newer sightings replaced it.
        std::lock_guard lock(pending_mutex_);
        for (auto& p : batch) {
            if (pending_.size() >= options_.max_pending) break;
            auto [it, inserted] = pending_.try_emplace(p.sighting.id, std::move(p));
            if (!inserted && !it->second.offered_version) it->second.offered_version = std::move(p.offered_version);
        }
        stats = FlushStats{};
        stats.failed = true;
        return stats;
    }

    if (known_.size() + updated.size() > options_.max_known) known_.clear();
    for (auto& [id, state] : updated) known_[id] = std::move(state);
    return stats;
}

std::optional<std::int64_t> DeviceRegistry::product_of(std::string_view device_id) {
    {
        std::lock_guard lock(pending_mutex_);
        if (auto it = pending_.find(std::string(device_id)); it != pending_.end())
            return it->second.sighting.product_id;
    }
    // A flush in progress has taken the sighting out of pending_ and not committed it
    // yet: the device is in neither place. Wait for the flush (same lock order as
    // report(): write, then pending), then look again.
    std::lock_guard write(write_mutex_);
    {
        std::lock_guard lock(pending_mutex_);
        if (auto it = pending_.find(std::string(device_id)); it != pending_.end())
            return it->second.sighting.product_id;
    }
    auto row = database_.read([&](storage::Connection& c) { return storage::DeviceRepository(c).get(device_id); });
    if (!row) return std::nullopt;
    return row->product_id;
}

bool DeviceRegistry::report(const DeviceReport& report) {
    std::lock_guard lock(write_mutex_);
    flush_locked();
    const std::int64_t at = report.at != 0 ? report.at : now();
    const std::string status(to_string(report.status));
    std::optional<Known> state;
    bool found = database_.write([&](storage::Connection& c) {
        storage::DeviceRepository devices(c);
        auto row = devices.get(report.device_id);
        if (!row) return false;
        // A report without a version is about the offered version, else the running one.
        std::string version = !report.version.empty() ? report.version : row->offered_version.value_or(row->version);
        devices.record_status(report.device_id, status, version, at);
        nlohmann::json detail = nlohmann::json::object();
        if (!report.detail.empty()) detail["detail"] = cut_utf8(report.detail, kMaxReportDetail);
        devices.append_event({report.device_id, at, storage::DeviceEventKind::report, version, status,
                              detail.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
        storage::DeviceSighting stored{
            row->id,      row->product_id, row->chip,           row->layout,         row->slot,
            row->version, row->channel,    row->secure_version, row->remote_address, row->last_seen};
        state = Known{row->version, row->offered_version,  row->offered_at, status,
                      version,      fields_digest(stored), row->last_seen};
        if (observer_) observer_->on_report(c, *row, report.status, version, at);
        return true;
    });
    if (found && state) {
        if (known_.size() >= options_.max_known) known_.clear();
        known_[report.device_id] = std::move(*state);
    }
    return found;
}

}  // namespace otad::domain
