#!/usr/bin/env bash
# Soak test: a real otad on 127.0.0.1 under a mixed device and operator workload, killed with
# SIGKILL and restarted every few minutes; ends with checks (acknowledged uploads kept, blobs
# whole, downloads byte-exact, no RSS or descriptor growth) and exits 1 when one fails.
# The workload and the checks are in bench/soak.py (its header says what each one does).
# Not part of CI.
#
#   usage: bench/soak.sh                 # 30 minutes, a kill -9 + restart every ~5 minutes
#          SOAK_SHORT=1 bench/soak.sh    # 3 minutes, a restart every ~minute: checks the script
#   env:   OTAD_BIN (default build/otad), MAKE_ESP_IMAGE (default build/tests/make_esp_image)
#          SOAK_SECONDS=1800 SOAK_RESTART_SECONDS=300 SOAK_DEVICES=10000 SOAK_RPS=250 SOAK_THREADS=12
#          SOAK_DOWNLOAD_FRACTION=0.2 SOAK_UPLOAD_SECONDS=20 SOAK_CHANNEL_SECONDS=30 SOAK_SAMPLE_SECONDS=2
#          SOAK_WARMUP_SECONDS=auto SOAK_RSS_TOLERANCE_KIB=4096 SOAK_FD_TOLERANCE=16 SOAK_SEED=<n>
#          SOAK_KEEP=1 keeps the work dir (data dir, otad logs, images) even when the soak passed.
# Build first (in the repository root):
#   cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOTAD_BUILD_TESTS=ON
#   cmake --build build --target otad make_esp_image
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/bench"
OTAD_BIN="${OTAD_BIN:-$ROOT/build/otad}"
MAKE_ESP_IMAGE="${MAKE_ESP_IMAGE:-$ROOT/build/tests/make_esp_image}"
for bin in "$OTAD_BIN" "$MAKE_ESP_IMAGE"; do
  [ -x "$bin" ] || { echo "soak: $bin not found; build otad and make_esp_image first (see the header of $0)" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "soak: needs python3 (scripts/install-deps.sh)" >&2; exit 2; }
if [ -n "${SOAK_SHORT:-}" ] && [ "${SOAK_SHORT}" != 0 ]; then SECONDS_WANTED="${SOAK_SECONDS:-180}"; else SECONDS_WANTED="${SOAK_SECONDS:-1800}"; fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK="$(mktemp -d /tmp/otad-soak.XXXXXX)"
# shellcheck source=bench/otad_fixture.sh
. "$BENCH/otad_fixture.sh"  # free_port
TLS_PORT="$(free_port)"; HTTP_PORT="$(free_port)"
while [ "$HTTP_PORT" = "$TLS_PORT" ]; do HTTP_PORT="$(free_port)"; done

cleanup() {
  local status=$?
  # The driver kills otad itself; this covers a driver that was killed (e.g. by the timeout).
  local pid; pid="$(cat "$WORK/otad.pid" 2>/dev/null || true)"
  if [ -n "$pid" ] && [ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$OTAD_BIN")" ]; then
    kill -9 "$pid" 2>/dev/null || true
  fi
  if [ "$status" -eq 0 ] && [ -z "${SOAK_KEEP:-}" ]; then rm -rf "$WORK"; else echo "soak: work dir kept: $WORK" >&2; fi
}
trap cleanup EXIT

# A hard bound on the whole run: the load, the restarts and the final checks.
timeout -k 30 "$(( ${SECONDS_WANTED%.*} + 900 ))" \
  python3 -u "$BENCH/soak.py" --otad "$OTAD_BIN" --make-esp-image "$MAKE_ESP_IMAGE" --work "$WORK" \
    --tls-port "$TLS_PORT" --http-port "$HTTP_PORT" "$@"
