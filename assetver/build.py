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
        result, keys = _assemble(found, cached, (), jobs, progress, started)
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
    candidates = {p: (known.get(p), e) for p, e in previous.items()}
    return Refreshed(*_assemble(found, candidates, changed, jobs, None, started))


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
    candidates: Mapping[str, tuple[cache.Key | None, Entry]],
    changed: Collection[str],
    jobs: int | None,
    progress: Callable[[int, int], None] | None,
    started: float,
) -> tuple[BuildResult, dict[str, cache.Key]]:
    """Reuses a candidate entry for each scanned file whose stat key equals the
    candidate's (for a candidate without a key: whose size matches) and that is not
    under a ``changed`` path; hashes the rest. Returns the result and the stat keys
    of its files. Without candidates (a cold build) nothing is stat'ed before hashing:
    the open file gives its stat."""
    keys: dict[str, cache.Key] = {}
    files: dict[str, Entry | None] = {}
    todo: list[Found] = []
    if candidates:
        get = candidates.get
        for f in found.files:
            logical, path, st = f
            if st is None:
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue
            key = keys[logical] = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
            hit = get(logical)
            if (
                hit is not None
                and (hit[0] == key if hit[0] is not None else hit[1].size == key[0])
                and not (changed and _is_under(logical, changed))
            ):
                files[logical] = hit[1]
            else:
                files[logical] = None
                todo.append(f)
    else:
        todo = found.files
        files = dict.fromkeys(logical for logical, _, _ in todo)
    reused = len(files) - len(todo)
    total = len(found.files)
    report = None if progress is None else (lambda done: progress(done, total))
    if report is not None and reused:
        report(reused)
    hashed = _hash_all(todo, jobs or default_jobs(), report)
    for logical, _, _ in todo:
        done = hashed.get(logical)
        if done is None:
            del files[logical]
            keys.pop(logical, None)
        else:
            digest, key = done
            keys[logical] = key
            files[logical] = Entry(digest, key[0])
    result = BuildResult(
        manifest=Manifest.from_sorted(files),  # type: ignore[arg-type]
        hashed=len(todo),
        reused=reused,
        seconds=time.perf_counter() - started,
        skipped=found.skipped,
    )
    return result, keys


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
    for i, (logical, path, _) in enumerate(batch, 1):
        if progress is not None and i % BATCH_SIZE == 0:
            progress(BATCH_SIZE)
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
    if progress is not None and len(batch) % BATCH_SIZE:
        progress(len(batch) % BATCH_SIZE)
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
