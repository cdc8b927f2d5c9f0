"""The ``assetver`` command line.

Exit codes: 0 success; 1 ``check`` found the manifest stale; 2 usage or input error
(missing root, unreadable file, corrupt manifest, unwritable output). Errors are one
line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from . import __version__
from .build import BuildResult, build
from .errors import AssetverError
from .manifest import Manifest, ManifestDiff
from .scan import STATE_DIR

EXIT_OK = 0
EXIT_STALE = 1
EXIT_USAGE = 2

PROGRESS_MIN_FILES = 2000
"""Below this many files a build is too quick for a progress bar to help."""


def default_manifest_path(root: str) -> str:
    """Where ``build`` writes and ``check`` reads when no path is given."""
    return os.path.join(root, STATE_DIR, "manifest.json")


def default_cache_path(manifest_path: str) -> str:
    """The build cache lives beside the manifest it speeds up."""
    return os.path.join(os.path.dirname(os.path.abspath(manifest_path)), ".assetver-cache")


def _add_scan_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-j",
        "--jobs",
        type=int,
        metavar="N",
        help="hashing processes (default: one per CPU, at most 8; 1 hashes in this process)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out logical paths or names matching GLOB (repeatable)",
    )
    p.add_argument(
        "--include-hidden", action="store_true", help="keep dotfiles and dot-directories"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assetver",
        description="Content-hash manifests of static files, for Tornado and nginx.",
        epilog="exit codes: 0 ok, 1 check found the manifest stale, 2 usage or input error",
    )
    parser.add_argument("--version", action="version", version=f"assetver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("build", help="hash ROOT and write its manifest")
    p.add_argument("root", metavar="ROOT", help="the static directory")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help=f"manifest to write (default: ROOT/{STATE_DIR}/manifest.json)",
    )
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="hash every file; neither read nor write the build cache",
    )
    _add_scan_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("check", help="exit 1 when ROOT no longer matches its manifest")
    p.add_argument("root", metavar="ROOT", help="the static directory")
    p.add_argument(
        "-m",
        "--manifest",
        metavar="FILE",
        help=f"manifest to check (default: ROOT/{STATE_DIR}/manifest.json)",
    )
    _add_scan_options(p)
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser("diff", help="list logical paths added, removed and changed")
    p.add_argument("old", metavar="OLD", help="the earlier manifest")
    p.add_argument("new", metavar="NEW", help="the later manifest")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.set_defaults(func=_cmd_diff)

    p = sub.add_parser(
        "nginx",
        help="print nginx configuration serving ROOT with the caching policy",
        description="Print nginx configuration for the http { } context: maps built from the "
        "manifest and a server serving PREFIX from ROOT, far-future immutable caching only "
        "for current versions. With --upstream, also proxy everything else to those Tornado "
        "processes as in Tornado's deployment guide.",
    )
    p.add_argument("root", metavar="ROOT", help="the static directory")
    p.add_argument(
        "-m",
        "--manifest",
        metavar="FILE",
        help=f"manifest of ROOT (default: ROOT/{STATE_DIR}/manifest.json)",
    )
    p.add_argument("--prefix", default="/static/", help="URL prefix (default: /static/)")
    p.add_argument(
        "--style",
        choices=("query", "filename"),
        default="query",
        help="current URLs: query (?v=DIGEST, the default) or filename (app.DIGEST.css)",
    )
    p.add_argument(
        "--listen", default="80", metavar="ADDR:PORT", help="server address (default: 80)"
    )
    p.add_argument("--server-name", metavar="NAME", help="server_name of the server")
    p.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="ADDR:PORT",
        help="a Tornado process to proxy everything outside PREFIX to (repeatable)",
    )
    p.add_argument(
        "--part",
        choices=("all", "http", "server"),
        default="all",
        help="all: a complete file for http { } (default); http: only the maps and upstream "
        "for http { }; server: only the locations for an existing server { }",
    )
    p.add_argument(
        "--brotli",
        action="store_true",
        help="also serve .br siblings (brotli_static; needs the ngx_brotli module)",
    )
    p.add_argument(
        "--max-age",
        type=int,
        default=0,
        metavar="SECONDS",
        help="cache time of unversioned and stale URLs (default 0: no-cache, revalidate)",
    )
    p.set_defaults(func=_cmd_nginx)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line and returns its exit code."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except AssetverError as e:
        print(f"assetver: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("assetver: interrupted", file=sys.stderr)
        return 130


def _check_jobs(jobs: int | None) -> None:
    if jobs is not None and jobs < 1:
        raise _UsageError(f"--jobs must be at least 1, got {jobs}")


class _UsageError(AssetverError, ValueError):
    pass


class _Progress:
    """A tqdm bar on stderr, shown only for large trees on a terminal."""

    def __init__(self, stream: TextIO) -> None:
        self._enabled = stream.isatty()
        self._bar: Any = None
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        """``total`` may grow while a cold build is still finding files."""
        self._done += done
        if not self._enabled or total < PROGRESS_MIN_FILES:
            return
        if self._bar is None:
            import tqdm

            # tqdm's monitor is a thread, and a process with threads forks no workers.
            tqdm.tqdm.monitor_interval = 0
            self._bar = tqdm.tqdm(
                total=total, initial=self._done, unit="file", file=sys.stderr, leave=False
            )
            return
        if total != self._bar.total:
            self._bar.total = total
        self._bar.update(done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _cmd_build(args: argparse.Namespace) -> int:
    _check_jobs(args.jobs)
    output = args.output or default_manifest_path(args.root)
    progress = _Progress(sys.stderr) if not args.quiet else None
    try:
        result = build(
            args.root,
            jobs=args.jobs,
            exclude=args.exclude,
            include_hidden=args.include_hidden,
            exclude_paths=[output],
            cache_path=None if args.no_cache else default_cache_path(output),
            progress=progress,
        )
    finally:
        if progress is not None:
            progress.close()
    _write_if_changed(result.manifest, output)
    if args.json:
        print(json.dumps(_summary(result, output), indent=2, sort_keys=True))
    elif not args.quiet:
        print(_format_summary(result, output))
    return EXIT_OK


def _write_if_changed(manifest: Manifest, output: str) -> None:
    data = manifest.to_json().encode("utf-8")
    try:
        with open(output, "rb") as f:
            if f.read() == data:
                return
    except OSError:
        pass
    manifest.dump(output)


def _summary(result: BuildResult, output: str) -> dict[str, Any]:
    return {
        "manifest": output,
        "files": len(result.manifest),
        "bytes": result.manifest.total_size(),
        "hashed": result.hashed,
        "reused": result.reused,
        "listed": result.listed,
        "skipped": [{"path": p, "reason": r} for p, r in result.skipped],
        "seconds": round(result.seconds, 3),
    }


def _format_summary(result: BuildResult, output: str) -> str:
    m = result.manifest
    return (
        f"{len(m)} files, {_human(m.total_size())}: {result.hashed} hashed, "
        f"{result.reused} reused from cache, {len(result.skipped)} skipped, "
        f"in {result.seconds:.2f}s -> {output}"
    )


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _cmd_check(args: argparse.Namespace) -> int:
    _check_jobs(args.jobs)
    path = args.manifest or default_manifest_path(args.root)
    committed = Manifest.load(path)
    current = build(
        args.root,
        jobs=args.jobs,
        exclude=args.exclude,
        include_hidden=args.include_hidden,
        exclude_paths=[path],
    ).manifest
    d = committed.diff(current)
    if args.json:
        print(json.dumps({"stale": bool(d), **d.to_json()}, indent=2, sort_keys=True))
    elif d:
        print(f"{path} is stale: {_format_counts(d)}; run: assetver build {args.root} -o {path}")
        print(_format_diff(d))
    else:
        print(f"{path} is up to date ({len(current)} files)")
    return EXIT_STALE if d else EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    d = Manifest.load(args.old).diff(Manifest.load(args.new))
    if args.json:
        print(json.dumps(d.to_json(), indent=2, sort_keys=True))
    elif d:
        print(_format_diff(d))
    return EXIT_OK


def _cmd_nginx(args: argparse.Namespace) -> int:
    from .nginx import render

    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        raise _UsageError(f"{args.root} is not a directory; pass the static root")
    path = args.manifest or default_manifest_path(args.root)
    inside = os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
    deny = [] if inside.startswith("../") else [inside]
    text = render(
        Manifest.load(path),
        root=root,
        prefix=args.prefix,
        style=args.style,
        listen=args.listen,
        server_name=args.server_name,
        upstreams=args.upstream,
        part=args.part,
        brotli=args.brotli,
        max_age=args.max_age,
        deny=deny,
    )
    sys.stdout.write(text)
    return EXIT_OK


def _format_counts(d: ManifestDiff) -> str:
    return f"{len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed"


def _format_diff(d: ManifestDiff) -> str:
    lines = [f"+ {p}" for p in d.added]
    lines += [f"- {p}" for p in d.removed]
    lines += [f"~ {p}" for p in d.changed]
    return "\n".join(lines)
