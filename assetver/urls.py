"""Hashed paths: where the digest goes in a file name, and how to take it out again.

The digest goes before the last extension only (``css/app.css`` ->
``css/app.<digest>.css``, ``js/katex.min.js`` -> ``js/katex.min.<digest>.js``,
``LICENSE`` -> ``LICENSE.<digest>``). `split_hashed` is the exact inverse of
`hashed_path`.
"""

from __future__ import annotations

import posixpath
import re

_HEX16 = re.compile(r"[0-9a-f]{16}\Z")


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
    if len(stem) > 17 and stem[-17] == "." and _HEX16.match(stem, len(stem) - 16):
        candidates.append((stem[:-17] + ext, stem[-16:]))
    if len(ext) == 17 and _HEX16.match(ext, 1):
        candidates.append((stem, ext[1:]))
    for logical_name, digest in candidates:
        if logical_name and hashed_path(logical_name, digest) == name:
            return posixpath.join(head, logical_name), digest
    return None
