"""The device API against the real daemon (docs/device-api.md): polls (200 signed manifest, 204,
400, 404) with slot-correct selection for every layout, anti-rollback, signatures checked with the
openssl command line alone, key rotation through `otad keys`, device keys enforced on poll, report
and download, reports and implicit rollback detection, the operator device views, HTTP/1.0."""
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile

import pytest

from device_helpers import (esp32_image, esp32_poll, nonos_image, openssl_verify, poll, poll_path, public_keys,
                            set_channel, signature_parts, upload)
from otad_harness import Otad, wait_for

POLL_INTERVAL = 600
POLL_JITTER = 120
CONFIG = json.dumps({"poll_interval_s": POLL_INTERVAL, "poll_jitter_s": POLL_JITTER, "rollback_after_s": 3600,
                     "device_flush_interval_ms": 100})


@pytest.fixture(scope="module")
def env():
    """One daemon (HTTPS + plain HTTP) and a catalogue covering every layout:
    thermo   esp32 ota: 1.1.0 (secure_version 1) on stable, 1.0.0 on old
    nonos    esp8266 512+512: 2.0.0 with user1 and user2 builds
    half     esp8266 512+512: 2.0.0 with only the user1 build
    wide     esp8266 1024+1024: 2.0.0 with only the user1 build (interchangeable)"""
    d = Otad(http_listener=True, config_text=CONFIG).start()
    try:
        admin = d.create_token("admin")
        viewer = d.create_token("viewer")
        images = {
            "thermo-1.0.0": esp32_image("1.0.0", secure_version=0, seed=1),
            "thermo-1.1.0": esp32_image("1.1.0", secure_version=1, seed=2),
            "nonos-user1": nonos_image("user1", 2, seed=3),
            "nonos-user2": nonos_image("user2", 2, seed=3),
            "half-user1": nonos_image("user1", 2, seed=4),
            "wide-user1": nonos_image("user1", 5, seed=5),
        }
        upload(d, admin, "thermo", "1.0.0", images["thermo-1.0.0"], "esp32", "ota")
        upload(d, admin, "thermo", "1.1.0", images["thermo-1.1.0"], "esp32", "ota")
        set_channel(d, admin, "thermo", "stable", "1.1.0")
        set_channel(d, admin, "thermo", "old", "1.0.0")
        upload(d, admin, "nonos", "2.0.0", images["nonos-user1"], "esp8266", "512+512", "user1")
        upload(d, admin, "nonos", "2.0.0", images["nonos-user2"], "esp8266", "512+512", "user2")
        set_channel(d, admin, "nonos", "stable", "2.0.0")
        upload(d, admin, "half", "2.0.0", images["half-user1"], "esp8266", "512+512", "user1")
        set_channel(d, admin, "half", "stable", "2.0.0", force=True)  # lacks user2 on purpose
        upload(d, admin, "wide", "2.0.0", images["wide-user1"], "esp8266", "1024+1024", "user1")
        set_channel(d, admin, "wide", "stable", "2.0.0")
        yield {"d": d, "admin": admin, "viewer": viewer, "images": images}
    finally:
        d.cleanup()


def manifest_of(status, headers, body):
    assert status == 200, (status, body[:500])
    assert headers["content-type"] == "application/json"
    return json.loads(body)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def md5(data):
    return hashlib.md5(data).hexdigest()


# ---------------------------------------------------------------- poll: 200 / 204 / 400 / 404

def test_manifest_has_the_documented_fields_in_order(env):
    d, image = env["d"], env["images"]["thermo-1.1.0"]
    status, headers, body = esp32_poll(d, version="1.0.0", slot="ota_0")
    m = manifest_of(status, headers, body)
    assert list(m) == ["product", "version", "chip", "layout", "slot", "size", "sha256", "md5", "url", "app",
                       "poll_interval_s"]
    assert (m["product"], m["version"], m["chip"], m["layout"], m["slot"]) == ("thermo", "1.1.0", "esp32", "ota", "ota_1")
    assert m["size"] == len(image) and m["sha256"] == sha256(image) and m["md5"] == md5(image)
    assert re.fullmatch(rf"https://{re.escape(d.https)}/api/v1/blobs/{m['sha256']}\?expires=\d+&sig=[A-Za-z0-9_-]+",
                        m["url"]), m["url"]
    assert m["app"]["version"] == "1.1.0" and m["app"]["project_name"] == "thermo" and m["app"]["secure_version"] == 1
    assert POLL_INTERVAL <= m["poll_interval_s"] <= POLL_INTERVAL + POLL_JITTER
    assert headers["x-otad-poll-interval"] == str(m["poll_interval_s"])
    assert headers["cache-control"] == "no-store"
    assert re.fullmatch(r"keyid=[0-9a-f]{16},alg=es256,sig=[A-Za-z0-9+/=]+", headers["x-otad-signature"])
    # The URL downloads the artifact without any credential.
    status, _, data = d.request("GET", m["url"][len(d.url()):])
    assert status == 200 and data == image


def test_up_to_date_is_204_with_a_jittered_interval(env):
    d = env["d"]
    seen = set()
    for i in range(20):
        status, headers, body = esp32_poll(d, version="1.1.0", device=f"uptodate-{i}")
        assert status == 204 and body == b""
        assert headers["x-otad-no-update"] == "up_to_date"
        interval = int(headers["x-otad-poll-interval"])
        assert POLL_INTERVAL <= interval <= POLL_INTERVAL + POLL_JITTER
        seen.add(interval)
    assert len(seen) > 1  # jitter, not a constant


@pytest.mark.parametrize("params, parameter, fragment", [
    (dict(chip="esp32", layout="ota", slot="ota_0", version="1", device="x"), "product", "missing query parameter 'product'"),
    (dict(product="thermo", chip="esp99", layout="ota", slot="ota_0", version="1", device="x"), "chip",
     "unknown chip 'esp99'; valid chips: esp8266, esp32, esp32s2"),
    (dict(product="thermo", chip="esp32", layout="768+768", slot="ota_0", version="1", device="x"), "layout",
     "unknown layout '768+768'; valid layouts: "),
    (dict(product="thermo", chip="esp32", layout="ota", version="1", device="x"), "slot",
     "missing query parameter 'slot': the running slot of a ota device, one of factory, ota_0, ota_1"),
    (dict(product="nonos", chip="esp8266", layout="512+512", slot="user3", version="1", device="x"), "slot",
     "slot 'user3' is not valid for layout 512+512; valid: user1, user2"),
    (dict(product="thermo", chip="esp32", layout="ota", slot="ota_0", version="1", device="x", slots="17"), "slots",
     "slots must be the number of OTA partitions, 1..16"),
    (dict(product="thermo", chip="esp32", layout="ota", slot="ota_0", version="1", device="x", secure_version="-1"),
     "secure_version", "secure_version must be an integer"),
    (dict(product="thermo", chip="esp32", layout="ota", slot="ota_0", version="1"), "device", "missing query parameter 'device'"),
    (dict(product="thermo", chip="esp32", layout="ota", slot="ota_0", device="x"), "version", "missing query parameter 'version'"),
])
def test_bad_parameters_are_400_with_a_precise_detail(env, params, parameter, fragment):
    status, headers, body = poll(env["d"], **params)
    assert status == 400, body
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert fragment in problem["detail"], problem
    assert problem["parameter"] == parameter
    if parameter == "chip":
        assert "esp32c3" in problem["valid"] and "esp8266" in problem["valid"]


def test_unknown_product_or_channel_is_404(env):
    d = env["d"]
    status, _, body = esp32_poll(d, product="nosuch")
    assert status == 404 and json.loads(body)["detail"] == "no product named 'nosuch'"
    status, _, body = esp32_poll(d, channel="beta")
    assert status == 404
    problem = json.loads(body)
    assert problem["detail"] == "product 'thermo' has no channel 'beta'; its channels: old, stable"
    assert problem["channels"] == ["old", "stable"]


# ---------------------------------------------------------------- slot selection

@pytest.mark.parametrize("running, target", [("user1", "user2"), ("user2", "user1")])
def test_512_512_gets_the_build_linked_for_the_other_slot(env, running, target):
    d, images = env["d"], env["images"]
    status, headers, body = poll(d, product="nonos", chip="esp8266", layout="512+512", slot=running, version="1.0.0",
                                 device=f"nonos-{running}")
    m = manifest_of(status, headers, body)
    assert m["slot"] == target
    assert m["sha256"] == sha256(images[f"nonos-{target}"])
    assert "app" not in m


def test_512_512_missing_slot_build_is_204_and_logged(env):
    d = env["d"]
    status, headers, _ = poll(d, product="half", chip="esp8266", layout="512+512", slot="user1", version="1.0.0",
                              device="half-1")
    assert status == 204 and headers["x-otad-no-update"] == "missing_slot_artifact"
    wait_for(lambda: "missing_slot_artifact" in d.log() and "product=half" in d.log(), 10, what="the warning")
    line = next(l for l in d.log().splitlines() if "missing_slot_artifact" in l and "product=half" in l)
    assert "no user2 build for esp8266 512+512" in line
    # The user1 build is never handed to a device that needs user2; a user2 device gets it.
    status, headers, body = poll(d, product="half", chip="esp8266", layout="512+512", slot="user2", version="1.0.0",
                                 device="half-2")
    assert manifest_of(status, headers, body)["sha256"] == sha256(env["images"]["half-user1"])


def test_1024_1024_builds_are_interchangeable(env):
    d = env["d"]
    status, headers, body = poll(d, product="wide", chip="esp8266", layout="1024+1024", slot="user1",
                                 version="1.0.0", device="wide-1")
    m = manifest_of(status, headers, body)
    assert m["slot"] == "user2" and m["sha256"] == sha256(env["images"]["wide-user1"])


@pytest.mark.parametrize("running, slots, target", [
    ("factory", None, "ota_0"), ("ota_0", None, "ota_1"), ("ota_1", None, "ota_0"),
    ("ota_1", "3", "ota_2"), ("ota_2", "3", "ota_0"), ("factory", "3", "ota_0")])
def test_ota_next_slot(env, running, slots, target):
    extra = {"slots": slots} if slots else {}
    status, headers, body = esp32_poll(env["d"], slot=running, device=f"ota-{running}-{slots}", **extra)
    assert manifest_of(status, headers, body)["slot"] == target


def test_anti_rollback_and_never_another_chip(env):
    d = env["d"]
    status, headers, _ = esp32_poll(d, secure_version="2", device="sv2")
    assert status == 204 and headers["x-otad-no-update"] == "secure_version_too_low"
    status, headers, body = esp32_poll(d, secure_version="1", device="sv1")
    assert manifest_of(status, headers, body)["version"] == "1.1.0"
    # esp32c3 and esp32s3 devices are never handed the esp32 image.
    for chip in ("esp32c3", "esp32s3"):
        status, headers, _ = poll(d, product="thermo", chip=chip, layout="ota", slot="ota_0", version="1.0.0",
                                  device=f"chip-{chip}")
        assert status == 204 and headers["x-otad-no-update"] == "no_artifact"
    # An older release is not offered: a 1.1.0 device on the "old" channel stays.
    status, headers, _ = esp32_poll(d, version="1.1.0", channel="old", device="older")
    assert status == 204 and headers["x-otad-no-update"] == "older_release"


def test_offered_release_is_frozen(env):
    d, admin = env["d"], env["admin"]
    esp32_poll(d, device="freezer")  # 1.1.0 offered (also by earlier tests)
    status, _, release = d.json("GET", "/api/v1/products/thermo/releases/1.1.0", token=admin)
    assert status == 200 and release["offered"] is True
    artifact_id = release["artifacts"][0]["id"]
    status, _, body = d.json("DELETE", f"/api/v1/products/thermo/releases/1.1.0/artifacts/{artifact_id}", token=admin)
    assert status == 409, body


# ---------------------------------------------------------------- signatures

def test_signature_verifies_with_the_openssl_command_line(env, tmp_path):
    d = env["d"]
    headers_file, body_file = tmp_path / "headers.txt", tmp_path / "body.json"
    url = d.url(poll_path(product="thermo", chip="esp32", layout="ota", slot="ota_0", version="1.0.0", device="ssl-1"))
    proc = d.curl("-D", str(headers_file), "-o", str(body_file), url)
    assert proc.returncode == 0, proc.stderr
    header = next(l.split(":", 1)[1].strip() for l in headers_file.read_text().splitlines()
                  if l.lower().startswith("x-otad-signature:"))
    keys_file = tmp_path / "keys.json"
    assert d.curl("-o", str(keys_file), d.url("/api/v1/keys")).returncode == 0
    keys = json.loads(keys_file.read_text())["keys"]
    body = body_file.read_bytes()
    code, out = openssl_verify(body, header, keys, str(tmp_path))
    assert code == 0 and out == "Verified OK", out
    # One changed byte fails.
    code, out = openssl_verify(body.replace(b'"slot":"ota_1"', b'"slot":"ota_0"'), header, keys, str(tmp_path))
    assert code != 0 and "Verification failure" in out, out


def test_key_rotation_with_otad_keys(tmp_path):
    d = Otad(config_text=CONFIG).start()
    try:
        admin = d.create_token("admin")
        upload(d, admin, "thermo", "1.1.0", esp32_image("1.1.0"), "esp32", "ota")
        set_channel(d, admin, "thermo", "stable", "1.1.0")
        keys = public_keys(d)
        assert len(keys) == 1 and keys[0]["status"] == "active" and keys[0]["signing"] and keys[0]["alg"] == "es256"
        es_first = keys[0]["key_id"]
        assert f"key_id={es_first}" in d.log()  # created at start, logged

        def signer():
            status, headers, body = esp32_poll(d)
            assert status == 200
            return signature_parts(headers["x-otad-signature"]), headers["x-otad-signature"], body

        # A second (ed25519) key: two active keys, the es256 one still signs.
        out = d.otad("keys", "create", "--algorithm", "ed25519").stdout.splitlines()
        ed_id = out[0].strip()
        assert out[1] == "-----BEGIN PUBLIC KEY-----"
        keys = {k["key_id"]: k for k in wait_for(lambda: len(public_keys(d)) == 2 and public_keys(d), 10)}
        assert keys[ed_id]["status"] == "active" and keys[es_first]["status"] == "active"
        assert keys[es_first]["signing"] and not keys[ed_id]["signing"]
        assert signer()[0]["keyid"] == es_first

        # Retire the es256 key: the ed25519 key signs, verified with openssl pkeyutl.
        d.otad("keys", "retire", "--key-id", es_first)
        def signed_by(key_id):
            result = signer()
            return result if result[0]["keyid"] == key_id else None

        parts, header, body = wait_for(lambda: signed_by(ed_id), 10, what="the ed25519 key to sign")
        assert parts["alg"] == "ed25519"
        code, text = openssl_verify(body, header, public_keys(d), str(tmp_path))
        assert code == 0 and "Signature Verified Successfully" in text, text
        retired = {k["key_id"]: k for k in public_keys(d)}[es_first]
        assert retired["status"] == "retired" and retired["retired_at"]

        # The last active key is kept unless forced.
        proc = d.otad("keys", "retire", "--key-id", ed_id, check=False)
        assert proc.returncode == 1 and "last active signing key" in proc.stderr

        # A new es256 key takes over again; another one rotates it out.
        es_second = d.otad("keys", "create").stdout.splitlines()[0].strip()
        wait_for(lambda: signed_by(es_second), 10, what="the new es256 key to sign")
        proc = d.otad("keys", "create", "--json")
        created = json.loads(proc.stdout)
        assert created["retired_key_id"] == es_second and f"retired the previous es256 key '{es_second}'" in proc.stderr
        listing = json.loads(d.otad("keys", "list", "--json").stdout)
        status_by_id = {k["key_id"]: k["status"] for k in listing}
        assert status_by_id == {es_first: "retired", ed_id: "active", es_second: "retired",
                                created["key_id"]: "active"}
        assert sum(k["signing"] for k in listing) == 1
        status, _, audit = d.json("GET", "/api/v1/audit?limit=50", token=admin)
        assert status == 200
        actions = [e["action"] for e in audit["entries"]]
        assert actions.count("signing_key.create") == 4 and actions.count("signing_key.retire") == 1
    finally:
        d.cleanup()


# ---------------------------------------------------------------- device keys

def test_device_keys_are_enforced_on_poll_report_and_download(env):
    d, admin, viewer = env["d"], env["admin"], env["viewer"]
    upload(d, admin, "locked", "1.0.0", esp32_image("1.0.0", project="locked", seed=9), "esp32", "ota",
           filename="app.bin")
    set_channel(d, admin, "locked", "stable", "1.0.0")
    args = dict(product="locked", version="0.9.0", device="locked-1")
    assert esp32_poll(d, **args)[0] == 200  # open until the first key

    status, _, body = d.json("POST", "/api/v1/products/locked/device-keys", {"name": "fleet"}, token=viewer)
    assert status == 403
    status, headers, created = d.json("POST", "/api/v1/products/locked/device-keys", {"name": "fleet"}, token=admin)
    assert status == 201 and created["name"] == "fleet" and len(created["key"]) >= 40
    assert headers["cache-control"] == "no-store"
    key = created["key"]
    status, _, other = d.json("POST", "/api/v1/products/nonos/device-keys", {"name": "n"}, token=admin)
    assert status == 201

    status, headers, body = esp32_poll(d, **args)
    assert status == 401 and "device key" in json.loads(body)["detail"]
    assert headers["www-authenticate"].startswith("Bearer")
    assert esp32_poll(d, headers={"Authorization": "Bearer wrong-key-wrong-key"}, **args)[0] == 401
    assert esp32_poll(d, headers={"Authorization": f"Bearer {other['key']}"}, **args)[0] == 401  # another product's
    status, headers, body = esp32_poll(d, headers={"Authorization": f"Bearer {key}"}, **args)
    assert status == 200
    # The manifest's pre-signed URL needs no key: esp_https_ota uses it unchanged.
    url = json.loads(body)["url"]
    status, _, data = d.request("GET", url[len(d.url()):])
    assert status == 200 and len(data) == json.loads(body)["size"]
    assert esp32_poll(d, headers={"Authorization": f"token {key}"}, **args)[0] == 200
    assert esp32_poll(d, key=key, **args)[0] == 200
    assert f"key={key}" not in d.log()  # redacted from the access log

    status, _, _ = d.json("POST", "/api/v1/devices/locked-1/report", {"status": "downloading"})
    assert status == 401
    status, _, _ = d.json("POST", "/api/v1/devices/locked-1/report", {"status": "downloading"},
                          headers={"Authorization": f"Bearer {key}"})
    assert status == 204
    # While any product has keys, an unknown device id is not confirmed to a caller without one:
    # the answer is the missing-key 401 a real device of a keyed product gets, not a 404.
    status, _, body = d.json("POST", "/api/v1/devices/no-such-device/report", {"status": "downloading"})
    assert status == 401 and body["type"].endswith("device-key-required")
    assert d.json("POST", "/api/v1/devices/no-such-device/report", {"status": "downloading"},
                  headers={"Authorization": "Bearer wrong-key-wrong-key"})[0] == 401
    status, _, body = d.json("POST", "/api/v1/devices/no-such-device/report", {"status": "downloading"},
                             headers={"Authorization": f"Bearer {other['key']}"})  # any product's key
    assert status == 404 and "first poll" in body["detail"]
    # Friendly download path of the product: through require_device_access too.
    assert d.request("GET", "/firmware/locked/1.0.0/app.bin")[0] == 401
    assert d.request("GET", "/firmware/locked/1.0.0/app.bin", headers={"Authorization": f"Bearer {key}"})[0] == 200

    status, _, listing = d.json("GET", "/api/v1/products/locked/device-keys", token=viewer)
    assert status == 200 and listing["requires_key"] is True
    assert [(k["name"], k["active"]) for k in listing["keys"]] == [("fleet", True)]
    assert "key" not in listing["keys"][0]

    assert d.json("DELETE", "/api/v1/products/locked/device-keys/fleet", token=viewer)[0] == 403
    assert d.json("DELETE", "/api/v1/products/locked/device-keys/fleet", token=admin)[0] == 204
    assert d.json("DELETE", "/api/v1/products/locked/device-keys/fleet", token=admin)[0] == 404
    assert esp32_poll(d, headers={"Authorization": f"Bearer {key}"}, **args)[0] == 200  # open again
    assert esp32_poll(d, **args)[0] == 200
    status, _, audit = d.json("GET", "/api/v1/audit?limit=200", token=admin)
    assert status == 200
    subjects = [(e["action"], e["subject"]) for e in audit["entries"]]
    assert ("device_key.create", "product/locked/device-key/fleet") in subjects
    assert ("device_key.revoke", "product/locked/device-key/fleet") in subjects
    # Clean up the nonos key so the other tests stay open.
    assert d.json("DELETE", "/api/v1/products/nonos/device-keys/n", token=admin)[0] == 204


def test_startup_logs_which_products_are_open(env):
    d = env["d"]
    # The data dir is locked by the running daemon: start a second one on a copy.
    copy = tempfile.mkdtemp(prefix="otad-e2e-copy-")
    subprocess.run(["cp", "-a", d.data_dir + "/.", copy], check=True)
    for name in os.listdir(copy):
        if name.endswith(".lock") or name == "otad-test.log":
            os.unlink(os.path.join(copy, name))
    d2 = Otad(data_dir=copy, config_text=CONFIG).start()
    try:
        line = next(l for l in d2.log().splitlines() if "device access" in l)
        assert "products open to any device" in line
        products = re.search(r"products=(\S+)", line).group(1).split(",")
        assert {"thermo", "nonos", "half", "wide"} <= set(products)
    finally:
        d2.stop()
        shutil.rmtree(copy, ignore_errors=True)


# ---------------------------------------------------------------- registry, reports, rollback

def test_report_and_implicit_rollback(env):
    d, viewer = env["d"], env["viewer"]
    dev = "rollback-1"
    assert esp32_poll(d, version="1.0.0", device=dev)[0] == 200  # offered 1.1.0
    status, _, body = d.json("POST", f"/api/v1/devices/{dev}/report", {"status": "installing", "version": "1.1.0",
                                                                        "detail": "writing ota_1"})
    assert status == 204, body
    assert esp32_poll(d, version="1.0.0", device=dev)[0] == 200  # back on 1.0.0: rolled back

    status, _, device = d.json("GET", f"/api/v1/devices/{dev}", token=viewer)
    assert status == 200
    assert device["last_status"] == "rolled_back" and device["last_status_version"] == "1.1.0"
    assert device["version"] == "1.0.0" and device["offered_version"] == "1.1.0"
    kinds = [e["kind"] for e in reversed(device["history"])]
    assert kinds == ["first_seen", "poll_offer", "report", "rolled_back"]
    rolled = device["history"][0]
    assert rolled["version"] == "1.1.0"
    assert rolled["detail"] == {"source": "implicit", "running": "1.0.0", "reason": "installing_reported"}
    report = device["history"][1]
    assert report["status"] == "installing" and report["detail"] == {"detail": "writing ota_1"}
    assert "rolled_back" in d.json("GET", "/api/v1/devices?status=rolled_back&product=thermo", token=viewer)[2]["devices"][0]["last_status"]


def test_report_validation(env):
    d = env["d"]
    esp32_poll(d, version="1.1.0", device="reporter")
    status, _, body = d.json("POST", "/api/v1/devices/reporter/report", {"status": "success"})
    assert status == 400 and body["valid"] == ["downloading", "downloaded", "installing", "installed", "failed",
                                                "rolled_back"]
    assert d.json("POST", "/api/v1/devices/reporter/report", {"version": "1"})[0] == 400
    assert d.json("POST", "/api/v1/devices/reporter/report", {"status": "installed", "extra": 1})[0] == 400
    assert d.request("POST", "/api/v1/devices/reporter/report", body=b"not json")[0] == 400
    status, _, body = d.json("POST", "/api/v1/devices/never-seen/report", {"status": "installed"})
    assert status == 404 and "first poll" in body["detail"]
    assert d.json("POST", "/api/v1/devices/reporter/report", {"status": "installed", "version": "1.1.0"})[0] == 204


def test_device_listing_filters_and_pages(env):
    d, viewer = env["d"], env["viewer"]
    for i in range(3):
        esp32_poll(d, version="0.5.0", device=f"list-{i}")
    esp32_poll(d, version="1.1.0", device="list-current")
    assert d.json("GET", "/api/v1/devices")[0] == 401
    status, _, page = d.json("GET", "/api/v1/devices?product=thermo&version=0.5.0", token=viewer)
    assert status == 200
    assert [x["id"] for x in page["devices"]] == ["list-0", "list-1", "list-2"] and page["total"] == 3
    first = page["devices"][0]
    assert (first["product"], first["chip"], first["layout"], first["slot"], first["channel"]) == \
        ("thermo", "esp32", "ota", "ota_0", "stable")
    assert first["remote_address"] == "127.0.0.1" and first["offered_version"] == "1.1.0"

    status, _, p1 = d.json("GET", "/api/v1/devices?product=thermo&version=0.5.0&limit=2", token=viewer)
    assert [x["id"] for x in p1["devices"]] == ["list-0", "list-1"] and p1["next_after"] == "list-1"
    status, _, p2 = d.json("GET", f"/api/v1/devices?product=thermo&version=0.5.0&limit=2&after={p1['next_after']}",
                           token=viewer)
    assert [x["id"] for x in p2["devices"]] == ["list-2"] and p2["next_after"] is None
    assert d.json("GET", "/api/v1/devices?status=bogus", token=viewer)[0] == 400
    assert d.json("GET", "/api/v1/devices?product=nosuch", token=viewer)[0] == 404
    assert d.json("GET", "/api/v1/devices/nosuch", token=viewer)[0] == 404


# ---------------------------------------------------------------- HTTP/1.0 and the plain listener

def raw_exchange(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for l in lines[1:]:
        name, _, value = l.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers, body


def test_http10_poll_on_the_plain_listener(env):
    d = env["d"]
    path = poll_path(product="nonos", chip="esp8266", layout="512+512", slot="user1", version="1.0.0", device="h10")
    status_line, headers, body = raw_exchange(
        d.http_port, f"GET {path} HTTP/1.0\r\nHost: {d.http}\r\n\r\n".encode())
    assert re.match(r"HTTP/1\.[01] 200 ", status_line), status_line
    assert int(headers["content-length"]) == len(body)  # read to the close: exact length
    assert "chunked" not in headers.get("transfer-encoding", "")
    m = json.loads(body)
    assert m["url"].startswith(f"http://{d.http}/api/v1/blobs/") and m["slot"] == "user2"
    # The plain-HTTP URL works as is, over HTTP/1.0 too.
    url_path = m["url"][len(f"http://{d.http}"):]
    status_line, headers, data = raw_exchange(d.http_port, f"GET {url_path} HTTP/1.0\r\nHost: {d.http}\r\n\r\n".encode())
    assert " 200 " in status_line and data == env["images"]["nonos-user2"]
    # curl --http1.0 agrees; no Host header at all cannot build a URL.
    proc = d.curl("--http1.0", "-s", "-o", "/dev/null", "-w", "%{http_code}", d.http_url(path))
    assert proc.stdout == b"200"
    status_line, _, body = raw_exchange(d.http_port, f"GET {path} HTTP/1.0\r\n\r\n".encode())
    assert " 400 " in status_line and b"Host" in body


def test_pending_sightings_are_flushed_on_shutdown():
    config = json.dumps({"device_flush_interval_ms": 600000})  # the timer never fires in this test
    d = Otad(config_text=config).start()
    try:
        admin = d.create_token("admin")
        upload(d, admin, "thermo", "1.1.0", esp32_image("1.1.0"), "esp32", "ota")
        set_channel(d, admin, "thermo", "stable", "1.1.0")
        assert esp32_poll(d, device="late-1")[0] == 200
        assert d.stop() == 0
        db = sqlite3.connect(os.path.join(d.data_dir, "otad.db"))
        try:
            row = db.execute("SELECT version, offered_version FROM devices WHERE id = 'late-1'").fetchone()
        finally:
            db.close()
        assert row == ("1.0.0", "1.1.0")
    finally:
        d.cleanup()


def test_report_right_after_a_first_poll_is_never_refused():
    # A report that lands while the registry flushes the device's first sighting
    # once found it neither pending nor in the database (401/404). Flushing every
    # 10 ms makes that window frequent: about 1 report in 60 was refused before the fix.
    otad = Otad(env={"OTAD_DEVICE_FLUSH_INTERVAL_MS": "10"}).start()
    try:
        admin = otad.create_token()
        status, _, body = otad.request("POST", "/api/v1/products/open/releases/1.0.0/artifacts?chip=generic&filename=x.bin",
                                       body=os.urandom(1000), token=admin,
                                       headers={"Content-Type": "application/octet-stream"})
        assert status == 201, body
        status, _, body = otad.json("PUT", "/api/v1/products/open/channels/stable", {"version": "1.0.0"}, token=admin)
        assert status == 200, body
        import http.client
        conn = http.client.HTTPSConnection("127.0.0.1", otad.port, context=otad.ssl_context(), timeout=10)
        refused = []
        for i in range(1500):
            conn.request("GET", f"/api/v1/update?product=open&chip=generic&layout=single&version=1.0.0&device=race-{i}")
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 204, answer.status
            conn.request("POST", f"/api/v1/devices/race-{i}/report", body=json.dumps({"status": "installed"}),
                         headers={"Content-Type": "application/json"})
            answer = conn.getresponse()
            answer.read()
            if answer.status != 204:
                refused.append((i, answer.status))
        assert refused == []
    finally:
        otad.cleanup()
