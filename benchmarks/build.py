"""Build times of assetver against stock Tornado's versioning and the stat floor, in one
run, with ratios; `assetver build`'s process start-up; the peak memory of hashing 1 GiB.

    python benchmarks/build.py              # 100,000 synthetic files, then the corpus
    python benchmarks/build.py --smoke      # a few seconds (CI); targets not judged

Per tree, best of interleaved rounds, page cache warm, each round once the clock passed
every file's times: Tornado's ``get_version`` of every file after ``reset()`` (SHA-512:
what ``static_url`` costs a Tornado app); cold ``build_cached`` on a new cache file;
again, nothing changed; again, 1% of the files rewritten in place, same size; floors:
``os.stat`` of every file from a list (the target's), and open+read+close of each.
Start-up: ``python -m assetver --version`` and ``-X importtime``; a whole-process cold
``assetver build`` of 30,000 files against the same build in process. Targets (issue 10,
no regression): cold >= 5.6x Tornado and no-change <= 1.6x the floor on 100k files.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import _harness as h
import tornado
import tornado.web

from assetver.build import build, build_cached, default_jobs

TARGET_COLD, TARGET_NOCHANGE, TARGET_RSS_MIB = 5.6, 1.6, 64.0
CHILD = """
import re, sys, time, assetver.hashing
t = time.perf_counter()
digest = assetver.hashing.digest_file(sys.argv[1]) if len(sys.argv) > 1 else "-"
seconds = time.perf_counter() - t
hwm = re.search(r"VmHWM:\\s*(\\d+)", open("/proc/self/status").read()).group(1)
print(hwm, seconds, digest)
"""
"""Prints the peak RSS in KiB (VmHWM: ru_maxrss would count the forking parent's pages)."""


def main() -> int:
    p = h.parser(__doc__, rounds=5)
    p.add_argument("--files", type=int, help="synthetic tree size (default 100,000)")
    p.add_argument("--startup-files", type=int, help="start-up tree size (default 30,000)")
    p.add_argument("--big-mib", type=int, help="size of the big file (default 1024)")
    args = p.parse_args()
    h.prepare_parent()
    v = h.Verdicts(args.smoke)
    rounds = args.rounds or (2 if args.smoke else 5)
    work = Path(tempfile.mkdtemp(prefix="assetver-build-", dir=args.tmp))
    print(
        f"assetver build benchmark: Python {sys.version.split()[0]}, tornado {tornado.version}, "
        f"{os.cpu_count()} CPUs, default jobs {default_jobs()}, load {os.getloadavg()[0]:.2f}"
    )
    try:
        h.generate(work / "synthetic", args.files or (300 if args.smoke else 100_000))
        _tree("synthetic", work / "synthetic", work, rounds, v)
        shutil.rmtree(work / "synthetic")
        corpus = h.corpus(args.root)
        if corpus is None:
            print("\n(no ../shared/corpus and no --root: no real tree)")
        else:
            _tree(f"copy of {corpus}", h.copy_tree(corpus, work / "corpus"), work, rounds, None)
        _startup(work, args.startup_files or (300 if args.smoke else 30_000), rounds)
        big = args.big_mib if args.big_mib is not None else (8 if args.smoke else 1024)
        if big:
            _rss(work / "big.bin", big, v)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return v.exit_code(args.strict)


def _tree(label: str, root: Path, work: Path, rounds: int, v: h.Verdicts | None) -> None:
    os.sync()  # no writeback of the fresh tree during the rounds
    logical = list(build(root).manifest)
    paths = [str(root / p) for p in logical]
    sizes = sorted(os.stat(p).st_size for p in paths)
    for path in paths:  # warm the page cache for every tool alike
        Path(path).read_bytes()
    print(
        f"\n{label}: {len(paths):,} files, {sum(sizes) / h.MIB:,.1f} MiB, median "
        f"{sizes[len(sizes) // 2]:,} B, max {sizes[-1]:,} B; best of {rounds} rounds"
    )
    nonempty = [p for p in paths if os.path.getsize(p)]
    changed = random.Random(1).sample(nonempty, max(1, len(paths) // 100))
    settings, handler = {"static_path": str(root)}, tornado.web.StaticFileHandler
    checks: list[str] = []
    caches = iter(str(work / f"cache-{i}") for i in range(1 << 30))
    state: dict[str, str] = {}

    def tornado_all() -> None:
        handler.reset()
        for p in logical:
            handler.get_version(settings, p)

    def assetver(jobs: int | None = None, expect: int = len(paths), new: bool = True) -> None:
        state["cache"] = next(caches) if new else state["cache"]
        got = build_cached(root, state["cache"], jobs=jobs).digested
        if got != expect:
            checks.append(f"a build hashed {got} files, expected {expect}")

    def some() -> None:
        for path in changed:
            h.rewrite(Path(path))
        assetver(expect=len(changed), new=False)

    measures = {
        "Tornado get_version, every file": tornado_all,
        "assetver cold build, jobs 1": lambda: assetver(1),
        f"assetver cold build, jobs {default_jobs()} (default)": assetver,
        "assetver rebuild, nothing changed": lambda: assetver(expect=0, new=False),
        f"assetver rebuild, 1% changed ({len(changed)} files)": some,
        "floor: os.stat, precomputed list": lambda: [os.stat(p) for p in paths],
        "open + read + close, 1 thread": lambda: [_read(p) for p in paths],
    }
    t = list(h.rounds_of(measures, rounds, lambda: h.wait_for_fs_clock(work, paths)).values())
    handler.reset()
    cold, nochange = t[0] / t[2], t[3] / t[5]
    notes = [
        "1.00x (baseline)",
        f"{t[0] / t[1]:.2f}x faster than Tornado",
        f"{cold:.2f}x faster than Tornado",
        f"{nochange:.2f}x the stat floor",
        f"{t[4] / t[5]:.2f}x the floor, {t[0] / t[4]:.1f}x faster than Tornado",
        "1.00x (the floor)",
        f"Tornado takes {t[0] / t[6]:.2f}x this",
    ]
    if v is not None:
        notes[2] += "   " + v.check("cold vs Tornado", cold, TARGET_COLD)
        notes[3] += "   " + v.check("no-change vs floor", nochange, TARGET_NOCHANGE, at_least=False)
    for name, seconds, note in zip(measures, t, notes, strict=True):
        print(f"  {name:<42} {h.ms(seconds):>10} {seconds / len(paths) * 1e6:7.2f} us/file  {note}")
    if build(root).manifest != build_cached(root, state["cache"]).manifest:
        checks.append("the incremental manifest differs from a fresh build's")
    for problem in sorted(set(checks)):
        print(f"  CHECK FAILED: {problem}")


def _read(path: str) -> None:
    with open(path, "rb", buffering=0) as f:
        f.readall()


def _startup(work: Path, n: int, rounds: int) -> None:
    root = work / "startup"
    h.generate(root, n, seed=3, text_files=True)
    print(f"\nstart-up, best of {rounds} rounds:")
    names = iter(str(work / f"m{i}.json") for i in range(1 << 30))

    def in_process() -> None:
        manifest = next(names)
        build_cached(root, manifest + ".cache").manifest.dump(manifest)

    bare, version, whole, inside = h.rounds_of(
        {
            "python -c pass": lambda: h.run([sys.executable, "-c", "pass"]),
            "python -m assetver --version": lambda: h.cli("--version"),
            "whole process cold build": lambda: h.cli("build", str(root), "-m", next(names), "-q"),
            "the same build in this process": in_process,
        },
        rounds,
    ).values()
    print(
        f"  python -c pass {h.ms(bare)}; python -m assetver --version {h.ms(version)}: "
        f"{h.ms(version - bare)} for assetver's imports and CLI"
    )
    print(
        f"  cold `assetver build` of {n:,} files: whole process {h.ms(whole)}, in this process "
        f"{h.ms(inside)}: start-up is {h.ms(whole - inside)} ({(whole - inside) / whole:.0%})"
    )
    out = h.run([sys.executable, "-X", "importtime", "-m", "assetver", "--version"]).stderr
    rows = [line.split("|") for line in out.splitlines()[1:] if line.count("|") == 2]
    mods = [(int(s.split(":")[1]), int(c), name.rstrip()[1:]) for s, c, name in rows]
    total = sum(c for _, c, name in mods if not name.startswith(" "))  # top level only
    ours = next((c for _, c, name in mods if name.strip() == "assetver"), 0)
    editable = sum(c for _, c, name in mods if "__editable__" in name)
    print(
        f"  -X importtime: {total / 1000:.1f} ms of imports in all (interpreter's included), "
        f"'import assetver' {ours / 1000:.1f} ms, an editable install's finder "
        f"{editable / 1000:.1f} ms; heaviest by self time:"
    )
    for own, cum, name in sorted(mods, reverse=True)[:6]:
        print(f"    {name.strip():<28} self {own / 1000:5.2f} ms, cumulative {cum / 1000:5.2f} ms")


def _rss(path: Path, mib: int, v: h.Verdicts) -> None:
    block = bytearray(random.Random(5).randbytes(h.MIB))
    with open(path, "wb") as f:
        for i in range(mib):
            block[:8] = i.to_bytes(8, "little")  # every MiB distinct, nothing sparse
            f.write(block)

    def child(*argv: str) -> list[str]:
        command = [sys.executable, "-c", CHILD, *argv]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()

    base = min(int(child()[0]) for _ in range(2))
    runs = [child(str(path)) for _ in range(2)]
    rise = (max(int(r[0]) for r in runs) - base) / 1024
    speed = mib / 1024 / min(float(r[1]) for r in runs)
    print(
        f"\npeak RSS hashing one {mib:,} MiB file: +{rise:.1f} MiB over {base / 1024:.1f} MiB "
        f"(imports only), {speed:.2f} GiB/s   "
        + v.check("RSS MiB", rise, TARGET_RSS_MIB, at_least=False)
    )
    path.unlink()


if __name__ == "__main__":
    sys.exit(main())
