"""Hashing in forked worker processes, fed through pipes while the build goes on.

Threads cannot speed up hashing small files: each file is a few short system calls,
and the GIL changes hands between them (two threads measured 0.84x to 1.02x one).
Forked processes share no GIL. The parent offers each chunk of paths to a worker's
pipe without blocking and hashes the chunk itself when every pipe is full, so the
work splits by speed rather than by count and neither side waits for the other.
Workers send their results back every few chunks, and the parent takes them in
between chunks of its own, so little is left to collect at the end.

A process that forks while another of its threads holds a lock leaves that lock held
in the child forever, so workers are forked only by a process with a single thread
(the CLI, an application at start-up); anywhere else every file is hashed in the
calling thread. There is no fork on Windows, and macOS does not support forking
without exec in general: both hash in the calling thread too.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import select
import signal
import stat
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from . import hashing
from .atomic import copying, write_copy
from .hashing import CHUNK_SIZE
from .scan import Found
from .statkey import Key, Stamp
from .urls import hashed_path

Digested = tuple[str, int, Key] | None
"""A file's digest, size and `.statkey.Key` (`.statkey.RACY` if it changed after the
build started), or None when it could not be read (hash it again in the caller for
the error)."""

CHUNK_FILES = 32
"""Files per message to a worker: small enough to fit in one atomic pipe write."""

_LENGTH = struct.Struct("<I")
_PIPE_BUF = getattr(select, "PIPE_BUF", 512)
FORK_AFTER = 0.005
"""Seconds of work after which workers are forked: forking and reaping a worker takes
1 to 2 ms, which a tree hashed in less than this would not win back."""

_PIPE_SIZE = 16 * 1024
"""Bytes a worker's work pipe holds: the files a worker may still have queued when
the parent runs out of work, so smaller means less waiting at the end."""

_RESULT_PIPE_SIZE = 1 << 20
"""Bytes a worker's result pipe holds, so that a worker seldom waits for the parent
to take its results."""

SEND_EVERY = 8
"""Chunks a worker hashes between two sends of results."""

RECEIVE_EVERY = 4
"""Chunks the parent handles between two looks at the workers' results: a look is a
system call, and results arrive every `SEND_EVERY` chunks anyway."""


def usable_jobs(jobs: int) -> int:
    """Returns ``jobs`` if worker processes may be forked here, else 1."""
    if jobs <= 1 or not hasattr(os, "fork") or sys.platform in ("darwin", "emscripten"):
        return 1
    return jobs if _single_threaded() else 1


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def _single_threaded() -> bool:
    """Tells whether the process has one thread, counting threads started outside
    Python too where the OS says (Linux)."""
    if threading.active_count() != 1:
        return False
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Threads:"):
                    return int(line.split()[1]) == 1
    except (OSError, ValueError):
        pass
    return True


@dataclass(frozen=True, slots=True)
class Job:
    """What happens to every file of a build: it is read from ``base`` + its logical
    path and hashed, its key made by ``stamp``'s racy rule, and with ``copy_base`` its
    hashed copy written there from the very bytes that were hashed (once: a copy that
    exists is left alone, as it holds the same bytes by construction)."""

    base: str
    stamp: Stamp
    copy_base: str | None = None


def digest_found(job: Job, files: Sequence[Found]) -> list[Digested]:
    """Does ``job`` on ``files`` in the calling thread."""
    return _digest_paths(job, [f[0] for f in files])


def _digest_paths(job: Job, logicals: Sequence[str]) -> list[Digested]:
    """Does ``job`` on ``logicals`` here; small files inline, the rest in `_digest_big`.

    Most of a build's time is spent in this loop, and for a small file the Python
    around the system calls is a quarter of it: no call, tuple or lookup is spared.
    """
    out: list[Digested] = []
    append = out.append
    open_, fstat, readv, close, is_reg = os.open, os.fstat, os.readv, os.close, stat.S_ISREG
    hexdigest, flags, chunk = hashing.hexdigest, hashing.OPEN_FLAGS, CHUNK_SIZE
    key, base, copy_base = job.stamp.key, job.base, job.copy_base
    view = hashing.read_buffer()
    buffers = (view,)
    slow: list[int] = []
    for logical in logicals:
        try:
            fd = open_(base + logical, flags)
        except OSError:
            append(None)
            continue
        try:
            st = fstat(fd)
            size = st.st_size
            if is_reg(st.st_mode) and size < chunk and readv(fd, buffers) == size:
                digest = hexdigest(view[:size])
                if copy_base is not None:
                    write_copy(copy_base + hashed_path(logical, digest), view[:size])
                append((digest, size, key(st)))
                continue
        except OSError:
            pass
        finally:
            close(fd)
        slow.append(len(out))
        append(None)
    for i in slow:
        out[i] = _digest_big(job, logicals[i])
    return out


def _digest_big(job: Job, logical: str) -> Digested:
    """Hashes (and copies) a file too big for one read, or one that changed while read;
    None when that fails (the parent tries again with `digest_one` for the error)."""
    try:
        return digest_one(job, logical)
    except OSError:
        return None


def digest_one(job: Job, logical: str) -> tuple[str, int, Key]:
    """Does ``job`` on one file, in chunks of constant memory; raises `OSError`."""
    path = job.base + logical
    if job.copy_base is None:
        digest, st = hashing.digest_file_stat(path)
    else:
        with copying(job.copy_base + logical) as temp:
            digest, st = hashing.digest_file_stat(path, temp.fd)
            temp.name = job.copy_base + hashed_path(logical, digest)
    return digest, st.st_size, job.stamp.key(st)


@dataclass(slots=True)
class _Worker:
    pid: int
    work_fd: int
    result_fd: int
    pending: deque[Sequence[Found]] = field(default_factory=deque)
    """Chunks sent and not yet answered, oldest first."""
    received: bytearray = field(default_factory=bytearray)


def digest_chunks(
    chunks: Iterable[Sequence[Found]],
    job: Job,
    jobs: int,
    progress: Callable[[int], None] | None = None,
) -> Iterator[tuple[Sequence[Found], list[Digested]]]:
    """Yields each chunk of ``chunks`` with the results of doing ``job`` on its files,
    in no particular order.

    Workers (``jobs - 1`` of them, when `usable_jobs` allows) are forked once the
    work has taken `FORK_AFTER` seconds and more remains, so a small tree never
    pays for a fork. ``progress(n)`` is called with the number of files of every
    chunk hashed here or handed to a worker. Closing the iterator early kills the
    workers.
    """
    workers: list[_Worker] = []
    try:
        turn = 0
        fork_at = time.perf_counter() + FORK_AFTER
        for index, chunk in enumerate(chunks, 1):
            if jobs > 1 and time.perf_counter() >= fork_at:
                jobs = usable_jobs(jobs)
                if jobs > 1:
                    workers = _start(jobs - 1, job)
                jobs = 1
            if workers and _offer(workers, turn, chunk):
                turn += 1
            else:
                yield chunk, digest_found(job, chunk)
            if progress is not None:
                progress(len(chunk))
            if workers and index % RECEIVE_EVERY == 0:
                for worker in workers:
                    yield from _receive(worker, job, block=False)
        for worker in workers:
            if worker.work_fd >= 0:
                os.close(worker.work_fd)
                worker.work_fd = -1
        for worker in workers:
            yield from _receive(worker, job, block=True)
    finally:
        _kill(workers)


def _offer(workers: list[_Worker], turn: int, chunk: Sequence[Found]) -> bool:
    """Writes ``chunk``'s paths to the first worker, from ``turn`` on, whose pipe has
    room; False when none has. Writes of at most PIPE_BUF bytes are all or nothing."""
    payload = "\0".join([f[0] for f in chunk]).encode("utf-8", "surrogateescape")
    message = _LENGTH.pack(len(payload)) + payload
    if len(message) > _PIPE_BUF:
        return False
    n = len(workers)
    for i in range(n):
        worker = workers[(turn + i) % n]
        if worker.work_fd < 0:
            continue
        try:
            os.write(worker.work_fd, message)
        except BlockingIOError:
            continue
        except OSError:  # the worker died: what it was sent is hashed here at the end
            os.close(worker.work_fd)
            worker.work_fd = -1
            continue
        worker.pending.append(chunk)
        return True
    return False


def _receive(
    worker: _Worker, job: Job, *, block: bool
) -> Iterator[tuple[Sequence[Found], list[Digested]]]:
    """Yields the chunks a worker has answered: those whose results have arrived, or,
    with ``block``, all of them, reaping the worker. Chunks a worker failed to answer
    are hashed here."""
    if worker.result_fd < 0:
        return
    if block:
        os.set_blocking(worker.result_fd, True)
    data = worker.received
    while True:
        try:
            got = os.read(worker.result_fd, _RESULT_PIPE_SIZE)
        except BlockingIOError:
            break
        if not got:
            os.close(worker.result_fd)
            worker.result_fd = -1
            break
        data += got
        if not block:
            break
    at = 0
    while len(data) - at >= _LENGTH.size:
        (length,) = _LENGTH.unpack_from(data, at)
        end = at + _LENGTH.size + length
        if end > len(data):
            break
        answers = _load(memoryview(data)[at + _LENGTH.size : end])
        at = end
        if answers is None or len(answers) > len(worker.pending):
            _kill([worker])  # answers out of step: trust none of this worker's
            break
        for answer in answers:
            chunk = worker.pending.popleft()
            yield chunk, answer if len(answer) == len(chunk) else digest_found(job, chunk)
    del data[:at]
    if worker.result_fd < 0:
        if worker.pid:
            with contextlib.suppress(ChildProcessError):  # reaped by someone else's handler
                os.waitpid(worker.pid, 0)
            worker.pid = 0
        while worker.pending:
            chunk = worker.pending.popleft()
            yield chunk, digest_found(job, chunk)


def _load(frame: memoryview) -> list[list[Digested]] | None:
    try:
        answers = marshal.loads(frame)
    except (EOFError, ValueError, TypeError):
        return None
    if not (isinstance(answers, list) and all(isinstance(a, list) for a in answers)):
        return None
    return answers


def _start(count: int, job: Job) -> list[_Worker]:
    workers: list[_Worker] = []
    try:
        for _ in range(count):
            work_r, work_w = os.pipe()
            result_r, result_w = os.pipe()
            with contextlib.suppress(AttributeError, OSError):
                import fcntl  # here: there is no fcntl where there is no fork

                fcntl.fcntl(work_w, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
                fcntl.fcntl(result_w, fcntl.F_SETPIPE_SZ, _RESULT_PIPE_SIZE)
            try:
                pid = os.fork()
            except OSError:
                for fd in (work_r, work_w, result_r, result_w):
                    os.close(fd)
                raise
            if pid == 0:  # pragma: no cover - runs in the child, which never returns
                _child(work_r, result_w, [work_w, result_r, *_fds(workers)], job)
            os.close(work_r)
            os.close(result_w)
            os.set_blocking(work_w, False)
            os.set_blocking(result_r, False)
            workers.append(_Worker(pid, work_w, result_r))
    except OSError:
        pass  # no more processes or pipes: the parent and the workers started do it all
    return workers


def _fds(workers: list[_Worker]) -> list[int]:
    return [fd for w in workers for fd in (w.work_fd, w.result_fd) if fd >= 0]


def _child(  # pragma: no cover
    work_fd: int, result_fd: int, inherited: list[int], job: Job
) -> None:
    """A worker's whole life: hash the paths it is sent until EOF, sending results
    every `SEND_EVERY` chunks, then exit without running any of the parent's cleanup
    (atexit, buffers, finalizers)."""
    status = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for fd in inherited:
            os.close(fd)
        answers: list[list[Digested]] = []
        with open(work_fd, "rb") as source, open(result_fd, "wb") as sink:
            while header := source.read(_LENGTH.size):
                (length,) = _LENGTH.unpack(header)
                logicals = source.read(length).decode("utf-8", "surrogateescape").split("\0")
                answers.append(_digest_paths(job, logicals))
                if len(answers) == SEND_EVERY:
                    _send(sink, answers)
                    answers = []
            _send(sink, answers)
        status = 0
    finally:
        os._exit(status)


def _send(sink: BinaryIO, answers: list[list[Digested]]) -> None:  # pragma: no cover
    frame = marshal.dumps(answers)
    sink.write(_LENGTH.pack(len(frame)) + frame)
    sink.flush()


def _kill(workers: list[_Worker]) -> None:
    for worker in workers:
        for fd in (worker.work_fd, worker.result_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        worker.work_fd = worker.result_fd = -1
        if worker.pid:
            with contextlib.suppress(OSError):
                os.kill(worker.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(worker.pid, 0)
            worker.pid = 0
