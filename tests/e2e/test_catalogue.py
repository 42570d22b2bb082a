"""Firmware catalogue and operator REST API against the real daemon, with real curl.

Most tests share one daemon (module fixture) and use their own product names; tests
that need other settings (small max_artifact_bytes, 300 MiB for the big upload)
start their own.
"""
import base64
import hashlib
import json
import os
import subprocess
import time
import urllib.parse

import pytest

from catalogue_helpers import curl_json, make_image, write_bytes
from otad_harness import Otad, wait_for

API = "/api/v1"


# -- helpers -------------------------------------------------------------------

class Daemon:
    """A running daemon plus one token of each role."""

    def __init__(self, otad):
        self.d = otad
        self.admin = otad.create_token("admin", name="admin-e2e")
        self.uploader = otad.create_token("uploader", name="uploader-e2e")
        self.viewer = otad.create_token("viewer", name="viewer-e2e")


@pytest.fixture(scope="module")
def daemon():
    d = Otad().start()
    yield Daemon(d)
    d.cleanup()


def upload_url(d, product, version, **query):
    q = urllib.parse.urlencode(query)
    return d.url(f"{API}/products/{product}/releases/{urllib.parse.quote(version, safe='')}/artifacts" +
                 (f"?{q}" if q else ""))


def upload_raw(d, tmp_path, token, product, version, path, headers=(), **query):
    args = ["-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/octet-stream"]
    for h in headers:
        args += ["-H", h]
    args += ["--data-binary", f"@{path}", upload_url(d, product, version, **query)]
    return curl_json(d, tmp_path, args)


def upload_form(d, tmp_path, token, product, version, path, fields=(), headers=(), **query):
    args = ["-H", f"Authorization: Bearer {token}"]
    for h in headers:
        args += ["-H", h]
    args += ["-F", f"file=@{path};type=application/octet-stream"]
    for name, value in fields:
        args += ["-F", f"{name}={value}"]
    args += [upload_url(d, product, version, **query)]
    return curl_json(d, tmp_path, args)


def blob_path(d, sha256):
    return os.path.join(d.data_dir, "blobs", sha256[:2], sha256[2:4], sha256)


def temp_files(d):
    return os.listdir(os.path.join(d.data_dir, "blobs", "tmp"))


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def call(d, method, path, body=None, token=None):
    """JSON request with our own client; returns (status, parsed body, headers)."""
    status, headers, parsed = d.json(method, path, body=body, token=token)
    return status, parsed, headers


def get(daemon, path, token=None):
    return call(daemon.d, "GET", API + path, token=token or daemon.viewer)


def problem_type(body):
    return body["type"].rsplit("/", 1)[1]


# -- uploads -------------------------------------------------------------------

def test_raw_upload_with_curl_returns_the_inspected_artifact(daemon, tmp_path):
    d = daemon.d
    img = make_image(tmp_path, "fw.bin", "--kind", "esp32", "--chip", "esp32c3", "--version", "1.4.0",
                     "--project", "thermostat", "--idf-ver", "v5.2.1", "--secure-version", "3")
    status, body, _ = upload_raw(d, tmp_path, daemon.uploader, "thermostat", "1.4.0", img["path"], chip="esp32c3")
    assert status == 201, body
    assert body["product"] == "thermostat" and body["version"] == "1.4.0"
    assert (body["chip"], body["layout"], body["slot"], body["filename"]) == ("esp32c3", "ota", "", "firmware.bin")
    assert body["size"] == img["size"] and body["sha256"] == img["sha256"] and body["md5"] == img["md5"]
    assert body["created_at"].endswith("Z")
    image = body["image"]
    assert image["format"] == "esp32" and image["chip"] == "esp32c3" and image["chip_id"] == 5
    app = image["app_desc"]
    assert (app["version"], app["project_name"], app["idf_ver"], app["secure_version"]) == \
        ("1.4.0", "thermostat", "v5.2.1", 3)
    assert len(app["app_elf_sha256"]) == 64
    assert image["appended_sha256"] is not None
    assert file_sha256(blob_path(d, img["sha256"])) == img["sha256"]
    assert temp_files(d) == []

    status, release, _ = get(daemon, "/products/thermostat/releases/1.4.0")
    assert status == 200
    assert [a["id"] for a in release["artifacts"]] == [body["id"]]
    assert release["artifacts"][0]["image"] == image
    status, product, _ = get(daemon, "/products/thermostat")
    assert status == 200 and product["project_name"] == "thermostat" and product["latest_version"] == "1.4.0"
    status, one, _ = get(daemon, f"/products/thermostat/releases/1.4.0/artifacts/{body['id']}")
    assert status == 200 and one == body


def test_multipart_upload_with_curl_form(daemon, tmp_path):
    d = daemon.d
    img = make_image(tmp_path, "doorbell-2.0.bin", "--kind", "esp32", "--chip", "esp32s3", "--version", "2.0.0",
                     "--project", "doorbell")
    status, body, _ = upload_form(d, tmp_path, daemon.uploader, "doorbell", "2.0.0", img["path"],
                                  fields=[("chip", "esp32s3"), ("layout", "ota")])
    assert status == 201, body
    assert body["chip"] == "esp32s3" and body["sha256"] == img["sha256"] and body["size"] == img["size"]
    assert body["filename"] == "doorbell-2.0.bin"  # the form part's file name
    # Same bytes as a raw upload: idempotent, the same artifact.
    status, again, _ = upload_raw(d, tmp_path, daemon.uploader, "doorbell", "2.0.0", img["path"], chip="esp32s3")
    assert status == 200 and again["id"] == body["id"]


def test_multipart_fields_after_the_file_and_nonos_slots(daemon, tmp_path):
    d = daemon.d
    for slot in ("user1", "user2"):
        img = make_image(tmp_path, f"{slot}.bin", "--kind", "esp8266-v2", "--slot", slot, "--flash-map", "2")
        status, body, _ = upload_form(d, tmp_path, daemon.uploader, "plug", "1.0.0", img["path"],
                                      fields=[("chip", "esp8266"), ("layout", "512+512"), ("slot", slot)])
        assert status == 201, body
        assert (body["layout"], body["slot"], body["filename"]) == ("512+512", slot, f"{slot}.bin")
        assert body["image"]["v2"]["slot"] == slot
    status, release, _ = get(daemon, "/products/plug/releases/1.0.0")
    assert [a["slot"] for a in release["artifacts"]] == ["user1", "user2"]


def test_multipart_problems_are_400s(daemon, tmp_path):
    d = daemon.d
    img = make_image(tmp_path, "fw.bin", "--kind", "esp32", "--version", "1.0.0", "--project", "mp")
    # No file part at all.
    status, body, _ = curl_json(d, tmp_path, ["-H", f"Authorization: Bearer {daemon.uploader}", "-F", "chip=esp32",
                                              upload_url(d, "mp", "1.0.0")])
    assert status == 400 and "no 'file' part" in body["detail"]
    # An unknown field is named.
    status, body, _ = upload_form(d, tmp_path, daemon.uploader, "mp", "1.0.0", img["path"],
                                  fields=[("chip", "esp32"), ("chp", "esp32")])
    assert status == 400 and "'chp'" in body["detail"]
    # Query and field disagree.
    status, body, _ = upload_form(d, tmp_path, daemon.uploader, "mp", "1.0.0", img["path"],
                                  fields=[("chip", "esp32")], chip="esp32s3")
    assert status == 400 and "chip" in body["detail"]
    # A body cut before its closing boundary.
    boundary = "xyzzy"
    raw = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"chip\"\r\n\r\nesp32\r\n"
           f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\r\n").encode() + \
        open(img["path"], "rb").read()
    status, _, data = d.request("POST", f"{API}/products/mp/releases/1.0.0/artifacts", body=raw,
                                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                                token=daemon.uploader)
    assert status == 400 and b"closing boundary" in data
    # No boundary parameter.
    status, _, data = d.request("POST", f"{API}/products/mp/releases/1.0.0/artifacts", body=b"x",
                                headers={"Content-Type": "multipart/form-data"}, token=daemon.uploader)
    assert status == 400 and b"boundary" in data
    assert temp_files(d) == []
    assert get(daemon, "/products/mp")[0] == 404


def test_digest_mismatch_is_400_and_stores_nothing(daemon, tmp_path):
    d = daemon.d
    img = make_image(tmp_path, "fw.bin", "--kind", "esp32", "--version", "1.0.0", "--project", "digests", "--seed", "7")
    wrong = hashlib.sha256(b"something else").digest()
    right = bytes.fromhex(img["sha256"])

    cases = [
        ("raw", [f"Content-Digest: sha-256=:{base64.b64encode(wrong).decode()}:"]),
        ("raw", [f"X-Checksum-Sha256: {wrong.hex()}"]),
        ("form", [f"X-Checksum-Sha256: {wrong.hex()}"]),
    ]
    for kind, headers in cases:
        if kind == "raw":
            status, body, _ = upload_raw(d, tmp_path, daemon.uploader, "digests", "1.0.0", img["path"],
                                         headers=headers, chip="esp32")
        else:
            status, body, _ = upload_form(d, tmp_path, daemon.uploader, "digests", "1.0.0", img["path"],
                                          headers=headers, fields=[("chip", "esp32")])
        assert status == 400, (kind, headers, body)
        assert problem_type(body) == "digest-mismatch", body
        assert not os.path.exists(blob_path(d, img["sha256"]))
        assert temp_files(d) == []
    assert get(daemon, "/products/digests")[0] == 404

    # A malformed digest header is a 400 of its own.
    status, body, _ = upload_raw(d, tmp_path, daemon.uploader, "digests", "1.0.0", img["path"],
                                 headers=["Content-Digest: sha-256=nope"], chip="esp32")
    assert status == 400 and problem_type(body) == "invalid-digest"

    # Multipart: Content-Digest covers the whole body (RFC 9530), checked after reading it.
    boundary = "b0undary"
    content = open(img["path"], "rb").read()
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"chip\"\r\n\r\nesp32\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"fw.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
               "Content-Digest": f"sha-256=:{base64.b64encode(wrong).decode()}:"}
    status, _, data = d.request("POST", f"{API}/products/digests/releases/1.0.0/artifacts", body=form,
                                headers=headers, token=daemon.uploader)
    assert status == 400 and b"digest-mismatch" in data
    headers["Content-Digest"] = f"sha-256=:{base64.b64encode(hashlib.sha256(form).digest()).decode()}:"
    status, _, data = d.request("POST", f"{API}/products/digests/releases/1.0.0/artifacts", body=form,
                                headers=headers, token=daemon.uploader)
    assert status == 201, data

    # Matching digests (both headers at once) are accepted.
    status, body, _ = upload_raw(d, tmp_path, daemon.uploader, "digests", "1.0.0", img["path"],
                                 headers=[f"Content-Digest: sha-512=:AAAA:, sha-256=:{base64.b64encode(right).decode()}:",
                                          f"X-Checksum-Sha256: {img['sha256'].upper()}"], chip="esp32")
    assert status == 200, body
    assert file_sha256(blob_path(d, img["sha256"])) == img["sha256"]


def test_oversize_uploads_get_413_with_content_length_and_chunked(otad_factory, tmp_path):
    limit = 64 * 1024
    d = otad_factory(env={"OTAD_MAX_ARTIFACT_BYTES": str(limit)})
    token = d.create_token("uploader")
    big = write_bytes(tmp_path, "big.bin", os.urandom(limit + 1))
    exact = write_bytes(tmp_path, "exact.bin", os.urandom(limit))

    status, body, _ = upload_raw(d, tmp_path, token, "big", "1", big["path"], chip="generic")
    assert status == 413 and problem_type(body) == "payload-too-large", body
    status, body, _ = upload_raw(d, tmp_path, token, "big", "1", big["path"], headers=["Transfer-Encoding: chunked"],
                                 chip="generic")
    assert status == 413 and problem_type(body) == "payload-too-large", body
    assert str(limit) in body["detail"]
    status, body, _ = upload_form(d, tmp_path, token, "big", "1", big["path"], fields=[("chip", "generic")])
    assert status == 413, body
    status, body, _ = upload_form(d, tmp_path, token, "big", "1", big["path"], fields=[("chip", "generic")],
                                  headers=["Transfer-Encoding: chunked"])
    assert status == 413, body
    # Far over the limit, with a length: refused before the body is read.
    huge = write_bytes(tmp_path, "huge.bin", b"\0" * (4 * 1024 * 1024))
    status, body, _ = upload_raw(d, tmp_path, token, "big", "1", huge["path"], chip="generic")
    assert status == 413
    assert temp_files(d) == []
    assert not os.path.exists(os.path.join(d.data_dir, "blobs", big["sha256"][:2], big["sha256"][2:4]))

    # Exactly the limit is fine, raw or chunked or as a form.
    status, body, _ = upload_raw(d, tmp_path, token, "big", "1", exact["path"], headers=["Transfer-Encoding: chunked"],
                                 chip="generic")
    assert status == 201 and body["size"] == limit
    status, body, _ = upload_form(d, tmp_path, token, "big", "1", exact["path"], fields=[("chip", "generic")])
    assert status == 200 and body["size"] == limit


def test_image_problems_are_422_with_the_precise_code(daemon, tmp_path):
    d = daemon.d
    cases = [
        # (generator args, upload query, expected code, words the detail must contain)
        (["--kind", "esp32", "--chip", "esp32s3", "--project", "img", "--version", "1.0.0"],
         {"chip": "esp32"}, "chip-mismatch", ["esp32s3", "esp32"]),
        (["--kind", "esp8266-v2", "--slot", "user1", "--flash-map", "2"],
         {"chip": "esp8266", "layout": "512+512", "slot": "user2"}, "slot-mismatch", ["user1", "user2"]),
        (["--kind", "esp8266-v2", "--slot", "user2", "--flash-map", "2"],
         {"chip": "esp8266", "layout": "512+512", "slot": "user1"}, "slot-mismatch", ["user2"]),
        (["--kind", "esp8266-v2", "--slot", "user1", "--flash-map", "6"],
         {"chip": "esp8266", "layout": "512+512", "slot": "user1"}, "layout-mismatch", ["1024+1024", "512+512"]),
        (["--kind", "esp32", "--project", "img", "--version", "1.0.0", "--break", "bad-checksum"],
         {"chip": "esp32"}, "bad-checksum", ["checksum"]),
        (["--kind", "esp32", "--project", "img", "--version", "1.0.0", "--break", "bad-appended-hash"],
         {"chip": "esp32"}, "bad-appended-hash", ["SHA-256"]),
        (["--kind", "esp32", "--project", "img", "--version", "1.0.0", "--break", "truncated-segment"],
         {"chip": "esp32"}, "truncated-segment", []),
        (["--kind", "esp32", "--project", "img", "--version", "1.0.0", "--break", "bad-magic"],
         {"chip": "esp32"}, "bad-magic", []),
        (["--kind", "esp8266-v2", "--slot", "user1", "--break", "bad-crc"],
         {"chip": "esp8266", "layout": "512+512", "slot": "user1"}, "bad-crc", []),
        (["--kind", "esp32", "--project", "img", "--version", "9.9.9"], {"chip": "esp32"}, "version-mismatch",
         ["9.9.9", "1.0.0", "version_mismatch=allow"]),
    ]
    for i, (args, query, code, words) in enumerate(cases):
        # Own seeds: the shared daemon may already hold the default images of other tests.
        img = make_image(tmp_path, f"img{i}.bin", *args, "--seed", str(100 + i))
        status, body, _ = upload_raw(d, tmp_path, daemon.uploader, "img", "1.0.0", img["path"], **query)
        assert status == 422, (code, body)
        assert problem_type(body) == "invalid-image" and body["code"] == code, body
        for w in words:
            assert w in body["detail"], (w, body["detail"])
        assert not os.path.exists(blob_path(d, img["sha256"])), code
    assert temp_files(d) == []
    assert get(daemon, "/products/img")[0] == 404

    # version_mismatch=allow accepts the last one.
    img = make_image(tmp_path, "v.bin", "--kind", "esp32", "--project", "img", "--version", "9.9.9")
    status, body, _ = upload_raw(d, tmp_path, daemon.uploader, "img", "1.0.0", img["path"], chip="esp32",
                                 version_mismatch="allow")
    assert status == 201 and body["image"]["app_desc"]["version"] == "9.9.9"


def test_project_name_must_match_unless_the_product_allows_it(daemon, tmp_path):
    d = daemon.d
    first = make_image(tmp_path, "a.bin", "--kind", "esp32", "--project", "lamp", "--version", "1.0.0")
    other = make_image(tmp_path, "b.bin", "--kind", "esp32", "--project", "toaster", "--version", "1.1.0")
    assert upload_raw(d, tmp_path, daemon.uploader, "lamp", "1.0.0", first["path"], chip="esp32")[0] == 201
    status, body, _ = upload_raw(d, tmp_path, daemon.uploader, "lamp", "1.1.0", other["path"], chip="esp32")
    assert status == 422 and body["code"] == "project-mismatch" and "lamp" in body["detail"]
    status, body, _ = call(d, "PATCH", f"{API}/products/lamp", body={"allow_project_mismatch": True},
                             token=daemon.uploader)
    assert status == 403
    status, body, _ = call(d, "PATCH", f"{API}/products/lamp", body={"allow_project_mismatch": True},
                             token=daemon.admin)
    assert status == 200 and body["allow_project_mismatch"] is True
    assert upload_raw(d, tmp_path, daemon.uploader, "lamp", "1.1.0", other["path"], chip="esp32")[0] == 201
    status, body, _ = call(d, "PATCH", f"{API}/products/lamp", body={"allow_project_mismatch": "yes"},
                             token=daemon.admin)
    assert status == 400


def test_declarations_are_validated_with_the_valid_values(daemon, tmp_path):
    d = daemon.d
    img = write_bytes(tmp_path, "x.bin", b"opaque bytes")
    up = daemon.uploader

    status, body, _ = upload_raw(d, tmp_path, up, "v", "1.0.0", img["path"], chip="esp31")
    assert status == 400 and problem_type(body) == "invalid-chip"
    assert "esp32c3" in body["detail"] and "generic" in body["valid_chips"]
    status, body, _ = upload_raw(d, tmp_path, up, "v", "1.0.0", img["path"])
    assert status == 400 and "chip is required" in body["detail"]
    status, body, _ = upload_raw(d, tmp_path, up, "v", "1.0.0", img["path"], chip="esp32", layout="4096+4096")
    assert status == 400 and problem_type(body) == "invalid-layout" and "512+512" in body["detail"]
    status, body, _ = upload_raw(d, tmp_path, up, "v", "1.0.0", img["path"], chip="esp8266", layout="512+512")
    assert status == 400 and problem_type(body) == "invalid-slot" and body["valid_slots"] == ["user1", "user2"]
    status, body, _ = upload_raw(d, tmp_path, up, "v", "1.0.0", img["path"], chip="esp32", layout="512+512",
                                 slot="user1")
    assert status == 400 and problem_type(body) == "invalid-layout"
    for bad in ("../evil.bin", ".hidden", "a b.bin", "x" * 129):
        status, body, _ = upload_raw(d, tmp_path, up, "v", "1.0.0", img["path"], chip="generic", filename=bad)
        assert status == 400 and problem_type(body) == "invalid-filename", bad
    status, body, _ = upload_raw(d, tmp_path, up, "Bad_Name", "1.0.0", img["path"], chip="generic")
    assert status == 400 and problem_type(body) == "invalid-product"
    status, body, _ = upload_raw(d, tmp_path, up, "v", "1.0 beta", img["path"], chip="generic")
    assert status == 400 and problem_type(body) == "invalid-version"
    status, body, _ = upload_raw(d, tmp_path, up, "v", "1" * 65, img["path"], chip="generic")
    assert status == 400 and problem_type(body) == "invalid-version"
    status, body, _ = upload_raw(d, tmp_path, up, "v", "1.0.0", img["path"], chip="generic", replace="maybe")
    assert status == 400
    status, body, _ = upload_raw(d, tmp_path, up, "v", "1.0.0", write_bytes(tmp_path, "e.bin", b"")["path"],
                                 chip="generic")
    assert status == 400 and problem_type(body) == "empty-artifact"
    assert get(daemon, "/products/v")[0] == 404
    # Case and separators in chip and layout names are forgiven; '+' may arrive as a space.
    status, body, _ = upload_raw(d, tmp_path, up, "v", "1.0.0", img["path"], chip="GENERIC", filename="app_1.0+b.bin")
    assert status == 201 and body["chip"] == "generic" and body["filename"] == "app_1.0+b.bin"


def test_idempotent_reupload_conflict_and_admin_replace(daemon, tmp_path):
    d = daemon.d
    a = make_image(tmp_path, "a.bin", "--kind", "esp32", "--project", "fan", "--version", "3.0.0", "--seed", "1")
    b = make_image(tmp_path, "b.bin", "--kind", "esp32", "--project", "fan", "--version", "3.0.0", "--seed", "2")
    status, first, _ = upload_raw(d, tmp_path, daemon.uploader, "fan", "3.0.0", a["path"], chip="esp32")
    assert status == 201
    status, again, _ = upload_raw(d, tmp_path, daemon.uploader, "fan", "3.0.0", a["path"], chip="esp32")
    assert status == 200 and again == first

    status, body, _ = upload_raw(d, tmp_path, daemon.uploader, "fan", "3.0.0", b["path"], chip="esp32")
    assert status == 409 and problem_type(body) == "artifact-exists" and body["artifact_id"] == first["id"]
    assert not os.path.exists(blob_path(d, b["sha256"]))
    status, body, _ = upload_raw(d, tmp_path, daemon.uploader, "fan", "3.0.0", b["path"], chip="esp32", replace="true")
    assert status == 403 and "admin" in body["detail"]

    status, replaced, _ = upload_raw(d, tmp_path, daemon.admin, "fan", "3.0.0", b["path"], chip="esp32",
                                     replace="true")
    assert status == 201, replaced
    assert replaced["sha256"] == b["sha256"] and replaced["replaced_artifact_id"] == first["id"]
    assert replaced["id"] != first["id"]
    assert not os.path.exists(blob_path(d, a["sha256"]))  # nothing references the old bytes
    status, release, _ = get(daemon, "/products/fan/releases/3.0.0")
    assert [x["sha256"] for x in release["artifacts"]] == [b["sha256"]]


def test_identical_bytes_are_stored_once(daemon, tmp_path):
    d = daemon.d
    img = write_bytes(tmp_path, "same.bin", b"same generic bytes" * 100)
    for version in ("1", "2"):
        assert upload_raw(d, tmp_path, daemon.uploader, "dedup", version, img["path"], chip="generic")[0] == 201
    blob_dir = os.path.dirname(blob_path(d, img["sha256"]))
    assert os.listdir(blob_dir) == [img["sha256"]]
    # Deleting one release keeps the bytes the other still uses.
    assert d.request("DELETE", f"{API}/products/dedup/releases/1", token=daemon.admin)[0] == 204
    assert file_sha256(blob_path(d, img["sha256"])) == img["sha256"]
    assert d.request("DELETE", f"{API}/products/dedup/releases/2", token=daemon.admin)[0] == 204
    assert not os.path.exists(blob_path(d, img["sha256"]))


def test_channels_and_delete_rules(daemon, tmp_path):
    d = daemon.d
    admin = daemon.admin
    one = write_bytes(tmp_path, "one.bin", b"release one")
    two = write_bytes(tmp_path, "two.bin", b"release two")
    s, a1, _ = upload_raw(d, tmp_path, daemon.uploader, "kettle", "1.0.0", one["path"], chip="generic")
    assert s == 201
    assert upload_raw(d, tmp_path, daemon.uploader, "kettle", "1.1.0", two["path"], chip="generic")[0] == 201

    put = lambda channel, body, token=admin: call(d, "PUT", f"{API}/products/kettle/channels/{channel}", body=body,
                                                   token=token)
    status, body, _ = put("stable", {"version": "9.9.9"})
    assert status == 404
    status, body, _ = put("stable", {"version": "1.0.0"}, token=daemon.uploader)
    assert status == 403  # channel moves are admin-only
    status, body, _ = put("stable", {"version": "1.0.0", "allow_rollback": False})
    assert status == 200
    assert body == {"product": "kettle", "channel": "stable", "version": "1.0.0", "allow_rollback": False,
                    "updated_at": body["updated_at"]}
    status, body, _ = put("beta", {"version": "1.1.0", "allow_rollback": True})
    assert status == 200 and body["allow_rollback"] is True
    assert put("stable", {"versoin": "1.0.0"})[0] == 400
    assert put("stable", {"version": 1})[0] == 400
    assert d.request("PUT", f"{API}/products/kettle/channels/stable", body=b"{not json", token=admin)[0] == 400
    assert put("Bad%20Name", {"version": "1.0.0"})[0] == 400

    status, body, _ = get(daemon, "/products/kettle/channels")
    assert [(c["channel"], c["version"]) for c in body["channels"]] == [("beta", "1.1.0"), ("stable", "1.0.0")]
    status, body, _ = get(daemon, "/products/kettle/channels/stable")
    assert status == 200 and body["version"] == "1.0.0"

    # A release a channel points at can't lose its artifacts or go away.
    status, body, _ = call(d, "DELETE", f"{API}/products/kettle/releases/1.0.0", token=admin)
    assert status == 409 and problem_type(body) == "release-on-channel" and body["channels"] == ["stable"]
    status, body, _ = call(d, "DELETE", f"{API}/products/kettle/releases/1.0.0/artifacts/{a1['id']}", token=admin)
    assert status == 409 and "stable" in body["detail"]
    assert file_sha256(blob_path(d, one["sha256"])) == one["sha256"]

    # Move the channel away, then both deletes work and the blob goes.
    assert put("stable", {"version": "1.1.0"})[0] == 200
    assert d.request("DELETE", f"{API}/products/kettle/releases/1.0.0/artifacts/{a1['id']}", token=admin)[0] == 204
    assert not os.path.exists(blob_path(d, one["sha256"]))
    assert call(d, "DELETE", f"{API}/products/kettle/releases/1.0.0/artifacts/{a1['id']}", token=admin)[0] == 404
    # An empty release can't be put on a channel.
    status, body, _ = put("stable", {"version": "1.0.0"})
    assert status == 400 and problem_type(body) == "release-empty"
    assert d.request("DELETE", f"{API}/products/kettle/releases/1.0.0", token=admin)[0] == 204
    assert get(daemon, "/products/kettle/releases/1.0.0")[0] == 404
    assert d.request("DELETE", f"{API}/products/kettle/channels/beta", token=admin)[0] == 204
    assert get(daemon, "/products/kettle/channels/beta")[0] == 404


def test_releases_are_listed_newest_first_by_version_with_pagination(daemon, tmp_path):
    d = daemon.d
    uploaded = ["1.9.2", "1.10.0", "0.9.0", "1.10.0-rc.1", "2.0.0-beta.1", "1.10.1", "v1.2.0"]
    for i, v in enumerate(uploaded):
        img = write_bytes(tmp_path, f"{i}.bin", f"version {v}".encode())
        assert upload_raw(d, tmp_path, daemon.uploader, "oven", v, img["path"], chip="generic")[0] == 201
    expected = ["2.0.0-beta.1", "1.10.1", "1.10.0", "1.10.0-rc.1", "1.9.2", "v1.2.0", "0.9.0"]
    seen, cursor, pages = [], None, 0
    while True:
        path = "/products/oven/releases?limit=3" + (f"&cursor={cursor}" if cursor else "")
        status, body, _ = get(daemon, path)
        assert status == 200
        seen += [r["version"] for r in body["releases"]]
        assert all(r["artifact_count"] == 1 for r in body["releases"])
        cursor = body["next_cursor"]
        pages += 1
        assert pages <= 5
        if not cursor:
            break
    assert seen == expected and pages == 3
    assert get(daemon, "/products/oven/releases")[1]["next_cursor"] is None
    assert get(daemon, "/products/oven/releases?limit=0")[0] == 400
    assert get(daemon, "/products/oven/releases?limit=abc")[0] == 400
    assert get(daemon, "/products/oven/releases?cursor=garbage")[0] == 400
    status, body, _ = get(daemon, "/products")
    assert status == 200 and "oven" in [p["name"] for p in body["products"]]
    assert get(daemon, "/products/oven")[1]["latest_version"] == "2.0.0-beta.1"
    assert get(daemon, "/products/nothing-here")[0] == 404


def test_audit_lists_every_change_newest_first(daemon, tmp_path):
    d = daemon.d
    img = write_bytes(tmp_path, "audit.bin", b"audited bytes")
    s, art, _ = upload_raw(d, tmp_path, daemon.uploader, "audited", "1.0.0", img["path"], chip="generic")
    assert s == 201
    assert call(d, "PUT", f"{API}/products/audited/channels/stable", body={"version": "1.0.0"},
                  token=daemon.admin)[0] == 200
    assert d.request("DELETE", f"{API}/products/audited/channels/stable", token=daemon.admin)[0] == 204
    assert d.request("DELETE", f"{API}/products/audited/releases/1.0.0/artifacts/{art['id']}",
                     token=daemon.admin)[0] == 204
    assert d.request("DELETE", f"{API}/products/audited/releases/1.0.0", token=daemon.admin)[0] == 204

    status, body, _ = call(d, "GET", f"{API}/audit?limit=500", token=daemon.admin)
    assert status == 200
    mine = [e for e in body["entries"] if "audited" in e["subject"]]
    assert [(e["action"], e["actor"]) for e in mine] == [
        ("release.delete", "token:admin-e2e"),
        ("artifact.delete", "token:admin-e2e"),
        ("channel.delete", "token:admin-e2e"),
        ("channel.set", "token:admin-e2e"),
        ("artifact.upload", "token:uploader-e2e"),
    ]
    assert mine[4]["subject"] == f"product/audited/release/1.0.0/artifact/{art['id']}"
    assert mine[4]["detail"]["sha256"] == img["sha256"] and mine[4]["detail"]["size"] == img["size"]
    assert mine[3]["detail"] == {"version": "1.0.0", "previous_version": None, "allow_rollback": False}
    assert all(e["at"].endswith("Z") for e in mine)
    ids = [e["id"] for e in body["entries"]]
    assert ids == sorted(ids, reverse=True)
    # Tokens made with the command line are audited too.
    assert any(e["action"] == "token.create" and e["subject"] == "token/viewer-e2e" for e in body["entries"]), \
        [e for e in body["entries"] if e["action"].startswith("token")]

    # Pages of two, newest first, end to end.
    seen, cursor = [], None
    for _ in range(200):
        status, page, _ = call(d, "GET", f"{API}/audit?limit=2" + (f"&cursor={cursor}" if cursor else ""),
                                 token=daemon.admin)
        assert status == 200 and len(page["entries"]) <= 2
        seen += [e["id"] for e in page["entries"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ids


# -- the auth matrix ---------------------------------------------------------------

def test_auth_matrix_covers_every_operator_route(daemon, tmp_path):
    """Every operator route x {no token, bad token, viewer, uploader, admin}."""
    d = daemon.d
    img = write_bytes(tmp_path, "m.bin", b"matrix bytes")
    s, art, _ = upload_raw(d, tmp_path, daemon.uploader, "matrix", "1.0.0", img["path"], chip="generic")
    assert s == 201
    assert call(d, "PUT", f"{API}/products/matrix/channels/stable", body={"version": "1.0.0"},
                  token=daemon.admin)[0] == 200
    upload = f"{API}/products/matrix/releases/1.0.0/artifacts?chip=generic"
    # (method, path, body, minimum role, status when allowed). Destructive routes
    # aim at things that don't exist, so an allowed call answers 404 and changes nothing.
    routes = [
        ("GET", f"{API}/products", None, "viewer", 200),
        ("GET", f"{API}/products/matrix", None, "viewer", 200),
        ("PATCH", f"{API}/products/nothing", {"allow_project_mismatch": True}, "admin", 404),
        ("GET", f"{API}/products/matrix/releases", None, "viewer", 200),
        ("GET", f"{API}/products/matrix/releases/1.0.0", None, "viewer", 200),
        ("DELETE", f"{API}/products/matrix/releases/9.9.9", None, "admin", 404),
        ("POST", upload, b"matrix bytes", "uploader", 200),
        ("GET", f"{API}/products/matrix/releases/1.0.0/artifacts/{art['id']}", None, "viewer", 200),
        ("DELETE", f"{API}/products/matrix/releases/1.0.0/artifacts/999999", None, "admin", 404),
        ("GET", f"{API}/products/matrix/channels", None, "viewer", 200),
        ("GET", f"{API}/products/matrix/channels/stable", None, "viewer", 200),
        ("PUT", f"{API}/products/matrix/channels/stable", {"version": "1.0.0"}, "admin", 200),
        ("DELETE", f"{API}/products/matrix/channels/nothing", None, "admin", 404),
        ("GET", f"{API}/audit", None, "admin", 200),
    ]
    rank = {"viewer": 0, "uploader": 1, "admin": 2}
    tokens = {"viewer": daemon.viewer, "uploader": daemon.uploader, "admin": daemon.admin}
    failures = []
    for method, path, body, minimum, allowed_status in routes:
        payload = json.dumps(body).encode() if isinstance(body, dict) else body
        headers = {"Content-Type": "application/json" if isinstance(body, dict) else "application/octet-stream"}
        for who in ("none", "bad", "viewer", "uploader", "admin"):
            hdrs = dict(headers)
            if who == "bad":
                hdrs["Authorization"] = "Bearer otad_not-a-real-token-0000000000000000000000000"
            elif who != "none":
                hdrs["Authorization"] = f"Bearer {tokens[who]}"
            status, resp_headers, data = d.request(method, path, body=payload, headers=hdrs)
            if who in ("none", "bad"):
                want = 401
            elif rank[who] < rank[minimum]:
                want = 403
            else:
                want = allowed_status
            if status != want:
                failures.append(f"{method} {path} as {who}: {status}, want {want}: {data[:200]!r}")
            if want == 401 and "bearer" not in resp_headers.get("www-authenticate", "").lower():
                failures.append(f"{method} {path} as {who}: 401 without WWW-Authenticate")
            if want in (401, 403) and resp_headers.get("content-type") != "application/problem+json":
                failures.append(f"{method} {path} as {who}: not a problem document")
    assert not failures, "\n".join(failures)
    # Nothing a refused or 404 call touched changed.
    status, release, _ = get(daemon, "/products/matrix/releases/1.0.0")
    assert [a["id"] for a in release["artifacts"]] == [art["id"]] and release["channels"] == ["stable"]


# -- size and speed ------------------------------------------------------------------

def test_real_sized_8mib_image(daemon, tmp_path):
    d = daemon.d
    img = make_image(tmp_path, "big.bin", "--kind", "esp32", "--chip", "esp32s3", "--project", "camera",
                     "--version", "5.0.0", "--size", "8M")
    assert img["size"] >= 8 * 1024 * 1024
    digest = base64.b64encode(bytes.fromhex(img["sha256"])).decode()
    started = time.monotonic()
    status, body, _ = upload_raw(d, tmp_path, daemon.uploader, "camera", "5.0.0", img["path"],
                                 headers=[f"Content-Digest: sha-256=:{digest}:"], chip="esp32s3")
    elapsed = time.monotonic() - started
    assert status == 201, body
    assert body["size"] == img["size"] and body["sha256"] == img["sha256"] and body["md5"] == img["md5"]
    assert body["image"]["file_size"] == img["size"] and body["image"]["app_desc"]["version"] == "5.0.0"
    assert file_sha256(blob_path(d, img["sha256"])) == img["sha256"]
    print(f"\n8 MiB ESP32-S3 image: uploaded and inspected in {elapsed:.2f} s")


def proc_status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def test_256mib_upload_throughput_and_rss(otad_factory, tmp_path):
    size = 256 * 1024 * 1024
    d = otad_factory(env={"OTAD_MAX_ARTIFACT_BYTES": str(300 * 1024 * 1024)})
    token = d.create_token("uploader")
    path = tmp_path / "huge.bin"
    sha = hashlib.sha256()
    with open(path, "wb") as f:
        block = os.urandom(1024 * 1024)
        for i in range(256):
            chunk = i.to_bytes(4, "little") + block[4:]  # every MiB differs
            sha.update(chunk)
            f.write(chunk)
    expected = sha.hexdigest()

    # Warm up (TLS, first handlers, SQLite pages) before the baseline.
    small = write_bytes(tmp_path, "small.bin", b"warm up")
    assert upload_raw(d, tmp_path, token, "huge", "0", small["path"], chip="generic")[0] == 201
    pid = d.proc.pid
    rss_before = proc_status_kib(pid, "VmRSS")
    hwm_before = proc_status_kib(pid, "VmHWM")

    # The raw body is the 256 MiB file; the multipart form streams its first 64 MiB
    # (same code path, and it keeps this file's run time reasonable).
    form_size = 64 * 1024 * 1024
    form_path = tmp_path / "form.bin"
    with open(path, "rb") as src, open(form_path, "wb") as dst:
        dst.write(src.read(form_size))
    form_sha = file_sha256(form_path)

    results = {}
    for kind, version in (("raw", "1"), ("multipart", "2")):
        started = time.monotonic()
        if kind == "raw":
            status, body, _ = upload_raw(d, tmp_path, token, "huge", version, str(path), chip="generic",
                                         headers=[f"X-Checksum-Sha256: {expected}"])
            want_size, want_sha = size, expected
        else:
            status, body, _ = upload_form(d, tmp_path, token, "huge", version, str(form_path),
                                          fields=[("chip", "generic")], headers=[f"X-Checksum-Sha256: {form_sha}"])
            want_size, want_sha = form_size, form_sha
        elapsed = time.monotonic() - started
        assert status == 201, body
        assert body["size"] == want_size and body["sha256"] == want_sha
        results[kind] = want_size / (1024 * 1024) / elapsed

    hwm_after = proc_status_kib(pid, "VmHWM")
    rss_after = proc_status_kib(pid, "VmRSS")
    growth_mib = (hwm_after - rss_before) / 1024
    print(f"\nupload over HTTPS with curl (incl. SHA-256/MD5, fsync, rows): 256 MiB raw {results['raw']:.0f} MiB/s, "
          f"64 MiB multipart {results['multipart']:.0f} MiB/s")
    print(f"server RSS: before {rss_before / 1024:.1f} MiB (peak {hwm_before / 1024:.1f}), "
          f"peak during uploads {hwm_after / 1024:.1f} MiB, after {rss_after / 1024:.1f} MiB, "
          f"growth {growth_mib:.1f} MiB")
    # Under AddressSanitizer freed memory sits in a quarantine and every byte has
    # shadow memory, so RSS says nothing about otad's own footprint there.
    if not os.environ.get("SANITIZED_BUILD"):
        assert growth_mib < 32, f"RSS grew by {growth_mib:.1f} MiB during a 256 MiB upload"
    assert file_sha256(blob_path(d, expected)) == expected
