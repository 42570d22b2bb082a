#!/usr/bin/env bash
# README command 1: installs what is missing, builds otad, and starts it on the
# embedded default (SQLite + blobs under ./otad-data, self-signed certificate,
# HTTPS on 127.0.0.1:8443). Extra arguments go to `otad serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh build
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOTAD_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc 2>/dev/null || echo 2)" --target otad
exec build/otad serve "$@"
