"""Precompression, whole processes, same tree: ``assetver build SRC -o DIR --compress
br:11,gzip:9`` against ``python -m whitenoise.compress`` (brotli 11, gzip 9), with the
floor and ratios; then a no-change rebuild and one changed stylesheet against its rerun.

    python benchmarks/compress.py           # a copy of the corpus; WhiteNoise in a bench venv
    python benchmarks/compress.py --smoke   # small generated tree; WhiteNoise if installed

WhiteNoise and brotli are pip-installed into ``$ASSETVER_BENCH_VENV`` (/tmp/bench-venv);
it compresses a fresh copy in place, then again (its rerun recompresses everything). The
floor: CPU time of ``assetver.compress.compress`` (br 11 + gzip 9) on every file the
build compresses, in one thread, divided by the CPUs this process may use. Issue 12's
targets: first build no slower than WhiteNoise; no-change >= 100x, one stylesheet >= 20x.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from itertools import count
from pathlib import Path
from typing import Any

import _harness as h

from assetver import compress
from assetver.output import CompileOptions, compile_output

SPEC = "br:11,gzip:9"


def main() -> int:
    args = h.parser(__doc__, rounds=3).parse_args()
    h.prepare_parent()
    v = h.Verdicts(args.smoke)
    peer = h.peer_python(["whitenoise>=6", "brotli"], ["whitenoise", "brotli"], smoke=args.smoke)
    work = Path(tempfile.mkdtemp(prefix="assetver-compress-", dir=args.tmp))
    try:
        corpus = None if args.smoke else h.corpus(args.root)
        if corpus is not None:
            h.copy_tree(corpus, work / "src")
        else:
            h.generate(work / "src", 60 if args.smoke else 2000, text_files=True)
            h.site(work / "src/site", pages=2 if args.smoke else 8)
        _run(work, work / "src", peer, args.rounds or (1 if args.smoke else 3), v, corpus)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return v.exit_code(args.strict)


def _run(work: Path, src: Path, peer: str | None, rounds: int, v: h.Verdicts, corpus: Any) -> None:
    cpus, files = len(os.sched_getaffinity(0)), [f for f in src.rglob("*") if f.is_file()]
    sheets = sorted((f for f in files if f.suffix == ".css"), key=lambda f: f.stat().st_size)
    sheets = list(dict.fromkeys([sheets[len(sheets) // 2], sheets[-1]]))
    print(
        f"assetver compress benchmark: {corpus or 'generated tree'}, {len(files)} files, "
        f"{sum(f.stat().st_size for f in files) / h.MIB:.1f} MiB; {cpus} CPUs, load "
        f"{os.getloadavg()[0]:.2f}; {compress.library_version('br')}, "
        f"{compress.library_version('gzip')}; best of {rounds} interleaved rounds"
    )
    out, tick, settings = work / "out", count(), CompileOptions.make(compress=SPEC)
    h.cli("build", str(src), "-o", str(out), "--compress", SPEC, "-q")

    def changed(sheet: Path) -> None:
        with open(sheet, "a") as f:
            f.write(f"\n.bench-edit-{next(tick)} {{ color: #123456 }}\n")
        h.cli("build", str(src), "-o", str(out), "--compress", SPEC, "-q")

    def before() -> None:
        for old in [*work.glob("first-*"), work / "wn"]:
            shutil.rmtree(old, ignore_errors=True)
        if peer is not None:
            h.copy_tree(src, work / "wn")
        os.sync()

    measures = {
        "assetver first build": lambda: h.cli(
            "build", str(src), "-o", str(work / f"first-{next(tick)}"), "--compress", SPEC, "-q"
        ),
        "floor: codecs, 1 thread, CPU time": lambda: _codecs(src),
        "assetver no-change rebuild": lambda: h.cli(
            "build", str(src), "-o", str(out), "--compress", SPEC, "-q"
        ),
        "compile_output no-change, in process": lambda: compile_output(src, out, settings=settings),
        **{
            f"assetver, {s.name} ({s.stat().st_size // 1024} KiB) changed": lambda s=s: changed(s)
            for s in sheets
        },
    }
    if peer is not None:
        command = [peer, "-m", "whitenoise.compress", "-q", str(work / "wn")]
        measures["WhiteNoise first run"] = measures["WhiteNoise rerun"] = lambda: h.run(command)
    times = list(h.rounds_of(measures, rounds, before).values())
    before()
    for name, seconds in zip(measures, times, strict=False):
        print(f"  {name:<46} {h.ms(seconds):>10}")
    first, floor = times[0], times[1] / cpus
    print(
        f"  floor = codecs / {cpus} CPUs = {h.ms(floor)}; first build / floor {first / floor:.2f}x"
    )
    if peer is None:
        return
    wn_first, rerun = times[-2], times[-1]
    print(
        f"  first build: WhiteNoise / ours {wn_first / first:6.2f}x   "
        + v.check("first build vs WhiteNoise", wn_first / first, 1.0)
    )
    print(
        f"  no-change: WhiteNoise rerun / ours {rerun / times[2]:7.1f}x   "
        + v.check("no-change vs WhiteNoise", rerun / times[2], 100.0)
        + f"   (in process: {rerun / times[3]:,.0f}x)"
    )
    for sheet, seconds in zip(sheets, times[4 : 4 + len(sheets)], strict=True):
        check = v.check(f"{sheet.name} changed vs WhiteNoise", rerun / seconds, 20.0)
        print(f"  {sheet.name} changed: WhiteNoise rerun / ours {rerun / seconds:6.1f}x   {check}")


def _codecs(src: Path) -> float:
    """CPU seconds of the codecs alone on every file the build compresses, in one thread."""
    spent = 0.0
    for path in src.rglob("*"):
        logical = path.relative_to(src).as_posix()
        if path.is_file() and compress.should_compress(logical, path.stat().st_size):
            data = path.read_bytes()
            start = time.thread_time()
            compress.compress(data, "br", 11)
            compress.compress(data, "gzip", 9)
            spent += time.thread_time() - start
    return spent


if __name__ == "__main__":
    sys.exit(main())
