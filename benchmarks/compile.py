"""Compiling an output, whole processes, cold, same trees: ``assetver build SRC -o DIR
--compress none`` against Django's ``collectstatic`` (``ManifestStaticFilesStorage``) and a
floor loop, with ratios; then no-change rebuilds, and a font edit as in debug mode.

    python benchmarks/compile.py            # corpus + generated tree; Django in a bench venv
    python benchmarks/compile.py --smoke    # seconds; Django only if its venv exists

Trees: a copy of ``../shared/corpus`` (or ``--root``), and a generated front end
(stylesheets importing each other, naming fonts and images) beside ``--files`` files.
Django 5 is pip-installed into ``$ASSETVER_BENCH_VENV`` (default /tmp/bench-venv); the
floor reads each file, hashes it with xxhash and writes it once under its hashed name.
Issue 11's targets: >= 5x Django, <= 1.5x the floor; a no-change rebuild of an output <=
2x a no-change manifest build; a font edit renames every stylesheet reaching it < 200 ms.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _harness as h

from assetver.build import build_cached
from assetver.output import CompileOptions, compile_output

DJANGO = """
import sys, django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=["django.contrib.staticfiles"], STATIC_URL="/static/",
    STATICFILES_DIRS=[sys.argv[1]], STATIC_ROOT=sys.argv[2],
    STORAGES={"staticfiles": {"BACKEND":
        "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"}},
)
django.setup()
from django.core.management import call_command
call_command("collectstatic", interactive=False, verbosity=0)
"""
FLOOR = """
import os, sys, xxhash
src, dst = sys.argv[1:]
for folder, dirs, names in os.walk(src):
    dirs[:] = [d for d in dirs if not d.startswith(".")]
    out = os.path.join(dst, os.path.relpath(folder, src))
    os.makedirs(out, exist_ok=True)
    for name in names:
        if not name.startswith("."):
            with open(os.path.join(folder, name), "rb") as f:
                data = f.read()
            stem, ext = os.path.splitext(name)
            name = f"{stem}.{xxhash.xxh3_64_hexdigest(data)}{ext}"
            with open(os.path.join(out, name), "wb") as f:
                f.write(data)
"""
NONE = CompileOptions.make(compress="none")


def main() -> int:
    p = h.parser(__doc__, rounds=5)
    p.add_argument("--files", type=int, help="files beside the generated front end (2,000)")
    p.add_argument("--edits", type=int, help="font edits timed (default 9)")
    args = p.parse_args()
    h.prepare_parent()
    v = h.Verdicts(args.smoke)
    rounds = args.rounds or (1 if args.smoke else 5)
    print(f"assetver compile benchmark: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    django = h.peer_python(["django>=5"], ["django"], smoke=args.smoke)
    work = Path(tempfile.mkdtemp(prefix="assetver-compile-", dir=args.tmp))
    try:
        trees = []
        corpus = h.corpus(args.root)
        if corpus is not None:
            trees.append(("corpus", h.copy_tree(corpus, work / "corpus")))
        generated = work / "generated"
        h.generate(generated, args.files or (100 if args.smoke else 2000), text_files=True)
        graph = h.site(generated / "site")
        for tag, src in [*trees, ("generated", generated)]:
            _cold(tag, src, work, django, rounds, v)
            _nochange(tag, src, work, rounds, v)
        _font(generated, graph, work, args.edits or (3 if args.smoke else 9), v)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return v.exit_code(args.strict)


def _cold(tag: str, src: Path, work: Path, django: str | None, rounds: int, v: h.Verdicts) -> None:
    files = [f for f in src.rglob("*") if f.is_file()]
    size = sum(f.stat().st_size for f in files) / h.MIB
    print(f"\n{tag}: {len(files):,} files, {size:.1f} MiB; whole process, cold, best of {rounds}")
    runs = work / "runs"
    fresh = (str(runs / str(i)) for i in range(1 << 30)).__next__

    def clean() -> None:
        shutil.rmtree(runs, ignore_errors=True)
        os.sync()

    measures = {
        "assetver build -o DIR --compress none": lambda: h.cli(
            "build", str(src), "-o", fresh(), "--compress", "none", "-q"
        ),
        "floor: read + xxhash + write": lambda: h.run(
            [sys.executable, "-c", FLOOR, str(src), fresh()]
        ),
        "(compile_output in this process)": lambda: compile_output(src, fresh(), settings=NONE),
    }
    if django is not None:
        measures["Django collectstatic, Manifest storage"] = lambda: h.run(
            [django, "-c", DJANGO, str(src), fresh()]
        )
    times = h.rounds_of(measures, rounds, clean)
    clean()
    ours, floor, _, *peer = times.values()
    for name, seconds in times.items():
        print(f"  {name:<42} {h.ms(seconds):>10}")
    check = v.check(f"{tag}: compile vs floor", ours / floor, 1.5, at_least=False)
    print(f"  ours / floor  {ours / floor:5.2f}x   {check}")
    if peer:
        check = v.check(f"{tag}: compile vs Django", peer[0] / ours, 5.0)
        print(f"  Django / ours {peer[0] / ours:5.2f}x   {check}")
        print(f"  Django / floor {peer[0] / floor:5.2f}x")


def _nochange(tag: str, src: Path, work: Path, rounds: int, v: h.Verdicts) -> None:
    out, cache = work / "same-out", str(work / "same.cache")
    h.wait_for_fs_clock(work, [p for p in src.rglob("*") if p.is_file()])
    compile_output(src, out, settings=NONE)
    build_cached(src, cache)
    output, manifest = h.rounds_of(
        {
            "output": lambda: compile_output(src, out, settings=NONE),
            "manifest": lambda: build_cached(src, cache),
        },
        rounds * 2,
    ).values()
    check = v.check(f"{tag}: no-change output vs manifest", output / manifest, 2.0, at_least=False)
    print(
        f"  no-change rebuild, in process, best of {rounds * 2}: compile_output {h.ms(output)}, "
        f"build_cached {h.ms(manifest)}: {output / manifest:.2f}x   {check}"
    )
    shutil.rmtree(out)


def _font(root: Path, graph: dict[str, list[str]], work: Path, edits: int, v: h.Verdicts) -> None:
    """Times ``compile_output`` after a font edit, as the debug watcher calls it (no
    variants: `startup.debug_settings`) and as a production build does (br and gzip);
    checks that every stylesheet that reaches the font got a new digest."""
    rng = random.Random(11)
    font, sheets = "site/" + graph["fonts"][0], ["site/" + s for s in graph["stylesheets"]]
    print(f"\ndebug: edit {font} (reached by {len(sheets)} stylesheets), time compile_output")
    for label, settings, target in (
        ("as the debug watcher (no variants)", NONE, True),
        ("as a production build (br,gzip)", None, False),
    ):
        before = compile_output(root, work / "font-out", settings=settings).manifest
        took = []
        for _ in range(edits):
            (root / font).write_bytes(rng.randbytes((root / font).stat().st_size))
            start = time.perf_counter()
            after = compile_output(root, work / "font-out", settings=settings).manifest
            took.append((time.perf_counter() - start) * 1000)
            stale = [s for s in [font, *sheets] if after[s].digest == before[s].digest]
            if stale:
                raise RuntimeError(f"a font edit left {stale} with their old digests")
            before = after
        median = statistics.median(took)
        check = v.check(f"font edit, {label}", median, 200, at_least=False) if target else ""
        print(f"  {label:<44} median {median:6.1f} ms, max {max(took):6.1f}   {check}")
        shutil.rmtree(work / "font-out")


if __name__ == "__main__":
    sys.exit(main())
