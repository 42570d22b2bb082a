"""Compatibility front-ends against the real daemon, driven by a device simulator
that replays each client's request byte by byte over raw sockets and reads the
reply the way the client's own code does (docs/compat.md has the sources):

* Arduino ESP8266httpUpdate (esp8266/Arduino) and arduino-esp32 HTTPUpdate:
  GET /api/v1/arduino/{product}, HTTP/1.0, Connection: close, x-ESP8266-* / x-ESP32-*.
* ESP8266 NONOS libupgrade: HEAD then GET /v1/device/rom/?action=download_rom...
  with `Authorization: token KEY`, HTTP/1.0 and 1.1, over the plain listener;
  the AT build's ?is_format_simple=true; the AT custom-server build's /user2.bin.
"""
import hashlib
import json
import os
import re
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import time
import zlib

import pytest

from otad_harness import Otad, tool, wait_for

ESP8266_MAC = "18:FE:34:A2:B3:C4"
ESP32_MAC = "24:0A:C4:00:11:22"
NONOS_UA = ("Mozilla/5.0 (Windows NT 5.1) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/30.0.1599.101 Safari/537.36 ")  # libupgrade's User-Agent ends with a space


# ---------------------------------------------------------------- images and catalogue

def make_image(directory, name, *args):
    path = os.path.join(directory, name)
    subprocess.run([tool("make_esp_image"), "--out", path] + list(args), check=True, capture_output=True, timeout=60)
    with open(path, "rb") as f:
        return f.read()


def upload(d, token, product, version, data, query):
    status, _, body = d.request("POST", f"/api/v1/products/{product}/releases/{version}/artifacts?{query}",
                                body=data, headers={"Content-Type": "application/octet-stream"}, token=token)
    assert status == 201 or status == 200, (status, body[:500])
    return json.loads(body)


def set_channel(d, token, product, channel, version):
    status, _, body = d.json("PUT", f"/api/v1/products/{product}/channels/{channel}", body={"version": version},
                             token=token)
    assert status in (200, 201), (status, body)


def create_device_key(d, token, product):
    """Through the device-key API when it exists; otherwise straight into the daemon's database
    (the table stores the SHA-256 of the secret, like the repository does)."""
    status, _, body = d.json("POST", f"/api/v1/products/{product}/device-keys", body={"name": "fleet"}, token=token)
    if status in (200, 201) and isinstance(body, dict):
        for field in ("key", "secret", "token"):
            if isinstance(body.get(field), str) and body[field]:
                return body[field]
    secret = os.urandom(20).hex()  # 40 characters, like Espressif's device keys
    db = sqlite3.connect(os.path.join(d.data_dir, "otad.db"), timeout=10)
    try:
        (product_id,) = db.execute("SELECT id FROM products WHERE name = ?", (product,)).fetchone()
        db.execute("INSERT INTO device_keys (product_id, name, key_hash, created_at) VALUES (?, ?, ?, ?)",
                   (product_id, "fleet", hashlib.sha256(secret.encode()).hexdigest(), int(time.time())))
        db.commit()
    finally:
        db.close()
    return secret


class Catalogue:
    pass


@pytest.fixture(scope="module")
def env():
    d = Otad(http_listener=True).start()
    work = tempfile.mkdtemp(prefix="otad-compat-")
    c = Catalogue()
    c.d = d
    token = d.create_token("admin")

    # Arduino ESP8266: a sketch bin (eboot + sketch) and a SPIFFS image (generic, named spiffs.bin).
    c.e8266 = make_image(work, "e8266.bin", "--kind", "esp8266-arduino", "--size", "300K", "--seed", "1")
    c.spiffs = os.urandom(200_000)
    upload(d, token, "ardu8266", "1.1.0", c.e8266, "chip=esp8266&layout=single")
    upload(d, token, "ardu8266", "1.1.0", c.spiffs, "chip=generic&filename=spiffs.bin")
    set_channel(d, token, "ardu8266", "stable", "1.1.0")

    # Arduino ESP32: an app image (SHA-256 appended) and a LittleFS image; device key required.
    c.e32 = make_image(work, "e32.bin", "--kind", "esp32", "--chip", "esp32", "--version", "2.0.0",
                       "--project", "ardu32", "--size", "400K", "--seed", "2")
    info = upload(d, token, "ardu32", "2.0.0", c.e32, "chip=esp32")
    c.e32_appended_sha256 = info["image"]["appended_sha256"]
    assert re.fullmatch(r"[0-9a-f]{64}", c.e32_appended_sha256)
    c.littlefs = os.urandom(150_000)
    upload(d, token, "ardu32", "2.0.0", c.littlefs, "chip=generic&filename=littlefs.bin")
    set_channel(d, token, "ardu32", "stable", "2.0.0")
    c.e32_key = create_device_key(d, token, "ardu32")

    # NONOS 512+512: user1 and user2 builds (linked differently) per release; a device key.
    c.nonos = {}
    for version, seed in (("1.0.5", 10), ("v1.0.6t45772(a)", 20)):
        for slot in ("user1", "user2"):
            data = make_image(work, f"{slot}-{seed}.bin", "--kind", "esp8266-v2", "--slot", slot,
                              "--flash-map", "2", "--seed", str(seed))
            upload(d, token, "nonos", version, data, f"chip=esp8266&layout=512%2B512&slot={slot}")
            c.nonos[(version, slot)] = data
    c.nonos_user1_only = make_image(work, "old-user1.bin", "--kind", "esp8266-v2", "--slot", "user1",
                                    "--flash-map", "2", "--seed", "30")
    upload(d, token, "nonos", "1.0.4", c.nonos_user1_only, "chip=esp8266&layout=512%2B512&slot=user1")
    set_channel(d, token, "nonos", "stable", "1.0.5")
    c.nonos_key = create_device_key(d, token, "nonos")
    yield c
    d.cleanup()


# ---------------------------------------------------------------- the device simulator

class Reply:
    def __init__(self, first_read, head, body, closed):
        self.first_read = first_read  # what the device's first recv() got
        self.head = head              # the header block, bytes
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split(" ")[1])
        self.headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                self.headers[name.strip().lower()] = value.strip()
        self.body = body
        self.closed = closed          # the server closed the connection after the reply

    def header(self, name):
        return self.headers.get(name.lower())


def connect(d, tls=False):
    sock = socket.create_connection(("127.0.0.1", d.port if tls else d.http_port), timeout=15)
    if tls:
        ctx = ssl.create_default_context(cafile=d.cert_path)
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    return sock


def exchange(sock, request, head_request=False):
    """Writes the request in one piece, like the clients' single write(), and reads one reply:
    the header block, then exactly Content-Length body bytes (what every one of these clients
    does: none of them understands chunked encoding)."""
    sock.sendall(request)
    first = sock.recv(1460)  # libupgrade / the RTOS twin parse their first read (one TCP segment)
    buf = first
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed inside the header block: {buf!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    reply = Reply(first, head, b"", False)
    assert reply.header("Transfer-Encoding") is None
    if head_request or reply.status in (204, 304) or reply.status < 200:
        body_len = 0
    else:
        assert reply.header("Content-Length") is not None, reply.head
        body_len = int(reply.header("Content-Length"))
    body = rest
    while len(body) < body_len:
        chunk = sock.recv(min(65536, body_len - len(body)))
        assert chunk, f"connection closed after {len(body)} of {body_len} body bytes"
        body += chunk
    assert len(body) == body_len, f"{len(body) - body_len} bytes beyond Content-Length"
    reply.body = body
    if (reply.header("Connection") or "").lower() == "close":
        sock.settimeout(5)
        reply.closed = sock.recv(1) == b""
    return reply


def arduino_esp8266_request(d, path, mode="sketch", version="1.0.0", free_space=700416):
    """ESP8266httpUpdate::handleUpdate + HTTPClient::sendHeader (core 3.x, useHTTP10(true))."""
    lines = [f"GET {path} HTTP/1.0",
             f"Host: 127.0.0.1:{d.http_port}",
             "User-Agent: ESP8266-http-Update",
             "Connection: close",
             "x-ESP8266-Chip-ID: 10658426",
             f"x-ESP8266-STA-MAC: {ESP8266_MAC}",
             "x-ESP8266-AP-MAC: 1A:FE:34:A2:B3:C4",
             f"x-ESP8266-free-space: {free_space}",
             "x-ESP8266-sketch-size: 346592",
             "x-ESP8266-sketch-md5: 0f343b0931126a20f133d67c2b018a3b",
             "x-ESP8266-chip-size: 4194304",
             "x-ESP8266-sdk-version: 2.2.2-dev(38a443e)",
             f"x-ESP8266-mode: {mode}"]
    if version:
        lines.append(f"x-ESP8266-version: {version}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def arduino_esp32_request(d, path, mode="sketch", version="1.0.0", free_space=1310720, sketch_sha256=None, tls=False):
    """arduino-esp32 HTTPUpdate::handleUpdate + HTTPClient::sendHeader (useHTTP10(true))."""
    sha = sketch_sha256 or ("A1" * 32)
    port = d.port if tls else d.http_port
    lines = [f"GET {path} HTTP/1.0",
             f"Host: 127.0.0.1:{port}",
             "User-Agent: ESP32-http-Update",
             "Connection: close",
             "Cache-Control: no-cache",
             f"x-ESP32-STA-MAC: {ESP32_MAC}",
             "x-ESP32-AP-MAC: 24:0A:C4:00:11:23",
             f"x-ESP32-free-space: {free_space}",
             "x-ESP32-sketch-size: 912368",
             "x-ESP32-sketch-md5: 5d41402abc4b2a76b9719d911017c592",
             f"x-ESP32-sketch-sha256: {sha}",
             "x-ESP32-chip-size: 4194304",
             "x-ESP32-sdk-version: v4.4.5",
             f"x-ESP32-mode: {mode}"]
    if version:
        lines.append(f"x-ESP32-version: {version}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def arduino_run(d, request, free_space, tls=False):
    """What handleUpdate does with the reply; returns (result, reply, bytes it would flash)."""
    with connect(d, tls) as sock:
        reply = exchange(sock, request)
    assert reply.closed, "HTTP/1.0 + Connection: close: the server must close"
    if reply.status == 304:
        return "HTTP_UPDATE_NO_UPDATES", reply, None
    if reply.status != 200:
        return {403: "HTTP_UE_SERVER_FORBIDDEN", 404: "HTTP_UE_SERVER_FILE_NOT_FOUND"}.get(
            reply.status, "HTTP_UE_SERVER_WRONG_HTTP_CODE"), reply, None
    length = int(reply.header("Content-Length"))
    assert length > 0, "HTTP_UE_SERVER_NOT_REPORT_SIZE"
    assert length <= free_space, "HTTP_UE_TOO_LESS_SPACE"
    md5 = reply.header("x-MD5")
    if md5 is not None:
        assert len(md5) == 32, "HTTP_UE_SERVER_FAULTY_MD5"
        assert hashlib.md5(reply.body).hexdigest() == md5.lower(), "Update.end(): MD5 mismatch"
    return "HTTP_UPDATE_OK", reply, reply.body


def nonos_request(d, method, query, http_version="1.0", key=None, connection="keep-alive", path="/v1/device/rom/",
                  tls=False):
    """The request text an ESP8266 NONOS application builds for libupgrade (Espressif's cloud form)."""
    port = d.port if tls else d.http_port
    lines = [f"{method} {path}{query} HTTP/{http_version}",
             f"Host: 127.0.0.1:{port}",
             f"Connection: {connection}",
             "Cache-Control: no-cache",
             f"User-Agent: {NONOS_UA}",
             "Accept: */*"]
    if key is not None:
        lines.append(f"Authorization: token {key}")
    lines += ["Accept-Encoding: gzip,deflate,sdch", "Accept-Language: zh-CN,zh;q=0.8"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def esp8266_v2_crc_ok(image):
    """libupgrade's upgrade_crc_check: CRC-32 of sumlength-4 bytes, stored as |c|+1 / |c|-1 (gen_appbin)."""
    c = zlib.crc32(image[:-4])
    stored = c + 1 if c < 0x80000000 else c ^ 0xFFFFFFFF
    return stored == int.from_bytes(image[-4:], "little")


def assert_length_in_first_segment(reply, length):
    text = f"Content-Length: {length}\r\n".encode()
    assert text in reply.first_read[:1024], reply.first_read[:1024]
    assert b"\r\n\r\n" in reply.first_read, "header block not in the first read"
    assert b"200 OK" in reply.first_read


def nonos_upgrade(d, query, http_version, key, tls=False):
    """libupgrade: HEAD (its copy of the request with Connection: close) to learn the size and
    erase, then GET on a new connection; returns the bytes it writes to flash."""
    with connect(d, tls) as sock:
        head = exchange(sock, nonos_request(d, "HEAD", query, http_version, key, "close", tls=tls), head_request=True)
    assert head.status == 200, (head.status_line, head.body)
    sumlength = int(head.header("Content-Length"))
    assert_length_in_first_segment(head, sumlength)
    assert head.body == b""
    with connect(d, tls) as sock:
        get = exchange(sock, nonos_request(d, "GET", query, http_version, key, tls=tls))
        assert get.status == 200, (get.status_line, get.body[:300])
        assert_length_in_first_segment(get, sumlength)
        assert get.header("Content-Encoding") is None, "firmware must never be compressed"
        assert get.header("Content-Type") == "application/octet-stream"
        assert len(get.body) == sumlength
        assert get.body[:1] == b"\xea", "please check the bin file"
        assert esp8266_v2_crc_ok(get.body), "upgrade_crc_check failed"
        if http_version == "1.0":
            # HTTP/1.0 with Connection: keep-alive: answered keep-alive, and the connection serves on.
            assert (get.header("Connection") or "").lower() == "keep-alive"
            again = exchange(sock, nonos_request(d, "HEAD", query, http_version, key), head_request=True)
            assert again.status == 200 and int(again.header("Content-Length")) == sumlength
    return get.body


# ---------------------------------------------------------------- Arduino ESP8266

def test_esp8266_sketch_update_flashes_the_uploaded_image_with_exact_length_and_md5(env):
    d = env.d
    result, reply, flashed = arduino_run(d, arduino_esp8266_request(d, "/api/v1/arduino/ardu8266"), 700416)
    assert result == "HTTP_UPDATE_OK"
    assert flashed == env.e8266
    assert flashed[0] == 0xE9  # what the client peeks before Update.begin
    assert reply.header("x-MD5") == hashlib.md5(env.e8266).hexdigest()
    assert reply.header("Content-Length") == str(len(env.e8266))
    assert reply.header("x-version") == "1.1.0"
    assert reply.header("Content-Encoding") is None
    assert b"Content-Length: %d\r\n" % len(env.e8266) in reply.first_read[:1024]


@pytest.mark.parametrize("reported", ["1.1.0", "v1.1.0", "1.2.0", ""])
def test_esp8266_current_newer_or_unreported_version_is_304(env, reported):
    d = env.d
    result, reply, _ = arduino_run(d, arduino_esp8266_request(d, "/api/v1/arduino/ardu8266", version=reported), 700416)
    assert result == "HTTP_UPDATE_NO_UPDATES"
    assert reply.status_line == "HTTP/1.1 304 Not Modified"
    assert reply.body == b"" and reply.header("Content-Length") is None


def test_esp8266_image_larger_than_free_space_is_403(env):
    d = env.d
    free = len(env.e8266) - 1
    result, reply, _ = arduino_run(d, arduino_esp8266_request(d, "/api/v1/arduino/ardu8266", free_space=free), free)
    assert result == "HTTP_UE_SERVER_FORBIDDEN"
    problem = json.loads(reply.body)
    assert problem["type"].endswith("/too-large")
    assert problem["detail"] == (f"the esp8266 image of release 1.1.0 is {len(env.e8266)} bytes; "
                                 f"the device reports {free} bytes of free sketch space")
    # Exactly the image size fits (the client refuses only len > free space).
    result, _, flashed = arduino_run(d, arduino_esp8266_request(d, "/api/v1/arduino/ardu8266",
                                                               free_space=len(env.e8266)), len(env.e8266))
    assert result == "HTTP_UPDATE_OK" and flashed == env.e8266


def test_esp8266_spiffs_mode_gets_the_filesystem_image(env):
    d = env.d
    result, reply, flashed = arduino_run(d, arduino_esp8266_request(d, "/api/v1/arduino/ardu8266", mode="spiffs"),
                                         10**9)
    assert result == "HTTP_UPDATE_OK"
    assert flashed == env.spiffs
    assert reply.header("x-MD5") == hashlib.md5(env.spiffs).hexdigest()


def test_arduino_check_records_the_device_by_sta_mac(env):
    d = env.d
    result, _, _ = arduino_run(d, arduino_esp8266_request(d, "/api/v1/arduino/ardu8266", version="1.0.7"), 700416)
    assert result == "HTTP_UPDATE_OK"

    def recorded():
        db = sqlite3.connect(os.path.join(d.data_dir, "otad.db"), timeout=10)
        try:
            return db.execute("SELECT d.id, p.name, d.chip, d.version, d.channel, d.offered_version FROM devices d "
                              "JOIN products p ON p.id = d.product_id WHERE d.id = ? AND d.version = ?",
                              ("18:fe:34:a2:b3:c4", "1.0.7")).fetchone()
        finally:
            db.close()

    # Sightings may be batched by the device registry (flushed about every second).
    row = wait_for(recorded, timeout=15, what="the Arduino device's sighting")
    assert row == ("18:fe:34:a2:b3:c4", "ardu8266", "esp8266", "1.0.7", "stable", "1.1.0")


def test_request_without_updater_headers_is_400(env):
    d = env.d
    with connect(d) as sock:
        reply = exchange(sock, f"GET /api/v1/arduino/ardu8266 HTTP/1.0\r\nHost: 127.0.0.1:{d.http_port}\r\n"
                               "User-Agent: ESP8266-http-Update\r\nConnection: close\r\n\r\n".encode())
    assert reply.status == 400
    assert "no x-ESP8266-* or x-ESP32-* headers" in json.loads(reply.body)["detail"]
    with connect(d) as sock:
        reply = exchange(sock, f"GET /api/v1/arduino/ardu8266 HTTP/1.0\r\nHost: x\r\nx-ESP8266-mode: sketch\r\n"
                               "Connection: close\r\n\r\n".encode())
    assert reply.status == 400
    assert json.loads(reply.body)["detail"] == "missing header x-ESP8266-free-space"


def test_unknown_product_or_channel_is_404(env):
    d = env.d
    for path in ("/api/v1/arduino/nope", "/api/v1/arduino/ardu8266?channel=beta"):
        result, reply, _ = arduino_run(d, arduino_esp8266_request(d, path), 700416)
        assert result == "HTTP_UE_SERVER_FILE_NOT_FOUND", reply.body


# ---------------------------------------------------------------- Arduino ESP32

@pytest.mark.parametrize("tls", [False, True])
def test_esp32_update_with_key_gets_image_md5_and_sha256(env, tls):
    d = env.d
    path = f"/api/v1/arduino/ardu32?key={env.e32_key}"
    result, reply, flashed = arduino_run(d, arduino_esp32_request(d, path, tls=tls), 1310720, tls=tls)
    assert result == "HTTP_UPDATE_OK"
    assert flashed == env.e32
    assert reply.header("x-MD5") == hashlib.md5(env.e32).hexdigest()
    assert reply.header("x-SHA256") == hashlib.sha256(env.e32).hexdigest()
    assert reply.header("Content-Length") == str(len(env.e32))


def test_esp32_without_or_with_a_wrong_key_is_401(env):
    d = env.d
    for path in ("/api/v1/arduino/ardu32", "/api/v1/arduino/ardu32?key=" + "0" * 40):
        with connect(d) as sock:
            reply = exchange(sock, arduino_esp32_request(d, path))
        assert reply.status == 401, reply.body
        assert json.loads(reply.body)["type"].endswith("/device-key-required")


def test_esp32_304_when_current_or_when_the_running_image_is_the_release(env):
    d = env.d
    path = f"/api/v1/arduino/ardu32?key={env.e32_key}"
    result, _, _ = arduino_run(d, arduino_esp32_request(d, path, version="2.0.0"), 1310720)
    assert result == "HTTP_UPDATE_NO_UPDATES"
    # No version passed to the updater: x-ESP32-sketch-sha256 (the running image's appended
    # hash, upper-case hex) identifies the image.
    same = env.e32_appended_sha256.upper()
    result, _, _ = arduino_run(d, arduino_esp32_request(d, path, version="", sketch_sha256=same), 1310720)
    assert result == "HTTP_UPDATE_NO_UPDATES"
    result, _, flashed = arduino_run(d, arduino_esp32_request(d, path, version="", sketch_sha256="C3" * 32), 1310720)
    assert result == "HTTP_UPDATE_OK" and flashed == env.e32


def test_esp32_too_big_403_and_spiffs_mode(env):
    d = env.d
    path = f"/api/v1/arduino/ardu32?key={env.e32_key}"
    result, reply, _ = arduino_run(d, arduino_esp32_request(d, path, free_space=1000), 1000)
    assert result == "HTTP_UE_SERVER_FORBIDDEN"
    assert json.loads(reply.body)["type"].endswith("/too-large")
    result, reply, flashed = arduino_run(d, arduino_esp32_request(d, path, mode="spiffs"), 10**9)
    assert result == "HTTP_UPDATE_OK" and flashed == env.littlefs
    # ?chip= must be a chip of the family the headers name.
    with connect(d) as sock:
        reply = exchange(sock, arduino_esp32_request(d, path + "&chip=esp8266"))
    assert reply.status == 400


def test_mode_without_artifact_is_403(env, tmp_path):
    d = env.d
    token = d.create_token("admin")
    image = make_image(str(tmp_path), "only-sketch.bin", "--kind", "esp8266-arduino", "--size", "64K", "--seed", "5")
    upload(d, token, "sketch-only", "1.0.0", image, "chip=esp8266&layout=single")
    set_channel(d, token, "sketch-only", "stable", "1.0.0")
    result, reply, _ = arduino_run(d, arduino_esp8266_request(d, "/api/v1/arduino/sketch-only", mode="spiffs",
                                                              version="0.9.0"), 10**9)
    assert result == "HTTP_UE_SERVER_FORBIDDEN"
    assert json.loads(reply.body)["type"].endswith("/no-artifact")


# ---------------------------------------------------------------- ESP8266 NONOS

@pytest.mark.parametrize("http_version", ["1.0", "1.1"])
@pytest.mark.parametrize("slot", ["user1", "user2"])
def test_nonos_head_then_get_flashes_the_named_slots_build(env, http_version, slot):
    d = env.d
    assert env.nonos[("1.0.5", "user1")] != env.nonos[("1.0.5", "user2")]  # 512+512: two links
    flashed = nonos_upgrade(d, f"?action=download_rom&version=1.0.5&filename={slot}.bin", http_version,
                            env.nonos_key)
    assert flashed == env.nonos[("1.0.5", slot)]


def test_nonos_without_version_gets_the_channels_release_and_iot_demo_versions_work(env):
    d = env.d
    flashed = nonos_upgrade(d, "?action=download_rom&filename=user2.bin", "1.1", env.nonos_key)
    assert flashed == env.nonos[("1.0.5", "user2")]
    # IoT_Demo version strings go into the query unescaped, parentheses included.
    flashed = nonos_upgrade(d, "?action=download_rom&version=v1.0.6t45772(a)&filename=user1.bin", "1.0",
                            env.nonos_key)
    assert flashed == env.nonos[("v1.0.6t45772(a)", "user1")]


def test_nonos_over_tls_too(env):
    flashed = nonos_upgrade(env.d, "?action=download_rom&version=1.0.5&filename=user1.bin", "1.1", env.nonos_key,
                            tls=True)
    assert flashed == env.nonos[("1.0.5", "user1")]


def test_nonos_missing_slot_build_or_version_is_404_never_the_other_link(env):
    d = env.d
    for query in ("?action=download_rom&version=1.0.4&filename=user2.bin",
                  "?action=download_rom&version=9.9.9&filename=user1.bin"):
        for method in ("HEAD", "GET"):
            with connect(d) as sock:
                reply = exchange(sock, nonos_request(d, method, query, "1.1", env.nonos_key, "close"),
                                 head_request=method == "HEAD")
            assert reply.status == 404, (query, reply.status_line)
    with connect(d) as sock:
        reply = exchange(sock, nonos_request(d, "GET", "?action=download_rom&version=1.0.4&filename=user2.bin",
                                             "1.1", env.nonos_key, "close"))
    assert "has no user2 build for esp8266 512+512" in json.loads(reply.body)["detail"]
    # The build that exists is served.
    flashed = nonos_upgrade(d, "?action=download_rom&version=1.0.4&filename=user1.bin", "1.0", env.nonos_key)
    assert flashed == env.nonos_user1_only


def test_nonos_device_key_enforced(env):
    d = env.d
    query = "?action=download_rom&version=1.0.5&filename=user2.bin"
    for key, q in ((None, query + "&product=nonos"), ("f" * 40, query), ("f" * 40, query + "&product=nonos")):
        with connect(d) as sock:
            reply = exchange(sock, nonos_request(d, "GET", q, "1.0", key, "close"))
        assert reply.status == 401, (key, q, reply.status_line)


def test_nonos_at_rom_version_query(env):
    """AT firmware: GET /v1/device/rom/?is_format_simple=true HTTP/1.0, one read of at most 1 KB,
    then the value between `rom_version": "` and the next `",` (esp-at at_ota_cmd.c)."""
    d = env.d
    with connect(d) as sock:
        sock.sendall(nonos_request(d, "GET", "?is_format_simple=true", "1.0", env.nonos_key))
        first = sock.recv(1024)
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"recommended_rom_version": "1.0.5"' in first
    start = first.index(b'rom_version": ') + len(b'rom_version": "')
    assert first[start:first.index(b'",', start)] == b"1.0.5"


def test_nonos_at_custom_build_on_an_open_single_product_server(tmp_path):
    """AT_CUSTOM_UPGRADE: ?is_format_simple=true without a key, then GET /user2.bin HTTP/1.1."""
    d = Otad(http_listener=True).start()
    try:
        token = d.create_token("admin")
        images = {}
        for slot in ("user1", "user2"):
            images[slot] = make_image(str(tmp_path), f"{slot}.bin", "--kind", "esp8266-v2", "--slot", slot,
                                      "--flash-map", "2", "--seed", "40")
            upload(d, token, "at", "2.0", images[slot], f"chip=esp8266&layout=512%2B512&slot={slot}")
        set_channel(d, token, "at", "stable", "2.0")
        with connect(d) as sock:
            sock.sendall(f"GET /v1/device/rom/?is_format_simple=true HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                         "Connection: keep-alive\r\nAccept-Encoding: gzip,deflate\r\n\r\n".encode())
            assert b'"recommended_rom_version": "2.0"' in sock.recv(1024)
        for method in ("HEAD", "GET"):
            with connect(d) as sock:
                reply = exchange(sock, f"{method} /user2.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                       f"Connection: {'close' if method == 'HEAD' else 'keep-alive'}\r\n"
                                       "Accept: */*\r\nAccept-Encoding: gzip,deflate\r\n\r\n".encode(),
                                 head_request=method == "HEAD")
            assert reply.status == 200
            assert_length_in_first_segment(reply, len(images["user2"]))
        assert reply.body == images["user2"]
    finally:
        d.cleanup()
