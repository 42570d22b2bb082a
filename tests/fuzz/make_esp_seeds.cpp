// make_esp_fuzz_seeds: writes the seed corpus of esp_image_fuzz into a directory,
// from the test image builder (tests/support/esp_image_builder): small valid
// images of every format (ESP32-family apps, ESP8266 classic / Arduino / RTOS SDK
// v3, NONOS FOTA V2 user1/user2) and one image per kind of damage the builder
// knows. Run by tests/fuzz/make_seeds.sh; the output is committed.
//
//   make_esp_fuzz_seeds DIR
//
// Each seed is the harness's input: byte 0 the declared chip (index into
// domain::all_chips()), byte 1 the declared layout (index into all_layouts())
// plus 5 * the slot index of the harness, then the image. Segments are kept
// small so the seeds stay a few hundred bytes to a few KiB.

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>

#include "otad/domain/firmware_types.hpp"
#include "support/esp_image_builder.hpp"

namespace {

using namespace otad::testing;
using otad::domain::Chip;
using otad::domain::Layout;

std::string g_dir;
int g_written = 0;

char chip_byte(Chip chip) {
    auto chips = otad::domain::all_chips();
    return static_cast<char>(std::find(chips.begin(), chips.end(), chip) - chips.begin());
}

// Slot indexes of esp_image_fuzz.cpp's kSlots: 0 "", 1 user1, 2 user2, 3 ota_0.
char layout_byte(Layout layout, int slot_index) {
    auto layouts = otad::domain::all_layouts();
    return static_cast<char>((std::find(layouts.begin(), layouts.end(), layout) - layouts.begin()) +
                             static_cast<long>(layouts.size()) * slot_index);
}

void write_seed(const std::string& name, Chip chip, Layout layout, int slot_index, const std::string& image) {
    std::string bytes;
    bytes.push_back(chip_byte(chip));
    bytes.push_back(layout_byte(layout, slot_index));
    bytes += image;
    std::ofstream out(g_dir + "/seed-" + name, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
        std::cerr << "make_esp_fuzz_seeds: cannot write " << g_dir << "/seed-" << name << "\n";
        std::exit(1);
    }
    ++g_written;
}

Esp32Spec small_esp32(const std::string& chip) {
    Esp32Spec s;
    s.chip = chip;
    s.app.version = "1.2.0";
    s.app.project_name = "fuzz";
    s.segments = {{0x3F400020, 0x120}, {0x3FFB0000, 0x20}, {0x40080000, 0x40}, {0x400D0020, 0x60}};
    return s;
}

Esp8266ClassicSpec small_classic() {
    Esp8266ClassicSpec s;
    s.segments = {{0x40100000, 0x80}, {0x3FFE8000, 0x20}, {0x3FFE8200, 0x10}};
    return s;
}

Esp8266V2Spec small_v2(int slot, std::uint8_t flash_map) {
    Esp8266V2Spec s;
    s.slot = slot;
    s.flash_map = flash_map;
    s.irom_length = 0x100;
    s.ram_segments = {{0x40100000, 0x100}, {0x3FFE8000, 0x20}, {0x3FFE8400, 0x40}};
    s.irom_pointers = 12;
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::cerr << "usage: make_esp_fuzz_seeds DIR\n";
        return 2;
    }
    g_dir = argv[1];

    // ESP32 family: one valid app per chip name the builder knows, declared as that chip.
    const std::pair<const char*, Chip> chips[] = {
        {"esp32", Chip::esp32},     {"esp32s2", Chip::esp32s2}, {"esp32s3", Chip::esp32s3}, {"esp32c2", Chip::esp32c2},
        {"esp32c3", Chip::esp32c3}, {"esp32c6", Chip::esp32c6}, {"esp32h2", Chip::esp32h2}, {"esp32p4", Chip::esp32p4},
    };
    for (const auto& [name, chip] : chips)
        write_seed(std::string(name) + "-app", chip, Layout::ota, 3, build_esp32_image(small_esp32(name)));
    write_seed("esp32-app-generic", Chip::generic, Layout::single, 0, build_esp32_image(small_esp32("esp32")));
    {
        Esp32Spec s = small_esp32("esp32c3");
        s.hash_appended = false;
        write_seed("esp32c3-no-hash", Chip::esp32c3, Layout::single, 0, build_esp32_image(s));
        s = small_esp32("esp32");
        s.trailer = std::string(68, '\x5a');  // a secure-boot signature block's worth
        write_seed("esp32-signed-trailer", Chip::esp32, Layout::ota, 0, build_esp32_image(s));
    }
    for (Break b : {Break::bad_magic, Break::truncated_header, Break::too_many_segments, Break::truncated_segment,
                    Break::unaligned_segment, Break::missing_checksum, Break::bad_checksum, Break::truncated_hash,
                    Break::bad_appended_hash, Break::wrong_chip_id, Break::unknown_chip_id, Break::bad_app_desc})
        write_seed("esp32-" + std::string(to_string(b)), Chip::esp32, Layout::ota, 0,
                   build_esp32_image(small_esp32("esp32"), b));

    // ESP8266 classic 0xE9: a plain image, an Arduino bin (the sketch after the
    // first image), an RTOS SDK v3 app (esp_app_desc_t + SHA-256), and the damaged ones.
    write_seed("esp8266-classic", Chip::esp8266, Layout::single, 0, build_esp8266_classic_image(small_classic()));
    write_seed("esp8266-classic-generic", Chip::generic, Layout::single, 0,
               build_esp8266_classic_image(small_classic()));
    {
        Esp8266ClassicSpec s = small_classic();
        std::string sketch = build_esp8266_classic_image(small_classic());
        s.trailer = std::string(16 - (sketch.size() % 16), '\xff') + sketch;
        write_seed("esp8266-arduino", Chip::esp8266, Layout::single, 0, build_esp8266_classic_image(s));
        s = small_classic();
        s.rtos_app_desc = true;
        s.segments[0].length = 0x140;  // room for esp_app_desc_t
        write_seed("esp8266-rtos-v3", Chip::esp8266, Layout::ota, 3, build_esp8266_classic_image(s));
        write_seed("esp8266-rtos-v3-generic", Chip::generic, Layout::ota, 0, build_esp8266_classic_image(s));
        write_seed("esp8266-rtos-v3-bad-hash", Chip::esp8266, Layout::ota, 0,
                   build_esp8266_classic_image(s, Break::bad_appended_hash));
    }
    for (Break b : {Break::bad_magic, Break::truncated_header, Break::too_many_segments, Break::truncated_segment,
                    Break::missing_checksum, Break::bad_checksum})
        write_seed("esp8266-classic-" + std::string(to_string(b)), Chip::esp8266, Layout::single, 0,
                   build_esp8266_classic_image(small_classic(), b));

    // ESP8266 NONOS FOTA V2 0xEA: user1/user2 for the 256+256, 512+512 and 1024+1024 maps.
    const std::pair<std::uint8_t, Layout> maps[] = {
        {0, Layout::nonos_256_256}, {2, Layout::nonos_512_512}, {5, Layout::nonos_1024_1024}};
    for (const auto& [map, layout] : maps)
        for (int slot : {1, 2})
            write_seed("esp8266-v2-map" + std::to_string(map) + "-user" + std::to_string(slot), Chip::esp8266, layout,
                       slot, build_esp8266_v2_image(small_v2(slot, map)));
    write_seed("esp8266-v2-generic", Chip::generic, Layout::nonos_512_512, 1, build_esp8266_v2_image(small_v2(1, 2)));
    {
        Esp8266V2Spec s = small_v2(2, 2);
        s.app_byte = 0x04;  // SDK 1.x: a size byte, no slot: the irom-pointer census decides
        write_seed("esp8266-v2-sdk1-census", Chip::esp8266, Layout::nonos_512_512, 2, build_esp8266_v2_image(s));
        s = small_v2(1, 2);
        s.gen_appbin_padding = false;
        write_seed("esp8266-v2-esptool-padding", Chip::esp8266, Layout::nonos_512_512, 1, build_esp8266_v2_image(s));
    }
    for (Break b :
         {Break::bad_magic, Break::truncated_header, Break::too_many_segments, Break::truncated_segment,
          Break::missing_checksum, Break::bad_checksum, Break::bad_crc, Break::bad_padding, Break::slot_swapped})
        write_seed("esp8266-v2-" + std::string(to_string(b)), Chip::esp8266, Layout::nonos_512_512, 1,
                   build_esp8266_v2_image(small_v2(1, 2), b));

    std::cout << "make_esp_fuzz_seeds: wrote " << g_written << " seeds into " << g_dir << "\n";
    return 0;
}
