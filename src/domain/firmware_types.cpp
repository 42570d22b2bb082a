#include "otad/domain/firmware_types.hpp"

#include <array>
#include <cctype>

namespace otad::domain {
namespace {

constexpr std::array kChips = {
    Chip::esp8266,  Chip::esp32,   Chip::esp32s2, Chip::esp32s3,  Chip::esp32c2,
    Chip::esp32c3,  Chip::esp32c5, Chip::esp32c6, Chip::esp32c61, Chip::esp32h2,
    Chip::esp32h21, Chip::esp32h4, Chip::esp32p4, Chip::esp32s31, Chip::generic,
};

constexpr std::array kLayouts = {
    Layout::nonos_256_256, Layout::nonos_512_512, Layout::nonos_1024_1024, Layout::ota, Layout::single,
};

constexpr int kMaxOtaSlots = 16;  // esp-idf: ota_0 .. ota_15

std::string normalized(std::string_view text, std::string_view drop) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        if (drop.find(c) != std::string_view::npos) continue;
        out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
    return out;
}

template <typename T, std::size_t N>
std::string join_names(const std::array<T, N>& values) {
    std::string out;
    for (T v : values) {
        if (!out.empty()) out += ", ";
        out += to_string(v);
    }
    return out;
}

}  // namespace

std::string_view to_string(Chip chip) noexcept {
    switch (chip) {
        case Chip::esp8266:
            return "esp8266";
        case Chip::esp32:
            return "esp32";
        case Chip::esp32s2:
            return "esp32s2";
        case Chip::esp32s3:
            return "esp32s3";
        case Chip::esp32c2:
            return "esp32c2";
        case Chip::esp32c3:
            return "esp32c3";
        case Chip::esp32c5:
            return "esp32c5";
        case Chip::esp32c6:
            return "esp32c6";
        case Chip::esp32c61:
            return "esp32c61";
        case Chip::esp32h2:
            return "esp32h2";
        case Chip::esp32h21:
            return "esp32h21";
        case Chip::esp32h4:
            return "esp32h4";
        case Chip::esp32p4:
            return "esp32p4";
        case Chip::esp32s31:
            return "esp32s31";
        case Chip::generic:
            return "generic";
    }
    return "unknown";
}

std::optional<Chip> parse_chip(std::string_view text) {
    const std::string key = normalized(text, "-_");
    for (Chip c : kChips)
        if (key == to_string(c)) return c;
    return std::nullopt;
}

std::span<const Chip> all_chips() noexcept { return kChips; }

std::string valid_chip_names() { return join_names(kChips); }

bool is_esp32_family(Chip chip) noexcept { return chip != Chip::esp8266 && chip != Chip::generic; }

std::string_view to_string(Layout layout) noexcept {
    switch (layout) {
        case Layout::nonos_256_256:
            return "256+256";
        case Layout::nonos_512_512:
            return "512+512";
        case Layout::nonos_1024_1024:
            return "1024+1024";
        case Layout::ota:
            return "ota";
        case Layout::single:
            return "single";
    }
    return "unknown";
}

std::optional<Layout> parse_layout(std::string_view text) {
    std::string key = normalized(text, "");
    for (char& c : key)
        if (c == ' ' || c == '_' || c == '-') c = '+';
    for (Layout l : kLayouts)
        if (key == to_string(l)) return l;
    return std::nullopt;
}

std::span<const Layout> all_layouts() noexcept { return kLayouts; }

std::string valid_layout_names() { return join_names(kLayouts); }

bool is_nonos_layout(Layout layout) noexcept {
    return layout == Layout::nonos_256_256 || layout == Layout::nonos_512_512 || layout == Layout::nonos_1024_1024;
}

std::vector<std::string> slots_for_layout(Layout layout) {
    if (is_nonos_layout(layout)) return {"user1", "user2"};
    if (layout == Layout::ota) {
        std::vector<std::string> out{""};
        for (int i = 0; i < kMaxOtaSlots; ++i) out.push_back("ota_" + std::to_string(i));
        return out;
    }
    return {""};
}

bool layout_allows_slot(Layout layout, std::string_view slot) noexcept {
    if (is_nonos_layout(layout)) return slot == "user1" || slot == "user2";
    if (layout == Layout::ota) {
        if (slot.empty()) return true;
        if (!slot.starts_with("ota_")) return false;
        std::string_view n = slot.substr(4);
        if (n.empty() || n.size() > 2 || (n.size() == 2 && n[0] == '0')) return false;
        int value = 0;
        for (char c : n) {
            if (c < '0' || c > '9') return false;
            value = value * 10 + (c - '0');
        }
        return value < kMaxOtaSlots;
    }
    return slot.empty();
}

std::string valid_slot_names(Layout layout) {
    if (is_nonos_layout(layout)) return "user1, user2";
    if (layout == Layout::ota) return "\"\" (any), ota_0 .. ota_15";
    return "\"\" (no slots)";
}

std::optional<Layout> layout_for_flash_map(unsigned flash_map) noexcept {
    switch (flash_map) {
        case 0:
            return Layout::nonos_256_256;
        case 2:
        case 3:
        case 4:
            return Layout::nonos_512_512;
        case 5:
        case 6:
        case 8:
        case 9:
            return Layout::nonos_1024_1024;
        default:
            return std::nullopt;
    }
}

}  // namespace otad::domain
