"""Operator-side hardening (issue 9), against the real daemon with real clients:

* /readyz and uploads on a really full file system (a small tmpfs as the data dir);
* who a refused request was (access log principal) and tokens' "last used";
* device keys with a chosen secret: weak secrets refused, collisions not explained;
* Range and conditional requests on the legacy NONOS routes (curl -C -, wget -c);
* the first-start line about which products devices may poll;
* orphan blobs collected while serving, never an upload in progress.
"""
import hashlib
import http.client
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import time

import pytest

from otad_harness import Otad, run_otad, tool, wait_for


# ---------------------------------------------------------------- helpers

def make_image(directory, name, *args):
    path = os.path.join(directory, name)
    subprocess.run([tool("make_esp_image"), "--out", path] + list(args), check=True, capture_output=True, timeout=60)
    with open(path, "rb") as f:
        return f.read()


def esp32_image(directory, name, version="1.0.0", size="200K", seed="1"):
    return make_image(directory, name, "--kind", "esp32", "--chip", "esp32c3", "--version", version,
                      "--project", "thermostat", "--size", size, "--seed", seed)


def upload(d, token, product, version, data, query="chip=esp32c3"):
    return d.request("POST", f"/api/v1/products/{product}/releases/{version}/artifacts?{query}", body=data,
                     headers={"Content-Type": "application/octet-stream"}, token=token)


def upload_ok(d, token, product, version, data, query="chip=esp32c3"):
    status, _, body = upload(d, token, product, version, data, query)
    assert status in (200, 201), (status, body[:500])
    return json.loads(body)


def download(d, sha256, token):
    status, _, body = d.request("GET", f"/api/v1/blobs/{sha256}", token=token)
    assert status == 200, (status, body[:300])
    return body


def access_lines(d, status):
    """The access-log lines with this status (text log format)."""
    return [line for line in d.log().splitlines()
            if line.find(" request ") >= 0 and f" status={status} " in line]


# ---------------------------------------------------------------- 4: a full disk

@pytest.fixture
def small_filesystem():
    """A 4 MiB tmpfs to serve as the data dir (root only); unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tempfile.mkdtemp(prefix="otad-full-")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", mount_point],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        os.rmdir(mount_point)
        pytest.skip(f"mount -t tmpfs is not permitted here: {proc.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", mount_point], capture_output=True)
    os.rmdir(mount_point)


def fill(directory):
    """Writes a file until the file system is full; returns its path."""
    path = os.path.join(directory, "filler")
    chunk = os.urandom(64 * 1024)
    with open(path, "wb", buffering=0) as f:
        for _ in range(10_000):  # far more than 4 MiB: the loop ends at ENOSPC
            try:
                f.write(chunk)
            except OSError as e:
                if e.errno != 28:  # ENOSPC
                    raise
                break
        else:
            raise AssertionError("the file system never filled up")
    # Smaller writes take the last partial pages.
    with open(path + "-tail", "wb", buffering=0) as f:
        for _ in range(1_000):
            try:
                f.write(b"x" * 512)
            except OSError:
                break
    return path


def test_full_disk_is_not_ready_uploads_get_507_and_everything_recovers(small_filesystem, tmp_path):
    d = Otad(data_dir=small_filesystem)
    d.log_path = str(tmp_path / "otad.log")  # the log must not need the full disk
    d.start()
    try:
        token = d.create_token("admin")
        stored = esp32_image(str(tmp_path), "stored.bin", size="100K", seed="1")
        stored_info = upload_ok(d, token, "thermostat", "1.0.0", stored)
        status, _, ready = d.json("GET", "/readyz")
        assert status == 200 and ready["status"] == "ready"

        filler = fill(small_filesystem)

        # /readyz probes with a real write: not ready (its answer is reused for at most a second).
        def not_ready():
            status, _, body = d.json("GET", "/readyz")
            return body if status == 503 else None
        body = wait_for(not_ready, timeout=15, what="/readyz to report the full disk")
        assert body["type"].endswith("/not-ready")
        assert body["checks"]["blob_dir"] == {"ok": False, "error": "no space left on the device"}

        # An upload gets a clear problem, not a 500.
        refused = esp32_image(str(tmp_path), "refused.bin", version="1.1.0", size="300K", seed="2")
        status, headers, raw = upload(d, token, "thermostat", "1.1.0", refused)
        assert status == 507, (status, raw[:300])
        assert headers["content-type"] == "application/problem+json"
        problem = json.loads(raw)
        assert problem["type"] == "https://otad.dev/problems/insufficient-storage"
        assert "disk is full" in problem["detail"]
        # Nothing half-written stays behind, and what was stored is intact.
        assert os.listdir(os.path.join(small_filesystem, "blobs", "tmp")) == []
        assert download(d, stored_info["sha256"], token) == stored
        status, _, release = d.json("GET", "/api/v1/products/thermostat/releases/1.1.0", token=token)
        assert status == 404

        # Space freed: ready again, and the same upload now succeeds.
        os.remove(filler)
        os.remove(filler + "-tail")
        wait_for(lambda: d.json("GET", "/readyz")[0] == 200, timeout=15, what="/readyz to recover")
        accepted = upload_ok(d, token, "thermostat", "1.1.0", refused)
        assert accepted["sha256"] == hashlib.sha256(refused).hexdigest()
        assert download(d, accepted["sha256"], token) == refused
        assert download(d, stored_info["sha256"], token) == stored
    finally:
        d.stop()
    db = sqlite3.connect(os.path.join(small_filesystem, "otad.db"))
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT count(*) FROM artifacts").fetchone()[0] == 2
    finally:
        db.close()


# ---------------------------------------------------------------- 9: attribution, last used

def token_list(d):
    return {t["name"]: t for t in json.loads(d.otad("token", "list", "--json").stdout)}


def test_refused_requests_name_who_was_refused_and_tokens_show_their_last_use(otad_factory, tmp_path):
    d = otad_factory()
    admin = d.create_token("admin", name="root")
    uploader = d.create_token("uploader", name="ci-uploader")
    assert token_list(d)["ci-uploader"]["last_used_at"] == "-"

    # An uploader asking for an admin route: 403, logged with the token's name.
    upload_ok(d, admin, "thermostat", "1.0.0", esp32_image(str(tmp_path), "a.bin"))
    status, _, _ = d.json("PUT", "/api/v1/products/thermostat/channels/stable", body={"version": "1.0.0"},
                          token=uploader)
    assert status == 403
    line = wait_for(lambda: [l for l in access_lines(d, 403) if "/channels/stable" in l], what="the 403's log line")
    assert " principal=token:ci-uploader " in line[0], line[0]

    # A device with a wrong key: 401, logged with the device id it gave, never the key.
    status, _, created = d.json("POST", "/api/v1/products/thermostat/device-keys", body={"name": "fleet"},
                                token=admin)
    assert status == 201
    wrong_key = "wrong-" + os.urandom(16).hex()
    status, _, _ = d.request("GET", "/api/v1/update?product=thermostat&chip=esp32c3&layout=ota&slot=ota_0"
                                    "&version=0.9.0&device=dev-42", headers={"Authorization": f"Bearer {wrong_key}"})
    assert status == 401
    line = wait_for(lambda: [l for l in access_lines(d, 401) if "device=dev-42" in l], what="the 401's log line")
    assert " principal=device:dev-42 " in line[0], line[0]
    log = d.log()
    for secret in (wrong_key, uploader, admin, created["key"]):
        assert secret not in log

    # Both tokens were used (a refused call is a use too): `otad token list` says when.
    def used():
        tokens = token_list(d)
        return tokens if all(tokens[n]["last_used_at"] != "-" for n in ("root", "ci-uploader")) else None
    tokens = wait_for(used, timeout=15, what="token list to show last use")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", tokens["ci-uploader"]["last_used_at"])
    table = d.otad("token", "list").stdout
    row = next(l for l in table.splitlines() if l.startswith("ci-uploader"))
    assert tokens["ci-uploader"]["last_used_at"] in row


# ---------------------------------------------------------------- 8: chosen device keys

def test_chosen_device_keys_must_look_random_and_a_collision_is_not_explained(otad, tmp_path):
    d = otad
    admin = d.create_token("admin")
    upload_ok(d, admin, "thermostat", "1.0.0", esp32_image(str(tmp_path), "t.bin"))
    upload_ok(d, admin, "lamp", "1.0.0", esp32_image(str(tmp_path), "l.bin", seed="3"))

    for weak in ("short-secret-16ch", "a" * 40, "passwordpasswordpasswordpassword", "abcdefghijklmnopqrstuvwxyz012345"):
        status, _, body = d.json("POST", "/api/v1/products/thermostat/device-keys",
                                 body={"name": "fleet", "key": weak}, token=admin)
        assert status == 422, (weak, status, body)
        assert body["type"].endswith("/weak-device-key")

    secret = os.urandom(20).hex()  # 40 hex digits, like Espressif's device keys
    status, _, body = d.json("POST", "/api/v1/products/thermostat/device-keys",
                             body={"name": "fleet", "key": secret}, token=admin)
    assert status == 201 and body["key"] == secret

    # The same secret for another product, or for another key of the same one: one
    # answer, naming neither where it is used nor that it is.
    answers = []
    for product, name in (("lamp", "fleet"), ("thermostat", "second")):
        status, _, body = d.json("POST", f"/api/v1/products/{product}/device-keys",
                                 body={"name": name, "key": secret}, token=admin)
        assert status == 409
        answers.append(body["detail"])
        assert "thermostat" not in body["detail"] and "in use" not in body["detail"]
    assert answers[0] == answers[1]
    # A fresh random key is accepted; a taken name is still named.
    status, _, _ = d.json("POST", "/api/v1/products/lamp/device-keys",
                          body={"name": "fleet", "key": os.urandom(20).hex()}, token=admin)
    assert status == 201
    status, _, body = d.json("POST", "/api/v1/products/lamp/device-keys", body={"name": "fleet"}, token=admin)
    assert status == 409 and "already has an active key named 'fleet'" in body["detail"]


# ---------------------------------------------------------------- 16: NONOS resume

@pytest.fixture
def nonos(tmp_path):
    """A daemon with a plain listener, one NONOS product (512+512) with a device key."""
    d = Otad(http_listener=True).start()
    token = d.create_token("admin")
    images = {}
    for slot in ("user1", "user2"):
        images[slot] = make_image(str(tmp_path), f"{slot}.bin", "--kind", "esp8266-v2", "--slot", slot,
                                  "--flash-map", "2", "--size", "400K", "--seed", "7")
        upload_ok(d, token, "nonos", "1.0.5", images[slot], f"chip=esp8266&layout=512%2B512&slot={slot}")
    status, _, _ = d.json("PUT", "/api/v1/products/nonos/channels/stable", body={"version": "1.0.5"}, token=token)
    assert status == 200
    status, _, created = d.json("POST", "/api/v1/products/nonos/device-keys", body={"name": "fleet"}, token=token)
    assert status == 201
    d.nonos_images = images
    d.nonos_key = created["key"]
    yield d
    d.cleanup()


def cut_download(d, path, headers, out, keep):
    """A download cut by the network: the first `keep` body bytes reach the file, then the
    connection drops (what curl or wget leave behind when a link fails mid-transfer)."""
    conn = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        assert response.status == 200
        part = response.read(keep)
    finally:
        conn.close()
    with open(out, "wb") as f:
        f.write(part)
    return len(part)


@pytest.mark.parametrize("path", ["/v1/device/rom/?action=download_rom&version=1.0.5&filename=user2.bin", "/user2.bin"])
def test_curl_resumes_a_cut_nonos_download_byte_exact(nonos, tmp_path, path):
    d = nonos
    url = d.http_url(path)
    out = str(tmp_path / "user2.bin")
    auth = ["-H", f"Authorization: token {d.nonos_key}"]
    expected = d.nonos_images["user2"]
    cut = cut_download(d, path, {"Authorization": f"token {d.nonos_key}"}, out, 150_001)
    assert cut == 150_001 < len(expected)
    proc = subprocess.run(["curl", "-sS", "-C", "-", "-o", out, "-w", "%{http_code}"] + auth + [url],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"206"
    with open(out, "rb") as f:
        assert f.read() == expected


def test_wget_continues_a_cut_nonos_download_byte_exact(nonos, tmp_path):
    d = nonos
    url = d.http_url("/user1.bin")
    out = str(tmp_path / "user1.bin")
    header = f"--header=Authorization: token {d.nonos_key}"
    expected = d.nonos_images["user1"]
    cut = cut_download(d, "/user1.bin", {"Authorization": f"token {d.nonos_key}"}, out, 99_999)
    assert cut == 99_999 < len(expected)
    proc = subprocess.run(["wget", "-c", "-S", header, "-O", out, url], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "HTTP/1.1 206 Partial Content" in proc.stderr
    assert f"Content-Range: bytes {cut}-{len(expected) - 1}/{len(expected)}" in proc.stderr
    with open(out, "rb") as f:
        assert f.read() == expected


def test_nonos_routes_answer_validators_and_conditional_requests(nonos):
    d = nonos
    path = "/v1/device/rom/?action=download_rom&version=1.0.5&filename=user1.bin"
    auth = {"Authorization": f"token {d.nonos_key}"}
    image = d.nonos_images["user1"]
    status, headers, body = d.request("HEAD", path, headers=auth, plain=True)
    assert status == 200 and body == b""
    etag = headers["etag"]
    assert etag == '"' + hashlib.sha256(image).hexdigest() + '"'
    assert headers["accept-ranges"] == "bytes" and int(headers["content-length"]) == len(image)
    assert headers["cache-control"] == "private, no-cache"
    # The device still finds the length in the header block it reads first.
    assert headers["content-disposition"] == 'attachment; filename="user1.bin"'

    status, _, _ = d.request("GET", path, headers=dict(auth, **{"If-None-Match": etag}), plain=True)
    assert status == 304
    status, headers, body = d.request("GET", path, headers=dict(auth, Range="bytes=100-199"), plain=True)
    assert status == 206 and body == image[100:200]
    assert headers["content-range"] == f"bytes 100-199/{len(image)}"
    # If-Range with another ETag: the whole image, not a mix of two builds.
    status, _, body = d.request("GET", path, headers=dict(auth, Range="bytes=100-199", **{"If-Range": '"x"'}),
                                plain=True)
    assert status == 200 and body == image
    status, headers, _ = d.request("GET", path, headers=dict(auth, Range=f"bytes={len(image)}-"), plain=True)
    assert status == 416 and headers["content-range"] == f"bytes */{len(image)}"
    status, _, _ = d.request("GET", path, headers=dict(auth, **{"If-Match": '"other"'}), plain=True)
    assert status == 412


# ---------------------------------------------------------------- 21: the first-start line

def device_access_line(d):
    lines = [l for l in d.log().splitlines() if "device access:" in l]
    assert len(lines) == 1, lines
    return lines[0]


def test_first_start_line_says_new_products_are_open(tmp_path):
    data_dir = str(tmp_path / "data")
    os.makedirs(data_dir)

    def start(n):
        d = Otad(data_dir=data_dir)
        d.log_path = str(tmp_path / f"start-{n}.log")  # one log per start
        return d.start()

    d = start(1)
    try:
        line = device_access_line(d)
        assert "no products yet; a new product is open to any device until it has a device key" in line
        assert "every product requires" not in line
        admin = d.create_token("admin")
        upload_ok(d, admin, "thermostat", "1.0.0", esp32_image(str(tmp_path), "t.bin"))
        status, _, _ = d.json("POST", "/api/v1/products/thermostat/device-keys", body={"name": "fleet"}, token=admin)
        assert status == 201
    finally:
        d.stop()

    d = start(2)
    try:
        line = device_access_line(d)
        assert "every existing product requires a device key; a new product is open to any device until it has one" \
            in line
        assert "count=0 products=- total_products=1" in line
        admin = d.create_token("admin")
        upload_ok(d, admin, "lamp", "1.0.0", esp32_image(str(tmp_path), "l.bin", seed="4"))
    finally:
        d.stop()

    d = start(3)
    try:
        line = device_access_line(d)
        assert "products open to any device" in line and "count=1 products=lamp total_products=2" in line
        assert "a new product is open too until it has one" in line
    finally:
        d.stop()


# ---------------------------------------------------------------- 22: orphans while serving

def plant_blob(data_dir, content, age_seconds):
    """A blob file no row names (what a crash between an upload's commit and its rows leaves)."""
    sha = hashlib.sha256(content).hexdigest()
    directory = os.path.join(data_dir, "blobs", sha[:2], sha[2:4])
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, sha)
    with open(path, "wb") as f:
        f.write(content)
    when = time.time() - age_seconds
    os.utime(path, (when, when))
    return path


def test_orphans_are_collected_while_serving_but_not_an_upload_in_progress(otad_factory, tmp_path):
    d = otad_factory(env={"OTAD_ORPHAN_COLLECT_INTERVAL_S": "1"})
    assert "orphan_collect_interval_s=1" in d.log()
    token = d.create_token("admin")
    released = esp32_image(str(tmp_path), "released.bin", seed="5")
    info = upload_ok(d, token, "thermostat", "1.0.0", released)
    blob_path = os.path.join(d.data_dir, "blobs", info["sha256"][:2], info["sha256"][2:4], info["sha256"])
    two_hours_ago = time.time() - 7200
    os.utime(blob_path, (two_hours_ago, two_hours_ago))  # old, but an artifact uses it

    # An upload in progress: half its body sent, the rest after the collector has run.
    pending = esp32_image(str(tmp_path), "pending.bin", version="1.1.0", size="300K", seed="6")
    conn = http.client.HTTPSConnection("127.0.0.1", d.port, timeout=60, context=d.ssl_context())
    conn.putrequest("POST", "/api/v1/products/thermostat/releases/1.1.0/artifacts?chip=esp32c3")
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(len(pending)))
    conn.endheaders()
    half = len(pending) // 2
    conn.send(pending[:half])
    temp_dir = os.path.join(d.data_dir, "blobs", "tmp")
    wait_for(lambda: os.listdir(temp_dir), what="the upload's temp file")

    old_orphan = plant_blob(d.data_dir, os.urandom(5000), 7200)
    fresh_orphan = plant_blob(d.data_dir, os.urandom(5000), 0)
    wait_for(lambda: not os.path.exists(old_orphan), timeout=20, what="the old orphan to be collected while serving")
    assert "orphan_blobs_collected" in d.log()

    conn.send(pending[half:])
    response = conn.getresponse()
    body = response.read()
    conn.close()
    assert response.status == 201, body[:300]
    assert json.loads(body)["sha256"] == hashlib.sha256(pending).hexdigest()

    assert os.path.exists(fresh_orphan)  # younger than the hour of grace
    assert download(d, info["sha256"], token) == released
    assert download(d, hashlib.sha256(pending).hexdigest(), token) == pending
