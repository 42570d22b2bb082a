// Catalogue rules over real storage: a migrated SQLite file and a blob store in
// a temp directory, with images from the byte-exact test generator.

#include "otad/domain/catalogue.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "otad/domain/blob_cache.hpp"
#include "otad/storage/catalogue_repository.hpp"
#include "otad/storage/database.hpp"
#include "otad/storage/migrations.hpp"
#include "otad/util/crypto.hpp"
#include "otad/util/strings.hpp"
#include "support/esp_image_builder.hpp"

namespace otad::domain {
namespace {

namespace fs = std::filesystem;
using Kind = CatalogueErrorKind;

class TempDir {
public:
    TempDir() {
        std::string pattern = (fs::temp_directory_path() / "otad-catalogue-test-XXXXXX").string();
        if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    ~TempDir() {
        std::error_code ignored;
        fs::remove_all(path_, ignored);
    }
    const fs::path& path() const noexcept { return path_; }

private:
    fs::path path_;
};

// Hands out bytes in chunks of a fixed size, like a network body.
class StringSource final : public ByteSource {
public:
    explicit StringSource(std::string bytes, std::size_t chunk = 4096) : bytes_(std::move(bytes)), chunk_(chunk) {}
    std::size_t read(std::span<char> out) override {
        std::size_t n = std::min({out.size(), chunk_, bytes_.size() - offset_});
        std::copy_n(bytes_.data() + offset_, n, out.data());
        offset_ += n;
        return n;
    }

private:
    std::string bytes_;
    std::size_t chunk_;
    std::size_t offset_ = 0;
};

std::string esp32_image(const std::string& version = "1.0.0", const std::string& chip = "esp32",
                        const std::string& project = "thermostat", std::uint32_t seed = 1,
                        testing::Break broken = testing::Break::none) {
    testing::Esp32Spec spec;
    spec.chip = chip;
    spec.app.version = version;
    spec.app.project_name = project;
    spec.seed = seed;
    return testing::build_esp32_image(spec, broken);
}

std::string v2_image(int slot, std::uint8_t flash_map = 2) {
    testing::Esp8266V2Spec spec;
    spec.slot = slot;
    spec.flash_map = flash_map;
    return testing::build_esp8266_v2_image(spec);
}

std::string esp32_bootloader(const std::string& chip) {
    testing::Esp32Spec spec;
    spec.chip = chip;
    spec.bootloader = true;
    return testing::build_esp32_image(spec);
}

std::string arduino_image_with_trailer(const std::string& trailer, std::uint32_t seed = 1) {
    testing::ArduinoSpec spec;
    spec.trailer = trailer;
    spec.seed = seed;
    return testing::build_arduino_image(spec);
}

UploadSpec spec_for(std::string product, std::string version, std::string chip, std::string layout = "",
                    std::string slot = "") {
    UploadSpec spec;
    spec.product = std::move(product);
    spec.version = std::move(version);
    spec.chip = std::move(chip);
    spec.layout = std::move(layout);
    spec.slot = std::move(slot);
    return spec;
}

class CatalogueTest : public ::testing::Test {
protected:
    void SetUp() override {
        storage::DatabaseOptions options;
        options.path = dir.path() / "otad.db";
        db = std::make_unique<storage::Database>(options);
        storage::migrate(*db);
        blobs = std::make_unique<storage::BlobStore>(dir.path());
        catalogue = std::make_unique<Catalogue>(*db, *blobs, CatalogueOptions{1024 * 1024});
    }

    UploadResult upload(const std::string& bytes, const UploadSpec& spec, std::string_view actor = "token:ci") {
        StringSource source(bytes);
        return catalogue->store(catalogue->receive(source), spec, actor);
    }

    // Runs `fn` and returns the CatalogueError it throws (fails the test if none).
    template <class Fn>
    CatalogueError error_of(Fn&& fn) {
        try {
            fn();
        } catch (const CatalogueError& e) {
            return e;
        }
        ADD_FAILURE() << "no CatalogueError thrown";
        return CatalogueError(Kind::invalid, "none", "none");
    }

    std::size_t blob_files() {
        std::size_t n = 0;
        blobs->for_each_blob([&](const std::string&) { ++n; });
        return n;
    }
    std::size_t temp_files() {
        return static_cast<std::size_t>(
            std::distance(fs::directory_iterator(blobs->temp_dir()), fs::directory_iterator()));
    }
    std::vector<storage::AuditEntry> audit() { return catalogue->list_audit(500, std::nullopt).entries; }
    std::size_t product_count() { return catalogue->list_products().size(); }
    void mark_offered(const std::string& product, const std::string& version) {
        db->write([&](storage::Connection& c) {
            storage::CatalogueRepository repo(c);
            auto p = repo.find_product(product);
            auto r = repo.find_release(p->id, version);
            repo.mark_release_offered(r->id);
        });
    }

    TempDir dir;
    std::unique_ptr<storage::Database> db;
    std::unique_ptr<storage::BlobStore> blobs;
    std::unique_ptr<Catalogue> catalogue;
};

// --- uploads ------------------------------------------------------------------

TEST_F(CatalogueTest, UploadCreatesProductReleaseArtifactBlobAndAuditEntry) {
    const std::string image = esp32_image("1.0.0");
    UploadResult r = upload(image, spec_for("thermostat", "1.0.0", "esp32"), "token:ci");

    EXPECT_EQ(r.outcome, UploadOutcome::created);
    EXPECT_EQ(r.artifact.product, "thermostat");
    EXPECT_EQ(r.artifact.version, "1.0.0");
    EXPECT_EQ(r.artifact.chip, "esp32");
    EXPECT_EQ(r.artifact.layout, "ota");
    EXPECT_EQ(r.artifact.slot, "");
    EXPECT_EQ(r.artifact.filename, "firmware.bin");
    EXPECT_EQ(r.artifact.size, image.size());
    EXPECT_EQ(r.artifact.sha256, util::sha256_hex(image));
    EXPECT_EQ(r.artifact.image["format"], "esp32");
    EXPECT_EQ(r.artifact.image["app_desc"]["version"], "1.0.0");
    EXPECT_EQ(r.artifact.image["app_desc"]["project_name"], "thermostat");
    EXPECT_TRUE(blobs->verify(r.artifact.sha256));
    EXPECT_EQ(temp_files(), 0u);

    ProductInfo product = catalogue->get_product("thermostat");
    EXPECT_EQ(product.project_name, "thermostat");
    EXPECT_EQ(product.release_count, 1u);
    EXPECT_EQ(product.latest_version, "1.0.0");

    auto entries = audit();
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries[0].actor, "token:ci");
    EXPECT_EQ(entries[0].action, "artifact.upload");
    EXPECT_EQ(entries[0].subject, "product/thermostat/release/1.0.0/artifact/" + std::to_string(r.artifact.id));
    auto detail = nlohmann::json::parse(entries[0].detail_json);
    EXPECT_EQ(detail["sha256"], r.artifact.sha256);
    EXPECT_EQ(detail["created_product"], true);
    EXPECT_EQ(detail["created_release"], true);
}

TEST_F(CatalogueTest, SameBytesAgainIsUnchangedWithoutASecondAuditEntry) {
    const std::string image = esp32_image();
    auto first = upload(image, spec_for("thermostat", "1.0.0", "esp32"));
    auto second = upload(image, spec_for("thermostat", "1.0.0", "esp32"));
    EXPECT_EQ(second.outcome, UploadOutcome::unchanged);
    EXPECT_EQ(second.artifact.id, first.artifact.id);
    EXPECT_EQ(second.artifact.created_at, first.artifact.created_at);
    EXPECT_EQ(audit().size(), 1u);
    EXPECT_EQ(blob_files(), 1u);
}

TEST_F(CatalogueTest, DifferentBytesForTheSameSlotConflictAndLeaveNothingBehind) {
    auto first = upload(esp32_image("1.0.0", "esp32", "thermostat", 1), spec_for("thermostat", "1.0.0", "esp32"));
    const std::string other = esp32_image("1.0.0", "esp32", "thermostat", 2);
    auto e = error_of([&] { upload(other, spec_for("thermostat", "1.0.0", "esp32")); });
    EXPECT_EQ(e.kind(), Kind::conflict);
    EXPECT_EQ(e.code(), "artifact-exists");
    EXPECT_EQ(e.extra()["artifact_id"], first.artifact.id);
    EXPECT_FALSE(blobs->exists(util::sha256_hex(other)));
    EXPECT_EQ(blob_files(), 1u);
    EXPECT_EQ(temp_files(), 0u);
    EXPECT_EQ(catalogue->get_release("thermostat", "1.0.0").artifacts.at(0).id, first.artifact.id);
}

TEST_F(CatalogueTest, ReplaceSwapsTheArtifactAndDeletesTheOldBlob) {
    const std::string old_image = esp32_image("1.0.0", "esp32", "thermostat", 1);
    const std::string new_image = esp32_image("1.0.0", "esp32", "thermostat", 2);
    auto first = upload(old_image, spec_for("thermostat", "1.0.0", "esp32"));
    auto spec = spec_for("thermostat", "1.0.0", "esp32");
    spec.replace = true;
    auto second = upload(new_image, spec, "token:admin");
    EXPECT_EQ(second.outcome, UploadOutcome::replaced);
    EXPECT_NE(second.artifact.id, first.artifact.id);
    EXPECT_EQ(second.replaced_artifact_id, first.artifact.id);
    EXPECT_FALSE(blobs->exists(util::sha256_hex(old_image)));
    EXPECT_TRUE(blobs->verify(util::sha256_hex(new_image)));
    auto detail = catalogue->get_release("thermostat", "1.0.0");
    ASSERT_EQ(detail.artifacts.size(), 1u);
    EXPECT_EQ(detail.artifacts[0].sha256, util::sha256_hex(new_image));
    EXPECT_EQ(audit().front().action, "artifact.replace");
    EXPECT_EQ(audit().front().actor, "token:admin");
}

TEST_F(CatalogueTest, NothingChangesOnceTheReleaseWasOffered) {
    upload(esp32_image("1.0.0", "esp32", "thermostat", 1), spec_for("thermostat", "1.0.0", "esp32"));
    mark_offered("thermostat", "1.0.0");
    auto spec = spec_for("thermostat", "1.0.0", "esp32");
    spec.replace = true;
    auto e = error_of([&] { upload(esp32_image("1.0.0", "esp32", "thermostat", 2), spec); });
    EXPECT_EQ(e.kind(), Kind::conflict);
    EXPECT_EQ(e.code(), "release-offered");
    auto added = error_of([&] { upload(esp32_image("1.0.0", "esp32s3"), spec_for("thermostat", "1.0.0", "esp32s3")); });
    EXPECT_EQ(added.code(), "release-offered");
    auto id = catalogue->get_release("thermostat", "1.0.0").artifacts.at(0).id;
    EXPECT_EQ(error_of([&] { catalogue->delete_artifact("thermostat", "1.0.0", id, "a"); }).code(), "release-offered");
    EXPECT_EQ(blob_files(), 1u);
}

TEST_F(CatalogueTest, IdenticalBytesInTwoReleasesAreStoredOnceAndFreedWithTheLastReference) {
    const std::string image = esp32_image("1.0.0");
    auto a = upload(image, spec_for("thermostat", "1.0.0", "esp32"));
    auto spec = spec_for("thermostat", "1.0.1", "esp32");
    spec.allow_version_mismatch = true;
    auto b = upload(image, spec);
    EXPECT_EQ(a.artifact.sha256, b.artifact.sha256);
    EXPECT_EQ(blob_files(), 1u);

    catalogue->delete_artifact("thermostat", "1.0.0", a.artifact.id, "token:admin");
    EXPECT_TRUE(blobs->verify(a.artifact.sha256));
    catalogue->delete_release("thermostat", "1.0.1", "token:admin");
    EXPECT_FALSE(blobs->exists(a.artifact.sha256));
    EXPECT_EQ(blob_files(), 0u);
    auto actions = audit();
    ASSERT_EQ(actions.size(), 4u);
    EXPECT_EQ(actions[0].action, "release.delete");
    EXPECT_EQ(actions[1].action, "artifact.delete");
}

TEST_F(CatalogueTest, BrokenImagesAre422WithTheInspectorsCodeAndStoreNothing) {
    struct Case {
        std::string bytes;
        UploadSpec spec;
        std::string code;
    };
    std::vector<Case> cases = {
        {esp32_image("1.0.0", "esp32", "p", 1, testing::Break::bad_checksum), spec_for("p", "1.0.0", "esp32"),
         "bad-checksum"},
        {esp32_image("1.0.0", "esp32", "p", 1, testing::Break::bad_magic), spec_for("p", "1.0.0", "esp32"),
         "bad-magic"},
        {esp32_image("1.0.0", "esp32", "p", 1, testing::Break::bad_appended_hash), spec_for("p", "1.0.0", "esp32"),
         "bad-appended-hash"},
        {esp32_image("1.0.0", "esp32", "p", 1, testing::Break::truncated_segment), spec_for("p", "1.0.0", "esp32"),
         "truncated-segment"},
        {esp32_image("1.0.0", "esp32s3"), spec_for("p", "1.0.0", "esp32"), "chip-mismatch"},
        {esp32_image("2.0.0"), spec_for("p", "1.0.0", "esp32"), "version-mismatch"},
        {v2_image(1), spec_for("p", "1.0.0", "esp8266", "512+512", "user2"), "slot-mismatch"},
        {v2_image(2), spec_for("p", "1.0.0", "esp8266", "512+512", "user1"), "slot-mismatch"},
        {v2_image(1, 5), spec_for("p", "1.0.0", "esp8266", "512+512", "user1"), "layout-mismatch"},
        {esp32_image("1.0.0"), spec_for("p", "1.0.0", "esp8266", "512+512", "user1"), "chip-mismatch"},
        {esp32_bootloader("esp32"), spec_for("p", "1.0.0", "esp32"), "bootloader"},
        {esp32_bootloader("esp32"), spec_for("p", "1.0.0", "esp32c3"), "chip-mismatch"},
        {testing::build_esp8266_classic_image(testing::esp8266_nonos_bootloader_spec()),
         spec_for("p", "1.0.0", "esp8266", "single"), "bootloader"},
        {testing::build_esp8266_classic_image(testing::esp8266_eboot_spec()), spec_for("p", "1.0.0", "esp8266"),
         "bootloader"},
        {testing::build_arduino_image({}, testing::Break::flipped_byte), spec_for("p", "1.0.0", "esp8266", "single"),
         "bad-checksum"},
        {testing::build_arduino_image({}), spec_for("p", "1.0.0", "esp8266", "ota"), "layout-mismatch"},
        {testing::build_esp8266_classic_image({}), spec_for("p", "1.0.0", "esp8266", "single"), "layout-mismatch"},
        {arduino_image_with_trailer("junk"), spec_for("p", "1.0.0", "esp8266", "single"), "trailing-data"},
        {testing::build_arduino_image({}).substr(0x1000), spec_for("p", "1.0.0", "esp8266"), "layout-mismatch"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.code);
        auto e = error_of([&] { upload(c.bytes, c.spec); });
        EXPECT_EQ(e.kind(), Kind::unprocessable);
        EXPECT_EQ(e.code(), "invalid-image");
        EXPECT_EQ(e.extra()["code"], c.code) << e.what();
        EXPECT_FALSE(std::string(e.what()).empty());
        EXPECT_FALSE(blobs->exists(util::sha256_hex(c.bytes)));
    }
    EXPECT_EQ(product_count(), 0u);
    EXPECT_EQ(blob_files(), 0u);
    EXPECT_EQ(temp_files(), 0u);
    EXPECT_TRUE(audit().empty());
}

TEST_F(CatalogueTest, RejectedImageNeverDeletesBytesAnotherArtifactUses) {
    const std::string image = esp32_image("1.0.0");
    auto stored = upload(image, spec_for("p", "1.0.0", "esp32"));
    // Same bytes, declared for another chip: refused, but the stored copy stays.
    auto e = error_of([&] { upload(image, spec_for("p", "1.0.0", "esp32c3")); });
    EXPECT_EQ(e.extra()["code"], "chip-mismatch");
    EXPECT_TRUE(blobs->verify(stored.artifact.sha256));
}

TEST_F(CatalogueTest, Esp8266NonosSlotsAreStoredWithDefaultFilenames) {
    auto u1 = upload(v2_image(1), spec_for("plug", "1.0.0", "esp8266", "512+512", "user1"));
    auto u2 = upload(v2_image(2), spec_for("plug", "1.0.0", "esp8266", "512+512", "user2"));
    EXPECT_EQ(u1.artifact.filename, "user1.bin");
    EXPECT_EQ(u2.artifact.filename, "user2.bin");
    EXPECT_EQ(u1.artifact.layout, "512+512");
    EXPECT_EQ(u2.artifact.image["v2"]["slot"], "user2");
    EXPECT_EQ(catalogue->get_release("plug", "1.0.0").artifacts.size(), 2u);
    auto big = upload(v2_image(1, 6), spec_for("plug", "1.0.0", "esp8266", "1024+1024", "user1"));
    EXPECT_EQ(big.artifact.layout, "1024+1024");
    // user1.bin is taken in this release: the default names the layout too.
    EXPECT_EQ(big.artifact.filename, "user1-1024+1024.bin");
}

TEST_F(CatalogueTest, Esp8266LayoutIsTakenFromTheImageWhenOmitted) {
    auto fota = upload(v2_image(2, 5), spec_for("plug", "1.0.0", "esp8266", "", "user2"));
    EXPECT_EQ(fota.artifact.layout, "1024+1024");
    EXPECT_EQ(fota.artifact.filename, "user2.bin");
    auto sketch = upload(testing::build_arduino_image({}), spec_for("plug", "1.0.0", "esp8266"));
    EXPECT_EQ(sketch.artifact.layout, "single");
    EXPECT_EQ(sketch.artifact.filename, "firmware.bin");
    auto rtos = upload(testing::build_esp8266_classic_image({}), spec_for("plug", "1.0.0", "esp8266"));
    EXPECT_EQ(rtos.artifact.layout, "ota");
    EXPECT_EQ(rtos.artifact.filename, "firmware-esp8266-ota.bin");  // firmware.bin is the sketch's
    EXPECT_EQ(rtos.artifact.image["build"], "rtos-app");

    // Only a contradiction is refused; a NONOS layout still needs its slot.
    auto e = error_of([&] { upload(v2_image(1, 2), spec_for("plug", "1.1.0", "esp8266", "1024+1024", "user1")); });
    EXPECT_EQ(e.extra()["code"], "layout-mismatch");
    e = error_of([&] { upload(v2_image(1, 2), spec_for("plug", "1.1.0", "esp8266")); });
    EXPECT_EQ(e.code(), "invalid-slot");
    EXPECT_NE(std::string(e.what()).find("for layout 512+512"), std::string::npos) << e.what();
    testing::Esp8266V2Spec no_fota_map;
    no_fota_map.flash_map = 7;
    e = error_of([&] {
        upload(testing::build_esp8266_v2_image(no_fota_map), spec_for("plug", "1.1.0", "esp8266", "", "user1"));
    });
    EXPECT_EQ(e.extra()["code"], "layout-mismatch");
    EXPECT_EQ(std::string(e.what()),
              "layout was not given and the image does not state one: image flash size map 7 "
              "has no FOTA layout");
    EXPECT_EQ(blob_files(), 3u);
}

TEST_F(CatalogueTest, TrailingDataIsKeptOnlyWhenAllowed) {
    const std::string image = arduino_image_with_trailer(std::string(100, 'z'));
    auto e = error_of([&] { upload(image, spec_for("p", "1.0.0", "esp8266", "single")); });
    EXPECT_EQ(e.extra()["code"], "trailing-data");
    auto spec = spec_for("p", "1.0.0", "esp8266", "single");
    spec.allow_trailing_data = true;
    auto r = upload(image, spec);
    EXPECT_EQ(r.artifact.image["trailing"]["bytes"], 100);
    EXPECT_EQ(r.artifact.size, image.size());
}

TEST_F(CatalogueTest, FileNamesAreUniqueWithinARelease) {
    auto first = upload("blob one", spec_for("p", "1.0.0", "generic"));
    EXPECT_EQ(first.artifact.filename, "firmware.bin");
    // A defaulted name steps aside ...
    auto second = upload(esp32_image("1.0.0"), spec_for("p", "1.0.0", "esp32"));
    EXPECT_EQ(second.artifact.filename, "firmware-esp32-ota.bin");
    // ... a chosen one is refused, naming the artifact that has it.
    auto spec = spec_for("p", "1.0.0", "esp32c3");
    spec.filename = "firmware.bin";
    auto e = error_of([&] { upload(esp32_image("1.0.0", "esp32c3"), spec); });
    EXPECT_EQ(e.kind(), Kind::conflict);
    EXPECT_EQ(e.code(), "filename-exists");
    EXPECT_EQ(e.extra()["artifact_id"], first.artifact.id);
    EXPECT_EQ(e.extra()["chip"], "generic");
    EXPECT_NE(std::string(e.what()).find("already has an artifact named 'firmware.bin' (id " +
                                         std::to_string(first.artifact.id) + ", generic/single)"),
              std::string::npos)
        << e.what();
    spec.suggested_filename = "app.bin";  // a multipart file name is a choice too
    spec.filename.clear();
    EXPECT_EQ(upload(esp32_image("1.0.0", "esp32c3"), spec).artifact.filename, "app.bin");
    auto again = spec_for("p", "1.0.0", "esp32s3");
    again.suggested_filename = "app.bin";
    EXPECT_EQ(error_of([&] { upload(esp32_image("1.0.0", "esp32s3"), again); }).code(), "filename-exists");
    // Replacing an artifact keeps its own name; another release may reuse any name.
    auto replace = spec_for("p", "1.0.0", "generic");
    replace.replace = true;
    EXPECT_EQ(upload("blob two", replace).artifact.filename, "firmware.bin");
    EXPECT_EQ(upload("blob one", spec_for("p", "1.1.0", "generic")).artifact.filename, "firmware.bin");
}

TEST_F(CatalogueTest, AnOfferedThenDeletedVersionComesBackOnlyWithItsBytes) {
    const std::string image = esp32_image("1.0.0", "esp32", "thermostat", 1);
    upload(image, spec_for("thermostat", "1.0.0", "esp32"));
    mark_offered("thermostat", "1.0.0");
    catalogue->delete_release("thermostat", "1.0.0", "token:admin");
    EXPECT_EQ(blob_files(), 0u);

    // Other bytes for the same version and slot: refused, naming the version.
    auto e = error_of(
        [&] { upload(esp32_image("1.0.0", "esp32", "thermostat", 2), spec_for("thermostat", "1.0.0", "esp32")); });
    EXPECT_EQ(e.kind(), Kind::conflict);
    EXPECT_EQ(e.code(), "release-was-offered");
    EXPECT_EQ(e.extra()["version"], "1.0.0");
    EXPECT_EQ(e.extra()["tombstone"][0]["sha256"], util::sha256_hex(image));
    EXPECT_NE(std::string(e.what()).find("release '1.0.0' of 'thermostat' was offered to devices"), std::string::npos)
        << e.what();
    // A build for a chip the offered release did not have: refused too.
    e = error_of([&] { upload(esp32_image("1.0.0", "esp32c3"), spec_for("thermostat", "1.0.0", "esp32c3")); });
    EXPECT_EQ(e.code(), "release-was-offered");
    EXPECT_NE(std::string(e.what()).find("it had no esp32c3/ota artifact"), std::string::npos) << e.what();
    EXPECT_EQ(blob_files(), 0u);
    EXPECT_THROW(catalogue->get_release("thermostat", "1.0.0"), CatalogueError);

    // The same bytes come back; deleting a release never offered leaves nothing behind.
    EXPECT_EQ(upload(image, spec_for("thermostat", "1.0.0", "esp32")).outcome, UploadOutcome::created);
    upload(esp32_image("1.1.0", "esp32", "thermostat", 3), spec_for("thermostat", "1.1.0", "esp32"));
    catalogue->delete_release("thermostat", "1.1.0", "token:admin");
    EXPECT_EQ(upload(esp32_image("1.1.0", "esp32", "thermostat", 4), spec_for("thermostat", "1.1.0", "esp32")).outcome,
              UploadOutcome::created);
}

TEST_F(CatalogueTest, VersionMismatchCanBeAllowed) {
    auto spec = spec_for("p", "1.0.0-hotfix", "esp32");
    spec.allow_version_mismatch = true;
    EXPECT_EQ(upload(esp32_image("1.0.0"), spec).outcome, UploadOutcome::created);
    // A leading v and build metadata are the same version.
    EXPECT_EQ(upload(esp32_image("v1.1.0"), spec_for("p", "1.1.0", "esp32")).outcome, UploadOutcome::created);
}

TEST_F(CatalogueTest, ProjectNameMustMatchTheFirstUploadUnlessAllowed) {
    upload(esp32_image("1.0.0", "esp32", "thermostat"), spec_for("p", "1.0.0", "esp32"));
    auto e = error_of([&] { upload(esp32_image("1.1.0", "esp32", "doorbell"), spec_for("p", "1.1.0", "esp32")); });
    EXPECT_EQ(e.kind(), Kind::unprocessable);
    EXPECT_EQ(e.extra()["code"], "project-mismatch");
    EXPECT_EQ(e.extra()["product_project"], "thermostat");
    EXPECT_EQ(error_of([&] { catalogue->get_release("p", "1.1.0"); }).kind(), Kind::not_found);  // rolled back

    auto product = catalogue->set_allow_project_mismatch("p", true, "token:admin");
    EXPECT_TRUE(product.allow_project_mismatch);
    EXPECT_EQ(upload(esp32_image("1.1.0", "esp32", "doorbell"), spec_for("p", "1.1.0", "esp32")).outcome,
              UploadOutcome::created);
    EXPECT_EQ(catalogue->get_product("p").project_name, "thermostat");
    EXPECT_EQ(audit()[1].action, "product.update");
}

TEST_F(CatalogueTest, GenericArtifactsAreOpaque) {
    auto r = upload("not an esp image at all", spec_for("sensor", "3", "generic"));
    EXPECT_EQ(r.artifact.layout, "single");
    EXPECT_EQ(r.artifact.image, nlohmann::json({{"format", "opaque"}}));
}

TEST_F(CatalogueTest, DigestMismatchStoresNothing) {
    const std::string image = esp32_image();
    auto spec = spec_for("p", "1.0.0", "esp32");
    spec.expected_sha256 = std::string(64, 'a');
    auto e = error_of([&] { upload(image, spec); });
    EXPECT_EQ(e.kind(), Kind::invalid);
    EXPECT_EQ(e.code(), "digest-mismatch");
    EXPECT_EQ(blob_files(), 0u);
    EXPECT_EQ(temp_files(), 0u);
    EXPECT_EQ(product_count(), 0u);

    spec.expected_sha256 = util::to_lower(util::sha256_hex(image));
    for (auto& c : *spec.expected_sha256) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    EXPECT_EQ(upload(image, spec).outcome, UploadOutcome::created);
}

TEST_F(CatalogueTest, TooLargeAndEmptyUploadsLeaveNoTempFile) {
    StringSource big(std::string(1024 * 1024 + 1, 'x'), 65536);
    auto e = error_of([&] { catalogue->receive(big); });
    EXPECT_EQ(e.kind(), Kind::too_large);
    EXPECT_EQ(e.extra()["max_artifact_bytes"], 1024 * 1024);
    StringSource exact(std::string(1024 * 1024, 'x'), 65536);
    EXPECT_EQ(catalogue->receive(exact).size(), 1024u * 1024u);
    StringSource empty("");
    EXPECT_EQ(error_of([&] { catalogue->receive(empty); }).code(), "empty-artifact");
    EXPECT_EQ(temp_files(), 0u);
}

TEST_F(CatalogueTest, DroppedPendingUploadRemovesItsTempFile) {
    {
        StringSource source(esp32_image());
        PendingUpload pending = catalogue->receive(source);
        EXPECT_EQ(temp_files(), 1u);
    }
    EXPECT_EQ(temp_files(), 0u);
}

// --- declarations and names -----------------------------------------------------

TEST_F(CatalogueTest, DeclarationsAreValidatedWithTheValidValues) {
    auto code_of = [&](const UploadSpec& spec) { return error_of([&] { catalogue->resolve(spec); }).code(); };
    EXPECT_EQ(code_of(spec_for("p", "1", "")), "invalid-chip");
    auto chip = error_of([&] { catalogue->resolve(spec_for("p", "1", "esp31")); });
    EXPECT_EQ(chip.code(), "invalid-chip");
    EXPECT_NE(std::string(chip.what()).find("esp32c3"), std::string::npos);
    EXPECT_TRUE(chip.extra()["valid_chips"].is_array());
    EXPECT_TRUE(catalogue->resolve(spec_for("p", "1", "esp8266")).layout_from_image);  // the image states it
    EXPECT_EQ(code_of(spec_for("p", "1", "esp8266", "", "user3")), "invalid-slot");
    EXPECT_EQ(code_of(spec_for("p", "1", "esp32", "2048+2048")), "invalid-layout");
    EXPECT_EQ(code_of(spec_for("p", "1", "esp32", "512+512", "user1")), "invalid-layout");
    EXPECT_EQ(code_of(spec_for("p", "1", "esp8266", "512+512")), "invalid-slot");
    auto slot = error_of([&] { catalogue->resolve(spec_for("p", "1", "esp8266", "512+512", "user3")); });
    EXPECT_EQ(slot.extra()["valid_slots"], nlohmann::json({"user1", "user2"}));
    EXPECT_EQ(code_of(spec_for("p", "1", "esp32", "single", "ota_0")), "invalid-slot");

    auto r = catalogue->resolve(spec_for("p", "1", "ESP32-C3", "OTA", "ota_1"));
    EXPECT_EQ(r.chip, Chip::esp32c3);
    EXPECT_EQ(r.layout, Layout::ota);
    EXPECT_EQ(r.slot, "ota_1");
    EXPECT_EQ(catalogue->resolve(spec_for("p", "1", "esp8266", "512 512", "user1")).layout, Layout::nonos_512_512);
}

TEST_F(CatalogueTest, FilenamesDefaultOrComeFromTheUploadWhenSafe) {
    auto spec = spec_for("p", "1", "esp32");
    EXPECT_EQ(catalogue->resolve(spec).filename, "firmware.bin");
    spec.suggested_filename = "C:\\build\\app-1.0.bin";
    EXPECT_EQ(catalogue->resolve(spec).filename, "app-1.0.bin");
    spec.suggested_filename = "../../etc/passwd";
    EXPECT_EQ(catalogue->resolve(spec).filename, "passwd");
    spec.suggested_filename = "weird name.bin";
    EXPECT_EQ(catalogue->resolve(spec).filename, "firmware.bin");
    for (const std::string& bad :
         std::vector<std::string>{"../x.bin", "a/b.bin", ".hidden", "a..b", "x y", std::string(129, 'a')}) {
        spec.filename = bad;
        EXPECT_EQ(error_of([&] { catalogue->resolve(spec); }).code(), "invalid-filename") << bad;
    }
    spec.filename = std::string(128, 'a');
    EXPECT_EQ(catalogue->resolve(spec).filename, std::string(128, 'a'));
}

TEST(CatalogueNames, ProductChannelVersionRules) {
    EXPECT_TRUE(is_valid_product_name("thermostat"));
    EXPECT_TRUE(is_valid_product_name("a"));
    EXPECT_TRUE(is_valid_product_name("0.x_y-z"));
    EXPECT_TRUE(is_valid_product_name(std::string(64, 'a')));
    EXPECT_FALSE(is_valid_product_name(std::string(65, 'a')));
    EXPECT_FALSE(is_valid_product_name(""));
    EXPECT_FALSE(is_valid_product_name("-a"));
    EXPECT_FALSE(is_valid_product_name(".a"));
    EXPECT_FALSE(is_valid_product_name("Thermostat"));
    EXPECT_FALSE(is_valid_product_name("a b"));
    EXPECT_FALSE(is_valid_product_name("a/b"));
    EXPECT_TRUE(is_valid_channel_name("stable"));
    EXPECT_FALSE(is_valid_channel_name("Stable"));

    EXPECT_TRUE(is_valid_version_text("1.2.3-rc.1+build.5"));
    EXPECT_TRUE(is_valid_version_text("2024.05.01"));
    EXPECT_TRUE(is_valid_version_text(std::string(64, '1')));
    EXPECT_FALSE(is_valid_version_text(std::string(65, '1')));
    EXPECT_FALSE(is_valid_version_text(""));
    EXPECT_FALSE(is_valid_version_text("1.0/2"));
    EXPECT_FALSE(is_valid_version_text("1.0 beta"));
    EXPECT_FALSE(is_valid_version_text("1.0\n"));
    EXPECT_FALSE(is_valid_version_text("1.0\x80"));
}

TEST_F(CatalogueTest, BadNamesAre400sBeforeAnyLookup) {
    EXPECT_EQ(error_of([&] { catalogue->get_product("Bad Name"); }).code(), "invalid-product");
    EXPECT_EQ(error_of([&] { catalogue->get_release("p", "1/2"); }).code(), "invalid-version");
    EXPECT_EQ(error_of([&] { catalogue->set_channel("p", "Beta!", "1", false, "a"); }).code(), "invalid-channel");
    EXPECT_EQ(error_of([&] { catalogue->get_product("nothing"); }).kind(), Kind::not_found);
}

// --- listing ----------------------------------------------------------------------

TEST_F(CatalogueTest, ReleasesListNewestFirstBySemverAcrossPages) {
    // Uploaded out of order; the list follows version order, not upload time.
    const std::vector<std::string> uploaded = {"1.9.2", "1.10.0", "0.1", "1.10.0-rc.1", "2.0.0-beta", "1.10.0-rc.2"};
    std::uint32_t seed = 1;
    for (const auto& v : uploaded) {
        auto spec = spec_for("p", v, "generic");
        upload("bytes of " + v + std::to_string(seed++), spec);
    }
    const std::vector<std::string> expected = {"2.0.0-beta", "1.10.0", "1.10.0-rc.2", "1.10.0-rc.1", "1.9.2", "0.1"};

    auto all = catalogue->list_releases("p", 500, std::nullopt);
    std::vector<std::string> versions;
    for (const auto& r : all.releases) versions.push_back(r.version);
    EXPECT_EQ(versions, expected);
    EXPECT_FALSE(all.next_cursor);

    versions.clear();
    std::optional<std::string> cursor;
    int pages = 0;
    do {
        auto page = catalogue->list_releases("p", 4, cursor ? std::optional<std::string_view>(*cursor) : std::nullopt);
        for (const auto& r : page.releases) versions.push_back(r.version);
        cursor = page.next_cursor;
        ASSERT_LE(++pages, 3);
    } while (cursor);
    EXPECT_EQ(pages, 2);
    EXPECT_EQ(versions, expected);

    auto newest = catalogue->list_releases("p", 1, std::nullopt);
    EXPECT_EQ(newest.releases.at(0).version, "2.0.0-beta");
    EXPECT_TRUE(newest.next_cursor);
    EXPECT_EQ(catalogue->get_product("p").latest_version, "2.0.0-beta");

    EXPECT_EQ(error_of([&] { catalogue->list_releases("p", 10, "not-a-cursor"); }).code(), "invalid-cursor");
    EXPECT_EQ(error_of([&] { catalogue->list_releases("p", 0, std::nullopt); }).code(), "invalid-limit");
    EXPECT_EQ(error_of([&] { catalogue->list_releases("p", 501, std::nullopt); }).code(), "invalid-limit");
}

TEST_F(CatalogueTest, ReleaseDetailShowsArtifactsAndChannels) {
    auto a = upload(esp32_image("1.0.0", "esp32c3"), spec_for("p", "1.0.0", "esp32c3"));
    auto b = upload(esp32_image("1.0.0", "esp32"), spec_for("p", "1.0.0", "esp32"));
    catalogue->set_channel("p", "stable", "1.0.0", false, "token:admin");
    auto detail = catalogue->get_release("p", "1.0.0");
    ASSERT_EQ(detail.artifacts.size(), 2u);
    EXPECT_EQ(detail.artifacts[0].chip, "esp32");  // by chip
    EXPECT_EQ(detail.artifacts[1].chip, "esp32c3");
    EXPECT_EQ(detail.release.artifact_count, 2u);
    EXPECT_EQ(detail.release.channels, std::vector<std::string>{"stable"});
    EXPECT_EQ(catalogue->get_artifact("p", "1.0.0", a.artifact.id).sha256, a.artifact.sha256);
    EXPECT_EQ(error_of([&] { catalogue->get_artifact("p", "1.0.0", b.artifact.id + 100); }).kind(), Kind::not_found);
    auto json = to_json(detail);
    EXPECT_EQ(json["artifacts"][0]["image"]["chip"], "esp32");
    EXPECT_EQ(json["channels"][0], "stable");
}

// --- channels and deletes ----------------------------------------------------------

TEST_F(CatalogueTest, ChannelsPointAtReleasesWithArtifactsAndBlockDeletes) {
    auto a = upload(esp32_image("1.0.0"), spec_for("p", "1.0.0", "esp32"));
    upload(esp32_image("1.1.0"), spec_for("p", "1.1.0", "esp32"));

    EXPECT_EQ(error_of([&] { catalogue->set_channel("p", "stable", "9.9.9", false, "x"); }).kind(), Kind::not_found);
    EXPECT_EQ(error_of([&] { catalogue->set_channel("nope", "stable", "1.0.0", false, "x"); }).kind(), Kind::not_found);

    auto stable = catalogue->set_channel("p", "stable", "1.0.0", false, "token:admin");
    EXPECT_EQ(stable.version, "1.0.0");
    EXPECT_FALSE(stable.allow_rollback);
    catalogue->set_channel("p", "beta", "1.1.0", true, "token:admin");
    auto channels = catalogue->list_channels("p");
    ASSERT_EQ(channels.size(), 2u);
    EXPECT_EQ(channels[0].name, "beta");
    EXPECT_TRUE(channels[0].allow_rollback);
    EXPECT_EQ(catalogue->get_channel("p", "stable").version, "1.0.0");

    auto on_channel = error_of([&] { catalogue->delete_release("p", "1.0.0", "x"); });
    EXPECT_EQ(on_channel.kind(), Kind::conflict);
    EXPECT_EQ(on_channel.code(), "release-on-channel");
    EXPECT_EQ(on_channel.extra()["channels"], nlohmann::json({"stable"}));
    EXPECT_EQ(error_of([&] { catalogue->delete_artifact("p", "1.0.0", a.artifact.id, "x"); }).code(),
              "release-on-channel");

    catalogue->set_channel("p", "stable", "1.1.0", false, "token:admin");
    auto moved = audit().front();
    EXPECT_EQ(moved.action, "channel.set");
    EXPECT_EQ(moved.subject, "product/p/channel/stable");
    auto detail = nlohmann::json::parse(moved.detail_json);
    EXPECT_EQ(detail["previous_version"], "1.0.0");
    EXPECT_EQ(detail["version"], "1.1.0");
    const auto entries_before = audit().size();
    catalogue->set_channel("p", "stable", "1.1.0", false, "token:admin");  // no change, no entry
    EXPECT_EQ(audit().size(), entries_before);

    catalogue->delete_artifact("p", "1.0.0", a.artifact.id, "token:admin");
    // The release is now empty: no channel may offer it.
    auto empty = error_of([&] { catalogue->set_channel("p", "stable", "1.0.0", false, "x"); });
    EXPECT_EQ(empty.kind(), Kind::invalid);
    EXPECT_EQ(empty.code(), "release-empty");
    catalogue->delete_release("p", "1.0.0", "token:admin");
    EXPECT_EQ(error_of([&] { catalogue->get_release("p", "1.0.0"); }).kind(), Kind::not_found);

    catalogue->delete_channel("p", "beta", "token:admin");
    EXPECT_EQ(catalogue->list_channels("p").size(), 1u);
    EXPECT_EQ(error_of([&] { catalogue->delete_channel("p", "beta", "x"); }).kind(), Kind::not_found);
    EXPECT_EQ(audit().front().action, "channel.delete");
}

TEST_F(CatalogueTest, AuditPagesNewestFirst) {
    for (int i = 0; i < 5; ++i) upload("generic " + std::to_string(i), spec_for("p", std::to_string(i), "generic"));
    auto first = catalogue->list_audit(2, std::nullopt);
    ASSERT_EQ(first.entries.size(), 2u);
    ASSERT_TRUE(first.next_cursor);
    EXPECT_GT(first.entries[0].id, first.entries[1].id);
    auto second = catalogue->list_audit(2, *first.next_cursor);
    auto third = catalogue->list_audit(2, *second.next_cursor);
    EXPECT_EQ(second.entries.at(0).id, first.entries[1].id - 1);
    EXPECT_EQ(third.entries.size(), 1u);
    EXPECT_FALSE(third.next_cursor);
    EXPECT_EQ(third.entries[0].subject.rfind("product/p/release/0/", 0), 0u);
    EXPECT_EQ(error_of([&] { catalogue->list_audit(2, "eyJ4IjoxfQ"); }).code(), "invalid-cursor");
}

TEST_F(CatalogueTest, ChangesInvalidateTheDownloadCache) {
    BlobCacheOptions options;
    options.revalidate_after = std::chrono::hours(1);  // only invalidation can refresh it
    BlobCache cache(*db, *blobs, options);
    Catalogue cached(*db, *blobs, CatalogueOptions{1024 * 1024}, &cache);
    auto store = [&](const std::string& bytes, UploadSpec spec) {
        StringSource source(bytes);
        return cached.store(cached.receive(source), spec, "token:ci");
    };
    auto first = store("first bytes", spec_for("p", "1", "generic"));
    auto looked_up = cache.artifact("p", "1", "firmware.bin");
    ASSERT_EQ(looked_up.status, ArtifactLookup::Status::found);
    EXPECT_EQ(looked_up.artifact->blob->sha256, first.artifact.sha256);

    auto spec = spec_for("p", "1", "generic");
    spec.replace = true;
    auto second = store("second bytes", spec);
    EXPECT_EQ(cache.artifact("p", "1", "firmware.bin").artifact->blob->sha256, second.artifact.sha256);
    EXPECT_EQ(cache.blob(first.artifact.sha256), nullptr);

    ASSERT_NE(cache.blob(second.artifact.sha256), nullptr);
    cached.delete_release("p", "1", "token:admin");
    EXPECT_EQ(cache.blob(second.artifact.sha256), nullptr);
    EXPECT_EQ(cache.artifact("p", "1", "firmware.bin").status, ArtifactLookup::Status::not_found);
}

// Uploads of identical bytes race deletes of the releases holding them: no
// artifact row may ever be left without its blob file.
TEST_F(CatalogueTest, ConcurrentUploadsAndDeletesNeverOrphanARow) {
    const std::string image = "shared generic bytes";
    std::atomic<bool> failed{false};
    auto uploader = [&](int base) {
        for (int i = 0; i < 15; ++i) {
            try {
                upload(image, spec_for("p", std::to_string(base + i), "generic"));
            } catch (const std::exception& e) {
                failed = true;
                ADD_FAILURE() << e.what();
            }
        }
    };
    auto deleter = [&] {
        for (int i = 0; i < 30; ++i) {
            for (const auto& r : catalogue->list_releases("p", 500, std::nullopt).releases) {
                try {
                    catalogue->delete_release("p", r.version, "x");
                } catch (const CatalogueError&) {
                    // already deleted by the other round
                }
            }
        }
    };
    upload(image, spec_for("p", "seed", "generic"));
    std::thread t1(uploader, 100), t2(uploader, 200), t3(deleter);
    t1.join();
    t2.join();
    t3.join();
    EXPECT_FALSE(failed);
    for (const auto& r : catalogue->list_releases("p", 500, std::nullopt).releases)
        for (const auto& a : catalogue->get_release("p", r.version).artifacts) EXPECT_TRUE(blobs->verify(a.sha256));
    EXPECT_EQ(temp_files(), 0u);
}

}  // namespace
}  // namespace otad::domain
