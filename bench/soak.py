#!/usr/bin/env python3
"""Soak test driver for otad; run it through bench/soak.sh. Not part of CI.

Starts a real `otad serve` on 127.0.0.1 with its own data dir, the HTTPS listener (the
self-signed certificate otad generates) and the plain-HTTP listener on fixed ports, so that the
URLs devices hold stay valid across restarts. For --seconds it drives a mixed workload at a
bounded rate (--rps requests per second over --threads client threads):

  polls      10,000 simulated devices (ESP32 `ota` devices of a product with a device key, mostly
             over HTTPS; ESP8266 NONOS 512+512 devices of an open product, mostly over plain HTTP)
             that keep their state (version, running slot, channel) and poll GET /api/v1/update
  downloads  a device that is offered an update downloads the manifest's URL either as one stream
             cut at random points and resumed with Range + If-Range (ETag, Last-Modified, or a
             stale validator that must give the whole 200), or like esp_https_ota (HEAD, then
             16-64 KiB ranges); the bytes are checked against the manifest's SHA-256 and size
  reports    downloading / installing / installed, sometimes a failed install (implicit rollback)
  uploads    new releases every --upload-seconds: real ESP images from make_esp_image, raw,
             chunked (some at ~0.5 MB/s) or multipart bodies; one cut by a kill is retried with
             the same bytes
  channels   stable and beta moved every --channel-seconds, sometimes a rollback

and kills otad with SIGKILL every --restart-seconds (+-25 %; half of the kills wait for an upload
in flight), checks the store while it is down, and starts it again. Everything stops by itself. At the end (after one more kill and restart) it
checks and prints, and exits 1 when a check fails:

  uploads    every upload the API acknowledged (201, or 200 for a retried one) is listed with the
             same artifact SHA-256, and downloads byte-exact by its blob URL and its friendly path
  blobs      every blob file in the data dir hashes to its name, every blob and artifact row has its
             file with the recorded size, the database passes PRAGMA integrity_check (also after
             every kill)
  downloads  every device download that completed was byte-exact; every range answer was exact
  answers    no status outside the expected set (no 500), every manifest names a release a channel
             was moved to, with the bytes we uploaded for the right slot
  transport  no connection error or timeout while otad was up (a request cut by a kill is counted,
             and resumed or retried)
  channels   each channel ends where the last acknowledged move put it
  registry   the device registry agrees with the last poll of sampled devices
  crash      otad never exits by itself (it is restarted and the soak goes on if it does)
  log        otad logs no error or critical line
  shutdown   the client threads stop, and otad exits 0 on the final SIGTERM
  resources  RSS (anonymous memory) and open descriptors of each daemon lifetime show no growth
             trend: median of the last third of the samples vs the first third, after a warm-up
             in which every simulated device polls once, plus a least-squares slope per minute
"""
import argparse
import collections
import hashlib
import http.client
import json
import os
import random
import signal
import socket
import sqlite3
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

KIB = 1024
API = "/api/v1"


def env(name, default):
    return os.environ.get(name, default)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--otad", default=env("OTAD_BIN", "build/otad"))
    p.add_argument("--make-esp-image", default=env("MAKE_ESP_IMAGE", "build/tests/make_esp_image"))
    p.add_argument("--work", required=True, help="empty directory for the data dir, logs and images")
    p.add_argument("--tls-port", type=int, required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--short", action="store_true", default=env("SOAK_SHORT", "") not in ("", "0"),
                   help="check the script: 180 s, a restart every 60 s, 20 s warm-up (unless set)")
    p.add_argument("--seconds", type=float, default=env("SOAK_SECONDS", None))
    p.add_argument("--restart-seconds", type=float, default=env("SOAK_RESTART_SECONDS", None))
    p.add_argument("--devices", type=int, default=int(env("SOAK_DEVICES", "10000")))
    p.add_argument("--rps", type=float, default=float(env("SOAK_RPS", "250")))
    p.add_argument("--threads", type=int, default=int(env("SOAK_THREADS", "12")))
    p.add_argument("--download-fraction", type=float, default=float(env("SOAK_DOWNLOAD_FRACTION", "0.2")),
                   help="share of offered updates a device downloads at once (the others poll again later)")
    p.add_argument("--upload-seconds", type=float, default=env("SOAK_UPLOAD_SECONDS", None))
    p.add_argument("--channel-seconds", type=float, default=env("SOAK_CHANNEL_SECONDS", None))
    p.add_argument("--sample-seconds", type=float, default=float(env("SOAK_SAMPLE_SECONDS", "2")))
    p.add_argument("--warmup-seconds", default=env("SOAK_WARMUP_SECONDS", "auto"),
                   help="'auto': until every device polled once in the lifetime (at least 20 s)")
    p.add_argument("--rss-tolerance-kib", type=float, default=float(env("SOAK_RSS_TOLERANCE_KIB", "4096")))
    p.add_argument("--fd-tolerance", type=float, default=float(env("SOAK_FD_TOLERANCE", "16")))
    p.add_argument("--seed", type=int, default=int(env("SOAK_SEED", str(time.time_ns() % 1_000_000))))
    a = p.parse_args()
    short = a.short
    a.seconds = float(a.seconds if a.seconds is not None else (180 if short else 1800))
    a.restart_seconds = float(a.restart_seconds if a.restart_seconds is not None else (60 if short else 300))
    a.upload_seconds = float(a.upload_seconds if a.upload_seconds is not None else (10 if short else 20))
    a.channel_seconds = float(a.channel_seconds if a.channel_seconds is not None else (12 if short else 30))
    if a.warmup_seconds == "auto" and short:
        a.warmup_seconds = "20"
    return a


# ---------------------------------------------------------------------------------------------
# Bookkeeping shared by all threads

class Stats:
    """Counters, latencies and failures (per check, the first few messages kept)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.latency = collections.defaultdict(list)
        self.failure_counts = collections.Counter()
        self.failures = collections.defaultdict(list)

    def count(self, key, n=1):
        with self.lock:
            self.counts[key] += n

    def took(self, kind, seconds):
        with self.lock:
            self.latency[kind].append(seconds)

    def fail(self, check, message):
        with self.lock:
            self.failure_counts[check] += 1
            if len(self.failures[check]) < 12:
                self.failures[check].append(message)


class Stopping(Exception):
    """The run is over; the current device session is abandoned."""


class TransportError(Exception):
    """No (complete) answer: connection refused, reset, closed early, or timed out."""


class Lifecycle:
    """Which daemon generation is serving, and whether it is up. Workers wait while it is down;
    a transport error is blamed on a restart when the generation changed or the daemon was down."""

    def __init__(self):
        self.cond = threading.Condition()
        self.gen = 0
        self.up = False

    def set_up(self, gen):
        with self.cond:
            self.gen, self.up = gen, True
            self.cond.notify_all()

    def set_down(self):
        with self.cond:
            self.up = False

    def snapshot(self):
        with self.cond:
            return self.gen, self.up

    def wait_up(self, stop, timeout):
        with self.cond:
            self.cond.wait_for(lambda: self.up or stop.is_set(), timeout)
            return self.gen if self.up and not stop.is_set() else None


class RateLimiter:
    """At most `rate` requests per second over all threads (a token bucket, burst of rate/10)."""

    def __init__(self, rate, stop):
        self.rate, self.stop = rate, stop
        self.capacity = max(1.0, rate / 10)
        self.tokens = self.capacity
        self.last = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self):
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
                self.last = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.rate
            if self.stop.wait(wait):
                raise Stopping()


# ---------------------------------------------------------------------------------------------
# The daemon

class Daemon:
    def __init__(self, args):
        self.args = args
        self.data_dir = os.path.join(args.work, "data")
        self.proc = None
        self.log = None
        self.gen = 0

    @property
    def cert_path(self):
        return os.path.join(self.data_dir, "tls", "cert.pem")

    def otad(self, *argv):
        proc = subprocess.run([self.args.otad] + list(argv) + ["--data-dir", self.data_dir],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"otad {' '.join(argv)} exited {proc.returncode}: {proc.stderr}")
        return proc.stdout

    def start(self):
        self.gen += 1
        self.log = open(os.path.join(self.args.work, f"otad-{self.gen}.log"), "ab")
        cmd = [self.args.otad, "serve", "--data-dir", self.data_dir,
               "--listen", f"127.0.0.1:{self.args.tls_port}", "--http-listen", f"127.0.0.1:{self.args.http_port}"]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        with open(os.path.join(self.args.work, "otad.pid"), "w") as f:  # soak.sh kills it if we die
            f.write(str(self.proc.pid))
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"otad exited {self.proc.returncode} at start; see otad-{self.gen}.log")
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise RuntimeError("otad did not answer /healthz within 60 s")
            time.sleep(0.05)

    def _ready(self):
        if not os.path.exists(self.cert_path):
            return False
        try:
            ctx = ssl.create_default_context(cafile=self.cert_path)
            conn = http.client.HTTPSConnection("127.0.0.1", self.args.tls_port, timeout=5, context=ctx)
            conn.request("GET", "/healthz")
            ok = conn.getresponse().status == 200
            conn.close()
            with socket.create_connection(("127.0.0.1", self.args.http_port), timeout=5):
                pass
            return ok
        except (OSError, http.client.HTTPException, ssl.SSLError):
            return False

    def kill9(self):
        self.proc.kill()
        self.proc.wait(30)
        self.log.close()

    def stop(self):
        """SIGTERM; returns the exit status (None if it had to be killed)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            rc = None
        self.log.close()
        return rc


# ---------------------------------------------------------------------------------------------
# HTTP client

class HTTP10Connection(http.client.HTTPConnection):
    """An HTTP/1.0 client, as some NONOS updaters are."""
    _http_vsn = 10
    _http_vsn_str = "HTTP/1.0"


class Http:
    """One worker's connections: at most one idle keep-alive connection per listener, dropped
    after an error or once the daemon restarted. Every request takes a token from the limiter."""

    RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)

    def __init__(self, ctx, ports, limiter, lifecycle, stats, timeout=30):
        self.ctx, self.ports, self.limiter = ctx, ports, limiter
        self.lifecycle, self.stats, self.timeout = lifecycle, stats, timeout
        self.idle = {}  # scheme -> (connection, generation)

    def _connect(self, scheme, http10=False):
        if scheme == "https":
            return http.client.HTTPSConnection("127.0.0.1", self.ports["https"], timeout=self.timeout,
                                               context=self.ctx)
        cls = HTTP10Connection if http10 else http.client.HTTPConnection
        return cls("127.0.0.1", self.ports["http"], timeout=self.timeout)

    def host(self, scheme):
        return f"127.0.0.1:{self.ports[scheme]}"

    def drop(self):
        for conn, _ in self.idle.values():
            conn.close()
        self.idle.clear()

    def open(self, method, scheme, path, headers=None, body=None, fresh=False, http10=False, kind=None):
        """Sends a request and returns (connection, response) with the body unread; the caller
        reads it and hands the connection to keep() or closes it. Raises TransportError."""
        self.limiter.acquire()
        gen, _ = self.lifecycle.snapshot()
        for attempt in (0, 1):
            reused = False
            conn = None
            if not fresh and not http10 and attempt == 0 and scheme in self.idle:
                conn, conn_gen = self.idle.pop(scheme)
                if conn_gen != gen:
                    conn.close()
                    conn = None
                else:
                    reused = True
            if conn is None:
                conn = self._connect(scheme, http10)
            started = time.monotonic()
            headers = dict(headers or {})
            if http10:  # http.client sends Host only with HTTP/1.1; devices send it with 1.0 too
                headers.setdefault("Host", self.host(scheme))
            try:
                conn.request(method, path, body=body, headers=headers,
                             encode_chunked=not isinstance(body, (bytes, str, type(None))))
                resp = conn.getresponse()
                if kind:
                    self.stats.took(kind, time.monotonic() - started)
                conn.soak_gen = gen
                return conn, resp
            except self.RETRYABLE as e:
                conn.close()
                if reused and method in ("GET", "HEAD", "PUT"):
                    self.stats.count("client: stale keep-alive connection retried")
                    continue  # the server closed an idle connection as we reused it
                raise TransportError(f"{method} {path[:60]}: {type(e).__name__}: {e}") from e
            except (OSError, http.client.HTTPException, ssl.SSLError) as e:
                conn.close()
                raise TransportError(f"{method} {path[:60]}: {type(e).__name__}: {e}") from e
        raise AssertionError("unreachable")

    def keep(self, scheme, conn, resp):
        """Back to the idle pool if the answer allows keep-alive, else closed."""
        if resp.will_close or scheme in self.idle:
            conn.close()
        else:
            self.idle[scheme] = (conn, conn.soak_gen)

    def request(self, method, scheme, path, headers=None, body=None, fresh=False, http10=False, kind=None):
        """A whole exchange: (status, lower-case headers, body). Raises TransportError."""
        conn, resp = self.open(method, scheme, path, headers, body, fresh, http10, kind)
        try:
            data = resp.read()
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            conn.close()
            raise TransportError(f"{method} {path[:60]}: reading the body: {type(e).__name__}: {e}") from e
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if fresh or http10:
            conn.close()
        else:
            self.keep(scheme, conn, resp)
        return resp.status, hdrs, data


def slow_pieces(data, piece=16384, pause=0.03):
    """A body sent like over a slow link (~0.5 MB/s), so that kills land in the middle of uploads."""
    for i in range(0, len(data), piece):
        time.sleep(pause)
        yield data[i:i + piece]


def read_exactly(resp, n):
    """Reads n body bytes; TransportError if the stream ends first."""
    parts, got = [], 0
    while got < n:
        try:
            piece = resp.read(min(65536, n - got))
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            raise TransportError(f"reading a body: {type(e).__name__}: {e}") from e
        if not piece:
            raise TransportError(f"body ended after {got} of {n} bytes")
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


# ---------------------------------------------------------------------------------------------
# What we uploaded and moved: the reference every answer is checked against

PRODUCTS = {
    # ESP32 (ESP-IDF `ota` layout, 2 OTA slots), protected by a device key, polled mostly over HTTPS.
    "soak-esp32": dict(chip="esp32", layout="ota", artifact_slots=("",), running=("ota_0", "ota_1"),
                       keyed=True, prefix="1.0.", https_share=0.75, kib=(96, 512)),
    # ESP8266 NONOS FOTA 512+512 (a user1 and a user2 build per release), open, mostly plain HTTP.
    "soak-plug": dict(chip="esp8266", layout="512+512", artifact_slots=("user1", "user2"),
                      running=("user1", "user2"), keyed=False, prefix="2.0.", https_share=0.1, kib=(64, 320)),
}
CHANNELS = ("stable", "beta")


def target_slot(product, running):
    return {"ota_0": "ota_1", "ota_1": "ota_0", "user1": "user2", "user2": "user1"}[running]


def artifact_slot(product, target):
    return target if PRODUCTS[product]["layout"] == "512+512" else ""


class Image:
    __slots__ = ("product", "version", "slot", "path", "sha256", "size", "filename")


class Model:
    """Releases generated, acknowledged uploads and channel moves (under one lock)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.images = {}                                    # (product, version, slot) -> Image
        self.acked = {}                                     # (product, version, slot) -> sha256
        self.complete = {p: [] for p in PRODUCTS}           # versions with every artifact acknowledged
        self.pending = {p: [] for p in PRODUCTS}            # versions generated, not yet complete
        self.failed = set()                                 # (product, version) refused: never moved to
        self.next_n = {p: 0 for p in PRODUCTS}
        # (product, channel) -> {"acked": (version, allow_rollback), "maybe": set of unconfirmed moves}
        self.channels = {(p, c): {"acked": None, "maybe": set()} for p in PRODUCTS for c in CHANNELS}

    def image(self, product, version, slot):
        with self.lock:
            return self.images.get((product, version, slot))

    def is_complete(self, product, version):
        with self.lock:
            return version in self.complete[product]


class Device:
    __slots__ = ("id", "product", "slot", "version", "channel", "scheme", "key_in_query", "busy")


class Fleet:
    """The simulated devices, handed out in a fixed random cycle, so that any `len` consecutive
    sessions touch every device once (the warm-up of a daemon lifetime is one such cycle)."""

    def __init__(self, n, rng):
        self.devices = []
        for i in range(n):
            d = Device()
            d.product = "soak-esp32" if i % 10 < 7 else "soak-plug"
            spec = PRODUCTS[d.product]
            d.id = f"{'esp32' if d.product == 'soak-esp32' else 'plug'}-{i:05d}"
            d.slot = rng.choice(spec["running"])
            d.version = spec["prefix"] + "0"
            d.channel = "beta" if rng.random() < 0.1 else "stable"
            d.scheme = "https" if rng.random() < spec["https_share"] else "http"
            d.key_in_query = rng.random() < 0.2
            d.busy = False
            self.devices.append(d)
        rng.shuffle(self.devices)
        self.lock = threading.Lock()
        self.cursor = 0
        self.sessions = 0

    def next(self):
        with self.lock:
            for _ in range(len(self.devices)):
                d = self.devices[self.cursor]
                self.cursor = (self.cursor + 1) % len(self.devices)
                if not d.busy:
                    d.busy = True
                    self.sessions += 1
                    return d
        return None


# ---------------------------------------------------------------------------------------------
# The soak

class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.stats = Stats()
        self.stop = threading.Event()
        self.lifecycle = Lifecycle()
        self.upload_in_flight = threading.Event()  # lets half of the kills land in an upload
        self.limiter = RateLimiter(args.rps, self.stop)
        self.daemon = Daemon(args)
        self.model = Model()
        self.fleet = Fleet(args.devices, self.rng)
        self.ports = {"https": args.tls_port, "http": args.http_port}
        self.images_dir = os.path.join(args.work, "images")
        os.makedirs(self.images_dir, exist_ok=True)
        self.lifetimes = []
        self.lifetimes_lock = threading.Lock()
        self.device_key = None
        self.admin = None
        self.uploader = None
        self.ctx = None

    # -- helpers --------------------------------------------------------------------------
    def log(self, message):
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def transport_failed(self, gen_before, error, what):
        """A transport error: expected while a restart happens, a failure otherwise."""
        gen, up = self.lifecycle.snapshot()
        if gen != gen_before or not up or self.stop.is_set():
            self.stats.count(f"{what}: cut by a restart")
            return
        self.stats.fail("transport", f"{what}: {error}")

    def wait_up(self):
        gen = self.lifecycle.wait_up(self.stop, 120)
        if gen is None:
            raise Stopping()
        return gen

    def admin_http(self):
        return Http(self.ctx, self.ports, self.limiter, self.lifecycle, self.stats, timeout=60)

    def operator(self, http_, method, path, body=None, token=None, kind=None):
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        if body is not None:
            body = json.dumps(body)
            headers["Content-Type"] = "application/json"
        status, hdrs, data = http_.request(method, "https", path, headers, body, kind=kind)
        parsed = json.loads(data) if data and hdrs.get("content-type", "").endswith("json") else None
        return status, hdrs, parsed

    # -- releases ---------------------------------------------------------------------------
    def generate_release(self, product):
        """Makes the images of the product's next release (deterministic per version)."""
        spec = PRODUCTS[product]
        with self.model.lock:
            n = self.model.next_n[product]
            self.model.next_n[product] += 1
        version = f"{spec['prefix']}{n}"
        rng = random.Random(f"{self.args.seed}/{product}/{version}")
        images = []
        for slot in spec["artifact_slots"]:
            path = os.path.join(self.images_dir, f"{product}-{version}-{slot or 'app'}.bin")
            kib = rng.randint(*spec["kib"])
            if spec["chip"] == "esp32":
                cmd = ["--kind", "esp32", "--chip", "esp32", "--version", version, "--project", "soak"]
            else:
                cmd = ["--kind", "esp8266-v2", "--slot", slot, "--flash-map", "2"]
            out = subprocess.run([self.args.make_esp_image] + cmd + ["--size", f"{kib}K", "--seed", str(n + 1),
                                                                    "--out", path],
                                 capture_output=True, text=True, timeout=60)
            if out.returncode != 0:
                raise RuntimeError(f"make_esp_image: {out.stderr}")
            info = json.loads(out.stdout)
            img = Image()
            img.product, img.version, img.slot, img.path = product, version, slot, path
            img.sha256, img.size = info["sha256"], info["size"]
            img.filename = f"{slot}.bin" if slot else f"soak-{version}.bin"
            images.append(img)
        with self.model.lock:
            for img in images:
                self.model.images[(product, version, img.slot)] = img
            self.model.pending[product].append(version)
        return version

    def upload_artifact(self, img, rng):
        """One upload attempt on a fresh HTTPS connection. Returns True once acknowledged."""
        spec = PRODUCTS[img.product]
        with open(img.path, "rb") as f:
            data = f.read()
        query = {"chip": spec["chip"], "layout": spec["layout"], "filename": img.filename}
        if img.slot:
            query["slot"] = img.slot
        path = f"{API}/products/{img.product}/releases/{img.version}/artifacts"
        headers = {"Authorization": f"Bearer {self.uploader}", "X-Checksum-Sha256": img.sha256}
        mode = rng.choices(["raw", "chunked", "slow chunked", "multipart"], [0.45, 0.15, 0.25, 0.15])[0]
        if mode == "multipart":
            boundary = f"soak{rng.getrandbits(64):016x}"
            parts = []
            for name, value in query.items():
                parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                             .encode())
            parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                         f"filename=\"{img.filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n".encode())
            body = b"".join(parts) + data + f"\r\n--{boundary}--\r\n".encode()
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        else:
            path += "?" + urllib.parse.urlencode(query)
            headers["Content-Type"] = "application/octet-stream"
            if mode == "raw":
                body = data
            elif mode == "chunked":
                body = (data[i:i + 65536] for i in range(0, len(data), 65536))
            else:
                body = slow_pieces(data)
        self.stats.count(f"upload {mode}")
        http_ = self.admin_http()
        gen = self.wait_up()
        self.upload_in_flight.set()
        try:
            status, hdrs, answer = http_.request("POST", "https", path, headers, body, fresh=True, kind="upload")
        except TransportError as e:
            self.transport_failed(gen, e, "upload")
            return False
        finally:
            self.upload_in_flight.clear()
        self.stats.count(f"upload {status}")
        if status in (200, 201):
            got = json.loads(answer).get("sha256")
            if got != img.sha256:
                self.stats.fail("uploads", f"{img.product} {img.version} {img.slot}: answered {status} with sha256 "
                                           f"{got}, uploaded {img.sha256}")
                return False
            with self.model.lock:
                self.model.acked[(img.product, img.version, img.slot)] = img.sha256
            return True
        if status == 503:
            return False  # e.g. busy; retried later
        self.stats.fail("answers", f"upload {img.product} {img.version} {img.slot} ({mode}): {status} "
                                   f"{answer[:300]!r}")
        with self.model.lock:
            self.model.failed.add((img.product, img.version))
        return False

    def push_pending(self, product, rng):
        """Uploads whatever of the product's pending releases is not acknowledged yet."""
        with self.model.lock:
            versions = [v for v in self.model.pending[product] if (product, v) not in self.model.failed]
        for version in versions:
            for slot in PRODUCTS[product]["artifact_slots"]:
                if self.stop.is_set():
                    return
                with self.model.lock:
                    done = (product, version, slot) in self.model.acked
                    img = self.model.images[(product, version, slot)]
                if not done:
                    self.upload_artifact(img, rng)
            with self.model.lock:
                if all((product, version, s) in self.model.acked for s in PRODUCTS[product]["artifact_slots"]):
                    self.model.pending[product].remove(version)
                    self.model.complete[product].append(version)
                    self.stats.count("releases complete")

    def move_channel(self, http_, product, channel, version, allow_rollback):
        state = self.model.channels[(product, channel)]
        with self.model.lock:
            state["maybe"].add((version, allow_rollback))
        gen = self.wait_up()
        try:
            status, _, body = self.operator(http_, "PUT", f"{API}/products/{product}/channels/{channel}",
                                            {"version": version, "allow_rollback": allow_rollback}, kind="channel")
        except TransportError as e:
            self.transport_failed(gen, e, "channel move")
            return False
        self.stats.count(f"channel move {status}")
        if status != 200 or body.get("version") != version:
            self.stats.fail("answers", f"PUT channel {product}/{channel} -> {version}: {status} {body}")
            return False
        with self.model.lock:
            state["acked"] = (version, allow_rollback)
            state["maybe"] = set()
        return True

    # -- threads ----------------------------------------------------------------------------
    def uploader_loop(self):
        rng = random.Random(f"{self.args.seed}/uploader")
        turn = 0
        while not self.stop.wait(self.args.upload_seconds * rng.uniform(0.75, 1.25)):
            product = list(PRODUCTS)[turn % len(PRODUCTS)]
            turn += 1
            try:
                with self.model.lock:
                    backlog = len(self.model.pending[product])
                if backlog < 3:
                    self.generate_release(product)
                self.push_pending(product, rng)
            except Stopping:
                return

    def channel_loop(self):
        rng = random.Random(f"{self.args.seed}/channels")
        http_ = self.admin_http()
        while not self.stop.wait(self.args.channel_seconds * rng.uniform(0.75, 1.25)):
            product = rng.choice(list(PRODUCTS))
            with self.model.lock:
                versions = list(self.model.complete[product])
            if len(versions) < 2:
                continue
            r = rng.random()
            if r < 0.45:
                channel, version, rollback = "beta", versions[-1], False
            elif r < 0.85:
                channel, version, rollback = "stable", versions[-2], False
            else:  # a rollback: the whole stable fleet goes back to an older release
                channel, version, rollback = "stable", rng.choice(versions[:-2] or versions[:1]), True
            try:
                if self.move_channel(http_, product, channel, version, rollback):
                    self.log(f"channel {product}/{channel} -> {version}{' (rollback)' if rollback else ''}")
            except Stopping:
                return

    def sampler_loop(self):
        while not self.stop.wait(self.args.sample_seconds):
            with self.lifetimes_lock:
                life = self.lifetimes[-1] if self.lifetimes else None
            if life is None or life["ended"] is not None:
                continue
            sample = read_proc(life["pid"])
            if sample is None:
                continue
            now = time.monotonic()
            sample["t"] = now - life["started"]
            with self.lifetimes_lock:
                if life["ended"] is not None:
                    continue
                life["samples"].append(sample)
                if life["cycle_done"] is None and self.fleet.sessions - life["sessions_at_start"] >= len(
                        self.fleet.devices):
                    life["cycle_done"] = sample["t"]

    def worker_loop(self, index):
        rng = random.Random(f"{self.args.seed}/worker{index}")
        http_ = Http(self.ctx, self.ports, self.limiter, self.lifecycle, self.stats)
        while not self.stop.is_set():
            device = self.fleet.next()
            if device is None:
                time.sleep(0.01)
                continue
            try:
                self.session(device, http_, rng)
            except Stopping:
                pass
            finally:
                device.busy = False
        http_.drop()

    # -- a device ---------------------------------------------------------------------------
    def device_headers(self, device):
        if PRODUCTS[device.product]["keyed"] and not device.key_in_query:
            return {"Authorization": f"Bearer {self.device_key}"}
        return {}

    def device_query(self, device):
        return {"key": self.device_key} if PRODUCTS[device.product]["keyed"] and device.key_in_query else {}

    def session(self, device, http_, rng):
        """One poll; when offered an update, maybe a download, reports and an install."""
        spec = PRODUCTS[device.product]
        gen = self.wait_up()
        params = dict(product=device.product, chip=spec["chip"], layout=spec["layout"], slot=device.slot,
                      version=device.version, device=device.id)
        if device.channel != "stable" or rng.random() < 0.5:
            params["channel"] = device.channel
        if spec["layout"] == "ota":
            params["slots"] = "2"
        params.update(self.device_query(device))
        fresh = rng.random() < 0.3  # many devices connect per poll; others keep the connection
        http10 = device.scheme == "http" and device.product == "soak-plug" and rng.random() < 0.2
        try:
            status, hdrs, body = http_.request("GET", device.scheme, f"{API}/update?" + urllib.parse.urlencode(params),
                                               self.device_headers(device), fresh=fresh, http10=http10, kind="poll")
        except TransportError as e:
            self.transport_failed(gen, e, "poll")
            return
        self.stats.count(f"poll {status}")
        if status == 204:
            self.stats.count(f"poll 204 {hdrs.get('x-otad-no-update', '(no reason)')}")
            if "x-otad-no-update" not in hdrs:
                self.stats.fail("answers", f"poll 204 without X-Otad-No-Update for {device.id}")
            return
        if status != 200:
            self.stats.fail("answers", f"poll {device.id}: {status} {body[:300]!r}")
            return
        manifest = json.loads(body)
        img = self.check_manifest(device, manifest, hdrs)
        if img is None or rng.random() >= self.args.download_fraction:
            return
        self.install(device, manifest, img, http_, rng, (gen, time.monotonic()))

    def check_manifest(self, device, m, hdrs):
        """The manifest must offer a release we uploaded, its build for the right slot."""
        spec = PRODUCTS[device.product]
        want_slot = target_slot(device.product, device.slot)
        img = self.model.image(device.product, m.get("version"), artifact_slot(device.product, want_slot))
        problems = []
        if "x-otad-signature" not in hdrs:
            problems.append("no X-Otad-Signature")
        if (m.get("product"), m.get("chip"), m.get("layout"), m.get("slot")) != (
                device.product, spec["chip"], spec["layout"], want_slot):
            problems.append(f"product/chip/layout/slot {m.get('product')}/{m.get('chip')}/{m.get('layout')}/"
                            f"{m.get('slot')}, expected slot {want_slot}")
        if img is None or not self.model.is_complete(device.product, m.get("version")):
            problems.append(f"offers version {m.get('version')!r}, which no channel was moved to")
        elif (m.get("sha256"), m.get("size")) != (img.sha256, img.size):
            problems.append(f"sha256/size {m.get('sha256')}/{m.get('size')}, uploaded {img.sha256}/{img.size}")
        if m.get("version") == device.version:
            problems.append("offers the version the device runs")
        url = urllib.parse.urlsplit(m.get("url", ""))
        if url.scheme != device.scheme or url.port != self.ports[device.scheme] or \
                not url.path.startswith(f"{API}/blobs/"):
            problems.append(f"url {m.get('url')!r}")
        if problems:
            self.stats.fail("answers", f"manifest for {device.id} ({device.version} on {device.slot}): "
                                       + "; ".join(problems))
            return None
        return img

    def report(self, device, http_, status, version, polled):
        """polled: (daemon generation, monotonic time) of the poll that offered the update."""
        gen = self.wait_up()
        path = f"{API}/devices/{device.id}/report"
        if self.device_query(device):
            path += "?" + urllib.parse.urlencode(self.device_query(device))
        headers = dict(self.device_headers(device), **{"Content-Type": "application/json"})
        try:
            code, _, body = http_.request("POST", device.scheme, path, headers,
                                          json.dumps({"status": status, "version": version}), kind="report")
        except TransportError as e:
            self.transport_failed(gen, e, "report")
            return
        self.stats.count(f"report {code}")
        if code in (401, 404) and gen != polled[0]:
            # The poll that introduced the device was answered by a daemon killed before its
            # batched registry flush (documented: up to device_flush_interval_ms of sightings).
            self.stats.count("report: device unknown, its first poll was lost in a kill")
            return
        if code != 204:
            since = f"; the same otad answered its poll {1000 * (time.monotonic() - polled[1]):.0f} ms before" \
                if code in (401, 404) else ""
            self.stats.fail("answers", f"report {status} for {device.id}: {code} {body[:300]!r}{since}")

    def install(self, device, manifest, img, http_, rng, polled):
        version = manifest["version"]
        self.report(device, http_, "downloading", version, polled)
        data = self.download(manifest, http_, rng)
        if data is None:
            return
        size, sha = manifest["size"], manifest["sha256"]
        digest = hashlib.sha256(data).hexdigest()
        self.stats.count("download completed")
        self.stats.count("downloaded bytes", len(data))
        if len(data) != size or digest != sha:
            with open(img.path, "rb") as f:
                want = f.read()
            first = next((i for i in range(min(len(data), len(want))) if data[i] != want[i]), min(len(data), len(want)))
            self.stats.fail("downloads", f"{manifest['url']}: {len(data)} bytes with sha256 {digest}, expected "
                                         f"{size} bytes {sha}; first difference at byte {first}")
            self.report(device, http_, "failed", version, polled)
            return
        self.stats.count("download byte-exact")
        self.report(device, http_, "downloaded", version, polled)
        self.report(device, http_, "installing", version, polled)
        if rng.random() < 0.05:
            self.stats.count("install rolled back by the device")  # next poll: implicit rollback
            return
        device.version, device.slot = version, manifest["slot"]
        self.report(device, http_, "installed", version, polled)

    def download(self, manifest, http_, rng):
        """Returns the bytes, or None when given up (the run ends, or too many failures)."""
        url = urllib.parse.urlsplit(manifest["url"])
        target = f"{url.path}?{url.query}"
        size = manifest["size"]
        etag = '"' + manifest["sha256"] + '"'
        if rng.random() < 0.6:
            return self.download_stream(url.scheme, target, size, etag, http_, rng)
        return self.download_like_idf(url.scheme, target, size, etag, http_, rng)

    def range_problem(self, what, status, hdrs, want_status, want_range, want_length, etag):
        problems = []
        if status != want_status:
            problems.append(f"status {status}, expected {want_status}")
        if want_range is not None and hdrs.get("content-range") != want_range:
            problems.append(f"Content-Range {hdrs.get('content-range')!r}, expected {want_range!r}")
        if want_range is None and "content-range" in hdrs:
            problems.append(f"unexpected Content-Range {hdrs['content-range']!r}")
        if hdrs.get("content-length") != str(want_length):
            problems.append(f"Content-Length {hdrs.get('content-length')!r}, expected {want_length}")
        if hdrs.get("etag") != etag:
            problems.append(f"ETag {hdrs.get('etag')!r}, expected {etag}")
        if problems:
            self.stats.fail("downloads", f"{what}: " + "; ".join(problems))
            return True
        return False

    def download_stream(self, scheme, target, size, etag, http_, rng):
        """One GET, cut at random points; each cut resumed with Range and If-Range."""
        cuts = sorted({rng.randrange(1, size) for _ in range(rng.choice((0, 1, 1, 2, 3)))})
        data = bytearray()
        last_modified = None
        failures = 0
        while len(data) < size:
            if failures > 20:
                self.stats.count("download given up")
                return None
            gen = self.wait_up()
            start = len(data)
            headers = {}
            validator = None
            if start > 0:
                validator = rng.choices(["etag", "date", "stale"], [0.7, 0.2, 0.1])[0]
                if validator == "date" and last_modified is None:
                    validator = "etag"
                headers["Range"] = f"bytes={start}-"
                headers["If-Range"] = {"etag": etag, "date": last_modified, "stale": '"0000stale"'}[validator]
                self.stats.count(f"download resume (If-Range {validator})")
            try:
                conn, resp = http_.open("GET", scheme, target, headers, fresh=start > 0, kind="download")
            except TransportError as e:
                self.transport_failed(gen, e, "download")
                failures += 1
                continue
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            if validator == "stale":  # a validator that does not match: the whole file again
                data.clear()
                start = 0
            if start == 0:
                bad = self.range_problem(f"GET {target[:40]}", resp.status, hdrs, 200, None, size, etag)
            else:
                bad = self.range_problem(f"GET {target[:40]} Range bytes={start}- If-Range {validator}", resp.status,
                                         hdrs, 206, f"bytes {start}-{size - 1}/{size}", size - start, etag)
            if bad:
                conn.close()
                return None
            last_modified = hdrs.get("last-modified", last_modified)
            cut = next((c for c in cuts if c > start), None)
            want = (cut if cut is not None else size) - start
            try:
                data += read_exactly(resp, want)
            except TransportError as e:
                conn.close()
                self.transport_failed(gen, e, "download body")
                failures += 1
                continue
            if cut is not None:
                cuts.remove(cut)
                conn.close()  # the connection drops mid-body
                self.stats.count("download cut")
            else:
                http_.keep(scheme, conn, resp)
        return bytes(data)

    def download_like_idf(self, scheme, target, size, etag, http_, rng):
        """esp_https_ota with partial_http_download: HEAD for the length, then fixed-size ranges,
        one connection per request (older IDF) or one kept-alive connection (newer IDF)."""
        per_request = rng.random() < 0.5
        chunk = rng.choice((16384, 32768, 65536))
        data = bytearray()
        failures = 0
        head_done = False
        while len(data) < size:
            if failures > 20:
                self.stats.count("download given up")
                return None
            gen = self.wait_up()
            try:
                if not head_done:
                    status, hdrs, body = http_.request("HEAD", scheme, target, fresh=per_request, kind="download")
                    if self.range_problem(f"HEAD {target[:40]}", status, hdrs, 200, None, size, etag) or body:
                        return None
                    head_done = True
                    continue
                start = len(data)
                end = min(start + chunk, size) - 1
                spec = f"bytes={start}-{end}"
                if end == size - 1:
                    spec = rng.choice((spec, f"bytes={start}-", f"bytes={start}-{size}"))  # newer IDF: one past the end
                conn, resp = http_.open("GET", scheme, target, {"Range": spec}, fresh=per_request, kind="download")
            except TransportError as e:
                self.transport_failed(gen, e, "download")
                failures += 1
                continue
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
            if self.range_problem(f"GET {target[:40]} Range {spec}", resp.status, hdrs, 206,
                                  f"bytes {start}-{end}/{size}", end - start + 1, etag):
                conn.close()
                return None
            try:
                if rng.random() < 0.03:  # the link drops mid-range; IDF asks for the range again
                    read_exactly(resp, (end - start + 1) // 2)
                    conn.close()
                    self.stats.count("download cut")
                    continue
                data += read_exactly(resp, end - start + 1)
            except TransportError as e:
                conn.close()
                self.transport_failed(gen, e, "download body")
                failures += 1
                continue
            if per_request:
                conn.close()
            else:
                http_.keep(scheme, conn, resp)
        self.stats.count("download in ranges")
        return bytes(data)

    # -- set-up, restarts, checks ----------------------------------------------------------
    def start_lifetime(self):
        self.daemon.start()
        with self.lifetimes_lock:
            self.lifetimes.append(dict(gen=self.daemon.gen, pid=self.daemon.proc.pid, started=time.monotonic(),
                                       sessions_at_start=self.fleet.sessions, cycle_done=None, samples=[],
                                       ended=None))
        self.lifecycle.set_up(self.daemon.gen)

    def end_lifetime(self, how):
        self.lifecycle.set_down()
        with self.lifetimes_lock:
            life = self.lifetimes[-1]
            life["ended"] = time.monotonic() - life["started"]
        if how == "kill":
            self.daemon.kill9()
            return None
        return self.daemon.stop()

    def setup(self):
        self.admin = self.daemon.otad("token", "create", "--name", "soak-admin", "--role", "admin").strip().splitlines()[-1]
        self.uploader = self.daemon.otad("token", "create", "--name", "soak-ci", "--role", "uploader"
                                         ).strip().splitlines()[-1]
        self.start_lifetime()
        self.ctx = ssl.create_default_context(cafile=self.daemon.cert_path)
        rng = random.Random(f"{self.args.seed}/setup")
        http_ = self.admin_http()
        for product in PRODUCTS:
            for _ in range(2):  # x.0.0 that every device runs, x.0.1 on beta so downloads start at once
                self.generate_release(product)
            self.push_pending(product, rng)
            with self.model.lock:
                versions = list(self.model.complete[product])
            if len(versions) != 2:
                raise RuntimeError(f"set-up uploads for {product} failed: {dict(self.stats.failures)}")
            self.move_channel(http_, product, "stable", versions[0], False)
            self.move_channel(http_, product, "beta", versions[1], False)
        status, _, body = self.operator(http_, "POST", f"{API}/products/soak-esp32/device-keys", {"name": "fleet"})
        if status != 201:
            raise RuntimeError(f"device key: {status} {body}")
        self.device_key = body["key"]

    def check_store_offline(self, label, full=False):
        """With otad stopped: database integrity, and every artifact's blob file whole.
        full: also walk the blob dir (every file hashes to its name) and report orphans."""
        data = self.daemon.data_dir
        # Read-only: no checkpoint on close, so otad itself recovers the WAL the kill left.
        db = sqlite3.connect(f"file:{os.path.join(data, 'otad.db')}?mode=ro", uri=True, timeout=30)
        try:
            result = db.execute("PRAGMA integrity_check").fetchall()
            if result != [("ok",)]:
                self.stats.fail("blobs", f"{label}: PRAGMA integrity_check: {result[:5]}")
            fk = db.execute("PRAGMA foreign_key_check").fetchall()
            if fk:
                self.stats.fail("blobs", f"{label}: PRAGMA foreign_key_check: {fk[:5]}")
            blob_rows = dict(db.execute("SELECT sha256, size FROM blobs").fetchall())
            artifacts = db.execute("SELECT p.name, r.version, a.slot, a.sha256, a.size FROM artifacts a "
                                   "JOIN releases r ON r.id = a.release_id JOIN products p ON p.id = r.product_id"
                                   ).fetchall()
        finally:
            db.close()
        stored = {}
        for product, version, slot, sha, size in artifacts:
            stored[(product, version, slot)] = sha
            if blob_rows.get(sha) != size:
                self.stats.fail("blobs", f"{label}: artifact {product} {version} {slot}: blob row "
                                         f"{blob_rows.get(sha)} bytes, artifact {size}")
        with self.model.lock:
            acked = dict(self.model.acked)
        for key, sha in acked.items():
            if stored.get(key) != sha:
                self.stats.fail("uploads", f"{label}: acknowledged upload {key} is {stored.get(key)} in the database, "
                                           f"expected {sha}")
        hashed = {}
        for sha, size in blob_rows.items():
            path = os.path.join(data, "blobs", sha[:2], sha[2:4], sha)
            if not os.path.isfile(path):
                self.stats.fail("blobs", f"{label}: blob row {sha} has no file")
                continue
            got_size, got_sha = os.path.getsize(path), sha256_file(path)
            hashed[path] = got_sha
            if (got_size, got_sha) != (size, sha):
                self.stats.fail("blobs", f"{label}: blob {sha}: file has {got_size} bytes hashing to {got_sha}, "
                                         f"row says {size} bytes")
        result = dict(blob_rows=len(blob_rows), artifacts=len(artifacts), files=0, orphans=0, temp_files=0)
        if not full:
            return result
        for root, dirs, files in os.walk(os.path.join(data, "blobs")):
            if os.path.basename(root) == "tmp":
                result["temp_files"] += len(files)
                continue
            for name in files:
                path = os.path.join(root, name)
                result["files"] += 1
                got = hashed.get(path) or sha256_file(path)
                rel = os.path.relpath(path, os.path.join(data, "blobs"))
                if rel != os.path.join(got[:2], got[2:4], got):
                    self.stats.fail("blobs", f"{label}: blob file {rel} hashes to {got}")
                if name not in blob_rows:
                    result["orphans"] += 1
        return result

    def restart(self, aim_at_upload=0.0, crashed=False):
        """kill -9, check the store, start again. aim_at_upload: seconds to wait for an upload in
        flight first, so that the kill lands in one. crashed: otad died by itself; just start it."""
        if crashed:
            self.log(f"otad lifetime {self.daemon.gen} died by itself; starting it again")
            self.end_lifetime("kill")
            self.check_store_offline(f"after the crash of lifetime {self.daemon.gen}")
            self.start_lifetime()
            return
        if aim_at_upload > 0 and self.upload_in_flight.wait(aim_at_upload):
            time.sleep(self.rng.uniform(0, 0.3))
        during_upload = self.upload_in_flight.is_set()
        self.log(f"kill -9 otad (lifetime {self.daemon.gen}, pid {self.daemon.proc.pid})"
                 + (" during an upload" if during_upload else ""))
        if during_upload:
            self.stats.count("kill -9 during an upload")
        self.end_lifetime("kill")
        self.stats.count("kill -9")
        self.check_store_offline(f"after kill {self.daemon.gen}")
        started = time.monotonic()
        self.start_lifetime()
        self.stats.took("restart (start to /healthz)", time.monotonic() - started)

    def run(self):
        a = self.args
        self.log(f"soak: {a.seconds:.0f} s, restart every ~{a.restart_seconds:.0f} s, {a.devices} devices, "
                 f"{a.rps:.0f} req/s over {a.threads} threads, seed {a.seed} (SOAK_SEED={a.seed} replays the "
                 f"choices); work dir {a.work}")
        self.setup()
        threads = [threading.Thread(target=self.worker_loop, args=(i,), name=f"worker{i}", daemon=True)
                   for i in range(a.threads)]
        threads += [threading.Thread(target=self.uploader_loop, name="uploader", daemon=True),
                    threading.Thread(target=self.channel_loop, name="channels", daemon=True),
                    threading.Thread(target=self.sampler_loop, name="sampler", daemon=True)]
        began = time.monotonic()
        for t in threads:
            t.start()
        next_kill = began + a.restart_seconds * self.rng.uniform(0.75, 1.25)
        last_status = began
        while True:
            now = time.monotonic()
            if now >= began + a.seconds:
                break
            if self.daemon.proc.poll() is not None:
                self.stats.fail("crash", f"otad lifetime {self.daemon.gen} exited by itself with status "
                                         f"{self.daemon.proc.returncode}; see otad-{self.daemon.gen}.log")
                self.restart(crashed=True)
            elif now >= next_kill and began + a.seconds - now > 20:
                aim = min(3 * a.upload_seconds, began + a.seconds - now - 15) if self.rng.random() < 0.5 else 0
                self.restart(aim_at_upload=aim)
                next_kill = time.monotonic() + a.restart_seconds * self.rng.uniform(0.75, 1.25)
            if now - last_status >= 30:
                last_status = now
                self.log(self.progress(now - began))
            time.sleep(min(1.0, max(0.05, min(next_kill, began + a.seconds) - time.monotonic())))
        self.log("load done; stopping the clients")
        self.stop.set()
        self.lifecycle.set_up(self.daemon.gen)  # wake waiters so they see stop
        for t in threads:
            t.join(90)
            if t.is_alive():
                self.stats.fail("shutdown", f"client thread {t.name} did not stop within 90 s")
        return self.final_checks()

    def progress(self, elapsed):
        c = self.stats.counts
        with self.stats.lock:
            polls = sum(v for k, v in c.items() if len(k) == 8 and k.startswith("poll ") and k[5:].isdigit())
            return (f"t={elapsed:.0f}s polls={polls} downloads={c['download completed']} "
                    f"uploads={c['upload 201']} kills={c['kill -9']} failures={sum(self.stats.failure_counts.values())}")

    def final_checks(self):
        """One more kill -9 and restart, then the API view, then a clean stop and the store."""
        self.stop.clear()  # the limiter and wait_up work again; no client thread is left
        if self.daemon.proc.poll() is not None:
            self.stats.fail("crash", f"otad lifetime {self.daemon.gen} exited by itself with status "
                                     f"{self.daemon.proc.returncode}; see otad-{self.daemon.gen}.log")
        self.restart(crashed=self.daemon.proc.poll() is not None)
        self.lifetimes[-1]["final"] = True
        http_ = self.admin_http()
        report = {}
        try:
            report["listed"] = self.check_catalogue(http_)
            self.check_channels(http_)
            report["registry"] = self.check_registry(http_)
        except TransportError as e:
            self.stats.fail("crash" if self.daemon.proc.poll() is not None else "transport",
                            f"final checks cut short: {e}")
        http_.drop()
        self.stop.set()
        self.log("stopping otad (SIGTERM)")
        if self.daemon.proc.poll() is not None:
            self.stats.fail("crash", f"otad exited by itself with status {self.daemon.proc.returncode} during "
                                     "the final checks")
        rc = self.end_lifetime("stop")
        if rc != 0:
            self.stats.fail("shutdown", f"otad exited {rc} on SIGTERM")
        report["store"] = self.check_store_offline("at the end", full=True)
        return report

    def check_catalogue(self, http_):
        """Every acknowledged upload is listed with its SHA-256 and downloads byte-exact."""
        listed = {}
        for product in PRODUCTS:
            cursor = None
            versions = []
            for _ in range(1000):
                path = f"{API}/products/{product}/releases?limit=500" + (f"&cursor={cursor}" if cursor else "")
                status, _, body = self.operator(http_, "GET", path)
                if status != 200:
                    self.stats.fail("uploads", f"GET {path}: {status} {body}")
                    break
                versions += [r["version"] for r in body["releases"]]
                cursor = body.get("next_cursor")
                if not cursor:
                    break
            for version in versions:
                status, _, body = self.operator(http_, "GET", f"{API}/products/{product}/releases/{version}")
                if status != 200:
                    self.stats.fail("uploads", f"GET release {product} {version}: {status} {body}")
                    continue
                for art in body["artifacts"]:
                    listed[(product, version, art["slot"])] = art
        with self.model.lock:
            acked = dict(self.model.acked)
            images = dict(self.model.images)
        for key, sha in sorted(acked.items()):
            art = listed.get(key)
            if art is None:
                self.stats.fail("uploads", f"acknowledged upload {key} is not listed")
            elif art["sha256"] != sha:
                self.stats.fail("uploads", f"acknowledged upload {key} is listed with sha256 {art['sha256']}, "
                                           f"uploaded {sha}")
        downloads = 0
        for key, art in sorted(listed.items()):
            product, version, slot = key
            img = images.get(key)
            if img is None or img.sha256 != art["sha256"]:
                self.stats.fail("uploads", f"listed artifact {key} ({art['sha256']}) is not one we uploaded")
                continue
            spec = PRODUCTS[product]
            fetches = [("https", f"{API}/blobs/{art['sha256']}", {"Authorization": f"Bearer {self.admin}"})]
            friendly = f"/firmware/{product}/{version}/{art['filename']}"
            if spec["keyed"]:
                fetches.append(("https", friendly, {"Authorization": f"Bearer {self.device_key}"}))
            else:
                fetches.append(("http", friendly, {}))
            for scheme, path, headers in fetches:
                status, _, data = http_.request("GET", scheme, path, headers)
                downloads += 1
                if status != 200 or hashlib.sha256(data).hexdigest() != art["sha256"] or len(data) != img.size:
                    self.stats.fail("uploads", f"GET {scheme} {path}: {status}, {len(data)} bytes hashing to "
                                               f"{hashlib.sha256(data).hexdigest()}; expected {img.size} bytes "
                                               f"{art['sha256']}")
        self.stats.count("final artifact downloads", downloads)
        return len(listed)

    def check_channels(self, http_):
        for (product, channel), state in self.model.channels.items():
            status, _, body = self.operator(http_, "GET", f"{API}/products/{product}/channels/{channel}")
            got = (body.get("version"), body.get("allow_rollback")) if status == 200 else (status, body)
            allowed = {state["acked"]} | state["maybe"]
            if got not in allowed:
                self.stats.fail("channels", f"{product}/{channel} is {got}; last acknowledged move "
                                            f"{state['acked']}, unconfirmed {sorted(state['maybe'])}")

    def check_registry(self, http_):
        """Polls 100 devices once more, then asks the registry what it recorded for them."""
        rng = random.Random(f"{self.args.seed}/registry")
        sample = rng.sample(self.fleet.devices, min(100, len(self.fleet.devices)))
        for device in sample:
            spec = PRODUCTS[device.product]
            params = dict(product=device.product, chip=spec["chip"], layout=spec["layout"], slot=device.slot,
                          version=device.version, device=device.id, channel=device.channel)
            params.update(self.device_query(device))
            status, _, _ = http_.request("GET", device.scheme, f"{API}/update?" + urllib.parse.urlencode(params),
                                         self.device_headers(device))
            if status not in (200, 204):
                self.stats.fail("registry", f"final poll of {device.id}: {status}")
        for device in sample:
            status, _, body = self.operator(http_, "GET", f"{API}/devices/{device.id}?limit=1")
            got = (body.get("version"), body.get("slot"), body.get("channel")) if status == 200 else status
            if got != (device.version, device.slot, device.channel):
                self.stats.fail("registry", f"{device.id}: registry says {got}, the device runs "
                                            f"{(device.version, device.slot, device.channel)}")
        return len(sample)


# ---------------------------------------------------------------------------------------------
# /proc sampling and the growth analysis

def read_proc(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        return None

    def kib(name):
        return int(fields.get(name, "0 kB").split()[0])
    return dict(rss=kib("VmRSS"), anon=kib("RssAnon"), file=kib("RssFile"), fds=fds,
                threads=int(fields.get("Threads", "0").strip() or 0))


def slope_per_minute(points):
    """Least-squares slope of (seconds, value) points, per minute."""
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    return 0.0 if var == 0 else 60 * sum((t - mx) * (v - my) for t, v in points) / var


def analyse(lifetimes, args, devices):
    """Per lifetime: samples after the warm-up, first-third and last-third medians, slopes."""
    rows = []
    for life in lifetimes:
        if args.warmup_seconds == "auto":
            warm = max(20.0, life["cycle_done"]) if life["cycle_done"] is not None else None
        else:
            warm = float(args.warmup_seconds)
        samples = [s for s in life["samples"] if warm is not None and s["t"] >= warm]
        final = life.get("final", False)
        row = dict(gen=life["gen"], up=life["ended"] or 0, warm=warm, n=len(samples), final=final,
                   judged=len(samples) >= 9 and not final)
        if row["judged"]:
            third = len(samples) // 3
            for metric in ("rss", "anon", "fds", "threads"):
                first = statistics.median(s[metric] for s in samples[:third])
                last = statistics.median(s[metric] for s in samples[-third:])
                row[metric] = (first, last, slope_per_minute([(s["t"], s[metric]) for s in samples]))
            a_first, a_last, _ = row["anon"]
            row["anon_grows"] = a_last - a_first > max(args.rss_tolerance_kib, 0.05 * a_first)
            f_first, f_last, _ = row["fds"]
            row["fds_grow"] = f_last - f_first > args.fd_tolerance
        rows.append(row)
    return rows


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def summarize_logs(work):
    """Lines per level over every lifetime's log, and the messages (text before the first
    key=value) of the lines above info."""
    levels, messages = collections.Counter(), collections.Counter()
    for name in sorted(os.listdir(work)):
        if not (name.startswith("otad-") and name.endswith(".log")):
            continue
        with open(os.path.join(work, name), errors="replace") as f:
            for line in f:
                parts = line.split(" ", 2)
                if len(parts) < 3:
                    continue
                level = parts[1]
                levels[level] += 1
                if level not in ("trace", "debug", "info"):
                    words = []
                    for word in parts[2].split():
                        if "=" in word:
                            break
                        words.append(word)
                    messages[(level, " ".join(words))] += 1
    return levels, messages


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def print_report(soak, report, elapsed):
    a, stats = soak.args, soak.stats
    c = stats.counts
    print()
    print(f"== otad soak: {elapsed / 60:.1f} min, seed {a.seed}, {a.devices} devices, limit {a.rps:.0f} req/s, "
          f"{a.threads} client threads, {c['kill -9']} kill -9 + restart ==")
    print()
    print("workload")
    total = sum(len(v) for k, v in stats.latency.items() if k in ("poll", "download", "report", "upload", "channel"))
    print(f"  requests {total} ({total / elapsed:.0f}/s)")
    for kind in ("poll", "download", "report", "upload", "channel", "restart (start to /healthz)"):
        v = stats.latency.get(kind)
        if v:
            print(f"  {kind:<28} {len(v):>8}   p50 {1000 * percentile(v, .5):7.1f} ms   "
                  f"p99 {1000 * percentile(v, .99):7.1f} ms   max {1000 * max(v):8.1f} ms")
    for key in sorted(c):
        if key != "downloaded bytes":
            print(f"  {key:<56} {c[key]:>8}")
    print(f"  {'downloaded MiB':<56} {c['downloaded bytes'] / KIB / KIB:>8.1f}")
    store = report.get("store", {})
    print(f"  artifacts listed at the end {report.get('listed')}, acknowledged {len(soak.model.acked)}; "
          f"blob files {store.get('files')} (orphans {store.get('orphans')}, temp files {store.get('temp_files')}), "
          f"blob rows {store.get('blob_rows')}")
    levels, messages = summarize_logs(a.work)
    print("  otad logs: " + ", ".join(f"{n} {level}" for level, n in sorted(levels.items())))
    for (level, message), n in messages.most_common(8):
        print(f"    {n:>6} {level} {message}")
    for (level, message), n in messages.items():
        if level in ("error", "critical"):
            stats.fail("log", f"{n} x {level} {message}")
    print()
    rows = analyse(soak.lifetimes, a, a.devices)
    print("resources per otad lifetime (after the warm-up; first third -> last third median; slope = least squares)")
    print("| life | up s | warm-up s | samples | RSS MiB | anon MiB | anon slope KiB/min | fds | fd slope /min "
          "| threads | trend |")
    print("|---:|---:|---:|---:|---|---|---:|---|---:|---|---|")
    judged = grows = 0
    for r in rows:
        warm = "-" if r["warm"] is None else f"{r['warm']:.0f}"
        if not r["judged"]:
            why = "final checks, no load" if r["final"] else "too short, not judged"
            print(f"| {r['gen']} | {r['up']:.0f} | {warm} | {r['n']} | | | | | | | {why} |")
            continue
        judged += 1
        rss, anon, fds, thr = r["rss"], r["anon"], r["fds"], r["threads"]
        trend = []
        if r["anon_grows"]:
            trend.append("anon grows")
        if r["fds_grow"]:
            trend.append("fds grow")
        grows += bool(trend)
        print(f"| {r['gen']} | {r['up']:.0f} | {warm} | {r['n']} | {rss[0] / KIB:.1f} -> {rss[1] / KIB:.1f} "
              f"| {anon[0] / KIB:.1f} -> {anon[1] / KIB:.1f} | {anon[2]:+.0f} | {fds[0]:.0f} -> {fds[1]:.0f} "
              f"| {fds[2]:+.1f} | {thr[0]:.0f} -> {thr[1]:.0f} | {', '.join(trend) or 'flat'} |")
    if judged == 0:
        stats.fail("resources", "no otad lifetime lasted past its warm-up with 9 samples; nothing was judged")
    elif grows * 2 > judged:
        stats.fail("resources", f"{grows} of {judged} lifetimes grow (anon RSS by more than "
                                f"max({a.rss_tolerance_kib:.0f} KiB, 5 %), or descriptors by more than "
                                f"{a.fd_tolerance:.0f}, last third vs first third)")
    print(f"tolerance: anon RSS +max({a.rss_tolerance_kib:.0f} KiB, 5 %), descriptors +{a.fd_tolerance:.0f}; "
          f"the check fails when more than half of the judged lifetimes ({judged}) grow: {grows} do")
    print()
    print("checks")
    verdict = True
    for check in ("crash", "uploads", "blobs", "downloads", "answers", "transport", "channels", "registry",
                  "resources", "log", "shutdown"):
        n = stats.failure_counts.get(check, 0)
        verdict &= n == 0
        print(f"  {check:<10} {'PASS' if n == 0 else f'FAIL ({n})'}")
        for message in stats.failures.get(check, []):
            print(f"      {message}")
    print()
    print("SOAK PASSED" if verdict else "SOAK FAILED")
    return verdict


def main():
    args = parse_args()
    soak = Soak(args)
    began = time.monotonic()
    try:
        report = soak.run()
    except BaseException:
        soak.stop.set()
        if soak.daemon.proc and soak.daemon.proc.poll() is None:
            soak.daemon.kill9()
        raise
    ok = print_report(soak, report, time.monotonic() - began)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
