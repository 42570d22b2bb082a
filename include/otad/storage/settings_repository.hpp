#pragma once
// Small named values the server keeps for itself, e.g. the URL-signing HMAC key.
// Values are text: encode binary secrets (hex/base64) before storing.

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace otad::storage {

class Connection;

class SettingsRepository {
public:
    explicit SettingsRepository(Connection& connection) : connection_(connection) {}

    std::optional<std::string> get(std::string_view key);
    void set(std::string_view key, std::string_view value);
    bool remove(std::string_view key);
    // The stored value, or `make()` stored atomically if there is none: two
    // processes racing both end up with the same value.
    std::string get_or_create(std::string_view key, const std::function<std::string()>& make);

private:
    Connection& connection_;
};

}  // namespace otad::storage
