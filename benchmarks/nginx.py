"""Requests/s for one small versioned file through nginx with `assetver nginx`'s config,
through nginx with the Tornado deployment guide's ``if ($query_string) { expires max; }``,
through plain nginx (the floor: no caching headers at all) and through the Tornado
handler, in one run, with ratios; then ``nginx -t`` time for a large manifest.

    python benchmarks/nginx.py            # wrk when installed, 5 s x 3 rounds, 100k entries
    python benchmarks/nginx.py --smoke    # a few seconds, Python client, 2k entries

Without wrk the load comes from a bounded single-connection Python client on 127.0.0.1,
which measures latency more than nginx's throughput; ratios remain comparable.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import _harness

from assetver.build import build
from assetver.http import IMMUTABLE
from assetver.manifest import Entry, Manifest
from assetver.nginx import render

ASSET = "css/app.css"
BODY = b".btn { color: #fff; background: #0d6efd; border-radius: .375rem }\n" * 9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny, fast run (CI)")
    parser.add_argument("--duration", type=float, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, help="measurements per target (median kept)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--entries", type=int, help="manifest entries for the nginx -t timing")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--tornado-server", nargs=3, metavar=("PORT", "ROOT", "MANIFEST"))
    args = parser.parse_args()
    if args.tornado_server:
        port, root, manifest = args.tornado_server
        _serve_tornado(int(port), root, manifest)
        return 0
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )
    if nginx is None:
        print("nginx not found: nothing to measure (install the Debian nginx package)")
        return 1 if os.environ.get("CI") else 0
    wrk = _harness.find_wrk(parser, args.client)
    if args.smoke:
        wrk = None
    duration = args.duration or (0.3 if args.smoke else 3.0)
    rounds = args.rounds or (1 if args.smoke else 5)
    entries = args.entries or (2000 if args.smoke else 100_000)
    with tempfile.TemporaryDirectory(prefix="assetver-bench-") as tmp:
        _requests_per_second(Path(tmp), nginx, wrk, duration, rounds, args.connections)
        _nginx_t(Path(tmp), nginx, entries)
    return 0


def _requests_per_second(
    tmp: Path, nginx: str, wrk: str | None, duration: float, rounds: int, connections: int
) -> None:
    root = tmp / "static"
    (root / "css").mkdir(parents=True)
    (root / ASSET).write_bytes(BODY)
    manifest = build(root).manifest
    manifest_path = tmp / "manifest.json"
    manifest.dump(manifest_path)
    url = f"/static/{ASSET}?v={manifest[ASSET].digest}"
    ours, uncached, guide, plain = (_free_port() for _ in range(4))
    site = render(manifest, root=str(root), listen=f"127.0.0.1:{ours}")
    uncached_site = render(
        manifest, root=str(root), listen=f"127.0.0.1:{uncached}", open_file_cache=0
    )
    site += uncached_site[uncached_site.index("server {") :]
    site += (
        f"server {{\n    listen 127.0.0.1:{guide};\n"
        f'    location ^~ /static/ {{\n        root "{tmp}";\n'
        "        if ($query_string) {\n            expires max;\n        }\n    }\n}\n"
        f"server {{\n    listen 127.0.0.1:{plain};\n"
        f'    location ^~ /static/ {{\n        root "{tmp}";\n    }}\n}}\n'
    )
    targets: list[tuple[str, int]] = [
        ("nginx, assetver config", ours),
        ("nginx, assetver config, no open_file_cache", uncached),
        ("nginx, guide's if ($query_string)", guide),
        ("nginx, no caching headers (floor)", plain),
    ]
    client = f"wrk 1 thread, {connections} connections" if wrk else "Python client, 1 connection"
    pinned = _harness.PINNED if _harness.PIN_SERVER else ""
    print(f"GET {url} ({len(BODY)} bytes): {client}{pinned}, {duration:g} s x {rounds}, median")
    with (
        _nginx_running(tmp / "nginx", nginx, site, ours),
        _tornado_running(tmp, root, manifest_path) as tornado_port,
    ):
        if tornado_port is not None:
            targets.append(("tornado, assetver handler (1 process)", tornado_port))
        for name, port in targets:
            _show_headers(name, port, url, ours=port == ours)

        def measure(port: int, seconds: float) -> float:
            if wrk:
                # wrk is not pinned to CPU 1 here, unlike serve.py and debug.py (as before).
                return _harness.wrk_rate(
                    wrk, port, url, connections=connections, seconds=seconds, pin=()
                )
            return _python_client(port, url, seconds)

        results = _harness.interleaved(
            {port: partial(measure, port) for _, port in targets}, rounds=rounds, seconds=duration
        )
    rps = {port: statistics.median(values) for port, values in results.items()}
    for name, port in targets:
        line = f"  {name:<44} {rps[port]:>10,.0f} req/s"
        if port == guide:
            line += f"   ours/guide = {rps[ours] / rps[guide]:.3f} (target >= 0.90)"
        elif port == plain:
            line += f"   ours/floor = {rps[ours] / rps[plain]:.3f}"
        elif port == uncached:
            line += f"   /guide = {rps[uncached] / rps[guide]:.3f}"
        elif port != ours:
            line += f"   tornado/ours = {rps[port] / rps[ours]:.3f}"
        print(line)


def _show_headers(name: str, port: int, url: str, *, ours: bool) -> None:
    head, _ = _harness.fetch(port, url, host="localhost", timeout=5)
    status = head.split("\r\n", 1)[0]
    lines = [
        line for line in head.split("\r\n") if line.lower().startswith(("cache-control", "expires"))
    ]
    print(f"  {name}: {status}; {'; '.join(lines) or 'no caching headers'}")
    if ours and lines.count(f"Cache-Control: {IMMUTABLE}") != 1:
        raise RuntimeError(f"expected one immutable Cache-Control: {lines}")


def _python_client(port: int, url: str, duration: float, limit: int = 200_000) -> float:
    """Keep-alive GETs on one connection for ``duration`` s (at most ``limit``)."""
    request = f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    length_re = re.compile(rb"(?im)^content-length:\s*(\d+)")
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    buf, done = b"", 0
    start = time.perf_counter()
    deadline = start + duration
    try:
        while done < limit and time.perf_counter() < deadline:
            sock.sendall(request)
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("server closed the connection")
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected response: {head[:80]!r}")
            found = length_re.search(head)
            length = int(found.group(1)) if found else 0
            while len(buf) < length:
                buf += sock.recv(65536)
            buf = buf[length:]
            done += 1
    finally:
        sock.close()
    return done / (time.perf_counter() - start)


def _nginx_t(tmp: Path, nginx: str, entries: int) -> None:
    files = {
        f"vendor/pkg-{i // 500:03d}/dist/components/module-{i:06d}.bundle.min.js": Entry(
            hashlib.blake2b(i.to_bytes(8, "little"), digest_size=8).hexdigest(), i
        )
        for i in range(entries)
    }
    manifest = Manifest(files)
    for style in ("query", "filename"):
        start = time.perf_counter()
        site = render(manifest, root=str(tmp / "static"), style=style, listen="127.0.0.1:8080")
        rendered = time.perf_counter() - start
        prefix = _write_conf(tmp / f"nginx-t-{style}", site)
        start = time.perf_counter()
        result = subprocess.run(
            [nginx, "-t", "-q", "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        checked = time.perf_counter() - start
        if result.returncode != 0 or "[warn]" in result.stderr:
            raise RuntimeError(f"nginx -t failed:\n{result.stderr}")
        print(
            f"nginx -t, {entries}-entry manifest, {style} style: {checked:.3f} s "
            f"(target < 2 s); render {rendered:.3f} s, {len(site) / 2**20:.1f} MiB"
        )


def _write_conf(prefix: Path, site: str) -> Path:
    prefix.mkdir(parents=True, exist_ok=True)
    if os.path.exists("/etc/nginx/mime.types"):
        shutil.copy("/etc/nginx/mime.types", prefix)
    else:
        (prefix / "mime.types").write_text("types { text/css css; }\n")
    (prefix / "site.conf").write_text(site, encoding="utf-8")
    temp = "".join(
        f'    {name}_temp_path "{prefix}/{name}";\n'
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f'{user}worker_processes 1;\npid "{prefix}/nginx.pid";\n'
        f'error_log "{prefix}/error.log" warn;\n'
        "events { worker_connections 1024; }\n"
        "http {\n    include mime.types;\n    access_log off;\n"
        "    sendfile on;\n    tcp_nopush on;\n    tcp_nodelay on;\n"
        f"    keepalive_requests 1000000;\n{temp}    include site.conf;\n}}\n"
    )
    return prefix


@contextmanager
def _nginx_running(prefix: Path, nginx: str, site: str, port: int) -> Iterator[None]:
    _write_conf(prefix, site)
    proc = subprocess.Popen(
        [
            *_harness.PIN_SERVER,
            nginx,
            "-p",
            f"{prefix}/",
            "-c",
            str(prefix / "nginx.conf"),
            "-g",
            "daemon off;",
        ]
    )
    try:
        _wait_for(port, proc)
        yield
    finally:
        _harness.stop(proc, signal.SIGTERM, timeout=5)


@contextmanager
def _tornado_running(tmp: Path, root: Path, manifest: Path) -> Iterator[int | None]:
    if importlib.util.find_spec("assetver.tornado") is None:
        yield None
        return
    port = _free_port()
    proc = subprocess.Popen(
        [
            *_harness.PIN_SERVER,
            sys.executable,
            __file__,
            "--tornado-server",
            str(port),
            str(root),
            str(manifest),
        ]
    )
    try:
        _wait_for(port, proc)
        yield port
    finally:
        _harness.stop(proc, signal.SIGTERM, timeout=5)


def _serve_tornado(port: int, root: str, manifest: str) -> None:
    import tornado.web

    import assetver.tornado

    app = tornado.web.Application(
        [], **assetver.tornado.settings(static_path=root, assetver_manifest=manifest)
    )

    async def serve() -> None:
        app.listen(port, "127.0.0.1")
        await asyncio.Event().wait()

    asyncio.run(serve())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


if __name__ == "__main__":
    sys.exit(main())
