"""ESP-IDF esp_https_ota replayed against the real daemon: the manifest's `url` is used as the
client's `url`, unchanged (docs/protocols.md#esp-https-ota; esp-idf components/esp_https_ota/src/esp_https_ota.c):

* plain download: one GET, body read to Content-Length;
* partial download (partial_http_download + max_http_request_size = 4 KiB): a HEAD that must be
  200 and gives the size by Content-Length, then `Range: bytes=S-E` GETs of 4 KiB. Two shapes:
  - IDF 5.3 as written in esp_https_ota_begin/_perform (verified in esp-idf v5.3.1
    components/esp_https_ota/src/esp_https_ota.c): a new connection per range
    (esp_http_client_close between them) and an open tail `bytes=S-`;
  - newer IDF: ONE keep-alive TLS connection, the last request ending one past the end
    (`bytes=S-LEN`, which the server clamps);
* OTA resumption: `Range: bytes=N-` continues, a start at the end is 416.

The bytes the device would flash must equal the uploaded artifact, byte for byte, and match the
manifest's size and sha256."""
import hashlib
import http.client
import json
import re

import pytest

from device_helpers import esp32_image, esp32_poll, set_channel, upload
from otad_harness import Otad

CHUNK = 4096
SIZE = 300_001  # minimum; the generator pads to its segment alignment


@pytest.fixture(scope="module")
def env():
    d = Otad().start()
    try:
        admin = d.create_token("admin")
        image = esp32_image("2.0.0", size=SIZE, seed=7)
        upload(d, admin, "idf", "2.0.0", image, "esp32", "ota")
        set_channel(d, admin, "idf", "stable", "2.0.0")
        status, headers, body = esp32_poll(d, product="idf", version="1.0.0", device="idf-1")
        assert status == 200, body
        manifest = json.loads(body)
        yield {"d": d, "image": image, "manifest": manifest}
    finally:
        d.cleanup()


def url_target(d, url):
    """The request-target esp_http_client sends for `url` (path and query, unchanged)."""
    prefix = d.url()
    assert url.startswith(prefix), url
    target = url[len(prefix):]
    assert re.fullmatch(r"/api/v1/blobs/[0-9a-f]{64}\?expires=\d+&sig=[A-Za-z0-9_-]+", target), target
    return target


def test_manifest_describes_the_image(env):
    m, image = env["manifest"], env["image"]
    assert m["size"] == len(image) >= SIZE
    assert len(image) % CHUNK != 0  # the last range is a short one
    assert m["sha256"] == hashlib.sha256(image).hexdigest()
    assert m["slot"] == "ota_1" and m["app"]["version"] == "2.0.0"


def test_plain_download_to_content_length(env):
    d, m = env["d"], env["manifest"]
    conn = http.client.HTTPSConnection("127.0.0.1", d.port, timeout=30, context=d.ssl_context())
    try:
        conn.request("GET", url_target(d, m["url"]), headers={"User-Agent": "ESP32 HTTP Client/1.0"})
        resp = conn.getresponse()
        assert resp.status == 200
        assert int(resp.getheader("Content-Length")) == m["size"]
        assert resp.getheader("Transfer-Encoding") is None and resp.getheader("Content-Encoding") is None
        flashed = resp.read()
    finally:
        conn.close()
    assert flashed == env["image"]
    assert hashlib.sha256(flashed).hexdigest() == m["sha256"]


def test_plain_download_with_curl(env, tmp_path):
    d, m = env["d"], env["manifest"]
    out = tmp_path / "fw.bin"
    proc = d.curl("-o", str(out), "-w", "%{http_code} %{size_download}", m["url"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == f"200 {len(env['image'])}"
    assert out.read_bytes() == env["image"]


def test_partial_download_head_then_4k_ranges_on_one_keep_alive_connection(env):
    d, m = env["d"], env["manifest"]
    target = url_target(d, m["url"])
    conn = http.client.HTTPSConnection("127.0.0.1", d.port, timeout=30, context=d.ssl_context())
    try:
        conn.request("HEAD", target)
        head = conn.getresponse()
        head.read()
        assert head.status == 200
        total = int(head.getheader("Content-Length"))
        assert total == m["size"]
        sock = conn.sock
        assert sock is not None  # kept open after the HEAD

        flashed = bytearray()
        requests = 0
        start = 0
        while start < total:
            # esp_https_ota: bytes=S-(S+size-1); the last request as resumption sends it, one past the end.
            end = start + CHUNK - 1
            if end >= total - 1:
                end = total
            conn.request("GET", target, headers={"Range": f"bytes={start}-{end}"})
            resp = conn.getresponse()
            data = resp.read()
            requests += 1
            assert resp.status == 206, (start, end, resp.status)
            last = min(end, total - 1)
            assert resp.getheader("Content-Range") == f"bytes {start}-{last}/{total}"
            assert int(resp.getheader("Content-Length")) == last - start + 1 == len(data)
            assert conn.sock is sock, "the TLS connection was not kept alive"
            flashed += data
            start = last + 1
        assert requests == (total + CHUNK - 1) // CHUNK
    finally:
        conn.close()
    assert bytes(flashed) == env["image"]
    assert hashlib.sha256(flashed).hexdigest() == m["sha256"]


def test_partial_download_as_idf_5_3_does_it(env):
    d, m, image = env["d"], env["manifest"], env["image"]
    target = url_target(d, m["url"])

    def fresh():
        return http.client.HTTPSConnection("127.0.0.1", d.port, timeout=30, context=d.ssl_context())

    conn = fresh()
    conn.request("HEAD", target)
    head = conn.getresponse()
    head.read()
    conn.close()
    assert head.status == 200
    image_length = int(head.getheader("Content-Length"))
    flashed = bytearray()
    while len(flashed) < image_length:
        start = len(flashed)
        if image_length - start > CHUNK:
            value = f"bytes={start}-{start + CHUNK - 1}"
        else:
            value = f"bytes={start}-"
        conn = fresh()
        conn.request("GET", target, headers={"Range": value})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        assert resp.status == 206, (value, resp.status)
        assert int(resp.getheader("Content-Length")) == len(data) > 0
        assert resp.getheader("Content-Range") == f"bytes {start}-{start + len(data) - 1}/{image_length}"
        flashed += data
    assert bytes(flashed) == image


def test_resumption_continues_from_an_offset_and_416_at_the_end(env):
    d, m, image = env["d"], env["manifest"], env["image"]
    size = len(image)
    target = url_target(d, m["url"])
    resume_at = 123_457
    status, headers, data = d.request("GET", target, headers={"Range": f"bytes={resume_at}-"})
    assert status == 206
    assert headers["content-range"] == f"bytes {resume_at}-{size - 1}/{size}"
    assert image[:resume_at] + data == image
    status, headers, _ = d.request("GET", target, headers={"Range": f"bytes={size}-"})
    assert status == 416
    # A small first range, like esp_https_ota_get_img_desc reading the app description.
    status, headers, data = d.request("GET", target, headers={"Range": "bytes=0-287"})
    assert status == 206 and data == image[:288]
    assert data[32:36] == bytes.fromhex("3254cdab")  # esp_app_desc_t magic word, little-endian


def test_url_needs_its_signature(env):
    d, m = env["d"], env["manifest"]
    target = url_target(d, m["url"])
    forged = re.sub(r"sig=[A-Za-z0-9_-]+", "sig=AAAA", target)
    assert d.request("GET", forged)[0] in (401, 403)
