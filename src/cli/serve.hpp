#pragma once
#include "app.hpp"

namespace otad::cli {
// `otad serve`: opens and migrates the data dir, then serves until SIGTERM/SIGINT.
int serve(const config::Config& config);
}  // namespace otad::cli
