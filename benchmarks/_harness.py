"""What the benchmarks share: the trees they measure, interleaved timing and verdicts,
the benchmark-only venv of the peers, servers on 127.0.0.1 that always stop, load clients.

Not a script: ``python benchmarks/X.py`` puts this directory on ``sys.path``, so the
scripts ``import _harness``. Everything is bounded: servers listen on 127.0.0.1 only,
every load has a deadline and a request cap, every subprocess is stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import os
import random
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

K = TypeVar("K")
MIB = 1 << 20
REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
"""For subprocesses: this checkout's assetver, whatever is installed."""

PIN_SERVER, PIN_CLIENT = (
    (["taskset", "-c", "0"], ["taskset", "-c", "1"])
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2
    else ([], [])
)
"""Servers on CPU 0, the load client on CPU 1, when taskset is there: steadier numbers."""
PINNED = ", servers on CPU 0 and client on CPU 1"


# --- the command line, timing, verdicts ---------------------------------------------------


def parser(doc: str | None, rounds: int, *, root: bool = True) -> argparse.ArgumentParser:
    """The options every script has: --smoke, --rounds, --tmp, --strict (and --root)."""
    p = argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0],
        epilog=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--smoke", action="store_true", help="tiny, fast run (CI); targets not judged")
    p.add_argument("--rounds", type=int, help=f"interleaved rounds, best kept (default {rounds})")
    if root:
        p.add_argument("--root", help="a real tree to measure (default: ../shared/corpus)")
    p.add_argument("--tmp", help="where to make the temporary directory")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return p


class Verdicts:
    """Collects target checks: `check` judges one and says so, `exit_code` ends a script."""

    def __init__(self, smoke: bool) -> None:
        self.smoke = smoke
        self.missed: list[str] = []

    def check(self, name: str, value: float, goal: float, *, at_least: bool = True) -> str:
        ok = value >= goal if at_least else value <= goal
        if not ok:
            self.missed.append(name)
        return f"target {'>=' if at_least else '<='} {goal:g}: {'met' if ok else 'MISSED'}"

    def exit_code(self, strict: bool) -> int:
        print(f"targets missed: {', '.join(self.missed) if self.missed else 'none'}")
        if self.smoke:
            print("--smoke: sizes and durations too small for the targets to mean anything")
            return 0
        return 1 if strict and self.missed else 0


def rounds_of(
    measures: Mapping[K, Callable[[], object]], rounds: int, before: Callable[[], object] = int
) -> dict[K, float]:
    """Best of ``rounds`` interleaved rounds (A, B, C, A, B, C...) of one-shot timings, in
    the order given; ``before()`` runs, untimed, at the start of each round. A measure
    that returns a float reports its own time (CPU time, say) instead of its wall time."""
    runs: dict[K, list[float]] = {key: [] for key in measures}
    for r in range(rounds):
        print(f"  round {r + 1}/{rounds} ...", file=sys.stderr, flush=True)
        before()
        for key, measure in measures.items():
            start = time.perf_counter()
            got = measure()
            wall = time.perf_counter() - start
            runs[key].append(got if isinstance(got, float) else wall)
    return {key: min(values) for key, values in runs.items()}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.2f} s"


def run(command: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    """Runs a command to completion (at most 10 minutes), raising with its stderr."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, **kw)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return done


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m assetver ARGS`` from this checkout, a whole process."""
    return run([sys.executable, "-m", "assetver", *args], env=ENV)


BENCH_VENV = Path(os.environ.get("ASSETVER_BENCH_VENV", "/tmp/bench-venv"))


def peer_python(packages: Sequence[str], modules: Sequence[str], *, smoke: bool) -> str | None:
    """The Python of a venv outside the project holding ``packages`` (PyPI names), made on
    demand, never in smoke mode; None, with the reason printed, when it cannot be had."""
    python = BENCH_VENV / "bin" / "python"
    probe = [str(python), "-c", "import " + ", ".join(modules)]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return str(python)
    if smoke:
        print(f"  skipped: {', '.join(packages)} not in {BENCH_VENV} (--smoke installs nothing)")
        return None
    print(f"  installing {', '.join(packages)} into {BENCH_VENV} ...", file=sys.stderr)
    try:
        if not python.exists():
            run([sys.executable, "-m", "venv", str(BENCH_VENV)])
        run([str(python), "-m", "pip", "install", "-q", *packages])
        run(probe)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        print(f"  skipped: cannot install {', '.join(packages)} into {BENCH_VENV}: {e}")
        return None
    return str(python)


# --- trees ---------------------------------------------------------------------------------

EXTENSIONS = ("js", "css", "png", "svg", "woff2", "map", "json", "html", "txt", "jpg")
TEXT = frozenset({"js", "css", "svg", "map", "json", "html", "txt"})
WORDS = ("btn", "card", "nav", "modal", "alert", "badge", "table", "form", "toast", "grid")


def corpus(given: str | None) -> Path | None:
    """``--root``, else ``../shared/corpus`` beside the checkout when it exists."""
    if given is not None:
        if not os.path.isdir(given):
            raise SystemExit(f"--root {given}: not a directory")
        return Path(given)
    default = REPO.parent / "shared" / "corpus"
    return default if default.is_dir() else None


def copy_tree(source: Path, dest: Path) -> Path:
    """A writable copy of ``source`` (the scripts edit it), without FIFOs or devices."""

    def special(folder: str, names: list[str]) -> list[str]:
        kinds = (stat.S_ISREG, stat.S_ISDIR, stat.S_ISLNK)
        modes = {n: os.lstat(os.path.join(folder, n)).st_mode for n in names}
        return [n for n, mode in modes.items() if not any(kind(mode) for kind in kinds)]

    shutil.copytree(source, dest, symlinks=True, ignore=special, copy_function=shutil.copyfile)
    return dest


def text(rng: random.Random, kind: str, size: int) -> str:
    """CSS-like (``kind="css"``) or JS-like text of ``size`` characters, no references."""
    out, total = [f"/*! {kind} generated by assetver's benchmarks */\n"], 0
    while total < size:
        w, n = rng.choice(WORDS), rng.randrange(1000)
        if kind == "css":
            chunk = (
                f".{w}-{n}:hover > .{rng.choice(WORDS)} {{ color: #{rng.randrange(1 << 24):06x};"
            )
            chunk += f" margin: {rng.randint(0, 40)}px; transition: all .{n % 9}s ease-in; }}\n"
        else:
            chunk = f"function {w}{n}(e, t) {{ var n = e.{rng.choice(WORDS)} || {n * 7};"
            chunk += f' if (t > n) return t - n; return "{w}-{rng.randrange(1 << 16)}"; }}\n'
        out.append(chunk)
        total += len(chunk)
    return "".join(out)[:size]


def generate(root: Path, n: int, *, seed: int = 2024, text_files: bool = False) -> list[Path]:
    """Writes ``n`` files of log-uniform sizes in [100 B, 64 KiB], about 40 a directory,
    directories 1 to 5 deep: random bytes (incompressible), or with ``text_files`` text
    for the text extensions. Returns their paths. (For a seed, the default tree is the one
    build.py generated before this harness existed.)"""
    rng = random.Random(seed)
    pool = rng.randbytes(2 * MIB)
    words = text(random.Random(seed), "css", 2 * MIB).encode() if text_files else pool
    dirs, depth = [root], {root: 0}
    root.mkdir(parents=True)
    for i in range(max(1, n // 40)):
        parent = rng.choice(dirs)
        parent = root if depth[parent] >= 5 else parent
        dirs.append(parent / f"d{i}")
        dirs[-1].mkdir()
        depth[dirs[-1]] = depth[parent] + 1
    lo, hi = math.log(100), math.log(64 * 1024)
    paths = []
    for i in range(n):
        size = min(64 * 1024, int(math.exp(rng.uniform(lo, hi))))
        off = rng.randrange(len(pool) - size)
        ext = EXTENSIONS[i % len(EXTENSIONS)]
        paths.append(rng.choice(dirs) / f"f{i}.{ext}")
        paths[-1].write_bytes((words if ext in TEXT else pool)[off : off + size])
    return paths


def site(root: Path, *, pages: int = 8, fonts: int = 6, seed: int = 7) -> dict[str, list[str]]:
    """A front end under ``root``: ``css/base.css`` declares every font, ``theme.css``
    imports it, each ``css/page<i>.css`` imports theme.css and names images; JS with
    source maps. Returns the logical paths of its "fonts" and "stylesheets"."""
    rng = random.Random(seed)
    for d in ("css", "fonts", "img", "js"):
        (root / d).mkdir(parents=True, exist_ok=True)
    font_names = [f"fonts/face{i}.woff2" for i in range(fonts)]
    images = [f"img/pic{i}.{'svg' if i % 3 else 'png'}" for i in range(2 * pages)]
    for name in font_names + images:
        svg = b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9"/></svg>\n' * 40
        (root / name).write_bytes(
            svg if name.endswith("svg") else rng.randbytes(rng.randint(2, 80) << 10)
        )
    faces = "".join(f'@font-face {{ src: url("../{f}"), url(../{f}?#x); }}\n' for f in font_names)
    (root / "css/base.css").write_text(faces + text(rng, "css", 8_000))
    (root / "css/theme.css").write_text('@import url("base.css");\n' + text(rng, "css", 20_000))
    sheets = ["css/base.css", "css/theme.css"] + [f"css/page{i}.css" for i in range(pages)]
    for sheet in sheets[2:]:
        refs = "".join(
            f".bg{j} {{ background: url(../{rng.choice(images)}); }}\n" for j in range(4)
        )
        size = int(math.exp(rng.uniform(math.log(4_000), math.log(200_000))))
        (root / sheet).write_text(f'@import "theme.css";\n{refs}{text(rng, "css", size)}')
    for i in range(max(1, pages // 2)):
        js = text(rng, "js", rng.randint(5_000, 150_000))
        (root / f"js/app{i}.js").write_text(f"{js}\n//# sourceMappingURL=app{i}.js.map\n")
        (root / f"js/app{i}.js.map").write_text('{"version":3,"sources":[],"mappings":""}\n')
    return {"fonts": font_names, "stylesheets": sheets}


def rewrite(path: Path) -> None:
    """Same size, first 4 KiB inverted, in place: only the stat times tell (the hard case)."""
    with open(path, "r+b") as f:
        head = f.read(4096)
        f.seek(0)
        f.write(bytes(255 - b for b in head))


def wait_for_fs_clock(directory: Path | str, paths: Sequence[Path | str]) -> None:
    """Waits until the filesystem's clock (a new file's mtime) is past every time of
    ``paths``, so that a build's racy-timestamp rule trusts all of them."""
    after = max((max(s.st_mtime_ns, s.st_ctime_ns) for s in map(os.stat, paths)), default=0)
    for _ in range(5000):
        with tempfile.TemporaryFile(dir=directory) as f:
            if os.fstat(f.fileno()).st_mtime_ns > after:
                return
        time.sleep(0.002)
    print(f"warning: the filesystem clock did not pass {after}", file=sys.stderr)


# --- servers -------------------------------------------------------------------------------


def prepare_parent() -> None:
    """Line-buffers stdout (progress shows when piped too) and makes SIGTERM unwind like
    Ctrl-C, so every ``finally`` that stops a server runs."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGINT, timeout: float = 10.0) -> None:
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
def server(
    script: str, args: Sequence[str], *, pin: bool = True, stderr: Any = None
) -> Iterator[int]:
    """Runs ``python script *args --fd N`` on a socket bound here to 127.0.0.1 on an unused
    port (no race for the port: the child inherits it); yields the port once the child
    printed ``ready``; always stops it. The child side is `serve_on_fd`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    proc: subprocess.Popen[bytes] | None = None
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        port: int = sock.getsockname()[1]
        command = [*(PIN_SERVER if pin else []), sys.executable, script, *args]
        command += ["--fd", str(sock.fileno())]
        proc = subprocess.Popen(
            command, pass_fds=(sock.fileno(),), stdout=subprocess.PIPE, stderr=stderr
        )
        sock.close()
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        if not ready or proc.stdout.readline() != b"ready\n":
            raise RuntimeError(f"{script} {args}: did not start (exit status {proc.poll()})")
        yield port
    finally:
        sock.close()
        if proc is not None:
            stop(proc)


def serve_on_fd(app: Any, fd: int) -> None:
    """The child side of `server`: one Tornado process serving ``app`` on the inherited
    socket ``fd`` until SIGINT/SIGTERM, or until its parent is gone (it never outlives the
    benchmark, even one killed with SIGKILL)."""
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
        orphaned = tornado.ioloop.PeriodicCallback(
            lambda: stopped.set() if os.getppid() != parent else None, 1000
        )
        orphaned.start()
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        await stopped.wait()
        http_server.stop()

    asyncio.run(serve())


def fetch(
    port: int, url: str, headers: Mapping[str, str] | None = None, *, host: str = "127.0.0.1",
    timeout: float = 10.0,
) -> tuple[str, bytes]:  # fmt: skip
    """One ``Connection: close`` GET on a raw socket; returns (head, body)."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    request = f"GET {url} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request.encode("latin-1"))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def header_fields(head: str) -> dict[str, str]:
    """Lower-cased header fields of a response head, the status line under "status"."""
    lines = head.split("\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    fields["status"] = lines[0]
    return fields


# --- load ----------------------------------------------------------------------------------


def find_wrk(parser: argparse.ArgumentParser, client: str) -> str | None:
    """wrk's path for ``--client auto|wrk``, None for ``python``; a usage error when wrk
    is asked for and not installed (Debian: ``apt-get install wrk``)."""
    wrk = shutil.which("wrk") if client in ("auto", "wrk") else None
    if client == "wrk" and wrk is None:
        parser.error("--client wrk: wrk is not installed")
    return wrk


def interleaved(
    measures: Mapping[K, Callable[[float], float]], *, rounds: int, seconds: float
) -> dict[K, list[float]]:
    """One warm-up of each (at most 1 s), then ``rounds`` rounds of each in turn: a burst
    of other load on the machine hits one round of every target, not every round of one."""
    for measure in measures.values():
        measure(min(seconds, 1.0))
    results: dict[K, list[float]] = {key: [] for key in measures}
    for _ in range(rounds):
        for key, measure in measures.items():
            results[key].append(measure(seconds))
    return results


def wrk_rate(
    wrk: str, port: int, url: str, *, connections: int, seconds: float,
    timeout: str | None = None, headers: Mapping[str, str] | None = None,
    pin: Sequence[str] = PIN_CLIENT,
) -> float:  # fmt: skip
    """Requests/s from ``wrk -t1`` on 127.0.0.1; raises on any non-2xx/3xx or socket error,
    so a wrong answer is never counted as speed."""
    command = [*pin, wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    command += ["--timeout", timeout] if timeout else []
    for key, value in (headers or {}).items():
        command += ["-H", f"{key}: {value}"]
    out = run([*command, f"http://127.0.0.1:{port}{url}"]).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if "Non-2xx" in out or "Socket errors" in out or found is None:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return float(found.group(1))


def get_request(url: str, headers: Mapping[str, str] | None = None) -> bytes:
    """A keep-alive GET."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return f"GET {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode("latin-1")


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """Reads one HTTP/1.1 response (Content-Length or chunked); returns (head, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lowered = head.lower()
    length = re.search(rb"\r\ncontent-length:\s*(\d+)", lowered)
    if length is not None:
        return head, await reader.readexactly(int(length.group(1)))
    body = b""
    if b"\r\ntransfer-encoding: chunked" in lowered:
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            body += (await reader.readexactly(size + 2))[:-2]
        await reader.readuntil(b"\r\n")
    return head, body


def python_rate(
    port: int, request: bytes, *, connections: int, seconds: float, cap: int,
    accept: tuple[bytes, ...] = (b"HTTP/1.1 200",),
) -> float:  # fmt: skip
    """Requests/s of ``connections`` asyncio keep-alive connections in this process, for
    ``seconds`` and at most ``cap`` requests in all: the fallback when wrk is missing. It
    measures the Python client as much as the server: compare ratios, not numbers."""

    async def one(deadline: float) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        done = 0
        try:
            while done < cap // connections and time.perf_counter() < deadline:
                writer.write(request)
                head, _ = await read_response(reader)
                if not head.startswith(accept):
                    raise RuntimeError(f"unexpected response: {head[:80]!r}")
                done += 1
        finally:
            writer.close()
        return done

    async def go() -> float:
        start = time.perf_counter()
        each = [one(start + seconds) for _ in range(connections)]
        counts = await asyncio.wait_for(asyncio.gather(*each), timeout=seconds + 30)
        return sum(counts) / (time.perf_counter() - start)

    return asyncio.run(go())


class Client:
    """wrk when given, else `python_rate`'s client; ``rate(port, url, headers, seconds)``."""

    def __init__(self, wrk: str | None, connections: int, duration: float) -> None:
        self.wrk, self.connections, self.duration = wrk, connections, duration
        self.name = f"wrk -t1 -c{connections}" if wrk else f"Python client, {connections} conn."

    def rate(self, port: int, url: str, headers: Mapping[str, str], seconds: float) -> float:
        if self.wrk:
            return wrk_rate(self.wrk, port, url, connections=self.connections, seconds=seconds,
                            timeout="5s", headers=headers)  # fmt: skip
        request, accept = get_request(url, headers), (b"HTTP/1.1 200", b"HTTP/1.1 304")
        return python_rate(port, request, connections=self.connections, seconds=seconds,
                           cap=500_000, accept=accept)  # fmt: skip
