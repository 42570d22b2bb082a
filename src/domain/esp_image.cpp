#include "otad/domain/esp_image.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "otad/util/crypto.hpp"

// Formats and sources: docs/esp-image-formats.md. In short:
//  ESP32 family  esp-idf components/bootloader_support/include/esp_app_format.h,
//                components/esp_app_format/include/esp_app_desc.h,
//                components/bootloader_support/src/esp_image_format.c
//  ESP8266       ESP8266_NONOS_SDK tools/gen_appbin.py; esptool esptool/bin_image.py

namespace otad::domain {
namespace {

constexpr std::size_t kChunkSize = 64 * 1024;  // bounded read size; a multiple of 4
constexpr unsigned kMaxSegments = 16;          // ESP_IMAGE_MAX_SEGMENTS
constexpr std::uint8_t kImageMagic = 0xE9;     // ESP_IMAGE_HEADER_MAGIC
constexpr std::uint8_t kV2Magic = 0xEA;        // gen_appbin BIN_MAGIC_IROM
constexpr std::uint8_t kChecksumSeed = 0xEF;   // ESP_CHECKSUM_MAGIC
constexpr std::uint32_t kAppDescMagic = 0xABCD5432;
constexpr std::size_t kAppDescSize = 256;
constexpr std::size_t kEsp32HeaderSize = 24;
constexpr std::size_t kEsp8266HeaderSize = 8;
constexpr std::size_t kSegmentHeaderSize = 8;
constexpr std::size_t kShaSize = 32;
constexpr std::uint8_t kWpPinDisabled = 0xEE;  // what IDF writes at ESP32 header byte 8

// NONOS irom0 link addresses (ld/eagle.app.v6.new.*.ld): code is linked at
// 0x40200000 + slot start + 0x10 (the V2 header and irom segment header).
constexpr std::uint32_t kIromUser1 = 0x40201010;
constexpr std::uint32_t kIromUser2Map0 = 0x40241010;    // 256+256: user2 at 0x41000
constexpr std::uint32_t kIromUser2Map234 = 0x40281010;  // 512+512: user2 at 0x81000
// Census verdict: at least this many pointers, and this share of them, in one window.
constexpr std::uint32_t kCensusMinPointers = 8;
constexpr std::uint32_t kCensusMajorityPercent = 90;

// ESP8266 (esptool esptool/loader.py IROM_MAP_START/END, targets/esp8266.py).
constexpr std::uint32_t kEsp8266IromStart = 0x40200000;
constexpr std::uint32_t kEsp8266IromEnd = 0x40300000;
// Arduino ESP8266 bins (esp8266/Arduino tools/elf2bin.py): eboot, 0xAA up to
// 0x1000, the sketch there; its irom0 is linked at 0x40201010 (tools/sdk/ld/
// eagle.flash.*.ld); add_crc writes the length and CRC into the first 8 bytes
// of irom0 (placeholders in tools/sdk/ld/eagle.app.v6.common.ld.h).
constexpr std::uint64_t kArduinoAppOffset = 0x1000;
constexpr std::uint8_t kArduinoFill = 0xAA;
constexpr std::uint64_t kArduinoCrcLengthAt = 0x1010;
constexpr std::uint32_t kArduinoIrom = 0x40201010;
constexpr std::uint32_t kArduinoCrcPoly = 0x04C11DB7;
constexpr std::uint32_t kEbootIramStart = 0x4010F000;  // bootloaders/eboot/eboot.ld iram1_0_seg
constexpr std::uint32_t kEbootIramEnd = 0x40110000;
// tools/signing.py appends signature + u32 length; RSA up to 16384 bits fits.
constexpr std::uint32_t kMaxSignatureBytes = 4096;
constexpr std::uint64_t kFlashSector = 4096;
constexpr std::uint8_t kErasedByte = 0xFF;
// esp_bootloader_desc_t: magic_byte 0x50 (ESP_BOOTLOADER_DESC_MAGIC_BYTE), 80 bytes.
constexpr std::uint8_t kBootloaderDescMagic = 0x50;
constexpr std::size_t kBootloaderDescSize = 80;

// One ESP32-family chip: its image chip_id (esp_app_format.h esp_chip_id_t;
// esptool targets/*.py IMAGE_CHIP_ID), the address ranges its MMU maps flash
// into (esptool IROM_MAP_* / DROM_MAP_*: every app has a segment there, a
// bootloader none), and where its second-stage bootloader is flashed
// (esptool BOOTLOADER_FLASH_OFFSET).
struct ChipEntry {
    Chip chip;
    std::uint16_t id;
    std::string_view name;
    std::uint32_t irom_start, irom_end, drom_start, drom_end;
    std::uint32_t bootloader_offset;
};
constexpr std::array kChips = {
    ChipEntry{Chip::esp32, 0x0000, "ESP32", 0x400D0000, 0x40400000, 0x3F400000, 0x3F800000, 0x1000},
    ChipEntry{Chip::esp32s2, 0x0002, "ESP32-S2", 0x40080000, 0x40B80000, 0x3F000000, 0x3F3F0000, 0x1000},
    ChipEntry{Chip::esp32c3, 0x0005, "ESP32-C3", 0x42000000, 0x42800000, 0x3C000000, 0x3C800000, 0x0},
    ChipEntry{Chip::esp32s3, 0x0009, "ESP32-S3", 0x42000000, 0x44000000, 0x3C000000, 0x3E000000, 0x0},
    ChipEntry{Chip::esp32c2, 0x000C, "ESP32-C2", 0x42000000, 0x42400000, 0x3C000000, 0x3C400000, 0x0},
    ChipEntry{Chip::esp32c6, 0x000D, "ESP32-C6", 0x42000000, 0x42800000, 0x42800000, 0x43000000, 0x0},
    ChipEntry{Chip::esp32h2, 0x0010, "ESP32-H2", 0x42000000, 0x42800000, 0x42800000, 0x43000000, 0x0},
    ChipEntry{Chip::esp32p4, 0x0012, "ESP32-P4", 0x40000000, 0x4C000000, 0x40000000, 0x4C000000, 0x2000},
    ChipEntry{Chip::esp32c61, 0x0014, "ESP32-C61", 0x42000000, 0x42800000, 0x42800000, 0x43000000, 0x0},
    ChipEntry{Chip::esp32c5, 0x0017, "ESP32-C5", 0x42000000, 0x44000000, 0x42000000, 0x44000000, 0x2000},
    ChipEntry{Chip::esp32h21, 0x0019, "ESP32-H21", 0x42000000, 0x42800000, 0x42800000, 0x43000000, 0x0},
    ChipEntry{Chip::esp32h4, 0x001C, "ESP32-H4", 0x42000000, 0x42800000, 0x42800000, 0x43000000, 0x2000},
    ChipEntry{Chip::esp32s31, 0x0020, "ESP32-S31", 0x40000000, 0x54000000, 0x40000000, 0x54000000, 0x2000},
};

const ChipEntry* chip_entry(Chip chip) noexcept {
    for (const auto& e : kChips)
        if (e.chip == chip) return &e;
    return nullptr;
}

bool is_flash_mapped(const ChipEntry& c, std::uint32_t addr) noexcept {
    return (addr >= c.irom_start && addr < c.irom_end) || (addr >= c.drom_start && addr < c.drom_end);
}

bool is_esp8266_flash_mapped(std::uint32_t addr) noexcept {
    return addr >= kEsp8266IromStart && addr < kEsp8266IromEnd;
}

// "ESP32-C3", "ESP8266": how Espressif writes chip names (and "an" reads right before each).
std::string chip_display_name(Chip chip) {
    if (chip == Chip::esp8266) return "ESP8266";
    if (const ChipEntry* e = chip_entry(chip)) return std::string(e->name);
    return std::string(to_string(chip));
}

std::string hex(std::uint64_t value) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
    return buf;
}

std::string hex_padded(std::uint64_t value, int digits) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "0x%0*llx", digits, static_cast<unsigned long long>(value));
    return buf;
}

std::uint16_t le16(const unsigned char* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }
std::uint32_t le32(const unsigned char* p) {
    return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
           (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

ImageError error(std::string code, std::string detail) { return ImageError{std::move(code), std::move(detail)}; }

// Sequential reader over an ImageReader in bounded chunks, feeding everything it
// consumes to a SHA-256 and/or a CRC-32 when enabled.
class Cursor {
public:
    Cursor(const ImageReader& reader, bool with_sha, bool with_crc)
        : reader_(reader), size_(reader.size()), with_crc_(with_crc), buffer_(kChunkSize) {
        if (with_sha) sha_.emplace("sha256");
    }

    std::uint64_t pos() const noexcept { return pos_; }
    std::uint64_t size() const noexcept { return size_; }
    std::uint64_t remaining() const noexcept { return size_ - pos_; }

    // Precondition: out.size() <= remaining().
    void read(std::span<unsigned char> out) {
        reader_.read(pos_, {reinterpret_cast<char*>(out.data()), out.size()});
        feed(out);
        pos_ += out.size();
    }

    // Consumes n bytes (n <= remaining()), handing them to on_chunk in pieces of
    // at most kChunkSize; every piece but the last is a multiple of 4 long.
    template <typename OnChunk>
    void stream(std::uint64_t n, OnChunk&& on_chunk) {
        while (n > 0) {
            const std::size_t len = static_cast<std::size_t>(std::min<std::uint64_t>(n, buffer_.size()));
            std::span<unsigned char> chunk(buffer_.data(), len);
            read(chunk);
            on_chunk(std::span<const unsigned char>(chunk));
            n -= len;
        }
    }
    void skip(std::uint64_t n) {
        stream(n, [](std::span<const unsigned char>) {});
    }

    // The SHA-256 of everything consumed so far; stops hashing.
    std::array<std::uint8_t, 32> finish_sha() {
        std::array<std::uint8_t, 32> out{};
        auto digest = sha_->finish();
        std::copy_n(digest.begin(), out.size(), out.begin());
        sha_.reset();
        return out;
    }
    std::uint32_t crc() const noexcept { return crc_; }

private:
    void feed(std::span<const unsigned char> bytes) {
        if (sha_) sha_->update(bytes);
        if (with_crc_) crc_ = crc32_update(crc_, bytes);
    }

    const ImageReader& reader_;
    std::uint64_t size_;
    std::uint64_t pos_ = 0;
    std::optional<util::Digest> sha_;
    bool with_crc_;
    std::uint32_t crc_ = 0;
    std::vector<unsigned char> buffer_;
};

// Counts RAM words that point into the user1 / user2 irom link windows (V2).
struct IromCensus {
    std::uint32_t user1_begin = 0, user1_end = 0;
    std::uint32_t user2_begin = 0, user2_end = 0;  // empty when the map has no distinct user2 link
    std::uint32_t user1 = 0, user2 = 0;

    void visit(std::span<const unsigned char> words) {
        for (std::size_t i = 0; i + 4 <= words.size(); i += 4) {
            const std::uint32_t w = le32(words.data() + i);
            if (w >= user1_begin && w < user1_end) ++user1;
            if (w >= user2_begin && w < user2_end) ++user2;
        }
    }
};

// Reads `count` segments (header + data) at the cursor, XORing the data into
// `checksum`. `label` names the segments in messages.
std::optional<ImageError> read_segments(Cursor& cursor, unsigned count, bool require_aligned,
                                        std::vector<SegmentInfo>& out, std::uint8_t& checksum, IromCensus* census) {
    for (unsigned i = 0; i < count; ++i) {
        const std::uint64_t at = cursor.pos();
        if (cursor.remaining() < kSegmentHeaderSize)
            return error("truncated-segment", "segment " + std::to_string(i) + " header at offset " + hex(at) +
                                                  " needs 8 bytes but only " + std::to_string(cursor.remaining()) +
                                                  " remain");
        unsigned char header[kSegmentHeaderSize];
        cursor.read(header);
        SegmentInfo seg{at, le32(header), le32(header + 4)};
        if (require_aligned && seg.length % 4 != 0)
            return error("unaligned-segment", "segment " + std::to_string(i) + " at offset " + hex(at) + " declares " +
                                                  std::to_string(seg.length) + " bytes, not a multiple of 4");
        if (seg.length > cursor.remaining())
            return error("truncated-segment", "segment " + std::to_string(i) + " at offset " + hex(at) + " declares " +
                                                  std::to_string(seg.length) + " bytes but only " +
                                                  std::to_string(cursor.remaining()) + " remain");
        std::uint8_t x = 0;
        cursor.stream(seg.length, [&](std::span<const unsigned char> chunk) {
            for (unsigned char b : chunk) x ^= b;
            if (census) census->visit(chunk);
        });
        checksum ^= x;
        out.push_back(seg);
    }
    return std::nullopt;
}

// Skips the zero padding to the checksum byte, placed as the last byte of a
// 16-byte block (esptool align_file_position / IDF process_checksum), and reads it.
std::optional<ImageError> read_checksum_byte(Cursor& cursor, std::uint64_t& at, std::uint8_t& stored) {
    const std::uint64_t end = cursor.pos();
    at = end + (15 - end % 16);
    if (at >= cursor.size())
        return error("missing-checksum", "segments end at offset " + hex(end) + "; the checksum byte belongs at " +
                                             hex(at) + " but the file is " + std::to_string(cursor.size()) + " bytes");
    cursor.skip(at - end);
    unsigned char byte = 0;
    cursor.read({&byte, 1});
    stored = byte;
    return std::nullopt;
}

// read_checksum_byte, then compares with the XOR of the segment data.
std::optional<ImageError> read_aligned_checksum(Cursor& cursor, std::uint8_t computed, ImageInfo& info) {
    std::uint64_t at = 0;
    std::uint8_t stored = 0;
    if (auto e = read_checksum_byte(cursor, at, stored)) return e;
    info.checksum_offset = at;
    info.checksum = stored;
    if (stored != computed)
        return error("bad-checksum", "checksum byte at offset " + hex(at) + " is " + hex_padded(stored, 2) +
                                         " but the segment data gives " + hex_padded(computed, 2));
    return std::nullopt;
}

std::string printable(const unsigned char* p, std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n && p[i] != 0; ++i) out.push_back(p[i] >= 0x20 && p[i] < 0x7F ? char(p[i]) : '?');
    return out;
}

AppDescription decode_app_desc(const unsigned char* d, std::uint64_t offset) {
    AppDescription a;
    a.offset = offset;
    a.secure_version = le32(d + 4);
    a.version = printable(d + 16, 32);
    a.project_name = printable(d + 48, 32);
    a.time = printable(d + 80, 16);
    a.date = printable(d + 96, 16);
    a.idf_ver = printable(d + 112, 32);
    std::copy_n(d + 144, 32, a.app_elf_sha256.begin());
    a.min_efuse_blk_rev_full = le16(d + 176);
    a.max_efuse_blk_rev_full = le16(d + 178);
    a.mmu_page_size = d[180];
    return a;
}

std::string too_many_segments(unsigned count, std::uint64_t at) {
    return "header at offset " + hex(at) + " declares " + std::to_string(count) + " segments; at most " +
           std::to_string(kMaxSegments) + " are allowed";
}

// ---------------------------------------------------------------- ESP32 family

InspectionResult parse_esp32(const ImageReader& reader) {
    ImageInfo info;
    info.format = ImageFormat::esp32;
    info.file_size = reader.size();
    if (reader.size() < kEsp32HeaderSize)
        return error("truncated-header",
                     "file is " + std::to_string(reader.size()) + " bytes; an ESP32 image header needs 24");
    Cursor cursor(reader, /*with_sha=*/true, /*with_crc=*/false);
    unsigned char h[kEsp32HeaderSize];
    cursor.read(h);
    if (h[0] != kImageMagic)
        return error("bad-magic", "first byte is " + hex_padded(h[0], 2) + "; an ESP32 image starts with 0xe9");
    const unsigned count = h[1];
    if (count > kMaxSegments) return error("too-many-segments", too_many_segments(count, 0));
    info.spi_mode = h[2];
    info.spi_speed = h[3] & 0x0F;
    info.spi_size = h[3] >> 4;
    info.entry_addr = le32(h + 4);
    info.wp_pin = h[8];
    info.chip_id = le16(h + 12);
    info.min_chip_rev = h[14];
    info.min_chip_rev_full = le16(h + 15);
    info.max_chip_rev_full = le16(h + 17);
    info.hash_appended_flag = h[23];
    const auto chip = chip_for_esp_chip_id(info.chip_id);
    if (!chip)
        return error("unknown-chip", "chip_id at offset 0xc is " + hex_padded(info.chip_id, 4) +
                                         ", which no known ESP32-family chip uses");
    info.chip = *chip;

    std::uint8_t checksum = kChecksumSeed;
    if (auto e = read_segments(cursor, count, /*require_aligned=*/true, info.segments, checksum, nullptr)) return *e;
    if (auto e = read_aligned_checksum(cursor, checksum, info)) return *e;

    // IDF tests the flag as a boolean (esp_image_format.c), so any non-zero value means a hash.
    if (info.hash_appended_flag != 0) {
        const auto computed = cursor.finish_sha();
        const std::uint64_t at = cursor.pos();
        if (cursor.remaining() < kShaSize)
            return error("truncated-hash", "header byte 23 announces a SHA-256 at offset " + hex(at) + " but only " +
                                               std::to_string(cursor.remaining()) + " bytes remain");
        std::array<std::uint8_t, 32> stored{};
        cursor.read(stored);
        if (stored != computed)
            return error("bad-appended-hash", "appended SHA-256 at offset " + hex(at) + " is " + util::to_hex(stored) +
                                                  " but bytes 0.." + hex(info.checksum_offset) + " hash to " +
                                                  util::to_hex(computed));
        info.appended_sha256 = stored;
    }
    info.content_end = cursor.pos();
    info.trailing_offset = cursor.pos();
    info.trailing_bytes = cursor.remaining();

    // esp_app_desc_t starts an app's first segment (offset 32). Without it the
    // image is a bootloader when nothing in it is flash-mapped: the ROM loads a
    // bootloader into RAM, while every app maps code or data from flash.
    if (!info.segments.empty() && info.segments[0].length >= kAppDescSize) {
        unsigned char desc[kAppDescSize];
        const std::uint64_t desc_at = info.segments[0].header_offset + kSegmentHeaderSize;
        reader.read(desc_at, {reinterpret_cast<char*>(desc), sizeof desc});
        if (le32(desc) == kAppDescMagic) {
            info.app_desc = decode_app_desc(desc, desc_at);
            return info;
        }
    }
    const ChipEntry& entry = *chip_entry(info.chip);
    const bool maps_flash = std::any_of(info.segments.begin(), info.segments.end(), [&](const SegmentInfo& s) {
        return s.length > 0 && is_flash_mapped(entry, s.load_addr);
    });
    if (!info.segments.empty() && !maps_flash) {
        info.role = ImageRole::bootloader;
        if (info.segments[0].length >= kBootloaderDescSize) {
            unsigned char d[kBootloaderDescSize];
            reader.read(info.segments[0].header_offset + kSegmentHeaderSize, {reinterpret_cast<char*>(d), sizeof d});
            if (d[0] == kBootloaderDescMagic) {
                BootloaderDescription b;
                b.secure_version = d[3];
                b.version = le32(d + 4);
                b.idf_ver = printable(d + 8, 32);
                b.date_time = printable(d + 40, 24);
                info.bootloader_desc = std::move(b);
            }
        }
        return info;
    }
    if (info.segments.empty() || info.segments[0].length < kAppDescSize)
        return error("bad-app-desc", info.segments.empty()
                                         ? std::string("image has no segments, so no esp_app_desc_t")
                                         : "first segment holds " + std::to_string(info.segments[0].length) +
                                               " bytes; esp_app_desc_t needs 256 at offset 0x20");
    unsigned char magic[4];
    const std::uint64_t desc_at = info.segments[0].header_offset + kSegmentHeaderSize;
    reader.read(desc_at, {reinterpret_cast<char*>(magic), sizeof magic});
    return error("bad-app-desc", "esp_app_desc_t magic at offset " + hex(desc_at) + " is " +
                                     hex_padded(le32(magic), 8) + ", expected 0xabcd5432 (not an app image?)");
}

// ---------------------------------------------------------- ESP8266 classic

// CRC-32 as elf2bin.py crc8266 and eboot compute it: polynomial 0x04C11DB7,
// MSB first, initial value 0xFFFFFFFF, no reflection, no final XOR.
std::uint32_t arduino_crc_update(std::uint32_t crc, std::span<const unsigned char> bytes) noexcept {
    static const auto table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i << 24;
            for (int k = 0; k < 8; ++k) c = (c & 0x80000000u) ? (c << 1) ^ kArduinoCrcPoly : c << 1;
            t[i] = c;
        }
        return t;
    }();
    for (unsigned char b : bytes) crc = (crc << 8) ^ table[((crc >> 24) ^ b) & 0xFF];
    return crc;
}

// The Arduino CRC of bytes [0, length) with the 8 bytes at 0x1010 (length and
// CRC words) taken as zeros, as add_crc computes it. Reads in bounded chunks.
std::uint32_t arduino_file_crc(const ImageReader& reader, std::uint64_t length) {
    Cursor cursor(reader, /*with_sha=*/false, /*with_crc=*/false);
    std::uint32_t crc = 0xFFFFFFFFu;
    auto add = [&](std::span<const unsigned char> chunk) { crc = arduino_crc_update(crc, chunk); };
    cursor.stream(kArduinoCrcLengthAt, add);
    const unsigned char zeros[8] = {};
    add(zeros);
    cursor.skip(8);
    cursor.stream(length - kArduinoCrcLengthAt - 8, add);
    return crc;
}

// What may follow the end of an ESP8266 classic file's content, beyond which
// bytes are "trailing-data": nothing; for an Arduino sketch the signature
// block of tools/signing.py (signature, then its length as u32 LE); or 0xFF
// filling the file up to the next 4 KiB boundary (erased flash, as esptool's
// --pad-to-size and flash read-backs leave it). Sets info.trailing_*.
std::optional<ImageError> check_classic_end(const ImageReader& reader, ImageInfo& info, bool signature_allowed,
                                            const InspectOptions& options) {
    const std::uint64_t end = info.content_end;
    const std::uint64_t rest = reader.size() - end;
    info.trailing_offset = end;
    info.trailing_bytes = rest;
    if (rest == 0) return std::nullopt;

    if (signature_allowed && rest > 4 && rest - 4 <= kMaxSignatureBytes) {
        unsigned char length_word[4];
        reader.read(reader.size() - 4, {reinterpret_cast<char*>(length_word), 4});
        if (le32(length_word) == rest - 4) {
            info.arduino->signature_bytes = static_cast<std::uint32_t>(rest - 4);
            info.trailing_bytes = 0;
            return std::nullopt;
        }
    }
    std::vector<unsigned char> head(static_cast<std::size_t>(std::min<std::uint64_t>(rest, 16)));
    reader.read(end, {reinterpret_cast<char*>(head.data()), head.size()});
    if (rest < kFlashSector && reader.size() % kFlashSector == 0) {
        std::vector<char> fill(static_cast<std::size_t>(rest));  // < 4 KiB
        reader.read(end, fill);
        if (std::all_of(fill.begin(), fill.end(), [](char b) { return static_cast<std::uint8_t>(b) == kErasedByte; })) {
            info.trailing_bytes = 0;
            return std::nullopt;
        }
    }
    if (options.allow_trailing_data) return std::nullopt;
    std::string first;
    for (unsigned char b : head) first += hex_padded(b, 2).substr(2);
    return error("trailing-data",
                 std::to_string(rest) + " bytes follow the end of the image at offset " + hex(end) + " (they start " +
                     first + (rest > head.size() ? "..." : "") + "), where " +
                     (signature_allowed ? "elf2bin writes nothing but an optional signature block (tools/signing.py)"
                                        : "the toolchain writes nothing") +
                     "; a concatenated or damaged file? Upload with trailing_data=allow to keep them");
}

// The sketch of an Arduino bin: eboot (already read, RAM-only) up to `eboot_end`,
// 0xAA to 0x1000, then the sketch's classic image.
InspectionResult parse_arduino_sketch(const ImageReader& reader, Cursor& cursor, ImageInfo info,
                                      const InspectOptions& options) {
    info.build = Esp8266Build::arduino;
    ArduinoSketch& sketch = *info.arduino;

    const std::uint64_t fill_from = cursor.pos();
    std::optional<std::uint64_t> bad_at;
    std::uint8_t bad_value = 0;
    std::uint64_t at = fill_from;
    cursor.stream(kArduinoAppOffset - fill_from, [&](std::span<const unsigned char> chunk) {
        for (unsigned char b : chunk) {
            if (!bad_at && b != kArduinoFill) {
                bad_at = at;
                bad_value = b;
            }
            ++at;
        }
    });
    if (bad_at)
        return error("bad-padding", "eboot ends at offset " + hex(fill_from) +
                                        " and elf2bin fills the rest of the "
                                        "first 4 KiB with 0xaa up to the sketch at 0x1000, but the byte at offset " +
                                        hex(*bad_at) + " is " + hex_padded(bad_value, 2));

    unsigned char h[kEsp8266HeaderSize];
    cursor.read(h);
    if (h[0] != kImageMagic)
        return error("bad-magic",
                     "the sketch's header at offset 0x1000 starts with " + hex_padded(h[0], 2) + ", expected 0xe9");
    const unsigned count = h[1];
    if (count > kMaxSegments) return error("too-many-segments", too_many_segments(count, kArduinoAppOffset));
    info.entry_addr = le32(h + 4);
    std::uint8_t data_xor = kChecksumSeed;
    if (auto e = read_segments(cursor, count, /*require_aligned=*/false, info.segments, data_xor, nullptr)) return *e;
    if (info.segments.empty() || info.segments[0].load_addr != kArduinoIrom)
        return error("bad-load-address",
                     "the sketch at offset 0x1000 starts with " +
                         (info.segments.empty() ? std::string("no segment")
                                                : "a segment for " + hex_padded(info.segments[0].load_addr, 8)) +
                         "; elf2bin writes the flash-mapped .irom0.text first, linked at 0x40201010 (flash 0x1010)");
    std::uint64_t checksum_at = 0;
    std::uint8_t stored = 0;
    if (auto e = read_checksum_byte(cursor, checksum_at, stored)) return *e;
    info.checksum_offset = checksum_at;
    info.checksum = stored;
    info.content_end = cursor.pos();

    // elf2bin computes the checksum over the ELF's bytes, where the length and
    // CRC words are zero placeholders, then add_crc fills them in.
    std::uint8_t crc_words_xor = 0;
    std::uint32_t length_word = 0, crc_word = 0;
    if (info.segments[0].length >= 8) {
        unsigned char w[8];
        reader.read(kArduinoCrcLengthAt, {reinterpret_cast<char*>(w), sizeof w});
        for (unsigned char b : w) crc_words_xor ^= b;
        length_word = le32(w);
        crc_word = le32(w + 4);
        sketch.has_crc = length_word == info.content_end;
    }
    const std::uint8_t expected = sketch.has_crc ? data_xor ^ crc_words_xor : data_xor;
    if (stored != expected) {
        if (!sketch.has_crc && crc_words_xor != 0 && stored == (data_xor ^ crc_words_xor))
            return error("bad-crc", "the sketch's length word at offset 0x1010 says " + std::to_string(length_word) +
                                        " bytes but the image ends at offset " + hex(info.content_end) +
                                        " (cut or extended after elf2bin wrote it)");
        return error("bad-checksum", "the sketch's checksum byte at offset " + hex(checksum_at) + " is " +
                                         hex_padded(stored, 2) + " but its segment data gives " +
                                         hex_padded(expected, 2));
    }
    if (sketch.has_crc) {
        sketch.crc_length = length_word;
        sketch.crc = crc_word;
        const std::uint32_t computed = arduino_file_crc(reader, length_word);
        if (computed != crc_word)
            return error("bad-crc", "the Arduino CRC at offset 0x1014 is " + hex_padded(crc_word, 8) +
                                        " but bytes 0.." + hex(length_word - 1) + " give " + hex_padded(computed, 8));
    }
    if (auto e = check_classic_end(reader, info, /*signature_allowed=*/true, options)) return *e;
    return info;
}

InspectionResult parse_esp8266_classic(const ImageReader& reader, const InspectOptions& options) {
    ImageInfo info;
    info.format = ImageFormat::esp8266_classic;
    info.chip = Chip::esp8266;
    info.file_size = reader.size();
    if (reader.size() < kEsp8266HeaderSize)
        return error("truncated-header",
                     "file is " + std::to_string(reader.size()) + " bytes; an ESP8266 image header needs 8");
    Cursor cursor(reader, /*with_sha=*/true, /*with_crc=*/false);
    unsigned char h[kEsp8266HeaderSize];
    cursor.read(h);
    if (h[0] != kImageMagic)
        return error("bad-magic", "first byte is " + hex_padded(h[0], 2) +
                                      "; an ESP8266 image starts with 0xe9 (classic) or 0xea (FOTA V2)");
    const unsigned count = h[1];
    if (count > kMaxSegments) return error("too-many-segments", too_many_segments(count, 0));
    // The first header is what the ROM and the Arduino Updater read: the flash
    // settings of the whole file.
    info.spi_mode = h[2];
    info.spi_speed = h[3] & 0x0F;
    info.spi_size = h[3] >> 4;
    info.entry_addr = le32(h + 4);
    info.flash_size_map = info.spi_size;

    std::uint8_t checksum = kChecksumSeed;
    if (auto e = read_segments(cursor, count, /*require_aligned=*/false, info.segments, checksum, nullptr)) return *e;
    std::uint8_t stored_checksum = 0;
    if (auto e = read_checksum_byte(cursor, info.checksum_offset, stored_checksum)) return *e;
    info.checksum = stored_checksum;
    info.content_end = cursor.pos();
    if (stored_checksum != checksum) {
        // A sketch cut off its eboot still carries elf2bin's CRC words, which its
        // checksum counts as zeros; say what it is rather than "bad checksum".
        std::uint8_t crc_words_xor = 0;
        if (!info.segments.empty() && info.segments[0].load_addr == kArduinoIrom && info.segments[0].length >= 8) {
            unsigned char w[8];
            reader.read(info.segments[0].header_offset + kSegmentHeaderSize, {reinterpret_cast<char*>(w), sizeof w});
            for (unsigned char b : w) crc_words_xor ^= b;
        }
        if (crc_words_xor == 0 || stored_checksum != (checksum ^ crc_words_xor))
            return error("bad-checksum", "checksum byte at offset " + hex(info.checksum_offset) + " is " +
                                             hex_padded(stored_checksum, 2) + " but the segment data gives " +
                                             hex_padded(checksum, 2));
    }

    const bool maps_flash = std::any_of(info.segments.begin(), info.segments.end(), [](const SegmentInfo& s) {
        return s.length > 0 && is_esp8266_flash_mapped(s.load_addr);
    });
    if (!maps_flash) {
        // RAM only: eboot in front of an Arduino sketch (0xAA fill, or the
        // sketch's 0xE9 at 0x1000), or a bootloader alone.
        char after = 0, at_app = 0;
        if (info.content_end < reader.size()) reader.read(info.content_end, {&after, 1});
        if (reader.size() > kArduinoAppOffset) reader.read(kArduinoAppOffset, {&at_app, 1});
        if (info.content_end <= kArduinoAppOffset &&
            (static_cast<std::uint8_t>(after) == kArduinoFill || static_cast<std::uint8_t>(at_app) == kImageMagic)) {
            if (reader.size() < kArduinoAppOffset + kEsp8266HeaderSize)
                return error("truncated-header",
                             "eboot is followed by elf2bin's 0xaa fill, so this is an Arduino "
                             "sketch bin, but the file ends at offset " +
                                 hex(reader.size()) + ", before the sketch's header at 0x1000");
            ArduinoSketch sketch;
            sketch.eboot_segments = std::move(info.segments);
            sketch.eboot_entry_addr = info.entry_addr;
            sketch.eboot_checksum_offset = info.checksum_offset;
            info.segments.clear();
            info.arduino = std::move(sketch);
            return parse_arduino_sketch(reader, cursor, std::move(info), options);
        }
        info.role = ImageRole::bootloader;
        info.build = Esp8266Build::bootloader;
        info.trailing_offset = info.content_end;
        info.trailing_bytes = reader.size() - info.content_end;
        return info;
    }

    // One application image. ESP8266 RTOS SDK v3 builds (its esptool fork,
    // ESP8266V3FirmwareImage) put the flash-mapped segments first, start them
    // with esp_app_desc_t (offset 16) and append a SHA-256 of bytes 0..checksum.
    const SegmentInfo& first = info.segments[0];
    info.build = is_esp8266_flash_mapped(first.load_addr) && first.load_addr != kArduinoIrom
                     ? Esp8266Build::rtos_app
                     : Esp8266Build::unknown_app;
    if (first.length >= kAppDescSize) {
        unsigned char desc[kAppDescSize];
        const std::uint64_t desc_at = first.header_offset + kSegmentHeaderSize;
        reader.read(desc_at, {reinterpret_cast<char*>(desc), sizeof desc});
        if (le32(desc) == kAppDescMagic) info.app_desc = decode_app_desc(desc, desc_at);
    }
    // Its esptool fork appends the SHA-256 to every app (ESP8266V3FirmwareImage
    // sets append_digest unconditionally), so an RTOS app without it was cut.
    const auto computed = cursor.finish_sha();
    const std::uint64_t hash_at = cursor.pos();
    if (info.build == Esp8266Build::rtos_app && cursor.remaining() < kShaSize)
        return error("truncated-hash", "ESP8266 RTOS SDK v3 apps end with a SHA-256 of bytes 0.." +
                                           hex(info.checksum_offset) + " at offset " + hex(hash_at) + ", but only " +
                                           std::to_string(cursor.remaining()) + " bytes follow the checksum");
    if (cursor.remaining() >= kShaSize) {
        std::array<std::uint8_t, 32> stored{};
        reader.read(hash_at, {reinterpret_cast<char*>(stored.data()), stored.size()});
        if (stored == computed) {
            info.appended_sha256 = stored;
            cursor.skip(kShaSize);
        } else if (info.build == Esp8266Build::rtos_app || info.app_desc) {
            return error("bad-appended-hash", "ESP8266 RTOS SDK v3 image: SHA-256 at offset " + hex(hash_at) + " is " +
                                                  util::to_hex(stored) + " but bytes 0.." + hex(info.checksum_offset) +
                                                  " hash to " + util::to_hex(computed));
        }
    }
    info.content_end = cursor.pos();
    if (auto e = check_classic_end(reader, info, /*signature_allowed=*/false, options)) return *e;
    return info;
}

// --------------------------------------------------------- ESP8266 FOTA V2

std::string census_verdict(const IromCensus& c) {
    const std::uint32_t total = c.user1 + c.user2;
    if (total < kCensusMinPointers) return "unknown";
    if (c.user1 * 100 >= total * kCensusMajorityPercent) return "user1";
    if (c.user2 * 100 >= total * kCensusMajorityPercent) return "user2";
    return "unknown";
}

InspectionResult parse_esp8266_v2(const ImageReader& reader) {
    ImageInfo info;
    info.format = ImageFormat::esp8266_v2;
    info.chip = Chip::esp8266;
    info.file_size = reader.size();
    if (reader.size() < kEsp8266HeaderSize + kSegmentHeaderSize)
        return error("truncated-header", "file is " + std::to_string(reader.size()) +
                                             " bytes; an ESP8266 V2 image needs at least 16 before its irom segment");
    // The CRC covers every byte before the last 4; the cursor consumes exactly
    // those before it reads the stored CRC.
    Cursor cursor(reader, /*with_sha=*/false, /*with_crc=*/true);
    unsigned char h[kEsp8266HeaderSize];
    cursor.read(h);
    if (h[0] != kV2Magic)
        return error("bad-magic",
                     "first byte is " + hex_padded(h[0], 2) + "; an ESP8266 FOTA V2 image starts with 0xea");
    info.v2_header_byte1 = h[1];
    info.v2_app_byte = h[3];

    unsigned char irom[kSegmentHeaderSize];
    cursor.read(irom);
    info.irom_load_addr = le32(irom);
    info.irom_length = le32(irom + 4);
    if (info.irom_length > cursor.remaining())
        return error("truncated-segment", "irom segment at offset 0x8 declares " + std::to_string(info.irom_length) +
                                              " bytes but only " + std::to_string(cursor.remaining()) + " remain");
    cursor.skip(info.irom_length);

    const std::uint64_t second_at = cursor.pos();
    if (cursor.remaining() < kEsp8266HeaderSize)
        return error("truncated-header", "second header at offset " + hex(second_at) + " needs 8 bytes but only " +
                                             std::to_string(cursor.remaining()) + " remain");
    unsigned char h2[kEsp8266HeaderSize];
    cursor.read(h2);
    if (h2[0] != kImageMagic)
        return error("bad-magic", "second header at offset " + hex(second_at) + " starts with " + hex_padded(h2[0], 2) +
                                      ", expected 0xe9");
    const unsigned count = h2[1];
    if (count > kMaxSegments) return error("too-many-segments", too_many_segments(count, second_at));
    info.spi_mode = h2[2];
    info.spi_speed = h2[3] & 0x0F;
    info.spi_size = h2[3] >> 4;
    info.entry_addr = le32(h2 + 4);
    info.flash_size_map = info.spi_size;
    info.flash_layout = layout_for_flash_map(info.spi_size);

    // Windows are at most one slot long, so they never overlap.
    IromCensus census;
    std::uint32_t window = std::min<std::uint32_t>(info.irom_length, kIromUser2Map234 - kIromUser1);
    if (info.flash_layout == Layout::nonos_256_256 || info.flash_layout == Layout::nonos_512_512) {
        census.user2_begin = info.flash_layout == Layout::nonos_256_256 ? kIromUser2Map0 : kIromUser2Map234;
        window = std::min(window, census.user2_begin - kIromUser1);
        census.user2_end = census.user2_begin + window;
    }
    census.user1_begin = kIromUser1;
    census.user1_end = kIromUser1 + window;
    std::uint8_t checksum = kChecksumSeed;
    if (auto e = read_segments(cursor, count, /*require_aligned=*/false, info.segments, checksum, &census)) return *e;

    // gen_appbin pads 1..16 zeros, esptool 0..15: take the checksum as the byte
    // before the CRC and check it ends a 16-byte block near the segments' end.
    const std::uint64_t end = cursor.pos();
    if (cursor.remaining() < 5)
        return error("missing-checksum", "segments end at offset " + hex(end) +
                                             "; a checksum byte and a 4-byte CRC "
                                             "must follow but only " +
                                             std::to_string(cursor.remaining()) + " bytes remain");
    const std::uint64_t at = cursor.size() - 5;
    if ((at + 1) % 16 != 0 || at - end > 16)
        return error("bad-padding", "checksum byte (5 bytes before the end) is at offset " + hex(at) +
                                        "; it must end a 16-byte block within 16 bytes of the segments' end at " +
                                        hex(end));
    cursor.skip(at - end);
    unsigned char stored_checksum = 0;
    cursor.read({&stored_checksum, 1});
    info.checksum_offset = at;
    info.checksum = stored_checksum;
    if (stored_checksum != checksum)
        return error("bad-checksum", "checksum byte at offset " + hex(at) + " is " + hex_padded(stored_checksum, 2) +
                                         " but the RAM segments give " + hex_padded(checksum, 2));

    const std::uint32_t computed_crc = cursor.crc();  // before the stored CRC is consumed
    const std::uint32_t expected_crc = esp8266_v2_crc(computed_crc);
    unsigned char crc_bytes[4];
    cursor.read(crc_bytes);
    info.crc = le32(crc_bytes);
    if (info.crc != expected_crc)
        return error("bad-crc", "CRC at offset " + hex(at + 1) + " is " + hex_padded(info.crc, 8) + " but bytes 0.." +
                                    hex(at) + " give " + hex_padded(expected_crc, 8) + " (CRC-32 " +
                                    hex_padded(computed_crc, 8) + ")");

    info.slot = info.v2_app_byte == 1 ? "user1" : info.v2_app_byte == 2 ? "user2" : "unknown";
    info.irom_pointers_user1 = census.user1;
    info.irom_pointers_user2 = census.user2;
    if (info.flash_layout == Layout::nonos_1024_1024)
        info.link_slot = "any";  // both slots run code linked at 0x40201010
    else if (info.flash_layout)
        info.link_slot = census_verdict(census);
    else
        info.link_slot = "unknown";
    info.content_end = cursor.pos();
    info.trailing_offset = cursor.pos();
    info.trailing_bytes = 0;
    return info;
}

std::string segment_addresses(const std::vector<SegmentInfo>& segments) {
    std::string out;
    for (const auto& s : segments) out += (out.empty() ? "" : ", ") + hex_padded(s.load_addr, 8);
    return out;
}

std::string bootloader_detail(const ImageInfo& info) {
    const std::string n = std::to_string(info.segments.size());
    if (info.format == ImageFormat::esp32) {
        const ChipEntry& c = *chip_entry(info.chip);
        std::string what = "file is " + describe_image(info);
        if (info.bootloader_desc && !info.bootloader_desc->idf_ver.empty())
            what += " built with esp-idf " + info.bootloader_desc->idf_ver;
        return what + ", not an application: its " + n + " segment(s) load into RAM (" +
               segment_addresses(info.segments) + ") and none into flash-mapped memory (" +
               hex_padded(c.irom_start, 8) + ".." + hex_padded(c.irom_end - 1, 8) +
               (c.drom_start != c.irom_start ? ", " + hex_padded(c.drom_start, 8) + ".." + hex_padded(c.drom_end - 1, 8)
                                             : std::string()) +
               ") and there is no esp_app_desc_t: a second-stage bootloader (or another RAM-only program), which "
               "esptool flashes at " +
               hex(c.bootloader_offset) + " on an " + chip_display_name(info.chip) +
               " and which is never an update. Upload the application (build/<project>.bin)";
    }
    const bool eboot = std::any_of(info.segments.begin(), info.segments.end(), [](const SegmentInfo& s) {
        return s.load_addr >= kEbootIramStart && s.load_addr < kEbootIramEnd;
    });
    return "file is " + describe_image(info) + ", not an application: its " + n + " segment(s) load into RAM (" +
           segment_addresses(info.segments) +
           ") and none into flash-mapped code (0x40200000..0x402fffff), which "
           "every ESP8266 application has. " +
           (eboot ? std::string("It is shaped like Arduino's eboot (IRAM at 0x4010f000) without the sketch that "
                                "elf2bin puts at 0x1000 behind it; upload the sketch's whole .bin")
                  : std::string("It is shaped like boot_v1.x.bin or the ESP8266 RTOS SDK bootloader.bin (or a NONOS "
                                "eagle.flash.bin without its eagle.irom0text.bin); upload the application"));
}

std::optional<ImageError> chip_mismatch(const ImageInfo& info, Chip declared) {
    if (declared == Chip::generic || declared == info.chip) return std::nullopt;
    return error("chip-mismatch", "file is " + describe_image(info) + " but the declared chip is " +
                                      std::string(to_string(declared)) + "; the image is for " +
                                      std::string(to_string(info.chip)));
}

InspectionResult inspect(const ImageReader& reader, Chip declared, const InspectOptions& options) {
    if (reader.size() == 0) return error("truncated-header", "file is empty");
    char first = 0;
    reader.read(0, {&first, 1});
    const auto magic = static_cast<std::uint8_t>(first);

    InspectionResult result = error("bad-magic", "");
    if (magic == kV2Magic) {
        result = parse_esp8266_v2(reader);
    } else if (magic == kImageMagic) {
        // 0xE9 starts both ESP32-family and ESP8266 classic images. Try the ESP32
        // parse first (it fails fast on an unknown chip_id), then classic. When
        // both fail, report the failure of the family the uploader meant.
        InspectionResult esp32 = parse_esp32(reader);
        InspectionResult classic = error("bad-magic", "");
        if (!esp32.ok() || declared == Chip::esp8266) classic = parse_esp8266_classic(reader, options);
        if (esp32.ok() && !(declared == Chip::esp8266 && classic.ok())) {
            result = std::move(esp32);
        } else if (classic.ok()) {
            result = std::move(classic);
        } else {
            bool esp32_intended = is_esp32_family(declared);
            if (declared == Chip::generic && reader.size() > 8) {
                char wp_pin = 0;
                reader.read(8, {&wp_pin, 1});
                esp32_intended = static_cast<std::uint8_t>(wp_pin) == kWpPinDisabled;
            }
            result = esp32_intended ? std::move(esp32) : std::move(classic);
        }
    } else {
        return error("bad-magic", "first byte is " + hex_padded(magic, 2) +
                                      "; ESP images start with 0xe9 (ESP32 family, ESP8266 classic) or 0xea "
                                      "(ESP8266 FOTA V2)");
    }
    if (!result.ok()) return result;
    // A bootloader of another chip is first of all the wrong chip.
    if (auto e = chip_mismatch(result.info(), declared)) return *e;
    if (result.info().role == ImageRole::bootloader) return error("bootloader", bootloader_detail(result.info()));
    return result;
}

}  // namespace

// --------------------------------------------------------------- readers

void MemoryImageReader::read(std::uint64_t offset, std::span<char> out) const {
    if (offset > bytes_.size() || out.size() > bytes_.size() - offset)
        throw std::out_of_range("read of " + std::to_string(out.size()) + " bytes at offset " + std::to_string(offset) +
                                " beyond the " + std::to_string(bytes_.size()) + "-byte image");
    std::memcpy(out.data(), bytes_.data() + offset, out.size());
}

FileImageReader::FileImageReader(const std::filesystem::path& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "open " + path.string());
    struct stat st {};
    if (::fstat(fd_, &st) != 0) {
        const int err = errno;
        ::close(fd_);
        throw std::system_error(err, std::generic_category(), "stat " + path.string());
    }
    size_ = static_cast<std::uint64_t>(st.st_size);
}

FileImageReader::~FileImageReader() {
    if (fd_ >= 0) ::close(fd_);
}

void FileImageReader::read(std::uint64_t offset, std::span<char> out) const {
    std::size_t done = 0;
    while (done < out.size()) {
        const ssize_t n = ::pread(fd_, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw std::system_error(errno, std::generic_category(), "read " + path_.string());
        }
        if (n == 0)
            throw std::runtime_error("read " + path_.string() + ": unexpected end of file at offset " +
                                     std::to_string(offset + done));
        done += static_cast<std::size_t>(n);
    }
}

// --------------------------------------------------------------- chip ids

std::optional<std::uint16_t> esp_chip_id(Chip chip) noexcept {
    if (const ChipEntry* e = chip_entry(chip)) return e->id;
    return std::nullopt;
}

std::optional<Chip> chip_for_esp_chip_id(std::uint16_t chip_id) noexcept {
    for (const auto& e : kChips)
        if (e.id == chip_id) return e.chip;
    return std::nullopt;
}

std::string_view to_string(ImageFormat format) noexcept {
    switch (format) {
        case ImageFormat::esp32:
            return "esp32";
        case ImageFormat::esp8266_classic:
            return "esp8266-classic";
        case ImageFormat::esp8266_v2:
            return "esp8266-v2";
    }
    return "unknown";
}

// --------------------------------------------------------------- CRC

std::uint32_t crc32_update(std::uint32_t crc, std::span<const unsigned char> bytes) noexcept {
    static const auto table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[i] = c;
        }
        return t;
    }();
    crc = ~crc;
    for (unsigned char b : bytes) crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

std::uint32_t esp8266_v2_crc(std::uint32_t c) noexcept {
    // gen_appbin.py (Python 2, signed crc32): abs(c) + 1 if c >= 0 else abs(c) - 1.
    return (c & 0x80000000u) ? (c ^ 0xFFFFFFFFu) : c + 1;
}

// --------------------------------------------------------------- API

std::string_view to_string(ImageRole role) noexcept {
    return role == ImageRole::bootloader ? "bootloader" : "application";
}

std::string_view to_string(Esp8266Build build) noexcept {
    switch (build) {
        case Esp8266Build::none:
            return "none";
        case Esp8266Build::arduino:
            return "arduino";
        case Esp8266Build::rtos_app:
            return "rtos-app";
        case Esp8266Build::unknown_app:
            return "unknown-app";
        case Esp8266Build::bootloader:
            return "bootloader";
    }
    return "none";
}

std::string_view esp8266_flash_size_name(unsigned nibble) noexcept {
    // esptool esptool/targets/esp8266.py FLASH_SIZES.
    switch (nibble) {
        case 0:
            return "512KB";
        case 1:
            return "256KB";
        case 2:
            return "1MB";
        case 3:
            return "2MB";
        case 4:
            return "4MB";
        case 5:
            return "2MB-c1";
        case 6:
            return "4MB-c1";
        case 8:
            return "8MB";
        case 9:
            return "16MB";
        default:
            return "";
    }
}

std::string describe_image(const ImageInfo& info) {
    const std::string chip = chip_display_name(info.chip);
    if (info.format == ImageFormat::esp32)
        return "an " + chip + (info.role == ImageRole::bootloader ? " bootloader" : " app image") + " (chip_id " +
               hex_padded(info.chip_id, 4) + ")";
    if (info.format == ImageFormat::esp8266_v2) return "an ESP8266 NONOS FOTA user bin (0xea)";
    switch (info.build) {
        case Esp8266Build::arduino:
            return "an ESP8266 Arduino sketch bin (eboot, then the sketch at 0x1000)";
        case Esp8266Build::rtos_app:
            return "an ESP8266 RTOS SDK v3 app image";
        case Esp8266Build::bootloader:
            return "an ESP8266 bootloader";
        default:
            break;
    }
    if (!info.segments.empty() && info.segments[0].load_addr == kArduinoIrom)
        return "an ESP8266 Arduino sketch without its eboot (the sketch's irom0 at 0x40201010 belongs at flash "
               "0x1010, behind eboot)";
    return "an ESP8266 classic image with flash-mapped code that is neither an Arduino sketch nor an RTOS SDK v3 app";
}

std::optional<Layout> implied_layout(const ImageInfo& info) noexcept {
    if (info.format == ImageFormat::esp8266_v2) return info.flash_layout;
    if (info.format != ImageFormat::esp8266_classic) return std::nullopt;
    if (info.build == Esp8266Build::arduino) return Layout::single;
    if (info.build == Esp8266Build::rtos_app) return Layout::ota;
    return std::nullopt;
}

InspectionResult inspect_esp_image(const ImageReader& reader, Chip declared_chip, InspectOptions options) {
    try {
        return inspect(reader, declared_chip, options);
    } catch (const std::exception& e) {
        return ImageError{"read-error", std::string("reading the image failed: ") + e.what()};
    }
}

std::optional<ImageError> check_declared(const ImageInfo& info, Chip chip, Layout layout, std::string_view slot) {
    if (auto e = chip_mismatch(info, chip)) return e;
    if (info.role == ImageRole::bootloader) return error("bootloader", bootloader_detail(info));

    if (!layout_allows_slot(layout, slot))
        return error("bad-slot", "slot \"" + std::string(slot) + "\" is not valid for layout " +
                                     std::string(to_string(layout)) + "; valid: " + valid_slot_names(layout));

    const std::string declared(to_string(layout));
    const bool v2 = info.format == ImageFormat::esp8266_v2;
    if (is_nonos_layout(layout) && !v2)
        return error("layout-mismatch", "layout " + declared +
                                            " needs an ESP8266 NONOS FOTA user1/user2 bin (first byte 0xea), but the "
                                            "file is " +
                                            describe_image(info));
    if (info.format == ImageFormat::esp8266_classic) {
        const auto implied = implied_layout(info);
        if (implied == layout) return std::nullopt;
        if (implied == Layout::single)
            return error("layout-mismatch", "file is " + describe_image(info) +
                                                ", which layout single serves; layout " + declared +
                                                " is for ESP8266 RTOS SDK v3 and ESP-IDF apps");
        if (implied == Layout::ota)
            return error("layout-mismatch", "file is " + describe_image(info) + ", which layout ota serves; layout " +
                                                declared +
                                                " on ESP8266 is for Arduino sketch bins (eboot at 0x0, the sketch at "
                                                "0x1000)");
        return error("layout-mismatch",
                     "file is " + describe_image(info) +
                         ", which no layout can serve: layout "
                         "single takes an Arduino sketch bin (eboot + sketch), layout ota an RTOS SDK "
                         "v3 app (flash-mapped segments first)");
    }
    if (!v2) return std::nullopt;

    if (!is_nonos_layout(layout))
        return error("layout-mismatch",
                     "file is an ESP8266 NONOS FOTA user bin (0xea), which only the layouts "
                     "256+256, 512+512 and 1024+1024 serve; declared " +
                         declared);
    const std::string map = std::to_string(info.flash_size_map.value_or(0xFF));
    if (!info.flash_layout)
        return error("layout-mismatch", "image flash size map " + map + " has no FOTA layout; declared " + declared);
    if (*info.flash_layout != layout)
        return error("layout-mismatch", "image is built for flash size map " + map + " (" +
                                            std::string(to_string(*info.flash_layout)) + "); declared " + declared);

    if ((info.slot == "user1" || info.slot == "user2") && info.slot != slot)
        return error("slot-mismatch",
                     "image header byte 3 marks a " + info.slot + " build; declared " + std::string(slot));
    if ((info.link_slot == "user1" || info.link_slot == "user2") && info.link_slot != slot)
        return error("slot-mismatch",
                     "image code is linked for " + info.link_slot + " (" + std::to_string(info.irom_pointers_user1) +
                         " pointers into the user1 irom "
                         "window, " +
                         std::to_string(info.irom_pointers_user2) + " into user2); declared " + std::string(slot));
    return std::nullopt;
}

// --------------------------------------------------------------- JSON

nlohmann::json ImageInfo::to_json() const {
    using nlohmann::json;
    json segs = json::array();
    for (const auto& s : segments)
        segs.push_back({{"offset", s.header_offset}, {"load_addr", hex_padded(s.load_addr, 8)}, {"length", s.length}});
    json j = {
        {"format", to_string(format)},
        {"chip", to_string(chip)},
        {"file_size", file_size},
        {"spi_mode", spi_mode},
        {"spi_speed", spi_speed},
        {"spi_size", spi_size},
        {"entry_addr", hex_padded(entry_addr, 8)},
        {"segments", segs},
        {"checksum", {{"offset", checksum_offset}, {"value", checksum}}},
        {"appended_sha256", appended_sha256 ? json(util::to_hex(*appended_sha256)) : json(nullptr)},
        {"role", to_string(role)},
        {"content_end", content_end},
        {"trailing", {{"offset", trailing_offset}, {"bytes", trailing_bytes}}},
    };
    if (format == ImageFormat::esp32) {
        j["chip_id"] = chip_id;
        j["wp_pin"] = wp_pin;
        j["min_chip_rev"] = min_chip_rev;
        j["min_chip_rev_full"] = min_chip_rev_full;
        j["max_chip_rev_full"] = max_chip_rev_full;
        j["hash_appended"] = hash_appended_flag;
    }
    if (app_desc) {
        j["app_desc"] = {
            {"offset", app_desc->offset},
            {"secure_version", app_desc->secure_version},
            {"version", app_desc->version},
            {"project_name", app_desc->project_name},
            {"time", app_desc->time},
            {"date", app_desc->date},
            {"idf_ver", app_desc->idf_ver},
            {"app_elf_sha256", util::to_hex(app_desc->app_elf_sha256)},
            {"min_efuse_blk_rev_full", app_desc->min_efuse_blk_rev_full},
            {"max_efuse_blk_rev_full", app_desc->max_efuse_blk_rev_full},
            {"mmu_page_size", app_desc->mmu_page_size},
        };
    } else {
        j["app_desc"] = nullptr;
    }
    if (bootloader_desc) {
        j["bootloader_desc"] = {{"secure_version", bootloader_desc->secure_version},
                                {"version", bootloader_desc->version},
                                {"idf_ver", bootloader_desc->idf_ver},
                                {"date_time", bootloader_desc->date_time}};
    }
    if (format != ImageFormat::esp32) {
        // The size nibble is a flash size; only a V2 bin's names a FOTA flash map.
        const std::string_view size_name = esp8266_flash_size_name(spi_size);
        j["flash_size"] = size_name.empty() ? json(nullptr) : json(size_name);
    }
    if (format == ImageFormat::esp8266_v2) {
        j["flash_size_map"] = flash_size_map ? json(*flash_size_map) : json(nullptr);
        j["flash_layout"] = flash_layout ? json(to_string(*flash_layout)) : json(nullptr);
    }
    if (format == ImageFormat::esp8266_classic) {
        j["build"] = to_string(build);
        if (arduino) {
            json eboot = json::array();
            for (const auto& s : arduino->eboot_segments)
                eboot.push_back(
                    {{"offset", s.header_offset}, {"load_addr", hex_padded(s.load_addr, 8)}, {"length", s.length}});
            j["arduino"] = {
                {"eboot",
                 {{"entry_addr", hex_padded(arduino->eboot_entry_addr, 8)},
                  {"segments", eboot},
                  {"checksum_offset", arduino->eboot_checksum_offset}}},
                {"app_offset", arduino->app_offset},
                {"crc", arduino->has_crc
                            ? json({{"length", arduino->crc_length}, {"value", hex_padded(arduino->crc, 8)}})
                            : json(nullptr)},
                {"signature_bytes", arduino->signature_bytes},
            };
        }
    }
    if (format == ImageFormat::esp8266_v2) {
        j["v2"] = {
            {"header_byte1", v2_header_byte1},
            {"app_byte", v2_app_byte},
            {"slot", slot},
            {"link_slot", link_slot},
            {"irom_load_addr", hex_padded(irom_load_addr, 8)},
            {"irom_length", irom_length},
            {"irom_pointers_user1", irom_pointers_user1},
            {"irom_pointers_user2", irom_pointers_user2},
            {"crc", hex_padded(crc, 8)},
        };
    }
    return j;
}

}  // namespace otad::domain
