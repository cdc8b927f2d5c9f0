"""Files written and read safely: atomic replacement, and paths that must be regular files.

Readers see the old file or the new one, never half of one; nothing assetver writes
ever replaces a device, a FIFO, a socket or a symlink, and nothing it reads can hang
on a FIFO.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .errors import OutputError
from .urls import TEMP_PREFIX

_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


_names = itertools.count()

CONTENT_MODE = 0o444
"""The mode of content-addressed files (hashed copies, variants): written once, read by
every server, never changed (a rebuild replaces, never edits, them)."""


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Writes every byte of ``data`` to ``fd`` (a short write is retried)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _new_temp(directory: str, mode: int = CONTENT_MODE) -> tuple[int, str]:
    """Creates a temporary file for a copy (cheaper than `temp_file`: no random name)."""
    path = f"{directory}/{TEMP_PREFIX}{os.getpid()}-{next(_names)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(path, flags, mode), path
    except FileNotFoundError:
        os.makedirs(directory, exist_ok=True)
        return os.open(path, flags, mode), path


def copy_file(source: str, target: str) -> None:
    """Replaces ``target`` with a copy of ``source`` atomically (in the kernel where it
    can: ``copy_file_range``, a reflink on filesystems that share extents)."""
    fd, tmp = _new_temp(os.path.dirname(target), 0o644)
    try:
        try:
            with open(source, "rb") as src:
                size = os.fstat(src.fileno()).st_size
                copied = 0
                copy_range = getattr(os, "copy_file_range", None)
                while copy_range is not None and copied < size:
                    n = copy_range(src.fileno(), fd, size - copied)
                    if not n:
                        break
                    copied += n
                if copied < size:
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.ftruncate(fd, 0)
                    src.seek(0)
                    while chunk := src.read(1 << 20):
                        write_all(fd, chunk)
        finally:
            os.close(fd)
        os.rename(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_copy(path: str, data: bytes | memoryview) -> bool:
    """Writes a content-addressed file (a hashed copy, a variant) unless it exists, and
    returns whether it wrote: a file named by the digest of its bytes never changes, so
    one that exists is already right.

    Written through a temporary file and a rename (see `copying`), so a kill leaves no
    partial file under the name; not fsynced here (see `sync_files`).
    """
    if os.path.lexists(path):
        return False
    with copying(path) as temp:
        write_all(temp.fd, data)
        temp.name = path
    return True


@dataclass(slots=True)
class _Copy:
    fd: int
    name: str


@contextlib.contextmanager
def copying(near: str) -> Iterator[_Copy]:
    """A temporary file beside ``near`` to write a content-addressed file into when its
    name is known only at the end: set ``name`` before leaving the block. The file then
    gets that name, unless a file of that name exists (it holds the same bytes)."""
    fd, tmp = _new_temp(os.path.dirname(near))
    copy = _Copy(fd, "")
    try:
        try:
            yield copy
        finally:
            os.close(fd)
        if copy.name and not os.path.lexists(copy.name):
            os.rename(tmp, copy.name)
            return
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.unlink(tmp)


def sync_files(directory: str) -> None:
    """Makes everything written under ``directory`` durable before a manifest that names
    it is written: one ``sync`` (rather than an fsync per file, which would cost
    milliseconds each on thousands of files; ``syncfs`` would take ctypes, whose import
    alone costs a command's start-up 20 ms)."""
    os.sync()


class Syncing:
    """`sync_files` of ``directory`` in a thread of its own (the system call releases the
    GIL), for a caller with other work to do before it needs the files durable."""

    def __init__(self, directory: str) -> None:
        import threading

        self._thread = threading.Thread(
            target=sync_files, args=(directory,), name="assetver-sync", daemon=True
        )
        self._thread.start()

    def join(self) -> None:
        self._thread.join()


def temp_file(directory: str) -> tuple[int, str]:
    """Creates an empty temporary file in ``directory`` (made if missing) with a random
    name and returns its descriptor, open for writing, and its path. (`tempfile` would
    do; importing it costs a whole process's start-up several milliseconds.)"""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        path = os.path.join(directory, f"{TEMP_PREFIX}{os.urandom(6).hex()}.tmp")
        try:
            return os.open(path, flags, 0o600), path
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot make a temporary file in {directory}")


def check_target(path: str, what: str) -> None:
    """Raises `.OutputError` unless ``path`` is absent or a regular file (not a symlink):
    a file assetver writes never replaces a device, a FIFO or a link. ``what`` names
    the path in the message (``"manifest"``)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise OutputError(
            f"cannot write {what} {path}: {e.strerror}; choose a writable location"
        ) from e
    if not stat.S_ISREG(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise OutputError(f"{what} {path} is {kind}; name a regular file or a new path")


def read_regular(path: str) -> bytes:
    """Returns the bytes of the regular file at ``path``.

    Opened without blocking, so a FIFO named by mistake cannot hang the caller: it
    raises `OSError` like any file that is not regular.
    """
    fd = os.open(path, _READ_FLAGS)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(0, "not a regular file", path)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def write_atomic(
    path: str,
    data: bytes | Sequence[bytes],
    *,
    durable: bool = True,
    temp: str | None = None,
    mode: int = 0o644,
) -> None:
    """Writes ``data`` (bytes, or a sequence of parts written one after the other) to
    ``path`` through a temporary file in the same directory (``temp``, an empty file
    made there earlier with `temp_file`, or a new one).

    The temporary file is renamed over ``path`` with `os.replace`, so a kill at any
    moment leaves either the previous file or the complete new one; with ``durable``
    (the default) it is fsynced first, and the directory after, so a power loss does
    too. Raises `.OutputError` when the directory cannot be written or ``path`` is
    not a regular file (see `check_target`).
    """
    check_target(path, "output")
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
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {e.strerror}; choose a writable location") from e
    if durable:
        sync_directory(directory)


def sync_directory(directory: str) -> None:
    """Makes the names in ``directory`` durable (a rename is not until its directory
    is synced); errors are ignored, as some filesystems cannot sync directories."""
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


@contextlib.contextmanager
def locked(state_dir: str) -> Iterator[None]:
    """Serialises builds into one output (a second waits for the first)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock: builds are not serialised
        yield
        return
    fd = os.open(os.path.join(state_dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
