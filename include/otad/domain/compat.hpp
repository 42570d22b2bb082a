#pragma once
// Decisions of the compatibility front-ends: what otad answers device code it
// cannot change. Pure (no I/O, no logging); api/compat_routes.cpp does the
// lookups and turns the results into HTTP. Sources and verified client
// behaviour: docs/compat.md.
//
// Arduino (esp8266/Arduino ESP8266httpUpdate, espressif/arduino-esp32 HTTPUpdate):
//  * The updater family comes from its headers: any `x-ESP8266-*` header means
//    ESP8266, any `x-ESP32-*` header ESP32; when both appear the User-Agent
//    (`ESP8266-http-Update` / `ESP32-http-Update`) decides. `x-<F>-mode`
//    (sketch|spiffs) and `x-<F>-free-space` are required; a STA MAC, when sent,
//    must be a MAC and becomes the device id ("aa:bb:cc:dd:ee:ff").
//  * Artifacts: a sketch is an app image of the device's chip with layout
//    `single` or `ota` (never a NONOS user1/user2 build: the client insists on
//    0xE9). A filesystem image (mode spiffs) is an artifact of chip `generic`
//    (uploaded opaque, not inspected) whose file name starts with `spiffs` or
//    `littlefs` (e.g. spiffs.bin), or any artifact whose slot is `spiffs` or
//    `littlefs`; one of the device's chip is preferred to a generic one.
//  * ESP32 family chip: `?chip=` when given, else the one ESP32-family chip the
//    release has artifacts of for that mode; several -> refused (ambiguous).
//  * Version: with `x-<F>-version`, equivalent to the release's -> 304; older
//    release -> 304 unless the channel allows rollback. Without it the running
//    image's identity decides where the client reports one that can match
//    (ESP32 sketch: `x-ESP32-sketch-sha256` = the image's appended SHA-256, else
//    `x-ESP32-sketch-md5` = the .bin's MD5); equal -> 304, different -> update.
//    Otherwise (ESP8266, spiffs, no identity) -> 304: serving blindly would make
//    a device that never reports a version re-flash itself on every check.
//  * Size: a sketch larger than `x-<F>-free-space` -> 403 (the client would fail
//    with HTTP_UE_TOO_LESS_SPACE anyway). Filesystem images are not checked:
//    free-space measures sketch space, the client checks the FS partition itself.
//
// NONOS (ESP8266 NONOS SDK libupgrade, Espressif's old cloud request form):
//  * `filename` user1.bin / user2.bin (also the SDK's user1.<flash>.new.<map>.bin,
//    whose map names the layout) names the slot the device will WRITE; serving it
//    is decide_update() for a device running the other slot.
//  * The layout is `?layout=`, else the file name's map, else the one NONOS
//    layout the release has ESP8266 builds for; several -> ambiguous.
//  * The AT firmware's `?is_format_simple=true` needs the literal text
//    `"recommended_rom_version": "<v>"` with v at most 11 characters.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "otad/domain/firmware_types.hpp"
#include "otad/domain/slot_selection.hpp"

namespace otad::domain {

// ---------------------------------------------------------------- Arduino

enum class ArduinoFamily { esp8266, esp32 };
enum class ArduinoMode { sketch, spiffs };
std::string_view to_string(ArduinoFamily family) noexcept;  // "ESP8266" / "ESP32" (the header infix)
std::string_view to_string(ArduinoMode mode) noexcept;      // "sketch" / "spiffs"

// What an Arduino updater's request says about the device.
struct ArduinoRequest {
    ArduinoFamily family = ArduinoFamily::esp8266;
    ArduinoMode mode = ArduinoMode::sketch;
    std::uint64_t free_space = 0;
    std::string device_id;      // normalized STA MAC, "" when not sent
    std::string version;        // x-<F>-version, "" when not sent
    std::string sketch_md5;     // lower-case hex, "" when not sent
    std::string sketch_sha256;  // lower-case hex (ESP32 only), "" when not sent
    std::optional<std::uint64_t> sketch_size;
    std::optional<std::uint64_t> chip_size;
    std::string sdk_version;
};

struct ArduinoParseError {
    std::string detail;  // names the header and what was wrong
};

// Reads the updater headers (names compared case-insensitively, first value
// wins). ArduinoParseError when they are missing or malformed.
std::variant<ArduinoRequest, ArduinoParseError> parse_arduino_request(
    std::span<const std::pair<std::string, std::string>> headers);

// "18:FE:34:AA:BB:CC", "18-fe-34-aa-bb-cc" or "18fe34aabbcc" -> "18:fe:34:aa:bb:cc"; nullopt otherwise.
std::optional<std::string> normalize_mac(std::string_view text);

struct ArduinoArtifact {
    std::int64_t id = 0;
    Chip chip = Chip::generic;
    std::string layout;  // as stored: "single", "ota", "512+512", ...
    std::string slot;    // as stored: "", "ota_0", "user1", "spiffs", ...
    std::string filename;
    std::uint64_t size = 0;
    std::string md5;              // lower-case hex
    std::string appended_sha256;  // lower-case hex from the inspected image, "" when none
};

struct ArduinoRelease {
    std::string version;
    bool allow_rollback = false;
    std::vector<ArduinoArtifact> artifacts;
};

// True for slots that name a filesystem image ("spiffs", "littlefs", any case).
bool is_filesystem_slot(std::string_view slot) noexcept;
// The artifact is a filesystem image (see the rule above).
bool is_filesystem_artifact(const ArduinoArtifact& artifact) noexcept;

struct ArduinoServe {
    std::int64_t artifact_id = 0;
    Chip chip = Chip::generic;  // the chip resolved for the device (generic only for a generic FS image)
};
struct ArduinoNotModified {
    std::string detail;
};
struct ArduinoRefused {  // answered 403 (the updaters know 403 as "refused")
    std::string type;    // "no-artifact", "ambiguous-chip", "too-large"
    std::string detail;
};
using ArduinoDecision = std::variant<ArduinoServe, ArduinoNotModified, ArduinoRefused>;

// `requested_chip` is the route's ?chip= (already checked to be of the family).
ArduinoDecision decide_arduino(const ArduinoRequest& request, std::optional<Chip> requested_chip,
                               const ArduinoRelease& release);

// ---------------------------------------------------------------- NONOS

struct NonosFile {
    std::string slot;                   // "user1" / "user2": the slot the device writes
    std::optional<Layout> layout_hint;  // from "user2.1024.new.2.bin"'s map
};

// "user1.bin", "user2.bin", "user1.2048.new.5.bin" (any case) -> NonosFile; nullopt otherwise.
std::optional<NonosFile> parse_nonos_filename(std::string_view filename);

struct NonosServe {
    std::int64_t artifact_id = 0;
    Layout layout = Layout::nonos_512_512;
};
struct NonosMissing {  // answered 404: nothing fits, never the wrong link
    std::string detail;
};
struct NonosAmbiguous {  // answered 409: the release has builds for several layouts
    std::string detail;
};
using NonosDecision = std::variant<NonosServe, NonosMissing, NonosAmbiguous>;

// Picks the artifact of `release_version` to serve for `file`. `layout` is the
// request's ?layout= (a NONOS layout) if any. Uses decide_update's slot rules: for
// 256+256 and 512+512 only the named slot's build; for 1024+1024 the named slot's,
// else a slot-less one, else the other slot's.
NonosDecision decide_nonos(const NonosFile& file, std::optional<Layout> layout, std::string_view release_version,
                           std::span<const CandidateArtifact> candidates);

// Longest version the AT firmware copies safely (a 12-byte buffer, unchecked).
inline constexpr std::size_t kNonosMaxRomVersionLength = 11;

// The `?is_format_simple=true` reply body: one JSON object whose text contains
// exactly `"recommended_rom_version": "<version>"`. nullopt when the version is
// longer than kNonosMaxRomVersionLength or holds characters that would need JSON
// escaping (the device copies the bytes raw).
std::optional<std::string> nonos_rom_version_body(std::string_view version);

}  // namespace otad::domain
