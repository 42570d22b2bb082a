"""Crash safety of uploads: kill -9 the daemon at random moments while curl uploads
20 images, restart, and check that every artifact is whole or absent.

After every kill (daemon stopped): PRAGMA integrity_check is ok, every artifact row
has a blob file whose size and SHA-256 match, and every upload the daemon had
acknowledged (200/201) is there. After every restart: no temp upload file is left.
The seed of the random kill moments is printed; CRASH_TEST_SEED replays it.
"""
import hashlib
import json
import os
import random
import sqlite3
import subprocess
import time

from otad_harness import Otad, run_otad, tool

IMAGES = 20
MAX_ROUNDS = 12       # rounds with a kill; the last round lets every upload finish
API = "/api/v1"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_images(tmp_path, rng):
    """Half ESP32 apps (inspected on upload), half opaque generic blobs, 1-3 MiB each."""
    images = []
    for i in range(IMAGES):
        path = tmp_path / f"img{i}.bin"
        version = f"1.0.{i}"
        if i % 2 == 0:
            out = subprocess.run([tool("make_esp_image"), "--kind", "esp32", "--chip", "esp32", "--project", "crash",
                                  "--version", version, "--seed", str(i + 1), "--size", f"{1 + i % 3}M",
                                  "--out", str(path)], capture_output=True, text=True, check=True, timeout=120)
            info = json.loads(out.stdout)
            images.append({"path": str(path), "version": version, "chip": "esp32", "sha256": info["sha256"]})
        else:
            data = rng.randbytes((1 + i % 3) * 1024 * 1024)
            path.write_bytes(data)
            images.append({"path": str(path), "version": version, "chip": "generic",
                           "sha256": hashlib.sha256(data).hexdigest()})
    return images


def start_upload(d, token, image):
    url = d.url(f"{API}/products/crash/releases/{image['version']}/artifacts?chip={image['chip']}")
    cmd = ["curl", "-sS", "--cacert", d.cert_path, "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "60",
           # Paced like a slow link, so kills land mid-upload however fast the server reads.
           "--limit-rate", "2M",
           "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/octet-stream",
           "-H", f"X-Checksum-Sha256: {image['sha256']}", "--data-binary", f"@{image['path']}", url]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def check_store(data_dir, acknowledged):
    """The daemon is stopped: the database and the blob files must agree."""
    db = sqlite3.connect(os.path.join(data_dir, "otad.db"))
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = db.execute("SELECT r.version, a.sha256, a.size FROM artifacts a "
                          "JOIN releases r ON r.id = a.release_id").fetchall()
        blob_rows = dict(db.execute("SELECT sha256, size FROM blobs").fetchall())
    finally:
        db.close()
    stored = {}
    for version, sha, size in rows:
        path = os.path.join(data_dir, "blobs", sha[:2], sha[2:4], sha)
        assert os.path.isfile(path), f"artifact {version} has no blob file {path}"
        assert os.path.getsize(path) == size, f"blob of {version} is truncated"
        assert sha256_file(path) == sha, f"blob of {version} does not match its SHA-256"
        assert blob_rows.get(sha) == size, f"blob row of {version} missing or wrong"
        stored[version] = sha
    for version, sha in acknowledged.items():
        assert stored.get(version) == sha, f"acknowledged upload {version} is gone after the crash"
    return stored


def test_kill9_during_uploads_leaves_whole_artifacts_or_nothing(tmp_path):
    seed = int(os.environ.get("CRASH_TEST_SEED", time.time_ns() % 1_000_000))
    print(f"\ncrash test seed {seed} (CRASH_TEST_SEED={seed} replays it)")
    rng = random.Random(seed)
    images = make_images(tmp_path, rng)
    data_dir = str(tmp_path / "data")
    token = run_otad(["token", "create", "--data-dir", data_dir, "--name", "crash-ci", "--role", "uploader"]
                     ).stdout.strip().splitlines()[-1]

    acknowledged = {}   # version -> sha256 of uploads the daemon answered 200/201
    interrupted_rounds = 0
    temp_files_after_kill = 0
    rounds = 0
    while len(acknowledged) < IMAGES:
        rounds += 1
        assert rounds <= MAX_ROUNDS + 1, "uploads did not finish"
        final = rounds > MAX_ROUNDS
        # Every upload of a round in flight at once (the upload pool admits max_concurrent_uploads).
        d = Otad(data_dir=data_dir, env={"OTAD_MAX_CONCURRENT_UPLOADS": str(IMAGES)})
        d.log_path = str(tmp_path / f"otad-round{rounds}.log")  # a fresh log: its "listening" line is this run's
        d.start()
        try:
            # Start-up clean-up ran before the daemon listened.
            assert os.listdir(os.path.join(data_dir, "blobs", "tmp")) == []
            pending = [img for img in images if img["version"] not in acknowledged]
            procs = [(img, start_upload(d, token, img)) for img in pending]
            if not final:
                time.sleep(rng.uniform(0.02, 1.2))
                d.kill9()
            for img, proc in procs:
                out, _ = proc.communicate(timeout=120)
                if out in (b"200", b"201"):
                    acknowledged[img["version"]] = img["sha256"]
            if any(proc.returncode != 0 for _, proc in procs):
                interrupted_rounds += 1
        finally:
            if final:
                d.stop()
            elif d.proc.poll() is None:
                d.kill9()
        temp_files_after_kill += len(os.listdir(os.path.join(data_dir, "blobs", "tmp")))
        check_store(data_dir, acknowledged)

    # One more start: the clean-up leaves no temp file, and everything is there.
    d = Otad(data_dir=data_dir)
    d.log_path = str(tmp_path / "otad-last.log")
    d.start()
    try:
        assert os.listdir(os.path.join(data_dir, "blobs", "tmp")) == []
        status, _, body = d.json("GET", f"{API}/products/crash/releases?limit=100", token=token)
        assert status == 200
        assert sorted(r["version"] for r in body["releases"]) == sorted(img["version"] for img in images)
    finally:
        d.stop()
    stored = check_store(data_dir, acknowledged)
    assert stored == {img["version"]: img["sha256"] for img in images}
    print(f"{rounds} rounds, {interrupted_rounds} with uploads cut by kill -9, "
          f"{temp_files_after_kill} temp files found after kills (all removed at start-up)")
    assert interrupted_rounds >= 1, "no kill landed during an upload; the test proved nothing"
