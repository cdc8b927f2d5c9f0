"""Building a manifest from a root: scan, reuse cached digests, hash the rest in parallel."""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat, starmap
from operator import attrgetter

from . import cache
from .errors import AssetverError
from .hashing import digest_file_stat
from .manifest import NO_EXTRA, Entry, Manifest
from .scan import Found, ScanResult, check_root, scan, walk
from .workers import CHUNK_FILES, Digested, available_cpus, digest_chunks

MAX_DEFAULT_JOBS = 8
"""Cap of the default number of hashing processes, so that a big machine does not fork
dozens of workers for one build (measured here on 2 CPUs only; pass ``jobs`` to go
beyond)."""


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
    elif previous.dirs is not None:
        outcome = _reuse_listings(real_root, previous, previous.dirs, jobs, stamp, progress)
    if outcome is None:
        assert previous is not None
        found = _scan(real_root, patterns, include_hidden, excluded)
        outcome = _assemble(found, _candidates(previous), (), jobs, stamp, progress)
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
    hashed = _hash_chunks(chunks(), jobs, stamp, report)
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


def _candidates(previous: cache.Cache) -> dict[str, tuple[cache.Key | None, Entry]]:
    """The cache's reusable entries; racy ones are left out (so they are hashed)."""
    racy = cache.RACY
    return {
        p: (k, Entry(d, n))
        for p, k, d, n in zip(
            previous.paths,
            cache.split_keys(previous.keys),
            previous.digests,
            previous.sizes,
            strict=True,
        )
        if k != racy
    }


def _reuse_listings(
    real_root: str,
    previous: cache.Cache,
    dirs: list[tuple[str, cache.DirKey]],
    jobs: int,
    stamp: int | None,
    progress: Callable[[int, int], None] | None,
) -> _Outcome | None:
    """Rebuilds from the cache without listing any directory, or returns None when a
    directory changed (then the tree must be scanned).

    Unchanged directories hold the same names as when the cache was made, so the
    cached files are the files: each is stat'ed, and hashed only if its key differs
    (a racy key differs from every key).
    """
    base = real_root.rstrip("/") + "/"
    stat, dir_key = os.stat, cache.dir_key
    paths, old = previous.paths, previous.keys
    try:
        listings = map(stat, map(base.__add__, [prefix for prefix, _ in dirs]))
        if list(map(dir_key, listings)) != [key for _, key in dirs]:
            return None
        # One chain of C iterators, no Python bytecode per file: this is the whole of
        # a no-change rebuild besides the stat calls themselves.
        stats = map(stat, map(base.__add__, paths))
        keys = b"".join(starmap(cache.key_packer(), map(_STAT_FIELDS, stats)))
    except OSError:
        return None
    digests, sizes = previous.digests, previous.sizes
    changed: list[int] = []
    if keys != old:
        new_keys, old_keys = cache.split_keys(keys), cache.split_keys(old)
        changed = [i for i, k in enumerate(new_keys) if k != old_keys[i]]
        total = len(paths)
        if progress is not None:
            progress(total - len(changed), total)
        todo: list[Found] = [(paths[i], base + paths[i], None) for i in changed]
        hashed = _hash(todo, jobs, stamp, progress, total)
        if len(hashed.paths) != len(todo):
            return None
        digests, sizes = list(digests), list(sizes)
        at = {paths[i]: i for i in changed}
        for logical, entry, key in hashed:
            i = at[logical]
            digests[i], sizes[i], new_keys[i] = entry.digest, entry.size, key
        keys = b"".join(new_keys)
    entries = map(partial(tuple.__new__, Entry), zip(digests, sizes, repeat(NO_EXTRA)))
    files = dict(zip(paths, entries, strict=True))
    return _Outcome(files, keys, len(changed), dirs, [], listed=False, ordered=previous.ordered)


_STAT_FIELDS = attrgetter("st_size", "st_mtime_ns", "st_ino", "st_ctime_ns")


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
    result = BuildResult(
        manifest=Manifest.from_sorted(outcome.files),
        hashed=outcome.hashed,
        reused=len(outcome.files) - outcome.hashed,
        seconds=time.perf_counter() - started,
        skipped=outcome.skipped,
    )
    keys = cache.split_keys(outcome.keys)
    return Refreshed(result, dict(zip(outcome.files, keys, strict=True)))


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
    done = {
        logical: (entry, key) for logical, entry, key in _hash(todo, jobs, stamp, progress, total)
    }
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


@dataclass(slots=True)
class _Hashed:
    """Files hashed, in the order their results came: three parallel lists, which cost
    less to fill and to sort by than dicts."""

    paths: list[str] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    keys: list[cache.Key] = field(default_factory=list)

    def __iter__(self) -> Iterator[tuple[str, Entry, cache.Key]]:
        return zip(self.paths, self.entries, self.keys, strict=True)


def _hash(
    todo: Sequence[Found],
    jobs: int,
    stamp: int | None,
    progress: Callable[[int, int], None] | None,
    total: int,
) -> _Hashed:
    report = None if progress is None else (lambda n: progress(n, total))
    chunks = [todo[i : i + CHUNK_FILES] for i in range(0, len(todo), CHUNK_FILES)]
    return _hash_chunks(chunks, jobs, stamp, report)


def _hash_chunks(
    chunks: Iterable[Sequence[Found]],
    jobs: int,
    stamp: int | None,
    report: Callable[[int], None] | None,
) -> _Hashed:
    """Hashes the files of ``chunks``, in worker processes when ``jobs`` and the amount
    of work allow, with keys by the racy rule of ``stamp``. Files that vanished since
    the scan are left out; an unreadable file raises `FileReadError`.

    Entries are made as results arrive, while workers are still busy, rather than
    after: that is most of the work left once the last file is hashed.
    """
    hashed = _Hashed()
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
