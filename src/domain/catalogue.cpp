#include "otad/domain/catalogue.hpp"

#include <algorithm>
#include <mutex>
#include <set>

#include "otad/domain/blob_cache.hpp"
#include "otad/domain/esp_image.hpp"
#include "otad/domain/rollouts.hpp"
#include "otad/domain/version.hpp"
#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/database.hpp"
#include "otad/storage/error.hpp"
#include "otad/storage/rollout_repository.hpp"
#include "otad/util/crypto.hpp"
#include "otad/util/logging.hpp"
#include "otad/util/strings.hpp"

namespace otad::domain {
namespace {

using nlohmann::json;
using storage::CatalogueRepository;
using Kind = CatalogueErrorKind;

constexpr std::size_t kReceiveChunk = 256 * 1024;
constexpr std::size_t kMaxPageSize = 500;
constexpr std::size_t kMaxNameLength = 64;
constexpr std::size_t kMaxFilenameLength = 128;

bool is_lower_alnum(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

bool is_slug(std::string_view name) noexcept {
    if (name.empty() || name.size() > kMaxNameLength || !is_lower_alnum(name.front())) return false;
    return std::all_of(name.begin(), name.end(),
                       [](char c) { return is_lower_alnum(c) || c == '.' || c == '_' || c == '-'; });
}

// A value quoted for an error message: printable, bounded, never raw control bytes.
std::string shown(std::string_view text) {
    std::string out = "'";
    for (char c : text.substr(0, 80)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
    if (text.size() > 80) out += "...";
    return out + "'";
}

json name_list(std::span<const Chip> chips) {
    json out = json::array();
    for (Chip c : chips) out.push_back(to_string(c));
    return out;
}

json layout_list() {
    json out = json::array();
    for (Layout l : all_layouts()) out.push_back(to_string(l));
    return out;
}

std::string artifact_subject(std::string_view product, std::string_view version, std::int64_t id) {
    return "product/" + std::string(product) + "/release/" + std::string(version) + "/artifact/" + std::to_string(id);
}
std::string release_subject(std::string_view product, std::string_view version) {
    return "product/" + std::string(product) + "/release/" + std::string(version);
}
std::string channel_subject(std::string_view product, std::string_view channel) {
    return "product/" + std::string(product) + "/channel/" + std::string(channel);
}

void check_product_name(std::string_view product) {
    if (!is_valid_product_name(product))
        throw CatalogueError(
            Kind::invalid, "invalid-product",
            "product name " + shown(product) +
                " is not valid: use 1-64 characters of a-z 0-9 . _ -, starting with a letter or digit");
}

void check_version_text(std::string_view version) {
    if (!is_valid_version_text(version))
        throw CatalogueError(
            Kind::invalid, "invalid-version",
            "version " + shown(version) + " is not valid: use 1-64 printable ASCII characters without spaces or '/'");
}

void check_channel_name(std::string_view channel) {
    if (!is_valid_channel_name(channel))
        throw CatalogueError(
            Kind::invalid, "invalid-channel",
            "channel name " + shown(channel) +
                " is not valid: use 1-64 characters of a-z 0-9 . _ -, starting with a letter or digit");
}

storage::Product require_product(CatalogueRepository& repo, std::string_view name) {
    auto product = repo.find_product(name);
    if (!product) throw CatalogueError(Kind::not_found, "not-found", "no product named " + shown(name));
    return *product;
}

storage::Release require_release(CatalogueRepository& repo, const storage::Product& product, std::string_view version) {
    auto release = repo.find_release(product.id, version);
    if (!release)
        throw CatalogueError(Kind::not_found, "not-found",
                             "product " + shown(product.name) + " has no release " + shown(version));
    return *release;
}

std::vector<std::string> channels_of_release(CatalogueRepository& repo, const storage::Release& release) {
    std::vector<std::string> names;
    for (const auto& channel : repo.list_channels(release.product_id))
        if (channel.release_id == release.id) names.push_back(channel.name);
    return names;
}

// Rollouts (docs/rollouts.md): an active rollout owns its channel and keeps its releases.
void refuse_if_rollout_on_channel(storage::Connection& c, const storage::Product& product, std::string_view channel) {
    if (auto active = storage::RolloutRepository(c).active_for_channel(product.id, channel))
        throw CatalogueError(Kind::conflict, "channel-in-rollout",
                             "channel " + shown(channel) + " of " + shown(product.name) +
                                 " is being moved by rollout " + std::to_string(active->id) + " (" +
                                 std::string(storage::to_string(active->state)) + ", to " + active->target_version +
                                 "); advance, complete or abort it instead",
                             {{"rollout", active->id}, {"state", storage::to_string(active->state)}});
}

void refuse_if_release_in_use(storage::Connection& c, const storage::Product& product,
                              const storage::Release& release) {
    storage::RolloutRepository rollouts(c);
    auto active = rollouts.active_for_release(release.id);
    if (!active.empty()) {
        json ids = json::array();
        for (const auto& r : active) ids.push_back(r.id);
        throw CatalogueError(Kind::conflict, "release-in-rollout",
                             "release " + shown(release.version) + " of " + shown(product.name) +
                                 " is part of rollout " + std::to_string(active.front().id) + " on channel " +
                                 shown(active.front().channel) + "; abort or complete it first",
                             {{"rollouts", ids}});
    }
    if (auto pins = rollouts.pins_to_release(release.id); pins > 0)
        throw CatalogueError(Kind::conflict, "release-pinned",
                             "release " + shown(release.version) + " of " + shown(product.name) + " is pinned by " +
                                 std::to_string(pins) + " device(s); unpin them first",
                             {{"devices", pins}});
}

std::string joined(const std::vector<std::string>& names) {
    std::string out;
    for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
    return out;
}

ArtifactInfo artifact_info(const storage::Artifact& a, std::string_view product, std::string_view version) {
    ArtifactInfo info;
    info.id = a.id;
    info.product = product;
    info.version = version;
    info.chip = a.chip;
    info.layout = a.layout;
    info.slot = a.slot;
    info.filename = a.filename;
    info.size = a.size;
    info.sha256 = a.sha256;
    info.md5 = a.md5;
    info.created_at = a.created_at;
    info.image = json::parse(a.metadata_json, nullptr, /*allow_exceptions=*/false);
    if (info.image.is_discarded()) info.image = nullptr;
    return info;
}

ReleaseInfo release_info(CatalogueRepository& repo, const storage::Release& r, std::string_view product,
                         const std::vector<storage::Channel>& channels) {
    ReleaseInfo info;
    info.product = product;
    info.version = r.version;
    info.notes = r.notes;
    info.created_at = r.created_at;
    info.offered = r.offered;
    info.artifact_count = repo.list_artifacts(r.id).size();
    for (const auto& c : channels)
        if (c.release_id == r.id) info.channels.push_back(c.name);
    return info;
}

ChannelInfo channel_info(CatalogueRepository& repo, const storage::Channel& c, std::string_view product) {
    ChannelInfo info;
    info.product = product;
    info.name = c.name;
    auto release = repo.get_release(c.release_id);
    info.version = release ? release->version : std::string();
    info.allow_rollback = c.allow_rollback;
    info.updated_at = c.updated_at;
    return info;
}

// Newest first: higher version first; equivalent versions by newer row first.
bool newer_first(std::string_view a_version, std::int64_t a_id, std::string_view b_version, std::int64_t b_id) {
    int order = compare_versions(a_version, b_version);
    if (order != 0) return order > 0;
    return a_id > b_id;
}

std::string encode_cursor(const json& position) { return util::base64url_encode(util::as_bytes(position.dump())); }

json decode_cursor(std::string_view cursor) {
    auto bytes = util::base64url_decode(cursor);
    json position;
    if (bytes) position = json::parse(bytes->begin(), bytes->end(), nullptr, /*allow_exceptions=*/false);
    if (!bytes || !position.is_object())
        throw CatalogueError(Kind::invalid, "invalid-cursor",
                             "cursor " + shown(cursor) + " is not one this server handed out");
    return position;
}

void check_limit(std::size_t limit) {
    if (limit < 1 || limit > kMaxPageSize)
        throw CatalogueError(Kind::invalid, "invalid-limit",
                             "limit must be between 1 and " + std::to_string(kMaxPageSize));
}

std::string_view after_last_separator(std::string_view name) {
    auto cut = name.find_last_of("/\\");
    return cut == std::string_view::npos ? name : name.substr(cut + 1);
}

// 400 unless `slot` is one of the layout's slots.
void check_slot(Layout layout, const std::string& slot) {
    if (layout_allows_slot(layout, slot)) return;
    json valid = json::array();
    for (const auto& s : slots_for_layout(layout)) valid.push_back(s);
    std::string what = slot.empty() ? "a slot is required" : "slot " + shown(slot) + " is not valid";
    throw CatalogueError(
        Kind::invalid, "invalid-slot",
        what + " for layout " + std::string(to_string(layout)) + "; valid slots: " + valid_slot_names(layout),
        {{"valid_slots", valid}});
}

std::string default_filename(const ResolvedUpload& target) {
    return is_nonos_layout(target.layout) ? target.slot + ".bin" : "firmware.bin";
}

// The default name when default_filename() is taken in the release: unique per
// (chip, layout, slot), the key of an artifact in its release.
std::string qualified_default_filename(const ResolvedUpload& target) {
    const std::string layout(to_string(target.layout));
    if (is_nonos_layout(target.layout)) return target.slot + "-" + layout + ".bin";
    return "firmware-" + std::string(to_string(target.chip)) + "-" + layout +
           (target.slot.empty() ? "" : "-" + target.slot) + ".bin";
}

std::string artifact_key(std::string_view chip, std::string_view layout, std::string_view slot) {
    return std::string(chip) + "/" + std::string(layout) + (slot.empty() ? "" : "/" + std::string(slot));
}

// A version that was offered to devices and then deleted may come back only with
// the bytes devices may hold: the upload's (chip, layout, slot) must be in the
// tombstone with the same SHA-256.
void check_tombstone(const std::vector<storage::ReleaseTombstone>& tombstone, std::string_view product,
                     std::string_view version, std::string_view chip, std::string_view layout, std::string_view slot,
                     const std::string& sha256) {
    if (tombstone.empty()) return;
    json entries = json::array();
    std::string listed;
    const storage::ReleaseTombstone* same_key = nullptr;
    for (const auto& t : tombstone) {
        entries.push_back({{"chip", t.chip}, {"layout", t.layout}, {"slot", t.slot}, {"sha256", t.sha256}});
        listed += (listed.empty() ? "" : ", ") + artifact_key(t.chip, t.layout, t.slot) + " sha256 " + t.sha256;
        if (t.chip == chip && t.layout == layout && t.slot == slot) same_key = &t;
    }
    if (same_key && same_key->sha256 == sha256) return;
    const std::string key = artifact_key(chip, layout, slot);
    throw CatalogueError(
        Kind::conflict, "release-was-offered",
        "release " + shown(version) + " of " + shown(product) +
            " was offered to devices before it was deleted, so that version can only come back with the bytes "
            "devices may already have (" +
            listed + "); " +
            (same_key ? "this " + key + " upload has sha256 " + sha256 : "it had no " + key + " artifact") +
            ". Upload the new build under a new version",
        {{"version", std::string(version)}, {"tombstone", entries}});
}

}  // namespace

// --- names ------------------------------------------------------------------

bool is_valid_product_name(std::string_view name) noexcept { return is_slug(name); }
bool is_valid_channel_name(std::string_view name) noexcept { return is_slug(name); }

bool is_valid_version_text(std::string_view version) noexcept {
    if (version.empty() || version.size() > kMaxNameLength) return false;
    return std::all_of(version.begin(), version.end(), [](char c) { return c > 0x20 && c < 0x7f && c != '/'; });
}

bool is_valid_filename(std::string_view filename) noexcept {
    if (filename.empty() || filename.size() > kMaxFilenameLength || filename.front() == '.') return false;
    if (filename.find("..") != std::string_view::npos) return false;
    return std::all_of(filename.begin(), filename.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
               c == '-' || c == '+';
    });
}

// --- construction and validation ------------------------------------------

Catalogue::Catalogue(storage::Database& database, storage::BlobStore& blobs, CatalogueOptions options,
                     BlobCache* download_cache)
    : database_(database), blobs_(blobs), options_(options), download_cache_(download_cache) {}

void Catalogue::check_names(std::string_view product, std::string_view version) const {
    check_product_name(product);
    check_version_text(version);
}

ResolvedUpload Catalogue::resolve(const UploadSpec& spec) const {
    check_names(spec.product, spec.version);
    ResolvedUpload out;
    out.product = spec.product;
    out.version = spec.version;

    if (spec.chip.empty())
        throw CatalogueError(Kind::invalid, "invalid-chip", "chip is required; valid chips: " + valid_chip_names(),
                             {{"valid_chips", name_list(all_chips())}});
    auto chip = parse_chip(spec.chip);
    if (!chip)
        throw CatalogueError(Kind::invalid, "invalid-chip",
                             "chip " + shown(spec.chip) + " is not known; valid chips: " + valid_chip_names(),
                             {{"valid_chips", name_list(all_chips())}});
    out.chip = *chip;

    if (spec.layout.empty()) {
        // ESP8266 images state their layout; the others default.
        out.layout_from_image = out.chip == Chip::esp8266;
        out.layout = out.chip == Chip::generic || out.chip == Chip::esp8266 ? Layout::single : Layout::ota;
    } else {
        auto layout = parse_layout(spec.layout);
        if (!layout)
            throw CatalogueError(
                Kind::invalid, "invalid-layout",
                "layout " + shown(spec.layout) + " is not known; valid layouts: " + valid_layout_names(),
                {{"valid_layouts", layout_list()}});
        out.layout = *layout;
    }
    if (is_nonos_layout(out.layout) && out.chip != Chip::esp8266)
        throw CatalogueError(Kind::invalid, "invalid-layout",
                             "layout " + std::string(to_string(out.layout)) +
                                 " is the ESP8266 NONOS FOTA layout; for " + std::string(to_string(out.chip)) +
                                 " use ota or single",
                             {{"valid_layouts", json::array({"ota", "single"})}});

    // With the layout still to come from the image, a slot can only be checked
    // against what some ESP8266 layout accepts.
    if (!out.layout_from_image)
        check_slot(out.layout, spec.slot);
    else if (!spec.slot.empty() && !layout_allows_slot(Layout::nonos_512_512, spec.slot) &&
             !layout_allows_slot(Layout::ota, spec.slot))
        check_slot(Layout::ota, spec.slot);
    out.slot = spec.slot;

    if (!spec.filename.empty()) {
        if (!is_valid_filename(spec.filename))
            throw CatalogueError(Kind::invalid, "invalid-filename",
                                 "filename " + shown(spec.filename) +
                                     " is not valid: use 1-128 characters of A-Z a-z 0-9 . _ + -, not starting "
                                     "with '.' and without '..'");
        out.filename = spec.filename;
    } else if (auto suggested = after_last_separator(spec.suggested_filename); is_valid_filename(suggested)) {
        out.filename = suggested;
    } else {
        out.filename_defaulted = true;
        out.filename = default_filename(out);
    }

    if (spec.expected_sha256 && (spec.expected_sha256->size() != 64 || !util::from_hex(*spec.expected_sha256)))
        throw CatalogueError(Kind::invalid, "invalid-digest",
                             "expected SHA-256 " + shown(*spec.expected_sha256) + " is not 64 hex digits");
    return out;
}

// --- upload -------------------------------------------------------------------

PendingUpload Catalogue::receive(ByteSource& body) {
    storage::BlobWriter writer = blobs_.open_writer(options_.max_artifact_bytes);
    std::vector<char> buffer(kReceiveChunk);
    for (bool ended = false; !ended;) {
        // Gather a full buffer first: a network body arrives in pieces of any
        // size, and each write costs a system call and two digest updates.
        // Never more than one byte past the limit, so an oversized body stops there.
        const std::uint64_t room = options_.max_artifact_bytes - writer.bytes_written();
        const std::size_t want = room < buffer.size() ? static_cast<std::size_t>(room) + 1 : buffer.size();
        std::size_t n = 0;
        while (n < want) {
            std::size_t got = body.read(std::span<char>(buffer.data() + n, want - n));
            if (got == 0) {
                ended = true;
                break;
            }
            n += got;
        }
        if (n == 0) break;
        try {
            writer.write(std::string_view(buffer.data(), n));
        } catch (const storage::BlobTooLarge&) {
            throw CatalogueError(
                Kind::too_large, "payload-too-large",
                "the artifact exceeds max_artifact_bytes (" + std::to_string(options_.max_artifact_bytes) + " bytes)",
                {{"max_artifact_bytes", options_.max_artifact_bytes}});
        }
    }
    if (writer.bytes_written() == 0)
        throw CatalogueError(Kind::invalid, "empty-artifact", "the uploaded artifact is empty");
    return PendingUpload(std::move(writer));
}

json Catalogue::inspect(const storage::BlobInfo& blob, ResolvedUpload& target, const UploadSpec& spec) {
    if (target.chip == Chip::generic) return json{{"format", "opaque"}};
    FileImageReader reader(blobs_.path_for(blob.sha256));
    InspectOptions options;
    options.allow_trailing_data = spec.allow_trailing_data;
    InspectionResult result = inspect_esp_image(reader, target.chip, options);
    if (!result) {
        const ImageError& e = result.error();
        throw CatalogueError(Kind::unprocessable, "invalid-image", e.detail, {{"code", e.code}});
    }
    const ImageInfo& info = result.info();
    if (target.layout_from_image) {
        const auto layout = implied_layout(info);
        if (!layout) {
            std::string why = "file is " + describe_image(info);
            if (info.format == ImageFormat::esp8266_v2)
                why = "image flash size map " + std::to_string(info.flash_size_map.value_or(0xFF)) +
                      " has no FOTA layout";
            throw CatalogueError(Kind::unprocessable, "invalid-image",
                                 "layout was not given and the image does not state one: " + why,
                                 {{"code", "layout-mismatch"}});
        }
        target.layout = *layout;
        check_slot(target.layout, target.slot);
        if (target.filename_defaulted) target.filename = default_filename(target);
    }
    if (auto e = check_declared(info, target.chip, target.layout, target.slot))
        throw CatalogueError(Kind::unprocessable, "invalid-image", e->detail, {{"code", e->code}});
    if (info.app_desc && !info.app_desc->version.empty() && !spec.allow_version_mismatch &&
        !versions_equivalent(info.app_desc->version, target.version))
        throw CatalogueError(Kind::unprocessable, "invalid-image",
                             "the image's app version is " + shown(info.app_desc->version) + " but it is uploaded as " +
                                 shown(target.version) + " (add version_mismatch=allow to accept it)",
                             {{"code", "version-mismatch"}, {"image_version", info.app_desc->version}});
    return info.to_json();
}

UploadResult Catalogue::store(PendingUpload upload, const UploadSpec& spec, std::string_view actor) {
    ResolvedUpload target = resolve(spec);
    const std::string chip(to_string(target.chip));

    std::shared_lock lifecycle(blob_lifecycle_);
    storage::BlobInfo blob;
    try {
        if (spec.expected_sha256)
            blob = upload.writer_.commit(util::to_lower(*spec.expected_sha256));
        else
            blob = upload.writer_.commit();
    } catch (const storage::StorageError& e) {
        if (e.kind() != storage::StorageErrorKind::mismatch) throw;
        throw CatalogueError(Kind::invalid, "digest-mismatch",
                             "the uploaded bytes do not match the digest sent with them: " + std::string(e.what()));
    }

    // From here the blob file is durable at its address. Any failure below must
    // not leave it behind unless a row (an earlier upload) already names it.
    UploadResult result;
    std::int64_t product_id = 0;
    std::vector<std::string> freed_blobs;
    try {
        json metadata = inspect(blob, target, spec);
        const std::string layout(to_string(target.layout));

        result = database_.write([&](storage::Connection& c) {
            CatalogueRepository repo(c);
            UploadResult out;
            bool created_product = false;
            bool created_release = false;
            auto product = repo.find_product(target.product);
            if (!product) {
                product = repo.create_product(target.product);
                created_product = true;
            }
            auto release = repo.find_release(product->id, target.version);
            if (!release) {
                release = repo.create_release(product->id, target.version);
                created_release = true;
            }

            product_id = product->id;
            check_tombstone(repo.list_tombstones(product->id, release->version), product->name, release->version, chip,
                            layout, target.slot, blob.sha256);
            auto existing = repo.find_artifact(release->id, chip, layout, target.slot);
            if (existing && existing->sha256 == blob.sha256) {
                out.outcome = UploadOutcome::unchanged;
                out.artifact = artifact_info(*existing, product->name, release->version);
                return out;
            }
            const std::string where = "release " + shown(release->version) + " of " + shown(product->name);
            if (existing && !spec.replace)
                throw CatalogueError(Kind::conflict, "artifact-exists",
                                     where + " already has an artifact for " + artifact_key(chip, layout, target.slot) +
                                         " (id " + std::to_string(existing->id) + ", sha256 " + existing->sha256 +
                                         ") with different bytes; releases are immutable (an admin may replace "
                                         "it with replace=true until the release is offered to a device)",
                                     {{"artifact_id", existing->id}, {"sha256", existing->sha256}});
            if (release->offered)
                throw CatalogueError(Kind::conflict, "release-offered",
                                     where + " was offered to devices; its artifacts can no longer change");

            // /firmware/{product}/{version}/{filename} names one artifact.
            std::string filename = target.filename;
            auto holder_of = [&](const std::string& name) -> std::optional<storage::Artifact> {
                for (auto& other : repo.list_artifacts(release->id))
                    if (other.filename == name && !(existing && other.id == existing->id)) return other;
                return std::nullopt;
            };
            auto holder = holder_of(filename);
            if (holder && target.filename_defaulted) {
                filename = qualified_default_filename(target);
                holder = holder_of(filename);
            }
            if (holder)
                throw CatalogueError(Kind::conflict, "filename-exists",
                                     where + " already has an artifact named " + shown(filename) + " (id " +
                                         std::to_string(holder->id) + ", " +
                                         artifact_key(holder->chip, holder->layout, holder->slot) +
                                         "); /firmware/{product}/{version}/{filename} must name one artifact, so "
                                         "give this one another filename",
                                     {{"artifact_id", holder->id},
                                      {"filename", filename},
                                      {"chip", holder->chip},
                                      {"layout", holder->layout},
                                      {"slot", holder->slot}});

            const std::string project = metadata.contains("app_desc") && metadata["app_desc"].is_object()
                                            ? metadata["app_desc"].value("project_name", std::string())
                                            : std::string();
            if (!project.empty()) {
                if (product->project_name && *product->project_name != project && !product->allow_project_mismatch)
                    throw CatalogueError(Kind::unprocessable, "invalid-image",
                                         "the image's project name is " + shown(project) + " but product " +
                                             shown(product->name) + " holds " + shown(*product->project_name) +
                                             " images (an admin can set allow_project_mismatch on the product)",
                                         {{"code", "project-mismatch"},
                                          {"image_project", project},
                                          {"product_project", *product->project_name}});
                if (!product->project_name) repo.claim_project_name(product->id, project);
            }

            if (existing) {
                repo.delete_artifact(existing->id);
                if (repo.blob_reference_count(existing->sha256) == 0) freed_blobs.push_back(existing->sha256);
                out.replaced_artifact_id = existing->id;
            }
            repo.insert_blob(blob.sha256, blob.size);
            storage::NewArtifact row;
            row.release_id = release->id;
            row.chip = chip;
            row.layout = layout;
            row.slot = target.slot;
            row.filename = filename;
            row.sha256 = blob.sha256;
            row.md5 = blob.md5;
            row.size = blob.size;
            row.metadata_json = metadata.dump(-1, ' ', false, json::error_handler_t::replace);
            storage::Artifact stored = repo.insert_artifact(row);

            json detail = {{"chip", chip},
                           {"layout", layout},
                           {"slot", target.slot},
                           {"filename", filename},
                           {"sha256", blob.sha256},
                           {"size", blob.size},
                           {"created_product", created_product},
                           {"created_release", created_release}};
            if (existing) detail["replaced_artifact_id"] = existing->id;
            storage::AuditRepository(c).append(actor, existing ? "artifact.replace" : "artifact.upload",
                                               artifact_subject(product->name, release->version, stored.id),
                                               detail.dump());
            out.outcome = existing ? UploadOutcome::replaced : UploadOutcome::created;
            out.artifact = artifact_info(stored, product->name, release->version);
            return out;
        });
    } catch (const storage::StorageError& e) {
        lifecycle.unlock();
        drop_if_unreferenced(blob.sha256);
        // Rules the schema enforces itself (a concurrent change got there first).
        if (e.kind() == storage::StorageErrorKind::rejected)
            throw CatalogueError(Kind::conflict, "release-offered",
                                 "release " + shown(target.version) + " can no longer change: " + e.what());
        if (e.kind() == storage::StorageErrorKind::conflict)
            throw CatalogueError(Kind::conflict, "artifact-exists",
                                 "a concurrent change conflicts: " + std::string(e.what()));
        throw;
    } catch (...) {
        lifecycle.unlock();
        drop_if_unreferenced(blob.sha256);
        throw;
    }
    lifecycle.unlock();
    if (result.outcome != UploadOutcome::unchanged) changed(product_id, freed_blobs);
    return result;
}

void Catalogue::drop_if_unreferenced(const std::string& sha256) noexcept {
    try {
        std::unique_lock lifecycle(blob_lifecycle_);
        bool has_row = database_.read(
            [&](storage::Connection& c) { return CatalogueRepository(c).find_blob(sha256).has_value(); });
        if (!has_row) blobs_.remove(sha256);
    } catch (const std::exception& e) {
        // Left for start-up collection; no row names it, so it is never offered.
        util::log_event(*util::logger("catalogue"), spdlog::level::warn, "blob_cleanup_failed",
                        {{"sha256", sha256}, {"error", e.what()}});
    }
}

void Catalogue::changed(std::int64_t product_id, const std::vector<std::string>& freed_blobs) noexcept {
    if (!freed_blobs.empty()) collect_unreferenced_blobs();
    if (download_cache_ == nullptr) return;
    try {
        for (const auto& sha256 : freed_blobs) download_cache_->invalidate(sha256);
        download_cache_->invalidate_product(product_id);
    } catch (const std::exception& e) {
        util::log_event(*util::logger("catalogue"), spdlog::level::warn, "cache_invalidation_failed",
                        {{"error", e.what()}});
    }
}

void Catalogue::collect_unreferenced_blobs() noexcept {
    try {
        std::unique_lock lifecycle(blob_lifecycle_);
        storage::collect_orphan_blobs(database_, blobs_, std::chrono::seconds(0));
    } catch (const std::exception& e) {
        util::log_event(*util::logger("catalogue"), spdlog::level::warn, "blob_collection_failed",
                        {{"error", e.what()}});
    }
}

// --- reading ------------------------------------------------------------------

std::vector<ProductInfo> Catalogue::list_products() {
    std::vector<ProductInfo> out;
    for (const auto& p : database_.read([](storage::Connection& c) { return CatalogueRepository(c).list_products(); }))
        out.push_back(get_product(p.name));
    return out;
}

ProductInfo Catalogue::get_product(std::string_view name) {
    check_product_name(name);
    return database_.read([&](storage::Connection& c) {
        CatalogueRepository repo(c);
        storage::Product product = require_product(repo, name);
        ProductInfo info;
        info.name = product.name;
        info.project_name = product.project_name;
        info.allow_project_mismatch = product.allow_project_mismatch;
        info.created_at = product.created_at;
        auto releases = repo.all_releases(product.id);
        info.release_count = releases.size();
        for (const auto& r : releases)
            if (!info.latest_version || newer_first(r.version, r.id, *info.latest_version, 0))
                info.latest_version = r.version;
        for (const auto& channel : repo.list_channels(product.id))
            info.channels.push_back(channel_info(repo, channel, product.name));
        return info;
    });
}

ReleasePage Catalogue::list_releases(std::string_view name, std::size_t limit, std::optional<std::string_view> cursor) {
    check_product_name(name);
    check_limit(limit);
    std::optional<std::pair<std::string, std::int64_t>> after;
    if (cursor) {
        json position = decode_cursor(*cursor);
        if (!position.contains("v") || !position["v"].is_string() || !position.contains("id") ||
            !position["id"].is_number_integer())
            throw CatalogueError(Kind::invalid, "invalid-cursor",
                                 "cursor " + shown(*cursor) + " is not one this server handed out");
        after.emplace(position["v"].get<std::string>(), position["id"].get<std::int64_t>());
    }
    return database_.read([&](storage::Connection& c) {
        CatalogueRepository repo(c);
        storage::Product product = require_product(repo, name);
        auto releases = repo.all_releases(product.id);
        std::sort(releases.begin(), releases.end(), [](const storage::Release& a, const storage::Release& b) {
            return newer_first(a.version, a.id, b.version, b.id);
        });
        auto first = releases.begin();
        if (after)
            first = std::upper_bound(releases.begin(), releases.end(), *after,
                                     [](const std::pair<std::string, std::int64_t>& key, const storage::Release& r) {
                                         return newer_first(key.first, key.second, r.version, r.id);
                                     });
        const auto channels = repo.list_channels(product.id);
        ReleasePage page;
        for (auto it = first; it != releases.end() && page.releases.size() < limit; ++it)
            page.releases.push_back(release_info(repo, *it, product.name, channels));
        const auto shown = static_cast<std::size_t>(first - releases.begin()) + page.releases.size();
        if (shown < releases.size() && !page.releases.empty()) {
            const auto& last = releases[shown - 1];
            page.next_cursor = encode_cursor({{"v", last.version}, {"id", last.id}});
        }
        return page;
    });
}

ReleaseDetail Catalogue::get_release(std::string_view name, std::string_view version) {
    check_names(name, version);
    return database_.read([&](storage::Connection& c) {
        CatalogueRepository repo(c);
        storage::Product product = require_product(repo, name);
        storage::Release release = require_release(repo, product, version);
        ReleaseDetail detail;
        detail.release = release_info(repo, release, product.name, repo.list_channels(product.id));
        for (const auto& a : repo.list_artifacts(release.id))
            detail.artifacts.push_back(artifact_info(a, product.name, release.version));
        return detail;
    });
}

ArtifactInfo Catalogue::get_artifact(std::string_view name, std::string_view version, std::int64_t artifact_id) {
    check_names(name, version);
    return database_.read([&](storage::Connection& c) {
        CatalogueRepository repo(c);
        storage::Product product = require_product(repo, name);
        storage::Release release = require_release(repo, product, version);
        auto artifact = repo.get_artifact(artifact_id);
        if (!artifact || artifact->release_id != release.id)
            throw CatalogueError(
                Kind::not_found, "not-found",
                "release " + shown(version) + " of " + shown(name) + " has no artifact " + std::to_string(artifact_id));
        return artifact_info(*artifact, product.name, release.version);
    });
}

std::vector<ChannelInfo> Catalogue::list_channels(std::string_view name) {
    check_product_name(name);
    return database_.read([&](storage::Connection& c) {
        CatalogueRepository repo(c);
        storage::Product product = require_product(repo, name);
        std::vector<ChannelInfo> out;
        for (const auto& channel : repo.list_channels(product.id))
            out.push_back(channel_info(repo, channel, product.name));
        return out;
    });
}

ChannelInfo Catalogue::get_channel(std::string_view name, std::string_view channel) {
    check_product_name(name);
    check_channel_name(channel);
    return database_.read([&](storage::Connection& c) {
        CatalogueRepository repo(c);
        storage::Product product = require_product(repo, name);
        auto row = repo.get_channel(product.id, channel);
        if (!row)
            throw CatalogueError(Kind::not_found, "not-found",
                                 "product " + shown(name) + " has no channel " + shown(channel));
        return channel_info(repo, *row, product.name);
    });
}

AuditPage Catalogue::list_audit(std::size_t limit, std::optional<std::string_view> cursor) {
    check_limit(limit);
    std::optional<std::int64_t> before;
    if (cursor) {
        json position = decode_cursor(*cursor);
        if (!position.contains("before") || !position["before"].is_number_integer())
            throw CatalogueError(Kind::invalid, "invalid-cursor",
                                 "cursor " + shown(*cursor) + " is not one this server handed out");
        before = position["before"].get<std::int64_t>();
    }
    return database_.read([&](storage::Connection& c) {
        // One more than asked tells whether another page follows.
        auto entries = storage::AuditRepository(c).list(limit + 1, before);
        AuditPage page;
        const bool more = entries.size() > limit;
        if (more) entries.resize(limit);
        page.entries = std::move(entries);
        if (more) page.next_cursor = encode_cursor({{"before", page.entries.back().id}});
        return page;
    });
}

// --- changes ------------------------------------------------------------------

ProductInfo Catalogue::set_allow_project_mismatch(std::string_view name, bool allow, std::string_view actor) {
    check_product_name(name);
    database_.write([&](storage::Connection& c) {
        CatalogueRepository repo(c);
        storage::Product product = require_product(repo, name);
        if (product.allow_project_mismatch == allow) return;
        repo.set_allow_project_mismatch(product.id, allow);
        storage::AuditRepository(c).append(actor, "product.update", "product/" + product.name,
                                           json{{"allow_project_mismatch", allow}}.dump());
    });
    return get_product(name);
}

void Catalogue::delete_artifact(std::string_view name, std::string_view version, std::int64_t artifact_id,
                                std::string_view actor) {
    check_names(name, version);
    std::int64_t product_id = 0;
    std::vector<std::string> freed_blobs;
    database_.write([&](storage::Connection& c) {
        CatalogueRepository repo(c);
        storage::Product product = require_product(repo, name);
        storage::Release release = require_release(repo, product, version);
        auto artifact = repo.get_artifact(artifact_id);
        if (!artifact || artifact->release_id != release.id)
            throw CatalogueError(
                Kind::not_found, "not-found",
                "release " + shown(version) + " of " + shown(name) + " has no artifact " + std::to_string(artifact_id));
        auto channels = channels_of_release(repo, release);
        if (!channels.empty())
            throw CatalogueError(Kind::conflict, "release-on-channel",
                                 "release " + shown(version) + " of " + shown(name) + " is on channel(s) " +
                                     joined(channels) + "; move them to another release first",
                                 {{"channels", channels}});
        if (release.offered)
            throw CatalogueError(Kind::conflict, "release-offered",
                                 "release " + shown(version) + " of " + shown(name) +
                                     " was offered to devices; its artifacts can no longer change (delete the "
                                     "whole release instead)");
        repo.delete_artifact(artifact->id);
        product_id = product.id;
        if (repo.blob_reference_count(artifact->sha256) == 0) freed_blobs.push_back(artifact->sha256);
        storage::AuditRepository(c).append(actor, "artifact.delete",
                                           artifact_subject(product.name, release.version, artifact->id),
                                           json{{"chip", artifact->chip},
                                                {"layout", artifact->layout},
                                                {"slot", artifact->slot},
                                                {"sha256", artifact->sha256},
                                                {"size", artifact->size}}
                                               .dump());
    });
    changed(product_id, freed_blobs);
}

void Catalogue::delete_release(std::string_view name, std::string_view version, std::string_view actor) {
    check_names(name, version);
    std::int64_t product_id = 0;
    std::vector<std::string> freed_blobs;
    database_.write([&](storage::Connection& c) {
        CatalogueRepository repo(c);
        storage::Product product = require_product(repo, name);
        storage::Release release = require_release(repo, product, version);
        auto channels = channels_of_release(repo, release);
        if (!channels.empty())
            throw CatalogueError(Kind::conflict, "release-on-channel",
                                 "release " + shown(version) + " of " + shown(name) + " is on channel(s) " +
                                     joined(channels) + "; move them to another release first",
                                 {{"channels", channels}});
        refuse_if_release_in_use(c, product, release);
        json artifact_ids = json::array();
        std::set<std::string> blobs_used;
        for (const auto& a : repo.list_artifacts(release.id)) {
            artifact_ids.push_back(a.id);
            blobs_used.insert(a.sha256);
        }
        repo.delete_release(release.id);
        product_id = product.id;
        for (const auto& sha256 : blobs_used)
            if (repo.blob_reference_count(sha256) == 0) freed_blobs.push_back(sha256);
        storage::AuditRepository(c).append(actor, "release.delete", release_subject(product.name, release.version),
                                           json{{"artifact_ids", artifact_ids}, {"offered", release.offered}}.dump());
    });
    changed(product_id, freed_blobs);
}

ChannelInfo Catalogue::set_channel(std::string_view name, std::string_view channel, std::string_view version,
                                   bool allow_rollback, std::string_view actor, bool force) {
    check_names(name, version);
    check_channel_name(channel);
    std::int64_t product_id = 0;
    ChannelInfo result = database_.write([&](storage::Connection& c) {
        CatalogueRepository repo(c);
        storage::Product product = require_product(repo, name);
        storage::Release release = require_release(repo, product, version);
        if (repo.list_artifacts(release.id).empty())
            throw CatalogueError(Kind::invalid, "release-empty",
                                 "release " + shown(version) + " of " + shown(name) +
                                     " has no artifacts; upload one before putting it on a channel");
        auto previous = repo.get_channel(product.id, channel);
        if (previous && previous->release_id == release.id && previous->allow_rollback == allow_rollback)
            return channel_info(repo, *previous, product.name);
        refuse_if_rollout_on_channel(c, product, channel);
        if (!force) {  // 512+512 rule (docs/rollouts.md): never one slot's build without the other's
            auto artifacts = repo.list_artifacts(release.id);
            auto missing = missing_slot_builds(artifacts, nullptr, nullptr);
            if (!missing.empty())
                throw CatalogueError(Kind::unprocessable, "missing-slot-build",
                                     "release " + shown(version) + " of " + shown(name) + " lacks " +
                                         describe(missing) + ": " + missing.front().why +
                                         "; upload it, or set force to point the channel anyway",
                                     {{"missing_artifacts", to_json(missing)}});
        }
        storage::Channel stored = repo.set_channel(product.id, channel, release.id, allow_rollback);
        product_id = product.id;
        json detail = {{"version", release.version}, {"allow_rollback", allow_rollback}};
        if (previous) {
            auto old = repo.get_release(previous->release_id);
            detail["previous_version"] = old ? json(old->version) : json(nullptr);
        } else {
            detail["previous_version"] = nullptr;
        }
        storage::AuditRepository(c).append(actor, "channel.set", channel_subject(product.name, channel), detail.dump());
        return channel_info(repo, stored, product.name);
    });
    if (product_id != 0) changed(product_id, {});
    return result;
}

void Catalogue::delete_channel(std::string_view name, std::string_view channel, std::string_view actor) {
    check_product_name(name);
    check_channel_name(channel);
    std::int64_t product_id = 0;
    database_.write([&](storage::Connection& c) {
        CatalogueRepository repo(c);
        storage::Product product = require_product(repo, name);
        auto row = repo.get_channel(product.id, channel);
        if (!row)
            throw CatalogueError(Kind::not_found, "not-found",
                                 "product " + shown(name) + " has no channel " + shown(channel));
        refuse_if_rollout_on_channel(c, product, channel);
        auto release = repo.get_release(row->release_id);
        repo.delete_channel(product.id, channel);
        product_id = product.id;
        storage::AuditRepository(c).append(actor, "channel.delete", channel_subject(product.name, channel),
                                           json{{"version", release ? json(release->version) : json(nullptr)}}.dump());
    });
    changed(product_id, {});
}

// --- JSON -----------------------------------------------------------------------

json to_json(const ArtifactInfo& a) {
    return {{"id", a.id},
            {"product", a.product},
            {"version", a.version},
            {"chip", a.chip},
            {"layout", a.layout},
            {"slot", a.slot},
            {"filename", a.filename},
            {"size", a.size},
            {"sha256", a.sha256},
            {"md5", a.md5},
            {"created_at", util::rfc3339(a.created_at)},
            {"image", a.image}};
}

json to_json(const ChannelInfo& c) {
    return {{"product", c.product},
            {"channel", c.name},
            {"version", c.version},
            {"allow_rollback", c.allow_rollback},
            {"updated_at", util::rfc3339(c.updated_at)}};
}

json to_json(const ReleaseInfo& r) {
    return {{"product", r.product},  {"version", r.version},
            {"notes", r.notes},      {"created_at", util::rfc3339(r.created_at)},
            {"offered", r.offered},  {"artifact_count", r.artifact_count},
            {"channels", r.channels}};
}

json to_json(const ReleaseDetail& r) {
    json out = to_json(r.release);
    json artifacts = json::array();
    for (const auto& a : r.artifacts) artifacts.push_back(to_json(a));
    out["artifacts"] = std::move(artifacts);
    return out;
}

json to_json(const ProductInfo& p) {
    json channels = json::array();
    for (const auto& c : p.channels) channels.push_back(to_json(c));
    return {{"name", p.name},
            {"project_name", p.project_name ? json(*p.project_name) : json(nullptr)},
            {"allow_project_mismatch", p.allow_project_mismatch},
            {"created_at", util::rfc3339(p.created_at)},
            {"release_count", p.release_count},
            {"latest_version", p.latest_version ? json(*p.latest_version) : json(nullptr)},
            {"channels", channels}};
}

json to_json(const storage::AuditEntry& e) {
    json detail = json::parse(e.detail_json, nullptr, /*allow_exceptions=*/false);
    if (detail.is_discarded()) detail = e.detail_json;
    return {{"id", e.id},         {"at", util::rfc3339(e.at)}, {"actor", e.actor},
            {"action", e.action}, {"subject", e.subject},      {"detail", detail}};
}

}  // namespace otad::domain
