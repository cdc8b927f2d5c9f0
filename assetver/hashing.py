"""Content digests: XXH3-64 of a file's bytes as 16 lowercase hex characters.

This is the only module that imports xxhash. Files are read in fixed-size chunks into
one buffer per thread, reused, so a file of any size hashes in constant memory.
"""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterable

import xxhash

ALGORITHM = "xxh3_64"
"""The manifest's ``algorithm`` value for digests made here."""

CHUNK_SIZE = 1 << 20
"""Bytes read per system call; smaller files are read in a single call."""

OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
"""How files are opened for hashing: without blocking, so a FIFO or device swapped in
after a directory scan can neither hang nor be read."""

hexdigest: Callable[[bytes | bytearray | memoryview], str] = xxhash.xxh3_64_hexdigest
"""The digest of a buffer, without `digest_bytes`'s Python frame: for loops that hash
100,000 small files (see `.workers`)."""


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    """Returns the digest of ``data``."""
    return str(xxhash.xxh3_64_hexdigest(data))


def digest_parts(parts: Iterable[bytes | bytearray | memoryview]) -> str:
    """Returns the digest of the concatenation of ``parts``, without concatenating them."""
    hasher = xxhash.xxh3_64()
    for part in parts:
        hasher.update(part)
    return str(hasher.hexdigest())


def digest_file(path: str) -> str:
    """Returns the digest of the regular file at ``path``."""
    return digest_file_stat(path)[0]


def digest_file_stat(path: str | bytes) -> tuple[str, os.stat_result]:
    """Returns the digest of the regular file at ``path`` and its stat, taken from the
    open file (so both describe the same file, and no second lookup is needed).

    The file is opened without blocking, so a FIFO or device swapped in after a
    directory scan can neither hang nor be read: it raises `OSError`.
    """
    fd = os.open(path, OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{os.fsdecode(path)} is not a regular file")
        view = read_buffer()
        n = os.readv(fd, (view,))
        if n == st.st_size and n < CHUNK_SIZE:
            return str(xxhash.xxh3_64_hexdigest(view[:n])), st
        hasher = xxhash.xxh3_64()
        while n:
            hasher.update(view[:n])
            n = os.readv(fd, (view,))
        return str(hasher.hexdigest()), st
    finally:
        os.close(fd)


_local = threading.local()


def read_buffer() -> memoryview:
    """This thread's read buffer: reading into one buffer rather than a new bytes
    object per file spares an allocation, and on big files the page faults of fresh
    memory, which cost more than the copy."""
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(CHUNK_SIZE))
    return view
