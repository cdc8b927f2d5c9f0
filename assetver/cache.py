"""The build cache: digests of files whose stat data has not changed since they were hashed.

Keyed by logical path; an entry is reused only when size, mtime, inode and ctime all
match, and only when its mtime is strictly older than the filesystem's clock at the
moment the previous build started (the "racy timestamp" rule, as git's index uses): a
file rewritten within the same timestamp tick as it was hashed keeps its mtime, so
such entries are re-hashed. A cache that is corrupt, of another version, or made for
another root is ignored, never trusted. The cache holds machine data and belongs next
to the build's output, never in a manifest.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping

from .atomic import write_atomic
from .errors import OutputError
from .manifest import Entry

log = logging.getLogger("assetver")

_FORMAT = "assetver-cache"
_VERSION = 2
_HEX = re.compile("[0-9a-f]*")

Key = tuple[int, int, int, int]
"""(size, mtime_ns, inode, ctime_ns) of a file when it was hashed."""


def stat_key(st: os.stat_result) -> Key:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def filesystem_now(directory: str) -> int | None:
    """Returns the filesystem's own clock in ns, read from a fresh file's mtime.

    Using the filesystem's stamp rather than `time.time_ns` makes the racy-timestamp
    comparison exact whatever the filesystem's granularity. None when ``directory``
    cannot be written (then nothing can be cached safely).
    """
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".assetver-", suffix=".tmp", dir=directory)
    except OSError:
        return None
    try:
        return os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)
        os.unlink(tmp)


def load(path: str, root: str) -> dict[str, tuple[Key, Entry]]:
    """Returns the trustworthy entries of the cache at ``path`` for ``root``.

    Anything unexpected yields an empty dict (a full rebuild), never an exception.
    """
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.info("ignoring build cache %s: %s", path, e)
        return {}
    try:
        if data["format"] != _FORMAT or data["version"] != _VERSION or data["root"] != root:
            return {}
        stamp, paths, flat, digests = (
            data["stamp_ns"],
            data["paths"],
            data["keys"],
            data["digests"],
        )
        n = len(paths)
        if not (
            type(stamp) is int
            and isinstance(digests, str)
            and len(flat) == 4 * n
            and len(digests) == 16 * n
            and _HEX.fullmatch(digests)
            and all(type(k) is int for k in flat)
        ):
            raise ValueError("inconsistent lengths or types")
        entries: dict[str, tuple[Key, Entry]] = {}
        for i, logical in enumerate(paths):
            size, mtime, ino, ctime = flat[4 * i : 4 * i + 4]
            if mtime < stamp and ctime < stamp:
                digest = digests[16 * i : 16 * i + 16]
                entries[logical] = ((size, mtime, ino, ctime), Entry(digest, size))
        return entries
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        log.info("ignoring malformed build cache %s: %r", path, e)
        return {}


def save(path: str, root: str, stamp_ns: int, entries: Mapping[str, tuple[Key, str]]) -> None:
    """Writes the cache atomically but without fsync: a cache lost to a power cut is
    only a slower next build. A cache that cannot be written is only logged."""
    flat: list[int] = []
    for key, _ in entries.values():
        flat.extend(key)
    doc = {
        "format": _FORMAT,
        "version": _VERSION,
        "root": root,
        "stamp_ns": stamp_ns,
        "paths": list(entries),
        "keys": flat,
        "digests": "".join(digest for _, digest in entries.values()),
    }
    try:
        write_atomic(path, json.dumps(doc, separators=(",", ":")).encode(), durable=False)
    except OutputError as e:
        log.info("build cache not saved: %s", e)
