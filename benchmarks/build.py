"""Build times of assetver against stock Tornado's versioning, with the stat floor and the
peak memory of hashing one big file, in one run, with ratios against the targets.

    python benchmarks/build.py                          # 100,000 synthetic files, 1 GiB file
    python benchmarks/build.py --root ../shared/corpus  # a real tree (copied to a temp dir)
    python benchmarks/build.py --smoke                  # a few seconds (CI); targets not enforced
    python benchmarks/build.py --profile                # also cProfile a cold build and a rebuild

Measured on the same files in the same process:

- tornado: ``StaticFileHandler.get_version(settings, path)`` for every file, the class
  cache reset first, which is what ``static_url()`` costs a Tornado app today (SHA-512).
- cold: ``assetver.build.build(root, cache_path=<new path>)`` in one process (``--jobs
  1``) and with the default number of processes (one per CPU); the cache is written.
- no-change: the same call again on the cold build's cache, nothing changed.
- 1% changed: the same call after rewriting 1% of the files (same size, new bytes).
- manifest JSON: ``manifest.to_json()`` of the cold build's manifest, which sorts it on
  this first iteration (look-ups, all a Tornado app does with it, never sort).
- floor: ``os.stat`` of every file from a precomputed list, and an ``os.scandir`` walk
  that stats every file; the list is the floor the target is measured against.
- read floor: ``os.open``, ``os.read``, ``os.close`` of every file from the list in one
  thread, no hashing: what a cold build cannot avoid (it also has to find and stat them).
- RSS: peak resident memory of a subprocess hashing one big file, minus that of a
  subprocess that imports assetver and hashes nothing.

Every timing is the best of ``--repeats`` rounds; the rounds interleave the tools, so
a burst of load from something else on the machine hits one round of every tool
rather than every round of one. Every file is read once before the first round, so
every tool sees a warm page cache. Before each round the script waits until the
filesystem clock has passed the newest ctime in the tree, so the cold build's cache is
fully reusable under its racy-timestamp rule, as for a second build a while later.
The tree (and, with ``--root``, a copy of the given directory: the 1% step rewrites
files) lives in a temporary directory removed at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import math
import os
import platform
import pstats
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

import tornado
import tornado.web

import assetver
from assetver.build import BuildResult, build, default_jobs
from assetver.scan import scan

TARGET_COLD_SPEEDUP = 5.0
TARGET_NOCHANGE_FLOOR = 2.0
TARGET_RSS_MIB = 64.0

MIN_SIZE = 100
MAX_SIZE = 64 * 1024
EXTENSIONS = ("js", "css", "png", "svg", "woff2", "map", "json", "html", "txt", "jpg")
MIB = 1 << 20

_CHILD = """
import os, sys, time, resource
import assetver, assetver.hashing
def hwm_kib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak
seconds, digest = 0.0, "-"
if len(sys.argv) > 1:
    t = time.perf_counter()
    digest = assetver.hashing.digest_file(sys.argv[1])
    seconds = time.perf_counter() - t
print(hwm_kib(), seconds, digest)
"""


@dataclass
class Timing:
    """Best-of-N wall time of one measurement."""

    label: str
    runs: list[float]

    @property
    def best(self) -> float:
        return min(self.runs)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", help="benchmark a copy of this directory instead")
    parser.add_argument("--files", type=int, help="synthetic tree size (default 100,000)")
    parser.add_argument("--big-mib", type=int, help="size of the big file (default 1024)")
    parser.add_argument(
        "--repeats", type=int, help="rounds per timing, best kept (default 5; 9 under 5,000 files)"
    )
    parser.add_argument("--seed", type=int, default=2024, help="seed of the synthetic tree")
    parser.add_argument("--tmp", help="where to make the temporary directory")
    parser.add_argument("--smoke", action="store_true", help="tiny, fast run for CI")
    parser.add_argument("--profile", action="store_true", help="cProfile a cold build, a rebuild")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if args.root is not None and not os.path.isdir(args.root):
        parser.error(f"--root {args.root}: not a directory")
    n_files = args.files or (300 if args.smoke else 100_000)
    big_mib = args.big_mib if args.big_mib is not None else (8 if args.smoke else 1024)
    work = tempfile.mkdtemp(prefix="assetver-bench-", dir=args.tmp)
    try:
        return _run(args, work, n_files, big_mib)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(args: argparse.Namespace, work: str, n_files: int, big_mib: int) -> int:
    root = os.path.join(work, "root")
    state = os.path.join(work, "state")
    os.makedirs(state)
    started = time.perf_counter()
    if args.root is not None:
        shutil.copytree(args.root, root, symlinks=True, ignore=_special_files)
        source = f"copy of {args.root}"
    else:
        _generate(root, n_files, args.seed)
        source = f"synthetic, seed {args.seed}"
    os.sync()  # no writeback of the fresh tree during the rounds
    found = scan(root).files
    logical = [f[0] for f in found]
    paths = [f[1] for f in found]
    if not paths:
        print(f"no files under {args.root}: nothing to measure")
        return 0
    sizes = sorted(os.stat(p).st_size for p in paths)
    total_bytes = sum(sizes)
    for p in paths:  # warm the page cache for every tool alike
        with open(p, "rb") as fh:
            while fh.read(MIB):
                pass
    repeats = args.repeats or (5 if len(paths) >= 5000 else 9)
    jobs = default_jobs()
    rng = random.Random(args.seed + 1)
    nonempty = [p for p in paths if os.stat(p).st_size]
    changed = rng.sample(nonempty, min(len(nonempty), max(1, round(len(paths) / 100))))
    pool = random.Random(args.seed + 2).randbytes(2 * MIB)

    _header(source, root, paths, sizes, total_bytes, repeats, jobs, time.perf_counter() - started)

    handler = tornado.web.StaticFileHandler
    settings = {"static_path": root}
    t_list = Timing("os.stat, precomputed list", [])
    t_walk = Timing("os.scandir walk + stat", [])
    t_read = Timing("open + read + close every file, 1 thread", [])
    t_tornado = Timing("Tornado get_version, every file", [])
    t_cold1 = Timing("assetver cold build, --jobs 1 (one process)", [])
    t_cold = Timing(f"assetver cold build, --jobs {jobs} (default)", [])
    t_same = Timing("assetver rebuild, nothing changed", [])
    t_some = Timing(f"assetver rebuild, 1% changed ({len(changed)} files)", [])
    t_json = Timing("manifest JSON of the cold build", [])
    checks: list[str] = []
    unversioned = 0
    cached_after = 0
    last: BuildResult | None = None
    cache_file = ""
    same_listed = True
    for r in range(repeats):
        print(f"round {r + 1}/{repeats} ...", file=sys.stderr, flush=True)
        _wait_for_fs_clock(state, _newest_ns(paths))

        t_list.runs.append(_timed(lambda: _stat_list(paths)))
        t_walk.runs.append(_timed(lambda: _stat_walk(root)))
        t_read.runs.append(_timed(lambda: _read_list(paths)))

        handler.reset()
        assert not handler._static_hashes
        versions: list[str | None] = []
        t_tornado.runs.append(_timed(lambda out=versions: _tornado_all(settings, logical, out)))
        unversioned = sum(v is None for v in versions)
        cached_after = len(handler._static_hashes)
        handler.reset()

        for timing, j in ((t_cold1, 1), (t_cold, jobs)):
            cache_file = os.path.join(state, f"cache-{r}-{j}.json")
            res = _build(timing, root, cache_file, j)
            _expect(checks, timing.label, res, hashed=len(paths))
        t_json.runs.append(_timed(res.manifest.to_json))
        last = _build(t_same, root, cache_file, jobs)
        _expect(checks, t_same.label, last, hashed=0)
        same_listed = last.listed

        for p in changed:
            _rewrite(p)
        last = _build(t_some, root, cache_file, jobs)
        _expect(checks, t_some.label, last, hashed=len(changed))

    print("round: Tornado second pass ...", file=sys.stderr, flush=True)
    handler.reset()
    for p in logical:
        handler.get_version(settings, p)
    t_second = _timed(lambda: [handler.get_version(settings, p) for p in logical])
    handler.reset()

    assert last is not None
    fresh = build(root).manifest
    same = fresh == last.manifest
    if not same:
        checks.append("the incremental manifest differs from a fresh build's: the cache is WRONG")

    print("big file ...", file=sys.stderr, flush=True)
    rss = _big_file(os.path.join(work, "big.bin"), big_mib, pool) if big_mib > 0 else None

    _report(
        t_tornado=t_tornado,
        t_cold1=t_cold1,
        t_cold=t_cold,
        t_same=t_same,
        t_some=t_some,
        t_list=t_list,
        t_walk=t_walk,
        t_read=t_read,
        t_json=t_json,
        t_second=t_second,
        n=len(paths),
        unversioned=unversioned,
        cached_after=cached_after,
        rss=rss,
        big_mib=big_mib,
        same=same,
        same_listed=same_listed,
        checks=checks,
    )
    missed = _missed(t_tornado, t_cold, t_same, t_list, rss)
    if args.profile:
        _profile(root, state, len(paths))
    if args.smoke:
        print("--smoke: sizes too small for the targets to mean anything; not enforced")
        return 0
    return 1 if args.strict and (missed or checks) else 0


def _generate(root: str, n: int, seed: int) -> None:
    """Writes ``n`` files of log-uniform sizes in [100 B, 64 KiB] into nested directories.

    About 40 files per directory, directories 1 to 5 levels deep; every file is real
    (non-sparse) random content.
    """
    rng = random.Random(seed)
    pool = rng.randbytes(2 * MIB)
    dirs = [root]
    depth = {root: 0}
    os.makedirs(root)
    for i in range(max(1, n // 40)):
        parent = rng.choice(dirs)
        if depth[parent] >= 5:
            parent = root
        d = os.path.join(parent, f"d{i}")
        os.mkdir(d)
        dirs.append(d)
        depth[d] = depth[parent] + 1
    lo, hi = math.log(MIN_SIZE), math.log(MAX_SIZE)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for i in range(n):
        size = min(MAX_SIZE, int(math.exp(rng.uniform(lo, hi))))
        off = rng.randrange(len(pool) - size)
        name = os.path.join(rng.choice(dirs), f"f{i}.{EXTENSIONS[i % len(EXTENSIONS)]}")
        fd = os.open(name, flags, 0o644)
        try:
            os.write(fd, pool[off : off + size])
        finally:
            os.close(fd)


_FLIP = bytes(255 - i for i in range(256))


def _rewrite(path: str) -> None:
    """Rewrites the file in place, same size, its first 4 KiB inverted: new bytes for sure,
    and the same size, so only the stat times tell the cache (the hard case)."""
    with open(path, "r+b") as f:
        head = f.read(4096)
        f.seek(0)
        f.write(head.translate(_FLIP))


def _special_files(directory: str, names: list[str]) -> list[str]:
    """For `shutil.copytree`: leaves out FIFOs, sockets and devices (a FIFO would block)."""
    skip = []
    for name in names:
        try:
            st = os.lstat(os.path.join(directory, name))
        except OSError:
            continue
        if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode)):
            skip.append(name)
    return skip


def _newest_ns(paths: list[str]) -> int:
    newest = 0
    for p in paths:
        st = os.stat(p)
        newest = max(newest, st.st_mtime_ns, st.st_ctime_ns)
    return newest


def _filesystem_now(directory: str) -> int:
    """The filesystem's clock: the mtime of a file made now."""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory)
    except OSError as e:
        raise SystemExit(f"cannot write in {directory}: {e.strerror}") from e
    try:
        return os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)
        os.unlink(tmp)


def _wait_for_fs_clock(directory: str, newest_ns: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        now = _filesystem_now(directory)
        if now > newest_ns:
            return
        if time.monotonic() > deadline:
            print(f"warning: the filesystem clock did not pass {newest_ns}", file=sys.stderr)
            return
        time.sleep(0.002)


def _timed(fn: Callable[[], object]) -> float:
    gc.collect()
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _build(timing: Timing, root: str, cache_file: str, jobs: int) -> BuildResult:
    out: list[BuildResult] = []
    timing.runs.append(_timed(lambda: out.append(build(root, cache_path=cache_file, jobs=jobs))))
    return out[0]


def _expect(checks: list[str], label: str, res: BuildResult, *, hashed: int) -> None:
    if res.hashed != hashed:
        checks.append(f"{label}: hashed {res.hashed} files, expected {hashed}")


def _tornado_all(settings: dict[str, str], logical: list[str], out: list[str | None]) -> None:
    get_version = tornado.web.StaticFileHandler.get_version
    for p in logical:
        out.append(get_version(settings, p))


def _stat_list(paths: list[str]) -> None:
    stat = os.stat
    for p in paths:
        stat(p)


def _read_list(paths: list[str]) -> None:
    """The system calls any cold build must make, with no hashing and no Python around."""
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
    for p in paths:
        fd = os.open(p, flags)
        try:
            while os.read(fd, MIB):
                pass
        finally:
            os.close(fd)


def _stat_walk(root: str) -> None:
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    entry.stat(follow_symlinks=False)


def _big_file(path: str, mib: int, pool: bytes) -> tuple[float, float, float, str]:
    """Returns (RSS rise MiB, baseline MiB, hashing seconds, digest) for a ``mib`` file."""
    block = bytearray(pool[:MIB])
    with open(path, "wb") as f:
        for i in range(mib):
            block[:8] = i.to_bytes(8, "little")  # every MiB distinct, nothing sparse
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    base_kib, _, _ = _child()
    base2_kib, _, _ = _child()
    runs = [_child(path) for _ in range(2)]
    hwm_kib = max(r[0] for r in runs)
    seconds = min(r[1] for r in runs)
    baseline = min(base_kib, base2_kib)
    os.unlink(path)
    return (hwm_kib - baseline) / 1024, baseline / 1024, seconds, runs[0][2]


def _child(*argv: str) -> tuple[int, float, str]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv], check=True, capture_output=True, text=True
    ).stdout.split()
    return int(out[0]), float(out[1]), out[2]


def _fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:9.1f} ms" if seconds < 10 else f"{seconds:9.2f} s "


def _header(
    source: str,
    root: str,
    paths: list[str],
    sizes: list[int],
    total: int,
    repeats: int,
    jobs: int,
    setup_s: float,
) -> None:
    n = len(sizes)
    dirs = len({os.path.dirname(p) for p in paths})
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    print("assetver build benchmark")
    print(
        f"  python {platform.python_version()}, tornado {tornado.version}, "
        f"assetver {assetver.__version__}, {os.cpu_count()} CPUs, "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print(f"  tree: {source}, in {root}")
    print(
        f"  {n:,} files in {dirs:,} directories, {total / MIB:,.1f} MiB; size p10 "
        f"{sizes[n // 10]:,} B, median {sizes[n // 2]:,} B, p90 {sizes[n * 9 // 10]:,} B, "
        f"max {sizes[-1]:,} B  (prepared in {setup_s:.1f} s)"
    )
    print(
        f"  best of {repeats} interleaved rounds; page cache warm for every tool "
        f"(all files read once first); default jobs = {jobs}"
    )
    print()


def _report(
    *,
    t_tornado: Timing,
    t_cold1: Timing,
    t_cold: Timing,
    t_same: Timing,
    t_some: Timing,
    t_list: Timing,
    t_walk: Timing,
    t_read: Timing,
    t_json: Timing,
    t_second: float,
    n: int,
    unversioned: int,
    cached_after: int,
    rss: tuple[float, float, float, str] | None,
    big_mib: int,
    same: bool,
    same_listed: bool,
    checks: list[str],
) -> None:
    tornado_s = t_tornado.best
    floor = t_list.best

    def row(t: Timing, ratio: str, target: str = "") -> None:
        us = t.best / n * 1e6
        spread = max(t.runs) / t.best
        print(f"{t.label:<42} {_fmt_s(t.best)} {us:8.2f} {spread:6.2f}  {ratio:<30} {target}")

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    print(f"{'measurement':<42} {'best':>12} {'us/file':>8} {'worst/':>6}  {'ratio':<30} target")
    print(f"{'':<42} {'':>12} {'':>8} {'best':>6}")
    print("-" * 116)
    row(t_tornado, "1.00x (baseline)")
    cold1 = tornado_s / t_cold1.best
    cold = tornado_s / t_cold.best
    row(t_cold1, f"{cold1:.2f}x faster than Tornado")
    row(
        t_cold,
        f"{cold:.2f}x faster than Tornado",
        f">= {TARGET_COLD_SPEEDUP:g}x  {verdict(cold >= TARGET_COLD_SPEEDUP)}",
    )
    same_ratio = t_same.best / floor
    row(
        t_same,
        f"{same_ratio:.2f}x the stat floor",
        f"<= {TARGET_NOCHANGE_FLOOR:g}x  {verdict(same_ratio <= TARGET_NOCHANGE_FLOOR)}",
    )
    row(t_some, f"{t_some.best / floor:.2f}x floor; {tornado_s / t_some.best:.1f}x < Tornado")
    row(t_list, "1.00x (the floor)")
    row(t_walk, f"{t_walk.best / floor:.2f}x the floor")
    row(t_read, f"Tornado is {tornado_s / t_read.best:.2f}x this")
    print("-" * 116)
    with_json = t_cold.best + t_json.best
    print(
        f"the cold build's manifest is sorted on first iteration: its JSON (what `assetver "
        f"build` writes) takes {_fmt_s(t_json.best).strip()} more, "
        f"{tornado_s / with_json:.2f}x faster than Tornado all told"
    )
    print(
        f"processes: --jobs {default_jobs()} (the default) is "
        f"{t_cold1.best / t_cold.best:.2f}x the speed of --jobs 1 on the cold build"
    )
    print(
        f"no-change rebuild against the walk+stat floor: {t_same.best / t_walk.best:.2f}x "
        f"(the target uses the list floor, the stricter of the two); directories listed "
        f"again: {'yes' if same_listed else 'no, the cache showed all unchanged'}"
    )
    cap = tornado.web.StaticFileHandler.MAX_CACHED_VERSIONS
    print(
        f"Tornado: MAX_CACHED_VERSIONS = {cap:,} (LRU); after one pass {cached_after:,} of "
        f"{n:,} versions stay cached; {unversioned} files got no version"
    )
    print(
        f"Tornado: a second static_url() pass over every file takes {_fmt_s(t_second).strip()}"
        f" ({t_second / tornado_s:.2f}x the first"
        + (": the LRU cap makes it re-hash everything)" if n > cap else ")")
    )
    if rss is not None:
        rise, base, seconds, digest = rss
        gib_s = big_mib / 1024 / seconds if seconds else float("inf")
        print(
            f"peak RSS hashing one {big_mib:,} MiB file: +{rise:.1f} MiB over a "
            f"{base:.1f} MiB baseline (imports assetver, hashes nothing); target <= "
            f"{TARGET_RSS_MIB:g} MiB  {verdict(rise <= TARGET_RSS_MIB)}"
        )
        print(
            f"  hashed in {seconds:.3f} s ({gib_s:.2f} GiB/s, page cache warm), digest {digest}; "
            f"Tornado would give it no version (MAX_VERSION_CONTENT_SIZE = "
            f"{tornado.web.StaticFileHandler.MAX_VERSION_CONTENT_SIZE // MIB} MiB)"
        )
    print(f"incremental manifest equals a fresh build's: {'yes' if same else 'NO'}")
    for c in checks:
        print(f"CHECK FAILED: {c}")


def _missed(
    t_tornado: Timing,
    t_cold: Timing,
    t_same: Timing,
    t_list: Timing,
    rss: tuple[float, float, float, str] | None,
) -> list[str]:
    missed = []
    if t_tornado.best / t_cold.best < TARGET_COLD_SPEEDUP:
        missed.append("cold build speed-up")
    if t_same.best / t_list.best > TARGET_NOCHANGE_FLOOR:
        missed.append("no-change rebuild")
    if rss is not None and rss[0] > TARGET_RSS_MIB:
        missed.append("big-file RSS")
    print(f"targets missed: {', '.join(missed) if missed else 'none'}")
    return missed


def _profile(root: str, state: str, n: int) -> None:
    """Prints cProfile's top functions of a cold build (one thread: cProfile sees only
    the calling thread) and of a no-change rebuild on its cache."""
    cache_file = os.path.join(state, "profile-cache.json")
    paths = [f[1] for f in scan(root).files]
    _wait_for_fs_clock(state, _newest_ns(paths))
    gc_runs: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        gc_runs.append(time.perf_counter() if phase == "start" else -time.perf_counter())

    for label in ("cold build, --jobs 1", "no-change rebuild"):
        gc.collect()
        gc_runs.clear()
        gc.callbacks.append(on_gc)
        prof = cProfile.Profile()
        prof.enable()
        res = build(root, cache_path=cache_file, jobs=1)
        prof.disable()
        gc.callbacks.remove(on_gc)
        gc_s = -sum(gc_runs)  # starts positive, stops negative: the sum is minus the time
        print()
        print(f"=== cProfile: {label}: {n:,} files, {res.hashed:,} hashed, {res.seconds:.3f} s ===")
        print(
            f"cyclic GC (invisible to cProfile): {len(gc_runs) // 2} collections, {gc_s:.3f} s "
            f"({gc_s / res.seconds:.0%} of the build)"
        )
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(18)
        print("\n".join(out.getvalue().strip().splitlines()[2:]))


if __name__ == "__main__":
    sys.exit(main())
