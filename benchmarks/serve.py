"""Requests/s of assetver's Tornado handler (root mode and output mode) against stock
``StaticFileHandler``, same files, same run, with ratios.

    python benchmarks/serve.py            # wrk when installed, 5 s per measurement, best of 3
    python benchmarks/serve.py --smoke    # seconds, Python client (CI); targets not judged

Root mode serves with a manifest from ``assetver.build``; output mode what
``compile_output`` wrote (br 11, gzip 9 variants). One Tornado process per server on
127.0.0.1; load from wrk (``-t1 -c16``, Debian package ``wrk``) or a bounded asyncio
client here (compare ratios, not numbers); interleaved rounds, best kept. Targets: a
700-byte file at its current ``static_url`` >= 1.7x stock; 304s >= 1.47x; a 200 KiB
stylesheet's brotli variant >= 8x stock's ``compress_response=True`` (issues 9, 12).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import _harness as h

SMALL, LARGE = "css/small.css", "css/app.css"
BR = {"Accept-Encoding": "br, gzip"}


def main() -> int:
    p = h.parser(__doc__, rounds=3, root=False)
    p.add_argument("--duration", type=float, help="seconds per measurement (default 5)")
    p.add_argument("--connections", type=int, default=16, help="wrk connections")
    p.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--server", help=argparse.SUPPRESS)
    p.add_argument("--fd", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.server:
        kind, tmp = args.server.split(":", 1)
        h.serve_on_fd(_apps(Path(tmp))[kind](), args.fd)
        return 0
    h.prepare_parent()
    v = h.Verdicts(args.smoke)
    wrk = None if args.smoke and args.client != "wrk" else h.find_wrk(p, args.client)
    duration = args.duration or (0.3 if args.smoke else 5.0)
    rounds = args.rounds or (1 if args.smoke else 3)
    client = h.Client(wrk, args.connections if wrk else 4, duration)
    pinned = h.PINNED if h.PIN_SERVER else ""
    print(f"{client.name}{pinned}; {duration:g} s x {rounds} interleaved rounds, best kept")
    with tempfile.TemporaryDirectory(prefix="assetver-serve-", dir=args.tmp) as tmp:
        _make_tree(Path(tmp))
        with contextlib.ExitStack() as stack:
            ports = {
                kind: stack.enter_context(h.server(__file__, ["--server", f"{kind}:{tmp}"]))
                for kind in ("stock", "stock-gzip", "root", "output", "hello")
            }
            urls = {
                (k, f): h.fetch(ports[k], f"/url/{f}")[1].decode()
                for k in ports
                for f in (SMALL, LARGE)
            }
            _scenarios(client, ports, urls, rounds, v)
    return v.exit_code(args.strict)


def _make_tree(tmp: Path) -> None:
    from assetver.build import build
    from assetver.output import CompileOptions, compile_output

    (tmp / "static/css").mkdir(parents=True)
    (tmp / "static" / SMALL).write_text(h.text(random.Random(1), "css", 700))
    (tmp / "static" / LARGE).write_text(h.text(random.Random(2), "css", 200 * 1024))
    build(tmp / "static").manifest.dump(str(tmp / "manifest.json"))
    out = compile_output(
        tmp / "static", tmp / "out", settings=CompileOptions.make(compress="br,gzip")
    )
    print(f"{SMALL} 700 B, {LARGE} 204,800 B, its variants {dict(out.manifest[LARGE].variants)}")


def _apps(tmp: Path) -> dict[str, Any]:
    import tornado.web

    import assetver.tornado

    class Hello(tornado.web.RequestHandler):
        def get(self, path: str = "") -> None:
            self.write(self.static_url(path) if path else "Hello")

    routes, static = [("/hello", Hello), ("/url/(.*)", Hello)], str(tmp / "static")

    def ours(**extra: Any) -> Any:
        return tornado.web.Application(
            routes, **assetver.tornado.settings(static_path=static, **extra)
        )

    return {
        "stock": lambda: tornado.web.Application(routes, static_path=static),
        "stock-gzip": lambda: tornado.web.Application(
            routes, static_path=static, compress_response=True
        ),
        "root": lambda: ours(assetver_manifest=str(tmp / "manifest.json")),
        "output": lambda: ours(assetver_output=str(tmp / "out")),
        "hello": lambda: tornado.web.Application(routes, static_path=static),
    }


def _check(
    port: int, url: str, headers: dict[str, str], status: int, **want: str
) -> dict[str, str]:
    """One request; raises unless the answer is what the scenario measures."""
    fields = h.header_fields(h.fetch(port, url, headers)[0])
    wrong = {k: fields.get(k.replace("_", "-"), "") for k in want}
    wrong = {k: got for k, got in wrong.items() if want[k] not in got}
    if not fields["status"].startswith(f"HTTP/1.1 {status} ") or wrong:
        raise RuntimeError(f"GET {url}: {fields['status']}, {wrong}; expected {status} {want}")
    return fields


def _scenarios(
    client: h.Client, ports: dict[str, int], urls: dict, rounds: int, v: h.Verdicts
) -> None:
    etags = {"stock": _check(ports["stock"], urls["stock", SMALL], {}, 200)["etag"]}
    for kind in ("root", "output"):
        fields = _check(ports[kind], urls[kind, SMALL], {}, 200, cache_control="immutable")
        etags[kind] = fields["etag"]
        _check(ports[kind], urls[kind, SMALL], {"If-None-Match": etags[kind]}, 304)
    _check(ports["stock-gzip"], urls["stock-gzip", LARGE], BR, 200, content_encoding="gzip")
    _check(ports["output"], urls["output", LARGE], BR, 200, content_encoding="br")

    def measure(name: str, title: str, targets: dict[str, Any], goal: float) -> None:
        base = next(iter(targets))
        runs = h.interleaved(
            {kind: partial(client.rate, ports[kind], *target) for kind, target in targets.items()},
            rounds=rounds,
            seconds=client.duration,
        )
        print(f"\n{title}")
        for kind, rates in runs.items():
            ratio, line = max(rates) / max(runs[base]), f"  {kind:<11} {max(rates):>10,.0f} req/s"
            if kind in ("root", "output"):
                check = v.check(f"{name} ({kind})", ratio, goal)
                line += f"   {kind}/{base} {ratio:5.2f}x   {check}"
            print(line)

    small = {kind: (urls[kind, SMALL], {}) for kind in ("stock", "root", "output")}
    title = f"1. {SMALL} at its versioned URL: 200"
    measure("small file", title, {**small, "hello": ("/hello", {})}, 1.7)
    inm = {kind: (url, {"If-None-Match": etags[kind]}) for kind, (url, _) in small.items()}
    measure("304", f"2. {SMALL}, If-None-Match: 304", inm, 1.47)
    large = {kind: (urls[kind, LARGE], BR) for kind in ("stock-gzip", "output")}
    title = f"3. {LARGE}, Accept-Encoding: br, gzip: the output's br variant vs on-the-fly gzip"
    measure("brotli variant", title, large, 8.0)


if __name__ == "__main__":
    sys.exit(main())
