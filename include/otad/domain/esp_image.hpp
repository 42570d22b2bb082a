#pragma once
// Inspection of Espressif application images at upload time: ESP32-family
// images (24-byte header, chip_id, esp_app_desc_t, appended SHA-256) and
// ESP8266 images (classic 0xE9 and NONOS FOTA "V2" 0xEA user1/user2 bins).
// Byte layouts and their sources: docs/esp-image-formats.md.
//
// The inspector reads through a random-access ImageReader in bounded chunks
// (64 KiB), so a file is never loaded whole. It validates structure, the XOR
// checksum, the appended SHA-256 and the V2 CRC, and reports what the image says
// about itself (chip, version, slot, flash map). check_declared() then compares
// that with what the uploader declared.

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

struct SegmentInfo {
    std::uint64_t header_offset = 0;  // file offset of the 8-byte segment header
    std::uint32_t load_addr = 0;
    std::uint32_t length = 0;         // data bytes after the header
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

struct ImageInfo {
    ImageFormat format = ImageFormat::esp32;
    Chip chip = Chip::generic;  // from chip_id for ESP32 family; esp8266 for ESP8266 formats
    std::uint64_t file_size = 0;

    // The (second, for V2) 0xE9 header.
    std::uint8_t spi_mode = 0;        // 0 QIO, 1 QOUT, 2 DIO, 3 DOUT, 4 FAST_READ, 5 SLOW_READ
    std::uint8_t spi_speed = 0;       // low nibble of byte 3 (chip-specific meaning)
    std::uint8_t spi_size = 0;        // high nibble of byte 3 (ESP32: 0 = 1MB .. 7 = 128MB; ESP8266: flash map)
    std::uint32_t entry_addr = 0;
    std::vector<SegmentInfo> segments;  // V2: RAM segments only (the irom segment is below)

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

    std::optional<AppDescription> app_desc;  // ESP32: always; ESP8266 classic: RTOS v3 apps

    // Bytes after the checksum (+hash): secure-boot signature block, padding,
    // the sketch part of an Arduino ESP8266 bin. Allowed; reported.
    std::uint64_t trailing_offset = 0;
    std::uint64_t trailing_bytes = 0;

    // ESP8266 (classic and V2).
    std::optional<unsigned> flash_size_map;  // SPI_SIZE_MAP = spi_size nibble
    std::optional<Layout> flash_layout;      // layout_for_flash_map(flash_size_map)

    // ESP8266 V2 (0xEA) only.
    std::uint8_t v2_header_byte1 = 0;   // 4 in every known image
    std::uint8_t v2_app_byte = 0;       // byte 3: 1 user1, 2 user2 (SDK >= 2.0); otherwise a size byte
    std::string slot;                   // "user1", "user2" or "unknown" (from the app byte)
    std::string link_slot;              // "user1", "user2" or "unknown" from the irom-pointer census
    std::uint32_t irom_load_addr = 0;   // 0 in the file
    std::uint32_t irom_length = 0;
    std::uint32_t irom_pointers_user1 = 0;  // RAM words pointing into the user1 irom window
    std::uint32_t irom_pointers_user2 = 0;  // ... into the user2 window (256+256 / 512+512 maps)
    std::uint32_t crc = 0;              // stored == computed

    nlohmann::json to_json() const;
};

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
// generic -> detect the format from the bytes. An image of the other family
// (an ESP32 app declared esp8266 or the reverse) gives "chip-mismatch".
// Never throws for bad bytes; a failing reader gives "read-error".
//
// Error codes: truncated-header, bad-magic, too-many-segments, truncated-segment,
// unaligned-segment, missing-checksum, bad-checksum, truncated-hash,
// bad-appended-hash, bad-app-desc, unknown-chip, chip-mismatch, bad-padding,
// bad-crc, read-error.
InspectionResult inspect_esp_image(const ImageReader& reader, Chip declared_chip);

// Compares an inspected image with what the uploader declared. Error codes:
//  chip-mismatch   image chip differs from `chip` (generic accepts any image)
//  layout-mismatch NONOS layout for a non-V2 image, ota/single for a V2 image,
//                  or the image's flash map implies another layout
//  bad-slot        `slot` is not a slot of `layout` (see layout_allows_slot)
//  slot-mismatch   a user1 build declared user2 or the reverse (app byte, or the
//                  irom-pointer census when the app byte does not name a slot)
std::optional<ImageError> check_declared(const ImageInfo& info, Chip chip, Layout layout,
                                         std::string_view slot);

// The ESP8266 SDK's stored-CRC rule (gen_appbin.py, esptool esp8266_crc32):
// c = CRC-32/zlib of the bytes; c + 1 if c < 2^31, else c XOR 0xFFFFFFFF.
std::uint32_t esp8266_v2_crc(std::uint32_t zlib_crc32) noexcept;
// Incremental CRC-32 (zlib polynomial); start with crc = 0.
std::uint32_t crc32_update(std::uint32_t crc, std::span<const unsigned char> bytes) noexcept;

}  // namespace otad::domain
