"""Hashing a long list of files in several processes.

Threads do not help: hashing a small file is a handful of short system calls, and
threads spend them handing the GIL back and forth (measured: two threads are slower
than one). Processes do. The workers are plain ``python -c`` subprocesses that import
only `assetver.hashing`, fed NUL-separated paths on stdin: unlike `multiprocessing`'s
spawn, they never re-import the caller's ``__main__`` (a Tornado app, a test runner).
Any trouble with a worker falls back to hashing its share in this process.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from .hashing import digest_file_stat

Key = tuple[int, int, int, int]
Result = tuple[str, Key] | OSError | None
"""(digest, stat key), or the error reading the file, or None when it vanished."""

_PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_WORKER = "from assetver.workers import serve; serve()"


PROGRESS_EVERY = 1024


def hash_files(
    paths: Sequence[str], processes: int, progress: Callable[[int], None] | None = None
) -> list[Result]:
    """Hashes ``paths`` in ``processes`` processes (this one included), in order.

    ``progress(n)`` is called as files are done (at least every `PROGRESS_EVERY`).
    """
    if processes <= 1 or not sys.executable:
        return hash_here(paths, progress)
    share = -(-len(paths) // processes)
    slices = [paths[i : i + share] for i in range(0, len(paths), share)]
    workers = [_Worker(part) for part in slices[1:]]
    results = hash_here(slices[0], progress)
    for worker, part in zip(workers, slices[1:], strict=True):
        done = worker.results()
        if done is None:
            done = hash_here(part, progress)
        elif progress is not None:
            progress(len(part))
        results.extend(done)
    return results


def hash_here(paths: Sequence[str], progress: Callable[[int], None] | None = None) -> list[Result]:
    """Hashes ``paths`` in this process, in order."""
    out: list[Result] = []
    for i, path in enumerate(paths, 1):
        if progress is not None and i % PROGRESS_EVERY == 0:
            progress(PROGRESS_EVERY)
        try:
            digest, st = digest_file_stat(path)
        except FileNotFoundError:
            out.append(None)
        except OSError as e:
            out.append(e)
        else:
            out.append((digest, (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)))
    if progress is not None and len(paths) % PROGRESS_EVERY:
        progress(len(paths) % PROGRESS_EVERY)
    return out


class _Worker:
    """One ``python -c`` subprocess hashing a share of the paths, read by a thread."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = paths
        self._out: bytes | None = None
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                p for p in (_PACKAGE_PARENT, os.environ.get("PYTHONPATH")) if p
            ),
        }
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-c", _WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=env,
            )
        except OSError:
            self._proc = None
            return
        data = b"\0".join(os.fsencode(p) for p in paths)
        self._thread = threading.Thread(
            target=self._communicate, args=(data,), name="assetver-worker", daemon=True
        )
        self._thread.start()

    def _communicate(self, data: bytes) -> None:
        assert self._proc is not None
        try:
            out, _ = self._proc.communicate(data)
        except OSError:
            self._proc.kill()
            self._proc.wait()
            return
        if self._proc.returncode == 0:
            self._out = out

    def results(self) -> list[Result] | None:
        """The worker's results, or None when it failed (the caller hashes them)."""
        if self._proc is None:
            return None
        self._thread.join()
        if self._out is None:
            return None
        lines = self._out.split(b"\n")
        if len(lines) != len(self.paths) + 1 or lines[-1] != b"":
            return None
        results: list[Result] = []
        for path, line in zip(self.paths, lines, strict=False):
            if line == b"-":
                results.append(None)
            elif line.startswith(b"!"):
                errno_, _, message = line[2:].decode().partition(" ")
                results.append(OSError(int(errno_), message, path))
            else:
                digest, size, mtime, ino, ctime = line.decode().split(" ")
                results.append((digest, (int(size), int(mtime), int(ino), int(ctime))))
        return results


def serve() -> None:
    """The worker's side: NUL-separated paths on stdin, one result line each on stdout."""
    gc.disable()
    paths = [os.fsdecode(p) for p in sys.stdin.buffer.read().split(b"\0") if p]
    lines = []
    for result in hash_here(paths):
        if result is None:
            lines.append("-")
        elif isinstance(result, OSError):
            message = (result.strerror or str(result)).replace("\n", " ")
            lines.append(f"! {result.errno or 0} {message}")
        else:
            digest, (size, mtime, ino, ctime) = result
            lines.append(f"{digest} {size} {mtime} {ino} {ctime}")
    sys.stdout.write("".join(line + "\n" for line in lines))
