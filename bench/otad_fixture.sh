# Sourced by bench/run.sh, bench/poll_bench.sh and bench/instructions.sh: shared set-up steps.

free_port() {  # an unused 127.0.0.1 TCP port
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_until() {  # wait_until SECONDS COMMAND...: polls COMMAND until it succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "bench: timed out waiting for: $*" >&2; return 1; }
    sleep 0.1
  done
}

# upload_bench_image: with otad serving $WORK/otad on 127.0.0.1:$OTAD_TLS_PORT, uploads a random
# $FILE_SIZE-byte image as product "bench" 1.0.0 and sets SHA, BLOB_FILE and BLOB_PATH (a
# pre-signed /api/v1/blobs URL path, what a manifest hands a device; valid for a day).
upload_bench_image() {
  local token
  token="$("$OTAD_BIN" token create --name bench --role admin --data-dir "$WORK/otad" 2>/dev/null | tail -1)"
  head -c "$FILE_SIZE" /dev/urandom >"$WORK/image.bin"
  SHA="$(sha256sum "$WORK/image.bin" | cut -d' ' -f1)"
  curl -sf --cacert "$WORK/otad/tls/cert.pem" -H "Authorization: Bearer $token" --data-binary @"$WORK/image.bin" \
    "https://127.0.0.1:$OTAD_TLS_PORT/api/v1/products/bench/releases/1.0.0/artifacts?chip=generic&layout=single&filename=image.bin" >/dev/null
  # The URL signing secret lives in the settings table.
  BLOB_PATH="$(python3 - "$WORK/otad/otad.db" "$SHA" <<'PY'
import base64, hashlib, hmac, sqlite3, sys, time
secret = sqlite3.connect(sys.argv[1]).execute("SELECT value FROM settings WHERE key='url_signing_secret'").fetchone()[0]
path, expires = f"/api/v1/blobs/{sys.argv[2]}", int(time.time()) + 86400
sig = base64.urlsafe_b64encode(hmac.new(secret.encode(), f"{path}\n{expires}".encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
print(f"{path}?expires={expires}&sig={sig}")
PY
)"
  BLOB_FILE="$WORK/otad/blobs/${SHA:0:2}/${SHA:2:2}/$SHA"
  cmp "$BLOB_FILE" "$WORK/image.bin"
}
