"""Stat keys, and the racy-timestamp rule that decides when one proves anything.

A stat key is (size, mtime_ns, inode, ctime_ns, device) of a file when it was hashed.
While it is unchanged the file holds the bytes that were hashed, with one exception:
a file rewritten within the same timestamp tick as it was hashed keeps its mtime and
ctime. So a key is kept only when both timestamps are strictly older than the clock
of the file's filesystem when hashing started (git's index uses the same rule); any
later write then gives a newer timestamp. A key that fails the rule is `RACY`, which
equals no stat key, so the file is hashed again next time.

The clock is read from the mtime of a file created on the root's filesystem, which is
exact whatever its timestamp granularity. Where no such file can be made (a read-only
tree, or a state directory on another filesystem) the wall clock is used minus
`MARGIN_NS`, the coarsest granularity in use (FAT's two seconds), so that rule stays
exact for any combination of filesystems.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter

from .atomic import temp_file

Key = bytes
"""A stat key, packed: one small object per file rather than five, which a build of
100,000 files feels."""

_KEY = struct.Struct("=QqQqQ")

KEY_SIZE = _KEY.size

RACY = bytes(_KEY.size)
"""The key of a file too recent to trust: it equals no stat key, as no file has a
ctime of 1970-01-01."""

MARGIN_NS = 2_000_000_000
"""How far behind the wall clock a timestamp must be when the filesystem's own clock
cannot be read: the coarsest timestamp granularity of a filesystem in use (FAT)."""

FIELDS: Callable[[os.stat_result], tuple[int, int, int, int, int]] = attrgetter(
    "st_size", "st_mtime_ns", "st_ino", "st_ctime_ns", "st_dev"
)
"""The fields of a stat key, in packing order (a C function: no-change rebuilds call
it for every file)."""

pack: Callable[[int, int, int, int, int], Key] = _KEY.pack
"""Packs the `FIELDS` of a stat into a key, without the racy rule."""

DirKey = tuple[int, int, int, int, int]
"""The `FIELDS` of a directory when it was listed: its mtime changes whenever a name in
it is added, removed or renamed."""

dir_key: Callable[[os.stat_result], DirKey] = FIELDS


@dataclass(frozen=True, slots=True)
class Stamp:
    """The clock a build started at: ``ns`` for files on ``device`` (read there when
    possible), ``other_ns`` (the wall clock minus `MARGIN_NS`) for any other device."""

    ns: int
    device: int
    other_ns: int

    def trusts(self, fields: tuple[int, int, int, int, int]) -> bool:
        """Tells whether a file or directory with these `FIELDS` may keep its key."""
        limit = self.ns if fields[4] == self.device else self.other_ns
        return fields[1] < limit and fields[3] < limit

    def key(self, st: os.stat_result) -> Key:
        """Returns the stat key of ``st``, or `RACY` when it is too recent to trust."""
        limit = self.ns if st.st_dev == self.device else self.other_ns
        if st.st_mtime_ns >= limit or st.st_ctime_ns >= limit:
            return RACY
        return _KEY.pack(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_dev)


def key_of(st: os.stat_result) -> Key:
    """Returns the stat key of ``st`` with no racy rule: for comparing with keys that
    already passed it."""
    return _KEY.pack(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, st.st_dev)


def split_keys(keys: bytes) -> list[Key]:
    """Returns the packed ``keys`` one by one."""
    size = _KEY.size
    return [keys[i : i + size] for i in range(0, len(keys), size)]


def size_of(key: Key) -> int:
    """Returns the size field of one key."""
    return int(_SIZE.unpack_from(key)[0])


_SIZE = struct.Struct("=Q")


def sizes_of(keys: bytes) -> list[int]:
    """Returns the size field of every packed key."""
    return memoryview(keys).cast("Q")[0 :: _KEY.size // 8].tolist()


def read_stamp(root: str, probe_dir: str | None = None) -> Stamp:
    """Reads the clock for a build of the real root ``root``.

    The clock is the mtime of a file created (and removed at once) in ``probe_dir``
    (the state directory) or else in the system's temporary directory, whichever is
    on the root's filesystem; without one, the wall clock minus `MARGIN_NS`.
    """
    wall = time.time_ns() - MARGIN_NS
    device = os.stat(root).st_dev
    for directory in (probe_dir, os.environ.get("TMPDIR") or "/tmp"):
        if directory is None:
            continue
        with contextlib.suppress(OSError):
            if os.stat(directory).st_dev != device:
                continue
            fd, path = temp_file(directory)
            try:
                st = os.fstat(fd)
            finally:
                os.close(fd)
                os.unlink(path)
            if st.st_dev == device:
                return Stamp(st.st_mtime_ns, device, min(wall, st.st_mtime_ns - MARGIN_NS))
    return Stamp(wall, device, wall)


NEVER = Stamp(0, -1, 0)
"""A stamp that trusts nothing: every key is `RACY`."""
