"""Hashing the files a scan found into manifest entries and cache keys.

The layer between a build and `.workers`: chunks of found files go to the workers (or
are hashed here), results come back as `Entry` objects and packed keys, and a file
that cannot be read is told apart from one that vanished since the scan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from . import cache
from .errors import AssetverError
from .hashing import digest_file_stat
from .manifest import NO_EXTRA, Entry
from .scan import Found
from .workers import CHUNK_FILES, Digested, digest_chunks


class FileReadError(AssetverError, OSError):
    """A file under the root exists but cannot be read."""


@dataclass(slots=True)
class Hashed:
    """Files hashed, in the order their results came: three parallel lists, which cost
    less to fill and to sort by than dicts."""

    paths: list[str] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    keys: list[cache.Key] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[str, Entry, cache.Key]]:
        return zip(self.paths, self.entries, self.keys, strict=True)


def hash_found(
    todo: Sequence[Found],
    jobs: int,
    stamp: int | None,
    progress: Callable[[int, int], None] | None,
    total: int,
) -> Hashed:
    """Hashes ``todo``; ``progress(done, total)`` is told of every chunk."""
    report = None if progress is None else (lambda n: progress(n, total))
    chunks = [todo[i : i + CHUNK_FILES] for i in range(0, len(todo), CHUNK_FILES)]
    return hash_chunks(chunks, jobs, stamp, report)


def hash_chunks(
    chunks: Iterable[Sequence[Found]],
    jobs: int,
    stamp: int | None,
    report: Callable[[int], None] | None,
) -> Hashed:
    """Hashes the files of ``chunks``, in worker processes when ``jobs`` and the amount
    of work allow, with keys by the racy rule of ``stamp``. Files that vanished since
    the scan are left out; an unreadable file raises `FileReadError`.

    Entries are made as results arrive, while workers are still busy, rather than
    after: that is most of the work left once the last file is hashed.
    """
    hashed = Hashed()
    add_path, add_entry, add_key = hashed.paths.append, hashed.entries.append, hashed.keys.append
    new, extra = tuple.__new__, NO_EXTRA
    for chunk, results in digest_chunks(chunks, jobs, report, stamp_ns=stamp):
        for (logical, path, _), result in zip(chunk, results, strict=True):
            if result is None:
                result = _hash_again(logical, path, stamp)
                if result is None:
                    continue
            add_path(logical)
            add_entry(new(Entry, (result[0], result[1], extra)))
            add_key(result[2])
    return hashed


def _hash_again(logical: str, path: str, stamp: int | None) -> Digested:
    """Hashes a file that failed in a batch, to tell a vanished file (None) from an
    unreadable one (`FileReadError`)."""
    try:
        digest, st = digest_file_stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        reason = e.strerror or str(e)
        raise FileReadError(
            f"cannot read {path}: {reason}; fix its permissions or "
            f"exclude it with --exclude '{logical}'"
        ) from e
    return digest, st.st_size, cache.stat_key(st, stamp)
