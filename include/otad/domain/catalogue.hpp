#pragma once
// The firmware catalogue: every business rule of uploading, listing, deleting
// and promoting firmware, over the storage layer's repositories and blob store.
// No HTTP types here: the operator routes (api/operator_routes.cpp) parse the
// request, call one method and render its result; a rule violation comes back
// as a CatalogueError whose kind maps to one status code.
//
// Upload in two steps, so a multipart body's fields may come after its file:
//   PendingUpload p = catalogue.receive(body);   // bytes -> temp file, hashed
//   UploadResult r  = catalogue.store(std::move(p), spec, actor);
// store() validates the declaration, makes the blob durable (verifying the
// expected SHA-256), inspects the stored file (ESP image rules), and only then
// inserts the product/release/blob/artifact rows and the audit entry in ONE
// transaction. A crash at any point leaves the whole artifact or no row at all;
// a blob file that no row references is deleted again before store() returns
// an error (or, after a crash, by start-up collection), so it is never offered.
//
// Names (checked on every call, 400 otherwise):
//   product  [a-z0-9][a-z0-9._-]{0,63}
//   channel  [a-z0-9][a-z0-9._-]{0,63}
//   version  1..64 printable ASCII characters (0x21..0x7e), no '/'
//   filename 1..128 of [A-Za-z0-9._+-], not starting with '.', no "..";
//            unique within a release (409 filename-exists otherwise); default
//            "<slot>.bin" for user1/user2 (ESP8266 NONOS), else "firmware.bin",
//            and when the release already has that name "<slot>-<layout>.bin" /
//            "firmware-<chip>-<layout>[-<slot>].bin"
//
// Layout: for esp8266 it may be omitted; the image states it (a V2 bin's flash
// map, an Arduino sketch bin -> single, an RTOS SDK v3 app -> ota). A declared
// layout that contradicts the image is a 422 layout-mismatch.
//
// A release that was offered to devices and then deleted leaves a tombstone of
// its artifacts' digests (migrations/0002_release_tombstones.sql): its version
// can be uploaded again only with exactly those bytes (409 release-was-offered).
//
// Thread-safe: one Catalogue serves every worker thread.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <shared_mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "otad/domain/firmware_types.hpp"
#include "otad/storage/audit_repository.hpp"
#include "otad/storage/blob_store.hpp"

namespace otad::storage {
class Database;
}  // namespace otad::storage

namespace otad::domain {

// Why the catalogue refused. The api maps kind to the status in brackets and
// uses `code` as the problem type slug; `extra` adds members to the problem
// document (e.g. the list of valid chips, the image error code).
enum class CatalogueErrorKind {
    invalid,        // [400] bad name, unknown chip/layout/slot, digest mismatch, bad cursor
    not_found,      // [404] no such product, release, artifact or channel
    conflict,       // [409] different bytes for an existing artifact, release on a channel, offered release
    unprocessable,  // [422] the image is broken or disagrees with what was declared
    too_large,      // [413] the artifact exceeds max_artifact_bytes
};

class CatalogueError : public std::runtime_error {
public:
    CatalogueError(CatalogueErrorKind kind, std::string code, const std::string& detail,
                   nlohmann::json extra = nlohmann::json::object())
        : std::runtime_error(detail), kind_(kind), code_(std::move(code)), extra_(std::move(extra)) {}
    CatalogueErrorKind kind() const noexcept { return kind_; }
    const std::string& code() const noexcept { return code_; }
    const nlohmann::json& extra() const noexcept { return extra_; }

private:
    CatalogueErrorKind kind_;
    std::string code_;
    nlohmann::json extra_;
};

// Where upload bytes come from (the raw request body, or a multipart file part).
// read() returns 0 at the end; whatever it throws passes through unchanged.
class ByteSource {
public:
    virtual ~ByteSource() = default;
    virtual std::size_t read(std::span<char> out) = 0;
};

// What the uploader declared, as text ("" = not given).
struct UploadSpec {
    std::string product;
    std::string version;
    std::string chip;      // required; see firmware_types.hpp (case and '-'/'_' ignored)
    std::string layout;    // default: ota for ESP32-family chips, single for generic, the image's for esp8266
    std::string slot;      // required for the NONOS layouts (user1/user2); else "" or ota_N
    std::string filename;  // default: see above
    // Used when `filename` is empty and this one is a valid name (a multipart part's filename).
    std::string suggested_filename;
    // Replace an artifact with different bytes. The caller has checked that the
    // operator is an admin; the catalogue still refuses once the release was offered.
    bool replace = false;
    bool allow_version_mismatch = false;         // URL version may differ from the image's
    bool allow_trailing_data = false;            // keep bytes after an ESP8266 image's end
    std::optional<std::string> expected_sha256;  // 64 hex digits; a mismatch stores nothing
};

// An UploadSpec after validation and defaults: canonical names.
struct ResolvedUpload {
    std::string product;
    std::string version;
    Chip chip = Chip::generic;
    Layout layout = Layout::single;
    std::string slot;
    std::string filename;
    bool layout_from_image = false;   // esp8266 without a declared layout: taken from the image
    bool filename_defaulted = false;  // neither given nor suggested: may be qualified if taken
};

// Bytes received into a temp file but not stored yet. Dropping it deletes the temp file.
class PendingUpload {
public:
    PendingUpload(PendingUpload&&) noexcept = default;
    PendingUpload& operator=(PendingUpload&&) = delete;
    std::uint64_t size() const noexcept { return writer_.bytes_written(); }

private:
    friend class Catalogue;
    explicit PendingUpload(storage::BlobWriter writer) : writer_(std::move(writer)) {}
    storage::BlobWriter writer_;
};

struct ArtifactInfo {
    std::int64_t id = 0;
    std::string product;
    std::string version;
    std::string chip;
    std::string layout;
    std::string slot;
    std::string filename;
    std::uint64_t size = 0;
    std::string sha256;
    std::string md5;
    std::int64_t created_at = 0;
    nlohmann::json image;  // inspected metadata (ImageInfo::to_json), {"format":"opaque"} for generic
};

struct ChannelInfo {
    std::string product;
    std::string name;
    std::string version;
    bool allow_rollback = false;
    std::int64_t updated_at = 0;
};

struct ReleaseInfo {
    std::string product;
    std::string version;
    std::string notes;
    std::int64_t created_at = 0;
    bool offered = false;  // a device was offered it: artifacts frozen
    std::size_t artifact_count = 0;
    std::vector<std::string> channels;  // channels pointing at it, by name
};

struct ReleaseDetail {
    ReleaseInfo release;
    std::vector<ArtifactInfo> artifacts;  // by chip, layout, slot
};

struct ProductInfo {
    std::string name;
    std::optional<std::string> project_name;  // ESP project of the first image with one
    bool allow_project_mismatch = false;
    std::int64_t created_at = 0;
    std::size_t release_count = 0;
    std::optional<std::string> latest_version;  // highest by version order
    std::vector<ChannelInfo> channels;
};

struct ReleasePage {
    std::vector<ReleaseInfo> releases;       // newest first by version order
    std::optional<std::string> next_cursor;  // opaque; absent on the last page
};

struct AuditPage {
    std::vector<storage::AuditEntry> entries;  // newest first
    std::optional<std::string> next_cursor;
};

enum class UploadOutcome {
    created,    // a new artifact (201)
    unchanged,  // the same bytes were already there (200, the existing artifact)
    replaced,   // an admin replaced different bytes (201, a new artifact id)
};

struct UploadResult {
    UploadOutcome outcome = UploadOutcome::created;
    ArtifactInfo artifact;
    std::optional<std::int64_t> replaced_artifact_id;
};

struct CatalogueOptions {
    std::uint64_t max_artifact_bytes = 64ull * 1024 * 1024;
};

class BlobCache;

class Catalogue {
public:
    // The database must be migrated; all outlive the catalogue. With a download
    // cache, every committed change invalidates what it cached about the product
    // and about blobs that lost their last artifact.
    Catalogue(storage::Database& database, storage::BlobStore& blobs, CatalogueOptions options,
              BlobCache* download_cache = nullptr);

    const CatalogueOptions& options() const noexcept { return options_; }

    // --- upload
    // Checks names and declared values without touching storage (400s), so a
    // handler can refuse before reading a large body.
    void check_names(std::string_view product, std::string_view version) const;
    ResolvedUpload resolve(const UploadSpec& spec) const;

    // Streams `body` into a temp file (SHA-256/MD5 computed on the way). Throws
    // too_large past max_artifact_bytes and invalid for an empty body; the temp
    // file is gone when it throws.
    PendingUpload receive(ByteSource& body);

    // Stores the received bytes as the artifact `spec` declares (see the top of
    // this header for the order of steps). `actor` goes into the audit entry.
    // Errors: invalid (names, digest-mismatch), unprocessable (image), conflict
    // (different bytes without replace, offered release, a file name another
    // artifact of the release has, bytes other than an offered-then-deleted
    // version had), never a half-stored artifact.
    UploadResult store(PendingUpload upload, const UploadSpec& spec, std::string_view actor);

    // --- reading (not_found for unknown names)
    std::vector<ProductInfo> list_products();
    ProductInfo get_product(std::string_view product);
    // limit 1..500 (invalid otherwise); cursor from a previous page.
    ReleasePage list_releases(std::string_view product, std::size_t limit, std::optional<std::string_view> cursor);
    ReleaseDetail get_release(std::string_view product, std::string_view version);
    ArtifactInfo get_artifact(std::string_view product, std::string_view version, std::int64_t artifact_id);
    std::vector<ChannelInfo> list_channels(std::string_view product);
    ChannelInfo get_channel(std::string_view product, std::string_view channel);
    // limit 1..500; newest first.
    AuditPage list_audit(std::size_t limit, std::optional<std::string_view> cursor);

    // --- changes (each with its audit entry in the same transaction)
    ProductInfo set_allow_project_mismatch(std::string_view product, bool allow, std::string_view actor);
    // conflict while a channel points at the release or once it was offered.
    void delete_artifact(std::string_view product, std::string_view version, std::int64_t artifact_id,
                         std::string_view actor);
    // conflict while a channel points at the release, an active rollout starts from
    // or moves to it, or a device is pinned to it (docs/rollouts.md).
    void delete_release(std::string_view product, std::string_view version, std::string_view actor);
    // not_found for an unknown product or release; invalid if the release has no artifacts;
    // conflict while a rollout is active on the channel; unprocessable (missing-slot-build)
    // when the release has a 256+256/512+512 build for one slot but not the other,
    // unless `force`.
    ChannelInfo set_channel(std::string_view product, std::string_view channel, std::string_view version,
                            bool allow_rollback, std::string_view actor, bool force = false);
    // conflict while a rollout is active on the channel.
    void delete_channel(std::string_view product, std::string_view channel, std::string_view actor);

private:
    // Inspects the stored blob, settles what the declaration left to the image
    // (layout, then slot checks and the default filename) and returns the metadata.
    nlohmann::json inspect(const storage::BlobInfo& blob, ResolvedUpload& target, const UploadSpec& spec);
    // Deletes the blob file when no blobs row names it (a failed upload's bytes).
    void drop_if_unreferenced(const std::string& sha256) noexcept;
    // Deletes blob rows without artifacts and files without rows (after deletes).
    void collect_unreferenced_blobs() noexcept;
    // After a committed change: collects freed blobs and tells the download cache.
    void changed(std::int64_t product_id, const std::vector<std::string>& freed_blobs) noexcept;

    storage::Database& database_;
    storage::BlobStore& blobs_;
    CatalogueOptions options_;
    BlobCache* download_cache_;
    // Shared from an upload's blob commit until its rows are committed; exclusive
    // while unreferenced blob files are deleted. So a file is never deleted between
    // an upload finding it already stored and the upload's row naming it.
    std::shared_mutex blob_lifecycle_;
};

// JSON renderings used by the operator API (times as RFC 3339 UTC).
nlohmann::json to_json(const ArtifactInfo& artifact);
nlohmann::json to_json(const ChannelInfo& channel);
nlohmann::json to_json(const ReleaseInfo& release);
nlohmann::json to_json(const ReleaseDetail& release);
nlohmann::json to_json(const ProductInfo& product);
nlohmann::json to_json(const storage::AuditEntry& entry);

// Name rules of this header (exposed for tests and other front-ends).
bool is_valid_product_name(std::string_view name) noexcept;
bool is_valid_channel_name(std::string_view name) noexcept;
bool is_valid_version_text(std::string_view version) noexcept;
bool is_valid_filename(std::string_view filename) noexcept;

}  // namespace otad::domain
