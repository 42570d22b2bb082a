"""Helpers of the catalogue e2e tests: the test image generator, raw bytes as an upload, curl."""

import hashlib
import json
import subprocess
import time

from otad_harness import tool


def make_image(tmp_path, name, *args):
    """Runs the test image generator; returns its description {path, size, sha256, md5}."""
    out = tmp_path / name
    proc = subprocess.run([tool("make_esp_image"), "--out", str(out)] + list(args),
                          capture_output=True, text=True, check=True, timeout=120)
    return json.loads(proc.stdout)


def write_bytes(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return {"path": str(path), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def curl_json(d, tmp_path, args):
    """Runs curl; returns (status, parsed JSON body or None, raw body)."""
    body_file = tmp_path / f"curl-body-{time.monotonic_ns()}"
    proc = d.curl("-o", str(body_file), "-w", "%{http_code}", *args, timeout=300)
    status = int(proc.stdout.decode() or 0)
    raw = body_file.read_bytes() if body_file.exists() else b""
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return status, parsed, raw
