#include "otad/domain/compat.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace otad::domain {
namespace {

using Fields = std::vector<std::pair<std::string, std::string>>;

// The header block ESP8266httpUpdate::handleUpdate sends (esp8266/Arduino 3.x).
Fields esp8266_headers(std::string mode = "sketch", std::string version = "1.0.0") {
    Fields f = {
        {"Host", "192.168.1.10:8080"},
        {"User-Agent", "ESP8266-http-Update"},
        {"Connection", "close"},
        {"x-ESP8266-Chip-ID", "10658426"},
        {"x-ESP8266-STA-MAC", "18:FE:34:A2:B3:C4"},
        {"x-ESP8266-AP-MAC", "1A:FE:34:A2:B3:C4"},
        {"x-ESP8266-free-space", "700416"},
        {"x-ESP8266-sketch-size", "346592"},
        {"x-ESP8266-sketch-md5", "0123456789ABCDEF0123456789abcdef"},
        {"x-ESP8266-chip-size", "4194304"},
        {"x-ESP8266-sdk-version", "2.2.2-dev(38a443e)"},
        {"x-ESP8266-mode", std::move(mode)},
    };
    if (!version.empty()) f.emplace_back("x-ESP8266-version", std::move(version));
    return f;
}

// The header block arduino-esp32's HTTPUpdate::handleUpdate sends.
Fields esp32_headers(std::string mode = "sketch", std::string version = "1.0.0") {
    Fields f = {
        {"Host", "ota.example"},
        {"User-Agent", "ESP32-http-Update"},
        {"Connection", "close"},
        {"Cache-Control", "no-cache"},
        {"x-ESP32-STA-MAC", "24:0A:C4:00:11:22"},
        {"x-ESP32-AP-MAC", "24:0A:C4:00:11:23"},
        {"x-ESP32-free-space", "1310720"},
        {"x-ESP32-sketch-size", "912368"},
        {"x-ESP32-sketch-md5", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
        {"x-ESP32-sketch-sha256", std::string(64, 'B')},
        {"x-ESP32-chip-size", "4194304"},
        {"x-ESP32-sdk-version", "v4.4.5"},
        {"x-ESP32-mode", std::move(mode)},
    };
    if (!version.empty()) f.emplace_back("x-ESP32-version", std::move(version));
    return f;
}

ArduinoRequest parsed(const Fields& f) {
    auto result = parse_arduino_request(f);
    if (auto* e = std::get_if<ArduinoParseError>(&result)) {
        ADD_FAILURE() << "parse failed: " << e->detail;
        return {};
    }
    return std::get<ArduinoRequest>(result);
}

std::string parse_error(const Fields& f) {
    auto result = parse_arduino_request(f);
    if (auto* e = std::get_if<ArduinoParseError>(&result)) return e->detail;
    ADD_FAILURE() << "expected a parse error";
    return {};
}

ArduinoArtifact art(std::int64_t id, Chip chip, std::string layout, std::string slot, std::uint64_t size = 400'000,
                    std::string md5 = std::string(32, 'c'), std::string sha = "",
                    std::string filename = "firmware.bin") {
    return ArduinoArtifact{id,   chip,           std::move(layout), std::move(slot), std::move(filename),
                           size, std::move(md5), std::move(sha)};
}

ArduinoArtifact fs_image(std::int64_t id, std::string filename, std::uint64_t size = 1'000'000) {
    return art(id, Chip::generic, "single", "", size, std::string(32, 'f'), "", std::move(filename));
}

ArduinoServe expect_serve(const ArduinoDecision& d) {
    if (auto* s = std::get_if<ArduinoServe>(&d)) return *s;
    if (auto* n = std::get_if<ArduinoNotModified>(&d)) ADD_FAILURE() << "expected serve, got 304: " << n->detail;
    if (auto* r = std::get_if<ArduinoRefused>(&d))
        ADD_FAILURE() << "expected serve, got 403 " << r->type << ": " << r->detail;
    return {};
}

std::string expect_not_modified(const ArduinoDecision& d) {
    if (auto* n = std::get_if<ArduinoNotModified>(&d)) return n->detail;
    if (auto* s = std::get_if<ArduinoServe>(&d)) ADD_FAILURE() << "expected 304, got serve of " << s->artifact_id;
    if (auto* r = std::get_if<ArduinoRefused>(&d)) ADD_FAILURE() << "expected 304, got 403 " << r->type;
    return {};
}

ArduinoRefused expect_refused(const ArduinoDecision& d) {
    if (auto* r = std::get_if<ArduinoRefused>(&d)) return *r;
    if (auto* s = std::get_if<ArduinoServe>(&d)) ADD_FAILURE() << "expected 403, got serve of " << s->artifact_id;
    if (auto* n = std::get_if<ArduinoNotModified>(&d)) ADD_FAILURE() << "expected 403, got 304: " << n->detail;
    return {};
}

// ---- parse_arduino_request

TEST(ArduinoParse, Esp8266HeadersGiveEveryField) {
    ArduinoRequest r = parsed(esp8266_headers());
    EXPECT_EQ(r.family, ArduinoFamily::esp8266);
    EXPECT_EQ(r.mode, ArduinoMode::sketch);
    EXPECT_EQ(r.free_space, 700416u);
    EXPECT_EQ(r.device_id, "18:fe:34:a2:b3:c4");
    EXPECT_EQ(r.version, "1.0.0");
    EXPECT_EQ(r.sketch_md5, "0123456789abcdef0123456789abcdef");
    EXPECT_EQ(r.sketch_sha256, "");
    EXPECT_EQ(r.sketch_size, 346592u);
    EXPECT_EQ(r.chip_size, 4194304u);
    EXPECT_EQ(r.sdk_version, "2.2.2-dev(38a443e)");
}

TEST(ArduinoParse, Esp32HeadersGiveSha256InLowerCase) {
    ArduinoRequest r = parsed(esp32_headers("spiffs", ""));
    EXPECT_EQ(r.family, ArduinoFamily::esp32);
    EXPECT_EQ(r.mode, ArduinoMode::spiffs);
    EXPECT_EQ(r.free_space, 1310720u);
    EXPECT_EQ(r.device_id, "24:0a:c4:00:11:22");
    EXPECT_EQ(r.version, "");
    EXPECT_EQ(r.sketch_sha256, std::string(64, 'b'));
}

TEST(ArduinoParse, HeaderNamesAreCaseInsensitive) {
    Fields f = {{"X-ESP8266-MODE", "Sketch"}, {"x-esp8266-free-space", " 1024 "}};
    ArduinoRequest r = parsed(f);
    EXPECT_EQ(r.family, ArduinoFamily::esp8266);
    EXPECT_EQ(r.mode, ArduinoMode::sketch);
    EXPECT_EQ(r.free_space, 1024u);
    EXPECT_EQ(r.device_id, "");
}

TEST(ArduinoParse, MissingOrBadUpdaterHeadersAreErrorsNamingTheHeader) {
    EXPECT_NE(parse_error({{"User-Agent", "curl/8.0"}}).find("no x-ESP8266-* or x-ESP32-* headers"), std::string::npos);
    EXPECT_EQ(parse_error({{"x-ESP8266-free-space", "1"}}), "missing header x-ESP8266-mode (sketch or spiffs)");
    EXPECT_EQ(parse_error({{"x-ESP32-mode", "sketch"}}), "missing header x-ESP32-free-space");
    EXPECT_EQ(parse_error({{"x-ESP32-mode", "version"}, {"x-ESP32-free-space", "1"}}),
              "header x-ESP32-mode is 'version'; supported: sketch, spiffs");
    EXPECT_EQ(parse_error({{"x-ESP32-mode", "sketch"}, {"x-ESP32-free-space", "-5"}}),
              "header x-ESP32-free-space is '-5'; expected a decimal byte count");
    EXPECT_EQ(parse_error({{"x-ESP32-mode", "sketch"}, {"x-ESP32-free-space", "99999999999999999999999"}}),
              "header x-ESP32-free-space is '99999999999999999999999'; expected a decimal byte count");
}

TEST(ArduinoParse, BothFamiliesDecidedByUserAgent) {
    Fields f = esp8266_headers();
    f.emplace_back("x-ESP32-mode", "spiffs");
    EXPECT_EQ(parsed(f).family, ArduinoFamily::esp8266);
    EXPECT_EQ(parsed(f).mode, ArduinoMode::sketch);
    for (auto& [n, v] : f)
        if (n == "User-Agent") v = "something";
    EXPECT_NE(parse_error(f).find("both x-ESP8266-* and x-ESP32-*"), std::string::npos);
}

TEST(ArduinoParse, MalformedInformationalHeadersAreIgnored) {
    Fields f = {{"x-ESP32-mode", "sketch"},    {"x-ESP32-free-space", "10"},    {"x-ESP32-STA-MAC", "not-a-mac"},
                {"x-ESP32-sketch-md5", "xyz"}, {"x-ESP32-sketch-sha256", "12"}, {"x-ESP32-sketch-size", "big"}};
    ArduinoRequest r = parsed(f);
    EXPECT_EQ(r.device_id, "");
    EXPECT_EQ(r.sketch_md5, "");
    EXPECT_EQ(r.sketch_sha256, "");
    EXPECT_FALSE(r.sketch_size.has_value());
}

TEST(NormalizeMac, AcceptedFormsAndRejects) {
    EXPECT_EQ(normalize_mac("18:FE:34:A2:B3:C4"), "18:fe:34:a2:b3:c4");
    EXPECT_EQ(normalize_mac("18-fe-34-a2-b3-c4"), "18:fe:34:a2:b3:c4");
    EXPECT_EQ(normalize_mac("18FE34A2B3C4"), "18:fe:34:a2:b3:c4");
    EXPECT_EQ(normalize_mac("18:FE:34:A2:B3"), std::nullopt);
    EXPECT_EQ(normalize_mac("18:FE-34:A2:B3:C4"), std::nullopt);
    EXPECT_EQ(normalize_mac("18:FE:34:A2:B3:CG"), std::nullopt);
    EXPECT_EQ(normalize_mac(""), std::nullopt);
}

// ---- decide_arduino

const ArduinoRelease kEsp8266Release{
    "1.1.0",
    false,
    {art(1, Chip::esp8266, "512+512", "user1"), art(2, Chip::esp8266, "512+512", "user2"),
     art(3, Chip::esp32, "ota", ""), art(4, Chip::esp8266, "single", "", 300'000), fs_image(5, "spiffs.bin"),
     art(6, Chip::generic, "single", "", 100)}};

TEST(ArduinoDecide, Esp8266SketchGetsTheSingleAppImageNeverANonosBuild) {
    ArduinoServe s = expect_serve(decide_arduino(parsed(esp8266_headers()), std::nullopt, kEsp8266Release));
    EXPECT_EQ(s.artifact_id, 4);
    EXPECT_EQ(s.chip, Chip::esp8266);
}

TEST(ArduinoDecide, VersionEquivalentOrNewerIs304) {
    EXPECT_EQ(
        expect_not_modified(decide_arduino(parsed(esp8266_headers("sketch", "v1.1.0")), std::nullopt, kEsp8266Release)),
        "device runs v1.1.0, the channel offers 1.1.0");
    EXPECT_EQ(
        expect_not_modified(decide_arduino(parsed(esp8266_headers("sketch", "1.2.0")), std::nullopt, kEsp8266Release)),
        "device runs 1.2.0, newer than the channel's 1.1.0 and the channel does not allow rollback");
    ArduinoRelease rollback = kEsp8266Release;
    rollback.allow_rollback = true;
    EXPECT_EQ(
        expect_serve(decide_arduino(parsed(esp8266_headers("sketch", "1.2.0")), std::nullopt, rollback)).artifact_id,
        4);
}

TEST(ArduinoDecide, TooLargeForFreeSpaceIs403ButEqualFits) {
    Fields f = esp8266_headers();
    for (auto& [n, v] : f)
        if (n == "x-ESP8266-free-space") v = "299999";
    ArduinoRefused r = expect_refused(decide_arduino(parsed(f), std::nullopt, kEsp8266Release));
    EXPECT_EQ(r.type, "too-large");
    EXPECT_EQ(
        r.detail,
        "the esp8266 image of release 1.1.0 is 300000 bytes; the device reports 299999 bytes of free sketch space");
    for (auto& [n, v] : f)
        if (n == "x-ESP8266-free-space") v = "300000";
    EXPECT_EQ(expect_serve(decide_arduino(parsed(f), std::nullopt, kEsp8266Release)).artifact_id, 4);
}

TEST(ArduinoDecide, SpiffsModeServesTheFilesystemImageWithoutTheSketchSpaceCheck) {
    ArduinoServe s = expect_serve(decide_arduino(parsed(esp8266_headers("spiffs")), std::nullopt, kEsp8266Release));
    EXPECT_EQ(s.artifact_id, 5);  // 1,000,000 bytes > 700,416 free sketch space: not checked for spiffs
}

TEST(ArduinoDecide, ModeWithoutArtifactIs403) {
    ArduinoRelease no_fs{"1.1.0", false, {art(4, Chip::esp8266, "single", "")}};
    ArduinoRefused r = expect_refused(decide_arduino(parsed(esp8266_headers("spiffs")), std::nullopt, no_fs));
    EXPECT_EQ(r.type, "no-artifact");
    EXPECT_EQ(
        r.detail,
        "release 1.1.0 has no filesystem image (a generic artifact named spiffs*.bin or littlefs*.bin) for esp8266");
    ArduinoRelease nonos_only{"1.1.0", false, {art(1, Chip::esp8266, "512+512", "user1")}};
    r = expect_refused(decide_arduino(parsed(esp8266_headers()), std::nullopt, nonos_only));
    EXPECT_EQ(r.detail, "release 1.1.0 has no sketch (an app image of layout single or ota) for esp8266");
}

TEST(ArduinoDecide, FilesystemImageIsAGenericSpiffsOrLittlefsFileOrAFilesystemSlot) {
    ArduinoArtifact other_generic = art(9, Chip::generic, "single", "", 10, std::string(32, 'c'), "", "notes.bin");
    EXPECT_FALSE(is_filesystem_artifact(other_generic));
    EXPECT_TRUE(is_filesystem_artifact(fs_image(1, "LittleFS-4M.bin")));
    EXPECT_TRUE(is_filesystem_artifact(art(2, Chip::esp32, "single", "SPIFFS")));
    EXPECT_FALSE(is_filesystem_artifact(art(3, Chip::esp32, "single", "", 10, "", "", "spiffs.bin")));
    // A generic blob is never a sketch, whatever its name.
    ArduinoRelease only_generic{"2.0.0", false, {other_generic}};
    EXPECT_EQ(expect_refused(decide_arduino(parsed(esp8266_headers()), std::nullopt, only_generic)).type,
              "no-artifact");
}

TEST(ArduinoDecide, GenericFilesystemImageServesEitherFamilyButChipSpecificWins) {
    ArduinoRelease r{"2.0.0", false, {fs_image(7, "littlefs.bin"), art(8, Chip::esp32s3, "single", "spiffs")}};
    EXPECT_EQ(expect_serve(decide_arduino(parsed(esp8266_headers("spiffs")), std::nullopt, r)).artifact_id, 7);
    ArduinoServe s = expect_serve(decide_arduino(parsed(esp32_headers("spiffs")), std::nullopt, r));
    EXPECT_EQ(s.artifact_id, 8);
    EXPECT_EQ(s.chip, Chip::esp32s3);
}

TEST(ArduinoDecide, Esp32ChipFromTheReleaseOrTheQuery) {
    ArduinoRelease one{"2.0.0", false, {art(10, Chip::esp32c3, "ota", "ota_1"), art(11, Chip::esp32c3, "ota", "")}};
    ArduinoServe s = expect_serve(decide_arduino(parsed(esp32_headers()), std::nullopt, one));
    EXPECT_EQ(s.artifact_id, 11);  // slot-less build preferred
    EXPECT_EQ(s.chip, Chip::esp32c3);

    ArduinoRelease two{"2.0.0", false, {art(12, Chip::esp32, "ota", ""), art(13, Chip::esp32s3, "single", "")}};
    ArduinoRefused r = expect_refused(decide_arduino(parsed(esp32_headers()), std::nullopt, two));
    EXPECT_EQ(r.type, "ambiguous-chip");
    EXPECT_NE(r.detail.find("(esp32, esp32s3)"), std::string::npos);
    EXPECT_EQ(expect_serve(decide_arduino(parsed(esp32_headers()), Chip::esp32s3, two)).artifact_id, 13);
    EXPECT_EQ(expect_refused(decide_arduino(parsed(esp32_headers()), Chip::esp32c6, two)).type, "no-artifact");
}

TEST(ArduinoDecide, Esp32WithoutVersionUsesTheRunningImageIdentity) {
    const std::string appended(64, 'b');
    ArduinoRelease r{"2.0.0", false, {art(20, Chip::esp32, "ota", "", 500'000, std::string(32, 'a'), appended)}};
    // x-ESP32-sketch-sha256 (BBB..., lower-cased) equals the appended hash: current.
    EXPECT_NE(expect_not_modified(decide_arduino(parsed(esp32_headers("sketch", "")), std::nullopt, r))
                  .find("x-ESP32-sketch-sha256 matches"),
              std::string::npos);
    // A different running image: update.
    r.artifacts[0].appended_sha256 = std::string(64, 'e');
    EXPECT_EQ(expect_serve(decide_arduino(parsed(esp32_headers("sketch", "")), std::nullopt, r)).artifact_id, 20);
    // No appended hash known: the MD5 (equal here) decides.
    r.artifacts[0].appended_sha256.clear();
    EXPECT_NE(expect_not_modified(decide_arduino(parsed(esp32_headers("sketch", "")), std::nullopt, r))
                  .find("x-ESP32-sketch-md5 matches"),
              std::string::npos);
    r.artifacts[0].md5 = std::string(32, 'd');
    EXPECT_EQ(expect_serve(decide_arduino(parsed(esp32_headers("sketch", "")), std::nullopt, r)).artifact_id, 20);
}

TEST(ArduinoDecide, NoVersionAndNoUsableIdentityIs304) {
    // ESP8266's sketch-md5 covers flash from 0 with rewritten flash-mode bytes: never an identity.
    std::string detail =
        expect_not_modified(decide_arduino(parsed(esp8266_headers("sketch", "")), std::nullopt, kEsp8266Release));
    EXPECT_NE(detail.find("reports no version (x-ESP8266-version)"), std::string::npos);
    ArduinoRelease r{"2.0.0", false, {art(21, Chip::esp32, "single", "spiffs")}};
    expect_not_modified(decide_arduino(parsed(esp32_headers("spiffs", "")), std::nullopt, r));
}

TEST(ArduinoDecide, MissingArtifactBeatsUpToDate) {
    ArduinoRelease r{"1.0.0", false, {art(4, Chip::esp8266, "single", "")}};
    EXPECT_EQ(expect_refused(decide_arduino(parsed(esp8266_headers("spiffs", "1.0.0")), std::nullopt, r)).type,
              "no-artifact");
}

// ---- NONOS

TEST(NonosFilename, PlainAndSdkNames) {
    auto f = parse_nonos_filename("user1.bin");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->slot, "user1");
    EXPECT_FALSE(f->layout_hint);
    f = parse_nonos_filename("USER2.BIN");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->slot, "user2");
    f = parse_nonos_filename("user2.1024.new.2.bin");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->slot, "user2");
    EXPECT_EQ(f->layout_hint, Layout::nonos_512_512);
    f = parse_nonos_filename("user1.2048.new.5.bin");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->layout_hint, Layout::nonos_1024_1024);
    f = parse_nonos_filename("user1.512.new.0.bin");
    ASSERT_TRUE(f);
    EXPECT_EQ(f->layout_hint, Layout::nonos_256_256);
    for (const char* bad : {"user3.bin", "user1", "user1.bin.gz", "eagle.flash.bin", "user1.4096.new.7.bin",
                            "user1.1024.old.2.bin", "user1..new.2.bin", "../user1.bin", "user1.1024.new.x.bin", ""})
        EXPECT_FALSE(parse_nonos_filename(bad)) << bad;
}

CandidateArtifact cand(std::int64_t id, Chip chip, Layout layout, std::string slot) {
    return CandidateArtifact{id, chip, layout, std::move(slot), std::nullopt};
}

NonosServe expect_nonos_serve(const NonosDecision& d) {
    if (auto* s = std::get_if<NonosServe>(&d)) return *s;
    if (auto* m = std::get_if<NonosMissing>(&d)) ADD_FAILURE() << "expected serve, got missing: " << m->detail;
    if (auto* a = std::get_if<NonosAmbiguous>(&d)) ADD_FAILURE() << "expected serve, got ambiguous: " << a->detail;
    return {};
}

std::string expect_nonos_missing(const NonosDecision& d) {
    if (auto* m = std::get_if<NonosMissing>(&d)) return m->detail;
    ADD_FAILURE() << "expected missing";
    return {};
}

TEST(NonosDecide, NamedSlotOf512LayoutAndNeverTheOtherLink) {
    std::vector<CandidateArtifact> c = {cand(1, Chip::esp8266, Layout::nonos_512_512, "user1"),
                                        cand(2, Chip::esp8266, Layout::nonos_512_512, "user2"),
                                        cand(3, Chip::esp8266, Layout::single, "")};
    EXPECT_EQ(expect_nonos_serve(decide_nonos(*parse_nonos_filename("user1.bin"), std::nullopt, "1.0", c)).artifact_id,
              1);
    NonosServe s = expect_nonos_serve(decide_nonos(*parse_nonos_filename("user2.bin"), std::nullopt, "1.0", c));
    EXPECT_EQ(s.artifact_id, 2);
    EXPECT_EQ(s.layout, Layout::nonos_512_512);
    c.erase(c.begin() + 1);  // no user2 build
    std::string detail = expect_nonos_missing(decide_nonos(*parse_nonos_filename("user2.bin"), std::nullopt, "1.0", c));
    EXPECT_NE(detail.find("has no user2 build for esp8266 512+512"), std::string::npos) << detail;
}

TEST(NonosDecide, Layout1024FallsBackToTheOtherSlotsBuild) {
    std::vector<CandidateArtifact> c = {cand(5, Chip::esp8266, Layout::nonos_1024_1024, "user1")};
    EXPECT_EQ(expect_nonos_serve(decide_nonos(*parse_nonos_filename("user2.bin"), std::nullopt, "1.0", c)).artifact_id,
              5);
}

TEST(NonosDecide, LayoutFromQueryThenFileNameElseAmbiguous) {
    std::vector<CandidateArtifact> c = {cand(1, Chip::esp8266, Layout::nonos_512_512, "user1"),
                                        cand(2, Chip::esp8266, Layout::nonos_512_512, "user2"),
                                        cand(5, Chip::esp8266, Layout::nonos_1024_1024, "user1"),
                                        cand(6, Chip::esp8266, Layout::nonos_1024_1024, "user2")};
    auto d = decide_nonos(*parse_nonos_filename("user2.bin"), std::nullopt, "1.0", c);
    ASSERT_TRUE(std::holds_alternative<NonosAmbiguous>(d));
    EXPECT_NE(std::get<NonosAmbiguous>(d).detail.find("several layouts (512+512, 1024+1024)"), std::string::npos);
    EXPECT_EQ(expect_nonos_serve(decide_nonos(*parse_nonos_filename("user2.bin"), Layout::nonos_1024_1024, "1.0", c))
                  .artifact_id,
              6);
    EXPECT_EQ(expect_nonos_serve(decide_nonos(*parse_nonos_filename("user2.1024.new.2.bin"), std::nullopt, "1.0", c))
                  .artifact_id,
              2);
    EXPECT_EQ(expect_nonos_missing(decide_nonos(*parse_nonos_filename("user2.bin"), Layout::ota, "1.0", c)),
              "layout ota is not an ESP8266 NONOS layout");
}

TEST(NonosDecide, ReleaseWithoutNonosBuilds) {
    std::vector<CandidateArtifact> c = {cand(3, Chip::esp8266, Layout::single, ""),
                                        cand(4, Chip::esp32, Layout::ota, "")};
    EXPECT_EQ(expect_nonos_missing(decide_nonos(*parse_nonos_filename("user1.bin"), std::nullopt, "3.0", c)),
              "release 3.0 has no ESP8266 NONOS (user1/user2) builds");
}

TEST(NonosRomVersion, ExactTextAndLimits) {
    auto body = nonos_rom_version_body("v1.0.5");
    ASSERT_TRUE(body);
    EXPECT_EQ(*body,
              "{\"recommended_rom_version\": \"v1.0.5\", \"status\": 200, \"productRoms\": [{\"recommended\": 1, "
              "\"version\": \"v1.0.5\"}]}");
    // What the AT clients do: find `rom_version": "`, cut at the next `",`.
    auto at = body->find("rom_version\": \"");
    ASSERT_EQ(at, body->find("\"recommended_rom_version\": \"") + 13);  // after `"recommended_`
    auto start = at + std::string("rom_version\": \"").size();
    EXPECT_EQ(body->substr(start, body->find("\",", start) - start), "v1.0.5");
    EXPECT_TRUE(nonos_rom_version_body("12345678901"));
    EXPECT_FALSE(nonos_rom_version_body("123456789012"));
    EXPECT_FALSE(nonos_rom_version_body(""));
    EXPECT_FALSE(nonos_rom_version_body("1\"2"));
    EXPECT_FALSE(nonos_rom_version_body("1 2"));
}

}  // namespace
}  // namespace otad::domain
