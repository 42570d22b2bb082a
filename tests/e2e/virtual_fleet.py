"""A fleet simulator: thousands of virtual devices against a real otad over HTTP or HTTPS.

Each virtual device behaves like the firmware docs/device-api.md describes. In one cycle it
  1. polls `GET /api/v1/update` with its running version and slot;
  2. on a `200`, checks the manifest (its `X-Otad-Signature` against `GET /api/v1/keys`, the
     product, chip and version, a target slot other than the running one), records the offer,
     downloads the manifest's URL and checks the size and SHA-256 of the bytes;
  3. reports `downloading`, `downloaded`, `installing` and then either
     - installed: "reboots" into the new version and slot and reports `installed`;
     - failed: reports `failed` (the image could not be written) and keeps its version;
     - rolled back: boots the new image, which fails its self-test, the bootloader goes back,
       and the device polls again with its old version (implicit rollback); optionally it also
       reports `rolled_back` (explicit rollback);
     - silent: never comes back (dead, or gone offline for good);
     - deferred: keeps the verified image for a maintenance window that never comes in the run.
A device that failed or rolled back a version marks it invalid and does not install it again
(as esp-idf's rollback support does), but keeps polling, so its offers keep being recorded.

The outcome of a (device, version) is drawn once from a random generator seeded by
(fleet seed, device id, version): a run is deterministic whatever the thread interleaving.
Time is not simulated: a "round" is one poll cycle of every live device, so a test advances
device time by running rounds, and server time by its configuration.

Requests go through a bounded thread pool; each worker keeps its own HTTP/1.1 keep-alive
connection (http.client). Every loop is bounded in count and time. Anything unexpected (a
status the device API does not define, a bad signature, bytes that do not match the
manifest) is recorded in `Fleet.errors` and never raised from a worker, so a test can assert
that the list is empty and see every problem at once.
"""
import base64
import concurrent.futures
import enum
import hashlib
import http.client
import json
import os
import random
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec


# scripts/test.sh runs the e2e suite a second time against a Debug + AddressSanitizer otad
# (SANITIZED_BUILD=1), several times slower per request. Tests divide their fleets by
# FLEET_DIVISOR and multiply wall-clock holds and deadlines by SLOWDOWN there; the figures
# themselves are proven by the normal pass.
SANITIZED = bool(os.environ.get("SANITIZED_BUILD"))
FLEET_DIVISOR = 2 if SANITIZED else 1
SLOWDOWN = 3 if SANITIZED else 1


class Outcome(enum.Enum):
    INSTALLED = "installed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"                    # implicit: the server sees the old version again
    ROLLED_BACK_REPORTED = "rolled_back_reported"  # and the device reports `rolled_back` too
    SILENT = "silent"
    DEFERRED = "deferred"


@dataclass(frozen=True)
class Behaviour:
    """How devices fare with one release. Probabilities are exclusive (their sum at most 1);
    what is left installs fine."""
    fail: float = 0.0
    rollback: float = 0.0
    report_rollback: float = 0.0  # the share of rollbacks that are also reported explicitly
    silent: float = 0.0
    defer: float = 0.0

    def __post_init__(self):
        total = self.fail + self.rollback + self.silent + self.defer
        if not 0.0 <= total <= 1.0 or not 0.0 <= self.report_rollback <= 1.0:
            raise ValueError(f"behaviour probabilities must lie in [0, 1]: {self}")

    def draw(self, rng):
        u = rng.random()
        explicit = rng.random() < self.report_rollback  # drawn always: the stream stays aligned
        for limit, outcome in ((self.fail, Outcome.FAILED), (self.rollback, Outcome.ROLLED_BACK),
                               (self.silent, Outcome.SILENT), (self.defer, Outcome.DEFERRED)):
            if u < limit:
                if outcome is Outcome.ROLLED_BACK and explicit:
                    return Outcome.ROLLED_BACK_REPORTED
                return outcome
            u -= limit
        return Outcome.INSTALLED


HEALTHY = Behaviour()


@dataclass
class VirtualDevice:
    id: str
    version: str
    chip: str = "esp32"
    layout: str = "ota"
    slot: str = "ota_0"
    channel: str = "stable"
    secure_version: int | None = None
    alive: bool = True
    offers: list = field(default_factory=list)      # (round, version, sha256) per 200 answer
    outcomes: dict = field(default_factory=dict)    # version -> Outcome, once drawn
    refused: set = field(default_factory=set)       # versions it marked invalid
    downloaded: dict = field(default_factory=dict)  # version -> sha256 of verified bytes (deferred)
    reports: list = field(default_factory=list)     # (round, status, version)
    history: list = field(default_factory=list)     # (round, version) whenever the running version changes
    last_poll: tuple = (0, "")                      # (status, X-Otad-No-Update) of the latest poll


def mac_ids(count, prefix="02:5a:00"):
    """`count` MAC-style device ids (locally administered), e.g. 02:5a:00:00:00:01."""
    if count >= 1 << 24:
        raise ValueError("at most 2^24 ids per prefix")
    return [f"{prefix}:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}" for i in range(count)]


def make_devices(ids, version, **attributes):
    return [VirtualDevice(id=device_id, version=version, **attributes) for device_id in ids]


@dataclass
class RoundStats:
    round: int
    seconds: float
    polls: int = 0
    statuses: Counter = field(default_factory=Counter)   # poll status -> count
    no_update: Counter = field(default_factory=Counter)  # X-Otad-No-Update reason -> count
    offers: Counter = field(default_factory=Counter)     # offered version -> count
    downloads: int = 0
    downloaded_bytes: int = 0
    reports: Counter = field(default_factory=Counter)    # status -> count
    outcomes: Counter = field(default_factory=Counter)   # Outcome -> count


class Fleet:
    """Virtual devices of one product against one otad listener.

    `host`, `port`: the listener; `ssl_context`: None for the plain-HTTP listener, else an
    SSLContext that trusts otad's certificate. `behaviours` maps a version to its Behaviour
    (others: `default`). `device_key`: sent as `Authorization: Bearer` when the product has one.
    """

    def __init__(self, host, port, product, devices, *, ssl_context=None, behaviours=None, default=HEALTHY,
                 seed=1, workers=8, device_key=None, report_progress=True, verify_signatures=True,
                 request_timeout=15.0, keys_document=None):
        self.host, self.port, self.product = host, port, product
        # The signing keys as provisioned into the firmware: /api/v1/keys is HTTPS only
        # (a trust anchor is never fetched in clear), so a plain-HTTP fleet is given them.
        self.keys_document = keys_document
        self.ssl_context = ssl_context
        self.devices = {d.id: d for d in devices}
        if len(self.devices) != len(devices):
            raise ValueError("device ids must be unique")
        self.behaviours = dict(behaviours or {})
        self.default = default
        self.seed = seed
        self.workers = workers
        self.device_key = device_key
        self.report_progress = report_progress
        self.verify_signatures = verify_signatures
        self.request_timeout = request_timeout
        self.round = 0
        self.errors = []
        self.connections_opened = 0
        self.requests_total = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._all_connections = []
        self._keys = {}        # key id -> (alg, public key)
        self._verified = set()  # (body sha256, signature header) already checked
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleet")

    @classmethod
    def for_daemon(cls, daemon, product, devices, plain=True, **options):
        """A fleet against an otad_harness.Otad: its plain-HTTP listener, or HTTPS."""
        if plain:
            status, _, keys = daemon.request("GET", "/api/v1/keys")
            assert status == 200, keys
            return cls("127.0.0.1", daemon.http_port, product, devices, keys_document=keys, **options)
        return cls("127.0.0.1", daemon.port, product, devices, ssl_context=daemon.ssl_context(), **options)

    # ------------------------------------------------------------------ lifecycle
    def close(self):
        self._pool.shutdown(wait=True)
        with self._lock:
            for conn in self._all_connections:
                conn.close()
            self._all_connections.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def reconnect(self):
        """Drops every kept-alive connection (e.g. after the daemon restarted on another port)."""
        with self._lock:
            for conn in self._all_connections:
                conn.close()
            self._all_connections.clear()
        self._local = threading.local()

    def retarget(self, port, ssl_context=None):
        """Points the fleet at another listener (a restarted daemon gets new ephemeral ports)."""
        self.reconnect()
        self.port = port
        if ssl_context is not None:
            self.ssl_context = ssl_context

    def add_devices(self, devices):
        for d in devices:
            if d.id in self.devices:
                raise ValueError(f"device {d.id} is already in the fleet")
            self.devices[d.id] = d

    # ------------------------------------------------------------------ rounds
    def poll_round(self, ids=None, timeout=120.0):
        """One cycle of every live device (or of `ids`), through the thread pool. Returns RoundStats."""
        self.round += 1
        stats = RoundStats(round=self.round, seconds=0.0)
        chosen = [self.devices[i] for i in ids] if ids is not None else list(self.devices.values())
        started = time.monotonic()
        futures = [self._pool.submit(self._cycle, d, stats) for d in chosen if d.alive]
        done, pending = concurrent.futures.wait(futures, timeout=timeout)
        for f in pending:
            f.cancel()
        if pending:
            raise AssertionError(f"round {self.round}: {len(pending)} devices still busy after {timeout}s")
        for f in done:
            if f.exception() is not None:  # a bug in the simulator itself
                raise f.exception()
        stats.seconds = time.monotonic() - started
        return stats

    def run_until(self, predicate, max_rounds=50, timeout=120.0, ids=None):
        """Runs rounds until predicate(stats) is true; returns the list of RoundStats.
        Bounded by `max_rounds` and `timeout` seconds."""
        deadline = time.monotonic() + timeout
        history = []
        for _ in range(max_rounds):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            stats = self.poll_round(ids=ids, timeout=remaining)
            history.append(stats)
            if predicate(stats):
                return history
        spent = time.monotonic() - deadline + timeout
        raise AssertionError(f"condition not reached after {len(history)} rounds ({spent:.1f}s); "
                             f"last: {history[-1] if history else None}")

    # ------------------------------------------------------------------ views for assertions
    def offered(self, version, since_round=0, until_round=None):
        """Ids of devices offered `version` in a round within [since_round, until_round]."""
        last = self.round if until_round is None else until_round
        return {d.id for d in self.devices.values()
                if any(v == version and since_round <= r <= last for r, v, _ in d.offers)}

    def running(self, version):
        return {d.id for d in self.devices.values() if d.version == version}

    def versions(self):
        return Counter(d.version for d in self.devices.values())

    def with_outcome(self, version, *outcomes):
        return {d.id for d in self.devices.values() if d.outcomes.get(version) in outcomes}

    def planned_outcome(self, device_id, version):
        """The outcome the device will have (or had) with `version`, without any request."""
        return self._outcome(self.devices[device_id], version)

    # ------------------------------------------------------------------ one device
    def _outcome(self, device, version):
        outcome = device.outcomes.get(version)
        if outcome is None:
            rng = random.Random(f"{self.seed}|{device.id}|{version}")
            outcome = self.behaviours.get(version, self.default).draw(rng)
            device.outcomes[version] = outcome
        return outcome

    def _error(self, device, what):
        with self._lock:
            if len(self.errors) < 1000:
                self.errors.append(f"round {self.round} device {device.id}: {what}")

    def _cycle(self, device, stats):
        manifest = self._poll(device, stats)
        if manifest is None:
            return
        version = manifest["version"]
        if version in device.refused or version in device.downloaded:
            return  # marked invalid, or already waiting for its maintenance window
        outcome = self._outcome(device, version)
        if self.report_progress:
            self._report(device, stats, "downloading", version)
        data = self._download(device, stats, manifest)
        if data is None:
            return
        if self.report_progress:
            self._report(device, stats, "downloaded", version)
        with self._lock:
            stats.outcomes[outcome] += 1
        if outcome is Outcome.DEFERRED:
            device.downloaded[version] = manifest["sha256"]  # not offered to the installer again
            return
        if outcome is Outcome.SILENT:
            device.alive = False
            return
        if outcome is Outcome.FAILED:
            device.refused.add(version)
            self._report(device, stats, "failed", version, "simulated flash write error")
            return
        self._report(device, stats, "installing", version, f"writing {manifest['slot']}")
        if outcome in (Outcome.ROLLED_BACK, Outcome.ROLLED_BACK_REPORTED):
            # Rebooted into the new image; its self-test failed and the bootloader went back.
            device.refused.add(version)
            if outcome is Outcome.ROLLED_BACK_REPORTED:
                self._report(device, stats, "rolled_back", version, "self-test failed")
            self._poll(device, stats)  # back on the old version: the server sees the rollback
            return
        device.version = version
        device.slot = manifest["slot"]
        device.history.append((self.round, version))
        self._report(device, stats, "installed", version)

    def _headers(self):
        return {"Authorization": f"Bearer {self.device_key}"} if self.device_key else {}

    def _poll(self, device, stats):
        """Polls once; returns the checked manifest of a 200, else None."""
        params = {"product": self.product, "chip": device.chip, "layout": device.layout, "slot": device.slot,
                  "version": device.version, "device": device.id}
        if device.channel != "stable":
            params["channel"] = device.channel
        if device.secure_version is not None:
            params["secure_version"] = str(device.secure_version)
        reply = self._request(device, "GET", "/api/v1/update?" + urllib.parse.urlencode(params))
        if reply is None:
            return None
        status, headers, body = reply
        reason = headers.get("x-otad-no-update", "")
        device.last_poll = (status, reason)
        with self._lock:
            stats.polls += 1
            stats.statuses[status] += 1
            if status == 204:
                stats.no_update[reason] += 1
        if status == 204:
            if not reason:
                self._error(device, "204 without X-Otad-No-Update")
            return None
        if status != 200:
            self._error(device, f"poll answered {status}: {body[:300]!r}")
            return None
        try:
            manifest = json.loads(body)
        except ValueError:
            self._error(device, f"manifest is not JSON: {body[:200]!r}")
            return None
        if self.verify_signatures and not self._signature_ok(device, body, headers.get("x-otad-signature", "")):
            return None
        problems = []
        if manifest.get("product") != self.product:
            problems.append(f"product {manifest.get('product')!r}")
        if manifest.get("chip") != device.chip or manifest.get("layout") != device.layout:
            problems.append(f"chip/layout {manifest.get('chip')}/{manifest.get('layout')}")
        if manifest.get("version") in (None, device.version):
            problems.append(f"offered its own version {device.version!r}")
        if device.layout != "single" and manifest.get("slot") == device.slot:
            problems.append(f"target slot is the running slot {device.slot}")
        if problems:
            self._error(device, "bad manifest: " + ", ".join(problems))
            return None
        device.offers.append((self.round, manifest["version"], manifest["sha256"]))
        with self._lock:
            stats.offers[manifest["version"]] += 1
        return manifest

    def _download(self, device, stats, manifest):
        url = urllib.parse.urlsplit(manifest["url"])
        want_scheme = "https" if self.ssl_context else "http"
        if url.scheme != want_scheme or url.port != self.port:
            self._error(device, f"manifest URL {manifest['url']} is not on this listener")
            return None
        reply = self._request(device, "GET", url.path + ("?" + url.query if url.query else ""))
        if reply is None:
            return None
        status, _, data = reply
        if status != 200:
            self._error(device, f"download answered {status}: {data[:200]!r}")
            self._report(device, stats, "failed", manifest["version"], f"download status {status}")
            return None
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != manifest["size"] or digest != manifest["sha256"]:
            self._error(device, f"downloaded {len(data)} bytes sha256 {digest}, manifest says "
                                f"{manifest['size']} {manifest['sha256']}")
            self._report(device, stats, "failed", manifest["version"], "sha256 mismatch")
            return None
        with self._lock:
            stats.downloads += 1
            stats.downloaded_bytes += len(data)
        return data

    def _report(self, device, stats, status, version, detail=None):
        body = {"status": status, "version": version}
        if detail:
            body["detail"] = detail
        headers = {"Content-Type": "application/json"}
        reply = self._request(device, "POST", f"/api/v1/devices/{urllib.parse.quote(device.id, safe='')}/report",
                              json.dumps(body), headers)
        device.reports.append((self.round, status, version))
        with self._lock:
            stats.reports[status] += 1
        if reply is not None and reply[0] != 204:
            self._error(device, f"report {status} answered {reply[0]}: {reply[2][:300]!r}")

    # ------------------------------------------------------------------ HTTP
    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.ssl_context is not None:
                conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.request_timeout,
                                                   context=self.ssl_context)
            else:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.request_timeout)
            self._local.conn = conn
            with self._lock:
                self._all_connections.append(conn)
        return conn

    def _request(self, device, method, path, body=None, headers=None):
        """One request on this worker's kept-alive connection; one retry on a fresh connection
        when the kept one was closed under it. Returns (status, lower-case headers, body) or None."""
        hdrs = self._headers()
        hdrs.update(headers or {})
        for attempt in range(2):
            conn = self._connection()
            try:
                if conn.sock is None:
                    with self._lock:
                        self.connections_opened += 1
                conn.request(method, path, body=body, headers=hdrs)
                resp = conn.getresponse()
                data = resp.read()
                with self._lock:
                    self.requests_total += 1
                if resp.will_close:
                    conn.close()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
            except (http.client.HTTPException, OSError) as e:
                conn.close()
                if attempt == 1:
                    self._error(device, f"{method} {path.split('?')[0]}: {type(e).__name__}: {e}")
        return None

    # ------------------------------------------------------------------ signatures
    def _load_keys(self, device):
        reply = (200, {}, self.keys_document) if self.keys_document is not None else \
            self._request(device, "GET", "/api/v1/keys")
        if reply is None or reply[0] != 200:
            self._error(device, f"GET /api/v1/keys failed: {reply and reply[0]}")
            return
        keys = {}
        for k in json.loads(reply[2])["keys"]:
            keys[k["key_id"]] = (k["alg"], serialization.load_pem_public_key(k["public_key_pem"].encode()))
        with self._lock:
            self._keys = keys

    def _signature_ok(self, device, body, header):
        """Checks X-Otad-Signature over the exact body bytes, once per distinct (body, header):
        otad signs a manifest once per window and serves the same bytes to many devices."""
        cache_key = (hashlib.sha256(body).digest(), header)
        with self._lock:
            if cache_key in self._verified:
                return True
        parts = dict(piece.strip().partition("=")[::2] for piece in header.split(",") if piece.strip())
        if not {"keyid", "alg", "sig"} <= set(parts):
            self._error(device, f"bad X-Otad-Signature {header!r}")
            return False
        with self._lock:
            key = self._keys.get(parts["keyid"])
        if key is None:
            self._load_keys(device)
            with self._lock:
                key = self._keys.get(parts["keyid"])
        if key is None or key[0] != parts["alg"]:
            self._error(device, f"manifest signed by unknown key {parts['keyid']} ({parts['alg']})")
            return False
        signature = base64.b64decode(parts["sig"])
        try:
            if parts["alg"] == "es256":
                key[1].verify(signature, body, ec.ECDSA(hashes.SHA256()))
            elif parts["alg"] == "ed25519":
                key[1].verify(signature, body)
            else:
                raise InvalidSignature(parts["alg"])
        except InvalidSignature:
            self._error(device, f"manifest signature does not verify ({header})")
            return False
        with self._lock:
            self._verified.add(cache_key)
        return True


def rollout_bucket(rollout_id, device_id):
    """A device's bucket as docs/rollouts.md ("Cohorts") defines it: splitmix64's final mix of the
    FNV-1a 64 hash of "<rollout id>:<device id>", mod 10000. Scenario 1 also checks it against the
    bucket otad's device view shows."""
    mask = (1 << 64) - 1
    h = 14695981039346656037
    for byte in f"{rollout_id}:{device_id}".encode():
        h = ((h ^ byte) * 1099511628211) & mask
    h ^= h >> 30
    h = (h * 0xBF58476D1CE4E5B9) & mask
    h ^= h >> 27
    h = (h * 0x94D049BB133111EB) & mask
    h ^= h >> 31
    return h % 10000
