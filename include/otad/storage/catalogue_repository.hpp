#pragma once
// Products, releases, artifacts, blobs and channels: the firmware catalogue's rows.
// Plain records in and out; validation of names and version ordering belong to
// the domain layer. The schema still enforces its own rules, reported as
// StorageError kinds:
//   conflict  - duplicate product name, release version, artifact (release, chip,
//               layout, slot) or blob with another size;
//   reference - a missing product/release/blob, or deleting a release a channel
//               points at (channels RESTRICT);
//   rejected  - changing the artifacts or version of an offered release, a channel
//               pointing at another product's release, an artifact whose size
//               differs from its blob;
//   invalid   - a value outside the schema's CHECKs (bad hex, empty name, bad JSON).
// Write methods join the caller's WriteTransaction or open their own, so an upload
// inserts its blob row and artifacts in one transaction by holding one.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace otad::storage {

class Connection;

struct Product {
    std::int64_t id = 0;
    std::string name;
    bool allow_project_mismatch = false;
    std::optional<std::string> project_name;  // ESP project name of the first upload
    std::int64_t created_at = 0;
};

struct Release {
    std::int64_t id = 0;
    std::int64_t product_id = 0;
    std::string version;
    std::string notes;
    std::int64_t created_at = 0;
    bool offered = false;  // once true, artifacts and version are frozen
};

// Position in a newest-first release listing: pass the last one back as `after`.
struct ReleaseCursor {
    std::int64_t created_at = 0;
    std::int64_t id = 0;
};

struct ReleasePage {
    std::vector<Release> releases;
    std::optional<ReleaseCursor> next;  // set when more releases may follow
};

struct BlobRecord {
    std::string sha256;
    std::uint64_t size = 0;
    std::int64_t created_at = 0;
};

struct NewArtifact {
    std::int64_t release_id = 0;
    std::string chip;    // e.g. "esp32", "esp8266"
    std::string layout;  // '' when the chip has none (e.g. "512+512", "1024+1024")
    std::string slot;    // '' when the image fits any slot (e.g. "user1", "user2")
    std::string filename;
    std::string sha256;  // must already be a blobs row (insert_blob first)
    std::string md5;
    std::uint64_t size = 0;
    std::string metadata_json = "{}";  // the inspected image, as JSON
};

struct Artifact {
    std::int64_t id = 0;
    std::int64_t release_id = 0;
    std::string chip;
    std::string layout;
    std::string slot;
    std::string filename;
    std::string sha256;
    std::string md5;
    std::uint64_t size = 0;
    std::string metadata_json;
    std::int64_t created_at = 0;
};

// What an offered release had when it was deleted (migration 0002): its
// version can come back only with these bytes.
struct ReleaseTombstone {
    std::string chip;
    std::string layout;
    std::string slot;
    std::string sha256;
    std::uint64_t size = 0;
    std::int64_t deleted_at = 0;
};

struct Channel {
    std::int64_t product_id = 0;
    std::string name;
    std::int64_t release_id = 0;
    bool allow_rollback = false;
    std::int64_t updated_at = 0;
};

class CatalogueRepository {
public:
    explicit CatalogueRepository(Connection& connection) : connection_(connection) {}

    // --- products
    Product create_product(std::string_view name, bool allow_project_mismatch = false);
    std::optional<Product> get_product(std::int64_t id);
    std::optional<Product> find_product(std::string_view name);
    std::vector<Product> list_products();  // by name
    // Records the project name if none is recorded yet; true if this call set it.
    bool claim_project_name(std::int64_t product_id, std::string_view project_name);
    bool set_allow_project_mismatch(std::int64_t product_id, bool allow);

    // --- releases
    Release create_release(std::int64_t product_id, std::string_view version, std::string_view notes = "");
    std::optional<Release> get_release(std::int64_t id);
    std::optional<Release> find_release(std::int64_t product_id, std::string_view version);
    // Newest first by (created_at, id); limit clamped to 1..1000.
    ReleasePage list_releases(std::int64_t product_id, std::size_t limit,
                              std::optional<ReleaseCursor> after = std::nullopt);
    // Every release of the product, oldest first (for version ordering in the domain).
    std::vector<Release> all_releases(std::int64_t product_id);
    bool set_release_notes(std::int64_t release_id, std::string_view notes);
    // Marks the release offered (idempotent); true if this call changed it.
    bool mark_release_offered(std::int64_t release_id);
    // Deletes the release and its artifacts; false if it did not exist. Throws
    // StorageError(reference) while a channel points at it. An offered release
    // leaves a tombstone (written by the schema's trigger).
    bool delete_release(std::int64_t release_id);
    // The tombstone of (product, version) by chip, layout, slot; empty if that
    // version was never offered and deleted.
    std::vector<ReleaseTombstone> list_tombstones(std::int64_t product_id, std::string_view version);

    // --- artifacts
    Artifact insert_artifact(const NewArtifact& artifact);
    std::optional<Artifact> get_artifact(std::int64_t id);
    std::optional<Artifact> find_artifact(std::int64_t release_id, std::string_view chip, std::string_view layout,
                                          std::string_view slot);
    std::vector<Artifact> list_artifacts(std::int64_t release_id);  // by chip, layout, slot
    bool delete_artifact(std::int64_t id);

    // --- blobs (rows only; files are BlobStore's)
    // Inserts the row unless present; true if inserted. Throws conflict if a row
    // with this SHA-256 records another size.
    bool insert_blob(std::string_view sha256, std::uint64_t size);
    std::optional<BlobRecord> find_blob(std::string_view sha256);
    std::int64_t blob_reference_count(std::string_view sha256);  // artifacts using it

    // --- channels
    // Creates or moves the channel; returns the stored row.
    Channel set_channel(std::int64_t product_id, std::string_view name, std::int64_t release_id,
                        bool allow_rollback = false);
    std::optional<Channel> get_channel(std::int64_t product_id, std::string_view name);
    std::vector<Channel> list_channels(std::int64_t product_id);  // by name
    bool delete_channel(std::int64_t product_id, std::string_view name);

private:
    Connection& connection_;
};

}  // namespace otad::storage
