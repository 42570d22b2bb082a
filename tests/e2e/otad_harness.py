"""Starts the real otad daemon on 127.0.0.1 for end-to-end tests and talks to it.

Every daemon gets a fresh temp data dir (real SQLite file, real blob dir, the
self-signed certificate otad generates) and ephemeral ports, and is stopped by
the fixture that started it.
"""
import json
import os
import re
import shutil
import signal as _signal
import socket
import ssl
import subprocess
import tempfile
import time
import http.client

OTAD_BIN = os.environ.get("OTAD_BIN", "build/otad")
TOOLS_DIR = os.environ.get("OTAD_TOOLS_DIR", "build/tests")
SOURCE_DIR = os.environ.get("OTAD_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

LISTEN_RE = re.compile(r"listening scheme=(https|http) address=(\S+)")
LISTEN_JSON_RE = re.compile(r'"event":"listening","scheme":"(https|http)","address":"([^"]+)"')


def wait_for(predicate, timeout=20.0, interval=0.02, what="condition"):
    """Polls predicate until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def run_otad(args, data_dir=None, env=None, check=True, timeout=60, input=None):
    """Runs an otad subcommand to completion; returns CompletedProcess."""
    cmd = [OTAD_BIN] + list(args)
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


class Otad:
    """A running `otad serve` with its own data dir and ephemeral ports."""

    def __init__(self, extra_args=(), env=None, data_dir=None, http_listener=False, config_text=None,
                 preexec_fn=None):
        self.owns_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="otad-e2e-")
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.http_listener = http_listener
        self.config_text = config_text
        self.preexec_fn = preexec_fn  # runs in the child before exec (e.g. resource.setrlimit)
        self.proc = None
        self.log_path = os.path.join(self.data_dir, "otad-test.log")
        self.https = None
        self.http = None

    # -- lifecycle --------------------------------------------------------
    def start(self, wait=True):
        args = [OTAD_BIN, "serve", "--data-dir", self.data_dir, "--listen", "127.0.0.1:0"]
        if self.http_listener:
            args += ["--http-listen", "127.0.0.1:0"]
        if self.config_text is not None:
            cfg = os.path.join(self.data_dir, "test-config.json")
            with open(cfg, "w") as f:
                f.write(self.config_text)
            args += ["--config", cfg]
        args += self.extra_args
        env = dict(os.environ)
        env.update(self.env)
        self.log_file = open(self.log_path, "a")
        self.proc = subprocess.Popen(args, stdout=self.log_file, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, preexec_fn=self.preexec_fn)
        if wait:
            self.wait_listening()
        return self

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_listening(self, timeout=30):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"otad exited {self.proc.returncode} before listening:\n{self.log()}")
            found = dict()
            log = self.log()
            for scheme, addr in LISTEN_RE.findall(log) + LISTEN_JSON_RE.findall(log):
                found[scheme] = addr
            want = {"https"} | ({"http"} if self.http_listener else set())
            return found if want <= set(found) else None
        found = wait_for(ready, timeout, what="otad to listen")
        self.https = found.get("https")
        self.http = found.get("http")

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=_signal.SIGTERM, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.proc:
            self.log_file.close()
        return self.proc.returncode if self.proc else None

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log_file.close()

    def cleanup(self):
        self.stop()
        if self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    # -- addresses and credentials ---------------------------------------
    @property
    def port(self):
        return int(self.https.rsplit(":", 1)[1])

    @property
    def http_port(self):
        return int(self.http.rsplit(":", 1)[1])

    def url(self, path=""):
        return f"https://{self.https}{path}"

    def http_url(self, path=""):
        return f"http://{self.http}{path}"

    @property
    def cert_path(self):
        return os.path.join(self.data_dir, "tls", "cert.pem")

    def otad(self, *args, check=True, env=None):
        """Runs an offline subcommand against this daemon's data dir."""
        return run_otad(list(args) + ["--data-dir", self.data_dir], check=check, env=env)

    def create_token(self, role="admin", name=None):
        name = name or f"{role}-{os.urandom(4).hex()}"
        out = self.otad("token", "create", "--name", name, "--role", role).stdout.strip().splitlines()
        return out[-1].strip()

    # -- clients ----------------------------------------------------------
    def ssl_context(self):
        ctx = ssl.create_default_context(cafile=self.cert_path)
        return ctx

    def request(self, method, path, body=None, headers=None, token=None, plain=False, timeout=30):
        """Our own client (http.client over TLS, verifying otad's certificate). Returns (status, headers, body)."""
        if plain:
            conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        else:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.ssl_context())
        hdrs = dict(headers or {})
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def json(self, method, path, body=None, token=None, headers=None, plain=False):
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        status, h, data = self.request(method, path, body=body, headers=hdrs, token=token, plain=plain)
        parsed = json.loads(data) if data and h.get("content-type", "").endswith("json") else None
        return status, h, parsed

    def curl(self, *args, check=False, timeout=120):
        """Runs real curl against this daemon, trusting its certificate."""
        cmd = ["curl", "-sS", "--cacert", self.cert_path] + list(args)
        proc = subprocess.run(cmd, capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"{cmd} exited {proc.returncode}: {proc.stderr.decode(errors='replace')}")
        return proc


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tool(name):
    return os.path.join(TOOLS_DIR, name)
