"""Denial of service and protocol safety, tried from outside with raw sockets (plain and TLS):
bodies on routes that take none, authentication before a body is read, the memory budget and
deadlines of request bodies, slow uploads beside polls and operator requests, request
smuggling through Transfer-Encoding, Host checks, and 408s that reach the client.

The plain listener is used with device routes only (the routes it is meant for)."""
import json
import select
import socket
import ssl
import time

import pytest

from device_helpers import esp32_image, esp32_poll, set_channel, upload
from otad_harness import wait_for

API = "/api/v1"


# -- a raw HTTP/1.1 client -----------------------------------------------------------

class Raw:
    """One connection to otad, plain or TLS, read and written by hand."""

    def __init__(self, d, tls=True, timeout=5.0):
        port = d.port if tls else d.http_port
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            sock = d.ssl_context().wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.timeout = timeout
        self.buf = b""
        self.ended = False  # the server closed the connection

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def _more(self):
        """Next bytes; b'' at the end of the connection (a reset or a TLS end without close_notify too)."""
        if self.ended:
            return b""
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
            chunk = b""
        self.ended = not chunk
        return chunk

    def _until(self, marker):
        while marker not in self.buf:
            chunk = self._more()
            if not chunk:
                raise AssertionError(f"connection ended before {marker!r}; got {self.buf[:300]!r}")
            self.buf += chunk

    def response(self):
        """(status, lower-case headers, body) of the next response (an interim 1xx has no body)."""
        self._until(b"\r\n\r\n")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if status < 200 or status in (204, 304) else int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            chunk = self._more()
            if not chunk:
                raise AssertionError(f"body cut after {len(self.buf)} of {length} bytes")
            self.buf += chunk
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def interim(self):
        """Reads one response that must be 100 Continue."""
        status, _, _ = self.response()
        assert status == 100, status
        return status

    def rest(self):
        """Everything sent until the server closes the connection (bounded by the socket timeout)."""
        data, self.buf = self.buf, b""
        for _ in range(10_000):
            chunk = self._more()
            if not chunk:
                return data
            data += chunk
        raise AssertionError("the connection did not end")

    def readable(self, seconds):
        """True when response bytes (or the end) came within `seconds`. Over TLS a readable
        socket may only hold a session ticket: only application data or the end counts."""
        deadline = time.monotonic() + seconds
        while not self.buf and not self.ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                return False
            self.sock.setblocking(False)
            try:
                chunk = self.sock.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                continue
            except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
                chunk = b""
            finally:
                self.sock.settimeout(self.timeout)
            if chunk:
                self.buf += chunk
            else:
                self.ended = True
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def problem_type(body):
    return json.loads(body)["type"].rsplit("/", 1)[1]


def request_head(method, path, host="localhost", extra=(), version="1.1"):
    lines = [f"{method} {path} HTTP/{version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def timed(fn):
    started = time.monotonic()
    result = fn()
    return result, time.monotonic() - started


def both_listeners():
    return pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])


def open_product(d, admin, uploader, product):
    """An uploaded release on channel stable; returns nothing. Polls of version 0.9.0 then get a manifest."""
    upload(d, uploader, product, "1.0.0", esp32_image("1.0.0", project=product), "esp32", layout="ota")
    set_channel(d, admin, product, "stable", "1.0.0")


def report_path(device):
    return f"{API}/devices/{device}/report"


# -- 1. bodies on routes that take none; authentication before the body ------------------

@both_listeners()
def test_a_body_on_a_route_that_takes_none_is_refused_before_it_is_read(otad_factory, tls):
    d = otad_factory(http_listener=True)
    path = "/healthz" if tls else f"{API}/update?product=x"  # the plain listener serves device routes
    for framing in ("Content-Length: 1048576", "Transfer-Encoding: chunked"):
        c = Raw(d, tls)
        # Only the header: the answer must not wait for the megabyte announced.
        c.send(request_head("GET", path, extra=[framing]))
        (status, headers, body), elapsed = timed(c.response)
        assert status == 413, (framing, body)
        assert problem_type(body) == "body-not-allowed"
        assert headers.get("connection") == "close"
        assert elapsed < 2
        assert c.rest() == b""
        c.close()
    # Many connections announcing bodies all get the same prompt answer.
    conns = [Raw(d, tls) for _ in range(50)]
    for c in conns:
        c.send(request_head("GET", path, extra=["Content-Length: 1048576"]) + b"x" * 1024)
    assert all(c.response()[0] == 413 for c in conns)
    for c in conns:
        c.close()
    status, _, _ = d.request("GET", "/healthz")
    assert status == 200


def test_operator_bodies_need_a_token_before_they_are_read(otad_factory):
    d = otad_factory()
    viewer = d.create_token("viewer")
    for method, path, length in (("PUT", f"{API}/products/p/channels/stable", 60_000),
                                 ("PATCH", f"{API}/products/p", 60_000),
                                 ("POST", f"{API}/products/p/device-keys", 4_000),
                                 ("POST", f"{API}/products/p/releases/1.0.0/artifacts", 10 << 20)):
        for token, expected in ((None, 401), ("not-a-token", 401), (viewer, 403)):
            c = Raw(d)
            extra = [f"Content-Length: {length}", "Content-Type: application/json"]
            if token:
                extra.append(f"Authorization: Bearer {token}")
            c.send(request_head(method, path, extra=extra))
            (status, headers, body), elapsed = timed(c.response)
            assert status == expected, (method, path, token, body)
            assert elapsed < 2, (method, path, elapsed)
            assert headers.get("connection") == "close"
            c.close()
    # A valid caller is served as before.
    admin = d.create_token("admin")
    status, _, body = d.json("POST", f"{API}/products/p/device-keys", {"name": "k"}, token=admin)
    assert status == 404 and body["type"].endswith("product-not-found")


@both_listeners()
def test_a_device_report_needs_its_key_before_its_body_is_read(otad_factory, tls):
    d = otad_factory(http_listener=True)
    admin, uploader = d.create_token("admin"), d.create_token("uploader")
    open_product(d, admin, uploader, "keyed")
    status, _, _ = esp32_poll(d, product="keyed", version="0.9.0", device="dev-k")
    assert status == 200
    status, _, created = d.json("POST", f"{API}/products/keyed/device-keys", {"name": "fleet"}, token=admin)
    assert status == 201
    key = created["key"]

    for extra in ([], ["Authorization: Bearer wrong-key"]):
        c = Raw(d, tls)
        c.send(request_head("POST", report_path("dev-k"), extra=["Content-Length: 16000"] + extra))
        (status, headers, body), elapsed = timed(c.response)
        assert status == 401, body
        assert problem_type(body) == "device-key-required"
        assert elapsed < 2
        c.close()
    # An unknown device id is not told apart from a known one without a key.
    c = Raw(d, tls)
    c.send(request_head("POST", report_path("dev-unknown"), extra=["Content-Length: 16000"]))
    assert c.response()[0] == 401
    c.close()
    # With the key, the report is taken as before.
    status, _, _ = d.request("POST", report_path("dev-k"), body=json.dumps({"status": "downloading", "version": "1.0.0"}),
                             headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                             plain=not tls)
    assert status == 204


# -- 1. the memory budget and the deadline of buffered bodies ----------------------------------

def test_buffered_bodies_past_the_memory_budget_get_503(otad_factory):
    # 64 KiB for all buffered bodies: four device reports of 16,000 bytes fit, a fifth does not.
    d = otad_factory(env={"OTAD_MAX_BUFFERED_BODY_BYTES_TOTAL": "65536"})
    body = json.dumps({"status": "downloading"}).encode().ljust(16000)
    held = []
    for i in range(4):
        c = Raw(d)
        c.send(request_head("POST", report_path(f"dev-{i}"),
                            extra=["Content-Length: 16000", "Expect: 100-continue"]))
        c.interim()  # its 16,000 bytes are reserved now
        held.append(c)
    c = Raw(d)
    c.send(request_head("POST", report_path("dev-x"), extra=["Content-Length: 16000", "Expect: 100-continue"]))
    status, headers, answer = c.response()
    assert status == 503, answer
    assert problem_type(answer) == "busy"
    assert int(headers["retry-after"]) >= 1
    assert headers.get("connection") == "close"
    c.close()
    # The held requests complete (an unknown device: 404), and give their memory back.
    for c in held:
        c.send(body)
        assert c.response()[0] == 404
        c.close()
    status, _, _ = d.request("POST", report_path("dev-x"), body=body, headers={"Content-Type": "application/json"})
    assert status == 404


@both_listeners()
def test_a_stalled_or_trickled_api_body_is_answered_408_at_one_deadline(otad_factory, tls):
    d = otad_factory(http_listener=True, env={"OTAD_BODY_TIMEOUT_MS": "1000"})
    # Stalled: ten bytes, then nothing. The 408 must reach the client on both listeners.
    c = Raw(d, tls)
    c.send(request_head("POST", report_path("dev-1"), extra=["Content-Length: 1000"]) + b'{"status":')
    (status, headers, body), elapsed = timed(c.response)
    assert status == 408, body
    assert problem_type(body) == "request-timeout"
    assert headers.get("connection") == "close"
    assert elapsed < 5
    c.close()
    # Trickled: a byte every 100 ms never lets one read wait long, but the whole body has one deadline.
    c = Raw(d, tls)
    c.send(request_head("POST", report_path("dev-1"), extra=["Content-Length: 1000"]))
    started = time.monotonic()
    for _ in range(80):
        c.send(b" ")
        if c.readable(0.1):
            break
    status, _, body = c.response()
    assert status == 408, body
    assert time.monotonic() - started < 5
    c.close()
    assert "status=408" in d.log()


# -- 2. slow uploads and everything else -------------------------------------------------------

def multipart_upload_head(product, version, token, length, boundary="otadslow"):
    return request_head("POST", f"{API}/products/{product}/releases/{version}/artifacts?chip=esp32&layout=ota",
                        extra=[f"Authorization: Bearer {token}",
                               f"Content-Type: multipart/form-data; boundary={boundary}",
                               f"Content-Length: {length}", "Expect: 100-continue"])


def multipart_file_start(boundary="otadslow"):
    return (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"fw.bin\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()


def test_slow_uploads_leave_polls_operator_requests_and_readyz_fast(otad_factory):
    d = otad_factory()  # default worker_threads: 4
    admin, uploader = d.create_token("admin"), d.create_token("uploader")
    open_product(d, admin, uploader, "busy")
    workers = 4
    uploads = []
    for i in range(workers + 2):
        c = Raw(d, timeout=10)
        c.send(multipart_upload_head("busy", f"2.0.{i}", uploader, 1 << 20))
        # 100 Continue comes from the handler's first read: the upload is in flight.
        try:
            c.interim()
        except (socket.timeout, TimeoutError):
            pytest.fail(f"upload {i + 1} never started: the uploads before it hold every thread")
        c.send(multipart_file_start())
        uploads.append(c)

    for round_number in range(3):
        for c in uploads:
            c.send(b"\xe9")  # a trickle: the uploads stay in flight
        (status, _, _), elapsed = timed(lambda: esp32_poll(d, product="busy", version="0.9.0",
                                                             device=f"dev-{round_number}"))
        assert status == 200 and elapsed < 1, (status, elapsed)
        (status, _, _), elapsed = timed(lambda: d.json("GET", f"{API}/products", token=admin))
        assert status == 200 and elapsed < 1, (status, elapsed)
        (status, _, _), elapsed = timed(lambda: d.json("GET", "/readyz"))
        assert status == 200 and elapsed < 1, (status, elapsed)
        status, _, _ = d.json("PUT", f"{API}/products/busy/channels/beta", {"version": "1.0.0"}, token=admin)
        assert status == 200
    for c in uploads:
        c.close()
    # The abandoned uploads end and store nothing: the product still has its one release.
    def releases():
        return len(d.json("GET", f"{API}/products/busy/releases", token=admin)[2]["releases"])
    assert releases() == 1
    wait_for(lambda: d.log().count("status=400") >= len(uploads), what="the abandoned uploads to end (400)")
    assert releases() == 1


def test_uploads_past_the_cap_get_503_and_a_trickled_upload_408(otad_factory):
    d = otad_factory(env={"OTAD_MAX_CONCURRENT_UPLOADS": "2", "OTAD_BODY_TIMEOUT_MS": "1000",
                          "OTAD_MIN_UPLOAD_RATE_BYTES_PER_S": "2000"})
    uploader = d.create_token("uploader")
    first, second = Raw(d), Raw(d)
    for i, c in enumerate((first, second)):
        c.send(multipart_upload_head("cap", f"1.0.{i}", uploader, 100_000))
        c.interim()
    third = Raw(d)
    third.send(multipart_upload_head("cap", "1.0.9", uploader, 100_000))
    (status, headers, body), elapsed = timed(third.response)
    assert status == 503 and problem_type(body) == "busy", body
    assert int(headers["retry-after"]) >= 1
    assert elapsed < 2
    third.close()
    # The first trickles 20 bytes every 100 ms (200 bytes/s, below the 2000 asked for), the
    # second sends nothing: both get 408, the trickler within body_timeout plus a little.
    first.send(multipart_file_start())
    started = time.monotonic()
    for _ in range(80):
        first.send(b"\0" * 20)
        if first.readable(0.1):
            break
    status, _, body = first.response()
    assert status == 408, body
    assert time.monotonic() - started < 5
    status, _, body = second.response()
    assert status == 408, body
    first.close()
    second.close()


# -- 3. request smuggling and Host --------------------------------------------------------------

@both_listeners()
@pytest.mark.parametrize("coding", ["chunked, gzip", "gzip", "xchunked"])
def test_a_request_smuggled_behind_a_bad_transfer_encoding_is_not_answered(otad_factory, tls, coding):
    d = otad_factory(http_listener=True)
    path = f"{API}/update?product=x"
    smuggled = request_head("GET", f"{API}/update?product=smuggled")
    c = Raw(d, tls)
    c.send(request_head("POST", report_path("dev-1"), extra=[f"Transfer-Encoding: {coding}"]) + smuggled)
    status, headers, body = c.response()
    assert status == 400, body
    assert "Transfer-Encoding" in json.loads(body)["detail"]
    assert headers.get("connection") == "close"
    assert b"HTTP/1.1" not in c.rest()
    c.close()
    # Same on a route that takes no body.
    c = Raw(d, tls)
    c.send(request_head("GET", path, extra=[f"Transfer-Encoding: {coding}"]) + smuggled)
    assert c.response()[0] == 400
    assert b"HTTP/1.1" not in c.rest()
    c.close()
    assert "smuggled" not in d.log()


@both_listeners()
def test_transfer_encoding_in_http10_is_answered_then_closed(otad_factory, tls):
    d = otad_factory(http_listener=True)
    body = json.dumps({"status": "downloading"}).encode()
    chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    c = Raw(d, tls)
    c.send(request_head("POST", report_path("dev-1"), version="1.0",
                        extra=["Connection: keep-alive", "Transfer-Encoding: chunked"]) + chunked +
           request_head("GET", f"{API}/update?product=smuggled", version="1.0", extra=["Connection: keep-alive"]))
    status, headers, answer = c.response()
    assert status == 404, answer  # the report itself is answered (an unknown device)...
    assert headers.get("connection") == "close"  # ...and the connection is not kept
    assert b"HTTP/1.1" not in c.rest()
    c.close()
    assert "smuggled" not in d.log()
    # Other codings before chunked are not implemented.
    c = Raw(d, tls)
    c.send(request_head("POST", report_path("dev-1"), extra=["Transfer-Encoding: gzip, chunked"]) + chunked)
    assert c.response()[0] == 501
    c.close()


@both_listeners()
def test_http11_needs_exactly_one_host(otad_factory, tls):
    d = otad_factory(http_listener=True)
    path = f"{API}/update?product=x&chip=esp32&layout=ota&slot=ota_0&version=1.0.0&device=d1"
    for head in (request_head("GET", path, host=None),
                 request_head("GET", path, extra=["Host: evil.example"]),
                 request_head("GET", path, version="1.0", extra=["Host: evil.example"])):
        c = Raw(d, tls)
        c.send(head)
        status, _, body = c.response()
        assert status == 400, (head, body)
        assert "Host" in json.loads(body)["detail"]
        c.close()
    # HTTP/1.0 may leave it out: the poll is answered (no such product).
    c = Raw(d, tls)
    c.send(request_head("GET", path, host=None, version="1.0"))
    status, _, body = c.response()
    assert status == 404 and problem_type(body) == "product-not-found", body
    c.close()
