#pragma once
// Builds byte-exact Espressif images for tests, written from the format
// description (docs/esp-image-formats.md), independently of the inspector in
// src/domain/esp_image.cpp: ESP32-family apps and second-stage bootloaders,
// ESP8266 RTOS SDK v3 apps, Arduino ESP8266 sketch bins (eboot + sketch, as
// esp8266/Arduino tools/elf2bin.py writes them), ESP8266 bootloaders and NONOS
// FOTA "V2" user1/user2 bins, valid or broken in one chosen way. Output is
// deterministic: filler bytes come from `seed`. Load addresses are typical for
// each chip (inside its RAM or flash-mapped ranges), not copied from one build.
//
// Broken variants keep every other check valid (checksum, hash and CRC are
// recomputed after the damage), so an inspector must report exactly that one
// fault.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace otad::testing {

enum class Break {
    none,
    bad_magic,          // first byte 0xE8 (0xEB for V2)
    truncated_header,   // file cut to 10 bytes
    too_many_segments,  // segment count 17 (second header for V2)
    truncated_segment,  // file cut in the middle of the last segment's data
    unaligned_segment,  // ESP32: last segment 2 bytes longer (not a multiple of 4)
    missing_checksum,   // file cut right after the segments
    bad_checksum,       // checksum byte + 1
    truncated_hash,     // ESP32: file cut 10 bytes into the appended SHA-256
    bad_appended_hash,  // first byte of the appended SHA-256 flipped
    wrong_chip_id,      // ESP32: chip_id of another chip (esp32s3, or esp32 when building esp32s3)
    unknown_chip_id,    // ESP32: chip_id 0x7777
    bad_app_desc,       // esp_app_desc_t magic word changed
    bad_crc,            // V2: CRC + 1
    bad_padding,        // V2: 16 extra zero bytes before the checksum
    slot_swapped,       // V2: app byte names the other slot (code still linked for `slot`)
    // Arduino bins. bad_checksum / bad_crc / bad_padding / truncated_segment /
    // missing_checksum apply to the sketch (bad_padding: one 0xAA byte changed).
    flipped_byte,       // one byte in the middle of the sketch's code flipped, nothing recomputed
    flipped_last_byte,  // the file's last byte flipped, nothing recomputed
};

std::string_view to_string(Break b);
// "bad-checksum" or "bad_checksum"; nullopt if unknown.
std::optional<Break> parse_break(std::string_view name);
std::string valid_break_names();

struct SegmentSpec {
    std::uint32_t load_addr = 0;
    std::uint32_t length = 0;  // data bytes; the first ESP32 segment must hold >= 256
};

struct AppDescSpec {
    std::uint32_t secure_version = 0;
    std::string version = "1.0.0";
    std::string project_name = "app";
    std::string time = "12:00:00";
    std::string date = "Jan  1 2025";
    std::string idf_ver = "v5.2.1";
    std::uint16_t min_efuse_blk_rev_full = 0;
    std::uint16_t max_efuse_blk_rev_full = 99;
    std::uint8_t mmu_page_size = 16;  // log2(64 KiB)
};

struct Esp32Spec {
    std::string chip = "esp32";  // chip name; see esp32_chip_id()
    // A second-stage bootloader instead of an app: RAM-only segments and no
    // esp_app_desc_t; with bootloader_desc its first segment starts with
    // esp_bootloader_desc_t (IDF >= 5.2) carrying app.idf_ver.
    bool bootloader = false;
    bool bootloader_desc = true;
    AppDescSpec app;
    bool hash_appended = true;
    std::uint8_t spi_mode = 2;  // DIO
    std::uint8_t spi_speed = 0;
    std::uint8_t spi_size = 2;  // 4MB
    std::uint32_t entry_addr = 0x40081000;
    std::uint8_t min_chip_rev = 0;
    std::uint16_t min_chip_rev_full = 0;
    std::uint16_t max_chip_rev_full = 399;
    // Empty: the chip's usual segments (esp32_default_segments). An app's first
    // segment starts with esp_app_desc_t; lengths are multiples of 4.
    std::vector<SegmentSpec> segments;
    // Grow the last segment so the file is at least this long (0: as specified).
    std::uint64_t min_size = 0;
    std::string trailer;  // bytes after the hash (e.g. a signature block)
    std::uint32_t seed = 1;
};

// One ESP8266 classic (0xE9) image. The defaults are an ESP8266 RTOS SDK v3
// app: flash-mapped code first (0x40210010: ota_0 at 0x10000), then IRAM and
// DRAM, the checksum and an appended SHA-256 (its esptool fork's default).
struct Esp8266ClassicSpec {
    std::uint8_t flash_mode = 0;      // QIO
    std::uint8_t flash_size_map = 4;  // size nibble (4 MB)
    std::uint8_t flash_freq = 0;      // 40 MHz
    std::uint32_t entry_addr = 0x40100004;
    std::vector<SegmentSpec> segments = {{0x40210010, 0x800}, {0x40100000, 0x400}, {0x3FFE8000, 0x200}};
    bool append_sha256 = true;   // SHA-256 of bytes 0..checksum after the checksum
    bool rtos_app_desc = false;  // esp_app_desc_t at offset 16 (RTOS SDK >= v3.3)
    AppDescSpec app;
    std::uint64_t min_size = 0;  // grows the first segment
    std::string trailer;
    bool erased_fill = false;  // 0xFF after everything up to a 4 KiB boundary
    std::uint32_t seed = 1;
};

// ESP8266 bootloaders: boot_v1.x / RTOS SDK bootloader shape (IRAM 0x40100000,
// DRAM 0x3FFE8000) and Arduino's eboot alone (IRAM 0x4010F000).
Esp8266ClassicSpec esp8266_nonos_bootloader_spec();
Esp8266ClassicSpec esp8266_eboot_spec();

// An Arduino ESP8266 sketch bin as tools/elf2bin.py writes it: eboot (.text,
// .rodata) at 0, 0xAA up to 0x1000, the sketch (.irom0.text at 0x40201010,
// .text, .text1, .data, .rodata) there, each image with its XOR checksum (the
// sketch's over the CRC placeholders as zeros); then add_crc: the file length
// at 0x1010 and the CRC (poly 0x04C11DB7, MSB first) of the file at 0x1014.
struct ArduinoSpec {
    std::uint8_t flash_mode = 2;  // DIO
    std::uint8_t flash_size = 4;  // size nibble: 4M
    std::uint8_t flash_freq = 0;  // 40 MHz
    std::vector<SegmentSpec> eboot_segments = {{0x4010F000, 0x568}, {0x3FFE8000, 0x40}};
    std::uint32_t eboot_entry = 0x4010F29C;
    std::vector<SegmentSpec> app_segments = {
        {0x40201010, 0x8000}, {0x40100000, 0x1000}, {0x40101000, 0x100}, {0x3FFE8000, 0x400}, {0x3FFE8400, 0x300}};
    std::uint32_t app_entry = 0x401000E0;
    bool with_crc = true;               // core >= 3.0; older builds have code at 0x1010
    std::uint32_t signature_bytes = 0;  // tools/signing.py: signature + u32 length
    std::string trailer;                // bytes after everything else
    bool erased_fill = false;           // 0xFF up to a 4 KiB boundary
    std::uint64_t min_size = 0;         // grows .irom0.text
    std::uint32_t seed = 1;
};

struct Esp8266V2Spec {
    int slot = 1;                            // 1 = user1, 2 = user2: app byte and link window
    std::optional<std::uint8_t> app_byte{};  // raw byte 3 override (SDK 1.x writes the size byte)
    std::uint8_t flash_map = 2;              // SPI_SIZE_MAP (2 = 1 MB 512+512)
    std::uint8_t flash_mode = 0;
    std::uint8_t clk_div = 0;
    std::uint32_t entry_addr = 0x40100004;
    std::uint32_t irom_length = 0x10000;  // rounded up to 16
    // .text @0x40100000, .data, .rodata (gen_appbin order); lengths rounded up to 4.
    std::vector<SegmentSpec> ram_segments = {{0x40100000, 0x6000}, {0x3FFE8000, 0x400}, {0x3FFE8400, 0x1000}};
    std::uint32_t irom_pointers = 16;  // words in .text pointing into the slot's irom link window
    bool gen_appbin_padding = true;    // 1..16 zeros (gen_appbin) vs 0..15 (esptool)
    std::uint64_t min_size = 0;        // grows the irom segment
    std::uint32_t seed = 1;
};

// ESP32-family chip_id for a chip name ("esp32c3"); nullopt for unknown names.
std::optional<std::uint16_t> esp32_chip_id(std::string_view chip);

std::string build_esp32_image(const Esp32Spec& spec, Break broken = Break::none);
std::string build_esp8266_classic_image(const Esp8266ClassicSpec& spec, Break broken = Break::none);
std::string build_esp8266_v2_image(const Esp8266V2Spec& spec, Break broken = Break::none);
std::string build_arduino_image(const ArduinoSpec& spec, Break broken = Break::none);

// The segments an ESP32-family app (DROM, DRAM, IRAM, IROM) or bootloader
// (DRAM, IRAM, IRAM) of `chip` has by default.
std::vector<SegmentSpec> esp32_default_segments(std::string_view chip, bool bootloader);

// elf2bin.py crc8266: CRC-32, polynomial 0x04C11DB7, MSB first, init 0xFFFFFFFF.
std::uint32_t arduino_crc(std::string_view bytes);

// CRC-32 (zlib), bitwise, and the ESP8266 SDK's stored-CRC rule over it
// (docs/protocols.md#nonos-v2-crc; ESP8266_NONOS_SDK tools/gen_appbin.py, esptool esp8266_crc32).
std::uint32_t zlib_crc32(std::string_view bytes);
std::uint32_t esp8266_stored_crc(std::string_view bytes);

// The irom link address of a V2 slot for a flash map (user1 0x40201010; user2
// 0x40241010 for map 0, 0x40281010 for maps 2-4, 0x40201010 for 1024+1024).
std::uint32_t irom_link_address(int slot, std::uint8_t flash_map);

}  // namespace otad::testing
