#include "otad/domain/compat.hpp"

#include <algorithm>
#include <charconv>
#include <set>

#include "otad/domain/version.hpp"
#include "otad/util/strings.hpp"

namespace otad::domain {
namespace {

using util::iequals;

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool is_hex(char c) noexcept { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// Lower-case hex of exactly `digits` characters, or "" when the text is not that.
std::string hex_or_empty(std::string_view text, std::size_t digits) {
    text = trim(text);
    if (text.size() != digits || !std::all_of(text.begin(), text.end(), is_hex)) return {};
    return util::to_lower(text);
}

std::optional<std::uint64_t> parse_decimal(std::string_view text) {
    text = trim(text);
    if (text.empty() || !std::all_of(text.begin(), text.end(), is_digit)) return std::nullopt;
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
    return value;
}

using HeaderFields = std::span<const std::pair<std::string, std::string>>;

std::optional<std::string_view> find_header(HeaderFields headers, std::string_view name) {
    for (const auto& [n, v] : headers)
        if (iequals(n, name)) return std::string_view(v);
    return std::nullopt;
}

bool has_header_prefix(HeaderFields headers, std::string_view prefix) {
    for (const auto& field : headers)
        if (util::starts_with_icase(field.first, prefix)) return true;
    return false;
}

// --- Arduino artifact kinds

bool is_app_layout(std::string_view layout) noexcept {
    return layout.empty() || iequals(layout, "single") || iequals(layout, "ota");
}

bool fits_mode(const ArduinoArtifact& a, ArduinoMode mode) noexcept {
    if (mode == ArduinoMode::spiffs) return is_filesystem_artifact(a);
    // A sketch: an inspected app image of layout single/ota. NONOS user1/user2
    // builds start with 0xEA and the Arduino updaters refuse anything but 0xE9.
    return !is_filesystem_artifact(a) && a.chip != Chip::generic && is_app_layout(a.layout);
}

// Lower is better: single before ota, slot-less before a slot-specific build,
// the device's chip before a generic filesystem image.
int preference(const ArduinoArtifact& a, Chip chip) noexcept {
    int rank = 0;
    if (a.chip != chip) rank += 100;  // generic FS image
    if (iequals(a.layout, "ota")) rank += 10;
    if (!a.slot.empty() && !is_filesystem_slot(a.slot)) rank += 1;
    return rank;
}

std::string mode_noun(ArduinoMode mode) {
    return mode == ArduinoMode::sketch ? "sketch (an app image of layout single or ota)"
                                       : "filesystem image (a generic artifact named spiffs*.bin or littlefs*.bin)";
}

}  // namespace

std::string_view to_string(ArduinoFamily family) noexcept {
    return family == ArduinoFamily::esp8266 ? "ESP8266" : "ESP32";
}

std::string_view to_string(ArduinoMode mode) noexcept { return mode == ArduinoMode::sketch ? "sketch" : "spiffs"; }

std::optional<std::string> normalize_mac(std::string_view text) {
    text = trim(text);
    std::string digits;
    if (text.size() == 17) {
        const char sep = text[2];
        if (sep != ':' && sep != '-') return std::nullopt;
        for (std::size_t i = 0; i < text.size(); ++i) {
            if (i % 3 == 2) {
                if (text[i] != sep) return std::nullopt;
            } else {
                digits.push_back(text[i]);
            }
        }
    } else if (text.size() == 12) {
        digits.assign(text);
    } else {
        return std::nullopt;
    }
    if (!std::all_of(digits.begin(), digits.end(), is_hex)) return std::nullopt;
    std::string out;
    for (std::size_t i = 0; i < 12; i += 2) {
        if (!out.empty()) out.push_back(':');
        out.push_back(util::ascii_lower(digits[i]));
        out.push_back(util::ascii_lower(digits[i + 1]));
    }
    return out;
}

std::variant<ArduinoRequest, ArduinoParseError> parse_arduino_request(HeaderFields headers) {
    const bool esp8266 = has_header_prefix(headers, "x-ESP8266-");
    const bool esp32 = has_header_prefix(headers, "x-ESP32-");
    ArduinoRequest request;
    if (esp8266 && esp32) {
        // Both families' headers: the updater's fixed User-Agent decides.
        auto agent = find_header(headers, "User-Agent");
        std::string_view ua = agent ? trim(*agent) : std::string_view{};
        if (iequals(ua, "ESP8266-http-Update"))
            request.family = ArduinoFamily::esp8266;
        else if (iequals(ua, "ESP32-http-Update"))
            request.family = ArduinoFamily::esp32;
        else
            return ArduinoParseError{
                "the request carries both x-ESP8266-* and x-ESP32-* headers and its User-Agent "
                "is neither ESP8266-http-Update nor ESP32-http-Update"};
    } else if (esp8266) {
        request.family = ArduinoFamily::esp8266;
    } else if (esp32) {
        request.family = ArduinoFamily::esp32;
    } else {
        return ArduinoParseError{
            "this route serves the Arduino updaters (ESP8266httpUpdate, HTTPUpdate): the request "
            "has no x-ESP8266-* or x-ESP32-* headers"};
    }

    const std::string prefix = "x-" + std::string(to_string(request.family)) + "-";
    auto header = [&](std::string_view suffix) { return find_header(headers, prefix + std::string(suffix)); };

    auto mode = header("mode");
    if (!mode) return ArduinoParseError{"missing header " + prefix + "mode (sketch or spiffs)"};
    if (iequals(trim(*mode), "sketch"))
        request.mode = ArduinoMode::sketch;
    else if (iequals(trim(*mode), "spiffs"))
        request.mode = ArduinoMode::spiffs;
    else
        return ArduinoParseError{"header " + prefix + "mode is '" + std::string(trim(*mode)) +
                                 "'; supported: sketch, spiffs"};

    auto free_space = header("free-space");
    if (!free_space) return ArduinoParseError{"missing header " + prefix + "free-space"};
    auto free_bytes = parse_decimal(*free_space);
    if (!free_bytes)
        return ArduinoParseError{"header " + prefix + "free-space is '" + std::string(trim(*free_space)) +
                                 "'; expected a decimal byte count"};
    request.free_space = *free_bytes;

    // Informational headers: used when well-formed, ignored otherwise (the
    // device cannot change what its core sends).
    if (auto mac = header("STA-MAC"))
        if (auto normalized = normalize_mac(*mac)) request.device_id = *normalized;
    if (auto version = header("version")) request.version = std::string(trim(*version));
    if (auto md5 = header("sketch-md5")) request.sketch_md5 = hex_or_empty(*md5, 32);
    if (request.family == ArduinoFamily::esp32)
        if (auto sha = header("sketch-sha256")) request.sketch_sha256 = hex_or_empty(*sha, 64);
    if (auto size = header("sketch-size")) request.sketch_size = parse_decimal(*size);
    if (auto size = header("chip-size")) request.chip_size = parse_decimal(*size);
    if (auto sdk = header("sdk-version")) request.sdk_version = std::string(trim(*sdk));
    return request;
}

bool is_filesystem_slot(std::string_view slot) noexcept { return iequals(slot, "spiffs") || iequals(slot, "littlefs"); }

bool is_filesystem_artifact(const ArduinoArtifact& artifact) noexcept {
    if (is_filesystem_slot(artifact.slot)) return true;
    return artifact.chip == Chip::generic && (util::starts_with_icase(artifact.filename, "spiffs") ||
                                              util::starts_with_icase(artifact.filename, "littlefs"));
}

ArduinoDecision decide_arduino(const ArduinoRequest& request, std::optional<Chip> requested_chip,
                               const ArduinoRelease& release) {
    const ArduinoMode mode = request.mode;
    std::vector<const ArduinoArtifact*> fitting;
    for (const auto& a : release.artifacts)
        if (fits_mode(a, mode)) fitting.push_back(&a);

    // The device's chip.
    Chip chip = Chip::esp8266;
    if (request.family == ArduinoFamily::esp32) {
        if (requested_chip) {
            chip = *requested_chip;
        } else {
            std::set<Chip> chips;
            for (const auto* a : fitting)
                if (is_esp32_family(a->chip)) chips.insert(a->chip);
            if (chips.size() > 1) {
                std::vector<std::string> names;
                for (Chip c : chips) names.emplace_back(to_string(c));
                return ArduinoRefused{"ambiguous-chip",
                                      "release " + release.version + " has " + std::string(to_string(mode)) +
                                          " images for several ESP32-family chips (" + util::join(names) +
                                          ") and the x-ESP32-* headers do not say which chip this is; add "
                                          "?chip=<name> to the update URL"};
            }
            chip = chips.empty() ? Chip::generic : *chips.begin();
        }
    }

    const ArduinoArtifact* best = nullptr;
    for (const auto* a : fitting) {
        const bool chip_ok = a->chip == chip || (mode == ArduinoMode::spiffs && a->chip == Chip::generic);
        if (!chip_ok) continue;
        if (best == nullptr || preference(*a, chip) < preference(*best, chip)) best = a;
    }
    if (best == nullptr) {
        std::string for_whom =
            chip == Chip::generic ? std::string("an ESP32-family chip") : std::string(to_string(chip));
        return ArduinoRefused{"no-artifact",
                              "release " + release.version + " has no " + mode_noun(mode) + " for " + for_whom};
    }

    // Is the device already running it?
    if (!request.version.empty()) {
        const int order = compare_versions(release.version, request.version);
        if (order == 0)
            return ArduinoNotModified{"device runs " + request.version + ", the channel offers " + release.version};
        if (order < 0 && !release.allow_rollback)
            return ArduinoNotModified{"device runs " + request.version + ", newer than the channel's " +
                                      release.version + " and the channel does not allow rollback"};
    } else if (request.family == ArduinoFamily::esp32 && mode == ArduinoMode::sketch &&
               !request.sketch_sha256.empty() && !best->appended_sha256.empty()) {
        if (request.sketch_sha256 == best->appended_sha256)
            return ArduinoNotModified{"device runs the image of release " + release.version +
                                      " (x-ESP32-sketch-sha256 matches its appended SHA-256)"};
    } else if (request.family == ArduinoFamily::esp32 && mode == ArduinoMode::sketch && !request.sketch_md5.empty()) {
        if (request.sketch_md5 == best->md5)
            return ArduinoNotModified{"device runs the image of release " + release.version +
                                      " (x-ESP32-sketch-md5 matches)"};
    } else {
        return ArduinoNotModified{"the device reports no version (x-" + std::string(to_string(request.family)) +
                                  "-version) and nothing that identifies its running image; pass a version to "
                                  "the updater to receive updates"};
    }

    if (mode == ArduinoMode::sketch && best->size > request.free_space)
        return ArduinoRefused{"too-large", "the " + std::string(to_string(chip)) + " image of release " +
                                               release.version + " is " + std::to_string(best->size) +
                                               " bytes; the device reports " + std::to_string(request.free_space) +
                                               " bytes of free sketch space"};

    return ArduinoServe{best->id, chip};
}

// ---------------------------------------------------------------- NONOS

std::optional<NonosFile> parse_nonos_filename(std::string_view filename) {
    const std::string name = util::to_lower(trim(filename));
    if (name.size() < 9 || name.compare(0, 4, "user") != 0 || (name[4] != '1' && name[4] != '2')) return std::nullopt;
    NonosFile file{name.substr(0, 5), std::nullopt};
    std::string_view rest = std::string_view(name).substr(5);
    if (rest == ".bin") return file;
    // The SDK Makefile's name: user<app>.<flash KB>.new.<map>.bin
    if (rest.size() < 5 || rest.front() != '.' || rest.substr(rest.size() - 4) != ".bin") return std::nullopt;
    std::string_view middle = rest.substr(1, rest.size() - 5);  // "<flash>.new.<map>"
    const auto first_dot = middle.find(".new.");
    if (first_dot == std::string_view::npos) return std::nullopt;
    std::string_view flash = middle.substr(0, first_dot);
    std::string_view map = middle.substr(first_dot + 5);
    auto flash_kb = parse_decimal(flash);
    auto map_number = parse_decimal(map);
    if (!flash_kb || !map_number || flash.empty() || map.empty() || *map_number > 15) return std::nullopt;
    auto layout = layout_for_flash_map(static_cast<unsigned>(*map_number));
    if (!layout) return std::nullopt;  // map 1 (no FOTA) or 7 ("not supported")
    file.layout_hint = layout;
    return file;
}

NonosDecision decide_nonos(const NonosFile& file, std::optional<Layout> layout, std::string_view release_version,
                           std::span<const CandidateArtifact> candidates) {
    const std::string version(release_version);
    std::optional<Layout> chosen = layout ? layout : file.layout_hint;
    if (chosen && !is_nonos_layout(*chosen))
        return NonosMissing{"layout " + std::string(to_string(*chosen)) + " is not an ESP8266 NONOS layout"};
    if (!chosen) {
        std::set<Layout> layouts;
        for (const auto& a : candidates)
            if (a.chip == Chip::esp8266 && is_nonos_layout(a.layout)) layouts.insert(a.layout);
        if (layouts.empty()) return NonosMissing{"release " + version + " has no ESP8266 NONOS (user1/user2) builds"};
        if (layouts.size() > 1) {
            std::vector<std::string> names;
            for (Layout l : layouts) names.emplace_back(to_string(l));
            return NonosAmbiguous{"release " + version + " has NONOS builds for several layouts (" + util::join(names) +
                                  "); the request does not say which flash map the device has: add &layout=, "
                                  "or use one product (and device key) per flash map"};
        }
        chosen = *layouts.begin();
    }

    // The device asks for the slot it will write, so it runs the other one.
    const std::string running = file.slot == "user1" ? "user2" : "user1";
    DeviceState device{Chip::esp8266, *chosen, running, "", std::nullopt, kDefaultOtaSlots};
    auto decision = decide_update(device, ChannelRelease{version, false}, candidates);
    if (auto* offer = std::get_if<Offer>(&decision)) return NonosServe{offer->artifact_id, *chosen};
    if (auto* none = std::get_if<NoUpdate>(&decision)) return NonosMissing{none->detail};
    return NonosMissing{std::get<BadRequest>(decision).detail};
}

std::optional<std::string> nonos_rom_version_body(std::string_view version) {
    if (version.empty() || version.size() > kNonosMaxRomVersionLength) return std::nullopt;
    for (char c : version)
        if (c < 0x21 || c > 0x7e || c == '"' || c == '\\' || c == ',') return std::nullopt;
    const std::string v(version);
    // The first key, followed by `",`: the AT clients find `rom_version": "` and
    // cut the value at the next `",` (esp-at at_ota_cmd.c).
    return "{\"recommended_rom_version\": \"" + v + "\", \"status\": 200, \"productRoms\": [{\"recommended\": 1, " +
           "\"version\": \"" + v + "\"}]}";
}

}  // namespace otad::domain
