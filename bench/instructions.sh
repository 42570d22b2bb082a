#!/usr/bin/env bash
# Instructions otad executes per HTTPS 4 KiB Range request (figure 2's request), counted by
# callgrind in user space. CPU time on a shared VM moves by 10-15 % between runs; instruction
# counts move by well under 1 %, so this is how small steps in figure 2 are seen.
#
#   usage: bench/instructions.sh        env: OTAD_BIN (default: build it in build-bench/, Release)
#          REQUESTS=3000 CONNECTIONS=8
# Prints "instructions per request: N". N includes the CONNECTIONS TLS handshakes (~2.6M
# instructions each with ECDSA P-256 and X25519), so ~7k of it at the defaults.
# Needs valgrind (installed via scripts/install-deps.sh bench when missing). Only 127.0.0.1;
# otad is stopped at the end.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/bench"
REQUESTS="${REQUESTS:-3000}"
CONNECTIONS="${CONNECTIONS:-8}"
FILE_SIZE=1048576
if ! command -v valgrind >/dev/null; then "$ROOT/scripts/install-deps.sh" bench; fi
if [ -z "${OTAD_BIN:-}" ]; then
  cmake -S "$ROOT" -B "$ROOT/build-bench" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOTAD_BUILD_TESTS=OFF >/dev/null
  cmake --build "$ROOT/build-bench" --target otad -j"$(nproc)" >/dev/null
  OTAD_BIN="$ROOT/build-bench/otad"
fi

WORK="$(mktemp -d /tmp/otad-instructions.XXXXXX)"
OTAD_PID=""
cleanup() {
  local status=$?
  if [ -n "$OTAD_PID" ]; then kill "$OTAD_PID" 2>/dev/null || true; wait "$OTAD_PID" 2>/dev/null || true; fi
  if [ "$status" -eq 0 ]; then rm -rf "$WORK"; else echo "bench: failed; logs kept in $WORK" >&2; fi
}
trap cleanup EXIT
# shellcheck source=bench/otad_fixture.sh
. "$BENCH/otad_fixture.sh"  # free_port, wait_until, upload_bench_image

OTAD_TLS_PORT="$(free_port)"
# Same settings as bench/run.sh; plain HTTP off (not measured here).
OTAD_MAX_CONCURRENT_DOWNLOADS=20000 OTAD_MAX_CONNECTIONS=20000 OTAD_IDLE_TIMEOUT_MS=600000 \
  valgrind --tool=callgrind --callgrind-out-file="$WORK/callgrind.out" \
  "$OTAD_BIN" serve --data-dir "$WORK/otad" --listen "127.0.0.1:$OTAD_TLS_PORT" >"$WORK/otad.log" 2>&1 &
OTAD_PID=$!
wait_until 120 curl -sf --cacert "$WORK/otad/tls/cert.pem" "https://127.0.0.1:$OTAD_TLS_PORT/healthz"
upload_bench_image

# ranges COUNT: COUNT random 4 KiB-aligned 4 KiB ranges, round-robin over CONNECTIONS keep-alive
# TLS connections, each answer checked against the file.
ranges() {
  python3 - "$OTAD_TLS_PORT" "$BLOB_PATH" "$WORK/otad/tls/cert.pem" "$WORK/image.bin" "$1" "$CONNECTIONS" <<'PY'
import random, socket, ssl, sys
port, path, ca, image, count, conns = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
data = open(image, "rb").read()
ctx = ssl.create_default_context(cafile=ca)
sockets = []
for _ in range(conns):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), timeout=60), server_hostname="localhost")
    sockets.append(s)
for i in range(count):
    s = sockets[i % conns]
    first = random.randrange(len(data) // 4096) * 4096
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes={first}-{first + 4095}\r\n\r\n".encode())
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(65536)
    head, body = got.split(b"\r\n\r\n", 1)
    while len(body) < 4096:
        body += s.recv(65536)
    assert head.startswith(b"HTTP/1.1 206") and body == data[first:first + 4096], head
for s in sockets:
    s.close()
PY
}
ranges 300  # warm-up: caches, allocator, pre-signed URL check
callgrind_control -z "$OTAD_PID" >/dev/null 2>&1
ranges "$REQUESTS"
callgrind_control -d "$OTAD_PID" >/dev/null 2>&1
sleep 1
dump="$(ls "$WORK"/callgrind.out.* | head -1)"
total="$(awk '/^(summary|totals):/ { print $2 }' "$dump" | tail -1)"
echo "instructions per request: $((total / REQUESTS)) ($REQUESTS requests over $CONNECTIONS TLS connections, $(basename "$OTAD_BIN"))"
