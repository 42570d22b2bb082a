"""Foundation: the real daemon on loopback with its generated certificate and a real SQLite file."""
import hashlib
import json
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import tempfile
import time

import pytest

from otad_harness import Otad, run_otad, wait_for


def test_healthz_over_tls_with_curl_verifying_the_generated_certificate(otad):
    proc = otad.curl("-i", otad.url("/healthz"), check=True)
    out = proc.stdout.decode()
    assert out.startswith("HTTP/1.1 200")
    assert "Content-Length: " in out
    assert json.loads(out.split("\r\n\r\n", 1)[1]) == {"status": "ok"}


def test_readyz_reports_database_and_blob_dir(otad):
    status, headers, body = otad.json("GET", "/readyz")
    assert status == 200
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["schema_version"] >= 1
    assert body["checks"]["blob_dir"]["ok"] is True


def test_certificate_is_ecdsa_p256_for_configured_names_and_reused(otad_factory):
    d = otad_factory()
    text = subprocess.run(["openssl", "x509", "-in", d.cert_path, "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "id-ecPublicKey" in text and "prime256v1" in text
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    key_mode = os.stat(os.path.join(d.data_dir, "tls", "key.pem")).st_mode & 0o777
    assert key_mode == 0o600
    before = open(d.cert_path).read()
    d.stop()
    d2 = otad_factory(data_dir=d.data_dir)
    assert open(d2.cert_path).read() == before


def s_client(d, *args):
    return subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{d.port}", "-CAfile", d.cert_path,
                           "-servername", "localhost"] + list(args),
                          input=b"", capture_output=True, timeout=30)


def test_tls13_and_tls12_accepted_tls11_refused(otad):
    p13 = s_client(otad, "-tls1_3")
    assert b"TLSv1.3" in p13.stdout and b"Verify return code: 0 (ok)" in p13.stdout
    p12 = s_client(otad, "-tls1_2")
    assert b"TLSv1.2" in p12.stdout and p12.returncode == 0
    p11 = s_client(otad, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    assert p11.returncode != 0
    assert b"Cipher is (NONE)" in p11.stdout or b"alert" in p11.stderr or b"no protocols" in p11.stderr


def test_unknown_route_404_and_wrong_method_405_are_problem_documents(otad):
    status, headers, body = otad.json("GET", "/nope")
    assert status == 404
    assert headers["content-type"] == "application/problem+json"
    assert body["status"] == 404 and body["type"].startswith("https://otad.dev/problems/")
    status, headers, body = otad.json("POST", "/healthz", body={})
    assert status == 405
    assert "GET" in headers["allow"]
    assert body["detail"]


def test_oversized_header_gets_431(otad_factory):
    d = otad_factory(env={"OTAD_MAX_HEADER_BYTES": "2048"})
    proc = d.curl("-o", "/dev/null", "-w", "%{http_code}", "-H", "X-Big: " + "a" * 4000, d.url("/healthz"))
    assert proc.stdout == b"431"


def _seconds_until_closed_by_server(s):
    """Waits (10 s at most) for the server to close an idle TLS connection; returns how long it took."""
    started = time.monotonic()
    s.settimeout(10)
    try:
        rest = s.recv(4096)
    except (ssl.SSLError, ConnectionResetError):
        rest = b""
    assert rest == b"", "server should close the idle connection"
    return time.monotonic() - started


def test_idle_keepalive_connection_is_closed_after_idle_deadline(otad_factory):
    d = otad_factory(env={"OTAD_IDLE_TIMEOUT_MS": "400"})
    ctx = d.ssl_context()
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data or not data.endswith(b"}"):
                data += s.recv(4096)
            assert data.startswith(b"HTTP/1.1 200")
            waited = _seconds_until_closed_by_server(s)
            assert 0.2 < waited < 5.0, f"closed after {waited:.2f}s, want about 0.4s"


def _tls_get(s, path=b"/healthz"):
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: localhost\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, "connection closed before the answer"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(body) < length:
        body += s.recv(4096)
    return head, body


def test_parked_keepalive_connection_wakes_for_its_next_request_and_still_expires(otad_factory):
    # After 100 ms without a request a TLS connection is parked (no coroutine, no timer
    # of its own); its next request must be served as usual, and the server-wide idle
    # sweep must still close it once idle_timeout passes.
    d = otad_factory(env={"OTAD_IDLE_TIMEOUT_MS": "1500"})
    ctx = d.ssl_context()
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            for pause in (0.0, 0.3, 0.8, 1.2):  # all below idle_timeout, most past the parking grace
                time.sleep(pause)
                head, body = _tls_get(s)
                assert head.startswith(b"HTTP/1.1 200"), head
                assert json.loads(body) == {"status": "ok"}
            waited = _seconds_until_closed_by_server(s)
            assert 1.2 < waited < 4.0, f"closed after {waited:.2f}s, want about 1.5s"
    # Every request of that connection was served and logged.
    assert d.log().count("status=200") >= 4


def test_silent_client_is_dropped_after_handshake_deadline(otad_factory):
    d = otad_factory(env={"OTAD_HANDSHAKE_TIMEOUT_MS": "300"})
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        started = time.monotonic()
        assert s.recv(1) == b""  # closed without us ever saying hello
        assert time.monotonic() - started < 5.0


def test_access_log_line_per_request_without_secrets(otad):
    token = otad.create_token("viewer")
    otad.request("GET", "/healthz?key=supersecretvalue", token=token)
    log = wait_for(lambda: (lambda t: t if "supersecret" in t or "/healthz" in t else None)(otad.log()),
                   what="access log line")
    lines = [l for l in log.splitlines() if "request" in l and "/healthz" in l]
    assert lines, log
    assert "status=200" in lines[-1] and "method=GET" in lines[-1] and "duration_ms=" in lines[-1]
    assert "supersecretvalue" not in log
    assert token not in log


def test_json_log_format(otad_factory):
    d = otad_factory(extra_args=["--log-format", "json"])
    d.request("GET", "/healthz")
    def access_line():
        for line in d.log().splitlines():
            if '"event":"request"' in line:
                return line
    line = wait_for(access_line, what="JSON access line")
    entry = json.loads(line)
    assert entry["status"] == "200" and entry["target"] == "/healthz" and entry["logger"] == "access"


def test_unknown_config_key_stops_startup_naming_the_key(tmp_path):
    cfg = tmp_path / "otad.json"
    cfg.write_text('{"listen": "127.0.0.1:0", "max_uplod_bytes": 5}')
    proc = run_otad(["serve", "--config", str(cfg), "--data-dir", str(tmp_path / "data")], check=False)
    assert proc.returncode != 0
    assert "max_uplod_bytes" in proc.stderr


def test_bad_value_from_environment_names_key_and_form(tmp_path):
    proc = run_otad(["serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0"],
                    env={"OTAD_IDLE_TIMEOUT_MS": "soon"}, check=False)
    assert proc.returncode != 0
    assert "idle_timeout_ms" in proc.stderr and "OTAD_IDLE_TIMEOUT_MS" in proc.stderr and "integer" in proc.stderr


def test_config_values_found_by_fuzzing_are_configuration_errors(tmp_path):
    # config_fuzz found both: a number too large for a double in the file, and a value
    # that is not UTF-8 for an integer key, escaped as JSON library errors (exit 1).
    cfg = tmp_path / "otad.json"
    cfg.write_text('{"listen": "127.0.0.1:0", "max_body_bytes": 1e999}')
    proc = run_otad(["serve", "--config", str(cfg), "--data-dir", str(tmp_path / "data")], check=False)
    assert proc.returncode == 2, proc.stderr
    assert "configuration error" in proc.stderr and "not valid JSON" in proc.stderr
    proc = run_otad(["serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0"],
                    env={"OTAD_WORKER_THREADS": "4\udcff"}, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "configuration error" in proc.stderr and "OTAD_WORKER_THREADS" in proc.stderr
    assert "json.exception" not in proc.stderr


def test_bad_certificate_path_is_a_clear_error(tmp_path):
    proc = run_otad(["serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0"],
                    env={"OTAD_TLS_CERT": str(tmp_path / "missing.pem"), "OTAD_TLS_KEY": str(tmp_path / "k.pem")},
                    check=False)
    assert proc.returncode != 0
    assert "missing.pem" in proc.stderr


def test_shipped_config_file_starts_the_daemon(otad_factory):
    src = os.environ.get("OTAD_SOURCE_DIR")
    text = open(os.path.join(src, "config", "otad.json")).read()
    d = otad_factory(config_text=text)  # --listen/--data-dir flags still override the file
    assert d.request("GET", "/healthz")[0] == 200


def test_migrate_fresh_then_existing_database(tmp_path):
    data = tmp_path / "data"
    first = run_otad(["migrate", "--data-dir", str(data)])
    assert "schema version 0 -> " in first.stdout
    latest = int(first.stdout.split("-> ")[1].split()[0])
    assert latest >= 1
    second = run_otad(["migrate", "--data-dir", str(data)])
    assert f"schema version {latest} -> {latest}" in second.stdout
    db = sqlite3.connect(data / "otad.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    versions = [r[0] for r in db.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, latest + 1))
    db.close()


def test_database_newer_than_binary_refuses_to_start(tmp_path):
    data = tmp_path / "data"
    run_otad(["migrate", "--data-dir", str(data)])
    db = sqlite3.connect(data / "otad.db")
    db.execute("INSERT INTO schema_migrations(version, name, applied_at) VALUES (9999, '9999_future', 0)")
    db.commit()
    db.close()
    proc = run_otad(["serve", "--data-dir", str(data), "--listen", "127.0.0.1:0"], check=False, timeout=30)
    assert proc.returncode != 0
    assert "newer than this otad" in proc.stderr


def test_token_create_prints_once_and_stores_only_a_hash(tmp_path):
    data = tmp_path / "data"
    proc = run_otad(["token", "create", "--data-dir", str(data), "--name", "ci", "--role", "uploader"])
    secret = proc.stdout.strip()
    assert len(secret) >= 40
    db = sqlite3.connect(data / "otad.db")
    rows = db.execute("SELECT name, role, token_hash FROM tokens WHERE name='ci'").fetchall()
    assert rows == [("ci", "uploader", hashlib.sha256(secret.encode()).hexdigest())]
    dump = "\n".join(db.iterdump())
    assert secret not in dump
    db.close()
    listing = run_otad(["token", "list", "--data-dir", str(data), "--json"]).stdout
    entries = json.loads(listing)
    assert [e["name"] for e in entries] == ["ci"] and secret not in listing
    bad = run_otad(["token", "create", "--data-dir", str(data), "--name", "x", "--role", "root"], check=False)
    assert bad.returncode != 0 and "admin, uploader or viewer" in bad.stderr
    run_otad(["token", "revoke", "--data-dir", str(data), "--name", "ci"])
    assert "revoked" in run_otad(["token", "list", "--data-dir", str(data)]).stdout.lower() or \
        json.loads(run_otad(["token", "list", "--data-dir", str(data), "--json"]).stdout)[0]["revoked_at"] != "-"


def test_first_start_writes_admin_token_file_and_bootstrap_token_works(otad_factory, tmp_path):
    d = otad_factory()
    token_file = os.path.join(d.data_dir, "admin-token")
    assert os.stat(token_file).st_mode & 0o777 == 0o600
    assert "admin-token" in d.log()
    e = otad_factory(env={"OTAD_BOOTSTRAP_TOKEN": "bootstrap-secret-0123456789"})
    db = sqlite3.connect(os.path.join(e.data_dir, "otad.db"))
    rows = db.execute("SELECT name, role, token_hash FROM tokens").fetchall()
    db.close()
    assert rows == [("bootstrap", "admin", hashlib.sha256(b"bootstrap-secret-0123456789").hexdigest())]
    assert not os.path.exists(os.path.join(e.data_dir, "admin-token"))
    assert "bootstrap-secret-0123456789" not in e.log()


def test_sigterm_stops_gracefully_with_exit_0(otad_factory):
    d = otad_factory()
    assert d.request("GET", "/healthz")[0] == 200
    assert d.stop(signal.SIGTERM) == 0
    assert "shutdown" in d.log().lower()


def test_version_and_help():
    assert run_otad(["version"]).stdout.startswith("otad ")
    for sub in (["serve"], ["migrate"], ["token", "create"], ["token", "list"], ["token", "revoke"]):
        proc = run_otad(sub + ["--help"])
        assert "--data-dir" in proc.stdout
    bad = run_otad(["frobnicate"], check=False)
    assert bad.returncode == 2


def test_bootstrap_token_from_file(otad_factory, tmp_path):
    secret_file = tmp_path / "bootstrap"
    secret_file.write_text("file-bootstrap-secret-0123456789\n")
    d = otad_factory(env={"OTAD_BOOTSTRAP_TOKEN_FILE": str(secret_file)})
    db = sqlite3.connect(os.path.join(d.data_dir, "otad.db"))
    rows = db.execute("SELECT name, role, token_hash FROM tokens").fetchall()
    db.close()
    assert rows == [("bootstrap", "admin", hashlib.sha256(b"file-bootstrap-secret-0123456789").hexdigest())]
    missing = run_otad(["serve", "--data-dir", str(tmp_path / "other"), "--listen", "127.0.0.1:0"],
                       env={"OTAD_BOOTSTRAP_TOKEN_FILE": str(tmp_path / "nope")}, check=False)
    assert missing.returncode == 1 and "OTAD_BOOTSTRAP_TOKEN_FILE" in missing.stderr


def test_second_daemon_on_same_data_dir_is_refused(otad):
    proc = run_otad(["serve", "--data-dir", otad.data_dir, "--listen", "127.0.0.1:0"], check=False, timeout=30)
    assert proc.returncode == 1 and "already using data dir" in proc.stderr
    assert otad.request("GET", "/healthz")[0] == 200
