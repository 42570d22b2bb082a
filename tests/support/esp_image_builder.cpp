#include "support/esp_image_builder.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <stdexcept>

#include "otad/util/crypto.hpp"

namespace otad::testing {
namespace {

constexpr std::array kBreakNames = {
    std::pair{Break::none, "none"},
    std::pair{Break::bad_magic, "bad-magic"},
    std::pair{Break::truncated_header, "truncated-header"},
    std::pair{Break::too_many_segments, "too-many-segments"},
    std::pair{Break::truncated_segment, "truncated-segment"},
    std::pair{Break::unaligned_segment, "unaligned-segment"},
    std::pair{Break::missing_checksum, "missing-checksum"},
    std::pair{Break::bad_checksum, "bad-checksum"},
    std::pair{Break::truncated_hash, "truncated-hash"},
    std::pair{Break::bad_appended_hash, "bad-appended-hash"},
    std::pair{Break::wrong_chip_id, "wrong-chip-id"},
    std::pair{Break::unknown_chip_id, "unknown-chip-id"},
    std::pair{Break::bad_app_desc, "bad-app-desc"},
    std::pair{Break::bad_crc, "bad-crc"},
    std::pair{Break::bad_padding, "bad-padding"},
    std::pair{Break::slot_swapped, "slot-swapped"},
    std::pair{Break::flipped_byte, "flipped-byte"},
    std::pair{Break::flipped_last_byte, "flipped-last-byte"},
};

// chip, chip_id, then typical DROM, DRAM, IRAM and IROM load addresses: DROM and
// IROM inside the ranges esptool's targets/*.py give as flash-mapped
// (IROM_MAP_* / DROM_MAP_*), DRAM and IRAM outside them.
struct ChipLayout {
    const char* chip;
    std::uint16_t id;
    std::uint32_t drom, dram, iram, irom;
};
constexpr std::array kChips = {
    ChipLayout{"esp32", 0x0000, 0x3F400020, 0x3FFB0000, 0x40080000, 0x400D0020},
    ChipLayout{"esp32s2", 0x0002, 0x3F000020, 0x3FFBE000, 0x40022000, 0x40080020},
    ChipLayout{"esp32c3", 0x0005, 0x3C000020, 0x3FC88000, 0x40380000, 0x42000020},
    ChipLayout{"esp32s3", 0x0009, 0x3C000020, 0x3FC88000, 0x40374000, 0x42000020},
    ChipLayout{"esp32c2", 0x000C, 0x3C000020, 0x3FCA0000, 0x40380000, 0x42000020},
    ChipLayout{"esp32c6", 0x000D, 0x42800020, 0x40810000, 0x40800000, 0x42000020},
    ChipLayout{"esp32h2", 0x0010, 0x42800020, 0x40810000, 0x40800000, 0x42000020},
    ChipLayout{"esp32p4", 0x0012, 0x40000020, 0x4FF10000, 0x4FF00000, 0x40010020},
    ChipLayout{"esp32c61", 0x0014, 0x42800020, 0x40810000, 0x40800000, 0x42000020},
    ChipLayout{"esp32c5", 0x0017, 0x42800020, 0x40810000, 0x40800000, 0x42000020},
    ChipLayout{"esp32h21", 0x0019, 0x42800020, 0x40810000, 0x40800000, 0x42000020},
    ChipLayout{"esp32h4", 0x001C, 0x42800020, 0x40810000, 0x40800000, 0x42000020},
    ChipLayout{"esp32s31", 0x0020, 0x40000020, 0x5FF10000, 0x5FF00000, 0x40010020},
};

const ChipLayout* chip_layout(std::string_view chip) {
    for (const auto& c : kChips)
        if (chip == c.chip) return &c;
    return nullptr;
}

// splitmix64: deterministic filler bytes.
class Filler {
public:
    explicit Filler(std::uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 0x1234567ull) {}
    void append(std::string& out, std::size_t n) {
        for (std::size_t i = 0; i < n; i += 8) {
            std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            z ^= z >> 31;
            for (std::size_t k = 0; k < 8 && i + k < n; ++k) out.push_back(static_cast<char>(z >> (8 * k)));
        }
    }

private:
    std::uint64_t state_;
};

void put8(std::string& out, std::uint8_t v) { out.push_back(static_cast<char>(v)); }
void put16(std::string& out, std::uint16_t v) {
    put8(out, v & 0xFF);
    put8(out, v >> 8);
}
void put32(std::string& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) put8(out, (v >> (8 * i)) & 0xFF);
}
void set32(std::string& out, std::size_t at, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out[at + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}
void put_str(std::string& out, const std::string& s, std::size_t width) {
    std::string field = s.substr(0, width);
    field.resize(width, '\0');
    out += field;
}

std::uint8_t xor_of(std::string_view bytes, std::uint8_t seed) {
    for (char c : bytes) seed ^= static_cast<std::uint8_t>(c);
    return seed;
}

std::string app_desc_bytes(const AppDescSpec& a, std::uint32_t seed) {
    std::string d;
    put32(d, 0xABCD5432);
    put32(d, a.secure_version);
    put32(d, 0);
    put32(d, 0);
    put_str(d, a.version, 32);
    put_str(d, a.project_name, 32);
    put_str(d, a.time, 16);
    put_str(d, a.date, 16);
    put_str(d, a.idf_ver, 32);
    Filler(seed + 1000).append(d, 32);  // app_elf_sha256
    put16(d, a.min_efuse_blk_rev_full);
    put16(d, a.max_efuse_blk_rev_full);
    put8(d, a.mmu_page_size);
    d.resize(256, '\0');
    return d;
}

// esp_bootloader_desc_t (esp-idf components/esp_bootloader_format/include/
// esp_bootloader_desc.h): magic byte 0x50, reserved[2], secure_version u8,
// version u32, idf_ver[32], date_time[24], reserved[16].
std::string bootloader_desc_bytes(const AppDescSpec& a) {
    std::string d;
    put8(d, 0x50);
    put8(d, 0);
    put8(d, 0);
    put8(d, static_cast<std::uint8_t>(a.secure_version));
    put32(d, 1);
    put_str(d, a.idf_ver, 32);
    put_str(d, a.date + " " + a.time, 24);
    d.resize(80, '\0');
    return d;
}

std::uint32_t round_up(std::uint64_t v, std::uint32_t to) { return static_cast<std::uint32_t>((v + to - 1) / to * to); }

// Zeros so the checksum byte that follows ends a 16-byte block (esptool style).
void pad_for_checksum(std::string& out) {
    const std::size_t pad = 15 - out.size() % 16;
    out.append(pad, '\0');
}

std::string sha256_raw(std::string_view bytes) {
    const auto d = util::sha256(bytes);
    return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

}  // namespace

std::string_view to_string(Break b) {
    for (const auto& [value, name] : kBreakNames)
        if (value == b) return name;
    return "unknown";
}

std::optional<Break> parse_break(std::string_view name) {
    std::string key(name);
    std::replace(key.begin(), key.end(), '_', '-');
    for (const auto& [value, n] : kBreakNames)
        if (key == n) return value;
    return std::nullopt;
}

std::string valid_break_names() {
    std::string out;
    for (const auto& [value, name] : kBreakNames) {
        if (!out.empty()) out += ", ";
        out += name;
    }
    return out;
}

std::optional<std::uint16_t> esp32_chip_id(std::string_view chip) {
    if (const ChipLayout* c = chip_layout(chip)) return c->id;
    return std::nullopt;
}

std::vector<SegmentSpec> esp32_default_segments(std::string_view chip, bool bootloader) {
    const ChipLayout* c = chip_layout(chip);
    if (c == nullptr) throw std::invalid_argument("unknown ESP32-family chip: " + std::string(chip));
    if (bootloader) return {{c->dram, 0x1BDC}, {c->iram, 0x3D20}, {c->iram + 0x4000, 0xF2C}};
    return {{c->drom, 0x2000}, {c->dram, 0x400}, {c->iram, 0x1000}, {c->irom, 0x8000}};
}

std::uint32_t arduino_crc(std::string_view bytes) {
    std::uint32_t crc = 0xFFFFFFFFu;
    for (char ch : bytes) {
        const auto byte = static_cast<std::uint8_t>(ch);
        for (int bit = 7; bit >= 0; --bit) {
            const bool top = (crc & 0x80000000u) != 0;
            const bool in = ((byte >> bit) & 1u) != 0;
            crc <<= 1;
            if (top != in) crc ^= 0x04C11DB7u;
        }
    }
    return crc;
}

Esp8266ClassicSpec esp8266_nonos_bootloader_spec() {
    // boot_v1.7.bin: IRAM 0x40100000 (0xa20), DRAM 0x3FFE8000 (0x2fc) and 0x3FFE82FC (0x2a4), size byte 0.
    Esp8266ClassicSpec spec;
    spec.flash_size_map = 0;
    spec.entry_addr = 0x4010057C;
    spec.segments = {{0x40100000, 0xA20}, {0x3FFE8000, 0x2FC}, {0x3FFE82FC, 0x2A4}};
    spec.append_sha256 = false;
    return spec;
}

Esp8266ClassicSpec esp8266_eboot_spec() {
    const ArduinoSpec arduino;
    Esp8266ClassicSpec spec;
    spec.flash_mode = arduino.flash_mode;
    spec.flash_size_map = arduino.flash_size;
    spec.entry_addr = arduino.eboot_entry;
    spec.segments = arduino.eboot_segments;
    spec.append_sha256 = false;
    return spec;
}

std::uint32_t zlib_crc32(std::string_view bytes) {
    std::uint32_t crc = 0xFFFFFFFFu;
    for (char c : bytes) {
        crc ^= static_cast<std::uint8_t>(c);
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

std::uint32_t esp8266_stored_crc(std::string_view bytes) {
    // gen_appbin.py: c read as signed 32-bit; |c| + 1 when c >= 0, |c| - 1 when c < 0.
    const auto c = static_cast<std::int32_t>(zlib_crc32(bytes));
    const std::int64_t stored = c >= 0 ? std::int64_t{c} + 1 : -std::int64_t{c} - 1;
    return static_cast<std::uint32_t>(stored);
}

std::uint32_t irom_link_address(int slot, std::uint8_t flash_map) {
    if (slot != 2) return 0x40201010;
    if (flash_map == 0) return 0x40241010;
    if (flash_map >= 2 && flash_map <= 4) return 0x40281010;
    return 0x40201010;
}

// ------------------------------------------------------------------- ESP32

std::string build_esp32_image(const Esp32Spec& spec_in, Break broken) {
    Esp32Spec spec = spec_in;
    auto chip_id = esp32_chip_id(spec.chip);
    if (!chip_id) throw std::invalid_argument("unknown ESP32-family chip: " + spec.chip);
    if (spec.segments.empty()) spec.segments = esp32_default_segments(spec.chip, spec.bootloader);
    if (spec.segments[0].length < 256)
        throw std::invalid_argument("first ESP32 segment must hold at least 256 bytes (esp_app_desc_t)");
    if (broken == Break::wrong_chip_id) chip_id = spec.chip == "esp32s3" ? 0x0000 : 0x0009;
    if (broken == Break::unknown_chip_id) chip_id = 0x7777;

    // Size of the file without the last segment's data: header, segment headers,
    // other data, 1..16 bytes of padding+checksum, hash, trailer.
    if (spec.min_size > 0) {
        std::uint64_t fixed = 24 + 8 * spec.segments.size() + 4 /* pad 3 + checksum */ + (spec.hash_appended ? 32 : 0) +
                              spec.trailer.size();
        for (std::size_t i = 0; i + 1 < spec.segments.size(); ++i) fixed += spec.segments[i].length;
        if (spec.min_size > fixed) {
            auto& last = spec.segments.back();
            last.length = std::max(last.length, round_up(spec.min_size - fixed, 4));
        }
    }
    if (broken == Break::unaligned_segment) spec.segments.back().length += 2;

    std::string out;
    put8(out, 0xE9);
    put8(out, broken == Break::too_many_segments ? 17 : static_cast<std::uint8_t>(spec.segments.size()));
    put8(out, spec.spi_mode);
    put8(out, static_cast<std::uint8_t>((spec.spi_size << 4) | (spec.spi_speed & 0x0F)));
    put32(out, spec.entry_addr);
    put8(out, 0xEE);      // wp_pin disabled
    out.append(3, '\0');  // spi_pin_drv
    put16(out, *chip_id);
    put8(out, spec.min_chip_rev);
    put16(out, spec.min_chip_rev_full);
    put16(out, spec.max_chip_rev_full);
    out.append(4, '\0');  // reserved
    put8(out, spec.hash_appended ? 1 : 0);

    Filler filler(spec.seed);
    std::uint8_t checksum = 0xEF;
    std::size_t last_data_at = 0;
    for (std::size_t i = 0; i < spec.segments.size(); ++i) {
        const auto& seg = spec.segments[i];
        put32(out, seg.load_addr);
        put32(out, seg.length);
        std::string data;
        if (i == 0 && !spec.bootloader) {
            data = app_desc_bytes(spec.app, spec.seed);
            if (broken == Break::bad_app_desc) data[0] = static_cast<char>(0x33);
        } else if (i == 0 && spec.bootloader_desc) {
            data = bootloader_desc_bytes(spec.app);
        }
        filler.append(data, seg.length - data.size());
        checksum = xor_of(data, checksum);
        last_data_at = out.size();
        out += data;
    }
    const std::size_t segments_end = out.size();
    pad_for_checksum(out);
    put8(out, broken == Break::bad_checksum ? static_cast<std::uint8_t>(checksum + 1) : checksum);
    const std::size_t checksum_end = out.size();
    if (spec.hash_appended) {
        std::string hash = sha256_raw(out);
        if (broken == Break::bad_appended_hash) hash[0] = static_cast<char>(hash[0] ^ 0x01);
        out += hash;
    }
    out += spec.trailer;

    switch (broken) {
        case Break::bad_magic:
            out[0] = static_cast<char>(0xE8);
            break;
        case Break::truncated_header:
            out.resize(10);
            break;
        case Break::truncated_segment:
            out.resize(last_data_at + spec.segments.back().length / 2);
            break;
        case Break::missing_checksum:
            out.resize(segments_end);
            break;
        case Break::truncated_hash:
            out.resize(checksum_end + 10);
            break;
        default:
            break;
    }
    return out;
}

// --------------------------------------------------------- ESP8266 classic

namespace {

// Header, segments, zero padding and checksum of one classic image. Returns the
// offset of the last segment's data (for truncation breaks). `data_of(i, seg)`
// gives segment i's first bytes (the rest is filler).
template <class DataOf>
std::size_t write_classic_image(std::string& out, std::uint8_t mode, std::uint8_t size_freq, std::uint32_t entry,
                                const std::vector<SegmentSpec>& segments, std::uint8_t segment_count, Filler& filler,
                                DataOf data_of, std::uint8_t& checksum, std::size_t& segments_end) {
    put8(out, 0xE9);
    put8(out, segment_count);
    put8(out, mode);
    put8(out, size_freq);
    put32(out, entry);
    checksum = 0xEF;
    std::size_t last_data_at = 0;
    for (std::size_t i = 0; i < segments.size(); ++i) {
        const auto& seg = segments[i];
        put32(out, seg.load_addr);
        put32(out, seg.length);
        std::string data = data_of(i, seg);
        filler.append(data, seg.length - data.size());
        checksum = xor_of(data, checksum);
        last_data_at = out.size();
        out += data;
    }
    segments_end = out.size();
    pad_for_checksum(out);
    return last_data_at;
}

void fill_to_sector(std::string& out) {
    if (out.size() % 4096 != 0) out.append(4096 - out.size() % 4096, static_cast<char>(0xFF));
}

}  // namespace

std::string build_esp8266_classic_image(const Esp8266ClassicSpec& spec_in, Break broken) {
    Esp8266ClassicSpec spec = spec_in;
    if (spec.segments.empty()) throw std::invalid_argument("ESP8266 classic image needs at least one segment");
    if (spec.rtos_app_desc && spec.segments[0].length < 256)
        throw std::invalid_argument("first segment must hold at least 256 bytes for esp_app_desc_t");
    if (spec.min_size > 0) {
        std::uint64_t fixed = 8 + 8 * spec.segments.size() + 16 + (spec.append_sha256 ? 32 : 0) + spec.trailer.size();
        for (std::size_t i = 1; i < spec.segments.size(); ++i) fixed += spec.segments[i].length;
        if (spec.min_size > fixed)
            spec.segments[0].length = std::max(spec.segments[0].length, round_up(spec.min_size - fixed, 4));
    }

    std::string out;
    Filler filler(spec.seed);
    std::uint8_t checksum = 0;
    std::size_t segments_end = 0;
    const std::size_t last_data_at = write_classic_image(
        out, spec.flash_mode, static_cast<std::uint8_t>((spec.flash_size_map << 4) | (spec.flash_freq & 0x0F)),
        spec.entry_addr, spec.segments,
        broken == Break::too_many_segments ? 17 : static_cast<std::uint8_t>(spec.segments.size()), filler,
        [&](std::size_t i, const SegmentSpec&) {
            std::string data;
            if (i == 0 && spec.rtos_app_desc) {
                data = app_desc_bytes(spec.app, spec.seed);
                if (broken == Break::bad_app_desc) data[0] = static_cast<char>(0x33);
            }
            return data;
        },
        checksum, segments_end);
    put8(out, broken == Break::bad_checksum ? static_cast<std::uint8_t>(checksum + 1) : checksum);
    if (spec.append_sha256) {
        std::string hash = sha256_raw(out);
        if (broken == Break::bad_appended_hash) hash[0] = static_cast<char>(hash[0] ^ 0x01);
        out += hash;
    }
    out += spec.trailer;
    if (spec.erased_fill) fill_to_sector(out);

    switch (broken) {
        case Break::bad_magic:
            out[0] = static_cast<char>(0xE8);
            break;
        case Break::truncated_header:
            out.resize(5);
            break;
        case Break::truncated_segment:
            out.resize(last_data_at + spec.segments.back().length / 2);
            break;
        case Break::missing_checksum:
            out.resize(segments_end);
            break;
        case Break::flipped_byte:
            out[last_data_at / 2] = static_cast<char>(out[last_data_at / 2] ^ 0x10);
            break;
        case Break::flipped_last_byte:
            out.back() = static_cast<char>(out.back() ^ 0x01);
            break;
        default:
            break;
    }
    return out;
}

// ----------------------------------------------------------- Arduino ESP8266

std::string build_arduino_image(const ArduinoSpec& spec_in, Break broken) {
    ArduinoSpec spec = spec_in;
    if (spec.app_segments.empty() || spec.app_segments[0].length < 16)
        throw std::invalid_argument("the sketch's first segment (.irom0.text) needs at least 16 bytes");
    if (spec.eboot_segments.empty()) throw std::invalid_argument("eboot needs at least one segment");
    const std::uint8_t size_freq = static_cast<std::uint8_t>((spec.flash_size << 4) | (spec.flash_freq & 0x0F));
    if (spec.min_size > 0) {
        std::uint64_t fixed = 0x1000 + 8 + 8 * spec.app_segments.size() + 16;
        for (std::size_t i = 1; i < spec.app_segments.size(); ++i) fixed += spec.app_segments[i].length;
        if (spec.min_size > fixed)
            spec.app_segments[0].length = std::max(spec.app_segments[0].length, round_up(spec.min_size - fixed, 4));
    }

    std::string out;
    Filler filler(spec.seed);
    std::uint8_t checksum = 0;
    std::size_t segments_end = 0;
    auto no_data = [](std::size_t, const SegmentSpec&) { return std::string(); };
    write_classic_image(out, spec.flash_mode, size_freq, spec.eboot_entry, spec.eboot_segments,
                        static_cast<std::uint8_t>(spec.eboot_segments.size()), filler, no_data, checksum, segments_end);
    put8(out, checksum);
    if (out.size() > 0x1000) throw std::invalid_argument("eboot does not fit below 0x1000");
    const std::size_t fill_from = out.size();
    out.append(0x1000 - out.size(), static_cast<char>(0xAA));

    const std::size_t last_data_at = write_classic_image(
        out, spec.flash_mode, size_freq, spec.app_entry, spec.app_segments,
        broken == Break::too_many_segments ? 17 : static_cast<std::uint8_t>(spec.app_segments.size()), filler,
        [](std::size_t i, const SegmentSpec&) {
            return i == 0 ? std::string(8, '\0') : std::string();  // __crc_len, __crc_val placeholders
        },
        checksum, segments_end);
    put8(out, broken == Break::bad_checksum ? static_cast<std::uint8_t>(checksum + 1) : checksum);
    if (broken == Break::bad_padding) out[fill_from + (0x1000 - fill_from) / 2] = static_cast<char>(0xAB);
    if (spec.with_crc) {
        // add_crc: CRC over the file with both words zero, then store length and CRC.
        const std::uint32_t crc = arduino_crc(out);
        set32(out, 0x1010, static_cast<std::uint32_t>(out.size()));
        set32(out, 0x1014, broken == Break::bad_crc ? crc + 1 : crc);
    }
    if (spec.signature_bytes > 0) {
        filler.append(out, spec.signature_bytes);
        put32(out, spec.signature_bytes);
    }
    out += spec.trailer;
    if (spec.erased_fill) fill_to_sector(out);

    switch (broken) {
        case Break::bad_magic:
            out[0] = static_cast<char>(0xE8);
            break;
        case Break::truncated_header:
            out.resize(5);
            break;
        case Break::truncated_segment:
            out.resize(last_data_at + spec.app_segments.back().length / 2);
            break;
        case Break::missing_checksum:
            out.resize(segments_end);
            break;
        case Break::flipped_byte: {
            const std::size_t at = 0x1018 + spec.app_segments[0].length / 2;
            out[at] = static_cast<char>(out[at] ^ 0x10);
            break;
        }
        case Break::flipped_last_byte:
            out.back() = static_cast<char>(out.back() ^ 0x01);
            break;
        default:
            break;
    }
    return out;
}

// ------------------------------------------------------------ ESP8266 V2

std::string build_esp8266_v2_image(const Esp8266V2Spec& spec_in, Break broken) {
    Esp8266V2Spec spec = spec_in;
    if (spec.slot != 1 && spec.slot != 2) throw std::invalid_argument("V2 slot must be 1 (user1) or 2 (user2)");
    if (spec.ram_segments.empty() || spec.ram_segments[0].length < 4 * spec.irom_pointers)
        throw std::invalid_argument("first RAM segment too small for the irom pointers");
    for (auto& seg : spec.ram_segments) seg.length = round_up(seg.length, 4);
    spec.irom_length = round_up(spec.irom_length, 16);
    if (spec.irom_length == 0) spec.irom_length = 16;
    if (spec.min_size > 0) {
        std::uint64_t fixed = 16 + 8 + 16 + 1 + 4;  // headers, worst padding, checksum, CRC
        for (const auto& seg : spec.ram_segments) fixed += 8 + seg.length;
        if (spec.min_size > fixed) spec.irom_length = std::max(spec.irom_length, round_up(spec.min_size - fixed, 16));
    }

    std::uint8_t app = spec.app_byte.value_or(static_cast<std::uint8_t>(spec.slot));
    if (broken == Break::slot_swapped) app = spec.slot == 1 ? 2 : 1;

    std::string out;
    put8(out, broken == Break::bad_magic ? 0xEB : 0xEA);
    put8(out, 4);
    put8(out, 0);
    put8(out, app);
    put32(out, spec.entry_addr);
    // irom0 segment: load address 0, flash-mapped code (not in the checksum).
    put32(out, 0);
    put32(out, spec.irom_length);
    Filler filler(spec.seed);
    filler.append(out, spec.irom_length);

    put8(out, 0xE9);
    put8(out, broken == Break::too_many_segments ? 17 : static_cast<std::uint8_t>(spec.ram_segments.size()));
    put8(out, spec.flash_mode);
    put8(out, static_cast<std::uint8_t>((spec.flash_map << 4) | (spec.clk_div & 0x0F)));
    put32(out, spec.entry_addr);

    const std::uint32_t link = irom_link_address(spec.slot, spec.flash_map);
    std::uint8_t checksum = 0xEF;
    std::size_t last_data_at = 0;
    for (std::size_t i = 0; i < spec.ram_segments.size(); ++i) {
        const auto& seg = spec.ram_segments[i];
        put32(out, seg.load_addr);
        put32(out, seg.length);
        std::string data;
        filler.append(data, seg.length);
        if (i == 0) {
            // Literal pointers into irom0, spread through .text like a linker would.
            const std::size_t stride = (seg.length / 4) / std::max<std::uint32_t>(spec.irom_pointers, 1);
            for (std::uint32_t k = 0; k < spec.irom_pointers; ++k)
                set32(data, 4 * (k * stride), link + (k * 0x40) % spec.irom_length);
        }
        checksum = xor_of(data, checksum);
        last_data_at = out.size();
        out += data;
    }
    const std::size_t segments_end = out.size();
    // gen_appbin: 16 - ((size + 1) & 15) zeros (a full 16 when already aligned).
    std::size_t pad = spec.gen_appbin_padding ? 16 - ((out.size() + 1) & 15) : 15 - out.size() % 16;
    if (broken == Break::bad_padding) pad += 16;
    out.append(pad, '\0');
    put8(out, broken == Break::bad_checksum ? static_cast<std::uint8_t>(checksum + 1) : checksum);
    const std::uint32_t crc = esp8266_stored_crc(out);
    put32(out, broken == Break::bad_crc ? crc + 1 : crc);

    switch (broken) {
        case Break::truncated_header:
            out.resize(10);
            break;
        case Break::truncated_segment:
            out.resize(last_data_at + spec.ram_segments.back().length / 2);
            break;
        case Break::missing_checksum:
            out.resize(segments_end);
            break;
        default:
            break;
    }
    return out;
}

}  // namespace otad::testing
