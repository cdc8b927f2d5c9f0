"""Content digests: XXH3-64 of a file's bytes as 16 lowercase hex characters, and the
Subresource Integrity value of served bytes.

This is the only module that imports xxhash. Files are read in fixed-size chunks into
one buffer per thread, reused, so a file of any size hashes in constant memory; the
same loop can write what it reads to a copy, so that a copy holds exactly the bytes
that were hashed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterable

import xxhash

from .atomic import write_all

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


def integrity(data: bytes | memoryview) -> str:
    """Returns the Subresource Integrity value (``sha384-<base64>``) of ``data``."""
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode("ascii")


def digest_file(path: str) -> str:
    """Returns the digest of the regular file at ``path``."""
    return digest_file_stat(path)[0]


def digest_file_stat(path: str | bytes, copy_fd: int | None = None) -> tuple[str, os.stat_result]:
    """Returns the digest of the regular file at ``path`` and its stat, taken from the
    open file (so both describe the same file, and no second lookup is needed).

    With ``copy_fd``, every byte read is also written there: the copy holds exactly
    the bytes hashed, whatever happens to the file meanwhile. The file is opened
    without blocking, so a FIFO or device swapped in after a directory scan can
    neither hang nor be read: it raises `OSError`.
    """
    fd = os.open(path, OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{os.fsdecode(path)} is not a regular file")
        view = read_buffer()
        n = os.readv(fd, (view,))
        if n == st.st_size and n < CHUNK_SIZE and copy_fd is None:
            return str(xxhash.xxh3_64_hexdigest(view[:n])), st
        hasher = xxhash.xxh3_64()
        while n:
            hasher.update(view[:n])
            if copy_fd is not None:
                write_all(copy_fd, view[:n])
            n = os.readv(fd, (view,))
        return str(hasher.hexdigest()), st
    finally:
        os.close(fd)


def read_file(path: str) -> tuple[bytes, str, os.stat_result]:
    """Returns the bytes of the regular file at ``path``, their digest and the stat of
    the open file: for files whose bytes the caller keeps (stylesheets to rewrite)."""
    fd = os.open(path, OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{path} is not a regular file")
        parts = []
        while chunk := os.read(fd, max(st.st_size + 1, 1 << 16)):
            parts.append(chunk)
        data = b"".join(parts)
    finally:
        os.close(fd)
    return data, digest_bytes(data), st


_local = threading.local()


def read_buffer() -> memoryview:
    """This thread's read buffer: reading into one buffer rather than a new bytes
    object per file spares an allocation, and on big files the page faults of fresh
    memory, which cost more than the copy."""
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(CHUNK_SIZE))
    return view
