"""Content digests: XXH3-64 of a file's bytes as 16 lowercase hex characters.

This is the only module that imports xxhash. Files are read in fixed-size chunks into
one reused buffer, so a file of any size hashes in constant memory.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence

import xxhash

ALGORITHM = "xxh3_64"
"""The manifest's ``algorithm`` value for digests made here."""

CHUNK_SIZE = 1 << 20
"""Bytes read per system call; smaller files are read in a single call."""

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    """Returns the digest of ``data``."""
    return str(xxhash.xxh3_64_hexdigest(data))


def digest_file(path: str) -> str:
    """Returns the digest of the regular file at ``path``."""
    return digest_file_stat(path)[0]


def digest_file_stat(path: str | bytes) -> tuple[str, os.stat_result]:
    """Returns the digest of the regular file at ``path`` and its stat, taken from the
    open file (so both describe the same file, and no second lookup is needed).

    The file is opened without blocking, so a FIFO or device swapped in after a
    directory scan can neither hang nor be read: it raises `OSError`.
    """
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(f"{os.fsdecode(path)} is not a regular file")
        if st.st_size < CHUNK_SIZE:
            data = os.read(fd, st.st_size + 1)
            if len(data) == st.st_size:
                return str(xxhash.xxh3_64_hexdigest(data)), st
            hasher = xxhash.xxh3_64(data)
        else:
            hasher = xxhash.xxh3_64()
        with open(fd, "rb", buffering=0, closefd=False) as f:
            buf = bytearray(CHUNK_SIZE)
            view = memoryview(buf)
            while n := f.readinto(buf):
                hasher.update(view[:n])
        return str(hasher.hexdigest()), st
    finally:
        os.close(fd)


def digest_files(paths: Sequence[str | bytes]) -> list[tuple[str, os.stat_result] | None]:
    """Returns what `digest_file_stat` returns for each path, or None where it raised
    (call it again for the error: the caller decides what an unreadable file means).

    The common case, a small regular file, is inlined: most of a build's time is
    spent here, and a function call per file is a measurable share of hashing one.
    """
    out: list[tuple[str, os.stat_result] | None] = []
    append = out.append
    open_, fstat, read, close = os.open, os.fstat, os.read, os.close
    hexdigest, flags, is_reg = xxhash.xxh3_64_hexdigest, _OPEN_FLAGS, stat.S_ISREG
    chunk = CHUNK_SIZE
    slow: list[int] = []
    for path in paths:
        try:
            fd = open_(path, flags)
        except OSError:
            append(None)
            continue
        try:
            st = fstat(fd)
            if is_reg(st.st_mode) and st.st_size < chunk:
                data = read(fd, st.st_size + 1)
                if len(data) == st.st_size:
                    append((hexdigest(data), st))
                    continue
        except OSError:
            pass
        finally:
            close(fd)
        slow.append(len(out))
        append(None)
    for i in slow:
        with contextlib.suppress(OSError):
            out[i] = digest_file_stat(paths[i])
    return out
