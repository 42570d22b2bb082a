#!/usr/bin/env bash
# Device polls per second: otad's GET /api/v1/update (a signed manifest per poll, each poll
# from one of DEVICES registered devices, recorded by the batched registry) side by side with
# nginx serving a static JSON file of the same bytes for the same request lines.
# 127.0.0.1 only; both servers get every core; wrk runs on the same machine.
#
#   usage: bench/poll_bench.sh
#   env:   OTAD_BIN, MAKE_ESP_IMAGE (default: build both in build-poll-bench/, Release)
#          RUNS=3 DURATION=10 CONNECTIONS=256 THREADS=2 DEVICES=100000
# Prints a markdown table (median of RUNS runs) for bench/RESULTS.md. Figure 3 is otad alone: the
# same plain-HTTP polls on a channel with a running rollout at 50 % (docs/rollouts.md), run by run
# alternating with the same polls on a channel without one, by another DEVICES devices.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/bench"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-10}"
CONNECTIONS="${CONNECTIONS:-256}"
THREADS="${THREADS:-2}"
DEVICES="${DEVICES:-100000}"
CORES="$(nproc)"

if ! command -v wrk >/dev/null || [ ! -x /usr/sbin/nginx ] || ! command -v sqlite3 >/dev/null; then
  echo "bench: needs wrk, nginx-light and sqlite3" >&2; exit 1
fi
NGINX=/usr/sbin/nginx
if [ -z "${OTAD_BIN:-}" ] || [ -z "${MAKE_ESP_IMAGE:-}" ]; then
  cmake -S "$ROOT" -B "$ROOT/build-poll-bench" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$ROOT/build-poll-bench" --target otad make_esp_image -j"$CORES" >/dev/null
  OTAD_BIN="${OTAD_BIN:-$ROOT/build-poll-bench/otad}"
  MAKE_ESP_IMAGE="${MAKE_ESP_IMAGE:-$ROOT/build-poll-bench/tests/make_esp_image}"
fi
ulimit -n "$(ulimit -Hn)"

WORK="$(mktemp -d /tmp/otad-poll-bench.XXXXXX)"
OTAD_PID=""
# shellcheck source=bench/otad_fixture.sh
. "$BENCH/otad_fixture.sh"  # free_port, wait_until, upload_bench_image
OTAD_TLS_PORT="$(free_port)"; OTAD_HTTP_PORT="$(free_port)"; NGX_TLS_PORT="$(free_port)"; NGX_HTTP_PORT="$(free_port)"
nginx_master() { cat "$WORK/nginx/nginx.pid" 2>/dev/null || true; }
stop_otad() { if [ -n "$OTAD_PID" ]; then kill "$OTAD_PID" 2>/dev/null || true; wait "$OTAD_PID" 2>/dev/null || true; OTAD_PID=""; fi; }
stop_nginx() {
  local pid; pid="$(nginx_master)"
  if [ -n "$pid" ]; then
    kill -QUIT "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
}
cleanup() { stop_otad; stop_nginx; rm -rf "$WORK"; }
trap cleanup EXIT

# ---- otad: one product, 1.1.0 on stable and canary (canary rolling out 1.2.0), 2 x DEVICES devices on 1.0.0 --
"$OTAD_BIN" serve --data-dir "$WORK/otad" --listen "127.0.0.1:$OTAD_TLS_PORT" \
  --http-listen "127.0.0.1:$OTAD_HTTP_PORT" >>"$WORK/otad.log" 2>&1 &
OTAD_PID=$!
CERT="$WORK/otad/tls/cert.pem"; KEY="$WORK/otad/tls/key.pem"
wait_until 30 curl -sf --cacert "$CERT" "https://127.0.0.1:$OTAD_TLS_PORT/healthz"
TOKEN="$("$OTAD_BIN" token create --name bench --role admin --data-dir "$WORK/otad" 2>/dev/null | tail -1)"
api() { curl -sf --cacert "$CERT" -H "Authorization: Bearer $TOKEN" "$@"; }
for v in 1.1.0 1.2.0; do
  "$MAKE_ESP_IMAGE" --kind esp32 --chip esp32 --version "$v" --project bench --size 1M --out "$WORK/app-$v.bin" >/dev/null
  api --data-binary @"$WORK/app-$v.bin" \
    "https://127.0.0.1:$OTAD_TLS_PORT/api/v1/products/bench/releases/$v/artifacts?chip=esp32&layout=ota" >/dev/null
done
for channel in stable canary; do
  api -X PUT -H "Content-Type: application/json" --data '{"version":"1.1.0"}' \
    "https://127.0.0.1:$OTAD_TLS_PORT/api/v1/products/bench/channels/$channel" >/dev/null
done
# canary: a rollout from 1.1.0 to 1.2.0 at 50 % (no hold: it stays there). Its devices poll from 1.0.0,
# so every poll is still a 200 with a signed manifest: of 1.2.0 for half of them, of 1.1.0 for the rest.
api -H "Content-Type: application/json" \
  --data '{"channel":"canary","version":"1.2.0","stages":[{"percent":50},{"percent":100}]}' \
  "https://127.0.0.1:$OTAD_TLS_PORT/api/v1/products/bench/rollouts" >/dev/null
sqlite3 "$WORK/otad/otad.db" <<EOF
.timeout 10000
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $DEVICES - 1),
     fleet(prefix, channel) AS (VALUES ('dev', 'stable'), ('can', 'canary'))
INSERT INTO devices (id, product_id, chip, layout, slot, version, channel, remote_address, first_seen, last_seen)
SELECT printf('%s-%06d', prefix, i), (SELECT id FROM products WHERE name = 'bench'), 'esp32', 'ota', 'ota_0', '1.0.0',
       channel, '127.0.0.1', CAST(strftime('%s', 'now') AS INTEGER), CAST(strftime('%s', 'now') AS INTEGER)
FROM n, fleet ORDER BY 1;
EOF
[ "$(sqlite3 "$WORK/otad/otad.db" 'SELECT count(*) FROM devices')" = "$((2 * DEVICES))" ]

POLL="/api/v1/update?product=bench&chip=esp32&layout=ota&slot=ota_0&version=1.0.0&device=dev-000000"
curl -sf -o "$WORK/manifest.json" "http://127.0.0.1:$OTAD_HTTP_PORT$POLL"
MANIFEST_BYTES="$(stat -c %s "$WORK/manifest.json")"

# ---- nginx: the same manifest bytes as a static file, for the same request lines ------------
mkdir -p "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<EOF
user $(id -un);
worker_processes $CORES;
worker_rlimit_nofile 20000;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 16384; }
http {
    types { }
    default_type application/json;
    keepalive_timeout 600s;
    keepalive_requests 100000000;
    access_log $WORK/nginx/access.log;
    client_body_temp_path $WORK/nginx/tmp; proxy_temp_path $WORK/nginx/tmp; fastcgi_temp_path $WORK/nginx/tmp;
    uwsgi_temp_path $WORK/nginx/tmp; scgi_temp_path $WORK/nginx/tmp;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    server {
        listen 127.0.0.1:$NGX_TLS_PORT ssl;
        listen 127.0.0.1:$NGX_HTTP_PORT;
        location = /api/v1/update { alias $WORK/manifest.json; }
    }
}
EOF
"$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
wait_until 30 curl -sf -o /dev/null "http://127.0.0.1:$NGX_HTTP_PORT$POLL"
curl -sf "http://127.0.0.1:$NGX_HTTP_PORT$POLL" | cmp - "$WORK/manifest.json"

# ---- measuring -------------------------------------------------------------------------------
# CPU time (user + system, all threads) the server processes used: the machine may be shared,
# so besides requests/s the table shows CPU microseconds per poll, which contention disturbs less.
TICK_US=$((1000000 / $(getconf CLK_TCK)))
cpu_ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo "$t"; }
server_pids() { if [ "$1" = otad ]; then echo "$OTAD_PID"; else local m; m="$(nginx_master)"; echo "$m" $(pgrep -P "$m"); fi; }
run_wrk() {  # run_wrk URL [SERVER] -> "requests/s p50_us p99_us cpu_us_per_request"; fails on errors or non-2xx
  # BENCH_CHANNEL and BENCH_PREFIX in the environment pick the channel and the device population.
  local out line errors non2xx before after pids
  pids="$(server_pids "${2:-otad}")"
  before="$(cpu_ticks $pids)"
  out="$(BENCH_DEVICES=$DEVICES wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s \
         -s "$BENCH/wrk_poll.lua" "$1")"
  after="$(cpu_ticks $pids)"
  line="$(grep '^RESULT' <<<"$out")"
  errors="$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$line")"; non2xx="$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$line")"
  if [ "$errors" != 0 ] || [ "$non2xx" != 0 ]; then echo "bench: wrk saw errors on $1: $line" >&2; return 1; fi
  awk -v cpu_us="$(( (after - before) * TICK_US ))" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
       END { printf "%.0f %d %d %.1f\n", v["requests"] / v["duration_us"] * 1000000, v["p50_us"], v["p99_us"],
                    cpu_us / v["requests"] }' <<<"$line"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
declare -A RESULT
figure() {  # figure NAME SCHEME: RUNS runs per server, alternating servers, medians
  local name=$1 scheme=$2 server port r
  for _ in $(seq "$RUNS"); do
    for server in otad nginx; do
      if [ "$scheme" = https ]; then port=$([ $server = otad ] && echo "$OTAD_TLS_PORT" || echo "$NGX_TLS_PORT")
      else port=$([ $server = otad ] && echo "$OTAD_HTTP_PORT" || echo "$NGX_HTTP_PORT"); fi
      r="$(run_wrk "$scheme://127.0.0.1:$port$POLL" "$server")"
      RESULT[$name.$server.runs]+="$(cut -d' ' -f1 <<<"$r") "
      RESULT[$name.$server.lat]+="$(cut -d' ' -f2,3 <<<"$r" | tr ' ' '/')us "
      RESULT[$name.$server.cpus]+="$(cut -d' ' -f4 <<<"$r") "
    done
  done
  for server in otad nginx; do
    RESULT[$name.$server]="$(tr ' ' '\n' <<<"${RESULT[$name.$server.runs]}" | grep . | median)"
    RESULT[$name.$server.cpu]="$(tr ' ' '\n' <<<"${RESULT[$name.$server.cpus]}" | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
  done
}

echo "bench: otad $("$OTAD_BIN" version 2>/dev/null | head -1) vs $("$NGINX" -v 2>&1); $CORES cores;" \
     "$DEVICES devices; manifest $MANIFEST_BYTES bytes; ${DURATION}s x $RUNS runs" >&2
# Warm-up: every device's first offer and first flush (events, offered_at) happen here, so the
# runs measure the steady state: polls of known devices, batched last-seen updates.
echo "bench: warm-up" >&2
DURATION=$((DURATION * 2)) run_wrk "http://127.0.0.1:$OTAD_HTTP_PORT$POLL" >/dev/null
run_wrk "http://127.0.0.1:$NGX_HTTP_PORT$POLL" >/dev/null
BENCH_CHANNEL=canary BENCH_PREFIX=can DURATION=$((DURATION * 2)) run_wrk "http://127.0.0.1:$OTAD_HTTP_PORT$POLL" >/dev/null
echo "bench: 1. plain HTTP polls" >&2; figure http http
echo "bench: 2. HTTPS polls" >&2;      figure https https
# 3. What a running rollout costs the poll: otad against itself, in the same run, alternating.
echo "bench: 3. plain HTTP polls, rollout at 50 % vs none" >&2
for _ in $(seq "$RUNS"); do
  for variant in none rollout; do
    if [ $variant = rollout ]; then r="$(BENCH_CHANNEL=canary BENCH_PREFIX=can run_wrk "http://127.0.0.1:$OTAD_HTTP_PORT$POLL")"
    else r="$(run_wrk "http://127.0.0.1:$OTAD_HTTP_PORT$POLL")"; fi
    RESULT[rollout.$variant.runs]+="$(cut -d' ' -f1 <<<"$r") "
    RESULT[rollout.$variant.cpus]+="$(cut -d' ' -f4 <<<"$r") "
  done
done
for variant in none rollout; do
  RESULT[rollout.$variant]="$(tr ' ' '\n' <<<"${RESULT[rollout.$variant.runs]}" | grep . | median)"
  RESULT[rollout.$variant.cpu]="$(tr ' ' '\n' <<<"${RESULT[rollout.$variant.cpus]}" | grep . | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
done
ROLLOUT_ROWS="$(sqlite3 "$WORK/otad/otad.db" '.timeout 10000' \
                "SELECT count(*) || ' members, ' || count(offered_at) || ' offered' FROM rollout_devices")"

SEEN="$(sqlite3 "$WORK/otad/otad.db" '.timeout 10000' \
        "SELECT count(*) FROM devices WHERE last_seen > first_seen OR offered_version IS NOT NULL")"
SIGNED_KEYS="$(sqlite3 "$WORK/otad/otad.db" '.timeout 10000' 'SELECT count(*) FROM signing_keys')"
row() {
  local o=${RESULT[$2.otad]} n=${RESULT[$2.nginx]} oc=${RESULT[$2.otad.cpu]} nc=${RESULT[$2.nginx.cpu]}
  printf "| %-38s | %8s | %8s | %5s | %8s | %8s | %5s |\n" "$1" "$o" "$n" \
    "$(awk -v o="$o" -v n="$n" 'BEGIN { printf "%.2f", o / n }')" "$oc" "$nc" \
    "$(awk -v o="$oc" -v n="$nc" 'BEGIN { printf "%.2f", n / o }')"
}
runs() {
  echo "   $1 runs, req/s (p50/p99 latency; CPU us/poll): otad ${RESULT[$2.otad.runs]}(${RESULT[$2.otad.lat]}; ${RESULT[$2.otad.cpus]})" \
       "nginx ${RESULT[$2.nginx.runs]}(${RESULT[$2.nginx.lat]}; ${RESULT[$2.nginx.cpus]})"
}
echo
echo "| median of $RUNS, $CONNECTIONS connections         | otad r/s | nginx r/s | ratio | otad CPU us/poll | nginx CPU us/poll | ratio (nginx/otad) |"
echo "|----------------------------------------|----------|----------|-------|----------|----------|-------|"
row "1. plain HTTP, 200 + signed manifest" http
row "2. HTTPS, 200 + signed manifest" https
runs 1. http
runs 2. https
echo "   devices polled and recorded: $SEEN of $((2 * DEVICES)); signing keys: $SIGNED_KEYS; manifest $MANIFEST_BYTES bytes"
echo
echo "| median of $RUNS, $CONNECTIONS connections, plain HTTP   | no rollout r/s | rollout at 50 % r/s | ratio | no rollout CPU us/poll | rollout CPU us/poll |"
echo "|----------------------------------------|----------|----------|-------|----------|----------|"
printf "| %-38s | %8s | %8s | %5s | %8s | %8s |\n" "3. 200 + signed manifest, same run" \
  "${RESULT[rollout.none]}" "${RESULT[rollout.rollout]}" \
  "$(awk -v o="${RESULT[rollout.rollout]}" -v n="${RESULT[rollout.none]}" 'BEGIN { printf "%.2f", o / n }')" \
  "${RESULT[rollout.none.cpu]}" "${RESULT[rollout.rollout.cpu]}"
echo "   3. runs, req/s (CPU us/poll): none ${RESULT[rollout.none.runs]}(${RESULT[rollout.none.cpus]})" \
     "rollout ${RESULT[rollout.rollout.runs]}(${RESULT[rollout.rollout.cpus]}); rollout rows: $ROLLOUT_ROWS"
