"""Serving integrity under load: never ``immutable``, nor an ETag made of a digest, on
bytes that do not hash to that digest, while files are saved every few milliseconds.

    python benchmarks/integrity.py            # 10 s per mode
    python benchmarks/integrity.py --smoke    # 1 s per mode (CI)

Modes (one Tornado process each): ``root`` (production, manifest built before start),
``output`` (production output, recompiled by the writer after each save: a deploy into
a live output), ``debug`` (the watcher), ``debug-output`` (the watcher compiling). A
writer process saves a file every 1-5 ms (same size or not, in place or renamed over);
asyncio clients request every digest seen (the server's ``static_url``, the output's
manifest), both URL styles or none, random ``Accept-Encoding``, some ``Range``. Wrong:
``immutable`` without a digest in the URL or on a decoded body (``assetver.compress.
decompress``) hashing (XXH3) to another, a 206 unlike the digest's verified bytes; a 200
whose ETag is ``"<digest>[.<coding>]"`` on other bytes. Target (issue 9): zero wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import _harness as h
import xxhash

MODES = ("root", "output", "debug", "debug-output")
ETAG = re.compile(r'^(?:W/)?"([0-9a-f]{16})(?:\.[a-z0-9.]+)?"$')
CODINGS = ("", "gzip", "br", "br, gzip", "zstd", "gzip;q=0.5, br;q=0.9")
SIZES = (700, 3_000, 20_000, 60_000, 90_000, 300_000)
"""Some held in the handler's memory, some served from disk."""
SPEC = "br:5,gzip:6"


def main() -> int:
    p = h.parser(__doc__, rounds=1, root=False)
    p.add_argument("--seconds", type=float, help="seconds of load per mode (default 10)")
    p.add_argument("--clients", type=int, default=6, help="concurrent connections")
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated subset")
    p.add_argument("--server", help=argparse.SUPPRESS)
    p.add_argument("--writer", help=argparse.SUPPRESS)
    p.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.server or args.writer:
        mode, tmp = (args.server or args.writer).split(":", 1)
        if args.server:
            return _serve(mode, Path(tmp), args.fd)
        return _write(mode, Path(tmp), args.seconds)
    h.prepare_parent()
    v = h.Verdicts(args.smoke)
    seconds = args.seconds or (1.0 if args.smoke else 10.0)
    print(f"integrity: {seconds:g} s per mode, {args.clients} clients, {os.cpu_count()} CPUs")
    print(f"  {'mode':<13} {'responses':>9} {'immutable':>9} {'digest ETag':>11} {'wrong':>6}")
    for mode in args.modes.split(","):
        with tempfile.TemporaryDirectory(prefix=f"assetver-integrity-{mode}-", dir=args.tmp) as tmp:
            run = Run(mode, Path(tmp))
            run.go(seconds, args.clients)
        c = run.counts
        check = v.check(f"{mode}: wrong responses", c["wrong"], 0, at_least=False)
        print(
            f"  {mode:<13} {c['responses']:>9} {c['immutable']:>9} {c['etag']:>11} {c['wrong']:>6}"
        )
        statuses = ", ".join(f"{k} x{n}" for k, n in sorted(c.items()) if k.isdigit())
        print(
            f"  {'':<13} {check}; {statuses}; {c['saves']} saves, {c['compiles']} compiles; "
            f"{c['cut']} cut short; server log: {c['log']} lines, {c['tracebacks']} tracebacks"
        )
        for example in run.examples[:5]:
            print(f"      {'' if example.startswith('server') else 'WRONG: '}{example}")
    return v.exit_code(args.strict)


class Run:
    """One mode: the tree, the server, the writer, the clients and what they saw."""

    def __init__(self, mode: str, tmp: Path) -> None:
        from assetver.build import build
        from assetver.output import CompileOptions, compile_output

        self.mode, self.tmp, self.counts, self.examples = mode, tmp, Counter[str](), []
        rng, files = random.Random(3), []
        for i, size in enumerate(SIZES * 2):
            kind = ("css", "js")[i % 2]
            (tmp / "static" / kind).mkdir(parents=True, exist_ok=True)
            (tmp / "static" / kind / f"file{i}.{kind}").write_text(h.text(rng, kind, size))
            files.append(f"{kind}/file{i}.{kind}")
        (tmp / "files.txt").write_text("\n".join(files))
        if mode == "root":
            build(tmp / "static").manifest.dump(str(tmp / "manifest.json"))
        elif mode == "output":
            compile_output(tmp / "static", tmp / "out", settings=CompileOptions.make(compress=SPEC))
        self.seen: dict[str, list[str]] = {path: [] for path in files}
        self.verified: dict[str, bytes] = {}

    def go(self, seconds: float, clients: int) -> None:
        me = f"{self.mode}:{self.tmp}"
        with (
            open(self.tmp / "server.log", "w") as log,
            h.server(__file__, ["--server", me], pin=False, stderr=log) as port,
        ):
            command = [sys.executable, __file__, "--writer", me, "--seconds", str(seconds)]
            writer = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            try:
                asyncio.run(self.load(port, time.monotonic() + seconds, clients))
            finally:
                self.counts.update(json.loads(writer.communicate(timeout=seconds + 60)[0]))
        log = (self.tmp / "server.log").read_text()
        self.counts.update(log=log.count("\n"), tracebacks=log.count("Traceback"))
        raised = re.findall(r"^\w[\w.]*(?:Error|Exception)\b.*$", log, re.MULTILINE)
        self.examples += [f"server raised {line}" for line in sorted(set(raised))]
        lines = Counter(re.sub(r"\d+|/tmp/\S+", "#", ln)[:90] for ln in log.splitlines())
        self.examples += [f"server logged x{n}: {ln}" for ln, n in lines.most_common(2) if n > 9]

    async def load(self, port: int, deadline: float, clients: int) -> None:
        rngs = [random.Random(i) for i in range(clients)]
        await asyncio.gather(
            self.poll(port, deadline), *(self.client(port, deadline, r) for r in rngs)
        )

    def learn(self, digests: dict[str, str]) -> None:
        for path, digest in digests.items():
            if digest not in self.seen.setdefault(path, []):
                self.seen[path].append(digest)

    async def poll(self, port: int, deadline: float) -> None:
        from assetver.manifest import Manifest

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        on_disk = self.tmp / "out/.assetver/manifest.json"
        while time.monotonic() < deadline:
            writer.write(h.get_request("/urls"))
            urls = json.loads((await h.read_response(reader))[1])
            found = {p: re.search(r"\?v=([0-9a-f]{16})$", u) for p, u in urls.items()}
            self.learn({p: m.group(1) for p, m in found.items() if m})
            if self.mode.endswith("output") and on_disk.exists():
                with contextlib.suppress(OSError, ValueError):  # being replaced: next time
                    self.learn({p: e.digest for p, e in Manifest.load(str(on_disk)).items()})
            await asyncio.sleep(0.05)
        writer.close()

    async def client(self, port: int, deadline: float, rng: random.Random) -> None:
        from assetver.urls import hashed_path

        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.monotonic() < deadline:
            path = rng.choice(list(self.seen))
            digests = self.seen[path][-4:]
            digest = rng.choice(digests) if digests and rng.random() < 0.9 else None
            url = f"/static/{path}" + (f"?v={digest}" if digest else "")
            if digest and rng.random() < 0.5:
                url = f"/static/{hashed_path(path, digest)}"
            headers = {"Accept-Encoding": rng.choice(CODINGS)}
            headers = {"Range": "bytes=10-99"} if rng.random() < 0.1 else headers
            writer.write(h.get_request(url, headers))
            try:
                head, body = await h.read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                self.counts["cut"] += 1  # the server closed mid-response: nothing to cache
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                continue
            problems = self.judge(digest, h.header_fields(head.decode("latin-1")), body)
            if problems:
                self.counts["wrong"] += 1
                self.examples.append(f"{url} {headers}: {'; '.join(problems)}")
        writer.close()

    def judge(self, digest: str | None, fields: dict[str, str], body: bytes) -> list[str]:
        from assetver.compress import decompress

        status, coding = fields["status"].split()[1], fields.get("content-encoding", "identity")
        self.counts.update(["responses", status])
        try:
            data = body if coding == "identity" else decompress(body, coding)
        except ValueError as e:
            data = f"<undecodable {coding}: {e}>".encode()
        actual, problems = xxhash.xxh3_64_hexdigest(data), []
        cache = fields.get("cache-control", "")
        if "immutable" in cache:
            self.counts["immutable"] += 1
            if digest is None:
                problems.append(f"{status} {cache} without a digest in the URL")
            elif status == "200" and actual != digest:
                problems.append(f"200 {cache}, but the body hashes to {actual}")
            elif status == "200":
                self.verified[digest] = data
            elif status == "206" and self.verified.get(digest, b"?" * 10 + data)[10:100] != data:
                problems.append(f"206 {cache} with other bytes than the digest's")
        etag = ETAG.match(fields.get("etag", ""))
        if etag and status == "200":
            self.counts["etag"] += 1
            if etag.group(1) != actual:
                problems.append(f"200 ETag {fields['etag']}, but the body hashes to {actual}")
        return problems


def _write(mode: str, tmp: Path, seconds: float) -> int:
    """The writer process: saves files until the time is up; prints its counts as JSON."""
    from assetver.output import CompileOptions, compile_output

    rng, settings = random.Random(5), CompileOptions.make(compress=SPEC)
    files = sorted(p for p in (tmp / "static").rglob("*") if p.is_file())
    base = {p: p.stat().st_size for p in files}
    counts, deadline = Counter[str](), time.monotonic() + seconds
    while time.monotonic() < deadline:
        path = rng.choice(files)
        size = (
            path.stat().st_size if rng.random() < 0.5 else int(base[path] * rng.uniform(0.5, 1.5))
        )
        data = h.text(rng, path.suffix[1:], size).encode()
        if rng.random() < 0.5:
            with open(path, "r+b") as f:
                f.write(data)
                f.truncate()
        else:
            path.with_name(f".{path.name}.tmp").write_bytes(data)
            os.replace(path.with_name(f".{path.name}.tmp"), path)
        counts["saves"] += 1
        if mode == "output":
            compile_output(tmp / "static", tmp / "out", settings=settings)
            counts["compiles"] += 1
        time.sleep(rng.uniform(0.001, 0.005))
    print(json.dumps(counts))
    return 0


def _serve(mode: str, tmp: Path, fd: int) -> int:
    import tornado.web

    import assetver.tornado

    files = (tmp / "files.txt").read_text().split("\n")

    class Urls(tornado.web.RequestHandler):
        def get(self) -> None:
            self.write({path: self.static_url(path) for path in files})

    extra = {
        "root": {"assetver_manifest": str(tmp / "manifest.json")},
        "output": {"assetver_output": str(tmp / "out")},
        "debug": {"static_hash_cache": False},
        "debug-output": {"static_hash_cache": False, "assetver_output": str(tmp / "out")},
    }[mode]
    settings = assetver.tornado.settings(static_path=str(tmp / "static"), **extra)
    h.serve_on_fd(tornado.web.Application([("/urls", Urls)], **settings), fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
