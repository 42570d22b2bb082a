#pragma once
// Inspection of Espressif application images at upload time: ESP32-family
// images (24-byte header, chip_id, esp_app_desc_t, appended SHA-256) and
// ESP8266 images (classic 0xE9: Arduino sketches with eboot in front, RTOS SDK
// v3 apps; NONOS FOTA "V2" 0xEA user1/user2 bins). Byte layouts and their
// sources: docs/esp-image-formats.md.
//
// The inspector reads through a random-access ImageReader in bounded chunks
// (64 KiB), so a file is never loaded whole. It walks every image in the file
// (an Arduino bin holds two: eboot, then the sketch at 0x1000), validates
// structure, the XOR checksums, the appended SHA-256, the V2 CRC and the
// Arduino CRC, checks that the file ends where its content ends, and reports
// what the image says about itself (chip, role, version, slot, flash map, the
// layout it implies). Bootloaders are recognised and refused: they are images,
// but never an update. check_declared() then compares the image with what the
// uploader declared.

#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "otad/domain/firmware_types.hpp"

namespace otad::domain {

// Random access to the bytes of one image. read() fills `out` completely from
// `offset` or throws (std::runtime_error / std::system_error); callers never ask
// beyond size().
struct ImageReader {
    virtual ~ImageReader() = default;
    virtual std::uint64_t size() const = 0;
    virtual void read(std::uint64_t offset, std::span<char> out) const = 0;
};

// Over bytes the caller keeps alive (tests, a memory-mapped blob).
class MemoryImageReader final : public ImageReader {
public:
    explicit MemoryImageReader(std::string_view bytes) noexcept : bytes_(bytes) {}
    std::uint64_t size() const override { return bytes_.size(); }
    void read(std::uint64_t offset, std::span<char> out) const override;

private:
    std::string_view bytes_;
};

// Over a file, with pread(2). Throws std::system_error naming the path if it
// cannot be opened. The file must not change while it is inspected.
class FileImageReader final : public ImageReader {
public:
    explicit FileImageReader(const std::filesystem::path& path);
    ~FileImageReader() override;
    FileImageReader(const FileImageReader&) = delete;
    FileImageReader& operator=(const FileImageReader&) = delete;
    std::uint64_t size() const override { return size_; }
    void read(std::uint64_t offset, std::span<char> out) const override;

private:
    std::filesystem::path path_;
    int fd_ = -1;
    std::uint64_t size_ = 0;
};

// ESP32-family chip_id (esp_image_header_t offset 12) <-> Chip.
// nullopt for esp8266/generic, and for ids no known chip uses.
std::optional<std::uint16_t> esp_chip_id(Chip chip) noexcept;
std::optional<Chip> chip_for_esp_chip_id(std::uint16_t chip_id) noexcept;

enum class ImageFormat { esp32, esp8266_classic, esp8266_v2 };
std::string_view to_string(ImageFormat format) noexcept;  // "esp32", "esp8266-classic", "esp8266-v2"

// What the image is for. A bootloader is a complete, valid image that a device
// must never receive as an update (inspect_esp_image refuses it).
enum class ImageRole { application, bootloader };
std::string_view to_string(ImageRole role) noexcept;  // "application", "bootloader"

// How an ESP8266 classic (0xE9) file is put together, from its segment layout:
//  arduino      eboot (RAM-only) at 0, 0xAA up to 0x1000, the sketch at 0x1000
//               whose first segment is irom0 at 0x40201010 (esp8266/Arduino
//               tools/elf2bin.py); what layout single serves
//  rtos_app     one image whose first segment is flash-mapped code (ESP8266_RTOS_SDK
//               v3: its esptool fork writes flash segments first); layout ota
//  unknown_app  one image with flash-mapped code that is neither, e.g. an Arduino
//               sketch cut off its eboot (first segment at 0x40201010): no layout
//               runs it
//  bootloader   every segment loads into RAM: boot_v1.x, the RTOS SDK bootloader,
//               eboot alone (or a NONOS eagle.flash.bin without its irom0 file)
enum class Esp8266Build { none, arduino, rtos_app, unknown_app, bootloader };
std::string_view to_string(Esp8266Build build) noexcept;  // "arduino", "rtos-app", ...

// Options of one inspection.
struct InspectOptions {
    // Bytes after the end of an ESP8266 classic image that no toolchain writes
    // are refused ("trailing-data") unless this is set; they are then reported.
    bool allow_trailing_data = false;
};

struct SegmentInfo {
    std::uint64_t header_offset = 0;  // file offset of the 8-byte segment header
    std::uint32_t load_addr = 0;
    std::uint32_t length = 0;  // data bytes after the header
};

// esp_app_desc_t (256 bytes). Strings stop at the first NUL; bytes outside
// printable ASCII are shown as '?', so the values are always valid UTF-8.
struct AppDescription {
    std::uint64_t offset = 0;  // file offset (32 for ESP32 apps, 16 for ESP8266 RTOS v3)
    std::uint32_t secure_version = 0;
    std::string version;
    std::string project_name;
    std::string time;
    std::string date;
    std::string idf_ver;
    std::array<std::uint8_t, 32> app_elf_sha256{};
    // IDF >= 5.4 fields; older images hold zeros there (reserved), reported as-is.
    std::uint16_t min_efuse_blk_rev_full = 0;
    std::uint16_t max_efuse_blk_rev_full = 0;
    std::uint8_t mmu_page_size = 0;  // log2; 0 = not set
};

// esp_bootloader_desc_t (esp-idf components/esp_bootloader_format/include/
// esp_bootloader_desc.h): starts the first segment of IDF >= 5.2 bootloaders.
struct BootloaderDescription {
    std::uint8_t secure_version = 0;
    std::uint32_t version = 0;
    std::string idf_ver;
    std::string date_time;
};

// The Arduino ESP8266 part of a classic file (Esp8266Build::arduino).
struct ArduinoSketch {
    std::vector<SegmentInfo> eboot_segments;
    std::uint32_t eboot_entry_addr = 0;
    std::uint64_t eboot_checksum_offset = 0;
    std::uint64_t app_offset = 0x1000;  // the sketch's 0xE9 header
    // elf2bin.py add_crc (esp8266/Arduino core >= 3.0): the file length at 0x1010
    // and a CRC-32 (poly 0x04C11DB7, MSB first, no final XOR) of the file with
    // those 8 bytes zeroed at 0x1014. Absent in older builds.
    bool has_crc = false;
    std::uint32_t crc_length = 0;
    std::uint32_t crc = 0;
    // tools/signing.py: signature + u32 length after the image (0 = unsigned).
    std::uint32_t signature_bytes = 0;
};

struct ImageInfo {
    ImageFormat format = ImageFormat::esp32;
    Chip chip = Chip::generic;  // from chip_id for ESP32 family; esp8266 for ESP8266 formats
    ImageRole role = ImageRole::application;
    std::uint64_t file_size = 0;

    // The (second, for V2) 0xE9 header.
    std::uint8_t spi_mode = 0;   // 0 QIO, 1 QOUT, 2 DIO, 3 DOUT, 4 FAST_READ, 5 SLOW_READ
    std::uint8_t spi_speed = 0;  // low nibble of byte 3 (chip-specific meaning)
    std::uint8_t spi_size = 0;   // high nibble of byte 3 (ESP32: 0 = 1MB .. 7 = 128MB; ESP8266: see below)
    std::uint32_t entry_addr = 0;
    // V2: RAM segments only (the irom segment is below); Arduino: the sketch's.
    std::vector<SegmentInfo> segments;

    std::uint64_t checksum_offset = 0;
    std::uint8_t checksum = 0;  // stored == computed (inspection fails otherwise)

    // ESP32 family (24-byte header).
    std::uint16_t chip_id = 0;
    std::uint8_t wp_pin = 0;
    std::uint8_t min_chip_rev = 0;
    std::uint16_t min_chip_rev_full = 0;
    std::uint16_t max_chip_rev_full = 0;  // 0 or 0xFFFF = not set
    std::uint8_t hash_appended_flag = 0;  // header byte 23

    // Appended SHA-256 of [0, checksum], verified. ESP32: when byte 23 is set.
    // ESP8266 classic: found after the checksum (RTOS SDK v3 appends it without a flag).
    std::optional<std::array<std::uint8_t, 32>> appended_sha256;

    std::optional<AppDescription> app_desc;                // ESP32 apps: always; ESP8266 classic: RTOS v3 apps
    std::optional<BootloaderDescription> bootloader_desc;  // ESP32 bootloaders of IDF >= 5.2

    // Where the image's content ends, and what follows it. ESP32: a secure-boot
    // signature block or padding, reported. ESP8266 classic: only what the
    // toolchains write (an Arduino signature block, 0xFF up to a 4 KiB boundary)
    // unless InspectOptions::allow_trailing_data.
    std::uint64_t content_end = 0;
    std::uint64_t trailing_offset = 0;
    std::uint64_t trailing_bytes = 0;

    // ESP8266. The size nibble is the flash size (esptool: 0 512KB, 1 256KB,
    // 2 1MB, 3 2MB, 4 4MB, 5 2MB-c1, 6 4MB-c1, 8 8MB, 9 16MB); only in a V2
    // FOTA bin does it also name a NONOS flash map and so a layout.
    std::optional<unsigned> flash_size_map;  // the nibble (ESP8266 formats)
    std::optional<Layout> flash_layout;      // V2 only: layout_for_flash_map(flash_size_map)

    // ESP8266 classic only.
    Esp8266Build build = Esp8266Build::none;
    std::optional<ArduinoSketch> arduino;

    // ESP8266 V2 (0xEA) only.
    std::uint8_t v2_header_byte1 = 0;  // 4 in every known image
    std::uint8_t v2_app_byte = 0;      // byte 3: 1 user1, 2 user2 (SDK >= 2.0); otherwise a size byte
    std::string slot;                  // "user1", "user2" or "unknown" (from the app byte)
    std::string link_slot;             // "user1", "user2" or "unknown" from the irom-pointer census
    std::uint32_t irom_load_addr = 0;  // 0 in the file
    std::uint32_t irom_length = 0;
    std::uint32_t irom_pointers_user1 = 0;  // RAM words pointing into the user1 irom window
    std::uint32_t irom_pointers_user2 = 0;  // ... into the user2 window (256+256 / 512+512 maps)
    std::uint32_t crc = 0;                  // stored == computed

    nlohmann::json to_json() const;
};

// The layout the image's own structure implies: a V2 bin's flash map, an
// Arduino sketch -> single, an RTOS SDK v3 app -> ota. nullopt for ESP32-family
// images (ota and single both serve them) and ESP8266 files no layout runs.
std::optional<Layout> implied_layout(const ImageInfo& info) noexcept;

// "an ESP32-C3 app image (chip_id 0x0005)", "an ESP8266 Arduino sketch bin
// (...)", ...: what the file is, for messages.
std::string describe_image(const ImageInfo& info);

// "1MB", "4MB-c1", ... for an ESP8266 size nibble; "" for unknown values.
std::string_view esp8266_flash_size_name(unsigned nibble) noexcept;

struct ImageError {
    std::string code;    // stable slug, see the list in esp_image.cpp / docs
    std::string detail;  // human message with offsets and values
    nlohmann::json to_json() const { return {{"code", code}, {"detail", detail}}; }
};

class InspectionResult {
public:
    InspectionResult(ImageInfo info) : value_(std::move(info)) {}
    InspectionResult(ImageError error) : value_(std::move(error)) {}
    bool ok() const noexcept { return std::holds_alternative<ImageInfo>(value_); }
    explicit operator bool() const noexcept { return ok(); }
    const ImageInfo& info() const { return std::get<ImageInfo>(value_); }
    const ImageError& error() const { return std::get<ImageError>(value_); }

private:
    std::variant<ImageInfo, ImageError> value_;
};

// Inspects the image. `declared_chip` picks the parser: esp8266 -> 0xEA V2 or
// 0xE9 classic; an ESP32-family chip -> ESP32 header, whose chip_id must match;
// generic -> detect the format from the bytes. An image of another chip (an
// ESP32 app declared esp8266, an ESP32 bootloader declared esp32c3) gives
// "chip-mismatch"; a bootloader of the declared chip gives "bootloader".
// Never throws for bad bytes; a failing reader gives "read-error".
//
// Error codes: truncated-header, bad-magic, too-many-segments, truncated-segment,
// unaligned-segment, missing-checksum, bad-checksum, truncated-hash,
// bad-appended-hash, bad-app-desc, unknown-chip, chip-mismatch, bad-padding,
// bad-crc, bootloader, bad-load-address, trailing-data, read-error.
InspectionResult inspect_esp_image(const ImageReader& reader, Chip declared_chip, InspectOptions options = {});

// Compares an inspected image with what the uploader declared. Error codes:
//  chip-mismatch   image chip differs from `chip` (generic accepts any image)
//  bootloader      the image is a bootloader (inspect_esp_image refuses it first)
//  layout-mismatch the layout contradicts implied_layout(): a NONOS layout for a
//                  non-V2 image, ota/single for a V2 image or another flash map;
//                  for ESP8266 classic files, single for anything but an Arduino
//                  sketch and ota for anything but an RTOS SDK v3 app
//  bad-slot        `slot` is not a slot of `layout` (see layout_allows_slot)
//  slot-mismatch   a user1 build declared user2 or the reverse (app byte, or the
//                  irom-pointer census when the app byte does not name a slot)
std::optional<ImageError> check_declared(const ImageInfo& info, Chip chip, Layout layout, std::string_view slot);

// The ESP8266 SDK's stored-CRC rule (gen_appbin.py, esptool esp8266_crc32):
// c = CRC-32/zlib of the bytes; c + 1 if c < 2^31, else c XOR 0xFFFFFFFF.
std::uint32_t esp8266_v2_crc(std::uint32_t zlib_crc32) noexcept;
// Incremental CRC-32 (zlib polynomial); start with crc = 0.
std::uint32_t crc32_update(std::uint32_t crc, std::span<const unsigned char> bytes) noexcept;

}  // namespace otad::domain
