"""Logical and hashed paths: the digest pattern, where a digest goes in a file name, and
which names are hidden. Every adapter (build, handler, nginx, watcher) asks here.

The digest goes before the last extension only (``css/app.css`` ->
``css/app.<digest>.css``, ``js/katex.min.js`` -> ``js/katex.min.<digest>.js``,
``LICENSE`` -> ``LICENSE.<digest>``). `split_hashed` is the exact inverse of
`hashed_path`.
"""

from __future__ import annotations

import os
import posixpath
import re

DIGEST_LENGTH = 16
"""Hex characters of a digest (XXH3-64)."""

DIGEST_PATTERN = "[0-9a-f]{16}"
"""A digest as a regular expression (nginx's configuration uses it too)."""

_DIGEST = re.compile(DIGEST_PATTERN + r"\Z")

STATE_DIR = ".assetver"
"""Directory holding the build's own state (manifest, cache, history); never served,
never part of a manifest."""

MANIFEST_NAME = "manifest.json"
"""The manifest's name in the state directory (of a root or of an output)."""


def state_manifest(directory: str) -> str:
    """Where the manifest of a root or an output is kept by default."""
    return os.path.join(directory, STATE_DIR, MANIFEST_NAME)


BUILDS_DIR = "builds"
"""The directory of an output's state holding every retained build's manifest, named by
its digest."""

TEMP_PREFIX = ".assetver-"
"""Prefix of temporary files of atomic writes, which scans and watchers leave out."""


REWRITABLE = (".css", ".js", ".mjs")
"""Suffixes of files whose references a compiled output rewrites (stylesheets: every
reference; scripts: the source map only)."""


def is_rewritable(logical_path: str) -> bool:
    """Whether a compiled output looks inside this file for references."""
    return logical_path.lower().endswith(REWRITABLE)


def is_digest(text: str) -> bool:
    """Tells whether ``text`` has the form of a digest (16 lowercase hex characters)."""
    return len(text) == DIGEST_LENGTH and _DIGEST.match(text) is not None


def is_hidden(logical_path: str) -> bool:
    """Tells whether any name in ``logical_path`` starts with a dot: dotfiles, the state
    directory and temporary files are never listed or served unless hidden files are
    asked for (and the last two not even then: see `is_internal`). ``.`` and ``..``
    segments are not names: a request's traversal is refused elsewhere, as such."""
    if not (logical_path.startswith(".") or "/." in logical_path):
        return False
    return any(n[:1] == "." and n not in (".", "..") for n in logical_path.split("/"))


def is_internal(name: str) -> bool:
    """Tells whether a file or directory name is assetver's own (state, temporary files)."""
    return name == STATE_DIR or name.startswith(TEMP_PREFIX)


def hashed_path(logical_path: str, digest: str) -> str:
    """Returns ``logical_path`` with ``digest`` inserted before its last extension."""
    head, name = posixpath.split(logical_path)
    stem, ext = posixpath.splitext(name)
    return posixpath.join(head, f"{stem}.{digest}{ext}")


def split_hashed(path: str) -> tuple[str, str] | None:
    """Returns ``(logical_path, digest)`` when ``path`` is a hashed path, else None.

    Only a path that `hashed_path` would produce is accepted, so a real file whose
    name merely looks hashed is never mistaken for another.
    """
    head, name = posixpath.split(path)
    stem, ext = posixpath.splitext(name)
    candidates = []
    if len(stem) > 17 and stem[-17] == "." and _DIGEST.match(stem, len(stem) - 16):
        candidates.append((stem[:-17] + ext, stem[-16:]))
    if len(ext) == 17 and _DIGEST.match(ext, 1):
        candidates.append((stem, ext[1:]))
    for logical_name, digest in candidates:
        if logical_name and hashed_path(logical_name, digest) == name:
            return posixpath.join(head, logical_name), digest
    return None
