"""assetver: content-hash manifests and safe far-future caching of static assets.

The core API needs neither Tornado nor watchdog::

    import assetver
    manifest = assetver.build_manifest("static")
    manifest["css/app.css"].digest
    manifest.dump("static/.assetver/manifest.json")
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .build import BuildResult
from .build import build as _build
from .errors import (
    AssetNotFound,
    AssetverError,
    ConfigError,
    ManifestError,
    OutputError,
    RootError,
)
from .manifest import Entry, Manifest, ManifestDiff

__version__ = "0.1.0.dev0"

__all__ = [
    "AssetNotFound",
    "AssetverError",
    "BuildResult",
    "ConfigError",
    "Entry",
    "Manifest",
    "ManifestDiff",
    "ManifestError",
    "OutputError",
    "RootError",
    "__version__",
    "build_manifest",
]


def build_manifest(
    root: str | os.PathLike[str],
    *,
    jobs: int | None = None,
    exclude: Iterable[str] = (),
    include_hidden: bool = False,
    exclude_paths: Iterable[str | os.PathLike[str]] = (),
    cache_path: str | os.PathLike[str] | None = None,
) -> Manifest:
    """Hashes every file under ``root`` and returns the `Manifest`.

    ``jobs`` is the number of hashing processes (default: one per CPU, at most 8); a
    process with other threads hashes in the calling thread (see `assetver.workers`).
    ``exclude`` takes glob patterns matched against logical paths and bare names.
    Dotfiles are left out unless ``include_hidden``. ``exclude_paths`` names files
    to leave out by path (an output manifest inside the root). With ``cache_path``
    the digests of unchanged files are reused from, and saved to, that build cache.
    """
    return _build(
        root,
        jobs=jobs,
        exclude=exclude,
        include_hidden=include_hidden,
        exclude_paths=exclude_paths,
        cache_path=cache_path,
    ).manifest
