#pragma once
// Device authentication for device-facing routes (poll, report, downloads, the
// Arduino and NONOS front-ends). A product with at least one active device key
// requires one: `Authorization: Bearer KEY`, `Authorization: token KEY` (NONOS),
// or `?key=KEY`. A product without keys is open. Keys are stored hashed and
// compared by hash (constant time).

#include <optional>
#include <string>
#include <string_view>

#include "otad/api/http.hpp"
#include "otad/api/services.hpp"

namespace otad::api {

// The key presented by a device, from any of the three places; empty if none.
std::string_view presented_device_key(const Request& request);

// Returns the name of the device key used (nullopt for an open product), or throws
// ProblemError 401 when the product needs a key and none (or a wrong/revoked one,
// or one of another product) was presented. `who` ("device:<id>" when the request
// names its device; never a secret) goes with the refusal into the access log.
std::optional<std::string> require_device_access(const Request& request, Services& services, std::int64_t product_id,
                                                 std::string_view who = {});

// For a request about a device id the server does not know: throws the same 401
// a missing or wrong key gets, unless the caller may be told the id is unknown
// (no product requires a key, or it presents an active key of some product), so
// that device ids cannot be probed without a key.
void require_right_to_learn_unknown_device(const Request& request, Services& services, std::string_view who = {});

}  // namespace otad::api
