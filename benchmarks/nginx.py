"""Requests/s of one small versioned file from a compiled output, through nginx with
`assetver nginx`'s output configuration and through nginx with the Tornado deployment
guide's ``location ^~ /static/ { root ...; if ($query_string) { expires max; } }``,
same files, same run, with ratios; plus the floor (a bare location, no caching headers),
the root configuration, and ``nginx -t`` time for a large root manifest.

    python benchmarks/nginx.py            # wrk when installed, 3 s x 5 rounds, 100k entries
    python benchmarks/nginx.py --smoke    # about two seconds: Python client, 2k entries

Requests carry no Accept-Encoding, so every target sends the same identity bytes. Rounds
are interleaved and the best is kept: load from elsewhere only ever lowers a round. Without
wrk the load comes from a bounded asyncio client on 127.0.0.1, which measures the client
as much as nginx: compare the ratios, not the numbers.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
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
import brotli

from assetver.hashing import digest_bytes
from assetver.http import SUFFIXES
from assetver.manifest import Entry, Manifest
from assetver.nginx import render
from assetver.policy import IMMUTABLE
from assetver.urls import STATE_DIR, hashed_path

ASSET = "css/app.css"
BODY = b".btn { color: #fff; background: #0d6efd; border-radius: .375rem }\n" * 9
BROTLI_MODULES = (
    "/usr/lib/nginx/modules/ngx_http_brotli_static_module.so",
    "/usr/share/nginx/modules/ngx_http_brotli_static_module.so",
)


def main() -> int:
    _harness.prepare_parent()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny, fast run (CI)")
    parser.add_argument("--duration", type=float, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, help="measurements per target (best kept)")
    parser.add_argument("--connections", type=int, help="concurrent connections (32; smoke 4)")
    parser.add_argument("--entries", type=int, help="manifest entries for the nginx -t timing")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    args = parser.parse_args()
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
    )
    if nginx is None:
        print("nginx not found: nothing to measure (install the Debian nginx package)")
        return 1 if os.environ.get("CI") else 0
    wrk = None if args.smoke else _harness.find_wrk(parser, args.client)
    duration = args.duration or (0.3 if args.smoke else 3.0)
    rounds = args.rounds or (1 if args.smoke else 5)
    entries = args.entries or (2000 if args.smoke else 100_000)
    connections = args.connections or (4 if args.smoke else 32)
    with tempfile.TemporaryDirectory(prefix="assetver-bench-") as tmp:
        _requests_per_second(Path(tmp), nginx, wrk, duration, rounds, connections)
        _nginx_t(Path(tmp), nginx, entries)
    return 0


def _write_output(out: Path) -> Manifest:
    """An output laid out as `assetver.output` writes one: hashed copy, variants, the
    current file and its variants as hard links, the manifest in ``.assetver/``."""
    digest = digest_bytes(BODY)
    hashed = hashed_path(ASSET, digest)
    (out / hashed).parent.mkdir(parents=True)
    (out / hashed).write_bytes(BODY)
    variants = {"gzip": gzip.compress(BODY, mtime=0), "br": brotli.compress(BODY)}
    for coding, data in variants.items():
        (out / (hashed + SUFFIXES[coding])).write_bytes(data)
    for suffix in ("", *(SUFFIXES[c] for c in variants)):
        os.link(out / (hashed + suffix), out / (ASSET + suffix))
    sizes = {coding: len(data) for coding, data in variants.items()}
    entry = Entry(digest, len(BODY), {"hashed": hashed, "variants": sizes})
    manifest = Manifest({ASSET: entry}, output=True)
    (out / STATE_DIR).mkdir()
    manifest.dump(out / STATE_DIR / "manifest.json")
    return manifest


def _requests_per_second(
    tmp: Path, nginx: str, wrk: str | None, duration: float, rounds: int, connections: int
) -> None:
    out = tmp / "app" / "static"
    manifest = _write_output(out)
    digest = manifest[ASSET].digest
    query = f"/static/{ASSET}?v={digest}"
    filename = "/static/" + hashed_path(ASSET, digest)
    brotli_module = next((m for m in BROTLI_MODULES if os.path.exists(m)), None)
    ports = {name: _free_port() for name in ("ours", "uncached", "guide", "floor", "root")}
    site = render(
        manifest, root=str(out), listen=f"127.0.0.1:{ports['ours']}", brotli=bool(brotli_module)
    )
    uncached = render(
        manifest, root=str(out), listen=f"127.0.0.1:{ports['uncached']}", open_file_cache=0
    )
    site += uncached[uncached.index("server {") :]
    site += _plain_server(ports["guide"], tmp / "app", "if ($query_string) { expires max; }")
    site += _plain_server(ports["floor"], tmp / "app", "")
    root_manifest = Manifest({ASSET: manifest[ASSET]})
    rooted = render(root_manifest, root=str(out), listen=f"127.0.0.1:{ports['root']}")
    targets = [
        ("nginx, assetver output config", "ours", query),
        ("nginx, assetver output config", "ours", filename),
        ("nginx, assetver output config, no open_file_cache", "uncached", query),
        ("nginx, guide's if ($query_string) { expires max; }", "guide", query),
        ("nginx, guide's snippet", "guide", filename),
        ("nginx, bare location (floor: no caching headers)", "floor", query),
        ("nginx, assetver root config (for reference)", "root", query),
    ]
    client = f"wrk 1 thread, {connections} connections" if wrk else "Python asyncio client"
    pinned = _harness.PINNED if _harness.PIN_SERVER else ""
    print(
        f"{len(BODY)}-byte file, identity: {client}{pinned}, {duration:g} s x {rounds} "
        "interleaved rounds; req/s: best round [median]; nginx CPU per request: median"
    )
    cpu: dict[tuple[str, str], list[float]] = {(key, url): [] for _, key, url in targets}
    with (
        _nginx_running(tmp / "nginx", nginx, site, ports["ours"], brotli_module) as main_server,
        _nginx_running(tmp / "nginx-root", nginx, rooted, ports["root"], None) as root_server,
    ):
        for name, key, url in targets:
            _show_headers(name, ports[key], url, ours=key in ("ours", "uncached"))

        def measure(key: str, url: str, seconds: float) -> float:
            server = root_server if key == "root" else main_server
            before = server.usage()
            if wrk:
                rate = _harness.wrk_rate(
                    wrk, ports[key], url, connections=connections, seconds=seconds
                )
            else:
                request = _harness.get_request(url)
                rate = _harness.python_rate(
                    ports[key], request, connections=connections, seconds=seconds, cap=200_000
                )
            (cpu0, count0), (cpu1, count1) = before, server.usage()
            cpu[key, url].append((cpu1 - cpu0) / max(1, count1 - count0 - 1))
            return rate

        results = _harness.interleaved(
            {(key, url): partial(measure, key, url) for _, key, url in targets},
            rounds=rounds,
            seconds=duration,
        )
    rps = {target: max(values) for target, values in results.items()}
    # the first of each is interleaved()'s warm-up
    us = {target: statistics.median(values[1:] or values) * 1e6 for target, values in cpu.items()}
    for name, key, url in targets:
        rate, cost = rps[key, url], us[key, url]
        line = f"  {name:<52} {'?v=' if url == query else 'hashed':<7}{rate:>9,.0f} req/s"
        line += f" [{statistics.median(results[key, url]):>9,.0f}] {cost:5.2f} us"
        if key == "ours":
            line += f"   ours/guide: {rate / rps['guide', url]:.3f} req/s"
            line += f", {us['guide', url] / cost:.3f} by CPU (target >= 0.90)"
        elif key in ("uncached", "root"):
            line += f"   /guide: {rate / rps['guide', url]:.3f}, {us['guide', url] / cost:.3f}"
        print(line)


def _plain_server(port: int, root: Path, extra: str) -> str:
    return (
        f"server {{\n    listen 127.0.0.1:{port};\n"
        f'    location ^~ /static/ {{\n        root "{root}";\n'
        f"        {extra}\n    }}\n}}\n"
    )


def _show_headers(name: str, port: int, url: str, *, ours: bool) -> None:
    head, body = _harness.fetch(port, url, host="localhost", timeout=5)
    status = head.split("\r\n", 1)[0]
    wanted = ("cache-control", "expires")
    lines = [line for line in head.split("\r\n") if line.lower().startswith(wanted)]
    print(f"  {name} {url}: {status}; {'; '.join(lines) or 'no caching headers'}")
    if body != BODY:
        raise RuntimeError(f"{name} sent other bytes for {url}")
    cache = [line for line in lines if line.lower().startswith("cache-control")]
    if ours and (cache != [f"Cache-Control: {IMMUTABLE}"] or len(lines) != 2):
        raise RuntimeError(f"expected one immutable Cache-Control and an Expires: {lines}")


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
        prefix = _write_conf(tmp / f"nginx-t-{style}", site, None)
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
            f"nginx -t, {entries}-entry root manifest, {style} style: {checked:.3f} s "
            f"(target < 2 s); render {rendered:.3f} s, {len(site) / 2**20:.1f} MiB"
        )
    output = render(Manifest(files, output=True), root=str(tmp / "out"))
    print(f"output configuration: {len(output) / 2**10:.1f} KiB whatever the number of files")


def _write_conf(prefix: Path, site: str, module: str | None) -> Path:
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
    load = f"load_module {module};\n" if module else ""
    (prefix / "nginx.conf").write_text(
        f'{load}{user}worker_processes 1;\npid "{prefix}/nginx.pid";\n'
        f'error_log "{prefix}/error.log" warn;\n'
        "events { worker_connections 1024; }\n"
        "http {\n    include mime.types;\n    access_log off;\n"
        "    sendfile on;\n    tcp_nopush on;\n    tcp_nodelay on;\n"
        f"    keepalive_requests 1000000;\n{temp}    include site.conf;\n}}\n"
    )
    return prefix


class _Running:
    """An nginx under load: the CPU seconds its workers used and the requests it
    answered (``stub_status``), so cost per request survives a busy machine."""

    def __init__(self, master: int, status_port: int) -> None:
        self.master, self.status_port = master, status_port
        self.tick = os.sysconf("SC_CLK_TCK")

    def usage(self) -> tuple[float, int]:
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.master:
                ticks += int(fields[11]) + int(fields[12])
        _, body = _harness.fetch(self.status_port, "/", timeout=5)
        return ticks / self.tick, int(body.split(b"\n")[2].split()[2])


@contextmanager
def _nginx_running(
    prefix: Path, nginx: str, site: str, port: int, module: str | None
) -> Iterator[_Running]:
    status_port = _free_port()
    status = f"server {{\n    listen 127.0.0.1:{status_port};\n    stub_status;\n}}\n"
    _write_conf(prefix, site + status, module)
    command = [nginx, "-p", f"{prefix}/", "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"]
    proc = subprocess.Popen([*_harness.PIN_SERVER, *command])
    try:
        _wait_for(port, proc)
        yield _Running(proc.pid, status_port)
    finally:
        _harness.stop(proc, signal.SIGTERM, timeout=5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


if __name__ == "__main__":
    sys.exit(main())
