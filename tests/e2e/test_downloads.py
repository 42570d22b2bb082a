"""Downloads (docs/downloads.md): Range-correct, resumable streaming of blobs and friendly paths,
checked byte for byte with our own client and with curl, wget, aria2c and openssl, plus the
esp_https_ota partial-download sequence, admission control and the plain-HTTP (sendfile) listener."""
import base64
import hashlib
import hmac
import http.client
import os
import random
import re
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import time
import urllib.parse

import pytest

from otad_harness import Otad, wait_for

PRODUCT = "dlprod"
VERSION = "1.0.0"
FILENAME = "fw.bin"
SIZE = 5 * 1024 * 1024 + 12345  # not a multiple of 4 KiB; > aria2c's 1 MiB minimum split


# --- helpers ---------------------------------------------------------------

def upload(d, token, product, version, filename, data):
    path = (f"/api/v1/products/{product}/releases/{version}/artifacts"
            f"?chip=generic&layout=single&filename={urllib.parse.quote(filename)}")
    status, headers, body = d.request("POST", path, body=data, token=token,
                                      headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert status == 201, (status, body[:500])
    return hashlib.sha256(data).hexdigest()


def url_secret(d):
    db = sqlite3.connect(os.path.join(d.data_dir, "otad.db"), timeout=10)
    try:
        return db.execute("SELECT value FROM settings WHERE key = 'url_signing_secret'").fetchone()[0]
    finally:
        db.close()


def presign(secret, sha, expires):
    path = f"/api/v1/blobs/{sha}"
    mac = hmac.new(secret.encode(), f"{path}\n{expires}".encode(), hashlib.sha256).digest()
    sig = base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    return f"{path}?expires={expires}&sig={sig}"


def tls_connection(d, timeout=30):
    return http.client.HTTPSConnection("127.0.0.1", d.port, timeout=timeout, context=d.ssl_context())


def get(conn, path, headers=None, method="GET"):
    conn.request(method, path, headers=headers or {})
    resp = conn.getresponse()
    body = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def sha(data):
    return hashlib.sha256(data).hexdigest()


def parse_multipart(content_type, body, total):
    """Parses multipart/byteranges strictly, part lengths taken from Content-Range. Returns [(first, last, bytes)]."""
    m = re.fullmatch(r"multipart/byteranges; boundary=([0-9A-Za-z'+_.-]{1,70})", content_type)
    assert m, content_type
    delimiter = b"\r\n--" + m.group(1).encode()
    parts, pos = [], 0
    while True:
        assert body[pos:pos + len(delimiter)] == delimiter, (pos, body[pos:pos + 80])
        pos += len(delimiter)
        if body[pos:pos + 4] == b"--\r\n":
            assert pos + 4 == len(body)
            return parts
        assert body[pos:pos + 2] == b"\r\n"
        end = body.index(b"\r\n\r\n", pos)
        headers = dict(line.split(": ", 1) for line in body[pos + 2:end].decode().split("\r\n"))
        assert headers["Content-Type"] == "application/octet-stream"
        cr = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", headers["Content-Range"])
        first, last = int(cr.group(1)), int(cr.group(2))
        assert int(cr.group(3)) == total
        pos = end + 4
        parts.append((first, last, body[pos:pos + last - first + 1]))
        pos += last - first + 1


def covered(ranges, total):
    """The set of byte positions a list of (first, last) ranges covers, as merged intervals."""
    spans = sorted((a, min(b, total - 1)) for a, b in ranges)
    merged = []
    for a, b in spans:
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


# --- fixtures ----------------------------------------------------------------

@pytest.fixture(scope="module")
def env():
    """One daemon (HTTPS + plain HTTP) with a random 5 MiB image uploaded as dlprod 1.0.0 fw.bin."""
    d = Otad(http_listener=True).start()
    try:
        token = d.create_token("admin")
        data = random.Random(5).randbytes(SIZE)
        digest = upload(d, token, PRODUCT, VERSION, FILENAME, data)
        secret = url_secret(d)
        expires = int(time.time()) + 3600
        yield {"d": d, "token": token, "data": data, "sha": digest,
               "blob": presign(secret, digest, expires), "secret": secret,
               "friendly": f"/firmware/{PRODUCT}/{VERSION}/{FILENAME}",
               "tmp": tempfile.mkdtemp(prefix="otad-dl-", dir=d.data_dir)}
    finally:
        d.cleanup()


# --- headers and semantics ------------------------------------------------------

@pytest.mark.parametrize("which", ["blob", "friendly"])
def test_full_get_headers_and_head_is_identical_without_body(env, which):
    d, path = env["d"], env[which]
    conn = tls_connection(d)
    status, h, body = get(conn, path)
    assert status == 200
    assert sha(body) == env["sha"] and len(body) == SIZE
    assert h["content-length"] == str(SIZE)
    assert h["etag"] == f'"{env["sha"]}"'
    assert h["accept-ranges"] == "bytes"
    assert h["content-type"] == "application/octet-stream"
    assert h["content-disposition"] == f'attachment; filename="{FILENAME}"'
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", h["last-modified"])
    assert "content-encoding" not in h and "transfer-encoding" not in h
    if which == "blob":
        assert re.fullmatch(r"public, max-age=\d+, immutable", h["cache-control"])
        assert 3500 <= int(h["cache-control"].split("max-age=")[1].split(",")[0]) <= 3600
    else:
        assert h["cache-control"] == "public, max-age=300"
    # HEAD on the same keep-alive connection: same headers, no body (else the GET after it breaks).
    hstatus, hh, hbody = get(conn, path, method="HEAD")
    assert hstatus == 200 and hbody == b""
    ignore = {"date", "cache-control"}
    assert {k: v for k, v in hh.items() if k not in ignore} == {k: v for k, v in h.items() if k not in ignore}
    status, h2, body2 = get(conn, path, {"Range": "bytes=0-3"})
    assert status == 206 and body2 == env["data"][:4]
    conn.close()


def test_ranges_single_open_suffix_clipped_unsatisfiable_malformed(env):
    d, data = env["d"], env["data"]
    conn = tls_connection(d)
    cases = [
        ("bytes=0-0", 0, 0), ("bytes=100-199", 100, 199), (f"bytes={SIZE - 10}-", SIZE - 10, SIZE - 1),
        ("bytes=-1", SIZE - 1, SIZE - 1), ("bytes=-4096", SIZE - 4096, SIZE - 1),
        (f"bytes=-{SIZE + 50}", 0, SIZE - 1), (f"bytes=1000-{SIZE}", 1000, SIZE - 1),
        (f"bytes={SIZE - 1}-{SIZE * 3}", SIZE - 1, SIZE - 1), ("BYTES = 5-9", 5, 9),
    ]
    for header, first, last in cases:
        status, h, body = get(conn, env["blob"], {"Range": header})
        assert status == 206, header
        assert h["content-range"] == f"bytes {first}-{last}/{SIZE}", header
        assert h["content-length"] == str(last - first + 1)
        assert body == data[first:last + 1], header
        assert h["etag"] == f'"{env["sha"]}"' and h["content-type"] == "application/octet-stream"
    for header in [f"bytes={SIZE}-", f"bytes={SIZE}-{SIZE + 10}", "bytes=-0", f"bytes={SIZE + 5}-, {SIZE * 2}-"]:
        status, h, body = get(conn, env["blob"], {"Range": header})
        assert status == 416, header
        assert h["content-range"] == f"bytes */{SIZE}"
    for header in ["bytes=5-1", "items=0-5", "bytes=abc", "bytes=1-2-3", "bytes 0-5", "bytes=--5"]:
        status, h, body = get(conn, env["blob"], {"Range": header})
        assert status == 200, header
        assert len(body) == SIZE and "content-range" not in h
    # HEAD ignores Range (RFC 9110 §14.2): the whole representation's headers.
    status, h, body = get(conn, env["blob"], {"Range": "bytes=0-9"}, method="HEAD")
    assert status == 200 and h["content-length"] == str(SIZE) and body == b""
    conn.close()


def test_conditional_requests(env):
    d, data, etag = env["d"], env["data"], f'"{env["sha"]}"'
    conn = tls_connection(d)
    _, h, _ = get(conn, env["friendly"], method="HEAD")
    last_modified = h["last-modified"]
    status, h, body = get(conn, env["friendly"], {"If-None-Match": etag})
    assert status == 304 and body == b"" and h["etag"] == etag
    status, h, body = get(conn, env["friendly"], {"If-None-Match": f'"other", W/{etag}'})
    assert status == 304  # weak comparison
    status, h, body = get(conn, env["friendly"], {"If-None-Match": '"other"', "Range": "bytes=0-1"})
    assert status == 206 and body == data[:2]
    status, h, body = get(conn, env["friendly"], {"If-Match": '"nope"'})
    assert status == 412
    assert h["content-type"] == "application/problem+json"
    status, h, body = get(conn, env["friendly"], {"If-Match": etag, "Range": "bytes=2-3"})
    assert status == 206 and body == data[2:4]
    status, h, body = get(conn, env["friendly"], {"If-Modified-Since": last_modified})
    assert status == 304
    # If-Range: a matching ETag or exact date keeps the range; anything else gets the whole 200.
    for if_range, expected in [(etag, 206), (last_modified, 206), ('"stale"', 200), (f"W/{etag}", 200),
                               ("Mon, 01 Jan 2001 00:00:00 GMT", 200)]:
        status, h, body = get(conn, env["blob"], {"Range": "bytes=10-19", "If-Range": if_range})
        assert status == expected, if_range
        assert body == (data[10:20] if expected == 206 else data)
    conn.close()


def test_authorization_of_blob_urls(env):
    d, digest, secret = env["d"], env["sha"], env["secret"]
    assert d.request("GET", presign(secret, digest, int(time.time()) - 5))[0] == 403
    status, h, body = d.request("GET", presign(secret, digest, int(time.time()) - 5))
    assert b"url-expired" in body
    forged = env["blob"][:-3] + ("AAA" if not env["blob"].endswith("AAA") else "BBB")
    status, h, body = d.request("GET", forged, headers={"Range": "bytes=0-0"})
    assert status == 403 and b"url-invalid" in body
    other = "0" * 64
    assert d.request("GET", presign(secret, other, int(time.time()) + 60))[0] == 404
    # An operator token of any role; the open product makes the bare URL public too.
    viewer = d.create_token("viewer")
    status, h, body = d.request("GET", f"/api/v1/blobs/{digest}", token=viewer, headers={"Range": "bytes=0-9"})
    assert status == 206 and body == env["data"][:10]
    assert h["cache-control"] == "private, max-age=31536000, immutable"
    status, h, body = d.request("GET", f"/api/v1/blobs/{digest}", headers={"Range": "bytes=0-9"})
    assert status == 206 and h["cache-control"] == "public, max-age=31536000, immutable"
    assert d.request("GET", f"/api/v1/blobs/{'A' * 64}")[0] in (403, 404)
    status, _, body = d.request("GET", f"/firmware/{PRODUCT}/9.9.9/{FILENAME}")
    assert status == 404 and b"has no release" in body
    status, _, body = d.request("GET", f"/firmware/{PRODUCT}/{VERSION}/other.bin")
    assert status == 404


def test_keyed_product_needs_its_device_key(env):
    d = env["d"]
    data = random.Random(77).randbytes(70000)
    digest = upload(d, env["token"], "keyed", "2.0", "k.bin", data)
    key = "device-key-" + os.urandom(8).hex()
    db = sqlite3.connect(os.path.join(d.data_dir, "otad.db"), timeout=10)
    with db:
        pid = db.execute("SELECT id FROM products WHERE name = 'keyed'").fetchone()[0]
        db.execute("INSERT INTO device_keys (product_id, name, key_hash, created_at) VALUES (?, 'k1', ?, ?)",
                   (pid, hashlib.sha256(key.encode()).hexdigest(), int(time.time())))
    db.close()
    friendly = "/firmware/keyed/2.0/k.bin"
    assert d.request("GET", friendly)[0] == 401
    assert d.request("GET", "/firmware/keyed/9.9/k.bin")[0] == 401  # no hint that the release is missing
    assert d.request("GET", friendly, headers={"Authorization": "Bearer wrong"})[0] == 401
    for hdrs, path in [({"Authorization": f"Bearer {key}"}, friendly), ({"Authorization": f"token {key}"}, friendly),
                       ({}, f"{friendly}?key={key}")]:
        status, h, body = d.request("GET", path, headers=dict(hdrs, Range="bytes=1-4"))
        assert status == 206 and body == data[1:5]
        assert h["cache-control"] == "private, max-age=300"
    blob = f"/api/v1/blobs/{digest}"
    assert d.request("GET", blob)[0] == 401
    status, h, body = d.request("GET", blob, headers={"Authorization": f"Bearer {key}"})
    assert status == 200 and body == data
    assert d.request("GET", presign(env["secret"], digest, int(time.time()) + 60))[0] == 200


# --- byte-exact property tests ------------------------------------------------

def test_random_single_and_multi_ranges_are_byte_exact(env):
    d, data = env["d"], env["data"]
    rng = random.Random(1234)
    conn = tls_connection(d)
    sock = None
    for i in range(400):
        specs, wanted = [], []
        for _ in range(1 if i % 2 == 0 else rng.randint(2, 6)):
            kind = rng.random()
            if kind < 0.6:
                a = rng.randrange(SIZE)
                b = a + rng.randint(0, 70000) if rng.random() < 0.9 else SIZE + rng.randint(0, 10)
                specs.append(f"{a}-{b}")
                wanted.append((a, min(b, SIZE - 1)))
            elif kind < 0.8:
                a = rng.randrange(SIZE - 100000, SIZE)
                specs.append(f"{a}-")
                wanted.append((a, SIZE - 1))
            else:
                n = rng.randint(1, 100000)
                specs.append(f"-{n}")
                wanted.append((SIZE - n, SIZE - 1))
        status, h, body = get(conn, env["blob"], {"Range": "bytes=" + ",".join(specs)})
        assert status == 206, specs
        if h["content-type"].startswith("multipart/byteranges"):
            parts = parse_multipart(h["content-type"], body, SIZE)
            assert len(parts) >= 2
        else:
            m = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", h["content-range"])
            parts = [(int(m.group(1)), int(m.group(2)), body)]
            assert int(m.group(3)) == SIZE
        assert int(h["content-length"]) == len(body)
        for first, last, chunk in parts:
            assert chunk == data[first:last + 1], (specs, first, last)
        assert covered([(a, b) for a, b, _ in parts], SIZE) == covered(wanted, SIZE), specs
        if sock is None:
            sock = conn.sock
        assert conn.sock is sock  # one keep-alive connection throughout
    conn.close()


def test_curl_ranges_match(env):
    d, data = env["d"], env["data"]
    rng = random.Random(99)
    url = d.url(env["blob"])
    out = os.path.join(env["tmp"], "curl-range")
    for _ in range(15):
        a = rng.randrange(SIZE)
        b = min(SIZE - 1, a + rng.randint(0, 300000))
        proc = d.curl("-r", f"{a}-{b}", "-o", out, "-w", "%{http_code}", url, check=True)
        assert proc.stdout == b"206"
        assert open(out, "rb").read() == data[a:b + 1]
    proc = d.curl("-r", "0-9,100-109", "-D", "-", "-o", out, url, check=True)
    assert b"multipart/byteranges; boundary=" in proc.stdout
    ctype = re.search(rb"[Cc]ontent-[Tt]ype: (multipart/byteranges; boundary=\S+)", proc.stdout).group(1).decode()
    assert [(a, b, c) for a, b, c in parse_multipart(ctype, open(out, "rb").read(), SIZE)] == \
        [(0, 9, data[0:10]), (100, 109, data[100:110])]


# --- real clients: resume and segmented download ------------------------------------------

def test_curl_resumes_a_cut_transfer(env):
    d = env["d"]
    out = os.path.join(env["tmp"], "curl-resume")
    url = d.url(env["blob"])
    cut = d.curl("--limit-rate", "1M", "--max-time", "1", "-o", out, url)
    assert cut.returncode == 28  # timed out mid-transfer
    partial = os.path.getsize(out)
    assert 0 < partial < SIZE
    proc = d.curl("-C", "-", "-o", out, "-w", "%{http_code}", url, check=True)
    assert proc.stdout == b"206"
    assert sha(open(out, "rb").read()) == env["sha"]


def test_wget_resumes_a_cut_transfer(env):
    d = env["d"]
    out = os.path.join(env["tmp"], "wget-resume")
    url = d.url(env["friendly"])
    base = ["wget", "-q", f"--ca-certificate={d.cert_path}", "-O", out]
    proc = subprocess.Popen(base + ["--limit-rate=1m", url])
    try:
        wait_for(lambda: os.path.exists(out) and os.path.getsize(out) > 200000, timeout=20, what="wget progress")
    finally:
        proc.kill()
        proc.wait(10)
    partial = os.path.getsize(out)
    assert 0 < partial < SIZE
    subprocess.run(["wget", "-c", "-q", f"--ca-certificate={d.cert_path}", "-O", out, url], check=True, timeout=60)
    assert sha(open(out, "rb").read()) == env["sha"]


def test_aria2c_segmented_download(env):
    d = env["d"]
    out_dir = os.path.join(env["tmp"], "aria2")
    subprocess.run(["aria2c", "-q", "-x8", "-s8", "-k1M", f"--ca-certificate={d.cert_path}", "--allow-overwrite=true",
                    "--auto-file-renaming=false", "-d", out_dir, "-o", "fw.bin", d.url(env["friendly"])],
                   check=True, timeout=60, capture_output=True)
    assert sha(open(os.path.join(out_dir, "fw.bin"), "rb").read()) == env["sha"]
    # aria2c really split it: several range requests reached the server.
    ranged = [line for line in d.log().splitlines() if "GET" in line and env["friendly"] in line and "206" in line]
    assert len(ranged) >= 2


def test_openssl_sees_tls13(env):
    d = env["d"]
    proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{d.port}", "-CAfile", d.cert_path,
                           "-servername", "localhost", "-tls1_3"], input=b"", capture_output=True, timeout=30)
    assert b"TLSv1.3" in proc.stdout and b"Verify return code: 0 (ok)" in proc.stdout


# --- esp_https_ota partial download ------------------------------------------------

def esp_partial_download(d, path, start, chunk=4096):
    """HEAD, then `chunk`-sized ranges from `start` to the end over ONE keep-alive TLS connection, as
    esp_https_ota does; the last request asks one past the end (bytes=S-LEN). Returns the bytes."""
    conn = tls_connection(d)
    status, h, _ = get(conn, path, method="HEAD")
    assert status == 200
    total = int(h["content-length"])
    sock = conn.sock
    got = bytearray()
    pos = start
    while pos < total:
        end = pos + chunk - 1
        if end >= total - 1:
            end = total  # IDF's last request: bytes=S-LEN
        status, rh, body = get(conn, path, {"Range": f"bytes={pos}-{end}", "User-Agent": "ESP32 HTTP Client/1.0"})
        assert status == 206
        assert rh["content-range"] == f"bytes {pos}-{min(end, total - 1)}/{total}"
        assert rh["content-length"] == str(len(body))
        got += body
        pos += len(body)
    assert conn.sock is sock  # no reconnects
    status, rh, _ = get(conn, path, {"Range": f"bytes={total}-"})
    assert status == 416 and rh["content-range"] == f"bytes */{total}"
    conn.close()
    return bytes(got)


def test_esp_https_ota_partial_download_sequence(env):
    image = esp_partial_download(env["d"], env["friendly"], 0)
    assert sha(image) == env["sha"]


def test_esp_https_ota_resumed_sequence_from_random_offset(env):
    offset = random.Random(7).randrange(1, SIZE - 1)
    rest = esp_partial_download(env["d"], env["blob"], offset, chunk=16384)
    assert sha(env["data"][:offset] + rest) == env["sha"]


# --- HTTP versions, connection handling, plain HTTP ----------------------------------------

def raw_exchange(d, request, plain=False):
    """Sends raw request bytes and reads until the server closes. Returns everything received."""
    s = socket.create_connection(("127.0.0.1", d.http_port if plain else d.port), timeout=20)
    if not plain:
        s = d.ssl_context().wrap_socket(s, server_hostname="localhost")
    s.sendall(request)
    chunks = []
    while True:
        try:
            b = s.recv(1 << 16)
        except (ssl.SSLError, ConnectionResetError):
            break
        if not b:
            break
        chunks.append(b)
    s.close()
    return b"".join(chunks)


@pytest.mark.parametrize("plain", [False, True])
def test_http10_and_connection_close_are_served_then_closed(env, plain):
    d, data = env["d"], env["data"]
    out = raw_exchange(d, f"GET {env['friendly']} HTTP/1.0\r\nRange: bytes=0-99\r\n\r\n".encode(), plain)
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 206") and b"\r\nContent-Length: 100\r\n" in head + b"\r\n"
    assert body == data[:100]  # and the server closed the connection (recv returned EOF)
    out = raw_exchange(d, f"GET {env['friendly']} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode(), plain)
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"Connection: close" in head
    assert sha(body) == env["sha"]


def test_plain_http_listener_serves_the_same_bytes(env):
    d, data = env["d"], env["data"]
    conn = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=30)
    status, h, body = get(conn, env["friendly"])
    assert status == 200 and sha(body) == env["sha"] and h["content-length"] == str(SIZE)
    status, h, body = get(conn, env["blob"], {"Range": "bytes=4096-8191,-10"})
    parts = parse_multipart(h["content-type"], body, SIZE)
    assert [(a, b) for a, b, _ in parts] == [(4096, 8191), (SIZE - 10, SIZE - 1)]
    assert parts[0][2] == data[4096:8192] and parts[1][2] == data[-10:]
    conn.close()
    out = os.path.join(env["tmp"], "plain")
    proc = subprocess.run(["curl", "-sS", "-o", out, d.http_url(env["friendly"])], timeout=60)
    assert proc.returncode == 0 and sha(open(out, "rb").read()) == env["sha"]


def test_clients_vanishing_mid_transfer_do_not_hurt_the_server(env):
    """Devices drop off mid-download: on the plain listener the bytes go out with sendfile(2), which
    raises SIGPIPE on a reset connection; on TLS the writes fail. The daemon must shrug both off."""
    d = env["d"]
    tag = os.urandom(4).hex()
    for i, plain in enumerate([True] * 5 + [False] * 5):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the server stays mid-transfer
        s.connect(("127.0.0.1", d.http_port if plain else d.port))
        if not plain:
            s = d.ssl_context().wrap_socket(s, server_hostname="localhost")
        s.sendall(f"GET {env['friendly']}?vanish={tag}-{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST
        s.close()
    # Each cut response is logged once the server has noticed the reset.
    wait_for(lambda: d.proc.poll() is not None or d.log().count(f"vanish={tag}-") >= 10, timeout=20,
             what="the cut responses to be logged")
    assert d.proc.poll() is None, "otad died:\n" + d.log()[-2000:]
    assert d.request("GET", env["friendly"], headers={"Range": "bytes=0-0"}, plain=True)[0] == 206
    assert d.request("GET", env["friendly"], headers={"Range": "bytes=0-0"})[0] == 206


# --- admission control ----------------------------------------------------------

def start_stalled_download(d, path):
    """A TLS GET whose client reads almost nothing: the server's send blocks, holding a download slot."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no receive-window autotuning
    s.connect(("127.0.0.1", d.port))
    s = d.ssl_context().wrap_socket(s, server_hostname="localhost")
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert s.recv(1024).startswith(b"HTTP/1.1 200")
    return s


def test_admission_control_503_retry_after_then_recovery():
    d = Otad(env={"OTAD_MAX_CONCURRENT_DOWNLOADS": "2", "OTAD_RETRY_AFTER_S": "4",
                  "OTAD_SEND_TIMEOUT_MS": "2000"}).start()
    try:
        token = d.create_token("admin")
        data = random.Random(3).randbytes(24 * 1024 * 1024)  # far more than the socket buffers hold
        upload(d, token, "adm", "1.0", "big.bin", data)
        path = "/firmware/adm/1.0/big.bin"
        # Two stalled downloads fill the slots; the third GET is refused at once.
        held = [start_stalled_download(d, path), start_stalled_download(d, path)]
        status, h, body = d.request("GET", path, headers={"Range": "bytes=0-9"})
        assert status == 503
        assert 4 <= int(h["retry-after"]) <= 8  # retry_after_s plus jitter
        assert h["content-type"] == "application/problem+json"
        assert d.request("HEAD", path)[0] == 200  # HEAD takes no slot
        # Nobody reads: the per-write send deadline (2 s) frees the slots without the clients' help.
        wait_for(lambda: d.request("GET", path, headers={"Range": "bytes=0-9"})[0] == 206, timeout=15,
                 what="the stalled downloads to time out")
        for s in held:
            s.close()
        # Full again; then one holder reads to the end and leaves: its slot comes back.
        held = [start_stalled_download(d, path), start_stalled_download(d, path)]
        assert d.request("GET", path, headers={"Range": "bytes=0-9"})[0] == 503
        reader = held.pop()
        reader.setblocking(True)
        received = 0
        while received < len(data):
            b = reader.recv(1 << 20)
            if not b:
                break
            received += len(b)
        assert received >= len(data)
        wait_for(lambda: d.request("GET", path, headers={"Range": "bytes=0-9"})[0] == 206, timeout=5,
                 what="the finished download's slot")
        for s in held + [reader]:
            s.close()
    finally:
        d.cleanup()
