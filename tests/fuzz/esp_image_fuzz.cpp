// Fuzzes the ESP image inspector (domain/esp_image) over every format it knows:
// ESP32-family apps, ESP8266 classic images (Arduino sketches, RTOS SDK v3 apps
// with esp_app_desc_t) and NONOS FOTA V2 user bins.
//
// Input: byte 0 picks the declared chip (all chips, generic included: format
// detection), byte 1 the declared layout and slot for check_declared(); the rest
// is the image. A finding is a crash, a sanitizer report, an exception (the
// inspector must never throw for bad bytes), or a result that breaks the
// header's contract (checked below).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "otad/domain/esp_image.hpp"
#include "otad/domain/firmware_types.hpp"

namespace {

using namespace otad::domain;

[[noreturn]] void contract_broken(const char* what) {
    __builtin_printf("esp_image_fuzz: contract broken: %s\n", what);
    std::abort();
}

constexpr std::string_view kSlots[] = {"", "user1", "user2", "ota_0", "ota_15", "ota_16", "x"};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const auto chips = all_chips();
    const auto layouts = all_layouts();
    const Chip chip = chips[data[0] % chips.size()];
    const Layout layout = layouts[data[1] % layouts.size()];
    const std::string_view slot = kSlots[(data[1] / layouts.size()) % std::size(kSlots)];
    const std::string_view bytes(reinterpret_cast<const char*>(data) + 2, size - 2);

    MemoryImageReader reader(bytes);
    InspectionResult result = inspect_esp_image(reader, chip);
    if (!result) {
        if (result.error().code.empty()) contract_broken("an error without a code");
        (void)result.error().to_json().dump();
        return 0;
    }
    const ImageInfo& info = result.info();
    if (info.file_size != bytes.size()) contract_broken("file_size differs from the input size");
    if (info.segments.size() > 16) contract_broken("more than 16 segments accepted");
    if (info.trailing_offset > bytes.size() || info.trailing_bytes > bytes.size() - info.trailing_offset)
        contract_broken("trailing bytes outside the file");
    for (const auto& s : info.segments)
        if (s.header_offset + 8 + s.length > bytes.size()) contract_broken("a segment outside the file");
    if (chip != Chip::generic && info.chip != chip)
        contract_broken("an image of another chip accepted for the declared chip");
    // Everything reported must render as JSON (non-UTF-8 text would throw here).
    (void)info.to_json().dump();
    if (auto mismatch = check_declared(info, chip, layout, slot)) {
        if (mismatch->code.empty()) contract_broken("a declaration error without a code");
        (void)mismatch->to_json().dump();
    }
    return 0;
}
