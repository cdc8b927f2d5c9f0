"""Building a manifest from a root: scan, reuse cached digests, hash the rest in parallel."""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from . import cache
from .errors import AssetverError
from .hashing import digest_file_stat
from .manifest import Entry, Manifest
from .scan import Found, ScanResult, scan

BATCH_SIZE = 256
"""Files per task handed to a hashing thread; a future per file would cost more than
hashing a small file."""


class FileReadError(AssetverError, OSError):
    """A file under the root exists but cannot be read."""


@dataclass(frozen=True, slots=True)
class BuildResult:
    """A built manifest and what it took."""

    manifest: Manifest
    hashed: int
    """Files whose bytes were read and hashed."""
    reused: int
    """Files whose digest came from the cache."""
    seconds: float
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(logical path, reason) of entries left out with a warning."""


def default_jobs() -> int:
    """Hashing threads used when ``jobs`` is not given: one.

    Hashing a small file is a handful of short system calls, and threads spend them
    handing the GIL back and forth: on 100,000 small files two threads measured 0.84x
    to 1.02x the speed of one. Threads pay off only for large files, whose chunked
    reads release the GIL (1.4x with two threads on 8 MiB files): pass ``jobs`` then.
    """
    return 1


def build(
    root: str | os.PathLike[str],
    *,
    jobs: int | None = None,
    exclude: Iterable[str] = (),
    include_hidden: bool = False,
    exclude_paths: Iterable[str | os.PathLike[str]] = (),
    cache_path: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BuildResult:
    """Builds the manifest of ``root``; see `assetver.build_manifest` for the options.

    ``progress(done, total)`` is called, from worker threads too, with the number of
    files just done and the number in the tree.
    """
    with _gc_paused():
        started = time.perf_counter()
        cache_file = os.fspath(cache_path) if cache_path is not None else None
        excluded = [*exclude_paths, *([cache_file] if cache_file is not None else [])]
        found = _scan(root, exclude, include_hidden, excluded)
        real_root = os.path.realpath(root)
        stamp = None
        if cache_file is not None:
            stamp = cache.filesystem_now(os.path.dirname(os.path.abspath(cache_file)))
        cached = cache.load(cache_file, real_root) if cache_file and stamp is not None else {}

        def reusable(logical_path: str, key: cache.Key) -> Entry | None:
            hit = cached.get(logical_path)
            return Entry(hit[1], key[0]) if hit is not None and hit[0] == key else None

        result, keys = _assemble(found, reusable if cached else None, jobs, progress, started)
        unchanged = result.hashed == 0 and len(cached) == len(result.manifest)
        if cache_file is not None and stamp is not None and not unchanged:
            digests = {p: (keys[p], e.digest) for p, e in result.manifest.items()}
            cache.save(cache_file, real_root, stamp, digests)
        return result


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pauses the cyclic garbage collector: a build allocates an object or three per file,
    none of them cyclic, and collections triggered by them cost a third of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class Refreshed:
    """What `refresh` returns: the build, and the stat data to pass to the next refresh."""

    result: BuildResult
    keys: dict[str, cache.Key]


def refresh(
    root: str | os.PathLike[str],
    previous: Manifest,
    *,
    keys: Mapping[str, cache.Key] | None = None,
    changed: Collection[str] = (),
    jobs: int | None = None,
    exclude: Iterable[str] = (),
    include_hidden: bool = False,
    exclude_paths: Iterable[str | os.PathLike[str]] = (),
) -> Refreshed:
    """Rebuilds the manifest of ``root`` from ``previous``, re-hashing only what changed.

    The whole tree is re-scanned, so the filters are exactly those of `build` and
    moved or deleted directories need no special case; scanning only stats, which
    costs little next to hashing. A file keeps its entry from ``previous`` unless
    its logical path, or a directory above it, is in ``changed``, or its stat data
    differs from ``keys`` (those of the last refresh): events say what changed, and
    stat data catches what events missed. A file of ``previous`` without keys is
    trusted when its size matches, which is how a loaded manifest gives a head start.
    """
    with _gc_paused():
        return _refresh(
            root, previous, keys or {}, changed, jobs, exclude, include_hidden, exclude_paths
        )


def _refresh(
    root: str | os.PathLike[str],
    previous: Manifest,
    known: Mapping[str, cache.Key],
    changed: Collection[str],
    jobs: int | None,
    exclude: Iterable[str],
    include_hidden: bool,
    exclude_paths: Iterable[str | os.PathLike[str]],
) -> Refreshed:
    started = time.perf_counter()
    found = _scan(root, exclude, include_hidden, exclude_paths)

    def reusable(logical_path: str, key: cache.Key) -> Entry | None:
        old = previous.get(logical_path)
        if old is None or (changed and _is_under(logical_path, changed)):
            return None
        same = known[logical_path] == key if logical_path in known else old.size == key[0]
        return old if same else None

    return Refreshed(*_assemble(found, reusable, jobs, None, started))


def _scan(
    root: str | os.PathLike[str],
    exclude: Iterable[str],
    include_hidden: bool,
    exclude_paths: Iterable[str | os.PathLike[str]],
) -> ScanResult:
    return scan(
        os.fspath(root),
        exclude=exclude,
        include_hidden=include_hidden,
        exclude_paths=[os.fspath(p) for p in exclude_paths],
    )


def _assemble(
    found: ScanResult,
    reusable: Callable[[str, cache.Key], Entry | None] | None,
    jobs: int | None,
    progress: Callable[[int, int], None] | None,
    started: float,
) -> tuple[BuildResult, dict[str, cache.Key]]:
    """Takes each scanned file's entry from ``reusable`` or, failing that, hashes it;
    returns the result and the stat keys of the files in it. Without ``reusable``
    (a cold build) nothing is stat'ed before hashing: the open file gives its stat."""
    keys: dict[str, cache.Key] = {}
    reused: dict[str, Entry] = {}
    todo: list[Found] = found.files
    if reusable is not None:
        todo = []
        stat_key = cache.stat_key
        for f in found.files:
            logical, path, st = f
            try:
                key = keys[logical] = stat_key(st if st is not None else os.stat(path))
            except FileNotFoundError:
                continue
            entry = reusable(logical, key)
            if entry is None:
                todo.append(f)
            else:
                reused[logical] = entry
    total = len(found.files)
    report = None if progress is None else (lambda done: progress(done, total))
    if report is not None and reused:
        report(len(reused))
    hashed = _hash_all(todo, jobs or default_jobs(), report)
    files: dict[str, Entry] = {}
    for logical, _, _ in found.files:
        entry = reused.get(logical)
        if entry is None:
            done = hashed.get(logical)
            if done is None:
                continue
            digest, key = done
            keys[logical] = key
            entry = Entry(digest, key[0])
        files[logical] = entry
    result = BuildResult(
        manifest=Manifest.from_sorted(files),
        hashed=len(todo),
        reused=len(reused),
        seconds=time.perf_counter() - started,
        skipped=found.skipped,
    )
    return result, {p: keys[p] for p in files}


def _is_under(logical_path: str, paths: Collection[str]) -> bool:
    """Tells whether ``logical_path`` or a directory above it is in ``paths``."""
    while True:
        if logical_path in paths:
            return True
        slash = logical_path.rfind("/")
        if slash < 0:
            return False
        logical_path = logical_path[:slash]


def _hash_batch(
    batch: Sequence[Found], progress: Callable[[int], None] | None
) -> dict[str, tuple[str, cache.Key]]:
    out = {}
    stat_key = cache.stat_key
    for logical, path, _ in batch:
        try:
            digest, st = digest_file_stat(path)
        except FileNotFoundError:
            continue
        except OSError as e:
            reason = e.strerror or str(e)
            raise FileReadError(
                f"cannot read {path}: {reason}; fix its permissions or "
                f"exclude it with --exclude '{logical}'"
            ) from e
        out[logical] = (digest, stat_key(st))
    if progress is not None:
        progress(len(batch))
    return out


def _hash_all(
    todo: Sequence[Found], jobs: int, progress: Callable[[int], None] | None
) -> dict[str, tuple[str, cache.Key]]:
    if jobs <= 1 or len(todo) <= BATCH_SIZE:
        return _hash_batch(todo, progress)
    batches = [todo[i : i + BATCH_SIZE] for i in range(0, len(todo), BATCH_SIZE)]
    done: dict[str, tuple[str, cache.Key]] = {}
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="assetver-hash") as pool:
        for part in pool.map(_hash_batch, batches, [progress] * len(batches)):
            done.update(part)
    return done
