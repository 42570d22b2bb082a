#!/usr/bin/env python3
"""Many-connection TLS clients for bench/run.sh (asyncio, standard library only).

  hold    opens COUNT TLS connections, sends one tiny request on each (GET PATH with
          Range: bytes=0-0) and reads the answer, so every connection is an idle
          keep-alive connection that has finished its handshake; writes "READY <n>"
          to stdout, then holds them until SIGTERM/SIGINT.
  trickle opens COUNT TLS connections that each download PATH over and over while
          reading only RATE bytes per second (small receive buffer, no autotuning),
          like devices on poor links; "READY <n>" once all are streaming.

Only 127.0.0.1; every wait has a deadline."""
import argparse
import asyncio
import signal
import socket
import ssl
import sys
import time


def context(cafile):
    ctx = ssl.create_default_context(cafile=cafile)
    return ctx


async def open_tls(port, ctx, rcvbuf=None, limit=65536):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="localhost", limit=limit,
                                         ssl_handshake_timeout=60)


async def read_response_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return status, length


def request(path, extra=""):
    return f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n".encode()


async def wait_for_stop():
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def hold(args):
    ctx = context(args.cafile)
    gate = asyncio.Semaphore(args.parallel)
    held, failed = [], 0

    async def one():
        nonlocal failed
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(open_tls(args.port, ctx), 60)
                writer.write(request(args.path, "Range: bytes=0-0\r\n"))
                status, length = await asyncio.wait_for(read_response_head(reader), 60)
                await asyncio.wait_for(reader.readexactly(length), 60)
                if status >= 400:
                    raise RuntimeError(f"status {status}")
                held.append((reader, writer))
            except Exception as e:  # counted, reported
                failed += 1
                if failed <= 3:
                    print(f"connection failed: {e!r}", file=sys.stderr)

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(args.count)))
    print(f"READY {len(held)} failed={failed} seconds={time.monotonic() - started:.1f}", flush=True)
    await wait_for_stop()
    for _, writer in held:
        writer.transport.abort()


async def trickle(args):
    ctx = context(args.cafile)
    gate = asyncio.Semaphore(args.parallel)
    ready = 0
    received = 0
    step = max(512, args.rate // 4)

    async def one():
        nonlocal ready, received
        async with gate:
            reader, writer = await asyncio.wait_for(open_tls(args.port, ctx, rcvbuf=4096, limit=4096), 60)
        first = True
        while True:
            writer.write(request(args.path))
            status, remaining = await read_response_head(reader)
            if status >= 400:
                raise RuntimeError(f"status {status}")
            if first:
                ready += 1
                first = False
            while remaining > 0:
                chunk = await reader.read(min(remaining, step))
                if not chunk:
                    return
                remaining -= len(chunk)
                received += len(chunk)
                await asyncio.sleep(0.25)

    tasks = [asyncio.create_task(one()) for _ in range(args.count)]
    deadline = time.monotonic() + 120
    while ready < args.count and time.monotonic() < deadline:
        if any(t.done() for t in tasks):
            break
        await asyncio.sleep(0.1)
    failed = sum(1 for t in tasks if t.done() and t.exception() is not None)
    print(f"READY {ready} failed={failed}", flush=True)
    since, before = time.monotonic(), received
    await wait_for_stop()
    print(f"DONE rate={(received - before) / max(time.monotonic() - since, 1e-3):.0f}B/s", flush=True)
    for t in tasks:
        t.cancel()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["hold", "trickle"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cafile", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--rate", type=int, default=8192, help="trickle: bytes per second per connection")
    p.add_argument("--parallel", type=int, default=64, help="handshakes in flight")
    args = p.parse_args()
    asyncio.run(hold(args) if args.mode == "hold" else trickle(args))


if __name__ == "__main__":
    main()
