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
never in a manifest. It is a header line (the root, the scan options, the sizes and
XXH3 digest of the body's sections), then four sections: the logical paths joined by
NUL, the packed keys, the digests, and the directory listings in `marshal` form (the
format CPython trusts for its own ``__pycache__``). Big joined sections rather than a
serialised list of 100,000 items each make saving and loading a few copies of memory.
A cache that is corrupt, of another version or Python, for another root or other
scan options is ignored (a full rebuild), never trusted and never an error.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import re
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter

from .atomic import temp_file, write_atomic
from .errors import OutputError
from .hashing import digest_bytes, digest_parts

log = logging.getLogger("assetver")

_MAGIC = (
    f"assetver-cache 3 {sys.byteorder} marshal {marshal.version} {sys.implementation.cache_tag}\n"
).encode()
_HEX = re.compile("[0-9a-f]*")

Key = bytes
"""A file's size, mtime_ns, inode and ctime_ns when it was hashed, packed: one small
object per file rather than five, which a build of 100,000 files feels."""

_KEY = struct.Struct("=QqQq")

RACY = bytes(_KEY.size)
"""The key of a file too recent to trust: it equals no stat key, as no file has a
ctime of 1970-01-01."""

DirKey = tuple[int, int, int, int, int]
"""(size, mtime_ns, inode, ctime_ns, device) of a directory when it was listed."""


def stat_key(st: os.stat_result, stamp_ns: int | None = None) -> Key:
    """Returns the key of ``st``, or `RACY` when ``stamp_ns`` (the filesystem clock when
    the build started) is not strictly later than its mtime or ctime."""
    if stamp_ns is not None and (st.st_mtime_ns >= stamp_ns or st.st_ctime_ns >= stamp_ns):
        return RACY
    return _KEY.pack(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


def split_keys(keys: bytes) -> list[Key]:
    """Returns the packed ``keys`` one by one."""
    size = _KEY.size
    return [keys[i : i + size] for i in range(0, len(keys), size)]


def key_packer() -> Callable[[int, int, int, int], Key]:
    """Returns the function `stat_key` packs with (size, mtime_ns, ino, ctime_ns), for
    loops that test the racy rule themselves."""
    return _KEY.pack


dir_key: Callable[[os.stat_result], DirKey] = attrgetter(
    "st_size", "st_mtime_ns", "st_ino", "st_ctime_ns", "st_dev"
)
"""Returns the `DirKey` of a directory's stat (a C function: no-change rebuilds call it
for every directory)."""


def start(path: str) -> tuple[int, str | None] | None:
    """Reads the filesystem clock for a build that will save its cache at ``path``.

    The filesystem's own clock, read from a file's mtime, rather than `time.time_ns`,
    makes the racy-timestamp comparison exact whatever the filesystem's granularity.

    If the cache exists, its mtime is set to now and read back: two system calls.
    Otherwise a temporary file is made beside it, the one the new cache will be
    written to: pass it to `save`, or remove it. None when the directory cannot be
    written (then nothing can be cached safely).
    """
    try:
        os.utime(path)
        return os.stat(path).st_mtime_ns, None
    except OSError:
        pass
    try:
        fd, spare = temp_file(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None
    try:
        return os.fstat(fd).st_mtime_ns, spare
    finally:
        os.close(fd)


@dataclass(slots=True)
class Cache:
    """What a previous build left: its files with their keys, digests and sizes, and the
    directories it listed."""

    paths: list[str]
    """In the order of the build that saved them (see ``ordered``)."""
    keys: bytes
    """The keys of ``paths``, packed one after the other (`split_keys` makes a list);
    `RACY` where the racy-timestamp rule forbids reuse. One string, so that an
    unchanged tree is told by one comparison rather than one per file."""
    digests: list[str]
    sizes: list[int]
    """The size each key holds."""
    dirs: list[tuple[str, DirKey]] | None
    """(logical path + "/" or "" for the root, key) of every directory scanned; None
    when the listings cannot be reused (a symlink or a skipped entry in the tree, or a
    directory changed during that build)."""
    ordered: bool
    """Whether ``paths`` is sorted."""


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
    n, ordered = header["files"], header["ordered"]
    sizes = header["sections"]
    if not (
        type(n) is int and type(ordered) is bool and len(sizes) == 4 and sum(sizes) == len(body)
    ):
        raise ValueError("inconsistent sections")
    sections, at = [], 0
    for size in sizes:
        sections.append(body[at : at + size])
        at += size
    text, packed, hex_digests, listings = sections
    paths = str(text, "utf-8", "surrogateescape").split("\0") if n else []
    digests = str(hex_digests, "ascii")
    size = _KEY.size
    if len(paths) != n or len(packed) != size * n or len(digests) != 16 * n:
        raise ValueError("inconsistent lengths")
    if not _HEX.fullmatch(digests):
        raise ValueError("digests are not hex")
    dirs = None
    dir_names, dir_keys = marshal.loads(listings)
    if dir_names is not None:
        dirs = list(zip(dir_names, dir_keys, strict=True))
        if not all(type(k) is tuple and len(k) == 5 for _, k in dirs):
            raise ValueError("malformed directory keys")
    return Cache(
        paths,
        packed.tobytes(),
        [digests[i : i + 16] for i in range(0, 16 * n, 16)],
        packed.cast("Q")[0::4].tolist(),  # the first field of every key
        dirs,
        ordered,
    )


def save(
    path: str,
    root: str,
    options: str,
    stamp_ns: int,
    paths: Sequence[str],
    keys: bytes,
    digests: Sequence[str],
    dirs: Sequence[tuple[str, DirKey]] | None,
    *,
    ordered: bool,
    spare: str | None = None,
) -> None:
    """Writes the cache atomically but without fsync: a cache lost to a power cut is
    only a slower next build. A cache that cannot be written is only logged.

    ``keys`` (packed, parallel to ``paths``) must already follow the racy-timestamp
    rule (see `stat_key`); directories
    are checked here: if one changed after ``stamp_ns`` no listing is saved. ``spare``
    is the temporary file `start` made, if it made one.
    """
    if dirs is not None and not all(k[1] < stamp_ns and k[3] < stamp_ns for _, k in dirs):
        dirs = None
    sections = [
        "\0".join(paths).encode("utf-8", "surrogateescape"),
        keys,
        "".join(digests).encode("ascii"),
        marshal.dumps(
            (
                None if dirs is None else [d for d, _ in dirs],
                None if dirs is None else [k for _, k in dirs],
            )
        ),
    ]
    header = {
        "root": root,
        "options": options,
        "stamp_ns": stamp_ns,
        "files": len(paths),
        "ordered": ordered,
        "sections": [len(part) for part in sections],
        "body": digest_parts(sections),
    }
    data = [_MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n", *sections]
    try:
        write_atomic(path, data, durable=False, temp=spare)
    except OutputError as e:
        log.info("build cache not saved: %s", e)
