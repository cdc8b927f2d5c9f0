"""The build cache: digests of files whose stat data has not changed since they were hashed,
and the directories whose listing has not changed since they were scanned.

Keyed by logical path; a digest is reused only when size, mtime, inode and ctime all
match, and only when the mtime and ctime are strictly older than the filesystem's
clock at the moment the previous build started (the "racy timestamp" rule, as git's
index uses): a file rewritten within the same timestamp tick as it was hashed keeps
its mtime, so such entries are re-hashed. Directories follow the same rule: a
directory's mtime changes whenever a name in it is added, removed or renamed, so an
unchanged tree of unchanged directories has exactly the files it had (git's untracked
cache rests on the same fact), and a rebuild then only stats the files.

The cache is machine data (inode numbers), belongs next to the build's output and
never in a manifest. It is a header line naming the root, the scan options and the
XXH3 digest of the body, then the body in `marshal` form: the fastest format the
standard library reads and writes (twice as fast as JSON here), and the one CPython
trusts for its own ``__pycache__``, which has the same standing as a state directory
in the project. A cache that is corrupt, of another version or Python, for another
root or other scan options is ignored (a full rebuild), never trusted and never an
error.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import re
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

from .atomic import write_atomic
from .errors import OutputError
from .hashing import digest_bytes

log = logging.getLogger("assetver")

_MAGIC = f"assetver-cache 3 marshal {marshal.version} {sys.implementation.cache_tag}\n".encode()
_HEX = re.compile("[0-9a-f]*")

Key = tuple[int, int, int, int]
"""(size, mtime_ns, inode, ctime_ns) of a file when it was hashed."""

DirKey = tuple[int, int, int, int, int]
"""(size, mtime_ns, inode, ctime_ns, device) of a directory when it was listed."""


def stat_key(st: os.stat_result) -> Key:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def dir_key(st: os.stat_result) -> DirKey:
    return (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_dev)


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


@dataclass(slots=True)
class Cache:
    """What a previous build left: its files in sorted order with their stat keys and
    digests, and the directories it listed."""

    paths: list[str]
    keys: list[Key | None]
    """Parallel to ``paths``; None where the racy-timestamp rule forbids reuse."""
    digests: list[str]
    dirs: list[tuple[str, DirKey]] | None
    """(logical path + "/" or "" for the root, key) of every directory scanned; None
    when the listings cannot be reused (a symlink or a skipped entry in the tree, or a
    directory changed during that build)."""


def load(path: str, root: str, options: str) -> Cache | None:
    """Returns the cache at ``path`` if it was written for ``root`` and scan ``options``.

    Anything unexpected yields None (a full rebuild), never an exception.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.info("ignoring build cache %s: %s", path, e)
        return None
    try:
        return _decode(data, root, options)
    except (KeyError, TypeError, ValueError, IndexError, EOFError) as e:
        log.info("ignoring malformed build cache %s: %r", path, e)
        return None


def _decode(data: bytes, root: str, options: str) -> Cache | None:
    if not data.startswith(_MAGIC):
        return None
    header_end = data.index(b"\n", len(_MAGIC))
    header = json.loads(data[len(_MAGIC) : header_end])
    if header["root"] != root or header["options"] != options:
        return None
    body = memoryview(data)[header_end + 1 :]
    if digest_bytes(body) != header["body"]:
        raise ValueError("body digest mismatch")
    stamp = header["stamp_ns"]
    paths, keys, digests, dir_names, dir_keys = marshal.loads(body)
    n = len(paths)
    if not (
        type(stamp) is int
        and type(paths) is list
        and type(keys) is list
        and type(digests) is str
        and len(keys) == n
        and len(digests) == 16 * n
        and _HEX.fullmatch(digests)
        and all(type(k) is tuple and len(k) == 4 for k in keys)
        and (dir_names is None or len(dir_names) == len(dir_keys))
    ):
        raise ValueError("inconsistent lengths or types")
    dirs = None
    if dir_names is not None and all(k[1] < stamp and k[3] < stamp for k in dir_keys):
        dirs = list(zip(dir_names, dir_keys, strict=True))
    return Cache(
        paths,
        [k if k[1] < stamp and k[3] < stamp else None for k in keys],
        [digests[i : i + 16] for i in range(0, 16 * n, 16)],
        dirs,
    )


def save(
    path: str,
    root: str,
    options: str,
    stamp_ns: int,
    paths: Sequence[str],
    keys: Sequence[Key],
    digests: Sequence[str],
    dirs: Sequence[tuple[str, DirKey]] | None,
) -> None:
    """Writes the cache atomically but without fsync: a cache lost to a power cut is
    only a slower next build. A cache that cannot be written is only logged."""
    body = marshal.dumps(
        (
            list(paths),
            list(keys),
            "".join(digests),
            None if dirs is None else [d for d, _ in dirs],
            None if dirs is None else [k for _, k in dirs],
        )
    )
    header = {
        "root": root,
        "options": options,
        "stamp_ns": stamp_ns,
        "body": digest_bytes(body),
    }
    data = _MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n" + body
    try:
        write_atomic(path, data, durable=False)
    except OutputError as e:
        log.info("build cache not saved: %s", e)
