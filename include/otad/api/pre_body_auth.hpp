#pragma once
// Pre-body authorization hooks (RouteOptions::authorize) for the routes that
// take a body: the same checks their handlers make, run by net before it reads
// a byte of the body, so an unauthenticated client can neither fill memory with
// buffered bodies nor start an upload. The handlers keep their own checks
// (unchanged for valid callers; a request without a body skips the hook).

#include "otad/api/auth.hpp"
#include "otad/api/router.hpp"
#include "otad/api/services.hpp"

namespace otad::api {

// Refuses (401, 403) a request without an operator token of at least `minimum`.
// Reads the token table: the route must not run inline.
Authorizer operator_before_body(Services& services, Role minimum);

// For POST /api/v1/devices/{id}/report: refuses (401) when the device's product
// requires a device key and the request has no valid one, or, for a device id
// the server does not know, when the caller may not learn that (see
// require_right_to_learn_unknown_device). May read the database.
Authorizer device_report_before_body(Services& services);

}  // namespace otad::api
