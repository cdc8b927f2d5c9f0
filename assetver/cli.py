"""The ``assetver`` command line.

Exit codes: 0 success; 1 ``check`` found the manifest stale (or ``diff --exit-code``
found differences, or ``build --strict`` found unresolved references); 2 usage or input
error (missing root, unreadable file, corrupt manifest, unwritable output, a reference
cycle). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from . import __version__
from .errors import AssetverError
from .urls import STATE_DIR, state_manifest

EXIT_OK = 0
EXIT_STALE = 1
EXIT_USAGE = 2

PROGRESS_MIN_FILES = 2000
"""Below this many files a build is too quick for a progress bar to help."""

_EXITS = "exit codes: 0 ok; {one}2 usage or input error (one line naming the path and the fix)"


class UsageError(AssetverError, ValueError):
    """A command line that cannot be run as written."""


def default_manifest_path(root: str) -> str:
    """Where ``build`` writes and ``check`` reads when no path is given."""
    return state_manifest(root)


def default_cache_path(manifest_path: str) -> str:
    """The build cache lives beside the manifest it speeds up."""
    return os.path.join(os.path.dirname(os.path.abspath(manifest_path)), ".assetver-cache")


def _shown(path: str) -> str:
    """A path for a message: a relative one says what it was resolved against."""
    if os.path.isabs(path):
        return path
    return f"{path} (in {os.getcwd()})"


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


def _sub(sub: Any, name: str, summary: str, description: str, one: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog=_EXITS.format(one=f"1 {one}; " if one else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return p


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="assetver",
        description="Content-hash versioning of static files, for Tornado, nginx and CDNs.",
        epilog=_EXITS.format(one="1 check found the manifest stale; "),
    )
    parser.add_argument("--version", action="version", version=f"assetver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = _sub(
        sub,
        "build",
        "hash ROOT into a manifest, or compile it into an output",
        "Hash every file under ROOT and write its manifest (default "
        f"ROOT/{STATE_DIR}/manifest.json), reusing the digests of unchanged files from a\n"
        "build cache beside it. With -o DIR, compile ROOT into DIR instead: every file at\n"
        "its logical path and at its hashed path, references in stylesheets rewritten to\n"
        "hashed paths, precompressed variants, earlier builds' hashed copies retained, and\n"
        f"the manifest in DIR/{STATE_DIR}/manifest.json.",
        "--strict and unresolved references",
    )
    p.add_argument("root", metavar="ROOT", help="the static directory")
    p.add_argument("-m", "--manifest", metavar="FILE", help="manifest to write")
    p.add_argument("-o", "--output", metavar="DIR", help="compile into this directory")
    p.add_argument(
        "--compress",
        default="br,gzip",
        metavar="SPEC",
        help="variants an output gets: codings with optional levels, e.g. br,gzip (the "
        "default: brotli 11, gzip 9), br:11,gzip:9,zstd:19, or none",
    )
    p.add_argument("--prefix", default="/static/", help="URL prefix root-relative references use")
    p.add_argument(
        "--keep", type=int, default=3, metavar="N", help="earlier builds retained (default 3)"
    )
    p.add_argument(
        "--keep-for",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="also retain builds younger than this (default 3600)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a reference does not resolve")
    p.add_argument(
        "--cycles",
        choices=("error", "leave"),
        default="error",
        help="a reference cycle is an error (default), or its references are left as written",
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

    p = _sub(
        sub,
        "check",
        "exit 1 when ROOT no longer matches its manifest",
        "Hash ROOT afresh (no cache) and compare it with its manifest: exit 1 and list\n"
        "'+ added', '- removed' and '~ changed' logical paths when they differ. Pass the\n"
        "same --exclude and --include-hidden as the build.",
        "the manifest is stale",
    )
    p.add_argument("root", metavar="ROOT", help="the static directory")
    p.add_argument("-m", "--manifest", metavar="FILE", help="manifest to check")
    _add_scan_options(p)
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.set_defaults(func=_cmd_check)

    p = _sub(
        sub,
        "diff",
        "list logical paths added, removed and changed between two manifests",
        "Compare two manifests (files, or output directories) and list the logical paths\n"
        "whose served bytes differ: what to purge from a CDN after a deploy. --json gives\n"
        "each path's old and new digest and hashed path. The exit code is 0 whether or not\n"
        "they differ, unless --exit-code.",
        "--exit-code and they differ",
    )
    p.add_argument("old", metavar="OLD", help="the earlier manifest or output")
    p.add_argument("new", metavar="NEW", help="the later manifest or output")
    p.add_argument("--json", action="store_true", help="print the differences as JSON")
    p.add_argument("--exit-code", action="store_true", help="exit 1 when they differ")
    p.set_defaults(func=_cmd_diff)

    p = _sub(
        sub,
        "nginx",
        "print nginx configuration serving ROOT or an output with the caching policy",
        "Print nginx configuration for the http { } context: a server serving PREFIX from\n"
        "ROOT (with its manifest) or from an output DIR, far-future immutable caching only\n"
        "for bytes proven to be the digest in their URL. With --upstream, everything else\n"
        "is proxied to those Tornado processes, as in Tornado's deployment guide.",
        "",
    )
    p.add_argument("root", metavar="ROOT|DIR", help="the static directory or compiled output")
    p.add_argument("-m", "--manifest", metavar="FILE", help="manifest of ROOT")
    p.add_argument("--prefix", default="/static/", help="URL prefix (default: /static/)")
    p.add_argument(
        "--style",
        choices=("query", "filename"),
        default="query",
        help="current URLs of a root: query (?v=DIGEST, the default) or filename",
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
        help="all: a complete file for http { } (default); http: only what goes in http { };"
        " server: only the locations for an existing server { }",
    )
    p.add_argument(
        "--brotli",
        action="store_true",
        help="serve .br variants of an output (brotli_static, from Debian's brotli module)",
    )
    p.add_argument(
        "--max-age",
        type=int,
        default=0,
        metavar="SECONDS",
        help="cache time of unversioned URLs (default 0: no-cache, revalidate)",
    )
    p.add_argument(
        "--stale",
        choices=("serve", "redirect", "404"),
        default="serve",
        help="what a stale or forged digest gets, as the handler's assetver_stale",
    )
    p.add_argument(
        "--allow-origin",
        default="*",
        metavar="ORIGIN",
        help="Access-Control-Allow-Origin (default *; 'none' sends none)",
    )
    p.set_defaults(func=_cmd_nginx)

    p = _sub(
        sub,
        "clean",
        "remove hashed copies of builds past the retention window",
        "Remove from an output the hashed copies and variants that no retained build\n"
        "names: builds beyond the last --keep and older than --keep-for. The current\n"
        "build's files are never removed.",
        "",
    )
    p.add_argument("output", metavar="DIR", help="the compiled output")
    p.add_argument("--keep", type=int, default=3, metavar="N", help="builds retained (default 3)")
    p.add_argument(
        "--keep-for",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="also retain builds younger than this (default 3600)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=_cmd_clean)
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


def _check_args(args: argparse.Namespace) -> None:
    jobs = getattr(args, "jobs", None)
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be at least 1, got {jobs}")
    for name in ("root", "output", "old", "new"):
        value = getattr(args, name, None)
        if value is not None and not value.strip():
            raise UsageError(f"{name.upper()} is empty; pass a directory")
    if getattr(args, "keep", 0) < 0 or getattr(args, "keep_for", 0) < 0:
        raise UsageError("--keep and --keep-for must be >= 0")


def _scan_options(args: argparse.Namespace, *excluded: str) -> Any:
    from .scan import ScanOptions

    return ScanOptions.make(
        exclude=args.exclude, include_hidden=args.include_hidden, exclude_paths=excluded
    )


class _Progress:
    """A tqdm bar on stderr, shown only for large trees on a terminal: with a count and a
    rate while a cold build still finds files, with a total once it is known."""

    def __init__(self, stream: TextIO) -> None:
        self._enabled = stream.isatty()
        self._bar: Any = None
        self._done = 0

    def __call__(self, done: int, total: int | None) -> None:
        self._done += done
        if not self._enabled or (total is not None and total < PROGRESS_MIN_FILES):
            return
        if self._bar is None:
            if total is None and self._done < PROGRESS_MIN_FILES:
                return
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
    from .atomic import check_target
    from .scan import check_root

    _check_args(args)
    check_root(args.root)
    if args.output is not None:
        out = args.output
        if out.endswith(".json") or os.path.isfile(out):
            raise UsageError(
                f"-o {out}: -o now names the output directory to compile into; "
                f"name the manifest with -m {out}"
            )
    if args.manifest is not None:
        check_target(args.manifest, "manifest")
    progress = _Progress(sys.stderr) if not args.quiet else None
    try:
        if args.output is not None:
            summary, code = _compile(args, progress)
        else:
            manifest_path = args.manifest or default_manifest_path(args.root)
            check_target(manifest_path, "manifest")
            summary, code = _build(args, manifest_path, progress)
    finally:
        if progress is not None:
            progress.close()
    if args.json:
        import json

        print(json.dumps(summary, indent=2, sort_keys=True))
    elif not args.quiet:
        print(_format_summary(summary))
    return code


def _build(
    args: argparse.Namespace, manifest_path: str, progress: Any
) -> tuple[dict[str, Any], int]:
    from .build import build, build_cached

    options = _scan_options(args, manifest_path)
    if args.no_cache:
        result = build(args.root, options=options, jobs=args.jobs, progress=progress)
    else:
        result = build_cached(
            args.root,
            default_cache_path(manifest_path),
            options=options,
            jobs=args.jobs,
            progress=progress,
        )
    _write_if_changed(result.manifest, manifest_path)
    return _summary(result, manifest_path), EXIT_OK


def _compile(args: argparse.Namespace, progress: Any) -> tuple[dict[str, Any], int]:
    from .output import CompileOptions, compile_output

    settings = CompileOptions.make(
        prefix=args.prefix,
        compress=args.compress,
        keep=args.keep,
        keep_for=args.keep_for,
        strict=args.strict,
        cycles=args.cycles,
    )
    extra = (args.manifest,) if args.manifest else ()
    compiled = compile_output(
        args.root,
        args.output,
        options=_scan_options(args, *extra),
        settings=settings,
        jobs=args.jobs,
        progress=progress,
        cache=not args.no_cache,
    )
    for diagnostic in compiled.diagnostics:
        print(f"assetver: {diagnostic}", file=sys.stderr)
    if args.manifest:
        _write_if_changed(compiled.manifest, args.manifest)
    summary = _summary(compiled.source, compiled.manifest_path)
    summary.update(
        files=len(compiled.manifest),
        bytes=compiled.manifest.total_size(),
        output=compiled.output,
        written=compiled.written,
        compressed=compiled.compressed,
        pruned=compiled.pruned,
        warnings=len(compiled.diagnostics),
        seconds=round(compiled.seconds, 3),
    )
    unresolved = args.strict and bool(compiled.unresolved)
    return summary, EXIT_STALE if unresolved else EXIT_OK


def _write_if_changed(manifest: Any, path: str) -> None:
    data = manifest.to_json().encode("utf-8")
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except OSError:
        pass
    manifest.dump(path)


def _summary(result: Any, manifest_path: str) -> dict[str, Any]:
    return {
        "manifest": manifest_path,
        "files": len(result.manifest),
        "bytes": result.manifest.total_size(),
        "digested": result.digested,
        "reused": result.reused,
        "listed": result.listed,
        "skipped": [{"path": p, "reason": r} for p, r in result.skipped],
        "seconds": round(result.seconds, 3),
    }


def _format_summary(s: dict[str, Any]) -> str:
    line = (
        f"{s['files']} files, {_human(s['bytes'])}: {s['digested']} hashed, "
        f"{s['reused']} reused from cache, {len(s['skipped'])} skipped"
    )
    if "output" in s:
        line += (
            f", {s['written']} written, {s['compressed']} variants made, {s['pruned']} pruned"
            f", {s['warnings']} warnings"
        )
    return f"{line}, in {s['seconds']:.2f}s -> {s.get('output') or s['manifest']}"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _manifest_of(path: str) -> str:
    """A manifest file, or the manifest of the output directory ``path``."""
    if os.path.isdir(path):
        return state_manifest(path)
    return path


def _cmd_check(args: argparse.Namespace) -> int:
    from .build import build
    from .manifest import Manifest

    _check_args(args)
    path = args.manifest or default_manifest_path(args.root)
    committed = Manifest.load(
        os.path.abspath(path), fix=f"rebuild it with: assetver build {args.root} -m {path}"
    )
    if committed.output:
        raise UsageError(
            f"{_shown(path)} is the manifest of a compiled output; rebuild the output "
            f"instead: assetver build {args.root} -o DIR"
        )
    current = build(args.root, options=_scan_options(args, path), jobs=args.jobs).manifest
    d = committed.diff(current)
    if args.json:
        import json

        print(json.dumps({"stale": bool(d), **d.to_json()}, indent=2, sort_keys=True))
    elif d:
        print(
            f"{_shown(path)} is stale: {_format_counts(d)}; "
            f"run: assetver build {args.root} -m {path}"
        )
        print(_format_diff(d))
    else:
        print(f"{path} is up to date ({len(current)} files)")
    return EXIT_STALE if d else EXIT_OK


def _cmd_diff(args: argparse.Namespace) -> int:
    from .manifest import Manifest

    _check_args(args)
    old, new = _manifest_of(args.old), _manifest_of(args.new)
    d = Manifest.load(os.path.abspath(old)).diff(Manifest.load(os.path.abspath(new)))
    if args.json:
        import json

        print(json.dumps(d.to_json(), indent=2, sort_keys=True))
    elif d:
        print(_format_diff(d))
    return EXIT_STALE if d and args.exit_code else EXIT_OK


def _cmd_nginx(args: argparse.Namespace) -> int:
    from .manifest import Manifest
    from .nginx import render

    _check_args(args)
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        raise UsageError(f"{_shown(args.root)} is not a directory; pass the static root or output")
    path = args.manifest or default_manifest_path(args.root)
    manifest = Manifest.load(
        os.path.abspath(path), fix=f"build it with: assetver build {args.root}"
    )
    inside = os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
    deny = [] if inside.startswith("../") else [inside]
    if not manifest.output:
        deny.append(os.path.relpath(default_cache_path(path), root).replace(os.sep, "/"))
    text = render(
        manifest,
        root=root,
        prefix=args.prefix,
        style=args.style,
        listen=args.listen,
        server_name=args.server_name,
        upstreams=args.upstream,
        part=args.part,
        brotli=args.brotli,
        max_age=args.max_age,
        deny=[d for d in deny if not d.startswith("../")],
        stale=args.stale,
        allow_origin=None if args.allow_origin == "none" else args.allow_origin,
    )
    sys.stdout.write(text)
    return EXIT_OK


def _cmd_clean(args: argparse.Namespace) -> int:
    from .retention import clean

    _check_args(args)
    removed = clean(args.output, keep=args.keep, keep_for=args.keep_for)
    if not args.quiet:
        print(f"{removed} files removed from {args.output}")
    return EXIT_OK


def _format_counts(d: Any) -> str:
    return f"{len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed"


def _format_diff(d: Any) -> str:
    lines = [f"+ {p}" for p in d.added]
    lines += [f"- {p}" for p in d.removed]
    lines += [f"~ {p}" for p in d.changed]
    return "\n".join(lines)
