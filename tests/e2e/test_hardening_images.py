"""Image inspection hardening (issue 9, items 7, 12-15, 18-20) against the real daemon, uploads with curl.

Each test drives one defect found from outside with real Espressif-shaped images from make_esp_image:
Arduino ESP8266 sketch bins inspected whole (eboot, every segment of the sketch, its checksum and CRC,
where the file ends), bootloaders refused, ESP8266 builds only under their own layout, the layout taken
from the image, one file name per artifact in a release, offered-then-deleted versions frozen, and a
device reporting the app version of its image.
"""
import hashlib
import json
import subprocess
import time
import urllib.parse

import pytest

from device_helpers import esp32_poll, set_channel
from catalogue_helpers import curl_json, make_image, write_bytes
from otad_harness import Otad

API = "/api/v1"


class Daemon:
    def __init__(self, otad):
        self.d = otad
        self.admin = otad.create_token("admin", name="admin-hardening")
        self.uploader = otad.create_token("uploader", name="uploader-hardening")


@pytest.fixture(scope="module")
def daemon():
    d = Otad().start()
    yield Daemon(d)
    d.cleanup()


def upload_url(d, product, version, **query):
    q = urllib.parse.urlencode(query)
    return d.url(f"{API}/products/{product}/releases/{urllib.parse.quote(version, safe='')}/artifacts" +
                 (f"?{q}" if q else ""))


def upload(daemon, tmp_path, product, version, path, token=None, **query):
    """Raw-body upload with curl; returns (status, JSON body)."""
    args = ["-H", f"Authorization: Bearer {token or daemon.uploader}",
            "-H", "Content-Type: application/octet-stream",
            "--data-binary", f"@{path}", upload_url(daemon.d, product, version, **query)]
    return curl_json(daemon.d, tmp_path, args)[:2]


def upload_form(daemon, tmp_path, product, version, path, fields=()):
    args = ["-H", f"Authorization: Bearer {daemon.uploader}", "-F", f"file=@{path};type=application/octet-stream"]
    for name, value in fields:
        args += ["-F", f"{name}={value}"]
    args.append(upload_url(daemon.d, product, version))
    return curl_json(daemon.d, tmp_path, args)[:2]


def problem_type(body):
    return body["type"].rsplit("/", 1)[1]


def assert_image_problem(status, body, code):
    assert status == 422, (status, body)
    assert problem_type(body) == "invalid-image" and body["code"] == code, body
    return body["detail"]


# -- item 12: classic ESP8266 images are inspected whole ------------------------------------------------

def test_arduino_sketch_bin_is_inspected_whole(daemon, tmp_path):
    img = make_image(tmp_path, "sketch.bin", "--kind", "esp8266-arduino", "--size", "300K")
    status, body = upload(daemon, tmp_path, "ardu-whole", "1.0.0", img["path"], chip="esp8266", layout="single")
    assert status == 201, body
    image = body["image"]
    assert image["format"] == "esp8266-classic" and image["build"] == "arduino" and image["role"] == "application"
    assert [s["load_addr"] for s in image["segments"]][:2] == ["0x40201010", "0x40100000"]
    assert len(image["segments"]) == 5  # every segment of the sketch, not only eboot's
    assert image["arduino"]["eboot"]["entry_addr"] == "0x4010f29c"
    assert image["arduino"]["crc"]["length"] == img["size"] and image["content_end"] == img["size"]
    assert image["flash_size"] == "4MB" and "flash_layout" not in image  # a size, not a FOTA map


@pytest.mark.parametrize("args, code", [
    (["--break", "truncated-segment"], "truncated-segment"),  # the sketch cut short
    (["--break", "missing-checksum"], "missing-checksum"),
    (["--break", "flipped-byte"], "bad-checksum"),  # one byte flipped in the middle of the sketch
    (["--break", "flipped-last-byte"], "bad-checksum"),  # ... or at its very end
    (["--break", "bad-crc"], "bad-crc"),
    (["--no-crc", "--break", "flipped-byte"], "bad-checksum"),  # an Arduino core < 3.0 build
    (["--break", "bad-padding"], "bad-padding"),
])
def test_broken_arduino_sketches_are_422(daemon, tmp_path, args, code):
    img = make_image(tmp_path, "broken.bin", "--kind", "esp8266-arduino", "--size", "64K", *args)
    status, body = upload(daemon, tmp_path, "ardu-broken", "1.0.0", img["path"], chip="esp8266", layout="single")
    detail = assert_image_problem(status, body, code)
    assert "offset" in detail
    assert daemon.d.json("GET", f"{API}/products/ardu-broken", token=daemon.admin)[0] == 404  # nothing stored


def test_trailing_garbage_is_refused_unless_allowed(daemon, tmp_path):
    img = make_image(tmp_path, "long.bin", "--kind", "esp8266-arduino", "--trailer-bytes", "300")
    status, body = upload(daemon, tmp_path, "ardu-tail", "1.0.0", img["path"], chip="esp8266", layout="single")
    detail = assert_image_problem(status, body, "trailing-data")
    assert detail.startswith("300 bytes follow the end of the image") and "trailing_data=allow" in detail
    status, body = upload(daemon, tmp_path, "ardu-tail", "1.0.0", img["path"], chip="esp8266", layout="single",
                          trailing_data="allow")
    assert status == 201, body
    assert body["image"]["trailing"]["bytes"] == 300
    # As a form field too; other values are a 400.
    rtos = make_image(tmp_path, "rtos-tail.bin", "--kind", "esp8266-rtos", "--trailer-bytes", "64")
    status, body = upload_form(daemon, tmp_path, "rtos-tail", "1.0.0", rtos["path"],
                               [("chip", "esp8266"), ("layout", "ota")])
    assert_image_problem(status, body, "trailing-data")
    status, body = upload_form(daemon, tmp_path, "rtos-tail", "1.0.0", rtos["path"],
                               [("chip", "esp8266"), ("layout", "ota"), ("trailing_data", "allow")])
    assert status == 201, body
    status, body = upload(daemon, tmp_path, "rtos-tail", "1.0.1", rtos["path"], chip="esp8266", trailing_data="yes")
    assert status == 400 and problem_type(body) == "invalid-parameter"


def test_toolchain_padding_and_signatures_are_not_trailing_data(daemon, tmp_path):
    for n, args in enumerate((["--erased-fill"], ["--signature-bytes", "256"])):
        img = make_image(tmp_path, f"ok-{n}.bin", "--kind", "esp8266-arduino", "--seed", str(n + 10), *args)
        status, body = upload(daemon, tmp_path, "ardu-pad", f"1.0.{n}", img["path"], chip="esp8266", layout="single")
        assert status == 201, body
        assert body["image"]["trailing"]["bytes"] == 0
    rtos = make_image(tmp_path, "rtos-fill.bin", "--kind", "esp8266-rtos", "--erased-fill")
    status, body = upload(daemon, tmp_path, "rtos-pad", "1.0.0", rtos["path"], chip="esp8266", layout="ota")
    assert status == 201 and rtos["size"] % 4096 == 0, body


# -- item 13: bootloaders are refused, for every chip ------------------------------------------------------

@pytest.mark.parametrize("args", [["--boot", "nonos"], ["--boot", "eboot"]])
def test_esp8266_bootloaders_are_refused(daemon, tmp_path, args):
    img = make_image(tmp_path, "boot.bin", "--kind", "esp8266-bootloader", *args)
    status, body = upload(daemon, tmp_path, "boot8266", "1.0.0", img["path"], chip="esp8266", layout="single")
    detail = assert_image_problem(status, body, "bootloader")
    assert detail.startswith("file is an ESP8266 bootloader, not an application")


@pytest.mark.parametrize("chip", ["esp32", "esp32s2", "esp32c3", "esp32s3", "esp32c6", "esp32h2", "esp32p4",
                                  "esp32c5"])
def test_esp32_family_bootloaders_are_refused(daemon, tmp_path, chip):
    img = make_image(tmp_path, "bootloader.bin", "--kind", "esp32-bootloader", "--chip", chip)
    for layout in ("ota", "single"):
        status, body = upload(daemon, tmp_path, "boot32", "1.0.0", img["path"], chip=chip, layout=layout)
        detail = assert_image_problem(status, body, "bootloader")
        assert "bootloader" in detail and "not an application" in detail
    # A bootloader of another chip is a chip mismatch.
    other = "esp32c3" if chip != "esp32c3" else "esp32"
    status, body = upload(daemon, tmp_path, "boot32", "1.0.0", img["path"], chip=other)
    detail = assert_image_problem(status, body, "chip-mismatch")
    assert "bootloader" in detail and f"declared chip is {other}" in detail


# -- items 14, 15: an ESP8266 build only under its own layout; messages ------------------------------------

def test_esp8266_builds_only_under_their_layout(daemon, tmp_path):
    sketch = make_image(tmp_path, "sketch.bin", "--kind", "esp8266-arduino")
    rtos = make_image(tmp_path, "rtos.bin", "--kind", "esp8266-rtos")
    status, body = upload(daemon, tmp_path, "lay8266", "1.0.0", sketch["path"], chip="esp8266", layout="ota")
    detail = assert_image_problem(status, body, "layout-mismatch")
    assert detail.startswith("file is an ESP8266 Arduino sketch bin") and "layout single serves" in detail
    status, body = upload(daemon, tmp_path, "lay8266", "1.0.0", rtos["path"], chip="esp8266", layout="single")
    detail = assert_image_problem(status, body, "layout-mismatch")
    assert detail.startswith("file is an ESP8266 RTOS SDK v3 app image") and "layout ota serves" in detail
    status, body = upload(daemon, tmp_path, "lay8266", "1.0.0", sketch["path"], chip="esp8266", layout="512+512",
                          slot="user1")
    detail = assert_image_problem(status, body, "layout-mismatch")
    assert "but the file is an ESP8266 Arduino sketch bin" in detail
    assert " a esp" not in detail.lower()
    assert upload(daemon, tmp_path, "lay8266", "1.0.0", rtos["path"], chip="esp8266", layout="ota")[0] == 201


# -- item 18: the ESP8266 layout comes from the image ------------------------------------------------------

def test_esp8266_layout_is_inferred_and_only_a_contradiction_refused(daemon, tmp_path):
    user1 = make_image(tmp_path, "user1.bin", "--kind", "esp8266-v2", "--slot", "user1", "--flash-map", "2")
    status, body = upload(daemon, tmp_path, "infer", "1.0.0", user1["path"], chip="esp8266", slot="user1")
    assert status == 201, body
    assert (body["layout"], body["slot"], body["filename"]) == ("512+512", "user1", "user1.bin")
    sketch = make_image(tmp_path, "sketch.bin", "--kind", "esp8266-arduino")
    status, body = upload(daemon, tmp_path, "infer", "1.0.0", sketch["path"], chip="esp8266")
    assert status == 201 and body["layout"] == "single", body
    rtos = make_image(tmp_path, "rtos.bin", "--kind", "esp8266-rtos", "--rtos-app-desc", "--version", "1.0.0")
    status, body = upload(daemon, tmp_path, "infer", "1.0.0", rtos["path"], chip="esp8266")
    assert status == 201 and body["layout"] == "ota", body
    status, body = upload(daemon, tmp_path, "infer", "1.1.0", user1["path"], chip="esp8266", layout="1024+1024",
                          slot="user1")
    detail = assert_image_problem(status, body, "layout-mismatch")
    assert "flash size map 2 (512+512)" in detail


# -- item 19: one file name per artifact in a release --------------------------------------------------------

def test_a_file_name_names_one_artifact_of_a_release(daemon, tmp_path):
    d = daemon.d
    a = write_bytes(tmp_path, "a.bin", b"first generic blob")
    b = write_bytes(tmp_path, "b.bin", b"second generic blob")
    status, first = upload(daemon, tmp_path, "names", "1.0.0", a["path"], chip="generic", filename="app.bin")
    assert status == 201, first
    esp32 = make_image(tmp_path, "e.bin", "--kind", "esp32", "--chip", "esp32", "--version", "1.0.0")
    status, body = upload(daemon, tmp_path, "names", "1.0.0", esp32["path"], chip="esp32", filename="app.bin")
    assert status == 409 and problem_type(body) == "filename-exists", body
    assert body["artifact_id"] == first["id"] and body["chip"] == "generic"
    assert f"already has an artifact named 'app.bin' (id {first['id']}, generic/single)" in body["detail"]
    # Default names step aside instead, and every name downloads its own bytes.
    status, body = upload(daemon, tmp_path, "names", "1.0.0", esp32["path"], chip="esp32")
    assert status == 201 and body["filename"] == "firmware.bin", body
    esp32c3 = make_image(tmp_path, "c3.bin", "--kind", "esp32", "--chip", "esp32c3", "--version", "1.0.0")
    status, body = upload(daemon, tmp_path, "names", "1.0.0", esp32c3["path"], chip="esp32c3")
    assert status == 201 and body["filename"] == "firmware-esp32c3-ota.bin", body
    for name, digest in (("app.bin", a["sha256"]), ("firmware.bin", esp32["sha256"]),
                         ("firmware-esp32c3-ota.bin", esp32c3["sha256"])):
        status, _, data = d.request("GET", f"/firmware/names/1.0.0/{name}")
        assert status == 200 and hashlib.sha256(data).hexdigest() == digest, name
    assert upload(daemon, tmp_path, "names", "1.1.0", b["path"], chip="generic", filename="app.bin")[0] == 201


# -- item 7: an offered version keeps its bytes after delete -------------------------------------------------

def test_offered_then_deleted_version_comes_back_only_with_its_bytes(daemon, tmp_path):
    d = daemon.d
    one = make_image(tmp_path, "one.bin", "--kind", "esp32", "--chip", "esp32", "--version", "1.1.0",
                     "--project", "tomb", "--seed", "1")
    other = make_image(tmp_path, "other.bin", "--kind", "esp32", "--chip", "esp32", "--version", "1.1.0",
                       "--project", "tomb", "--seed", "2")
    assert upload(daemon, tmp_path, "tomb", "1.1.0", one["path"], chip="esp32")[0] == 201
    set_channel(d, daemon.admin, "tomb", "stable", "1.1.0")
    status, _, manifest = esp32_poll(d, product="tomb", version="1.0.0")
    assert status == 200 and json.loads(manifest)["sha256"] == one["sha256"]  # offered: a device may hold it
    assert d.request("DELETE", f"{API}/products/tomb/channels/stable", token=daemon.admin)[0] == 204
    assert d.request("DELETE", f"{API}/products/tomb/releases/1.1.0", token=daemon.admin)[0] == 204

    status, body = upload(daemon, tmp_path, "tomb", "1.1.0", other["path"], chip="esp32", token=daemon.admin)
    assert status == 409 and problem_type(body) == "release-was-offered", body
    assert body["version"] == "1.1.0" and body["tombstone"][0]["sha256"] == one["sha256"]
    assert "release '1.1.0' of 'tomb' was offered to devices" in body["detail"]
    status, body = upload(daemon, tmp_path, "tomb", "1.1.0", one["path"], chip="esp32")
    assert status == 201, body


# -- item 20: a device reporting the app version inside the release's image -----------------------------------

def test_device_reporting_the_images_app_version_is_up_to_date(daemon, tmp_path):
    d = daemon.d
    old = make_image(tmp_path, "old.bin", "--kind", "esp32", "--chip", "esp32", "--version", "v1.0.0-7-g1234567",
                     "--project", "gitdesc", "--seed", "3")
    new = make_image(tmp_path, "new.bin", "--kind", "esp32", "--chip", "esp32", "--version", "v1.1.0-3-gabcdef0",
                     "--project", "gitdesc", "--seed", "4")
    for version, img in (("1.0.0", old), ("1.1.0", new)):
        status, body = upload(daemon, tmp_path, "gitdesc", version, img["path"], chip="esp32",
                              version_mismatch="allow")
        assert status == 201, body
    set_channel(d, daemon.admin, "gitdesc", "stable", "1.1.0")
    # The device runs the image's own version string (esp_app_get_description()->version): no update.
    status, headers, body = esp32_poll(d, product="gitdesc", version="v1.1.0-3-gabcdef0", device="gd-1")
    assert status == 204, (status, body)
    # The release version works too; an older device gets 1.1.0.
    assert esp32_poll(d, product="gitdesc", version="1.1.0", device="gd-2")[0] == 204
    status, _, body = esp32_poll(d, product="gitdesc", version="v1.0.0-7-g1234567", device="gd-3")
    assert status == 200 and json.loads(body)["version"] == "1.1.0"
