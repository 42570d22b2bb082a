#include "otad/domain/esp_image.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unistd.h>

#include "otad/util/crypto.hpp"
#include "support/esp_image_builder.hpp"

namespace otad::domain {
namespace {

using testing::Break;
using testing::Esp32Spec;
using testing::Esp8266ClassicSpec;
using testing::Esp8266V2Spec;

InspectionResult inspect_bytes(const std::string& bytes, Chip declared) {
    MemoryImageReader reader(bytes);
    return inspect_esp_image(reader, declared);
}

std::string error_code(const InspectionResult& r) { return r.ok() ? "ok" : r.error().code; }

std::string hex_of(std::string_view bytes) { return util::to_hex(util::as_bytes(bytes)); }

// Counts what the inspector asks for, to prove it reads in bounded chunks.
class CountingReader final : public ImageReader {
public:
    explicit CountingReader(std::string_view bytes) : inner_(bytes) {}
    std::uint64_t size() const override { return inner_.size(); }
    void read(std::uint64_t offset, std::span<char> out) const override {
        largest_read = std::max<std::uint64_t>(largest_read, out.size());
        total_read += out.size();
        inner_.read(offset, out);
    }
    mutable std::uint64_t largest_read = 0;
    mutable std::uint64_t total_read = 0;

private:
    MemoryImageReader inner_;
};

class ThrowingReader final : public ImageReader {
public:
    std::uint64_t size() const override { return 4096; }
    void read(std::uint64_t, std::span<char>) const override { throw std::runtime_error("disk on fire"); }
};

class TempFile {
public:
    explicit TempFile(const std::string& bytes) {
        path_ = std::filesystem::temp_directory_path() /
                ("otad-esp-image-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++) + ".bin");
        std::ofstream(path_, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    ~TempFile() { std::filesystem::remove(path_); }
    const std::filesystem::path& path() const { return path_; }

private:
    static inline int counter_ = 0;
    std::filesystem::path path_;
};

// ------------------------------------------------------------ chip ids

TEST(EspChipId, MatchesEspIdfValuesBothWays) {
    const std::vector<std::pair<Chip, std::uint16_t>> expected = {
        {Chip::esp32, 0x0000},    {Chip::esp32s2, 0x0002}, {Chip::esp32c3, 0x0005},  {Chip::esp32s3, 0x0009},
        {Chip::esp32c2, 0x000C},  {Chip::esp32c6, 0x000D}, {Chip::esp32h2, 0x0010},  {Chip::esp32p4, 0x0012},
        {Chip::esp32c61, 0x0014}, {Chip::esp32c5, 0x0017}, {Chip::esp32h21, 0x0019}, {Chip::esp32h4, 0x001C},
        {Chip::esp32s31, 0x0020},
    };
    for (auto [chip, id] : expected) {
        EXPECT_EQ(esp_chip_id(chip), id) << to_string(chip);
        EXPECT_EQ(chip_for_esp_chip_id(id), chip) << id;
        // The generator has its own table: both must agree.
        EXPECT_EQ(testing::esp32_chip_id(to_string(chip)), id) << to_string(chip);
    }
    EXPECT_FALSE(esp_chip_id(Chip::esp8266));
    EXPECT_FALSE(esp_chip_id(Chip::generic));
    EXPECT_FALSE(chip_for_esp_chip_id(0xFFFF));
    EXPECT_FALSE(chip_for_esp_chip_id(0x0001));
}

// ------------------------------------------------------------ ESP32 family

TEST(EspImageEsp32, EveryChipParsesWithExactFields) {
    for (Chip chip : all_chips()) {
        if (!is_esp32_family(chip)) continue;
        Esp32Spec spec;
        spec.chip = std::string(to_string(chip));
        spec.app.version = "1.2.0";
        spec.app.project_name = "thermostat";
        spec.app.idf_ver = "v5.3.1";
        spec.app.secure_version = 3;
        const std::string image = testing::build_esp32_image(spec);
        const auto r = inspect_bytes(image, chip);
        ASSERT_TRUE(r.ok()) << to_string(chip) << ": " << r.error().code << " " << r.error().detail;
        const ImageInfo& info = r.info();
        EXPECT_EQ(info.format, ImageFormat::esp32);
        EXPECT_EQ(info.chip, chip);
        EXPECT_EQ(info.chip_id, *esp_chip_id(chip));
        ASSERT_TRUE(info.app_desc);
        EXPECT_EQ(info.app_desc->version, "1.2.0");
        EXPECT_EQ(info.app_desc->project_name, "thermostat");
        EXPECT_EQ(info.app_desc->idf_ver, "v5.3.1");
        EXPECT_EQ(info.app_desc->secure_version, 3u);
    }
}

TEST(EspImageEsp32, HeaderSegmentsChecksumHashAndAppDesc) {
    Esp32Spec spec;
    spec.chip = "esp32c3";
    spec.app = {.secure_version = 7,
                .version = "2.0.1-rc1",
                .project_name = "thermostat",
                .time = "09:41:00",
                .date = "Mar  3 2025",
                .idf_ver = "v5.4-dirty",
                .min_efuse_blk_rev_full = 1,
                .max_efuse_blk_rev_full = 199,
                .mmu_page_size = 15};
    spec.spi_mode = 3;
    spec.spi_speed = 0xF;
    spec.spi_size = 4;
    spec.entry_addr = 0x40380000;
    spec.min_chip_rev = 3;
    spec.min_chip_rev_full = 3;
    spec.max_chip_rev_full = 199;
    const std::string image = testing::build_esp32_image(spec);
    const auto r = inspect_bytes(image, Chip::esp32c3);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    const ImageInfo& info = r.info();

    // 24 + 4 * 8 + 0x2000 + 0x400 + 0x1000 + 0x8000 = 0xB438; checksum at 0xB43F; + 32.
    EXPECT_EQ(info.file_size, 0xB460u);
    EXPECT_EQ(image.size(), 0xB460u);
    EXPECT_EQ(info.spi_mode, 3);
    EXPECT_EQ(info.spi_speed, 0xF);
    EXPECT_EQ(info.spi_size, 4);
    EXPECT_EQ(info.entry_addr, 0x40380000u);
    EXPECT_EQ(info.wp_pin, 0xEE);
    EXPECT_EQ(info.chip_id, 0x0005);
    EXPECT_EQ(info.min_chip_rev, 3);
    EXPECT_EQ(info.min_chip_rev_full, 3);
    EXPECT_EQ(info.max_chip_rev_full, 199);
    EXPECT_EQ(info.hash_appended_flag, 1);
    ASSERT_EQ(info.segments.size(), 4u);
    // ESP32-C3 DROM, DRAM, IRAM, IROM (the builder's per-chip defaults).
    const std::vector<std::tuple<std::uint64_t, std::uint32_t, std::uint32_t>> segs = {{24, 0x3C000020, 0x2000},
                                                                                       {0x2020, 0x3FC88000, 0x400},
                                                                                       {0x2428, 0x40380000, 0x1000},
                                                                                       {0x3430, 0x42000020, 0x8000}};
    for (std::size_t i = 0; i < segs.size(); ++i) {
        EXPECT_EQ(info.segments[i].header_offset, std::get<0>(segs[i])) << i;
        EXPECT_EQ(info.segments[i].load_addr, std::get<1>(segs[i])) << i;
        EXPECT_EQ(info.segments[i].length, std::get<2>(segs[i])) << i;
    }
    EXPECT_EQ(info.checksum_offset, 0xB43Fu);
    EXPECT_EQ(info.checksum, static_cast<std::uint8_t>(image[0xB43F]));
    // Padding between the last segment and the checksum is zero.
    EXPECT_EQ(image.substr(0xB438, 7), std::string(7, '\0'));
    // The appended hash is what arduino-esp32 sends as x-ESP32-sketch-sha256:
    // SHA-256 of the file minus its last 32 bytes.
    ASSERT_TRUE(info.appended_sha256);
    EXPECT_EQ(util::to_hex(*info.appended_sha256), util::sha256_hex(std::string_view(image).substr(0, 0xB440)));
    EXPECT_EQ(info.trailing_offset, 0xB460u);
    EXPECT_EQ(info.trailing_bytes, 0u);

    ASSERT_TRUE(info.app_desc);
    const AppDescription& d = *info.app_desc;
    EXPECT_EQ(d.offset, 32u);
    EXPECT_EQ(d.secure_version, 7u);
    EXPECT_EQ(d.version, "2.0.1-rc1");
    EXPECT_EQ(d.project_name, "thermostat");
    EXPECT_EQ(d.time, "09:41:00");
    EXPECT_EQ(d.date, "Mar  3 2025");
    EXPECT_EQ(d.idf_ver, "v5.4-dirty");
    EXPECT_EQ(util::to_hex(d.app_elf_sha256), hex_of(std::string_view(image).substr(32 + 144, 32)));
    EXPECT_EQ(d.min_efuse_blk_rev_full, 1);
    EXPECT_EQ(d.max_efuse_blk_rev_full, 199);
    EXPECT_EQ(d.mmu_page_size, 15);
}

TEST(EspImageEsp32, FullWidthStringsAndNonAsciiBytesAreSafe) {
    Esp32Spec spec;
    spec.app.version = std::string(32, 'v');    // no NUL terminator in the field
    spec.app.project_name = "caf\xC3\xA9\x01";  // non-ASCII bytes
    const auto r = inspect_bytes(testing::build_esp32_image(spec), Chip::esp32);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    EXPECT_EQ(r.info().app_desc->version, std::string(32, 'v'));
    EXPECT_EQ(r.info().app_desc->project_name, "caf???");
    EXPECT_NO_THROW(r.info().to_json().dump());
}

TEST(EspImageEsp32, WithoutAppendedHash) {
    Esp32Spec spec;
    spec.hash_appended = false;
    const std::string image = testing::build_esp32_image(spec);
    const auto r = inspect_bytes(image, Chip::esp32);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    EXPECT_EQ(r.info().hash_appended_flag, 0);
    EXPECT_FALSE(r.info().appended_sha256);
    EXPECT_EQ(r.info().file_size, 0xB440u);
    EXPECT_EQ(r.info().trailing_bytes, 0u);
}

TEST(EspImageEsp32, SignatureBlockAfterHashIsNotedAsTrailingBytes) {
    Esp32Spec spec;
    spec.trailer = std::string(80, '\x5A');  // secure boot v1: u32 version + 64-byte signature + padding
    const auto r = inspect_bytes(testing::build_esp32_image(spec), Chip::esp32);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    EXPECT_TRUE(r.info().appended_sha256);
    EXPECT_EQ(r.info().trailing_offset, 0xB460u);
    EXPECT_EQ(r.info().trailing_bytes, 80u);
}

TEST(EspImageEsp32, MinSizeGivesExactSizeForMultiplesOf16) {
    Esp32Spec spec;
    spec.min_size = 1048576;
    const std::string image = testing::build_esp32_image(spec);
    EXPECT_EQ(image.size(), 1048576u);
    const auto r = inspect_bytes(image, Chip::esp32);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    EXPECT_EQ(r.info().segments.back().length, 1048576u - 24 - 32 - 4 - 32 - 0x2000 - 0x400 - 0x1000);
}

TEST(EspImageEsp32, BuilderIsDeterministicAndSeedChangesFiller) {
    Esp32Spec spec;
    EXPECT_EQ(testing::build_esp32_image(spec), testing::build_esp32_image(spec));
    Esp32Spec other = spec;
    other.seed = 2;
    EXPECT_NE(testing::build_esp32_image(spec), testing::build_esp32_image(other));
}

struct BrokenCase {
    Break broken;
    std::string code;
};

TEST(EspImageEsp32, EveryBrokenVariantGivesItsCode) {
    const std::vector<BrokenCase> cases = {
        {Break::bad_magic, "bad-magic"},
        {Break::truncated_header, "truncated-header"},
        {Break::too_many_segments, "too-many-segments"},
        {Break::truncated_segment, "truncated-segment"},
        {Break::unaligned_segment, "unaligned-segment"},
        {Break::missing_checksum, "missing-checksum"},
        {Break::bad_checksum, "bad-checksum"},
        {Break::truncated_hash, "truncated-hash"},
        {Break::bad_appended_hash, "bad-appended-hash"},
        {Break::wrong_chip_id, "chip-mismatch"},
        {Break::unknown_chip_id, "unknown-chip"},
        {Break::bad_app_desc, "bad-app-desc"},
    };
    Esp32Spec spec;
    spec.chip = "esp32c3";
    for (const auto& c : cases) {
        const std::string image = testing::build_esp32_image(spec, c.broken);
        EXPECT_EQ(error_code(inspect_bytes(image, Chip::esp32c3)), c.code) << testing::to_string(c.broken);
        if (c.broken != Break::wrong_chip_id) {  // generic accepts any chip
            EXPECT_EQ(error_code(inspect_bytes(image, Chip::generic)), c.code) << testing::to_string(c.broken);
        }
    }
}

TEST(EspImageEsp32, ErrorDetailsNameOffsetsAndValues) {
    Esp32Spec spec;
    spec.chip = "esp32c3";
    auto r = inspect_bytes(testing::build_esp32_image(spec, Break::truncated_segment), Chip::esp32c3);
    ASSERT_FALSE(r.ok());
    // Last segment header at 0x3430 declares 0x8000 bytes; the file was cut after half of them.
    EXPECT_EQ(r.error().detail, "segment 3 at offset 0x3430 declares 32768 bytes but only 16384 remain");

    r = inspect_bytes(testing::build_esp32_image(spec, Break::wrong_chip_id), Chip::esp32c3);
    EXPECT_EQ(r.error().detail,
              "file is an ESP32-S3 app image (chip_id 0x0009) but the declared chip is esp32c3; the image is "
              "for esp32s3");

    r = inspect_bytes(testing::build_esp32_image(spec, Break::too_many_segments), Chip::esp32c3);
    EXPECT_EQ(r.error().detail, "header at offset 0x0 declares 17 segments; at most 16 are allowed");

    const std::string bad = testing::build_esp32_image(spec, Break::bad_checksum);
    r = inspect_bytes(bad, Chip::esp32c3);
    char expected[128];
    std::snprintf(expected, sizeof expected,
                  "checksum byte at offset 0xb43f is 0x%02x but the segment data gives 0x%02x",
                  static_cast<unsigned char>(bad[0xB43F]), static_cast<unsigned char>(bad[0xB43F] - 1));
    EXPECT_EQ(r.error().detail, expected);

    r = inspect_bytes(std::string("\x7f"
                                  "ELF",
                                  4),
                      Chip::esp32);
    EXPECT_EQ(r.error().code, "bad-magic");
    EXPECT_EQ(
        r.error().detail,
        "first byte is 0x7f; ESP images start with 0xe9 (ESP32 family, ESP8266 classic) or 0xea (ESP8266 FOTA V2)");
    EXPECT_EQ(error_code(inspect_bytes("", Chip::esp32)), "truncated-header");
}

TEST(EspImageEsp32, FourMiBThroughTheFileReaderInBoundedChunks) {
    Esp32Spec spec;
    spec.chip = "esp32s3";
    spec.min_size = 4 * 1024 * 1024;
    spec.app.version = "4.0.0";
    const std::string image = testing::build_esp32_image(spec);
    ASSERT_EQ(image.size(), 4u * 1024 * 1024);

    TempFile file(image);
    FileImageReader reader(file.path());
    EXPECT_EQ(reader.size(), image.size());
    const auto r = inspect_esp_image(reader, Chip::esp32s3);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    EXPECT_EQ(r.info().file_size, 4u * 1024 * 1024);
    EXPECT_EQ(r.info().app_desc->version, "4.0.0");
    EXPECT_EQ(util::to_hex(*r.info().appended_sha256),
              util::sha256_hex(std::string_view(image).substr(0, image.size() - 32)));

    CountingReader counting(image);
    ASSERT_TRUE(inspect_esp_image(counting, Chip::esp32s3).ok());
    EXPECT_LE(counting.largest_read, 64u * 1024);
    // One pass plus the first byte and the 256-byte esp_app_desc_t read again.
    EXPECT_EQ(counting.total_read, image.size() + 1 + 256);
}

TEST(EspImageReaders, FileReaderErrorsAndReadErrors) {
    EXPECT_THROW(FileImageReader("/nonexistent/otad/image.bin"), std::system_error);
    ThrowingReader throwing;
    const auto r = inspect_esp_image(throwing, Chip::esp32);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, "read-error");
    EXPECT_EQ(r.error().detail, "reading the image failed: disk on fire");
    MemoryImageReader mem("abc");
    char buf[4];
    EXPECT_THROW(mem.read(1, buf), std::out_of_range);
}

// ------------------------------------------------------------ ESP8266 classic

TEST(EspImageEsp8266Classic, ParsesAnRtosSdkV3AppWithItsFlashSize) {
    Esp8266ClassicSpec spec;
    spec.flash_mode = 2;
    spec.flash_size_map = 6;
    spec.flash_freq = 0xF;
    const std::string image = testing::build_esp8266_classic_image(spec);
    // 8 + 3 * 8 + 0x800 + 0x400 + 0x200 = 0xE20; checksum at 0xE2F; SHA-256 to 0xE50.
    ASSERT_EQ(image.size(), 0xE50u);
    const auto r = inspect_bytes(image, Chip::esp8266);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    const ImageInfo& info = r.info();
    EXPECT_EQ(info.format, ImageFormat::esp8266_classic);
    EXPECT_EQ(info.build, Esp8266Build::rtos_app);
    EXPECT_EQ(info.role, ImageRole::application);
    EXPECT_EQ(info.chip, Chip::esp8266);
    EXPECT_EQ(info.spi_mode, 2);
    EXPECT_EQ(info.spi_speed, 0xF);
    EXPECT_EQ(info.flash_size_map, 6u);
    // The size nibble of a classic image is a flash size (4MB-c1), not a FOTA map.
    EXPECT_FALSE(info.flash_layout);
    EXPECT_EQ(info.to_json().at("flash_size"), "4MB-c1");
    EXPECT_FALSE(info.to_json().contains("flash_layout"));
    EXPECT_EQ(implied_layout(info), Layout::ota);
    EXPECT_EQ(info.entry_addr, 0x40100004u);
    ASSERT_EQ(info.segments.size(), 3u);
    EXPECT_EQ(info.segments[0].load_addr, 0x40210010u);
    EXPECT_EQ(info.segments[1].header_offset, 0x810u);
    EXPECT_EQ(info.segments[1].load_addr, 0x40100000u);
    EXPECT_EQ(info.checksum_offset, 0xE2Fu);
    EXPECT_FALSE(info.app_desc);
    ASSERT_TRUE(info.appended_sha256);
    EXPECT_EQ(info.content_end, 0xE50u);
    EXPECT_EQ(info.trailing_bytes, 0u);
    // Auto-detection finds the same.
    EXPECT_EQ(inspect_bytes(image, Chip::generic).info().format, ImageFormat::esp8266_classic);
}

TEST(EspImageEsp8266Classic, RtosV3AppDescAndAppendedHash) {
    Esp8266ClassicSpec spec;
    spec.rtos_app_desc = true;
    spec.segments[0].length = 0x1000;
    spec.app.version = "3.1.0";
    spec.app.project_name = "rtos-app";
    const std::string image = testing::build_esp8266_classic_image(spec);
    const auto r = inspect_bytes(image, Chip::esp8266);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    ASSERT_TRUE(r.info().app_desc);
    EXPECT_EQ(r.info().app_desc->offset, 16u);
    EXPECT_EQ(r.info().app_desc->version, "3.1.0");
    EXPECT_EQ(r.info().app_desc->project_name, "rtos-app");
    ASSERT_TRUE(r.info().appended_sha256);
    EXPECT_EQ(util::to_hex(*r.info().appended_sha256),
              util::sha256_hex(std::string_view(image).substr(0, image.size() - 32)));
    EXPECT_EQ(r.info().trailing_bytes, 0u);

    EXPECT_EQ(
        error_code(inspect_bytes(testing::build_esp8266_classic_image(spec, Break::bad_appended_hash), Chip::esp8266)),
        "bad-appended-hash");
}

TEST(EspImageEsp8266Classic, EveryBrokenVariantGivesItsCode) {
    const std::vector<BrokenCase> cases = {
        {Break::bad_magic, "bad-magic"},
        {Break::truncated_header, "truncated-header"},
        {Break::too_many_segments, "too-many-segments"},
        {Break::truncated_segment, "truncated-segment"},
        {Break::missing_checksum, "missing-checksum"},
        {Break::bad_checksum, "bad-checksum"},
    };
    for (const auto& c : cases) {
        const std::string image = testing::build_esp8266_classic_image({}, c.broken);
        EXPECT_EQ(error_code(inspect_bytes(image, Chip::esp8266)), c.code) << testing::to_string(c.broken);
    }
}

// ------------------------------------------------------------ ESP8266 FOTA V2

TEST(EspImageEsp8266V2, User1AndUser2ForEveryFlashMap) {
    const std::vector<std::pair<std::uint8_t, Layout>> maps = {
        {0, Layout::nonos_256_256},   {2, Layout::nonos_512_512},   {3, Layout::nonos_512_512},
        {4, Layout::nonos_512_512},   {5, Layout::nonos_1024_1024}, {6, Layout::nonos_1024_1024},
        {8, Layout::nonos_1024_1024}, {9, Layout::nonos_1024_1024},
    };
    for (auto [map, layout] : maps) {
        for (int slot : {1, 2}) {
            Esp8266V2Spec spec;
            spec.slot = slot;
            spec.flash_map = map;
            spec.clk_div = 0xF;
            spec.flash_mode = 2;
            const std::string image = testing::build_esp8266_v2_image(spec);
            const std::string where = "map " + std::to_string(map) + " slot " + std::to_string(slot);
            const auto r = inspect_bytes(image, Chip::esp8266);
            ASSERT_TRUE(r.ok()) << where << ": " << r.error().detail;
            const ImageInfo& info = r.info();
            const std::string name = slot == 1 ? "user1" : "user2";
            EXPECT_EQ(info.format, ImageFormat::esp8266_v2) << where;
            EXPECT_EQ(info.chip, Chip::esp8266) << where;
            EXPECT_EQ(info.v2_header_byte1, 4) << where;
            EXPECT_EQ(info.v2_app_byte, slot) << where;
            EXPECT_EQ(info.slot, name) << where;
            EXPECT_EQ(info.flash_size_map, map) << where;
            EXPECT_EQ(info.flash_layout, layout) << where;
            EXPECT_EQ(info.spi_mode, 2) << where;
            EXPECT_EQ(info.spi_speed, 0xF) << where;
            EXPECT_EQ(info.irom_load_addr, 0u) << where;
            EXPECT_EQ(info.irom_length, 0x10000u) << where;
            ASSERT_EQ(info.segments.size(), 3u) << where;
            // 16 + 0x10000 + 8 = second header; RAM segments follow it.
            EXPECT_EQ(info.segments[0].header_offset, 0x10018u) << where;
            EXPECT_EQ(info.segments[0].load_addr, 0x40100000u) << where;
            // 0x10018 + 24 + 0x6000 + 0x400 + 0x1000 = 0x17430: 15 zeros, checksum at 0x1743F, CRC.
            EXPECT_EQ(info.checksum_offset, 0x1743Fu) << where;
            EXPECT_EQ(info.file_size, 0x17444u) << where;
            EXPECT_EQ(info.crc, testing::esp8266_stored_crc(std::string_view(image).substr(0, image.size() - 4)))
                << where;
            if (layout == Layout::nonos_1024_1024) {
                EXPECT_EQ(info.link_slot, "any") << where;
            } else {
                EXPECT_EQ(info.link_slot, name) << where;
                EXPECT_EQ(slot == 1 ? info.irom_pointers_user1 : info.irom_pointers_user2, 16u) << where;
                EXPECT_EQ(slot == 1 ? info.irom_pointers_user2 : info.irom_pointers_user1, 0u) << where;
            }
            EXPECT_FALSE(check_declared(info, Chip::esp8266, layout, name)) << where;
        }
    }
}

TEST(EspImageEsp8266V2, EsptoolPaddingAndSdk1AppByte) {
    Esp8266V2Spec spec;
    spec.gen_appbin_padding = false;
    spec.app_byte = 0x20;  // esptool / SDK 1.x write the flash size byte here
    spec.slot = 2;
    const auto r = inspect_bytes(testing::build_esp8266_v2_image(spec), Chip::esp8266);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    EXPECT_EQ(r.info().v2_app_byte, 0x20);
    EXPECT_EQ(r.info().slot, "unknown");
    EXPECT_EQ(r.info().link_slot, "user2");
}

TEST(EspImageEsp8266V2, OneMiBImageThroughTheFileReader) {
    Esp8266V2Spec spec;
    spec.flash_map = 6;
    spec.min_size = 1024 * 1024;
    const std::string image = testing::build_esp8266_v2_image(spec);
    EXPECT_GE(image.size(), 1024u * 1024);
    EXPECT_LT(image.size(), 1024u * 1024 + 32);
    TempFile file(image);
    FileImageReader reader(file.path());
    const auto r = inspect_esp_image(reader, Chip::esp8266);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    EXPECT_EQ(r.info().file_size, image.size());
    EXPECT_EQ(r.info().flash_layout, Layout::nonos_1024_1024);
}

TEST(EspImageEsp8266V2, EveryBrokenVariantGivesItsCode) {
    const std::vector<BrokenCase> cases = {
        {Break::bad_magic, "bad-magic"},
        {Break::truncated_header, "truncated-header"},
        {Break::too_many_segments, "too-many-segments"},
        {Break::truncated_segment, "truncated-segment"},
        {Break::missing_checksum, "missing-checksum"},
        {Break::bad_checksum, "bad-checksum"},
        {Break::bad_crc, "bad-crc"},
        {Break::bad_padding, "bad-padding"},
    };
    for (const auto& c : cases) {
        const std::string image = testing::build_esp8266_v2_image({}, c.broken);
        EXPECT_EQ(error_code(inspect_bytes(image, Chip::esp8266)), c.code) << testing::to_string(c.broken);
        EXPECT_EQ(error_code(inspect_bytes(image, Chip::generic)), c.code) << testing::to_string(c.broken);
    }
}

TEST(EspImageEsp8266V2, BadCrcDetail) {
    const std::string image = testing::build_esp8266_v2_image({}, Break::bad_crc);
    const auto r = inspect_bytes(image, Chip::esp8266);
    ASSERT_EQ(error_code(r), "bad-crc");
    const std::uint32_t good = testing::esp8266_stored_crc(std::string_view(image).substr(0, image.size() - 4));
    char expected[160];
    std::snprintf(expected, sizeof expected,
                  "CRC at offset 0x17440 is 0x%08x but bytes 0..0x1743f give 0x%08x (CRC-32 0x%08x)", good + 1, good,
                  testing::zlib_crc32(std::string_view(image).substr(0, image.size() - 4)));
    EXPECT_EQ(r.error().detail, expected);
}

// A V2 image written out by hand, byte by byte, with its CRC computed once with
// Python's zlib.crc32. The 15-byte RAM segment ends at 0x3F, so gen_appbin pads
// a full 16 zeros (its corner case) before the checksum at 0x4F.
TEST(EspImageEsp8266V2, HandComputedSmallExample) {
    std::string image;
    const unsigned char head[] = {0xEA, 4, 0, 1, 0x04, 0x00, 0x10, 0x40,  // V2 header, user1, entry 0x40100004
                                  0,    0, 0, 0, 16,   0,    0,    0};    // irom segment: addr 0, 16 bytes
    image.append(reinterpret_cast<const char*>(head), sizeof head);
    for (int i = 0; i < 16; ++i) image.push_back(static_cast<char>(i));             // irom 00..0f
    const unsigned char head2[] = {0xE9, 1,    0,    0x20, 0x04, 0x00, 0x10, 0x40,  // 1 segment, map 2
                                   0x00, 0x00, 0x10, 0x40, 15,   0,    0,    0};    // 15 bytes at 0x40100000
    image.append(reinterpret_cast<const char*>(head2), sizeof head2);
    for (int i = 1; i <= 15; ++i) image.push_back(static_cast<char>(i));  // 01..0f: XOR is 0
    image.append(16, '\0');
    image.push_back(static_cast<char>(0xEF));  // 0xEF ^ 0
    ASSERT_EQ(image.size(), 80u);

    // zlib.crc32 = 0xffeac4c7: negative as int32, so |c| - 1 = 0x00153b38.
    EXPECT_EQ(testing::zlib_crc32(image), 0xFFEAC4C7u);
    EXPECT_EQ(testing::esp8266_stored_crc(image), 0x00153B38u);
    EXPECT_EQ(crc32_update(0, util::as_bytes(image)), 0xFFEAC4C7u);
    EXPECT_EQ(esp8266_v2_crc(0xFFEAC4C7u), 0x00153B38u);
    image.append("\x38\x3b\x15\x00", 4);

    const auto r = inspect_bytes(image, Chip::esp8266);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    EXPECT_EQ(r.info().checksum_offset, 0x4Fu);
    EXPECT_EQ(r.info().checksum, 0xEF);
    EXPECT_EQ(r.info().crc, 0x00153B38u);
    EXPECT_EQ(r.info().slot, "user1");
    EXPECT_EQ(r.info().irom_length, 16u);
    EXPECT_EQ(r.info().link_slot, "unknown");  // no pointers at all
}

TEST(EspImageCrc, KnownVectorsAndBothBranchesOfTheRule) {
    EXPECT_EQ(testing::zlib_crc32("123456789"), 0xCBF43926u);
    EXPECT_EQ(crc32_update(0, util::as_bytes("123456789")), 0xCBF43926u);
    EXPECT_EQ(crc32_update(crc32_update(0, util::as_bytes("1234")), util::as_bytes("56789")), 0xCBF43926u);
    // c >= 2^31 (negative as int32): stored = c XOR 0xffffffff = |c| - 1.
    EXPECT_EQ(testing::esp8266_stored_crc("123456789"), 0x340BC6D9u);
    EXPECT_EQ(esp8266_v2_crc(0xCBF43926u), 0x340BC6D9u);
    // c < 2^31: stored = c + 1.
    EXPECT_EQ(testing::zlib_crc32("abc"), 0x352441C2u);
    EXPECT_EQ(testing::esp8266_stored_crc("abc"), 0x352441C3u);
    EXPECT_EQ(esp8266_v2_crc(0x352441C2u), 0x352441C3u);
    EXPECT_EQ(esp8266_v2_crc(0xFFFFFFFFu), 0u);
}

// ------------------------------------------------------------ cross-family

TEST(EspImageFamilies, ImageOfTheOtherFamilyIsAChipMismatch) {
    const std::string esp32 = testing::build_esp32_image({});
    const std::string v2 = testing::build_esp8266_v2_image({});
    const std::string classic = testing::build_esp8266_classic_image({});

    auto r = inspect_bytes(esp32, Chip::esp8266);
    EXPECT_EQ(error_code(r), "chip-mismatch");
    EXPECT_EQ(r.error().detail,
              "file is an ESP32 app image (chip_id 0x0000) but the declared chip is esp8266; the image is for esp32");
    r = inspect_bytes(v2, Chip::esp32c3);
    EXPECT_EQ(error_code(r), "chip-mismatch");
    EXPECT_EQ(
        r.error().detail,
        "file is an ESP8266 NONOS FOTA user bin (0xea) but the declared chip is esp32c3; the image is for esp8266");
    r = inspect_bytes(classic, Chip::esp32s3);
    EXPECT_EQ(r.error().detail,
              "file is an ESP8266 RTOS SDK v3 app image but the declared chip is esp32s3; the image is for esp8266");
    EXPECT_EQ(error_code(inspect_bytes(classic, Chip::esp32s3)), "chip-mismatch");
    EXPECT_EQ(error_code(inspect_bytes(esp32, Chip::esp32c6)), "chip-mismatch");

    EXPECT_EQ(inspect_bytes(esp32, Chip::generic).info().format, ImageFormat::esp32);
    EXPECT_EQ(inspect_bytes(v2, Chip::generic).info().format, ImageFormat::esp8266_v2);
    EXPECT_EQ(inspect_bytes(classic, Chip::generic).info().format, ImageFormat::esp8266_classic);
}

// ------------------------------------------------------------ check_declared

TEST(CheckDeclared, Esp32ChipLayoutAndSlot) {
    Esp32Spec spec;
    spec.chip = "esp32c3";
    const auto r = inspect_bytes(testing::build_esp32_image(spec), Chip::generic);
    ASSERT_TRUE(r.ok());
    const ImageInfo& info = r.info();
    auto code = [&](Chip chip, Layout layout, std::string_view slot) {
        auto e = check_declared(info, chip, layout, slot);
        return e ? e->code : std::string("ok");
    };
    EXPECT_EQ(code(Chip::esp32c3, Layout::ota, ""), "ok");
    EXPECT_EQ(code(Chip::esp32c3, Layout::ota, "ota_1"), "ok");
    EXPECT_EQ(code(Chip::esp32c3, Layout::ota, "ota_15"), "ok");
    EXPECT_EQ(code(Chip::esp32c3, Layout::single, ""), "ok");
    EXPECT_EQ(code(Chip::generic, Layout::single, ""), "ok");
    EXPECT_EQ(code(Chip::esp32c3, Layout::ota, "ota_16"), "bad-slot");
    EXPECT_EQ(code(Chip::esp32c3, Layout::ota, "user1"), "bad-slot");
    EXPECT_EQ(code(Chip::esp32c3, Layout::single, "ota_0"), "bad-slot");
    EXPECT_EQ(code(Chip::esp32s3, Layout::ota, ""), "chip-mismatch");
    EXPECT_EQ(code(Chip::esp8266, Layout::ota, ""), "chip-mismatch");
    EXPECT_EQ(code(Chip::esp32c3, Layout::nonos_512_512, "user1"), "layout-mismatch");
    const auto e = check_declared(info, Chip::esp32c3, Layout::ota, "ota_16");
    EXPECT_EQ(e->detail, "slot \"ota_16\" is not valid for layout ota; valid: \"\" (any), ota_0 .. ota_15");
}

TEST(CheckDeclared, Esp8266V2SlotAndFlashMap) {
    auto inspect_v2 = [](Esp8266V2Spec spec, Break broken = Break::none) {
        auto r = inspect_bytes(testing::build_esp8266_v2_image(spec, broken), Chip::esp8266);
        EXPECT_TRUE(r.ok()) << r.error().detail;
        return r.info();
    };
    auto code = [](const ImageInfo& info, Layout layout, std::string_view slot) {
        auto e = check_declared(info, Chip::esp8266, layout, slot);
        return e ? e->code : std::string("ok");
    };

    const ImageInfo user1_512 = inspect_v2({.slot = 1, .flash_map = 2});
    EXPECT_EQ(code(user1_512, Layout::nonos_512_512, "user1"), "ok");
    EXPECT_EQ(code(user1_512, Layout::nonos_512_512, "user2"), "slot-mismatch");
    EXPECT_EQ(check_declared(user1_512, Chip::esp8266, Layout::nonos_512_512, "user2")->detail,
              "image header byte 3 marks a user1 build; declared user2");
    EXPECT_EQ(code(user1_512, Layout::nonos_1024_1024, "user1"), "layout-mismatch");
    EXPECT_EQ(check_declared(user1_512, Chip::esp8266, Layout::nonos_1024_1024, "user1")->detail,
              "image is built for flash size map 2 (512+512); declared 1024+1024");
    EXPECT_EQ(code(user1_512, Layout::nonos_256_256, "user1"), "layout-mismatch");
    EXPECT_EQ(code(user1_512, Layout::ota, ""), "layout-mismatch");
    EXPECT_EQ(code(user1_512, Layout::single, ""), "layout-mismatch");
    EXPECT_EQ(code(user1_512, Layout::nonos_512_512, "ota_0"), "bad-slot");
    EXPECT_EQ(check_declared(user1_512, Chip::esp32, Layout::nonos_512_512, "user1")->code, "chip-mismatch");

    // 1024+1024: code is interchangeable, the app byte still names the build.
    const ImageInfo user2_1024 = inspect_v2({.slot = 2, .flash_map = 5});
    EXPECT_EQ(code(user2_1024, Layout::nonos_1024_1024, "user2"), "ok");
    EXPECT_EQ(code(user2_1024, Layout::nonos_1024_1024, "user1"), "slot-mismatch");

    // Byte 3 swapped against the link: both declarations are refused.
    const ImageInfo swapped = inspect_v2({.slot = 1, .flash_map = 3}, Break::slot_swapped);
    EXPECT_EQ(swapped.slot, "user2");
    EXPECT_EQ(swapped.link_slot, "user1");
    EXPECT_EQ(code(swapped, Layout::nonos_512_512, "user1"), "slot-mismatch");
    EXPECT_EQ(code(swapped, Layout::nonos_512_512, "user2"), "slot-mismatch");
    EXPECT_EQ(check_declared(swapped, Chip::esp8266, Layout::nonos_512_512, "user2")->detail,
              "image code is linked for user1 (16 pointers into the user1 irom window, 0 into user2); declared user2");

    // SDK 1.x style (size byte in byte 3): the link census decides for 512+512 ...
    const ImageInfo sdk1_user2 = inspect_v2({.slot = 2, .app_byte = 0x20, .flash_map = 2});
    EXPECT_EQ(sdk1_user2.slot, "unknown");
    EXPECT_EQ(code(sdk1_user2, Layout::nonos_512_512, "user2"), "ok");
    EXPECT_EQ(code(sdk1_user2, Layout::nonos_512_512, "user1"), "slot-mismatch");
    // ... and nothing can tell when there are no pointers, or for 1024+1024.
    const ImageInfo no_pointers = inspect_v2({.slot = 2, .app_byte = 0x20, .flash_map = 2, .irom_pointers = 0});
    EXPECT_EQ(no_pointers.link_slot, "unknown");
    EXPECT_EQ(code(no_pointers, Layout::nonos_512_512, "user1"), "ok");
    const ImageInfo sdk1_1024 = inspect_v2({.slot = 1, .app_byte = 0x60, .flash_map = 6});
    EXPECT_EQ(code(sdk1_1024, Layout::nonos_1024_1024, "user1"), "ok");
    EXPECT_EQ(code(sdk1_1024, Layout::nonos_1024_1024, "user2"), "ok");

    // Flash map 1 (256 KB, no FOTA) and 7 (2048+2048, unsupported).
    for (std::uint8_t map : {1, 7}) {
        const ImageInfo odd = inspect_v2({.slot = 1, .flash_map = map});
        EXPECT_FALSE(odd.flash_layout);
        EXPECT_EQ(code(odd, Layout::nonos_512_512, "user1"), "layout-mismatch") << int(map);
    }
}

TEST(CheckDeclared, Esp8266ClassicIsNotAFotaUserBin) {
    const auto r = inspect_bytes(testing::build_esp8266_classic_image({}), Chip::esp8266);
    ASSERT_TRUE(r.ok());
    const auto e = check_declared(r.info(), Chip::esp8266, Layout::nonos_512_512, "user1");
    EXPECT_EQ(e->code, "layout-mismatch");
    EXPECT_EQ(e->detail,
              "layout 512+512 needs an ESP8266 NONOS FOTA user1/user2 bin (first byte 0xea), but the "
              "file is an ESP8266 RTOS SDK v3 app image");
    EXPECT_FALSE(check_declared(r.info(), Chip::esp8266, Layout::ota, "ota_0"));
    EXPECT_FALSE(check_declared(r.info(), Chip::esp8266, Layout::ota, ""));
}

// ------------------------------------------------------------ Arduino ESP8266 bins

TEST(EspImageArduino, EbootThenTheSketchWithItsCrc) {
    const testing::ArduinoSpec spec;
    const std::string image = testing::build_arduino_image(spec);
    const auto r = inspect_bytes(image, Chip::esp8266);
    ASSERT_TRUE(r.ok()) << r.error().code << ": " << r.error().detail;
    const ImageInfo& info = r.info();
    EXPECT_EQ(info.format, ImageFormat::esp8266_classic);
    EXPECT_EQ(info.build, Esp8266Build::arduino);
    EXPECT_EQ(info.role, ImageRole::application);
    EXPECT_EQ(implied_layout(info), Layout::single);
    ASSERT_TRUE(info.arduino);
    const ArduinoSketch& sketch = *info.arduino;
    ASSERT_EQ(sketch.eboot_segments.size(), 2u);
    EXPECT_EQ(sketch.eboot_segments[0].load_addr, 0x4010F000u);
    EXPECT_EQ(sketch.eboot_entry_addr, 0x4010F29Cu);
    EXPECT_EQ(sketch.app_offset, 0x1000u);
    // Every segment of the sketch is walked, not only the first.
    ASSERT_EQ(info.segments.size(), 5u);
    EXPECT_EQ(info.segments[0].header_offset, 0x1008u);
    EXPECT_EQ(info.segments[0].load_addr, 0x40201010u);
    EXPECT_EQ(info.segments[4].load_addr, 0x3FFE8400u);
    EXPECT_EQ(info.entry_addr, 0x401000E0u);
    // 0x1000 + 8 + 5 * 8 + 0x8000 + 0x1000 + 0x100 + 0x400 + 0x300 = 0xA830; checksum at 0xA83F.
    EXPECT_EQ(info.checksum_offset, 0xA83Fu);
    EXPECT_EQ(info.content_end, image.size());
    EXPECT_EQ(image.size(), 0xA840u);
    EXPECT_TRUE(sketch.has_crc);
    EXPECT_EQ(sketch.crc_length, image.size());
    std::string zeroed = image;
    std::fill_n(zeroed.begin() + 0x1010, 8, '\0');
    EXPECT_EQ(sketch.crc, testing::arduino_crc(zeroed));
    EXPECT_EQ(sketch.signature_bytes, 0u);
    EXPECT_EQ(info.trailing_bytes, 0u);
    // The flash settings are those of the first header (what the ROM and the Updater read).
    EXPECT_EQ(info.spi_mode, 2);
    EXPECT_EQ(info.to_json().at("flash_size"), "4MB");
    EXPECT_EQ(info.to_json().at("build"), "arduino");
    EXPECT_EQ(info.to_json().at("arduino").at("crc").at("length"), image.size());
    EXPECT_FALSE(info.to_json().contains("flash_layout"));
    EXPECT_FALSE(check_declared(info, Chip::esp8266, Layout::single, ""));
    EXPECT_EQ(inspect_bytes(image, Chip::generic).info().build, Esp8266Build::arduino);
}

TEST(EspImageArduino, OlderCoreWithoutCrcSignedAndErasedFillAreAccepted) {
    testing::ArduinoSpec spec;
    spec.with_crc = false;
    auto r = inspect_bytes(testing::build_arduino_image(spec), Chip::esp8266);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    EXPECT_FALSE(r.info().arduino->has_crc);

    spec = {};
    spec.signature_bytes = 256;  // RSA-2048, tools/signing.py
    r = inspect_bytes(testing::build_arduino_image(spec), Chip::esp8266);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    EXPECT_EQ(r.info().arduino->signature_bytes, 256u);
    EXPECT_EQ(r.info().trailing_bytes, 0u);

    spec = {};
    spec.erased_fill = true;
    const std::string filled = testing::build_arduino_image(spec);
    ASSERT_EQ(filled.size() % 4096, 0u);
    r = inspect_bytes(filled, Chip::esp8266);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    EXPECT_EQ(r.info().content_end, 0xA840u);
}

TEST(EspImageArduino, TruncatedOrFlippedSketchesAreRefused) {
    const std::vector<BrokenCase> cases = {
        {Break::truncated_segment, "truncated-segment"},  // the sketch cut in its last segment
        {Break::missing_checksum, "missing-checksum"},
        {Break::bad_checksum, "bad-checksum"},
        {Break::flipped_byte, "bad-checksum"},       // a byte in the middle of the sketch's code
        {Break::flipped_last_byte, "bad-checksum"},  // the last byte (the checksum)
        {Break::bad_crc, "bad-crc"},
        {Break::bad_padding, "bad-padding"},
        {Break::too_many_segments, "too-many-segments"},
        {Break::bad_magic, "bad-magic"},
        {Break::truncated_header, "truncated-header"},
    };
    for (const auto& c : cases) {
        const std::string image = testing::build_arduino_image({}, c.broken);
        EXPECT_EQ(error_code(inspect_bytes(image, Chip::esp8266)), c.code) << testing::to_string(c.broken);
    }
    // Without the CRC (core < 3.0) the XOR checksum alone still catches a flipped byte.
    testing::ArduinoSpec old_core;
    old_core.with_crc = false;
    EXPECT_EQ(error_code(inspect_bytes(testing::build_arduino_image(old_core, Break::flipped_byte), Chip::esp8266)),
              "bad-checksum");
    // A byte no checksum covers (the sketch header's flash mode) is caught by the CRC.
    std::string image = testing::build_arduino_image({});
    image[0x1002] = static_cast<char>(image[0x1002] ^ 1);
    EXPECT_EQ(error_code(inspect_bytes(image, Chip::esp8266)), "bad-crc");
    // Cut short inside the 0xAA fill: not a bootloader, a truncated sketch bin.
    const auto cut = inspect_bytes(testing::build_arduino_image({}).substr(0, 0x900), Chip::esp8266);
    EXPECT_EQ(error_code(cut), "truncated-header");
}

TEST(EspImageArduino, LengthWordThatDisagreesWithTheEndIsABadCrc) {
    std::string image = testing::build_arduino_image({});
    image[0x1010] = static_cast<char>(image[0x1010] + 16);  // the file "should" be 16 bytes longer
    const auto r = inspect_bytes(image, Chip::esp8266);
    EXPECT_EQ(error_code(r), "bad-crc");
    EXPECT_NE(
        r.error().detail.find("length word at offset 0x1010 says 43088 bytes but the image ends at offset 0xa840"),
        std::string::npos)
        << r.error().detail;
}

TEST(EspImageArduino, TrailingDataIsRefusedUnlessAllowed) {
    testing::ArduinoSpec spec;
    spec.trailer = "this is not part of any image";
    const std::string image = testing::build_arduino_image(spec);
    auto r = inspect_bytes(image, Chip::esp8266);
    EXPECT_EQ(error_code(r), "trailing-data");
    EXPECT_EQ(r.error().detail,
              "29 bytes follow the end of the image at offset 0xa840 (they start 74686973206973206e6f742070617274...), "
              "where elf2bin writes nothing but an optional signature block (tools/signing.py); a concatenated or "
              "damaged file? Upload with trailing_data=allow to keep them");
    MemoryImageReader reader(image);
    r = inspect_esp_image(reader, Chip::esp8266, {.allow_trailing_data = true});
    ASSERT_TRUE(r.ok()) << r.error().detail;
    EXPECT_EQ(r.info().trailing_offset, 0xA840u);
    EXPECT_EQ(r.info().trailing_bytes, 29u);

    // The same for an RTOS SDK v3 app, after its SHA-256; 0xFF up to 4 KiB is fine.
    Esp8266ClassicSpec rtos;
    rtos.trailer = std::string(40, 'x');
    EXPECT_EQ(error_code(inspect_bytes(testing::build_esp8266_classic_image(rtos), Chip::esp8266)), "trailing-data");
    rtos.trailer.clear();
    rtos.erased_fill = true;
    EXPECT_TRUE(inspect_bytes(testing::build_esp8266_classic_image(rtos), Chip::esp8266).ok());
    // ... but 0xFF that does not end on a 4 KiB boundary is not a fill.
    rtos.erased_fill = false;
    rtos.trailer = std::string(100, '\xff');
    EXPECT_EQ(error_code(inspect_bytes(testing::build_esp8266_classic_image(rtos), Chip::esp8266)), "trailing-data");
}

TEST(EspImageArduino, SketchWithoutEbootFitsNoLayout) {
    const std::string image = testing::build_arduino_image({}).substr(0x1000);
    const auto r = inspect_bytes(image, Chip::esp8266);
    ASSERT_TRUE(r.ok()) << r.error().detail;
    EXPECT_EQ(r.info().build, Esp8266Build::unknown_app);
    EXPECT_FALSE(implied_layout(r.info()));
    for (Layout layout : {Layout::single, Layout::ota}) {
        const auto e = check_declared(r.info(), Chip::esp8266, layout, "");
        ASSERT_TRUE(e);
        EXPECT_EQ(e->code, "layout-mismatch");
        EXPECT_NE(e->detail.find("an ESP8266 Arduino sketch without its eboot"), std::string::npos) << e->detail;
    }
}

TEST(EspImageArduino, RtosAppNeedsItsAppendedHash) {
    Esp8266ClassicSpec spec;
    spec.append_sha256 = false;
    EXPECT_EQ(error_code(inspect_bytes(testing::build_esp8266_classic_image(spec), Chip::esp8266)), "truncated-hash");
    EXPECT_EQ(
        error_code(inspect_bytes(testing::build_esp8266_classic_image({}, Break::flipped_last_byte), Chip::esp8266)),
        "bad-appended-hash");
    EXPECT_EQ(error_code(inspect_bytes(testing::build_esp8266_classic_image({}, Break::flipped_byte), Chip::esp8266)),
              "bad-checksum");
}

// ------------------------------------------------------------ layouts per ESP8266 build

TEST(CheckDeclared, Esp8266ClassicBuildsMatchTheirLayoutOnly) {
    const ImageInfo arduino = inspect_bytes(testing::build_arduino_image({}), Chip::esp8266).info();
    const ImageInfo rtos = inspect_bytes(testing::build_esp8266_classic_image({}), Chip::esp8266).info();
    auto e = check_declared(arduino, Chip::esp8266, Layout::ota, "");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code, "layout-mismatch");
    EXPECT_EQ(e->detail,
              "file is an ESP8266 Arduino sketch bin (eboot, then the sketch at 0x1000), which layout "
              "single serves; layout ota is for ESP8266 RTOS SDK v3 and ESP-IDF apps");
    e = check_declared(rtos, Chip::esp8266, Layout::single, "");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->code, "layout-mismatch");
    EXPECT_EQ(e->detail,
              "file is an ESP8266 RTOS SDK v3 app image, which layout ota serves; layout single on ESP8266 "
              "is for Arduino sketch bins (eboot at 0x0, the sketch at 0x1000)");
    EXPECT_EQ(check_declared(arduino, Chip::esp8266, Layout::nonos_1024_1024, "user1")->code, "layout-mismatch");
    EXPECT_FALSE(check_declared(arduino, Chip::esp8266, Layout::single, ""));
    EXPECT_FALSE(check_declared(rtos, Chip::esp8266, Layout::ota, ""));
    // ESP32-family images fit both ota and single; V2 bins their flash map's layout.
    const ImageInfo esp32 = inspect_bytes(testing::build_esp32_image({}), Chip::esp32).info();
    EXPECT_FALSE(implied_layout(esp32));
    EXPECT_EQ(implied_layout(inspect_bytes(testing::build_esp8266_v2_image({.flash_map = 5}), Chip::esp8266).info()),
              Layout::nonos_1024_1024);
}

// ------------------------------------------------------------ bootloaders

TEST(EspImageBootloader, Esp8266BootloadersAreRefusedAsSuch) {
    for (const auto& [spec, hint] : {std::pair{testing::esp8266_nonos_bootloader_spec(), "boot_v1.x.bin"},
                                     std::pair{testing::esp8266_eboot_spec(), "Arduino's eboot"}}) {
        const std::string image = testing::build_esp8266_classic_image(spec);
        for (Chip declared : {Chip::esp8266, Chip::generic}) {
            const auto r = inspect_bytes(image, declared);
            EXPECT_EQ(error_code(r), "bootloader");
            EXPECT_TRUE(r.error().detail.starts_with("file is an ESP8266 bootloader, not an application"))
                << r.error().detail;
            EXPECT_NE(r.error().detail.find(hint), std::string::npos) << r.error().detail;
        }
        // Of another chip, it is first of all the wrong chip.
        const auto r = inspect_bytes(image, Chip::esp32c3);
        EXPECT_EQ(error_code(r), "chip-mismatch");
        EXPECT_EQ(r.error().detail,
                  "file is an ESP8266 bootloader but the declared chip is esp32c3; the image is for esp8266");
    }
}

TEST(EspImageBootloader, EveryEsp32FamilyBootloaderIsRefused) {
    for (Chip chip : all_chips()) {
        if (!is_esp32_family(chip)) continue;
        for (bool with_desc : {true, false}) {
            Esp32Spec spec;
            spec.chip = std::string(to_string(chip));
            spec.bootloader = true;
            spec.bootloader_desc = with_desc;
            spec.app.idf_ver = "v5.3.2";
            const std::string image = testing::build_esp32_image(spec);
            const auto r = inspect_bytes(image, chip);
            const std::string where = spec.chip + (with_desc ? " with desc" : " without desc");
            ASSERT_EQ(error_code(r), "bootloader") << where;
            EXPECT_NE(r.error().detail.find("bootloader"), std::string::npos) << where;
            EXPECT_EQ(r.error().detail.find("built with esp-idf v5.3.2") != std::string::npos, with_desc) << where;
            EXPECT_EQ(error_code(inspect_bytes(image, Chip::generic)), "bootloader") << where;
            EXPECT_EQ(error_code(inspect_bytes(image, Chip::esp8266)), "chip-mismatch") << where;
            const Chip other = chip == Chip::esp32 ? Chip::esp32c3 : Chip::esp32;
            EXPECT_EQ(error_code(inspect_bytes(image, other)), "chip-mismatch") << where;
        }
    }
    Esp32Spec c3;
    c3.chip = "esp32c3";
    c3.bootloader = true;
    const auto r = inspect_bytes(testing::build_esp32_image(c3), Chip::esp32c3);
    EXPECT_EQ(r.error().detail,
              "file is an ESP32-C3 bootloader (chip_id 0x0005) built with esp-idf v5.2.1, not an application: its 3 "
              "segment(s) load into RAM (0x3fc88000, 0x40380000, 0x40384000) and none into flash-mapped memory "
              "(0x42000000..0x427fffff, 0x3c000000..0x3c7fffff) and there is no esp_app_desc_t: a second-stage "
              "bootloader (or another RAM-only program), which esptool flashes at 0x0 on an ESP32-C3 and which is "
              "never an update. Upload the application (build/<project>.bin)");
    c3.chip = "esp32";
    const auto e32 = inspect_bytes(testing::build_esp32_image(c3), Chip::esp32c3);
    EXPECT_EQ(e32.error().detail,
              "file is an ESP32 bootloader (chip_id 0x0000) but the declared chip is esp32c3; the image is for "
              "esp32");
}

TEST(EspImageBootloader, AnAppWithoutAppDescStaysBadAppDesc) {
    // Flash-mapped segments make it an app: its missing esp_app_desc_t is the fault.
    for (const char* chip : {"esp32", "esp32c3", "esp32c6", "esp32p4"}) {
        Esp32Spec spec;
        spec.chip = chip;
        EXPECT_EQ(error_code(inspect_bytes(testing::build_esp32_image(spec, Break::bad_app_desc), Chip::generic)),
                  "bad-app-desc")
            << chip;
    }
}

// ------------------------------------------------------------ robustness

// Every single-byte corruption and every truncation of small images either
// fails with a known code or (for bytes no check covers) still parses; the
// inspector never throws or reads out of bounds.
TEST(EspImageRobustness, EveryByteFlipAndTruncation) {
    const std::set<std::string> known = {"ok",
                                         "truncated-header",
                                         "bad-magic",
                                         "too-many-segments",
                                         "truncated-segment",
                                         "unaligned-segment",
                                         "missing-checksum",
                                         "bad-checksum",
                                         "truncated-hash",
                                         "bad-appended-hash",
                                         "bad-app-desc",
                                         "unknown-chip",
                                         "chip-mismatch",
                                         "bad-padding",
                                         "bad-crc",
                                         "bootloader",
                                         "bad-load-address",
                                         "trailing-data"};
    Esp32Spec esp32;
    esp32.segments = {{0x3F400020, 0x120}, {0x40080000, 0x40}};
    Esp8266V2Spec v2;
    v2.irom_length = 0x40;
    v2.irom_pointers = 4;
    v2.ram_segments = {{0x40100000, 0x40}, {0x3FFE8000, 0x10}};
    Esp8266ClassicSpec classic;
    classic.segments = {{0x40210010, 0x40}, {0x40100000, 0x10}};
    testing::ArduinoSpec arduino;
    arduino.eboot_segments = {{0x4010F000, 0x40}};
    arduino.app_segments = {{0x40201010, 0x40}, {0x40100000, 0x10}, {0x3FFE8000, 0x8}};
    const std::vector<std::pair<std::string, Chip>> images = {
        {testing::build_esp32_image(esp32), Chip::esp32},
        {testing::build_esp8266_v2_image(v2), Chip::esp8266},
        {testing::build_esp8266_classic_image(classic), Chip::esp8266},
        {testing::build_arduino_image(arduino), Chip::esp8266},
    };
    for (const auto& [image, chip] : images) {
        for (Chip declared : {chip, Chip::generic}) {
            ASSERT_TRUE(inspect_bytes(image, declared).ok());
            std::size_t rejected = 0;
            for (std::size_t i = 0; i < image.size(); ++i) {
                std::string flipped = image;
                flipped[i] = static_cast<char>(flipped[i] ^ 0xFF);
                const std::string code = error_code(inspect_bytes(flipped, declared));
                EXPECT_TRUE(known.contains(code)) << code << " at " << i;
                rejected += code != "ok";
            }
            // Only bytes outside the checksum/hash/CRC (ESP32 header fields, the
            // ESP8266 V2 irom) may change unnoticed.
            EXPECT_GT(rejected, image.size() / 2);
            for (std::size_t n = 0; n < image.size(); ++n) {
                const std::string code = error_code(inspect_bytes(image.substr(0, n), declared));
                EXPECT_NE(code, "ok") << "truncated to " << n;
                EXPECT_TRUE(known.contains(code)) << code << " at " << n;
            }
        }
    }
}

// ------------------------------------------------------------ JSON

TEST(EspImageJson, Esp32AndV2Documents) {
    Esp32Spec spec;
    spec.chip = "esp32c3";
    spec.app.version = "1.2.0";
    const std::string image = testing::build_esp32_image(spec);
    const auto j = inspect_bytes(image, Chip::esp32c3).info().to_json();
    EXPECT_EQ(j.at("format"), "esp32");
    EXPECT_EQ(j.at("chip"), "esp32c3");
    EXPECT_EQ(j.at("chip_id"), 5);
    EXPECT_EQ(j.at("file_size"), image.size());
    EXPECT_EQ(j.at("entry_addr"), "0x40081000");
    EXPECT_EQ(j.at("segments").size(), 4u);
    EXPECT_EQ(j.at("segments")[0].at("load_addr"), "0x3c000020");
    EXPECT_EQ(j.at("app_desc").at("version"), "1.2.0");
    EXPECT_EQ(j.at("app_desc").at("offset"), 32);
    EXPECT_EQ(j.at("appended_sha256"), util::sha256_hex(std::string_view(image).substr(0, image.size() - 32)));
    EXPECT_EQ(j.at("hash_appended"), 1);
    EXPECT_FALSE(j.contains("v2"));

    const auto v2 =
        inspect_bytes(testing::build_esp8266_v2_image({.slot = 2, .flash_map = 4}), Chip::esp8266).info().to_json();
    EXPECT_EQ(v2.at("format"), "esp8266-v2");
    EXPECT_EQ(v2.at("chip"), "esp8266");
    EXPECT_EQ(v2.at("flash_size_map"), 4);
    EXPECT_EQ(v2.at("flash_layout"), "512+512");
    EXPECT_EQ(v2.at("flash_size"), "4MB");
    EXPECT_EQ(v2.at("role"), "application");
    EXPECT_EQ(v2.at("v2").at("slot"), "user2");
    EXPECT_EQ(v2.at("v2").at("link_slot"), "user2");
    EXPECT_EQ(v2.at("v2").at("app_byte"), 2);
    EXPECT_TRUE(v2.at("app_desc").is_null());
    EXPECT_TRUE(v2.at("appended_sha256").is_null());

    const ImageError e{"bad-crc", "x"};
    EXPECT_EQ(e.to_json().dump(), R"({"code":"bad-crc","detail":"x"})");
}

}  // namespace
}  // namespace otad::domain
