"""otad push / ls / healthcheck against the real daemon."""
import hashlib
import json
import os

from otad_harness import run_otad, tool
import subprocess


def make_image(tmp_path, name="fw.bin", **kw):
    out = tmp_path / name
    args = [tool("make_esp_image"), "--kind", "esp32", "--chip", kw.get("chip", "esp32c3"),
            "--version", kw.get("version", "1.0.0"), "--project", kw.get("project", "thermostat"),
            "--size", str(kw.get("size", 262144)), "--out", str(out)]
    subprocess.run(args, check=True, capture_output=True)
    return out


def remote_args(d, token):
    return ["--server", d.url(), "--cacert", d.cert_path, "--token", token]


def test_push_uploads_prints_inspection_and_moves_channel(otad, tmp_path):
    token = otad.create_token("admin")
    image = make_image(tmp_path, version="1.2.0")
    proc = run_otad(["push", str(image)] + remote_args(otad, token) +
                    ["--product", "thermostat", "--version", "1.2.0", "--chip", "esp32c3", "--channel", "stable"])
    artifact = json.loads(proc.stdout)
    assert artifact["sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert artifact["size"] == image.stat().st_size
    assert "channel 'stable' now offers 1.2.0" in proc.stderr
    assert "%" not in proc.stderr  # no progress bar when stderr is not a terminal
    status, _, channels = otad.json("GET", "/api/v1/products/thermostat/channels", token=token)
    assert status == 200 and "1.2.0" in json.dumps(channels)
    listing = run_otad(["ls"] + remote_args(otad, token)).stdout
    assert "thermostat" in listing
    releases = run_otad(["ls", "thermostat"] + remote_args(otad, token)).stdout
    assert "1.2.0" in releases


def test_push_failure_exits_1_with_server_detail(otad, tmp_path):
    token = otad.create_token("uploader")
    image = make_image(tmp_path, chip="esp32c3")
    proc = run_otad(["push", str(image)] + remote_args(otad, token) +
                    ["--product", "thermostat", "--version", "1.0.0", "--chip", "esp32s3"], check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("otad push: 422")
    bad_token = run_otad(["push", str(image)] + remote_args(otad, "nope") +
                         ["--product", "thermostat", "--version", "1.0.0", "--chip", "esp32c3"], check=False)
    assert bad_token.returncode == 1 and "401" in bad_token.stderr
    untrusted = run_otad(["push", str(image), "--server", otad.url(), "--token", token,
                          "--product", "thermostat", "--version", "1.0.0", "--chip", "esp32c3"], check=False)
    assert untrusted.returncode == 1 and "certificate" in untrusted.stderr.lower()


def test_healthcheck_exit_codes(otad_factory):
    d = otad_factory()
    assert run_otad(["healthcheck", "--url", d.url("/healthz")], check=False).returncode == 0
    d.stop()
    down = run_otad(["healthcheck", "--url", d.url("/healthz")], check=False)
    assert down.returncode == 1 and "otad healthcheck" in down.stderr


def test_push_version_mismatch_allow_and_replace_flags(otad, tmp_path):
    admin = otad.create_token("admin")
    uploader = otad.create_token("uploader")
    base = ["--product", "thermostat", "--chip", "esp32c3"]

    # The image says 2.0.0-rc1; uploaded as 2.0.0 it is refused, and the message names the flag.
    rc = make_image(tmp_path, "rc.bin", version="2.0.0-rc1")
    refused = run_otad(["push", str(rc)] + remote_args(otad, uploader) + base + ["--version", "2.0.0"], check=False)
    assert refused.returncode == 1
    assert "422" in refused.stderr and "--version-mismatch allow" in refused.stderr
    allowed = run_otad(["push", str(rc)] + remote_args(otad, uploader) + base +
                       ["--version", "2.0.0", "--version-mismatch", "allow"])
    assert json.loads(allowed.stdout)["image"]["app_desc"]["version"] == "2.0.0-rc1"
    bad_value = run_otad(["push", str(rc)] + remote_args(otad, uploader) + base +
                         ["--version", "2.0.0", "--version-mismatch", "maybe"], check=False)
    assert bad_value.returncode == 2

    # Different bytes for the same release and chip: 409 naming --replace; with it (admin) replaced.
    rebuilt = make_image(tmp_path, "rebuilt.bin", version="2.0.0-rc1", size=200000)
    args = ["push", str(rebuilt)] + base + ["--version", "2.0.0", "--version-mismatch", "allow"]
    conflict = run_otad(args[:2] + remote_args(otad, uploader) + args[2:], check=False)
    assert conflict.returncode == 1 and "409" in conflict.stderr and "--replace" in conflict.stderr
    not_admin = run_otad(args[:2] + remote_args(otad, uploader) + args[2:] + ["--replace"], check=False)
    assert not_admin.returncode == 1 and "403" in not_admin.stderr
    replaced = json.loads(run_otad(args[:2] + remote_args(otad, admin) + args[2:] + ["--replace"]).stdout)
    assert replaced["replaced_artifact_id"] == json.loads(allowed.stdout)["id"]
    assert replaced["sha256"] == hashlib.sha256(rebuilt.read_bytes()).hexdigest()
    status, _, release = otad.json("GET", "/api/v1/products/thermostat/releases/2.0.0", token=admin)
    assert status == 200 and [a["sha256"] for a in release["artifacts"]] == [replaced["sha256"]]
