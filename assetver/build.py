"""Building a manifest from a root: list what changed, reuse cached digests, hash the
rest in parallel (and, for a compiled output, copy what is hashed)."""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat

from . import cache as cache_file
from .cache import Cache, Listing
from .errors import VANISHED, FileReadError, OutputError
from .hashing import read_file
from .manifest import NO_EXTRA, Entry, Manifest
from .scan import ALL_FILES, Found, ScanOptions, ScanResult, check_root, walk
from .statkey import RACY, DirKey, Key, Stamp, key_of, read_stamp, size_of, split_keys
from .workers import CHUNK_FILES, Digested, Job, available_cpus, digest_chunks, digest_one

MAX_DEFAULT_JOBS = 8
"""Cap of the default number of hashing processes, so that a big machine does not fork
dozens of workers for one build (measured here on 2 CPUs only; pass ``jobs`` to go
beyond)."""

Progress = Callable[[int, int | None], None]
"""``progress(done, total)``: ``done`` files more are done; ``total`` is the number in
the tree, or None while a cold build is still finding them."""


@dataclass(frozen=True, slots=True)
class BuildResult:
    """A built manifest and what it took."""

    manifest: Manifest
    cache: Cache
    """What the next build of the same root can reuse (`.cache.save` writes it)."""
    digested: int
    """Files whose bytes were read and hashed."""
    reused: int
    """Files whose digest came from the cache."""
    seconds: float
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(logical path, reason) of entries left out with a warning."""
    relisted: int = 0
    """Directories listed: 0 when the cache showed every one unchanged, so only the
    files were stat'ed; on a rebuild, those that changed."""
    kept: dict[str, bytes] = field(default_factory=dict)
    """The bytes of the files ``keep`` asked for, of those read by this build."""
    unchanged: bool = False
    """True when the tree is exactly as the ``previous`` cache recorded it."""

    @property
    def listed(self) -> bool:
        """Whether any directory was listed."""
        return self.relisted > 0


def default_jobs() -> int:
    """Hashing processes used when ``jobs`` is not given: one per available CPU, at most
    `MAX_DEFAULT_JOBS`.

    Processes, not threads: hashing a small file is a handful of short system calls
    and threads spend them handing the GIL back and forth (two threads measured 0.84x
    to 1.02x one). Workers are forked only where that is safe (see `.workers`);
    elsewhere the build hashes in the calling thread whatever ``jobs`` says.
    """
    return min(available_cpus(), MAX_DEFAULT_JOBS)


def build(
    root: str | os.PathLike[str],
    *,
    options: ScanOptions = ALL_FILES,
    jobs: int | None = None,
    previous: Cache | None = None,
    stamp: Stamp | None = None,
    copy_to: str | None = None,
    keep: Callable[[str], bool] | None = None,
    progress: Progress | None = None,
    only: Collection[str] | None = None,
) -> BuildResult:
    """Builds the manifest of ``root``.

    ``options`` say which files count; ``jobs`` is the number of hashing processes
    (see `default_jobs`). With ``previous`` (the ``cache`` of an earlier result),
    files whose stat key is unchanged keep their digest, and when the cache's
    directories are unchanged they are not listed again. ``stamp`` is the clock the
    racy rule compares with (`.statkey.read_stamp`; by default the wall clock with its
    margin). With ``copy_to``, each file hashed also gets its hashed copy written
    there, from the bytes that were hashed. Files for which ``keep(logical)`` is true
    are read in this process instead, never copied, and their bytes returned in
    ``kept`` (stylesheets to rewrite). ``only`` (with ``previous``) names the logical
    paths that may have changed, as a watcher's events say: just those are looked at,
    and every other file keeps its cached entry unlooked-at, so a later full build must
    catch what the events missed.
    """
    started = time.perf_counter()
    real_root = check_root(os.fspath(root))
    job = Job(
        real_root.rstrip("/") + "/",
        stamp if stamp is not None else read_stamp(real_root),
        None if copy_to is None else copy_to.rstrip("/") + "/",
    )
    with _gc_paused():
        run = _Run(job, default_jobs() if jobs is None else jobs, keep, progress)
        found = None
        if previous is not None and not (only is not None and previous.dirs is not None):
            found = cache_file.listing(real_root, previous)
        if previous is None:
            outcome = run.cold(real_root, options)
        elif only is not None and previous.dirs is not None:
            outcome = run.targeted(real_root, options, previous, only)
        elif found is None:
            outcome = run.rescan(real_root, options, previous)
        else:
            outcome = run.relist(real_root, options, previous, found)
    files = outcome.files
    if outcome.dirs is not None:
        outcome.dirs = cache_file.trusted_dirs(outcome.dirs, job.stamp)
    paths = list(files)
    new = Cache(paths, outcome.keys, [files[p].digest for p in paths], outcome.dirs)
    unchanged = previous is not None and outcome.digested == 0 and _same(previous, new)
    if unchanged:
        assert previous is not None
        new = previous
    return BuildResult(
        manifest=Manifest.from_unordered(files),
        cache=new,
        digested=outcome.digested,
        reused=len(files) - outcome.digested,
        seconds=time.perf_counter() - started,
        skipped=outcome.skipped,
        relisted=outcome.relisted,
        kept=run.kept,
        unchanged=unchanged,
    )


def _same(a: Cache, b: Cache) -> bool:
    return a.keys == b.keys and a.paths == b.paths and a.dirs == b.dirs


@dataclass(slots=True)
class _Outcome:
    files: dict[str, Entry]
    keys: bytes
    """The keys of ``files``, packed in the same order."""
    digested: int
    dirs: list[tuple[str, DirKey]] | None
    skipped: list[tuple[str, str]]
    relisted: int = 0


class _Run:
    """One build's hashing: chunks to the workers (or here), kept files read here."""

    def __init__(
        self, job: Job, jobs: int, keep: Callable[[str], bool] | None, progress: Progress | None
    ) -> None:
        self.job, self.jobs, self.keep, self.progress = job, jobs, keep, progress
        self.kept: dict[str, bytes] = {}

    def cold(self, real_root: str, options: ScanOptions) -> _Outcome:
        """A build with no cache: files are hashed while the walk goes on, so workers
        start on the first directories while the parent still lists the others."""
        found = ScanResult(real_root)
        later: list[Found] = []

        def chunks() -> Iterator[list[Found]]:
            for files in walk(found, options):
                if self.keep is not None:
                    later.extend(f for f in files if self.keep(f[0]))
                    files = [f for f in files if not self.keep(f[0])]
                for i in range(0, len(files), CHUNK_FILES):
                    yield files[i : i + CHUNK_FILES]

        paths, entries, keys = self._hash(chunks(), None)
        self._read_kept(later, paths, entries, keys)
        return _Outcome(
            dict(zip(paths, entries, strict=True)),
            b"".join(keys),
            len(paths),
            found.dirs if found.plain else None,
            found.skipped,
            len(found.dirs),
        )

    def rescan(self, real_root: str, options: ScanOptions, previous: Cache) -> _Outcome:
        """A build whose cache has no usable listings: the tree is walked, and files whose
        key matches the cache keep their digest."""
        found = ScanResult(real_root)
        files = [f for batch in walk(found, options) for f in batch]
        outcome = self._reuse(files, [], b"", previous, found)
        outcome.relisted = len(found.dirs)
        return outcome

    def relist(
        self, real_root: str, options: ScanOptions, previous: Cache, listing: Listing
    ) -> _Outcome:
        """A build from the cache's listings: only changed directories are listed."""
        found = ScanResult(real_root)
        if not listing.relist:
            outcome = self._reuse_listed(listing.paths, listing.keys, previous)
            outcome.dirs = list(listing.dirs)
            return outcome
        found.dirs = list(listing.dirs)
        walked = [f for batch in walk(found, options, listing.relist, listing.known) for f in batch]
        outcome = self._reuse(walked, listing.paths, listing.keys, previous, found)
        outcome.relisted = len(found.dirs) - len(listing.dirs)
        return outcome

    def targeted(
        self, real_root: str, options: ScanOptions, previous: Cache, only: Collection[str]
    ) -> _Outcome:
        """A build that looks only at ``only``: each path's directory is listed again (a
        directory named is walked whole), the files found there stat'ed; the rest of the
        cache is taken as it is."""
        assert previous.dirs is not None
        gone = tuple(p + "/" for p in only)
        relist = {p[: p.rfind("/") + 1] for p in only}
        relist |= {d for d in gone if os.path.isdir(real_root + "/" + d)}
        dirs = [(d, k) for d, k in previous.dirs if d not in relist and not d.startswith(gone)]
        known = frozenset(d for d, _ in dirs) | relist
        found = ScanResult(real_root)
        found.dirs = list(dirs)
        walked = [f for batch in walk(found, options, sorted(relist), known) for f in batch]
        keep = [
            (p, k)
            for p, k in zip(previous.paths, split_keys(previous.keys), strict=True)
            if p[: p.rfind("/") + 1] not in relist and not p.startswith(gone) and p not in only
        ]
        walked += [(p, self.job.base + p, None) for p, k in keep if k == RACY]  # stat them
        keep = [(p, k) for p, k in keep if k != RACY]
        outcome = self._reuse(
            walked, [p for p, _ in keep], b"".join(k for _, k in keep), previous, found
        )
        outcome.relisted = len(found.dirs) - len(dirs)
        return outcome

    def _reuse_listed(self, paths: list[str], keys: bytes, previous: Cache) -> _Outcome:
        """The cached files, every directory unchanged: same paths, compared by index."""
        digests, sizes = previous.digests, previous.sizes()
        changed = [] if keys == previous.keys else cache_file.changed_indexes(previous.keys, keys)
        total = len(paths)
        if not changed:
            return _Outcome(_entries(paths, digests, sizes), keys, 0, None, [])
        self._report(total - len(changed), total)
        todo = [(paths[i], self.job.base + paths[i], None) for i in changed]
        got = self._hash_list(todo, total)
        files = _entries(paths, digests, sizes)
        new_keys = split_keys(keys)
        at = {p: i for i, p in enumerate(paths)}
        for logical, (entry, key) in got.items():
            files[logical] = entry
            new_keys[at[logical]] = key
        for i in changed:
            if paths[i] not in got:
                del files[paths[i]]
                new_keys[i] = b""
        return _Outcome(files, b"".join(new_keys), len(todo), None, [])

    def _reuse(
        self,
        walked: list[Found],
        listed: list[str],
        listed_keys: bytes,
        previous: Cache,
        found: ScanResult,
    ) -> _Outcome:
        """Files found by a walk (and those of unchanged directories, with their keys):
        each keeps the cached digest when its key is the cached one."""
        cached = dict(
            zip(
                previous.paths,
                zip(split_keys(previous.keys), previous.digests, strict=True),
                strict=True,
            )
        )
        candidates: list[tuple[str, Key]] = list(zip(listed, split_keys(listed_keys), strict=True))
        for logical, path, st in walked:
            if st is None:
                try:
                    st = os.stat(path)
                except VANISHED:
                    continue
            candidates.append((logical, key_of(st)))
        files: dict[str, Entry] = {}
        keys: dict[str, Key] = {}
        todo: list[Found] = []
        for logical, key in candidates:
            hit = cached.get(logical)
            if hit is not None and hit[0] == key and key != RACY:
                files[logical] = Entry(hit[1], size_of(key))
                keys[logical] = key
            else:
                todo.append((logical, self.job.base + logical, None))
        total = len(candidates)
        self._report(total - len(todo), total)
        for logical, (entry, key) in self._hash_list(todo, total).items():
            files[logical], keys[logical] = entry, key
        return _Outcome(
            files,
            b"".join([keys[p] for p in files]),
            len(todo),
            found.dirs if found.plain else None,
            found.skipped,
        )

    def _hash_list(self, todo: Sequence[Found], total: int) -> dict[str, tuple[Entry, Key]]:
        later: list[Found] = []
        if self.keep is not None:
            later = [f for f in todo if self.keep(f[0])]
            todo = [f for f in todo if not self.keep(f[0])]
        chunks = [todo[i : i + CHUNK_FILES] for i in range(0, len(todo), CHUNK_FILES)]
        paths, entries, keys = self._hash(chunks, total)
        self._read_kept(later, paths, entries, keys)
        return dict(zip(paths, zip(entries, keys, strict=True), strict=True))

    def _hash(
        self, chunks: Iterator[list[Found]] | list[Sequence[Found]], total: int | None
    ) -> tuple[list[str], list[Entry], list[Key]]:
        """Hashes the files of ``chunks``; files that vanished are left out, an unreadable
        one raises `.FileReadError`. Entries are made as results arrive, while workers
        are still busy: that is most of the work left once the last file is hashed."""
        paths: list[str] = []
        entries: list[Entry] = []
        keys: list[Key] = []
        add_path, add_entry, add_key = paths.append, entries.append, keys.append
        new, extra = tuple.__new__, NO_EXTRA
        report = None if self.progress is None else (lambda n: self._report(n, total))
        for chunk, results in digest_chunks(iter(chunks), self.job, self.jobs, report):
            for (logical, _, _), result in zip(chunk, results, strict=True):
                if result is None:
                    result = self._hash_again(logical)
                    if result is None:
                        continue
                add_path(logical)
                add_entry(new(Entry, (result[0], result[1], extra)))
                add_key(result[2])
        return paths, entries, keys

    def _hash_again(self, logical: str) -> Digested:
        """Hashes a file that failed in a batch, to tell a vanished file (None) from an
        unreadable one (`.FileReadError`) or an unwritable output (`.OutputError`)."""
        try:
            return digest_one(self.job, logical)
        except VANISHED:
            return None
        except OutputError:
            raise
        except OSError as e:
            path = self.job.base + logical
            if e.filename and not os.fspath(e.filename).startswith(self.job.base):
                raise OutputError(f"cannot write {e.filename}: {e.strerror}") from e
            reason = e.strerror or str(e)
            raise FileReadError(
                f"cannot read {path}: {reason}; fix its permissions or "
                f"exclude it with --exclude '{logical}'"
            ) from e

    def _read_kept(
        self, files: list[Found], paths: list[str], entries: list[Entry], keys: list[Key]
    ) -> None:
        for logical, _, _ in files:
            try:
                data, digest, st = read_file(self.job.base + logical)
            except VANISHED:
                continue
            except OSError as e:
                raise FileReadError(
                    f"cannot read {self.job.base + logical}: {e.strerror or e}; fix its "
                    f"permissions or exclude it with --exclude '{logical}'"
                ) from e
            self.kept[logical] = data
            paths.append(logical)
            entries.append(Entry(digest, len(data)))
            keys.append(self.job.stamp.key(st) if st.st_size == len(data) else RACY)

    def _report(self, done: int, total: int | None) -> None:
        if self.progress is not None and done:
            self.progress(done, total)


def _entries(paths: list[str], digests: list[str], sizes: list[int]) -> dict[str, Entry]:
    """Entries made in one chain of C iterators: a no-change rebuild makes 100,000."""
    make = partial(tuple.__new__, Entry)
    return dict(zip(paths, map(make, zip(digests, sizes, repeat(NO_EXTRA))), strict=True))


def build_cached(
    root: str | os.PathLike[str],
    cache_path: str,
    *,
    options: ScanOptions = ALL_FILES,
    jobs: int | None = None,
    copy_to: str | None = None,
    keep: Callable[[str], bool] | None = None,
    progress: Progress | None = None,
    only: Collection[str] | None = None,
) -> BuildResult:
    """`build` with its cache read from, and saved to, the file ``cache_path`` (written
    only when it changed; its directory is where the racy rule's clock is read)."""
    real_root = check_root(os.fspath(root))
    options = options.with_excluded(cache_path)
    fingerprint = options.fingerprint
    previous = cache_file.load(cache_path, real_root, fingerprint)
    stamp = read_stamp(real_root, os.path.dirname(os.path.abspath(cache_path)))
    result = build(
        real_root,
        options=options,
        jobs=jobs,
        previous=previous,
        stamp=stamp,
        copy_to=copy_to,
        keep=keep,
        progress=progress,
        only=only,
    )
    if result.cache is not previous:
        cache_file.save(cache_path, real_root, fingerprint, result.cache)
    return result


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pauses the cyclic garbage collector: a build allocates an object or three per
    file, none of them cyclic, and collections triggered by them cost a third of the
    time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
