"""Atomic file replacement: readers see the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence

from .errors import OutputError

TEMP_PREFIX = ".assetver-"
"""Prefix of temporary files, which scans leave out."""


def temp_file(directory: str) -> tuple[int, str]:
    """Creates an empty temporary file in ``directory`` (made if missing) and returns
    its descriptor, open for writing, and its path."""
    os.makedirs(directory, exist_ok=True)
    return tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".tmp", dir=directory)


def write_atomic(
    path: str, data: bytes | Sequence[bytes], *, durable: bool = True, temp: str | None = None
) -> None:
    """Writes ``data`` (bytes, or a sequence of parts written one after the other) to
    ``path`` through a temporary file in the same directory (``temp``, an empty file
    made there earlier with `temp_file`, or a new one).

    The temporary file is renamed over ``path`` with `os.replace`, so a kill at any
    moment leaves either the previous file or the complete new one; with ``durable``
    (the default) it is fsynced first, and the directory after, so a power loss does
    too. Raises `.OutputError` when the directory cannot be written.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        if temp is not None:
            fd, tmp = os.open(temp, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC), temp
        else:
            fd, tmp = temp_file(directory)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror}; choose a writable location") from e
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes):
                f.write(data)
            else:
                f.writelines(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {e.strerror}; choose a writable location") from e
    if not durable:
        return
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
