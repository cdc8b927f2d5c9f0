"""Building a manifest from a root: scan, reuse cached digests, hash the rest in parallel."""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from . import cache
from .digests import FileReadError as FileReadError
from .digests import hash_chunks, hash_found
from .manifest import Entry, Manifest
from .reuse import candidates, reuse_listings
from .scan import Found, ScanResult, check_root, scan, walk
from .workers import CHUNK_FILES, available_cpus

MAX_DEFAULT_JOBS = 8
"""Cap of the default number of hashing processes, so that a big machine does not fork
dozens of workers for one build (measured here on 2 CPUs only; pass ``jobs`` to go
beyond)."""


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
    listed: bool = True
    """False when no directory was listed: the cache showed every one unchanged, so
    only the files were stat'ed."""


def default_jobs() -> int:
    """Hashing processes used when ``jobs`` is not given: one per available CPU, at most
    `MAX_DEFAULT_JOBS`.

    Processes, not threads: hashing a small file is a handful of short system calls
    and threads spend them handing the GIL back and forth (two threads measured 0.84x
    to 1.02x one). Workers are forked only where that is safe (see `.workers`);
    elsewhere the build hashes in the calling thread whatever ``jobs`` says.
    """
    return min(available_cpus(), MAX_DEFAULT_JOBS)


@dataclass(slots=True)
class _Outcome:
    files: dict[str, Entry]
    keys: bytes
    """The keys of ``files``, packed in the same order."""
    hashed: int
    dirs: list[tuple[str, cache.DirKey]] | None
    skipped: list[tuple[str, str]]
    listed: bool = True
    ordered: bool = True
    """Whether ``files`` is sorted by logical path."""

    def finish(self, started: float) -> BuildResult:
        make = Manifest.from_sorted if self.ordered else Manifest.from_unordered
        return BuildResult(
            manifest=make(self.files),
            hashed=self.hashed,
            reused=len(self.files) - self.hashed,
            seconds=time.perf_counter() - started,
            skipped=self.skipped,
            listed=self.listed,
        )


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

    ``progress(done, total)`` is called with the number of files just done and the
    number in the tree.

    With a cache whose directories are all unchanged (and no symlink in the tree),
    the tree is not listed again: each cached file is stat'ed, and only those whose
    stat data changed are hashed. Otherwise the tree is scanned, and files whose
    stat data matches the cache keep their digest.
    """
    with _gc_paused(promote=True):
        # The work happens in a frame of its own, so its temporaries are freed before
        # the collector is back on.
        return _build(
            os.fspath(root),
            jobs=default_jobs() if jobs is None else jobs,
            patterns=list(exclude),
            include_hidden=include_hidden,
            excluded=[os.fspath(p) for p in exclude_paths],
            cache_file=os.fspath(cache_path) if cache_path is not None else None,
            progress=progress,
        )


def _build(
    root: str,
    *,
    jobs: int,
    patterns: list[str],
    include_hidden: bool,
    excluded: list[str],
    cache_file: str | None,
    progress: Callable[[int, int], None] | None,
) -> BuildResult:
    started = time.perf_counter()
    real_root = check_root(root)
    stamp = spare = None
    if cache_file is not None:
        excluded.append(cache_file)
        begun = cache.start(cache_file)
        if begun is not None:
            stamp, spare = begun
    try:
        return _build_with(
            real_root, jobs, patterns, include_hidden, excluded, cache_file, stamp, spare, progress
        ).finish(started)
    finally:
        if spare is not None:  # not used for the cache: left when nothing was saved
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spare)


def _build_with(
    real_root: str,
    jobs: int,
    patterns: list[str],
    include_hidden: bool,
    excluded: list[str],
    cache_file: str | None,
    stamp: int | None,
    spare: str | None,
    progress: Callable[[int, int], None] | None,
) -> _Outcome:
    previous = None
    options = _options(patterns, include_hidden, excluded)
    if cache_file is not None and stamp is not None:
        previous = cache.load(cache_file, real_root, options)
    outcome = None
    if previous is None:
        outcome = _hash_tree(real_root, patterns, include_hidden, excluded, jobs, stamp, progress)
    else:
        reused = reuse_listings(real_root, previous, jobs, stamp, progress)
        if reused is not None:
            files, keys, hashed = reused
            outcome = _Outcome(
                files, keys, hashed, previous.dirs, [], listed=False, ordered=previous.ordered
            )
    if outcome is None:
        assert previous is not None
        found = _scan(real_root, patterns, include_hidden, excluded)
        outcome = _assemble(found, candidates(previous), (), jobs, stamp, progress)
    files = outcome.files
    if cache_file is not None and stamp is not None and _changed(previous, outcome):
        cache.save(
            cache_file,
            real_root,
            options,
            stamp,
            list(files),
            outcome.keys,
            [e.digest for e in files.values()],
            outcome.dirs,
            ordered=outcome.ordered,
            spare=spare,
        )
    return outcome


def _hash_tree(
    real_root: str,
    patterns: list[str],
    include_hidden: bool,
    excluded: list[str],
    jobs: int,
    stamp: int | None,
    progress: Callable[[int, int], None] | None,
) -> _Outcome:
    """A cold build: files are hashed while the walk goes on, so workers start on the
    first directories while the parent still lists the others."""
    found = ScanResult(real_root)
    seen = 0

    def chunks() -> Iterator[list[Found]]:
        nonlocal seen
        for files in walk(
            found, exclude=patterns, include_hidden=include_hidden, exclude_paths=excluded
        ):
            seen += len(files)
            for i in range(0, len(files), CHUNK_FILES):
                yield files[i : i + CHUNK_FILES]

    report = None if progress is None else (lambda n: progress(n, seen))
    hashed = hash_chunks(chunks(), jobs, stamp, report)
    return _Outcome(
        dict(zip(hashed.paths, hashed.entries, strict=True)),
        b"".join(hashed.keys),
        len(hashed.paths),
        found.dirs if found.plain else None,
        found.skipped,
        ordered=False,
    )


def _options(patterns: list[str], include_hidden: bool, excluded: list[str]) -> str:
    """What, besides the tree, decides which files a scan finds: a cache made with
    other options is not used. (Absolute rather than real paths: two spellings of one
    output only cost a full build.)"""
    return repr((sorted(patterns), include_hidden, sorted(os.path.abspath(p) for p in excluded)))


def _changed(previous: cache.Cache | None, outcome: _Outcome) -> bool:
    """Tells whether the cache must be written: anything hashed, or a difference in
    files or directories from the cache read."""
    return (
        previous is None
        or outcome.hashed > 0
        or len(previous.paths) != len(outcome.files)
        or previous.dirs != outcome.dirs
    )


@contextlib.contextmanager
def _gc_paused(*, promote: bool = False) -> Iterator[None]:
    """Pauses the cyclic garbage collector: a build allocates an object or three per file,
    none of them cyclic, and collections triggered by them cost a third of the time.

    With ``promote``, every object is then moved to the oldest generation (what a young
    collection does to survivors, without scanning them): a full build's objects are a
    long-lived manifest, and the first young collection would otherwise scan them all,
    100,000 entries, for nothing.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            if promote:
                gc.freeze()
                gc.unfreeze()
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
    outcome = _assemble(
        found, candidates, changed, default_jobs() if jobs is None else jobs, None, None
    )
    keys = cache.split_keys(outcome.keys)
    return Refreshed(outcome.finish(started), dict(zip(outcome.files, keys, strict=True)))


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
    jobs: int,
    stamp: int | None,
    progress: Callable[[int, int], None] | None,
) -> _Outcome:
    """Reuses a candidate entry for each scanned file whose key equals the candidate's
    (for a candidate without a key: whose size matches) and that is not under a
    ``changed`` path; hashes the rest."""
    keys: dict[str, cache.Key] = {}
    files: dict[str, Entry | None] = {}
    todo: list[Found] = []
    get, stat_key = candidates.get, cache.stat_key
    for f in found.files:
        logical, path, st = f
        if st is None:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
        key = keys[logical] = stat_key(st)
        hit = get(logical)
        if (
            hit is not None
            and (hit[0] == key if hit[0] is not None else hit[1].size == st.st_size)
            and not (changed and _is_under(logical, changed))
        ):
            files[logical] = hit[1]
        else:
            files[logical] = None
            todo.append(f)
    total = len(found.files)
    if progress is not None and len(todo) < total:
        progress(total - len(todo), total)
    hashed = hash_found(todo, jobs, stamp, progress, total)
    done = {logical: (entry, key) for logical, entry, key in hashed}
    for logical, _, _ in todo:
        if logical in done:
            files[logical], keys[logical] = done[logical]
        else:
            del files[logical]
            keys.pop(logical, None)
    complete: dict[str, Entry] = files  # type: ignore[assignment]
    return _Outcome(
        complete,
        b"".join([keys[p] for p in complete]),
        len(todo),
        found.dirs if found.plain else None,
        found.skipped,
    )


def _is_under(logical_path: str, paths: Collection[str]) -> bool:
    """Tells whether ``logical_path`` or a directory above it is in ``paths``."""
    while True:
        if logical_path in paths:
            return True
        slash = logical_path.rfind("/")
        if slash < 0:
            return False
        logical_path = logical_path[:slash]
