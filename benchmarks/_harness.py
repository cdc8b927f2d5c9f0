"""What the HTTP benchmarks (serve.py, debug.py, nginx.py) share: starting servers on
127.0.0.1 and always stopping them, the wrk and Python load clients, interleaved rounds.

Kept here so that a fix to one of them (a timeout, a bound, how a child is stopped)
reaches every benchmark. Not a script: the scripts are run as ``python benchmarks/X.py``,
which puts this directory on ``sys.path``, so they ``import _harness``. Everything is
bounded: the servers listen on 127.0.0.1 only, every load has a deadline and a request
cap, every subprocess is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

K = TypeVar("K")

PIN_SERVER, PIN_CLIENT = (
    (["taskset", "-c", "0"], ["taskset", "-c", "1"])
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2
    else ([], [])
)
"""Servers on CPU 0, the load client on CPU 1, when taskset is there: steadier numbers."""
PINNED = ", servers on CPU 0 and client on CPU 1"
"""What the scripts print when PIN_SERVER is set."""


# --- the parent process ------------------------------------------------------------------


def prepare_parent() -> None:
    """Line-buffers stdout (progress shows when piped too) and makes SIGTERM unwind like
    Ctrl-C, so every ``finally`` that stops a server runs."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def find_wrk(parser: argparse.ArgumentParser, client: str) -> str | None:
    """wrk's path for ``--client auto|wrk``, None for ``python``; a usage error when wrk
    is asked for and not installed."""
    wrk = shutil.which("wrk") if client in ("auto", "wrk") else None
    if client == "wrk" and wrk is None:
        parser.error("--client wrk: wrk is not installed")
    return wrk


def describe_run(client: str, duration: float, rounds: int) -> str:
    """The first line of serve.py and debug.py: versions, CPUs, client, rounds, load."""
    import tornado

    return (
        f"tornado {tornado.version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
        f"{client}{PINNED if PIN_SERVER else ''}; "
        f"{duration:g} s x {rounds} rounds per server, best kept; "
        f"load average before the run {os.getloadavg()[0]:.2f}"
    )


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, timeout: float = 10.0) -> None:
    """Sends ``sig``, waits ``timeout`` s, then kills: a server never outlives its script."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def server(script: str, args: Sequence[str], name: str) -> Iterator[int]:
    """Runs ``python script *args --fd N`` on a socket bound here to 127.0.0.1 on an unused
    port (no race for the port: the child inherits it); yields the port once the child
    printed ``ready``; always stops it. The child side is `serve_on_fd`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    proc: subprocess.Popen[bytes] | None = None
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        port: int = sock.getsockname()[1]
        command = [*PIN_SERVER, sys.executable, script, *args, "--fd", str(sock.fileno())]
        proc = subprocess.Popen(command, pass_fds=(sock.fileno(),), stdout=subprocess.PIPE)
        sock.close()
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        if not ready or proc.stdout.readline() != b"ready\n":
            raise RuntimeError(f"{name} server did not start (exit status {proc.poll()})")
        yield port
    finally:
        sock.close()
        if proc is not None:
            stop(proc)


def fetch(
    port: int,
    url: str,
    headers: Mapping[str, str] | None = None,
    *,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
) -> tuple[str, bytes]:
    """One ``Connection: close`` GET on a raw socket, so every header is seen as sent;
    returns (head, body)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = f"GET {url} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request.encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


# --- load --------------------------------------------------------------------------------


def interleaved(
    measures: Mapping[K, Callable[[float], float]], *, rounds: int, seconds: float
) -> dict[K, list[float]]:
    """One warm-up of each (at most 1 s), then ``rounds`` rounds of each in turn: a burst
    of other load on the machine hits one round of every target, not every round of one."""
    for run in measures.values():
        run(min(seconds, 1.0))
    results: dict[K, list[float]] = {key: [] for key in measures}
    for _ in range(rounds):
        for key, run in measures.items():
            results[key].append(run(seconds))
    return results


def wrk_rate(
    wrk: str,
    port: int,
    url: str,
    *,
    connections: int,
    seconds: float,
    timeout: str | None = None,
    headers: Mapping[str, str] | None = None,
    pin: Sequence[str] = PIN_CLIENT,
) -> float:
    """Requests/s from ``wrk -t1`` on 127.0.0.1; raises on any non-2xx/3xx or socket error,
    so a wrong answer is never counted as speed."""
    command = [*pin, wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    if timeout is not None:
        command += ["--timeout", timeout]
    for key, value in (headers or {}).items():
        command += ["-H", f"{key}: {value}"]
    command.append(f"http://127.0.0.1:{port}{url}")
    out = subprocess.run(
        command, capture_output=True, text=True, timeout=seconds + 30, check=True
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    return float(found.group(1))


def get_request(url: str, headers: Mapping[str, str] | None = None) -> bytes:
    """A keep-alive GET for `python_rate`."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode("latin-1")


def python_rate(
    port: int,
    request: bytes,
    *,
    connections: int,
    seconds: float,
    cap: int,
    accept: tuple[bytes, ...] = (b"HTTP/1.1 200",),
) -> float:
    """Requests/s of ``connections`` asyncio keep-alive connections in this process, for
    ``seconds`` and at most ``cap`` requests in all: the fallback when wrk is missing. It
    measures the Python client as much as the server: compare ratios, not numbers."""

    async def run() -> float:
        start = time.perf_counter()
        deadline = start + seconds
        counts = await asyncio.wait_for(
            asyncio.gather(
                *(
                    _connection(port, request, deadline, cap // connections, accept)
                    for _ in range(connections)
                )
            ),
            timeout=seconds + 30,
        )
        return sum(counts) / (time.perf_counter() - start)

    return asyncio.run(run())


async def _connection(
    port: int, request: bytes, deadline: float, cap: int, accept: tuple[bytes, ...]
) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    done = 0
    try:
        while done < cap and time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(accept):
                raise RuntimeError(f"unexpected response: {head[:80]!r}")
            lowered = head.lower()
            length = re.search(rb"\r\ncontent-length:\s*(\d+)", lowered)
            if length is not None:
                await reader.readexactly(int(length.group(1)))
            elif b"\r\ntransfer-encoding: chunked" in lowered:
                while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                    await reader.readexactly(size + 2)
                await reader.readuntil(b"\r\n")
            done += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return done


# --- the server subprocess ---------------------------------------------------------------


def serve_on_fd(app: Any, fd: int, profiler: cProfile.Profile | None = None) -> None:
    """The child side of `server`: one Tornado process serving ``app`` on the inherited
    socket ``fd`` until SIGINT/SIGTERM, or until its parent is gone (it never outlives the
    benchmark, even one killed with SIGKILL). ``profiler`` runs only while serving."""
    import tornado.httpserver
    import tornado.ioloop

    parent = os.getppid()

    async def serve() -> None:
        http_server = tornado.httpserver.HTTPServer(app)
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        http_server.add_sockets([sock])
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopped.set)

        def orphaned() -> None:
            if os.getppid() != parent:
                stopped.set()

        tornado.ioloop.PeriodicCallback(orphaned, 1000).start()
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        if profiler is not None:
            profiler.enable()
        await stopped.wait()
        if profiler is not None:
            profiler.disable()
        http_server.stop()

    asyncio.run(serve())
