// make_esp_image: writes a deterministic ESP firmware image for the end-to-end
// tests (see tests/support/esp_image_builder.hpp), and prints one JSON line
// {"path", "size", "sha256", "md5"} describing what it wrote.
//
//   make_esp_image --kind esp32 --chip esp32c3 --version 1.2.0 --project thermostat
//                  --size 1048576 --secure-version 0 --out FILE [--break bad-checksum]
//   make_esp_image --kind esp8266-v2 --slot user1 --flash-map 2 --out FILE
//   make_esp_image --kind esp8266-arduino --size 300K --out FILE      (eboot + sketch)
//   make_esp_image --kind esp8266-rtos --out FILE                      (RTOS SDK v3 app)
//   make_esp_image --kind esp8266-bootloader --boot eboot|nonos --out FILE
//   make_esp_image --kind esp32-bootloader --chip esp32c3 --out FILE
//
// Exit status 0 on success, 2 on bad arguments, 1 when the file cannot be written.

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "otad/util/crypto.hpp"
#include "support/esp_image_builder.hpp"

namespace {

using otad::testing::Break;

constexpr std::string_view kUsage = R"(usage: make_esp_image --kind KIND --out FILE [options]
kinds:    esp32, esp32-bootloader, esp8266-arduino, esp8266-rtos (alias esp8266-classic),
          esp8266-bootloader, esp8266-v2
common:   --size N (minimum file size; K/M suffixes = KiB/MiB)  --seed N  --break NAME
          --trailer-bytes N (bytes after the image)  --erased-fill (0xFF up to a 4 KiB boundary)
esp32:    --chip NAME  --version V  --project P  --idf-ver V  --secure-version N
          --hash-appended 0|1 (default 1)  --date D  --time T
esp32-bootloader: --chip NAME  --idf-ver V  --no-bootloader-desc (an IDF < 5.2 bootloader)
esp8266-rtos: --flash-map N  --rtos-app-desc (esp_app_desc_t at 16) --no-sha256
          --version V --project P --idf-ver V --secure-version N
esp8266-arduino: --flash-map N (size nibble, default 4)  --no-crc (core < 3.0)
          --signature-bytes N (tools/signing.py block)
esp8266-bootloader: --boot nonos|eboot (default nonos)
esp8266-v2: --slot user1|user2  --flash-map N (default 2)  --app-byte N (raw byte 3)
          --irom-size N  --irom-pointers N  --padding gen_appbin|esptool
)";

[[noreturn]] void usage_error(const std::string& message) {
    std::cerr << "make_esp_image: " << message << "\n" << kUsage;
    std::exit(2);
}

std::uint64_t parse_number(const std::string& name, const std::string& text) {
    if (text.empty()) usage_error(name + " needs a number");
    std::uint64_t multiplier = 1;
    std::string digits = text;
    const char last = digits.back();
    if (last == 'K' || last == 'k') multiplier = 1024, digits.pop_back();
    if (last == 'M' || last == 'm') multiplier = 1024 * 1024, digits.pop_back();
    std::size_t used = 0;
    std::uint64_t value = 0;
    try {
        value = std::stoull(digits, &used, 0);
    } catch (const std::exception&) {
        usage_error(name + ": not a number: " + text);
    }
    if (used != digits.size() || digits.empty() || digits[0] == '-') usage_error(name + ": not a number: " + text);
    return value * multiplier;
}

std::string fill_trailer(std::uint64_t n) {
    std::string t;
    for (std::uint64_t i = 0; i < n; ++i) t.push_back(static_cast<char>(0xA0 + i % 16));
    return t;
}

}  // namespace

int main(int argc, char** argv) {
    // Flags without a value; every other option takes exactly one.
    const std::map<std::string, bool> known = {
        {"--kind", true},          {"--out", true},
        {"--size", true},          {"--seed", true},
        {"--break", true},         {"--chip", true},
        {"--version", true},       {"--project", true},
        {"--idf-ver", true},       {"--secure-version", true},
        {"--hash-appended", true}, {"--date", true},
        {"--time", true},          {"--trailer-bytes", true},
        {"--flash-map", true},     {"--rtos-app-desc", false},
        {"--slot", true},          {"--app-byte", true},
        {"--irom-size", true},     {"--irom-pointers", true},
        {"--padding", true},       {"--help", false},
        {"--erased-fill", false},  {"--no-sha256", false},
        {"--no-crc", false},       {"--signature-bytes", true},
        {"--boot", true},          {"--no-bootloader-desc", false},
    };
    std::map<std::string, std::string> opt;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        std::string value;
        if (auto eq = arg.find('='); eq != std::string::npos && arg.starts_with("--")) {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
            if (!known.contains(arg)) usage_error("unknown option " + arg);
        } else {
            auto it = known.find(arg);
            if (it == known.end()) usage_error("unknown option " + arg);
            if (it->second) {
                if (i + 1 >= argc) usage_error(arg + " needs a value");
                value = argv[++i];
            } else {
                value = "1";
            }
        }
        opt[arg] = value;
    }
    if (opt.contains("--help")) {
        std::cout << kUsage;
        return 0;
    }
    auto get = [&](const std::string& k) -> std::optional<std::string> {
        auto it = opt.find(k);
        if (it == opt.end()) return std::nullopt;
        return it->second;
    };
    auto number = [&](const std::string& k, std::uint64_t fallback) {
        auto v = get(k);
        return v ? parse_number(k, *v) : fallback;
    };

    const auto kind = get("--kind");
    const auto out_path = get("--out");
    if (!kind) usage_error("--kind is required");
    if (!out_path) usage_error("--out is required");

    Break broken = Break::none;
    if (auto b = get("--break")) {
        auto parsed = otad::testing::parse_break(*b);
        if (!parsed) usage_error("unknown --break " + *b + "; valid: " + otad::testing::valid_break_names());
        broken = *parsed;
    }
    const std::uint32_t seed = static_cast<std::uint32_t>(number("--seed", 1));
    const std::uint64_t size = number("--size", 0);

    auto fill_app = [&](otad::testing::AppDescSpec& app) {
        if (auto v = get("--version")) app.version = *v;
        if (auto v = get("--project")) app.project_name = *v;
        if (auto v = get("--idf-ver")) app.idf_ver = *v;
        if (auto v = get("--date")) app.date = *v;
        if (auto v = get("--time")) app.time = *v;
        app.secure_version = static_cast<std::uint32_t>(number("--secure-version", 0));
    };

    std::string image;
    try {
        if (*kind == "esp32") {
            otad::testing::Esp32Spec spec;
            spec.chip = get("--chip").value_or("esp32");
            if (!otad::testing::esp32_chip_id(spec.chip)) usage_error("unknown ESP32-family --chip " + spec.chip);
            fill_app(spec.app);
            spec.hash_appended = number("--hash-appended", 1) != 0;
            spec.trailer = fill_trailer(number("--trailer-bytes", 0));
            spec.min_size = size;
            spec.seed = seed;
            image = otad::testing::build_esp32_image(spec, broken);
        } else if (*kind == "esp32-bootloader") {
            otad::testing::Esp32Spec spec;
            spec.chip = get("--chip").value_or("esp32");
            if (!otad::testing::esp32_chip_id(spec.chip)) usage_error("unknown ESP32-family --chip " + spec.chip);
            spec.bootloader = true;
            spec.bootloader_desc = !opt.contains("--no-bootloader-desc");
            fill_app(spec.app);
            spec.hash_appended = number("--hash-appended", 1) != 0;
            spec.trailer = fill_trailer(number("--trailer-bytes", 0));
            spec.seed = seed;
            image = otad::testing::build_esp32_image(spec, broken);
        } else if (*kind == "esp8266-classic" || *kind == "esp8266-rtos") {
            otad::testing::Esp8266ClassicSpec spec;
            spec.flash_size_map = static_cast<std::uint8_t>(number("--flash-map", 4));
            spec.rtos_app_desc = opt.contains("--rtos-app-desc");
            spec.append_sha256 = !opt.contains("--no-sha256");
            if (spec.rtos_app_desc) spec.segments[0].length = 0x1000;
            fill_app(spec.app);
            spec.trailer = fill_trailer(number("--trailer-bytes", 0));
            spec.erased_fill = opt.contains("--erased-fill");
            spec.min_size = size;
            spec.seed = seed;
            image = otad::testing::build_esp8266_classic_image(spec, broken);
        } else if (*kind == "esp8266-bootloader") {
            const std::string boot = get("--boot").value_or("nonos");
            if (boot != "nonos" && boot != "eboot") usage_error("--boot must be nonos or eboot");
            auto spec =
                boot == "eboot" ? otad::testing::esp8266_eboot_spec() : otad::testing::esp8266_nonos_bootloader_spec();
            spec.trailer = fill_trailer(number("--trailer-bytes", 0));
            spec.seed = seed;
            image = otad::testing::build_esp8266_classic_image(spec, broken);
        } else if (*kind == "esp8266-arduino") {
            otad::testing::ArduinoSpec spec;
            spec.flash_size = static_cast<std::uint8_t>(number("--flash-map", 4));
            spec.with_crc = !opt.contains("--no-crc");
            spec.signature_bytes = static_cast<std::uint32_t>(number("--signature-bytes", 0));
            spec.trailer = fill_trailer(number("--trailer-bytes", 0));
            spec.erased_fill = opt.contains("--erased-fill");
            spec.min_size = size;
            spec.seed = seed;
            image = otad::testing::build_arduino_image(spec, broken);
        } else if (*kind == "esp8266-v2") {
            otad::testing::Esp8266V2Spec spec;
            const std::string slot = get("--slot").value_or("user1");
            if (slot == "user1")
                spec.slot = 1;
            else if (slot == "user2")
                spec.slot = 2;
            else
                usage_error("--slot must be user1 or user2");
            spec.flash_map = static_cast<std::uint8_t>(number("--flash-map", 2));
            if (auto v = get("--app-byte")) spec.app_byte = static_cast<std::uint8_t>(parse_number("--app-byte", *v));
            spec.irom_length = static_cast<std::uint32_t>(number("--irom-size", spec.irom_length));
            spec.irom_pointers = static_cast<std::uint32_t>(number("--irom-pointers", spec.irom_pointers));
            const std::string padding = get("--padding").value_or("gen_appbin");
            if (padding != "gen_appbin" && padding != "esptool") usage_error("--padding must be gen_appbin or esptool");
            spec.gen_appbin_padding = padding == "gen_appbin";
            spec.min_size = size;
            spec.seed = seed;
            image = otad::testing::build_esp8266_v2_image(spec, broken);
        } else {
            usage_error("unknown --kind " + *kind);
        }
    } catch (const std::invalid_argument& e) {
        usage_error(e.what());
    }

    std::ofstream out(*out_path, std::ios::binary | std::ios::trunc);
    out.write(image.data(), static_cast<std::streamsize>(image.size()));
    out.close();
    if (!out) {
        std::cerr << "make_esp_image: cannot write " << *out_path << "\n";
        return 1;
    }
    otad::util::Digest md5("md5");
    md5.update(std::string_view(image));
    std::string path_json;
    for (char c : *out_path) {
        if (c == '"' || c == '\\') path_json.push_back('\\');
        path_json.push_back(c);
    }
    std::cout << "{\"path\": \"" << path_json << "\", \"size\": " << image.size() << ", \"sha256\": \""
              << otad::util::sha256_hex(image) << "\", \"md5\": \"" << otad::util::to_hex(md5.finish()) << "\"}\n";
    return 0;
}
