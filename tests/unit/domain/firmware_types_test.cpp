#include "otad/domain/firmware_types.hpp"

#include <gtest/gtest.h>

namespace otad::domain {
namespace {

TEST(FirmwareTypes, ChipNamesRoundTripAndParseLeniently) {
    for (Chip c : all_chips()) EXPECT_EQ(parse_chip(to_string(c)), c) << to_string(c);
    EXPECT_EQ(all_chips().size(), 15u);
    EXPECT_EQ(parse_chip("ESP32-C3"), Chip::esp32c3);
    EXPECT_EQ(parse_chip("esp32_s3"), Chip::esp32s3);
    EXPECT_EQ(parse_chip("ESP8266"), Chip::esp8266);
    EXPECT_FALSE(parse_chip(""));
    EXPECT_FALSE(parse_chip("esp32x"));
    EXPECT_FALSE(parse_chip("esp32 "));
    EXPECT_EQ(valid_chip_names(),
              "esp8266, esp32, esp32s2, esp32s3, esp32c2, esp32c3, esp32c5, esp32c6, esp32c61, esp32h2, esp32h21, "
              "esp32h4, esp32p4, esp32s31, generic");
    EXPECT_TRUE(is_esp32_family(Chip::esp32p4));
    EXPECT_FALSE(is_esp32_family(Chip::esp8266));
    EXPECT_FALSE(is_esp32_family(Chip::generic));
}

TEST(FirmwareTypes, LayoutNamesRoundTripAndAcceptFormEncoding) {
    for (Layout l : all_layouts()) EXPECT_EQ(parse_layout(to_string(l)), l) << to_string(l);
    EXPECT_EQ(parse_layout("512 512"), Layout::nonos_512_512);  // '+' decoded as space
    EXPECT_EQ(parse_layout("1024_1024"), Layout::nonos_1024_1024);
    EXPECT_EQ(parse_layout("256-256"), Layout::nonos_256_256);
    EXPECT_EQ(parse_layout("OTA"), Layout::ota);
    EXPECT_FALSE(parse_layout("2048+2048"));
    EXPECT_FALSE(parse_layout("512"));
    EXPECT_EQ(valid_layout_names(), "256+256, 512+512, 1024+1024, ota, single");
    EXPECT_TRUE(is_nonos_layout(Layout::nonos_256_256));
    EXPECT_FALSE(is_nonos_layout(Layout::ota));
}

TEST(FirmwareTypes, SlotsPerLayout) {
    EXPECT_EQ(slots_for_layout(Layout::nonos_512_512), (std::vector<std::string>{"user1", "user2"}));
    const auto ota = slots_for_layout(Layout::ota);
    ASSERT_EQ(ota.size(), 17u);
    EXPECT_EQ(ota.front(), "");
    EXPECT_EQ(ota[1], "ota_0");
    EXPECT_EQ(ota.back(), "ota_15");
    EXPECT_EQ(slots_for_layout(Layout::single), (std::vector<std::string>{""}));
    for (Layout l : all_layouts())
        for (const auto& s : slots_for_layout(l)) EXPECT_TRUE(layout_allows_slot(l, s)) << to_string(l) << " " << s;

    EXPECT_TRUE(layout_allows_slot(Layout::nonos_1024_1024, "user2"));
    EXPECT_FALSE(layout_allows_slot(Layout::nonos_1024_1024, ""));
    EXPECT_FALSE(layout_allows_slot(Layout::nonos_1024_1024, "user3"));
    EXPECT_FALSE(layout_allows_slot(Layout::ota, "ota_16"));
    EXPECT_FALSE(layout_allows_slot(Layout::ota, "ota_01"));
    EXPECT_FALSE(layout_allows_slot(Layout::ota, "ota_"));
    EXPECT_FALSE(layout_allows_slot(Layout::ota, "ota_1x"));
    EXPECT_FALSE(layout_allows_slot(Layout::ota, "factory"));
    EXPECT_FALSE(layout_allows_slot(Layout::single, "user1"));
    EXPECT_EQ(valid_slot_names(Layout::nonos_256_256), "user1, user2");
}

TEST(FirmwareTypes, FlashMapToLayout) {
    EXPECT_EQ(layout_for_flash_map(0), Layout::nonos_256_256);
    for (unsigned m : {2u, 3u, 4u}) EXPECT_EQ(layout_for_flash_map(m), Layout::nonos_512_512) << m;
    for (unsigned m : {5u, 6u, 8u, 9u}) EXPECT_EQ(layout_for_flash_map(m), Layout::nonos_1024_1024) << m;
    for (unsigned m : {1u, 7u, 10u, 15u}) EXPECT_FALSE(layout_for_flash_map(m)) << m;
}

}  // namespace
}  // namespace otad::domain
