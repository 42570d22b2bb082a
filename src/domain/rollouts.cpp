#include "otad/domain/rollouts.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "otad/domain/blob_cache.hpp"
#include "otad/domain/catalogue.hpp"
#include "otad/domain/change_watch.hpp"
#include "otad/domain/version.hpp"
#include "otad/storage/audit_repository.hpp"
#include "otad/storage/database.hpp"
#include "otad/storage/device_repository.hpp"
#include "otad/storage/error.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"

namespace otad::domain {
namespace {

using json = nlohmann::json;
using storage::MemberState;
using storage::RolloutRepository;
using storage::RolloutState;
using Kind = RolloutError::Kind;

constexpr std::size_t kSilenceBatch = 10'000;  // silent devices marked per rollout and round
constexpr std::int64_t kMaxHoldSeconds = 366 * 86'400;

// A value quoted for an error message: printable, bounded.
std::string shown(std::string_view text) {
    std::string out = "'";
    for (char c : text.substr(0, 80)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
    if (text.size() > 80) out += "...";
    return out + "'";
}

std::string rollout_subject(std::string_view product, std::int64_t id) {
    return "product/" + std::string(product) + "/rollout/" + std::to_string(id);
}

std::string device_subject(std::string_view device_id) { return "device/" + std::string(device_id); }

json percent_json(std::int32_t bp) {
    if (bp % 100 == 0) return bp / 100;
    return static_cast<double>(bp) / 100.0;
}

json counters_json(const storage::RolloutCounters& c) {
    return {{"eligible", c.eligible},   {"offered", c.offered}, {"downloading", c.downloading},
            {"installed", c.installed}, {"failed", c.failed},   {"rolled_back", c.rolled_back},
            {"silent", c.silent}};
}

json optional_time(const std::optional<std::int64_t>& t) { return t ? json(util::rfc3339(*t)) : json(nullptr); }

// Where a device of the rollout stands (the poll and the device view share it).
// Computed on every poll of a rollout's channel: no allocation here.
enum class Standing {
    reverted,        // aborted with revert: base
    stays_updated,   // aborted, already on the target: target
    not_updated,     // aborted before it took the target: base
    on_target,       // already runs the target: target
    paused,          // base
    outside_filter,  // base
    outside_stage,   // base
    inside_stage,    // target
};

bool answers_target(Standing s) noexcept {
    return s == Standing::stays_updated || s == Standing::on_target || s == Standing::inside_stage;
}

Standing standing(const storage::Rollout& r, const RolloutFilter& filter, std::uint32_t threshold,
                  std::string_view device_id, std::string_view chip, std::string_view layout, std::string_view version,
                  bool has_every_tag) {
    const bool on_target = !version.empty() && versions_equivalent(version, r.target_version);
    if (r.state == RolloutState::aborted)
        return r.revert ? Standing::reverted : on_target ? Standing::stays_updated : Standing::not_updated;
    if (on_target) return Standing::on_target;
    if (r.state != RolloutState::running) return Standing::paused;
    if (!filter.admits(chip, layout, version, has_every_tag)) return Standing::outside_filter;
    return rollout_bucket(r.id, device_id) < threshold ? Standing::inside_stage : Standing::outside_stage;
}

std::string describe(Standing s, std::uint32_t bucket, std::uint32_t threshold) {
    switch (s) {
        case Standing::reverted:
            return "the rollout was aborted with revert: the base release is offered again";
        case Standing::stays_updated:
            return "the rollout was aborted, but the device already runs the target: it stays";
        case Standing::not_updated:
            return "the rollout was aborted before the device took the target";
        case Standing::on_target:
            return "the device already runs the target";
        case Standing::paused:
            return "the rollout is paused: no device takes the target now";
        case Standing::outside_filter:
            return "the device is outside the rollout's filter";
        case Standing::outside_stage:
            return "bucket " + std::to_string(bucket) + " is outside the current stage (below " +
                   std::to_string(threshold) + " of 10000)";
        case Standing::inside_stage:
            return "bucket " + std::to_string(bucket) + " is inside the current stage (below " +
                   std::to_string(threshold) + " of 10000)";
    }
    return "";
}

std::uint32_t current_threshold(const storage::Rollout& r) {
    if (r.stages.empty()) return 0;
    const std::size_t i = std::min<std::size_t>(static_cast<std::size_t>(r.current_stage), r.stages.size() - 1);
    return static_cast<std::uint32_t>(r.stages[i].percent_bp);
}

bool has_every_tag(const std::vector<std::string>& device_tags, const std::vector<std::string>& wanted) {
    return std::all_of(wanted.begin(), wanted.end(), [&](const std::string& t) {
        return std::find(device_tags.begin(), device_tags.end(), t) != device_tags.end();
    });
}

std::vector<std::string> string_list(const json& value, const char* member) {
    std::vector<std::string> out;
    if (value.is_string()) {
        out.push_back(value.get<std::string>());
    } else if (value.is_array()) {
        for (const auto& item : value) {
            if (!item.is_string())
                throw RolloutError(Kind::invalid, "invalid-body",
                                   std::string("filter.") + member + " must be a string or a list of strings");
            out.push_back(item.get<std::string>());
        }
    } else if (!value.is_null()) {
        throw RolloutError(Kind::invalid, "invalid-body",
                           std::string("filter.") + member + " must be a string or a list of strings");
    }
    if (out.size() > 64)
        throw RolloutError(Kind::invalid, "invalid-body",
                           std::string("filter.") + member + " lists more than 64 values");
    return out;
}

void check_tags(const std::vector<std::string>& tags) {
    for (const auto& t : tags)
        if (!is_valid_tag(t))
            throw RolloutError(
                Kind::invalid, "invalid-tag",
                "tag " + shown(t) +
                    " is not valid: use 1-64 characters of a-z 0-9 . _ -, starting with a letter or digit");
}

storage::Product require_product(storage::Connection& c, std::string_view name) {
    if (!is_valid_product_name(name))
        throw RolloutError(Kind::not_found, "product-not-found", "no product named " + shown(name));
    auto product = storage::CatalogueRepository(c).find_product(name);
    if (!product) throw RolloutError(Kind::not_found, "product-not-found", "no product named " + shown(name));
    return *product;
}

storage::Rollout require_rollout(storage::Connection& c, const storage::Product& product, std::int64_t id) {
    auto rollout = RolloutRepository(c).get(id);
    if (!rollout || rollout->product_id != product.id)
        throw RolloutError(Kind::not_found, "rollout-not-found",
                           "product " + shown(product.name) + " has no rollout " + std::to_string(id));
    return *rollout;
}

storage::Device require_device(storage::Connection& c, std::string_view device_id) {
    auto device = storage::DeviceRepository(c).get(device_id);
    if (!device)
        throw RolloutError(Kind::not_found, "device-not-found",
                           "no device " + shown(device_id) + " (a device is known from its first poll)");
    return *device;
}

// Writes one member so that, if it fails (a bug, a counter the schema refuses),
// only this device's rollout bookkeeping is skipped, never the device records of
// the registry's transaction it rides in.
void put_member_isolated(storage::Connection& c, const std::optional<storage::RolloutMember>& before,
                         const storage::RolloutMember& next) {
    if (auto error = RolloutRepository(c).put_member_or_skip(before, next)) {
        static std::atomic<std::uint64_t> failures{0};
        if (failures++ % 1000 == 0)
            util::log_event(
                *util::logger("rollouts"), spdlog::level::err, "rollout_counters_not_updated",
                {{"rollout", std::to_string(next.rollout_id)}, {"device", next.device_id}, {"error", *error}});
    }
}

[[noreturn]] void finished(const storage::Rollout& r) {
    throw RolloutError(Kind::conflict, "rollout-finished",
                       "rollout " + std::to_string(r.id) + " is " + std::string(storage::to_string(r.state)) +
                           "; start a new one instead",
                       {{"rollout", r.id}, {"state", storage::to_string(r.state)}});
}

std::string gate_numbers(const GateReading& g) {
    char text[160];
    std::snprintf(text, sizeof text, "failure ratio %.4f, rollback ratio %.4f over %lld offered devices",
                  g.failure_ratio, g.rollback_ratio, static_cast<long long>(g.offered));
    return text;
}

}  // namespace

// --- pure parts ---------------------------------------------------------------

std::uint32_t rollout_bucket(std::int64_t rollout_id, std::string_view device_id) noexcept {
    std::uint64_t h = 14695981039346656037ull;
    auto mix = [&h](unsigned char c) { h = (h ^ c) * 1099511628211ull; };
    char digits[24];
    int n = std::snprintf(digits, sizeof digits, "%lld", static_cast<long long>(rollout_id));
    for (int i = 0; i < n; ++i) mix(static_cast<unsigned char>(digits[i]));
    mix(':');
    for (unsigned char c : device_id) mix(c);
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return static_cast<std::uint32_t>(h % kRolloutBuckets);
}

bool RolloutFilter::admits(std::string_view chip, std::string_view layout, std::string_view version,
                           bool has_every_tag) const noexcept {
    if (!chips.empty() && std::find(chips.begin(), chips.end(), chip) == chips.end()) return false;
    if (!layouts.empty() && std::find(layouts.begin(), layouts.end(), layout) == layouts.end()) return false;
    if (!versions.empty() && std::none_of(versions.begin(), versions.end(),
                                          [&](const std::string& v) { return versions_equivalent(v, version); }))
        return false;
    return tags.empty() || has_every_tag;
}

json RolloutFilter::to_json() const {
    return {{"chip", chips}, {"layout", layouts}, {"version", versions}, {"tags", tags}};
}

RolloutFilter RolloutFilter::from_json(const json& filter) {
    RolloutFilter out;
    if (filter.is_null()) return out;
    if (!filter.is_object()) throw RolloutError(Kind::invalid, "invalid-body", "filter must be a JSON object");
    for (const auto& [key, value] : filter.items()) {
        if (key == "chip") {
            for (const auto& text : string_list(value, "chip")) {
                auto chip = parse_chip(text);
                if (!chip)
                    throw RolloutError(
                        Kind::invalid, "invalid-body",
                        "filter.chip " + shown(text) + " is not known; valid chips: " + valid_chip_names());
                out.chips.emplace_back(to_string(*chip));
            }
        } else if (key == "layout") {
            for (const auto& text : string_list(value, "layout")) {
                auto layout = parse_layout(text);
                if (!layout)
                    throw RolloutError(
                        Kind::invalid, "invalid-body",
                        "filter.layout " + shown(text) + " is not known; valid layouts: " + valid_layout_names());
                out.layouts.emplace_back(to_string(*layout));
            }
        } else if (key == "version") {
            out.versions = string_list(value, "version");
            for (const auto& v : out.versions)
                if (!is_valid_version_text(v))
                    throw RolloutError(Kind::invalid, "invalid-body",
                                       "filter.version " + shown(v) + " is not a version");
        } else if (key == "tags") {
            out.tags = string_list(value, "tags");
            check_tags(out.tags);
        } else {
            throw RolloutError(
                Kind::invalid, "invalid-body",
                "unknown filter member '" + key.substr(0, 64) + "'; allowed: chip, layout, version, tags");
        }
    }
    auto unique = [](std::vector<std::string>& v) {
        std::sort(v.begin(), v.end());
        v.erase(std::unique(v.begin(), v.end()), v.end());
    };
    unique(out.chips);
    unique(out.layouts);
    unique(out.tags);
    return out;
}

json GateReading::to_json(const storage::RolloutGateLimits& limits) const {
    return {{"max_failure_ratio", limits.max_failure_ratio},
            {"max_rollback_ratio", limits.max_rollback_ratio},
            {"min_devices", limits.min_devices},
            {"stale_after_s", limits.stale_after_s},
            {"offered", offered},
            {"failing", failing},
            {"rolled_back", rolled_back},
            {"failure_ratio", failure_ratio},
            {"rollback_ratio", rollback_ratio},
            {"judged", judged},
            {"breached", breached},
            {"breach", breach.empty() ? json(nullptr) : json(breach)}};
}

GateReading read_gate(const storage::Rollout& r) {
    const auto totals = r.totals();
    GateReading g;
    g.offered = std::max<std::int64_t>(0, totals.offered - r.gate_base_offered);
    g.failing = std::max<std::int64_t>(0, totals.failed + totals.silent - r.gate_base_failed);
    g.rolled_back = std::max<std::int64_t>(0, totals.rolled_back - r.gate_base_rolled_back);
    if (g.offered > 0) {
        g.failure_ratio = static_cast<double>(g.failing) / static_cast<double>(g.offered);
        g.rollback_ratio = static_cast<double>(g.rolled_back) / static_cast<double>(g.offered);
    }
    g.judged = g.offered > 0 && g.offered >= r.gate.min_devices;
    if (g.judged) {
        if (g.failure_ratio > r.gate.max_failure_ratio)
            g.breach = "failure_ratio";
        else if (g.rollback_ratio > r.gate.max_rollback_ratio)
            g.breach = "rollback_ratio";
        g.breached = !g.breach.empty();
    }
    return g;
}

int stage_of_bucket(const std::vector<storage::RolloutStage>& stages, std::uint32_t bucket) noexcept {
    for (const auto& s : stages)
        if (bucket < static_cast<std::uint32_t>(s.percent_bp)) return s.index;
    return stages.empty() ? 0 : stages.back().index;
}

std::vector<MissingArtifact> missing_slot_builds(std::span<const storage::Artifact> release,
                                                 const std::vector<storage::Artifact>* base,
                                                 const RolloutFilter* filter) {
    // (chip, layout) -> slots, for the NONOS layouts whose two builds are not interchangeable.
    using Key = std::pair<std::string, std::string>;
    auto pairs = [](auto&& artifacts) {
        std::map<Key, std::set<std::string>> out;
        for (const storage::Artifact& a : artifacts) {
            auto layout = parse_layout(a.layout);
            if (!layout || (*layout != Layout::nonos_256_256 && *layout != Layout::nonos_512_512)) continue;
            out[{a.chip, std::string(to_string(*layout))}].insert(util::to_lower(a.slot));
        }
        return out;
    };
    const auto have = pairs(release);
    std::map<Key, std::set<std::string>> need;
    for (const auto& [key, slots] : have) need[key] = {"user1", "user2"};
    if (base)
        for (const auto& [key, slots] : pairs(*base)) need[key].insert(slots.begin(), slots.end());
    std::vector<MissingArtifact> missing;
    for (const auto& [key, slots] : need) {
        if (filter && ((!filter->chips.empty() &&
                        std::find(filter->chips.begin(), filter->chips.end(), key.first) == filter->chips.end()) ||
                       (!filter->layouts.empty() && std::find(filter->layouts.begin(), filter->layouts.end(),
                                                              key.second) == filter->layouts.end())))
            continue;
        auto it = have.find(key);
        for (const auto& slot : slots) {
            if (slot != "user1" && slot != "user2") continue;
            if (it != have.end() && it->second.count(slot)) continue;
            const std::string other = slot == "user1" ? "user2" : "user1";
            std::string why = it != have.end()
                                  ? "devices running " + other + " need the " + slot + " build (the " + other +
                                        " build is linked for another flash address)"
                                  : "devices of this layout run the base release, which has a " + slot + " build";
            missing.push_back({key.first, key.second, slot, std::move(why)});
        }
    }
    return missing;
}

json to_json(const std::vector<MissingArtifact>& missing) {
    json out = json::array();
    for (const auto& m : missing)
        out.push_back({{"chip", m.chip}, {"layout", m.layout}, {"slot", m.slot}, {"why", m.why}});
    return out;
}

std::string describe(const std::vector<MissingArtifact>& missing) {
    std::string out;
    for (const auto& m : missing) out += (out.empty() ? "" : ", ") + m.chip + " " + m.layout + " " + m.slot;
    return out;
}

bool is_valid_tag(std::string_view tag) noexcept { return is_valid_channel_name(tag); }

RolloutSpec parse_rollout_spec(const json& body, const RolloutOptions& options) {
    auto invalid = [](const std::string& detail) { return RolloutError(Kind::invalid, "invalid-body", detail); };
    if (!body.is_object()) throw invalid("the request body must be a JSON object");
    for (const auto& [key, value] : body.items())
        if (key != "channel" && key != "version" && key != "stages" && key != "gate" && key != "filter")
            throw invalid("unknown member '" + key.substr(0, 64) +
                          "'; allowed: channel, version, stages, gate, filter");
    RolloutSpec spec;
    auto channel = body.find("channel");
    if (channel == body.end() || !channel->is_string()) throw invalid("channel (a string) is required");
    spec.channel = channel->get<std::string>();
    if (!is_valid_channel_name(spec.channel)) throw invalid("channel " + shown(spec.channel) + " is not a valid name");
    auto version = body.find("version");
    if (version == body.end() || !version->is_string()) throw invalid("version (a string) is required");
    spec.version = version->get<std::string>();
    if (!is_valid_version_text(spec.version)) throw invalid("version " + shown(spec.version) + " is not valid");

    auto stages = body.find("stages");
    if (stages == body.end() || !stages->is_array() || stages->empty())
        throw invalid("stages (a non-empty list of {\"percent\", \"hold_s\"}) is required");
    if (stages->size() > options.max_stages) throw invalid("at most " + std::to_string(options.max_stages) + " stages");
    std::int32_t previous = 0;
    for (std::size_t i = 0; i < stages->size(); ++i) {
        const json& stage = (*stages)[i];
        const std::string where = "stages[" + std::to_string(i) + "]";
        if (!stage.is_object()) throw invalid(where + " must be an object");
        for (const auto& [key, value] : stage.items())
            if (key != "percent" && key != "hold_s")
                throw invalid("unknown member '" + key.substr(0, 64) + "' in " + where + "; allowed: percent, hold_s");
        auto percent = stage.find("percent");
        if (percent == stage.end() || !percent->is_number()) throw invalid(where + ".percent (a number) is required");
        const double value = percent->get<double>();
        const double scaled = value * 100.0;
        const double rounded = std::round(scaled);
        if (!(value > 0.0) || value > 100.0 || std::fabs(scaled - rounded) > 1e-6)
            throw invalid(where + ".percent must be above 0 and at most 100, with at most two decimals");
        const auto bp = static_cast<std::int32_t>(rounded);
        if (bp <= previous)
            throw invalid(where + ".percent must be above the previous stage's: percents are cumulative");
        previous = bp;
        std::optional<std::int64_t> hold;
        if (auto h = stage.find("hold_s"); h != stage.end() && !h->is_null()) {
            if (!h->is_number_integer() || h->get<std::int64_t>() < 0 || h->get<std::int64_t>() > kMaxHoldSeconds)
                throw invalid(where + ".hold_s must be a whole number of seconds from 0 to " +
                              std::to_string(kMaxHoldSeconds) + " (or absent: wait for an advance)");
            hold = h->get<std::int64_t>();
        }
        spec.stages.emplace_back(bp, hold);
    }
    if (previous != static_cast<std::int32_t>(kRolloutBuckets))
        throw invalid("the last stage must be at 100 percent: completing it moves the channel to the target");

    spec.gate = options.default_gate;
    if (auto gate = body.find("gate"); gate != body.end() && !gate->is_null()) {
        if (!gate->is_object()) throw invalid("gate must be a JSON object");
        for (const auto& [key, value] : gate->items()) {
            if (key == "max_failure_ratio" || key == "max_rollback_ratio") {
                if (!value.is_number() || value.get<double>() < 0.0 || value.get<double>() > 1.0)
                    throw invalid("gate." + key + " must be a number from 0 to 1");
                (key == "max_failure_ratio" ? spec.gate.max_failure_ratio : spec.gate.max_rollback_ratio) =
                    value.get<double>();
            } else if (key == "min_devices") {
                if (!value.is_number_integer() || value.get<std::int64_t>() < 0 ||
                    value.get<std::int64_t>() > 1'000'000'000)
                    throw invalid("gate.min_devices must be a whole number from 0");
                spec.gate.min_devices = value.get<std::int64_t>();
            } else if (key == "stale_after_s") {
                if (!value.is_number_integer() || value.get<std::int64_t>() < 1 ||
                    value.get<std::int64_t>() > kMaxHoldSeconds)
                    throw invalid("gate.stale_after_s must be a whole number of seconds from 1 to " +
                                  std::to_string(kMaxHoldSeconds));
                spec.gate.stale_after_s = value.get<std::int64_t>();
            } else {
                throw invalid("unknown gate member '" + key.substr(0, 64) +
                              "'; allowed: max_failure_ratio, max_rollback_ratio, min_devices, stale_after_s");
            }
        }
    }
    if (auto filter = body.find("filter"); filter != body.end()) spec.filter = RolloutFilter::from_json(*filter);
    return spec;
}

// --- Rollouts -------------------------------------------------------------------

struct Rollouts::ChannelView {
    storage::Rollout rollout;
    RolloutFilter filter;
    std::unordered_set<std::string> tagged;  // devices carrying every filter tag
    std::uint32_t threshold = 0;             // the current stage's percent, basis points
};

struct Rollouts::ProductView {
    std::int64_t generation = -1;
    std::unordered_map<std::string, ChannelView> channels;  // by channel name
    std::unordered_map<std::string, storage::DeviceOverride> overrides;
};

Rollouts::Rollouts(storage::Database& database, ChangeWatch* watch, RolloutOptions options, Clock clock,
                   BlobCache* downloads)
    : database_(database), watch_(watch), options_(options), clock_(std::move(clock)), downloads_(downloads) {
    if (options_.time_scale < 1) options_.time_scale = 1;
}

Rollouts::~Rollouts() { stop(); }

std::int64_t Rollouts::now() const { return clock_ ? clock_() : util::unix_now(); }

std::int64_t Rollouts::scaled(std::int64_t seconds) const noexcept {
    return (seconds + options_.time_scale - 1) / options_.time_scale;
}

void Rollouts::invalidate() {
    std::lock_guard lock(view_mutex_);
    views_.clear();
}

void Rollouts::changed() noexcept {
    invalidate();
    if (watch_) watch_->touch();
}

void Rollouts::start() {
    std::lock_guard lock(thread_mutex_);
    if (thread_.joinable() || stopping_) return;
    thread_ = std::thread([this] { run(); });
}

void Rollouts::stop() noexcept {
    {
        std::lock_guard lock(thread_mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void Rollouts::run() {
    std::unique_lock lock(thread_mutex_);
    while (!stopping_) {
        wake_.wait_for(lock, options_.tick, [this] { return stopping_; });
        if (stopping_) break;
        lock.unlock();
        tick();
        lock.lock();
    }
}

// --- views (the poll path) ---------------------------------------------------------

std::shared_ptr<const Rollouts::ProductView> Rollouts::load_view(storage::Connection& c, std::int64_t product_id,
                                                                 std::int64_t generation) {
    auto view = std::make_shared<ProductView>();
    view->generation = generation;
    RolloutRepository repo(c);
    for (auto& r : repo.for_product(product_id)) {
        ChannelView channel;
        try {
            channel.filter = RolloutFilter::from_json(json::parse(r.filter_json));
        } catch (const std::exception& e) {
            // Stored filters were validated; one that no longer parses admits nobody.
            util::log_event(*util::logger("rollouts"), spdlog::level::err, "rollout_filter_unreadable",
                            {{"rollout", std::to_string(r.id)}, {"error", e.what()}});
            channel.filter.tags = {"-unreadable-filter-"};
        }
        if (!channel.filter.tags.empty())
            for (auto& id : repo.devices_with_tags(product_id, channel.filter.tags))
                channel.tagged.insert(std::move(id));
        channel.threshold = current_threshold(r);
        std::string name = r.channel;
        channel.rollout = std::move(r);
        view->channels.insert_or_assign(std::move(name), std::move(channel));
    }
    for (auto& o : repo.overrides(product_id)) {
        std::string id = o.device_id;
        view->overrides.emplace(std::move(id), std::move(o));
    }
    return view;
}

std::shared_ptr<const Rollouts::ProductView> Rollouts::view(std::int64_t product_id) {
    const std::int64_t generation = watch_ ? watch_->generation() : 0;
    {
        std::lock_guard lock(view_mutex_);
        if (auto it = views_.find(product_id); it != views_.end() && it->second->generation == generation)
            return it->second;
    }
    auto loaded = database_.read([&](storage::Connection& c) { return load_view(c, product_id, generation); });
    std::lock_guard lock(view_mutex_);
    if (views_.size() >= options_.max_cached_products) views_.clear();
    auto& slot = views_[product_id];
    if (!slot || slot->generation <= generation) slot = loaded;
    return loaded;
}

// Inside another transaction: the generation is read on that connection (leasing a
// second one while holding one is not allowed).
std::shared_ptr<const Rollouts::ProductView> Rollouts::view_in(storage::Connection& c, std::int64_t product_id) {
    auto newest = storage::AuditRepository(c).list(1);
    const std::int64_t generation = newest.empty() ? 0 : newest.front().id;
    {
        std::lock_guard lock(view_mutex_);
        if (auto it = views_.find(product_id); it != views_.end() && it->second->generation >= generation)
            return it->second;
    }
    auto loaded = load_view(c, product_id, generation);
    std::lock_guard lock(view_mutex_);
    if (views_.size() >= options_.max_cached_products) views_.clear();
    auto& slot = views_[product_id];
    if (!slot || slot->generation <= generation) slot = loaded;
    return loaded;
}

std::optional<ReleaseChoice> Rollouts::resolve(const PollRequest& request, std::int64_t channel_release_id,
                                               bool channel_allows_rollback) {
    auto v = view(request.product_id);
    if (v->channels.empty() && v->overrides.empty()) return std::nullopt;
    if (auto o = v->overrides.find(request.device_id); o != v->overrides.end()) {
        if (o->second.kind == storage::OverrideKind::pin && o->second.release_id)
            return ReleaseChoice{*o->second.release_id, true};  // an operator asked for exactly this release
        return std::nullopt;                                    // excluded: the channel's release
    }
    auto it = v->channels.find(request.channel);
    if (it == v->channels.end()) return std::nullopt;
    const ChannelView& channel = it->second;
    const storage::Rollout& r = channel.rollout;
    // The channel moved away from the rollout's base (after an abort): the rollout is history.
    if (!r.base_release_id || *r.base_release_id != channel_release_id || !r.target_release_id) return std::nullopt;
    const Standing s = standing(r, channel.filter, channel.threshold, request.device_id, to_string(request.device.chip),
                                to_string(request.device.layout), request.device.version,
                                !channel.filter.tags.empty() && channel.tagged.count(request.device_id) > 0);
    if (!answers_target(s)) return std::nullopt;
    return ReleaseChoice{*r.target_release_id, std::nullopt};
}

// --- counters (inside the registry's transactions) ------------------------------------

void Rollouts::on_flush(storage::Connection& c, std::span<const DeviceActivity> batch) {
    RolloutRepository repo(c);
    std::unordered_map<std::int64_t, std::shared_ptr<const ProductView>> views;  // one read per product and flush
    for (const DeviceActivity& a : batch) {
        const storage::DeviceSighting& s = *a.sighting;
        auto& v = views[s.product_id];
        if (!v) v = view_in(c, s.product_id);
        auto it = v->channels.find(s.channel);
        if (it == v->channels.end()) continue;
        const ChannelView& ch = it->second;
        const storage::Rollout& r = ch.rollout;
        if (!r.active() || v->overrides.count(s.id)) continue;  // overridden devices are outside rollouts

        const bool offered_target = a.offered && versions_equivalent(*a.offered, r.target_version);
        const bool on_target = !s.version.empty() && versions_equivalent(s.version, r.target_version);
        // A device whose bucket is beyond the current stage was never in the cohort
        // (stages only grow): unless it was just offered the target, it has no row.
        const std::uint32_t bucket = rollout_bucket(r.id, s.id);
        if (bucket >= ch.threshold && !offered_target) continue;
        const auto before = repo.member(r.id, s.id);
        storage::RolloutMember next;
        if (before) {
            next = *before;
        } else {
            const bool in_cohort =
                bucket < ch.threshold &&
                ch.filter.admits(s.chip, s.layout, s.version, !ch.filter.tags.empty() && ch.tagged.count(s.id) > 0);
            if (!offered_target && !in_cohort) continue;
            next.rollout_id = r.id;
            next.device_id = s.id;
            next.stage = stage_of_bucket(r.stages, bucket);
            next.state = MemberState::eligible;
            next.updated_at = s.seen_at;
        }
        if (offered_target && !next.offered_at) {
            next.offered_at = s.seen_at;
            next.state = MemberState::offered;
        }
        if (next.offered_at) {
            if (on_target)
                next.state = MemberState::installed;  // it runs the target, whatever it reported
            else if (a.rolled_back && versions_equivalent(*a.rolled_back, r.target_version))
                next.state = MemberState::rolled_back;
            else if (next.state == MemberState::silent)
                next.state = MemberState::offered;  // it came back
        }
        // updated_at: the last change, and for devices still waiting or downloading the
        // last contact too (the silence sweep reads it), refreshed at a resolution of a
        // quarter of stale_after_s (at most a minute), not on every poll.
        const std::int64_t resolution = std::clamp<std::int64_t>(scaled(r.gate.stale_after_s) / 4, 1, 60);
        if (!before || next.state != before->state ||
            ((next.state == MemberState::offered || next.state == MemberState::downloading) &&
             s.seen_at - next.updated_at >= resolution))
            next.updated_at = std::max(next.updated_at, s.seen_at);
        if (before && before->state == next.state && before->offered_at == next.offered_at &&
            before->updated_at == next.updated_at)
            continue;
        put_member_isolated(c, before, next);
    }
}

void Rollouts::on_report(storage::Connection& c, const storage::Device& device, DeviceStatus status,
                         std::string_view version, std::int64_t at) {
    auto v = view_in(c, device.product_id);
    auto it = v->channels.find(device.channel);
    if (it == v->channels.end()) return;
    const storage::Rollout& r = it->second.rollout;
    if (!r.active() || v->overrides.count(device.id) || !versions_equivalent(version, r.target_version)) return;
    RolloutRepository repo(c);
    auto before = repo.member(r.id, device.id);
    if (!before || !before->offered_at) return;
    storage::RolloutMember next = *before;
    switch (status) {
        case DeviceStatus::downloading:
        case DeviceStatus::downloaded:
        case DeviceStatus::installing:
            next.state = MemberState::downloading;
            break;
        case DeviceStatus::installed:
            next.state = MemberState::installed;
            break;
        case DeviceStatus::failed:
            next.state = MemberState::failed;
            break;
        case DeviceStatus::rolled_back:
            next.state = MemberState::rolled_back;
            break;
    }
    next.updated_at = std::max(before->updated_at, at);
    if (next.state == before->state && next.updated_at == before->updated_at) return;
    put_member_isolated(c, before, next);
}

// --- the background round ----------------------------------------------------------

TickResult Rollouts::tick() {
    TickResult result;
    try {
        auto active = database_.read([](storage::Connection& c) { return RolloutRepository(c).all_active(); });
        for (const auto& r : active) {
            try {
                tick_one(r, result);
            } catch (const std::exception& e) {
                util::log_event(*util::logger("rollouts"), spdlog::level::err, "rollout_round_failed",
                                {{"rollout", std::to_string(r.id)}, {"error", e.what()}});
            }
        }
    } catch (const std::exception& e) {
        util::log_event(*util::logger("rollouts"), spdlog::level::err, "rollout_round_failed", {{"error", e.what()}});
    }
    if (result.paused + result.advanced + result.completed > 0) changed();
    return result;
}

void Rollouts::tick_one(const storage::Rollout& listed, TickResult& result) {
    auto log = util::logger("rollouts");
    const std::int64_t t = now();

    // 1. Devices offered the target and silent for stale_after_s count as failing.
    // Silent: no change or contact for at least stale_after_s, i.e. updated_at < cutoff.
    const std::int64_t cutoff = t - scaled(listed.gate.stale_after_s) + 1;
    auto stale = database_.read(
        [&](storage::Connection& c) { return RolloutRepository(c).stale_members(listed.id, cutoff, kSilenceBatch); });
    if (!stale.empty()) {
        std::size_t marked = database_.write(
            [&](storage::Connection& c) {
                RolloutRepository repo(c);
                std::size_t n = 0;
                for (const auto& m : stale) {
                    auto fresh = repo.member(m.rollout_id, m.device_id);  // may have moved since the read
                    if (!fresh || fresh->updated_at >= cutoff ||
                        (fresh->state != MemberState::offered && fresh->state != MemberState::downloading))
                        continue;
                    storage::RolloutMember next = *fresh;
                    next.state = MemberState::silent;
                    next.updated_at = t;
                    repo.put_member(fresh, next);
                    ++n;
                }
                return n;
            },
            storage::Durability::normal);
        result.silenced += marked;
    }

    // 2. The gate, then the hold. Read first; write only when something is due.
    auto due = [&](const storage::Rollout& r, const GateReading& gate) {
        if (r.state != RolloutState::running || r.stages.empty()) return false;
        if (gate.breached) return true;
        const auto& stage = r.stages.at(static_cast<std::size_t>(r.current_stage));
        return stage.hold_s && t - r.stage_started_at >= scaled(*stage.hold_s);
    };
    auto fresh = database_.read([&](storage::Connection& c) { return RolloutRepository(c).get(listed.id); });
    if (!fresh || !due(*fresh, read_gate(*fresh))) return;

    enum class Did { nothing, paused, advanced, completed } did = Did::nothing;
    GateReading gate;
    std::string product_name;
    int stage = 0;
    database_.write([&](storage::Connection& c) {
        RolloutRepository repo(c);
        auto r = repo.get(listed.id);  // again, under the write lock: compare-and-set from here
        if (!r) return;
        gate = read_gate(*r);
        if (!due(*r, gate)) return;
        auto product = storage::CatalogueRepository(c).get_product(r->product_id);
        product_name = product ? product->name : std::to_string(r->product_id);
        stage = r->current_stage;
        storage::AuditRepository audit(c);
        if (gate.breached) {
            json detail = {{"reason", "gate"},
                           {"breach", gate.breach},
                           {"stage", r->current_stage},
                           {"gate", gate.to_json(r->gate)},
                           {"totals", counters_json(r->totals())}};
            if (!repo.pause(r->id, "gate", detail.dump(), t)) return;
            audit.append("system", "rollout.pause", rollout_subject(product_name, r->id), detail.dump());
            did = Did::paused;
        } else if (static_cast<std::size_t>(r->current_stage) + 1 >= r->stages.size()) {
            complete_in(c, *r, "system", t);
            did = Did::completed;
        } else {
            if (!repo.advance(r->id, r->current_stage, t)) return;
            audit.append(
                "system", "rollout.advance", rollout_subject(product_name, r->id),
                json{{"from_stage", r->current_stage},
                     {"to_stage", r->current_stage + 1},
                     {"percent", percent_json(r->stages[static_cast<std::size_t>(r->current_stage) + 1].percent_bp)},
                     {"reason", "hold passed"},
                     {"gate", gate.to_json(r->gate)}}
                    .dump());
            did = Did::advanced;
        }
    });
    const std::string id = std::to_string(listed.id);
    switch (did) {
        case Did::nothing:
            break;
        case Did::paused:
            ++result.paused;
            util::log_event(*log, spdlog::level::warn, "rollout_paused_by_gate",
                            {{"rollout", id},
                             {"product", product_name},
                             {"channel", listed.channel},
                             {"target", listed.target_version},
                             {"stage", std::to_string(stage)},
                             {"breach", gate.breach},
                             {"detail", gate_numbers(gate)}});
            break;
        case Did::advanced:
            ++result.advanced;
            util::log_event(*log, spdlog::level::info, "rollout_advanced",
                            {{"rollout", id}, {"product", product_name}, {"to_stage", std::to_string(stage + 1)}});
            break;
        case Did::completed:
            ++result.completed;
            if (downloads_) downloads_->invalidate_product(listed.product_id);
            util::log_event(*log, spdlog::level::info, "rollout_completed",
                            {{"rollout", id},
                             {"product", product_name},
                             {"channel", listed.channel},
                             {"version", listed.target_version}});
            break;
    }
}

void Rollouts::complete_in(storage::Connection& c, const storage::Rollout& r, std::string_view actor, std::int64_t at) {
    if (!r.target_release_id)
        throw RolloutError(Kind::conflict, "release-missing",
                           "the target release of rollout " + std::to_string(r.id) + " no longer exists");
    RolloutRepository repo(c);
    storage::CatalogueRepository catalogue(c);
    if (!repo.finish(r.id, RolloutState::completed, false, at))
        throw RolloutError(Kind::conflict, "rollout-changed", "rollout " + std::to_string(r.id) + " changed meanwhile");
    auto channel = catalogue.get_channel(r.product_id, r.channel);
    catalogue.set_channel(r.product_id, r.channel, *r.target_release_id, channel && channel->allow_rollback);
    auto product = catalogue.get_product(r.product_id);
    const std::string name = product ? product->name : std::to_string(r.product_id);
    storage::AuditRepository audit(c);
    audit.append(actor, "rollout.complete", rollout_subject(name, r.id),
                 json{{"channel", r.channel},
                      {"version", r.target_version},
                      {"previous_version", r.base_version},
                      {"totals", counters_json(r.totals())}}
                     .dump());
    audit.append(actor, "channel.set", "product/" + name + "/channel/" + r.channel,
                 json{{"version", r.target_version},
                      {"allow_rollback", channel && channel->allow_rollback},
                      {"previous_version", r.base_version},
                      {"rollout", r.id}}
                     .dump());
}

// --- operator actions -------------------------------------------------------------------

storage::Rollout Rollouts::create(std::string_view product_name, const RolloutSpec& spec, std::string_view actor) {
    const std::int64_t t = now();
    auto created = database_.write([&](storage::Connection& c) {
        storage::Product product = require_product(c, product_name);
        storage::CatalogueRepository catalogue(c);
        RolloutRepository repo(c);
        auto channel = catalogue.get_channel(product.id, spec.channel);
        if (!channel)
            throw RolloutError(Kind::not_found, "channel-not-found",
                               "product " + shown(product.name) + " has no channel " + shown(spec.channel) +
                                   "; a rollout starts from the release a channel points at");
        auto target = catalogue.find_release(product.id, spec.version);
        if (!target)
            throw RolloutError(Kind::not_found, "release-not-found",
                               "product " + shown(product.name) + " has no release " + shown(spec.version));
        auto base = catalogue.get_release(channel->release_id);
        if (!base) throw RolloutError(Kind::not_found, "release-not-found", "the channel's release is gone");
        if (auto active = repo.active_for_channel(product.id, spec.channel))
            throw RolloutError(Kind::conflict, "rollout-active",
                               "channel " + shown(spec.channel) + " already has rollout " + std::to_string(active->id) +
                                   " (" + std::string(storage::to_string(active->state)) + ", to " +
                                   active->target_version + "); abort it or let it complete first",
                               {{"rollout", active->id},
                                {"state", storage::to_string(active->state)},
                                {"version", active->target_version}});
        if (target->id == base->id || versions_equivalent(target->version, base->version))
            throw RolloutError(Kind::conflict, "same-release",
                               "channel " + shown(spec.channel) + " already offers " + base->version);
        auto target_artifacts = catalogue.list_artifacts(target->id);
        if (target_artifacts.empty())
            throw RolloutError(Kind::unprocessable, "release-empty",
                               "release " + shown(target->version) + " has no artifacts; upload them first");
        auto base_artifacts = catalogue.list_artifacts(base->id);
        auto missing = missing_slot_builds(target_artifacts, &base_artifacts, &spec.filter);
        if (!missing.empty())
            throw RolloutError(Kind::unprocessable, "missing-slot-build",
                               "release " + target->version + " lacks builds devices in the rollout need: " +
                                   describe(missing) + " (" + missing.front().why + ")",
                               {{"missing_artifacts", domain::to_json(missing)}});
        storage::NewRollout n;
        n.product_id = product.id;
        n.channel = spec.channel;
        n.base_release_id = base->id;
        n.target_release_id = target->id;
        n.base_version = base->version;
        n.target_version = target->version;
        n.stages = spec.stages;
        n.gate = spec.gate;
        n.filter_json = spec.filter.to_json().dump();
        n.created_by = std::string(actor);
        n.at = t;
        storage::Rollout r = repo.create(n);
        json stages = json::array();
        for (const auto& s : r.stages)
            stages.push_back(
                {{"percent", percent_json(s.percent_bp)}, {"hold_s", s.hold_s ? json(*s.hold_s) : json(nullptr)}});
        storage::AuditRepository(c).append(actor, "rollout.create", rollout_subject(product.name, r.id),
                                           json{{"channel", r.channel},
                                                {"base_version", r.base_version},
                                                {"target_version", r.target_version},
                                                {"stages", stages},
                                                {"gate", read_gate(r).to_json(r.gate)},
                                                {"filter", spec.filter.to_json()}}
                                               .dump());
        return r;
    });
    changed();
    util::log_event(*util::logger("rollouts"), spdlog::level::info, "rollout_started",
                    {{"rollout", std::to_string(created.id)},
                     {"product", product_name},
                     {"channel", created.channel},
                     {"from", created.base_version},
                     {"to", created.target_version}});
    return created;
}

std::vector<storage::Rollout> Rollouts::list(std::string_view product_name, std::size_t limit) {
    return database_.read([&](storage::Connection& c) {
        storage::Product product = require_product(c, product_name);
        return RolloutRepository(c).list(product.id, limit);
    });
}

storage::Rollout Rollouts::get(std::string_view product_name, std::int64_t id) {
    return database_.read([&](storage::Connection& c) {
        storage::Product product = require_product(c, product_name);
        return require_rollout(c, product, id);
    });
}

storage::Rollout Rollouts::pause(std::string_view product_name, std::int64_t id, std::string_view actor) {
    const std::int64_t t = now();
    bool did = false;
    auto r = database_.write([&](storage::Connection& c) {
        storage::Product product = require_product(c, product_name);
        storage::Rollout r = require_rollout(c, product, id);
        if (r.state == RolloutState::paused) return r;  // already: the first reason stays
        if (r.state != RolloutState::running) finished(r);
        RolloutRepository repo(c);
        json detail = {{"reason", "operator"}, {"stage", r.current_stage}, {"totals", counters_json(r.totals())}};
        repo.pause(r.id, "operator", detail.dump(), t);
        storage::AuditRepository(c).append(actor, "rollout.pause", rollout_subject(product.name, r.id), detail.dump());
        did = true;
        return *repo.get(r.id);
    });
    if (did) changed();
    return r;
}

storage::Rollout Rollouts::resume(std::string_view product_name, std::int64_t id, bool force, std::string_view actor) {
    const std::int64_t t = now();
    bool did = false;
    auto r = database_.write([&](storage::Connection& c) {
        storage::Product product = require_product(c, product_name);
        storage::Rollout r = require_rollout(c, product, id);
        if (r.state == RolloutState::running) return r;
        if (r.state != RolloutState::paused) finished(r);
        const GateReading gate = read_gate(r);
        if (gate.breached && !force)
            throw RolloutError(Kind::conflict, "gate-breached",
                               "rollout " + std::to_string(r.id) + "'s health gate is still breached (" +
                                   gate_numbers(gate) + "); resume with force to judge only what happens from now on",
                               {{"rollout", r.id}, {"gate", gate.to_json(r.gate)}});
        RolloutRepository repo(c);
        std::optional<storage::RolloutCounters> baseline;
        if (force && gate.breached) baseline = r.totals();
        repo.resume(r.id, t, baseline);
        storage::AuditRepository(c).append(actor, "rollout.resume", rollout_subject(product.name, r.id),
                                           json{{"force", force},
                                                {"gate_reset", baseline.has_value()},
                                                {"gate", gate.to_json(r.gate)},
                                                {"paused_by", r.pause_reason}}
                                               .dump());
        did = true;
        return *repo.get(r.id);
    });
    if (did) changed();
    return r;
}

storage::Rollout Rollouts::advance(std::string_view product_name, std::int64_t id, std::string_view actor) {
    const std::int64_t t = now();
    bool completed = false;
    auto r = database_.write([&](storage::Connection& c) {
        storage::Product product = require_product(c, product_name);
        storage::Rollout r = require_rollout(c, product, id);
        if (r.state == RolloutState::paused)
            throw RolloutError(Kind::conflict, "rollout-paused",
                               "rollout " + std::to_string(r.id) + " is paused; resume it before advancing",
                               {{"rollout", r.id}});
        if (r.state != RolloutState::running) finished(r);
        RolloutRepository repo(c);
        if (static_cast<std::size_t>(r.current_stage) + 1 >= r.stages.size()) {
            complete_in(c, r, actor, t);
            completed = true;
        } else {
            if (!repo.advance(r.id, r.current_stage, t))
                throw RolloutError(Kind::conflict, "rollout-changed", "rollout changed meanwhile; read it again");
            storage::AuditRepository(c).append(
                actor, "rollout.advance", rollout_subject(product.name, r.id),
                json{{"from_stage", r.current_stage},
                     {"to_stage", r.current_stage + 1},
                     {"percent", percent_json(r.stages[static_cast<std::size_t>(r.current_stage) + 1].percent_bp)},
                     {"reason", "operator"},
                     {"gate", read_gate(r).to_json(r.gate)}}
                    .dump());
        }
        return *repo.get(r.id);
    });
    if (completed && downloads_) downloads_->invalidate_product(r.product_id);
    changed();
    return r;
}

storage::Rollout Rollouts::abort(std::string_view product_name, std::int64_t id, bool revert, std::string_view actor) {
    const std::int64_t t = now();
    auto r = database_.write([&](storage::Connection& c) {
        storage::Product product = require_product(c, product_name);
        storage::Rollout r = require_rollout(c, product, id);
        if (!r.active()) finished(r);
        if (revert) {
            auto channel = storage::CatalogueRepository(c).get_channel(product.id, r.channel);
            if (!channel || !channel->allow_rollback)
                throw RolloutError(Kind::conflict, "rollback-not-allowed",
                                   "revert offers the base release to devices that took the target, but channel " +
                                       shown(r.channel) + " does not allow rollback; set allow_rollback on it first",
                                   {{"channel", r.channel}});
        }
        RolloutRepository repo(c);
        repo.finish(r.id, RolloutState::aborted, revert, t);
        storage::AuditRepository(c).append(
            actor, "rollout.abort", rollout_subject(product.name, r.id),
            json{{"revert", revert}, {"stage", r.current_stage}, {"totals", counters_json(r.totals())}}.dump());
        return *repo.get(r.id);
    });
    changed();
    return r;
}

json Rollouts::to_json(const storage::Rollout& r, std::string_view product) const {
    json stages = json::array();
    for (const auto& s : r.stages) {
        std::string state = s.index < r.current_stage ? "done" : s.index == r.current_stage ? "current" : "pending";
        if (s.index == r.current_stage && r.state == RolloutState::completed) state = "done";
        json stage = {{"index", s.index},
                      {"percent", percent_json(s.percent_bp)},
                      {"hold_s", s.hold_s ? json(*s.hold_s) : json(nullptr)},
                      {"state", state},
                      {"started_at", optional_time(s.started_at)},
                      {"counters", counters_json(s.counters)}};
        if (s.index == r.current_stage && s.hold_s && r.state == RolloutState::running)
            stage["hold_ends_at"] = util::rfc3339(r.stage_started_at + scaled(*s.hold_s));
        stages.push_back(std::move(stage));
    }
    json filter = json::parse(r.filter_json, nullptr, /*allow_exceptions=*/false);
    json pause = nullptr;
    if (r.state == RolloutState::paused) {
        json detail = json::parse(r.pause_detail_json, nullptr, /*allow_exceptions=*/false);
        pause = {{"reason", r.pause_reason},
                 {"at", optional_time(r.paused_at)},
                 {"detail", detail.is_discarded() ? json::object() : detail}};
    }
    const auto& current =
        r.stages.empty() ? storage::RolloutStage{} : r.stages.at(static_cast<std::size_t>(r.current_stage));
    return {{"id", r.id},
            {"product", product},
            {"channel", r.channel},
            {"base_version", r.base_version},
            {"target_version", r.target_version},
            {"state", storage::to_string(r.state)},
            {"current_stage", r.current_stage},
            {"current_percent", percent_json(current.percent_bp)},
            {"stages", stages},
            {"totals", counters_json(r.totals())},
            {"gate", read_gate(r).to_json(r.gate)},
            {"filter", filter.is_discarded() ? json::object() : filter},
            {"pause", pause},
            {"revert", r.revert},
            {"created_at", util::rfc3339(r.created_at)},
            {"created_by", r.created_by},
            {"updated_at", util::rfc3339(r.updated_at)},
            {"finished_at", optional_time(r.finished_at)}};
}

// --- tags and overrides ------------------------------------------------------------------

std::vector<std::string> Rollouts::set_tags(std::string_view device_id, std::vector<std::string> tags,
                                            std::string_view actor) {
    check_tags(tags);
    std::sort(tags.begin(), tags.end());
    tags.erase(std::unique(tags.begin(), tags.end()), tags.end());
    if (tags.size() > kMaxDeviceTags)
        throw RolloutError(Kind::invalid, "invalid-tag",
                           "a device carries at most " + std::to_string(kMaxDeviceTags) + " tags");
    database_.write([&](storage::Connection& c) {
        require_device(c, device_id);
        RolloutRepository(c).set_tags(device_id, tags);
        storage::AuditRepository(c).append(actor, "device.tags", device_subject(device_id),
                                           json{{"tags", tags}}.dump());
    });
    changed();
    return tags;
}

std::int64_t Rollouts::change_tags(std::string_view product_name, storage::DeviceSelection selection,
                                   const std::vector<std::string>& add, const std::vector<std::string>& remove,
                                   std::string_view actor) {
    check_tags(add);
    check_tags(remove);
    if (add.empty() && remove.empty()) throw RolloutError(Kind::invalid, "invalid-body", "name tags to add or remove");
    if (selection.chip) {
        auto chip = parse_chip(*selection.chip);
        if (!chip)
            throw RolloutError(Kind::invalid, "invalid-body", "chip " + shown(*selection.chip) + " is not known");
        selection.chip = std::string(to_string(*chip));
    }
    if (selection.layout) {
        auto layout = parse_layout(*selection.layout);
        if (!layout)
            throw RolloutError(Kind::invalid, "invalid-body", "layout " + shown(*selection.layout) + " is not known");
        selection.layout = std::string(to_string(*layout));
    }
    if (selection.tag) check_tags({*selection.tag});
    auto matched = database_.write([&](storage::Connection& c) {
        storage::Product product = require_product(c, product_name);
        selection.product_id = product.id;
        std::int64_t n = RolloutRepository(c).change_tags(selection, add, remove);
        auto optional = [](const std::optional<std::string>& v) { return v ? json(*v) : json(nullptr); };
        storage::AuditRepository(c).append(actor, "device.tags.bulk", "product/" + product.name,
                                           json{{"add", add},
                                                {"remove", remove},
                                                {"filter",
                                                 {{"chip", optional(selection.chip)},
                                                  {"layout", optional(selection.layout)},
                                                  {"version", optional(selection.version)},
                                                  {"channel", optional(selection.channel)},
                                                  {"tag", optional(selection.tag)}}},
                                                {"devices", n}}
                                               .dump());
        return n;
    });
    changed();
    return matched;
}

storage::DeviceOverride Rollouts::pin(std::string_view device_id, std::string_view version, std::string_view reason,
                                      std::string_view actor) {
    if (reason.size() > 256) throw RolloutError(Kind::invalid, "invalid-body", "reason must be at most 256 bytes");
    auto o = database_.write([&](storage::Connection& c) {
        storage::Device device = require_device(c, device_id);
        storage::CatalogueRepository catalogue(c);
        auto product = catalogue.get_product(device.product_id);
        auto release =
            is_valid_version_text(version) ? catalogue.find_release(device.product_id, version) : std::nullopt;
        if (!release)
            throw RolloutError(Kind::not_found, "release-not-found",
                               "product " + shown(product ? product->name : "?") + " of device " + shown(device_id) +
                                   " has no release " + shown(version));
        if (catalogue.list_artifacts(release->id).empty())
            throw RolloutError(Kind::unprocessable, "release-empty",
                               "release " + shown(version) + " has no artifacts; upload them before pinning to it");
        storage::DeviceOverride o{std::string(device_id),
                                  device.product_id,
                                  storage::OverrideKind::pin,
                                  release->id,
                                  release->version,
                                  std::string(reason),
                                  now(),
                                  std::string(actor)};
        RolloutRepository(c).set_override(o);
        storage::AuditRepository(c).append(actor, "device.pin", device_subject(device_id),
                                           json{{"version", release->version}, {"reason", reason}}.dump());
        return o;
    });
    changed();
    return o;
}

storage::DeviceOverride Rollouts::exclude(std::string_view device_id, std::string_view reason, std::string_view actor) {
    if (reason.size() > 256) throw RolloutError(Kind::invalid, "invalid-body", "reason must be at most 256 bytes");
    auto o = database_.write([&](storage::Connection& c) {
        storage::Device device = require_device(c, device_id);
        storage::DeviceOverride o{std::string(device_id),
                                  device.product_id,
                                  storage::OverrideKind::exclude,
                                  std::nullopt,
                                  "",
                                  std::string(reason),
                                  now(),
                                  std::string(actor)};
        RolloutRepository(c).set_override(o);
        storage::AuditRepository(c).append(actor, "device.exclude", device_subject(device_id),
                                           json{{"reason", reason}}.dump());
        return o;
    });
    changed();
    return o;
}

void Rollouts::clear_override(std::string_view device_id, std::string_view actor) {
    database_.write([&](storage::Connection& c) {
        require_device(c, device_id);
        RolloutRepository repo(c);
        auto before = repo.get_override(device_id);
        if (!before)
            throw RolloutError(Kind::not_found, "override-not-found",
                               "device " + shown(device_id) + " is neither pinned nor excluded");
        repo.clear_override(device_id);
        storage::AuditRepository(c).append(
            actor, "device.override.clear", device_subject(device_id),
            json{{"kind", storage::to_string(before->kind)}, {"version", before->version}}.dump());
    });
    changed();
}

json Rollouts::device_view(std::string_view device_id) {
    return database_.read([&](storage::Connection& c) -> json {
        storage::Device device = require_device(c, device_id);
        RolloutRepository repo(c);
        storage::CatalogueRepository catalogue(c);
        const auto tags = repo.tags(device_id);
        const auto override_row = repo.get_override(device_id);
        json out = {{"tags", tags}, {"override", nullptr}};
        if (override_row)
            out["override"] = {
                {"kind", storage::to_string(override_row->kind)},
                {"version",
                 override_row->kind == storage::OverrideKind::pin ? json(override_row->version) : json(nullptr)},
                {"reason", override_row->reason},
                {"created_by", override_row->created_by},
                {"created_at", util::rfc3339(override_row->created_at)}};

        auto channel = catalogue.get_channel(device.product_id, device.channel);
        std::optional<storage::Release> channel_release;
        if (channel) channel_release = catalogue.get_release(channel->release_id);
        const json channel_version = channel_release ? json(channel_release->version) : json(nullptr);
        json& choice = out["release_choice"];
        if (override_row && override_row->kind == storage::OverrideKind::pin) {
            choice = {{"source", "pin"},
                      {"version", override_row->version},
                      {"detail", "pinned to " + override_row->version + ": a pin wins over rollouts and channels"}};
            return out;
        }
        if (override_row) {
            choice = {{"source", "excluded"},
                      {"version", channel_version},
                      {"detail", "excluded from rollouts: the device gets its channel's release"}};
            return out;
        }
        for (const auto& r : repo.for_product(device.product_id)) {
            if (r.channel != device.channel || !channel || !r.base_release_id ||
                *r.base_release_id != channel->release_id)
                continue;
            RolloutFilter filter;
            try {
                filter = RolloutFilter::from_json(json::parse(r.filter_json));
            } catch (const std::exception&) {}
            const bool tagged = filter.tags.empty() || has_every_tag(tags, filter.tags);
            const std::uint32_t threshold = current_threshold(r);
            const Standing s =
                standing(r, filter, threshold, device.id, device.chip, device.layout, device.version, tagged);
            const bool target = answers_target(s);
            const std::uint32_t bucket = rollout_bucket(r.id, device.id);
            auto member = repo.member(r.id, device.id);
            choice = {{"source", "rollout"},
                      {"rollout", r.id},
                      {"rollout_state", storage::to_string(r.state)},
                      {"bucket", bucket},
                      {"stage_threshold", threshold},
                      {"in_filter", filter.admits(device.chip, device.layout, device.version, tagged)},
                      {"answer", target ? "target" : "base"},
                      {"version", target ? r.target_version : r.base_version},
                      {"member_state", member ? json(storage::to_string(member->state)) : json(nullptr)},
                      {"detail", describe(s, bucket, threshold)}};
            return out;
        }
        choice = {{"source", "channel"},
                  {"version", channel_version},
                  {"detail", channel ? "the channel's release; no rollout or override applies"
                                     : "the device's channel does not exist"}};
        return out;
    });
}

}  // namespace otad::domain
