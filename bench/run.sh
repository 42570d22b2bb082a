#!/usr/bin/env bash
# otad vs nginx on this machine, same file, same certificate, 127.0.0.1 only.
# Prints, for each figure, otad, nginx and otad/nginx (median of RUNS runs):
#   1. HTTPS 1 MiB download throughput, 64 connections (wrk)
#   2. HTTPS 4 KiB Range requests per second, 64 connections (wrk + bench/wrk_range.lua)
#   3. plain-HTTP 1 MiB download throughput, 64 connections (wrk)
#   4. RSS growth per idle TLS keep-alive connection, 10,000 held open (bench/tls_clients.py hold)
#   5. HTTPS 1 MiB throughput (as 1) while 2,000 other TLS connections trickle 8 KB/s each
#      (bench/tls_clients.py trickle); also how much of its own unloaded figure each server keeps.
#
#   usage: bench/run.sh            env: OTAD_BIN (default: build it in build-bench/, Release)
#          RUNS=3 DURATION=5 CONNECTIONS=64 IDLE=10000 TRICKLE=2000 THREADS=2 FIGURES="1 2 3 4 5"
#          BENCH_NICE=-10 (see below)
# Needs nginx-light and wrk (installed via scripts/install-deps.sh bench when missing).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="$ROOT/bench"
RUNS="${RUNS:-3}"
DURATION="${DURATION:-5}"
CONNECTIONS="${CONNECTIONS:-64}"
IDLE="${IDLE:-10000}"
TRICKLE="${TRICKLE:-2000}"
THREADS="${THREADS:-2}"
FIGURES="${FIGURES:-1 2 3 4 5}"
# BENCH_NICE=-10 (root only) runs servers and load generators ahead of other work on a
# shared machine, for steadier figures; both servers get the same priority.
PRIO=""
if [ -n "${BENCH_NICE:-}" ]; then PRIO="nice -n $BENCH_NICE"; fi
CORES="$(nproc)"
FILE_SIZE=1048576

if ! command -v wrk >/dev/null || [ ! -x /usr/sbin/nginx ]; then "$ROOT/scripts/install-deps.sh" bench; fi
NGINX=/usr/sbin/nginx
if [ -z "${OTAD_BIN:-}" ]; then
  cmake -S "$ROOT" -B "$ROOT/build-bench" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOTAD_BUILD_TESTS=OFF >/dev/null
  cmake --build "$ROOT/build-bench" --target otad -j"$CORES" >/dev/null
  OTAD_BIN="$ROOT/build-bench/otad"
fi
ulimit -n "$(ulimit -Hn)"  # 10,000 held connections on each side

WORK="$(mktemp -d /tmp/otad-bench.XXXXXX)"
OTAD_PID=""
CLIENT_PID=""
# shellcheck source=bench/otad_fixture.sh
. "$BENCH/otad_fixture.sh"  # free_port, wait_until, upload_bench_image
OTAD_TLS_PORT="$(free_port)"; OTAD_HTTP_PORT="$(free_port)"; NGX_TLS_PORT="$(free_port)"; NGX_HTTP_PORT="$(free_port)"

stop_client() { if [ -n "$CLIENT_PID" ]; then kill "$CLIENT_PID" 2>/dev/null || true; wait "$CLIENT_PID" 2>/dev/null || true; CLIENT_PID=""; fi; }
stop_otad() { if [ -n "$OTAD_PID" ]; then kill "$OTAD_PID" 2>/dev/null || true; wait "$OTAD_PID" 2>/dev/null || true; OTAD_PID=""; fi; }
nginx_master() { cat "$WORK/nginx/nginx.pid" 2>/dev/null || true; }
stop_nginx() {
  local pid; pid="$(nginx_master)"
  if [ -n "$pid" ]; then
    kill -QUIT "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
}
cleanup() {
  local status=$?
  stop_client; stop_otad; stop_nginx
  if [ "$status" -eq 0 ]; then rm -rf "$WORK"; else echo "bench: failed; logs kept in $WORK" >&2; fi
}
trap cleanup EXIT


# ---- otad --------------------------------------------------------------------
start_otad() {
  OTAD_MAX_CONCURRENT_DOWNLOADS=20000 OTAD_MAX_CONNECTIONS=20000 OTAD_IDLE_TIMEOUT_MS=600000 \
    $PRIO "$OTAD_BIN" serve --data-dir "$WORK/otad" --listen "127.0.0.1:$OTAD_TLS_PORT" \
    --http-listen "127.0.0.1:$OTAD_HTTP_PORT" >>"$WORK/otad.log" 2>&1 &
  OTAD_PID=$!
  wait_until 30 curl -sf --cacert "$WORK/otad/tls/cert.pem" "https://127.0.0.1:$OTAD_TLS_PORT/healthz"
}
start_otad
upload_bench_image
CERT="$WORK/otad/tls/cert.pem"; KEY="$WORK/otad/tls/key.pem"

# ---- nginx: same certificate, same file at the same URI -----------------------------
mkdir -p "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<EOF
user $(id -un);
worker_processes $CORES;
worker_rlimit_nofile 20000;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 16384; }
http {
    default_type application/octet-stream;
    types { }
    sendfile on;
    tcp_nopush on;
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
        location = /api/v1/blobs/$SHA { alias $BLOB_FILE; }
    }
}
EOF
start_nginx() {
  $PRIO "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
  wait_until 30 curl -sf --cacert "$CERT" -o /dev/null "https://127.0.0.1:$NGX_TLS_PORT$BLOB_PATH"
}
start_nginx

for port in "$OTAD_TLS_PORT" "$NGX_TLS_PORT"; do  # same bytes from both
  curl -sf --cacert "$CERT" "https://127.0.0.1:$port$BLOB_PATH" | cmp - "$WORK/image.bin"
done
curl -sf "http://127.0.0.1:$NGX_HTTP_PORT$BLOB_PATH" | cmp - "$WORK/image.bin"
curl -sf "http://127.0.0.1:$OTAD_HTTP_PORT$BLOB_PATH" | cmp - "$WORK/image.bin"

# ---- measuring ------------------------------------------------------------------------
CLK_TCK="$(getconf CLK_TCK)"
nginx_pids() { local m; m="$(nginx_master)"; echo "$m" $(pgrep -P "$m"); }
server_pids() { if [ "$1" = otad ]; then echo "$OTAD_PID"; else nginx_pids; fi; }
# CPU time (user + system, clock ticks) the server's processes have used so far.
cpu_ticks() { local total=0 pid; for pid in $(server_pids "$1"); do total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat"))); done; echo "$total"; }

# run_wrk URL SCRIPT [SERVER] -> "bytes duration_us requests server_cpu_ticks"; fails on any
# error or non-2xx answer. CPU per unit of work is steadier than rates on a shared machine.
run_wrk() {
  local out before=0 after=0
  [ -n "${3:-}" ] && before=$(cpu_ticks "$3")
  out="$(BENCH_FILE_SIZE=$FILE_SIZE $PRIO wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --timeout 10s -s "$2" "$1")"
  [ -n "${3:-}" ] && after=$(cpu_ticks "$3")
  local line; line="$(grep '^RESULT' <<<"$out")"
  local errors non2xx
  errors="$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$line")"; non2xx="$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$line")"
  if [ "$errors" != 0 ] || [ "$non2xx" != 0 ]; then echo "bench: wrk saw errors on $1: $line" >&2; return 1; fi
  echo "$(sed -E 's/.*bytes=([0-9]+) duration_us=([0-9]+) requests=([0-9]+).*/\1 \2 \3/' <<<"$line") $((after - before))"
}
mbps() { awk '{ printf "%.0f", $1 / $2 }'; }            # MB/s (10^6 bytes)
rps() { awk '{ printf "%.0f", $3 / $2 * 1000000 }'; }   # requests/s
cpu_per_gb() { awk -v t="$CLK_TCK" '{ printf "%.0f", $4 * 1000 / t / ($1 / 1e9) }'; }   # server CPU ms per GB sent
cpu_per_req() { awk -v t="$CLK_TCK" '{ printf "%.1f", $4 * 1e6 / t / $3 }'; }          # server CPU us per request
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
rss_kib() { local total=0 pid; for pid in "$@"; do total=$((total + $(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status"))); done; echo "$total"; }

declare -A RESULT
declare -A TRICKLE_RATE
port_of() {  # port_of SERVER SCHEME
  case "$1.$2" in
    otad.https) echo "$OTAD_TLS_PORT" ;; otad.http) echo "$OTAD_HTTP_PORT" ;;
    nginx.https) echo "$NGX_TLS_PORT" ;; nginx.http) echo "$NGX_HTTP_PORT" ;;
  esac
}
record() {  # record KEY SERVER "v1 v2 v3": keeps the runs and their median
  RESULT[$1.$2.runs]="$3"
  RESULT[$1.$2]="$(tr ' ' '\n' <<<"$3" | grep . | median)"
}
figure() {  # figure KEY SCHEME WRK_SCRIPT UNIT(mbps|rps) CPU_UNIT(cpu_per_gb|cpu_per_req): RUNS runs each, median
  local key=$1 scheme=$2 script=$3 unit=$4 cpu_unit=$5 server run line
  local -A values=([otad]="" [nginx]="") cpu=([otad]="" [nginx]="")
  for run in $(seq "$RUNS"); do
    for server in otad nginx; do  # alternate, so load drifts on this shared machine hit both alike
      line="$(run_wrk "$scheme://127.0.0.1:$(port_of $server "$scheme")$BLOB_PATH" "$script" $server)"
      values[$server]+="$($unit <<<"$line") "
      cpu[$server]+="$($cpu_unit <<<"$line") "
    done
  done
  for server in otad nginx; do record "$key" "$server" "${values[$server]}"; record "$key.cpu" "$server" "${cpu[$server]}"; done
}

echo "bench: otad $("$OTAD_BIN" version 2>/dev/null | head -1) vs $("$NGINX" -v 2>&1); $CORES cores; ${DURATION}s x $RUNS runs; figures $FIGURES" >&2
want() { [[ " $FIGURES " == *" $1 "* ]]; }
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"  # others' work on this machine skews every figure
warm_up() {  # page cache, TLS state, allocator arenas
  run_wrk "https://127.0.0.1:$OTAD_TLS_PORT$BLOB_PATH" "$BENCH/wrk_report.lua" >/dev/null
  run_wrk "https://127.0.0.1:$NGX_TLS_PORT$BLOB_PATH" "$BENCH/wrk_report.lua" >/dev/null
}
warm_up

if want 1; then echo "bench: 1. HTTPS 1 MiB throughput" >&2; figure https_1m https "$BENCH/wrk_report.lua" mbps cpu_per_gb; fi
if want 2; then echo "bench: 2. HTTPS 4 KiB ranges" >&2; figure https_4k https "$BENCH/wrk_range.lua" rps cpu_per_req; fi
if want 3; then echo "bench: 3. plain HTTP 1 MiB throughput" >&2; figure http_1m http "$BENCH/wrk_report.lua" mbps cpu_per_gb; fi

# 4. Memory: fresh servers each run; RSS after every connection has finished its handshake and one request.
HOLD_RESULT=""
hold_run() {  # hold_run SERVER: sets HOLD_RESULT to the RSS growth in KiB per held connection
  local server=$1 port before after n pids
  stop_otad; stop_nginx
  if [ "$server" = otad ]; then start_otad; port=$OTAD_TLS_PORT; else start_nginx; port=$NGX_TLS_PORT; fi
  curl -sf --cacert "$CERT" -o /dev/null -r 0-0 "https://127.0.0.1:$port$BLOB_PATH"
  if [ "$server" = otad ]; then pids=$OTAD_PID; else pids=$(nginx_pids); fi
  before=$(rss_kib $pids)
  rm -f "$WORK/hold.out"  # so the READY we wait for is this run's
  $PRIO python3 "$BENCH/tls_clients.py" hold --port "$port" --cafile "$CERT" --path "$BLOB_PATH" --count "$IDLE" \
    >"$WORK/hold.out" 2>"$WORK/hold.err" &
  CLIENT_PID=$!
  wait_until 300 grep -q READY "$WORK/hold.out"
  n=$(awk '/READY/ { print $2 }' "$WORK/hold.out")
  after=$(rss_kib $pids)
  stop_client
  if [ "$n" -lt $((IDLE * 99 / 100)) ]; then
    echo "bench: only $n of $IDLE connections held: $(head -3 "$WORK/hold.err")" >&2
    return 1
  fi
  HOLD_RESULT=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN { printf "%.1f", (a - b) / n }')
}
if want 4; then
  echo "bench: 4. RSS per idle TLS connection ($IDLE held)" >&2
  declare -A HOLD=([otad]="" [nginx]="")
  for _ in $(seq "$RUNS"); do
    for server in otad nginx; do hold_run $server; HOLD[$server]+="$HOLD_RESULT "; done
  done
  for server in otad nginx; do record idle_kib "$server" "${HOLD[$server]}"; done
  stop_otad; stop_nginx; start_otad; start_nginx
  warm_up
fi

# 5. Throughput of 64 fast connections without, then with TRICKLE slow downloads from the same server.
if want 5; then
  echo "bench: 5. HTTPS 1 MiB throughput with $TRICKLE trickling connections" >&2
  for server in otad nginx; do
    port=$(port_of $server https)
    values=""
    for _ in $(seq "$RUNS"); do values+="$(run_wrk "https://127.0.0.1:$port$BLOB_PATH" "$BENCH/wrk_report.lua" | mbps) "; done
    record unloaded_1m "$server" "$values"
    rm -f "$WORK/trickle.out"
    $PRIO python3 "$BENCH/tls_clients.py" trickle --port "$port" --cafile "$CERT" --path "$BLOB_PATH" --count "$TRICKLE" \
      >"$WORK/trickle.out" 2>"$WORK/trickle.err" &
    CLIENT_PID=$!
    wait_until 180 grep -q READY "$WORK/trickle.out"
    if ! grep -q "READY $TRICKLE failed=0" "$WORK/trickle.out"; then
      echo "bench: trickle clients: $(cat "$WORK/trickle.out" "$WORK/trickle.err" | head -5)" >&2
      exit 1
    fi
    values=""; cpu=""
    for _ in $(seq "$RUNS"); do
      line="$(run_wrk "https://127.0.0.1:$port$BLOB_PATH" "$BENCH/wrk_report.lua" $server)"
      values+="$(mbps <<<"$line") "; cpu+="$(cpu_per_gb <<<"$line") "  # the tricklers' share included
    done
    stop_client
    record loaded_1m "$server" "$values"
    record loaded_1m.cpu "$server" "$cpu"
    TRICKLE_RATE[$server]="$(sed -nE 's/^DONE rate=([0-9]+)B\/s/\1/p' "$WORK/trickle.out")"
  done
fi

# ---- table ---------------------------------------------------------------------------
row() {  # row LABEL KEY UNIT [lower-is-better]
  local o=${RESULT[$2.otad]} n=${RESULT[$2.nginx]} ratio
  if [ "${4:-}" = lower ]; then ratio=$(awk -v o="$o" -v n="$n" 'BEGIN { printf "%.2f", n / o }')
  else ratio=$(awk -v o="$o" -v n="$n" 'BEGIN { printf "%.2f", o / n }'); fi
  printf "| %-58s | %11s | %11s | %5s | %-22s | %-22s |\n" "$1" "$o $3" "$n $3" "$ratio" \
    "${RESULT[$2.otad.runs]}" "${RESULT[$2.nginx.runs]}"
}
kept() { awk -v l="${RESULT[loaded_1m.$1]}" -v u="${RESULT[unloaded_1m.$1]}" 'BEGIN { printf "%.0f%%", 100 * l / u }'; }
echo
printf "| %-58s | %11s | %11s | %5s | %-22s | %-22s |\n" "figure (median of $RUNS runs)" otad nginx ratio "otad runs" "nginx runs"
echo "|------------------------------------------------------------|-------------|-------------|-------|------------------------|------------------------|"
if want 1; then row "1. HTTPS 1 MiB download, $CONNECTIONS conns (MB/s)" https_1m "MB/s"; fi
if want 2; then row "2. HTTPS 4 KiB Range requests, $CONNECTIONS conns (req/s)" https_4k "r/s"; fi
if want 3; then row "3. plain HTTP 1 MiB download, $CONNECTIONS conns (MB/s)" http_1m "MB/s"; fi
if want 4; then row "4. RSS per idle TLS conn, $IDLE held (KiB; ratio nginx/otad)" idle_kib "KiB" lower; fi
if want 5; then
  row "5a. HTTPS 1 MiB, $CONNECTIONS conns, just before 5b (MB/s)" unloaded_1m "MB/s"
  row "5b. same with $TRICKLE trickling conns (MB/s)" loaded_1m "MB/s"
  echo
  echo "5. fast connections keep of their unloaded throughput: otad $(kept otad), nginx $(kept nginx) (target >= 80%);"
  echo "   trickling connections received: otad ${TRICKLE_RATE[otad]:-?} B/s, nginx ${TRICKLE_RATE[nginx]:-?} B/s in total"
fi
echo
echo "Server CPU time per unit of work (user + system of otad, of nginx's master + workers; lower is better;"
echo "ratio nginx/otad, so > 1 means otad needs less). Steadier than rates when others load the machine."
printf "| %-58s | %11s | %11s | %5s | %-22s | %-22s |\n" "figure (median of $RUNS runs)" otad nginx ratio "otad runs" "nginx runs"
echo "|------------------------------------------------------------|-------------|-------------|-------|------------------------|------------------------|"
if want 1; then row "1. HTTPS 1 MiB download (CPU ms per GB)" https_1m.cpu "ms/GB" lower; fi
if want 2; then row "2. HTTPS 4 KiB Range request (CPU us per request)" https_4k.cpu "us" lower; fi
if want 3; then row "3. plain HTTP 1 MiB download (CPU ms per GB)" http_1m.cpu "ms/GB" lower; fi
if want 5; then row "5b. HTTPS 1 MiB with $TRICKLE trickling (CPU ms per GB to wrk)" loaded_1m.cpu "ms/GB" lower; fi
echo "load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg) ($CORES cores)"
