"""The build cache: digests of files whose stat key has not changed since they were
hashed, and the directories whose listing has not changed since they were scanned.

A directory's mtime changes whenever a name in it is added, removed or renamed, so an
unchanged directory holds exactly the names it held (git's untracked cache rests on
the same fact): a rebuild lists only the directories that changed, reuses the cached
names of the others, and stats the files. Keys follow the racy rule of `.statkey`, and
a directory too recent to trust is kept with a key that equals none, so it is listed
again next time while the others are not.

The cache is machine data (inode numbers), belongs next to the build's state and never
in a manifest. On disk it is a header line (the root, the scan options, the sizes and
XXH3 digest of the body's sections), then four sections: the logical paths joined by
NUL, the packed keys, the digests, and the directory listings in `marshal` form (the
format CPython trusts for its own ``__pycache__``). A cache that is corrupt, of another
version or Python, for another root or other scan options is ignored (a full build),
never trusted and never an error.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import re
import sys
from dataclasses import dataclass
from itertools import starmap

from .atomic import read_regular, write_atomic
from .errors import VANISHED, OutputError
from .hashing import digest_bytes, digest_parts
from .statkey import FIELDS, KEY_SIZE, DirKey, Stamp, dir_key, pack, sizes_of, split_keys
from .urls import STATE_DIR

log = logging.getLogger("assetver")

_MAGIC = (
    f"assetver-cache 4 {sys.byteorder} marshal {marshal.version} {sys.implementation.cache_tag}\n"
).encode()
_HEX = re.compile("[0-9a-f]*")

RACY_DIR: DirKey = (-1, -1, -1, -1, -1)
"""The key of a directory changed too recently to trust: it equals no directory's."""


@dataclass(slots=True)
class Cache:
    """What a build leaves for the next: its files with their keys and digests, and the
    directories it listed."""

    paths: list[str]
    """In the order of the build that made them."""
    keys: bytes
    """The keys of ``paths``, packed one after the other (`.statkey.split_keys`);
    `.statkey.RACY` where the racy rule forbids reuse. One string, so that an
    unchanged tree is told by one comparison rather than one per file."""
    digests: list[str]
    dirs: list[tuple[str, DirKey]] | None
    """(logical path + "/" or "" for the root, key) of every directory listed; None
    when listings cannot be reused (a symlink or a skipped entry in the tree)."""

    def sizes(self) -> list[int]:
        return sizes_of(self.keys)


def load(path: str, root: str, fingerprint: str) -> Cache | None:
    """Returns the cache at ``path`` if it was written for ``root`` and scan options of
    this ``fingerprint``; anything unexpected yields None (a full build)."""
    try:
        data = read_regular(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        log.info("ignoring build cache %s: %s", path, e)
        return None
    try:
        return _decode(data, root, fingerprint)
    except (KeyError, TypeError, ValueError, IndexError, EOFError) as e:
        log.info("ignoring malformed build cache %s: %r", path, e)
        return None


def _decode(data: bytes, root: str, fingerprint: str) -> Cache | None:
    if not data.startswith(_MAGIC):
        return None
    header_end = data.index(b"\n", len(_MAGIC))
    header = json.loads(data[len(_MAGIC) : header_end])
    if header["root"] != root or header["options"] != fingerprint:
        return None
    body = memoryview(data)[header_end + 1 :]
    if digest_bytes(body) != header["body"]:
        raise ValueError("body digest mismatch")
    n, sizes = header["files"], header["sections"]
    if not (type(n) is int and len(sizes) == 4 and sum(sizes) == len(body)):
        raise ValueError("inconsistent sections")
    sections, at = [], 0
    for size in sizes:
        sections.append(body[at : at + size])
        at += size
    text, packed, hex_digests, listings = sections
    paths = str(text, "utf-8", "surrogateescape").split("\0") if n else []
    digests = str(hex_digests, "ascii")
    if len(paths) != n or len(packed) != KEY_SIZE * n or len(digests) != 16 * n:
        raise ValueError("inconsistent lengths")
    if not _HEX.fullmatch(digests):
        raise ValueError("digests are not hex")
    dirs = None
    dir_names, dir_keys = marshal.loads(listings)
    if dir_names is not None:
        dirs = list(zip(dir_names, dir_keys, strict=True))
        if not all(type(d) is str and type(k) is tuple and len(k) == 5 for d, k in dirs):
            raise ValueError("malformed directory keys")
    return Cache(paths, packed.tobytes(), [digests[i : i + 16] for i in range(0, 16 * n, 16)], dirs)


def save(path: str, root: str, fingerprint: str, cache: Cache) -> None:
    """Writes the cache atomically but without fsync: a cache lost to a power cut is
    only a slower next build. A cache that cannot be written is only logged."""
    dirs = cache.dirs
    sections = [
        "\0".join(cache.paths).encode("utf-8", "surrogateescape"),
        cache.keys,
        "".join(cache.digests).encode("ascii"),
        marshal.dumps(
            (
                None if dirs is None else [d for d, _ in dirs],
                None if dirs is None else [k for _, k in dirs],
            )
        ),
    ]
    header = {
        "root": root,
        "options": fingerprint,
        "files": len(cache.paths),
        "sections": [len(part) for part in sections],
        "body": digest_parts(sections),
    }
    data = [_MAGIC + json.dumps(header, separators=(",", ":")).encode() + b"\n", *sections]
    try:
        write_atomic(path, data, durable=False)
        state = os.path.dirname(os.path.abspath(path))
        ignore = os.path.join(state, ".gitignore")
        if os.path.basename(state) == STATE_DIR and not os.path.lexists(ignore):
            name = os.path.basename(path)
            text = f"# made by assetver: the build cache is machine data, never commit it\n{name}\n"
            write_atomic(ignore, text.encode(), durable=False)
    except OutputError as e:
        log.info("build cache not saved: %s", e)


def trusted_dirs(dirs: list[tuple[str, DirKey]], stamp: Stamp) -> list[tuple[str, DirKey]]:
    """``dirs`` with the keys of directories too recent to trust replaced by `RACY_DIR`."""
    return [(d, k if stamp.trusts(k) else RACY_DIR) for d, k in dirs]


@dataclass(slots=True)
class Listing:
    """The files a rebuild must look at, found from the cache's listings."""

    paths: list[str]
    keys: bytes
    """Their current keys (no racy rule: compare with the cache's)."""
    dirs: list[tuple[str, DirKey]]
    """The unchanged directories (with their cached keys)."""
    relist: list[str]
    """Directories that changed and must be listed again (their files are not in
    ``paths``), each without the known directories below it."""
    known: frozenset[str]
    """Every directory the cache knows that still exists."""


def listing(real_root: str, previous: Cache) -> Listing | None:
    """Returns what a rebuild can take from the cache's listings, or None when it must
    scan the whole tree (no listings, or a file of an unchanged directory vanished).

    With no directory changed this is a stat of every cached file in one chain of C
    iterators, no Python bytecode per file: the whole of a no-change rebuild.
    """
    dirs = previous.dirs
    if dirs is None:
        return None
    base = real_root.rstrip("/") + "/"
    prefixes = [d for d, _ in dirs]
    try:
        now: list[DirKey | None] = list(map(dir_key, map(os.stat, map(base.__add__, prefixes))))
    except OSError:
        now = [_dir_key_or_none(base + d) for d in prefixes]
    if all(k == n for (_, k), n in zip(dirs, now, strict=True)):
        try:
            keys = b"".join(
                starmap(pack, map(FIELDS, map(os.stat, map(base.__add__, previous.paths))))
            )
        except OSError:
            return None
        return Listing(previous.paths, keys, dirs, [], frozenset(prefixes))
    unchanged, relist, known = [], [], set()
    for (d, k), n in zip(dirs, now, strict=True):
        if n is None:  # vanished: its parent changed too, and is listed again
            continue
        known.add(d)
        if k == n:
            unchanged.append((d, k))
        else:
            relist.append(d)
    kept = {d for d, _ in unchanged}
    paths = [p for p in previous.paths if p[: p.rfind("/") + 1] in kept]
    try:
        keys = b"".join(starmap(pack, map(FIELDS, map(os.stat, map(base.__add__, paths)))))
    except OSError:
        return None
    return Listing(paths, keys, unchanged, relist, frozenset(known))


def _dir_key_or_none(path: str) -> DirKey | None:
    try:
        return dir_key(os.stat(path))
    except VANISHED:
        return None


def changed_indexes(old: bytes, new: bytes) -> list[int]:
    """Returns the indexes at which two packed key strings of equal length differ."""
    return [
        i for i, (a, b) in enumerate(zip(split_keys(old), split_keys(new), strict=True)) if a != b
    ]
