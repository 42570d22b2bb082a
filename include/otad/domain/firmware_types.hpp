#pragma once
// Vocabulary shared by image inspection, slot selection and API validation:
// which chip a firmware is for, which flash layout it is built for, and which
// slot names each layout knows. Names are the stable strings used in the API,
// the database and error messages.

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace otad::domain {

// Target chip of a firmware. `generic` is a non-Espressif (or uninspected) blob.
enum class Chip {
    esp8266,
    esp32,
    esp32s2,
    esp32s3,
    esp32c2,
    esp32c3,
    esp32c5,
    esp32c6,
    esp32c61,
    esp32h2,
    esp32h21,
    esp32h4,
    esp32p4,
    esp32s31,
    generic,
};

// "esp32c3", "generic", ...
std::string_view to_string(Chip chip) noexcept;
// Accepts the names of to_string, case-insensitive, with '-' and '_' ignored
// ("ESP32-C3" == "esp32c3"). nullopt for anything else.
std::optional<Chip> parse_chip(std::string_view text);
// Every chip in declaration order.
std::span<const Chip> all_chips() noexcept;
// "esp8266, esp32, esp32s2, ..." for "400: valid chips are ..." messages.
std::string valid_chip_names();
// True for the chips whose images carry the 24-byte ESP32 header with a chip_id.
bool is_esp32_family(Chip chip) noexcept;

// Flash layout a firmware is built for.
//  nonos_*  ESP8266 NONOS SDK FOTA (user1/user2 bins, docs/protocols.md#nonos-fota)
//  ota      ESP-IDF / ESP8266 RTOS v3 partition table with ota_0..ota_15
//  single   one application image, no slots (Arduino, plain updates)
enum class Layout { nonos_256_256, nonos_512_512, nonos_1024_1024, ota, single };

// "256+256", "512+512", "1024+1024", "ota", "single".
std::string_view to_string(Layout layout) noexcept;
// Accepts to_string names, case-insensitive; for the NONOS layouts also ' ', '_'
// or '-' instead of '+' (form encoding turns '+' into a space).
std::optional<Layout> parse_layout(std::string_view text);
std::span<const Layout> all_layouts() noexcept;
std::string valid_layout_names();
bool is_nonos_layout(Layout layout) noexcept;

// Slot names a layout accepts in an upload / device request:
//  NONOS layouts: "user1", "user2";  ota: "" (any) and "ota_0".."ota_15";  single: "".
std::vector<std::string> slots_for_layout(Layout layout);
bool layout_allows_slot(Layout layout, std::string_view slot) noexcept;
// "user1, user2" / "\"\" (none), ota_0 .. ota_15" for error messages.
std::string valid_slot_names(Layout layout);

// The NONOS layout implied by SPI_SIZE_MAP (the flash-size nibble of an ESP8266
// image): 0 -> 256+256; 2, 3, 4 -> 512+512; 5, 6, 8, 9 -> 1024+1024; others none.
std::optional<Layout> layout_for_flash_map(unsigned flash_map) noexcept;

}  // namespace otad::domain
