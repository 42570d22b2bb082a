"""The docker image's way of running otad, without a container engine.

docker/Dockerfile is parsed (runtime stage: ENV, ENTRYPOINT, CMD, HEALTHCHECK, USER, VOLUME,
EXPOSE) and the built otad is started exactly as the image starts it: entrypoint + CMD, no flags,
configured only by the image's ENV (OTAD_DATA_DIR pointed at a temp dir and OTAD_LISTEN at
127.0.0.1:0, as a container would remap them). The HEALTHCHECK command is run by /bin/sh like
docker does. So a Dockerfile edit that breaks start-up or the health check fails here.
"""
import hashlib
import json
import os
import shlex
import signal
import socket
import sqlite3
import ssl
import subprocess
import threading

import pytest

from otad_harness import LISTEN_RE, OTAD_BIN, SOURCE_DIR, Otad, free_port, wait_for

DOCKERFILE = os.path.join(SOURCE_DIR, "docker", "Dockerfile")
IMAGE_BIN = "/usr/local/bin/otad"
BOOTSTRAP = "docker-bootstrap-0123456789abcdef"


# -- Dockerfile parsing ------------------------------------------------------------------------
def dockerfile_instructions(path=DOCKERFILE):
    """[(INSTRUCTION, rest)] with comment lines dropped and `\\` continuations joined, like docker."""
    out, pending = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.lstrip().startswith("#"):
                continue  # docker drops comment lines, also inside a continuation
            if line.endswith("\\"):
                pending += line[:-1]
                continue
            logical = (pending + line).strip()
            pending = ""
            if logical:
                word, _, rest = logical.partition(" ")
                out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a line continuation"
    return out


def runtime_stage():
    """The last stage (the image that ships) as a dict of its instructions."""
    instructions = dockerfile_instructions()
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"]
    assert len(starts) >= 2, "expected a multi-stage Dockerfile"
    stage = {"FROM": instructions[starts[-1]][1], "ENV": {}, "EXPOSE": [], "build_from": instructions[starts[0]][1]}
    for word, rest in instructions[starts[-1] + 1:]:
        if word == "ENV":
            for item in shlex.split(rest):
                key, sep, value = item.partition("=")
                assert sep, f"ENV without '=' is not supported here: {item}"
                stage["ENV"][key] = value
        elif word == "EXPOSE":
            stage["EXPOSE"] += rest.split()
        elif word in ("ENTRYPOINT", "CMD"):
            stage[word] = json.loads(rest)  # exec form only: a shell form would not get signals
        elif word == "HEALTHCHECK":
            options, _, command = rest.partition(" CMD ")
            stage["HEALTHCHECK"] = {"options": options.split(), "command": command.strip()}
        else:
            stage[word] = rest
    return stage


IMAGE = runtime_stage()


def image_environment(**overrides):
    """The environment a container of the image gets: the caller's minus every OTAD_ variable,
    plus the image's ENV, plus overrides (like `docker run -e`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTAD_")}
    env.update(IMAGE["ENV"])
    env.update(overrides)
    return env


def image_command():
    entrypoint, cmd = IMAGE["ENTRYPOINT"], IMAGE["CMD"]
    assert entrypoint[0] == IMAGE_BIN, entrypoint
    return [OTAD_BIN] + entrypoint[1:] + cmd


class ImageOtad(Otad):
    """otad started like the image starts it: entrypoint + CMD, configured by environment only."""

    def __init__(self, data_dir=None, **overrides):
        super().__init__(data_dir=data_dir, http_listener=bool(overrides.get("OTAD_HTTP_LISTEN")))
        # One log per run: a restart on the same data dir must not find the last run's "listening".
        self.log_path = os.path.join(self.data_dir, f"otad-image-{os.urandom(4).hex()}.log")
        self.overrides = {"OTAD_DATA_DIR": self.data_dir, "OTAD_LISTEN": "127.0.0.1:0", **overrides}

    def start(self, wait=True):
        self.log_file = open(self.log_path, "a")
        self.proc = subprocess.Popen(image_command(), stdout=self.log_file, stderr=subprocess.STDOUT,
                                     env=image_environment(**self.overrides), start_new_session=True)
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout=30):
        """Like the harness's, but also reads `--log-format json` lines (compose sets it)."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"otad exited {self.proc.returncode} before listening:\n{self.log()}")
            found = {}
            for line in self.log().splitlines():
                if line.startswith("{"):
                    entry = json.loads(line)
                    if entry.get("event") == "listening":
                        found[entry["scheme"]] = entry["address"]
                else:
                    found.update(dict(LISTEN_RE.findall(line)))
            want = {"https"} | ({"http"} if self.http_listener else set())
            return found if want <= set(found) else None
        found = wait_for(ready, timeout, what="otad to listen")
        self.https, self.http = found.get("https"), found.get("http")


@pytest.fixture
def image_otad():
    made = []

    def make(data_dir=None, **overrides):
        d = ImageOtad(data_dir, **overrides)
        made.append(d)
        return d.start()

    yield make
    for d in made:
        d.cleanup()


def run_image_once(timeout=30, **overrides):
    """Runs the image command to completion (for start-up failures)."""
    return subprocess.run(image_command(), capture_output=True, text=True, timeout=timeout,
                          env=image_environment(**overrides))


def healthcheck(listen, timeout=15):
    """Runs the HEALTHCHECK command the way docker does: /bin/sh -c with the container's env
    (the image's otad path replaced by the binary under test)."""
    command = IMAGE["HEALTHCHECK"]["command"].replace(IMAGE_BIN, OTAD_BIN)
    return subprocess.run(["/bin/sh", "-c", command], capture_output=True,
                          timeout=timeout, env=image_environment(OTAD_LISTEN=listen)).returncode


# -- the Dockerfile itself ---------------------------------------------------------------------
def test_dockerfile_runtime_stage_is_consistent():
    assert IMAGE["build_from"].split()[0] == "debian:bookworm"
    assert IMAGE["FROM"] == "debian:bookworm-slim"
    env = IMAGE["ENV"]
    assert env["OTAD_DATA_DIR"] == "/var/lib/otad"
    assert env["OTAD_LISTEN"] == "0.0.0.0:8443"
    assert env["OTAD_HTTP_LISTEN"] == ""
    assert IMAGE["VOLUME"] == env["OTAD_DATA_DIR"]
    assert sorted(IMAGE["EXPOSE"]) == ["8080", "8443"]
    assert IMAGE["ENTRYPOINT"] == [IMAGE_BIN] and IMAGE["CMD"] == ["serve"]
    assert IMAGE["USER"] == "10001:10001"  # numeric, so runAsNonRoot checks can see it is not root
    assert "--uid 10001" in open(DOCKERFILE).read() and "--gid 10001" in open(DOCKERFILE).read()
    assert IMAGE["HEALTHCHECK"]["command"] == f"{IMAGE_BIN} healthcheck"  # no curl or openssl in the image
    assert "--timeout=5s" in IMAGE["HEALTHCHECK"]["options"]


# -- start-up as in the image ------------------------------------------------------------------
def test_image_environment_serves_and_bootstrap_token_is_the_admin(image_otad):
    d = image_otad(OTAD_BOOTSTRAP_TOKEN=BOOTSTRAP)
    assert d.http is None, "the plain-HTTP listener must be off by default"
    proc = d.curl("-s", "-o", "/dev/null", "-w", "%{http_code}", d.url("/healthz"), check=True)
    assert proc.stdout == b"200"
    # Everything lands in OTAD_DATA_DIR (the volume): database, generated certificate.
    assert os.path.isfile(os.path.join(d.data_dir, "otad.db"))
    assert os.path.isfile(os.path.join(d.data_dir, "tls", "cert.pem"))
    assert not os.path.exists(os.path.join(d.data_dir, "admin-token"))  # the bootstrap token replaces it
    db = sqlite3.connect(os.path.join(d.data_dir, "otad.db"))
    rows = db.execute("SELECT name, role, token_hash, revoked_at FROM tokens").fetchall()
    db.close()
    assert rows == [("bootstrap", "admin", hashlib.sha256(BOOTSTRAP.encode()).hexdigest(), None)]
    assert BOOTSTRAP not in d.log()
    # The token opens an admin-only route (GET /api/v1/audit), which records where it came from.
    assert d.request("GET", "/api/v1/audit")[0] == 401
    assert d.request("GET", "/api/v1/audit", token=BOOTSTRAP + "x")[0] == 401
    status, _, body = d.json("GET", "/api/v1/audit", token=BOOTSTRAP)
    assert status == 200, body
    created = [e for e in body["entries"] if e["action"] == "token.create"]
    assert [(e["subject"], e["detail"]["source"]) for e in created] == [("token/bootstrap", "OTAD_BOOTSTRAP_TOKEN")]
    assert d.stop(signal.SIGTERM) == 0  # `docker stop`


def test_bootstrap_token_is_only_used_while_no_admin_exists(image_otad):
    first = image_otad(OTAD_BOOTSTRAP_TOKEN=BOOTSTRAP)
    assert first.stop() == 0
    again = image_otad(first.data_dir, OTAD_BOOTSTRAP_TOKEN="another-bootstrap-token-0123456789")
    assert again.request("GET", "/healthz")[0] == 200
    db = sqlite3.connect(os.path.join(first.data_dir, "otad.db"))
    hashes = [r[0] for r in db.execute("SELECT token_hash FROM tokens")]
    db.close()
    assert hashes == [hashlib.sha256(BOOTSTRAP.encode()).hexdigest()]
    assert again.stop() == 0


def test_http_listener_turned_on_by_environment(image_otad):
    d = image_otad(OTAD_HTTP_LISTEN="127.0.0.1:0")
    assert d.http is not None
    status, _, body = d.json("GET", "/healthz", plain=True)
    assert (status, body) == (200, {"status": "ok"})


def test_mounted_config_file_via_otad_config_and_environment_wins(image_otad, tmp_path):
    cfg = tmp_path / "otad.json"
    # The listen port in the file is overridden by the image's OTAD_LISTEN (so the HEALTHCHECK,
    # which reads OTAD_LISTEN, always probes the real port); other keys come from the file.
    cfg.write_text('{\n  // mounted at /etc/otad/otad.json\n  "listen": "127.0.0.1:1",\n'
                   '  "tls_hostnames": ["ota.example.com"]\n}\n')
    d = image_otad(OTAD_CONFIG=str(cfg))
    assert d.port != 1
    text = subprocess.run(["openssl", "x509", "-in", d.cert_path, "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:ota.example.com" in text and "DNS:localhost" not in text


@pytest.mark.parametrize("overrides, exit_code, message", [
    ({"OTAD_LISTEN": "0.0.0.0"}, 2, "'listen'"),
    ({"OTAD_HTTP_LISTEN": "0.0.0.0:http"}, 2, "'http_listen'"),
    ({"OTAD_MAX_CONNECTIONS": "lots"}, 2, "OTAD_MAX_CONNECTIONS"),
    ({"OTAD_HTTP_LISTN": "0.0.0.0:8080"}, 2, "OTAD_HTTP_LISTN"),
    ({"OTAD_BOOTSTRAP_TOKEN": "short"}, 1, "OTAD_BOOTSTRAP_TOKEN must be at least 16 characters"),
])
def test_bad_environment_stops_startup_with_a_message(tmp_path, overrides, exit_code, message):
    proc = run_image_once(OTAD_DATA_DIR=str(tmp_path / "data"), **{"OTAD_LISTEN": "127.0.0.1:0", **overrides})
    assert proc.returncode == exit_code, proc.stderr
    assert message in proc.stderr
    assert "listening" not in proc.stdout + proc.stderr


def test_compose_example_environment_starts_otad(image_otad):
    """docker/compose.yaml's service environment is valid: every variable a known key, every value accepted."""
    yaml = pytest.importorskip("yaml")  # python3-yaml
    with open(os.path.join(SOURCE_DIR, "docker", "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    service = compose["services"]["otad"]
    assert service["build"]["dockerfile"] == "docker/Dockerfile"
    assert f"otad-data:{IMAGE['VOLUME']}" in service["volumes"]
    assert "8443:8443" in service["ports"]
    assert "test" not in service["healthcheck"]  # inherited from the image's HEALTHCHECK
    env = {k: str(v) for k, v in service["environment"].items()}
    assert env["OTAD_PUBLIC_URL"].startswith("https://")
    # As in a container: compose's variables over the image's, then this test's data dir and port.
    d = image_otad(**env, OTAD_BOOTSTRAP_TOKEN=BOOTSTRAP)
    assert d.request("GET", "/healthz")[0] == 200
    assert healthcheck(f"0.0.0.0:{d.port}") == 0


# -- HEALTHCHECK -------------------------------------------------------------------------------
def test_healthcheck_passes_against_otad_and_fails_when_it_is_gone(image_otad):
    d = image_otad()
    # The image's OTAD_LISTEN is 0.0.0.0:8443: the check must probe loopback on that port.
    assert healthcheck(f"0.0.0.0:{d.port}") == 0
    assert healthcheck(f"127.0.0.1:{d.port}") == 0
    assert d.stop() == 0
    assert healthcheck(f"0.0.0.0:{d.port}") != 0


def test_healthcheck_fails_on_a_non_200_answer(image_otad):
    # A TLS server (otad's own generated certificate) that answers /healthz with 503.
    d = image_otad()
    assert d.stop() == 0
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d.cert_path, os.path.join(d.data_dir, "tls", "key.pem"))
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(15)
    port = listener.getsockname()[1]
    requests = []

    def answer_once():
        try:
            conn, _ = listener.accept()
            conn.settimeout(10)
            with ctx.wrap_socket(conn, server_side=True) as s:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                requests.append(data)
                s.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except OSError:
            pass

    server = threading.Thread(target=answer_once, daemon=True)
    server.start()
    try:
        assert healthcheck(f"0.0.0.0:{port}") != 0
    finally:
        server.join(20)
        listener.close()
    assert requests and requests[0].startswith(b"GET /healthz HTTP/1.1\r\n")


def test_healthcheck_fails_when_nothing_listens():
    assert healthcheck(f"0.0.0.0:{free_port()}") != 0
