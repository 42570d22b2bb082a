"""Helpers shared by the device API end-to-end tests (test_device_api.py, test_esp_https_ota.py):
test images from make_esp_image, uploads and channel moves through the operator API, polls."""
import base64
import json
import os
import subprocess
import tempfile
import urllib.parse

from otad_harness import tool


def make_image(kind, **options):
    """Runs make_esp_image; returns the image bytes. Options map to --flags (underscores -> dashes)."""
    fd, path = tempfile.mkstemp(prefix="otad-img-", suffix=".bin")
    os.close(fd)
    try:
        args = [tool("make_esp_image"), "--kind", kind, "--out", path]
        for key, value in options.items():
            args += ["--" + key.replace("_", "-"), str(value)]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        with open(path, "rb") as f:
            return f.read()
    finally:
        os.unlink(path)


def esp32_image(version, chip="esp32", secure_version=0, size=65536, project="thermo", seed=1):
    return make_image("esp32", chip=chip, version=version, project=project, size=size,
                      secure_version=secure_version, seed=seed)


def nonos_image(slot, flash_map, seed=1):
    return make_image("esp8266-v2", slot=slot, flash_map=flash_map, seed=seed)


def upload(d, token, product, version, data, chip, layout="", slot="", filename=None):
    query = {"chip": chip}
    if layout:
        query["layout"] = layout
    if slot:
        query["slot"] = slot
    if filename:
        query["filename"] = filename
    path = (f"/api/v1/products/{product}/releases/{version}/artifacts?" + urllib.parse.urlencode(query))
    status, _, body = d.request("POST", path, body=data, token=token,
                                headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert status in (200, 201), (status, body[:800])
    return json.loads(body)


def set_channel(d, token, product, channel, version, allow_rollback=False, force=False):
    request = {"version": version, "allow_rollback": allow_rollback}
    if force:  # past the 512+512 check (docs/rollouts.md)
        request["force"] = True
    status, _, body = d.json("PUT", f"/api/v1/products/{product}/channels/{channel}", request, token=token)
    assert status == 200, (status, body)
    return body


def poll_path(**params):
    return "/api/v1/update?" + urllib.parse.urlencode(params)


def poll(d, headers=None, plain=False, **params):
    """GET /api/v1/update; returns (status, lower-case headers, body bytes)."""
    return d.request("GET", poll_path(**params), headers=headers, plain=plain)


def esp32_poll(d, product="thermo", version="1.0.0", slot="ota_0", device="dev-1", headers=None, **extra):
    params = dict(product=product, chip="esp32", layout="ota", slot=slot, version=version, device=device)
    params.update(extra)
    return poll(d, headers=headers, **params)


def signature_parts(header_value):
    """'keyid=..,alg=..,sig=..' -> dict."""
    parts = {}
    for piece in header_value.split(","):
        name, _, value = piece.strip().partition("=")
        parts[name] = value
    return parts


def public_keys(d):
    status, _, body = d.json("GET", "/api/v1/keys")
    assert status == 200, body
    return body["keys"]


def openssl_verify(body, header_value, keys, workdir):
    """Verifies the X-Otad-Signature over `body` with the openssl command line only.
    Returns openssl's stdout (e.g. 'Verified OK')."""
    parts = signature_parts(header_value)
    key = next(k for k in keys if k["key_id"] == parts["keyid"])
    body_path = os.path.join(workdir, "body.json")
    sig_path = os.path.join(workdir, "sig.bin")
    pem_path = os.path.join(workdir, "pub.pem")
    with open(body_path, "wb") as f:
        f.write(body)
    with open(sig_path, "wb") as f:
        f.write(base64.b64decode(parts["sig"]))
    with open(pem_path, "w") as f:
        f.write(key["public_key_pem"])
    if parts["alg"] == "es256":
        cmd = ["openssl", "dgst", "-sha256", "-verify", pem_path, "-signature", sig_path, body_path]
    else:
        cmd = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pem_path, "-rawin", "-in", body_path,
               "-sigfile", sig_path]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return proc.returncode, (proc.stdout + proc.stderr).strip()
