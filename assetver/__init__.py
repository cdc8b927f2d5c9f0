"""assetver: content-hash manifests and safe far-future caching of static assets.

The core API needs neither Tornado nor watchdog::

    import assetver
    manifest = assetver.build_manifest("static")
    manifest["css/app.css"].digest
    manifest.dump("static/.assetver/manifest.json")

    # or compile the tree into an output: hashed copies, rewritten references, variants
    manifest = assetver.build_manifest("static", output="dist/static")
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import (
    AssetNotFound,
    AssetverError,
    CompileError,
    ConfigError,
    FileReadError,
    ManifestError,
    OutputError,
    RootError,
    WatchError,
)

if TYPE_CHECKING:
    from .build import BuildResult
    from .manifest import Entry, Manifest, ManifestDiff

__version__ = "0.1.0.dev0"

__all__ = [
    "AssetNotFound",
    "AssetverError",
    "BuildResult",
    "CompileError",
    "ConfigError",
    "Entry",
    "FileReadError",
    "Manifest",
    "ManifestDiff",
    "ManifestError",
    "OutputError",
    "RootError",
    "WatchError",
    "__version__",
    "build_manifest",
]


_LAZY = {
    "BuildResult": "build",
    "Entry": "manifest",
    "Manifest": "manifest",
    "ManifestDiff": "manifest",
}


def __getattr__(name: str) -> Any:
    # The classes come with their modules (json, dataclasses, the build machinery),
    # which `assetver --version` never needs: imported on first use.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'assetver' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{module}", __name__), name)


def build_manifest(
    root: str | os.PathLike[str],
    *,
    output: str | os.PathLike[str] | None = None,
    jobs: int | None = None,
    exclude: Iterable[str] = (),
    include_hidden: bool = False,
    exclude_paths: Iterable[str | os.PathLike[str]] = (),
    cache_path: str | os.PathLike[str] | None = None,
    prefix: str = "/static/",
    compress: str = "br,gzip",
    keep: int = 3,
    keep_for: float = 3600.0,
    strict: bool = False,
    cycles: str = "error",
) -> Manifest:
    """Hashes every file under ``root`` and returns the `Manifest`.

    ``jobs`` is the number of hashing processes (default: one per CPU, at most 8); a
    process with other threads hashes in the calling thread (see `assetver.workers`).
    ``exclude`` takes glob patterns matched against logical paths and bare names.
    Dotfiles are left out unless ``include_hidden``. ``exclude_paths`` names files
    to leave out by path (a manifest inside the root). With ``cache_path`` the
    digests of unchanged files are reused from, and saved to, that build cache.

    With ``output``, ``root`` is compiled into that directory instead (see
    `assetver.output`): every file at its logical path and its hashed path, references
    in stylesheets rewritten (root-relative ones resolved under ``prefix``), variants
    made by ``compress`` (``"br,gzip"``, ``"br:11,gzip:9,zstd:19"`` or ``"none"``),
    the hashed copies of the last ``keep`` builds and of ``keep_for`` seconds retained,
    and the returned output manifest written to ``output/.assetver/manifest.json``.
    ``strict`` makes unresolved references an error; ``cycles="leave"`` leaves
    references inside a reference cycle as written instead of failing.
    """
    from .build import build, build_cached
    from .scan import ScanOptions

    options = ScanOptions.make(
        exclude=exclude, include_hidden=include_hidden, exclude_paths=exclude_paths
    )
    if output is not None:
        from .output import CompileOptions, compile_output

        return compile_output(
            root,
            os.fspath(output),
            options=options,
            settings=CompileOptions.make(
                prefix=prefix,
                compress=compress,
                keep=keep,
                keep_for=keep_for,
                strict=strict,
                cycles=cycles,
            ),
            jobs=jobs,
        ).manifest
    if cache_path is not None:
        return build_cached(root, os.fspath(cache_path), options=options, jobs=jobs).manifest
    return build(root, options=options, jobs=jobs).manifest
