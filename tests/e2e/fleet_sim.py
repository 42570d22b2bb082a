"""A fleet of virtual ESP32 devices that talk to a real otad over HTTP, for the rollout scenarios
(tests/e2e/test_rollout_sim.py) and for trying rollouts by hand:

    python3 tests/e2e/fleet_sim.py --server http://127.0.0.1:8080 --product thermo --devices 2000 \\
        --rounds 20 --p-rollback 0.2

Each device, on every round: polls GET /api/v1/update; when offered an image it downloads it from
the manifest's pre-signed URL, checks its SHA-256 and size, reports `downloading` and `installing`,
then "reboots": into the new version (reports `installed`), or the install fails (reports
`failed`), or the new image does not boot and the bootloader rolls back (the device either reports
`rolled_back` or just comes back on its old version, which otad detects). Which of the three
happens to a device is drawn once per (device, version) from a seeded generator, so a run is
reproducible and a device that rolled back a version does so again.

Devices are spread over worker threads, each with one keep-alive connection; every loop is bounded.
"""
import argparse
import hashlib
import http.client
import json
import random
import threading
import time
import urllib.parse
from collections import Counter

POLL_PATH = "/api/v1/update"


def bucket(rollout_id, device_id):
    """otad's cohort hash (docs/rollouts.md): FNV-1a 64 of '<id>:<device>', splitmix64's final mix, mod 10000."""
    h = 14695981039346656037
    for c in f"{rollout_id}:{device_id}".encode():
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    h ^= h >> 31
    return h % 10000


class DeviceOutcome:
    INSTALLED = "installed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class VirtualDevice:
    def __init__(self, device_id, version, chip="esp32", layout="ota", slot="ota_0", channel="stable"):
        self.id = device_id
        self.version = version
        self.chip = chip
        self.layout = layout
        self.slot = slot
        self.channel = channel
        self.offers = []          # every version offered, in order
        self.history = []         # (version, outcome)


class Fleet:
    """Thousands of VirtualDevice talking to otad at host:port (plain HTTP)."""

    def __init__(self, host, port, product, count, version, prefix="sim-", p_fail=0.0, p_rollback=0.0,
                 report_rollback=0.5, seed=1, threads=8, install=True, timeout=30):
        self.host, self.port, self.product = host, port, product
        self.devices = [VirtualDevice(f"{prefix}{i:05d}", version) for i in range(count)]
        self.p_fail, self.p_rollback, self.report_rollback = p_fail, p_rollback, report_rollback
        self.seed = seed
        self.threads = threads
        self.install = install  # False: poll only, never download or install
        self.timeout = timeout
        self.lock = threading.Lock()
        self.errors = []
        self.images_checked = 0

    # -- one device ---------------------------------------------------------------------------
    def outcome_for(self, device, version):
        rng = random.Random(f"{self.seed}|{device.id}|{version}")
        draw = rng.random()
        if draw < self.p_fail:
            return DeviceOutcome.FAILED
        if draw < self.p_fail + self.p_rollback:
            return DeviceOutcome.ROLLED_BACK
        return DeviceOutcome.INSTALLED

    def _request(self, conn, method, path, body=None):
        headers = {"Connection": "keep-alive"}
        if body is not None:
            body = json.dumps(body)
            headers["Content-Type"] = "application/json"
        for attempt in range(3):  # a keep-alive connection the server closed: reconnect once or twice
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
            except (http.client.HTTPException, ConnectionError, OSError):
                conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _report(self, conn, device, status, version):
        code, _, body = self._request(conn, "POST", f"/api/v1/devices/{urllib.parse.quote(device.id)}/report",
                                      {"status": status, "version": version})
        if code != 204:
            raise AssertionError(f"report {status} for {device.id}: {code} {body[:200]!r}")

    def step(self, conn, device):
        """One poll, and what follows from it. Returns the version offered, or None."""
        query = urllib.parse.urlencode({"product": self.product, "chip": device.chip, "layout": device.layout,
                                        "slot": device.slot, "version": device.version, "device": device.id,
                                        "channel": device.channel})
        code, headers, body = self._request(conn, "GET", f"{POLL_PATH}?{query}")
        if code == 204:
            return None
        if code != 200:
            raise AssertionError(f"poll of {device.id}: {code} {body[:200]!r}")
        manifest = json.loads(body)
        offered = manifest["version"]
        device.offers.append(offered)
        if not self.install:
            return offered
        url = urllib.parse.urlsplit(manifest["url"])
        code, _, image = self._request(conn, "GET", url.path + ("?" + url.query if url.query else ""))
        if code != 200:
            raise AssertionError(f"download by {device.id}: {code}")
        if hashlib.sha256(image).hexdigest() != manifest["sha256"] or len(image) != manifest["size"]:
            raise AssertionError(f"{device.id} downloaded an image that does not match its manifest")
        with self.lock:
            self.images_checked += 1
        self._report(conn, device, "downloading", offered)
        outcome = self.outcome_for(device, offered)
        device.history.append((offered, outcome))
        if outcome == DeviceOutcome.FAILED:
            self._report(conn, device, "failed", offered)
            return offered
        self._report(conn, device, "installing", offered)
        if outcome == DeviceOutcome.ROLLED_BACK:
            # The new image did not confirm itself; the bootloader went back to the old slot. Half
            # the devices say so; the others just poll again on the old version.
            if random.Random(f"{self.seed}|report|{device.id}").random() < self.report_rollback:
                self._report(conn, device, "rolled_back", offered)
            return offered
        device.version = offered
        device.slot = manifest["slot"]
        self._report(conn, device, "installed", offered)
        return offered

    # -- the fleet ------------------------------------------------------------------------------
    def round(self, devices=None):
        """Every device (or the given ones) takes one step. Returns {device id: offered version or None}."""
        devices = self.devices if devices is None else devices
        results = {}
        shards = [devices[i::self.threads] for i in range(self.threads)]

        def work(shard):
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                for device in shard:
                    offered = self.step(conn, device)
                    with self.lock:
                        results[device.id] = offered
            except Exception as e:  # recorded; the caller asserts no errors
                with self.lock:
                    self.errors.append(repr(e))
            finally:
                conn.close()

        workers = [threading.Thread(target=work, args=(s,)) for s in shards if s]
        for w in workers:
            w.start()
        for w in workers:
            w.join(600)
        if self.errors:
            raise AssertionError(f"{len(self.errors)} device errors, first: {self.errors[0]}")
        return results

    def run_until(self, predicate, max_rounds=50, deadline_s=300, between=None):
        """Rounds until predicate() is true; bounded in rounds and time. Returns the rounds taken."""
        started = time.monotonic()
        for n in range(1, max_rounds + 1):
            self.round()
            if between:
                between()
            if predicate():
                return n
            if time.monotonic() - started > deadline_s:
                break
        raise AssertionError(f"condition not reached after {n} rounds / {time.monotonic() - started:.0f} s")

    def versions(self):
        return Counter(d.version for d in self.devices)

    def offered_ever(self, version):
        return {d.id for d in self.devices if version in d.offers}

    def outcomes(self, version):
        return Counter(outcome for d in self.devices for v, outcome in d.history if v == version)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True, help="plain-HTTP base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--product", required=True)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--version", default="1.0.0", help="what the devices run at first")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--p-fail", type=float, default=0.0)
    parser.add_argument("--p-rollback", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    url = urllib.parse.urlsplit(args.server)
    fleet = Fleet(url.hostname, url.port or 80, args.product, args.devices, args.version, p_fail=args.p_fail,
                  p_rollback=args.p_rollback, seed=args.seed, threads=args.threads)
    for n in range(args.rounds):
        results = fleet.round()
        offers = Counter(v for v in results.values() if v)
        print(f"round {n + 1}: offers {dict(offers)} versions {dict(fleet.versions())}")


if __name__ == "__main__":
    main()
