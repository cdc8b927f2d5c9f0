"""Keeping a manifest fresh while files change: watchdog events -> debounce -> refresh.

This is the only module that imports watchdog, and it knows nothing of Tornado: new
manifests go to a callback, called on the watcher's own thread, so an adapter hands
them to its event loop (``IOLoop.add_callback``). Events only say *that* something
changed and which paths to re-hash; each rebuild re-scans the root with the filters
of a full build, so what the callback gets always equals a fresh build of the tree.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterable, Mapping

from watchdog import events
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from . import cache
from .build import refresh
from .errors import AssetverError, RootError
from .manifest import Manifest
from .scan import STATE_DIR, TEMP_PREFIX

log = logging.getLogger("assetver")

MAX_DELAY = 1.0
"""Seconds a steady stream of events may postpone a rebuild, so that changes made
while files keep changing still show within the issue's two-second bound."""

ALIVE_CHECK = 0.2
"""Seconds between two calls of the ``alive`` callable while nothing changes."""

POLL_INTERVAL = 0.5
"""Seconds between two snapshots of the root when inotify cannot be used."""

_EVENTS: list[type[FileSystemEvent]] = [
    events.FileCreatedEvent,
    events.FileModifiedEvent,
    events.FileClosedEvent,
    events.FileDeletedEvent,
    events.FileMovedEvent,
    events.DirCreatedEvent,
    events.DirDeletedEvent,
    events.DirMovedEvent,
]
"""Events that can change the manifest; the opens and closes of our own hashing are not."""

_LIMIT_ERRNOS = frozenset({errno.ENOSPC, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOSYS})
"""Errors meaning "no inotify for us" (watch or instance limits) rather than a bad root."""


class WatchError(AssetverError, RuntimeError):
    """The watcher cannot run in this process."""


def refuse_in_child(task_id: int | None) -> None:
    """Raises `WatchError` when ``task_id`` (``tornado.process.task_id()``) is set.

    Every forked worker would watch and re-hash the same root, and their manifests
    could disagree between requests; Tornado's autoreload refuses the same way.
    """
    if task_id is not None:
        raise WatchError(
            f"the assetver watcher cannot run in forked child {task_id}; run debug mode "
            "in one process (server.start(1)), as Tornado's autoreload requires"
        )


class Watcher:
    """Watches ``root`` and calls ``on_change(manifest)`` after each change to it.

    A burst of events (an editor's temp file and rename, a ``git checkout``) is
    coalesced until ``debounce`` seconds pass without a new one (or `MAX_DELAY`
    seconds after the first), then one rebuild re-hashes the changed files.
    ``on_change`` runs on the watcher's thread, and only when the manifest differs.
    ``manifest``, if given, replaces the initial full hash: its digests are kept for
    files whose stat data still equals ``keys`` (files without keys: whose size
    matches). ``exclude``, ``include_hidden`` and ``exclude_paths`` are those of
    `assetver.build_manifest`. With ``polling`` (or when inotify's limits are
    exhausted) the root is polled every `POLL_INTERVAL` seconds instead. With
    ``alive``, the watcher stops by itself once ``alive()`` returns False (checked
    every `ALIVE_CHECK` seconds): an adapter passes "is my event loop still open".
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        on_change: Callable[[Manifest], object],
        manifest: Manifest | None = None,
        keys: Mapping[str, cache.Key] | None = None,
        exclude: Iterable[str] = (),
        include_hidden: bool = False,
        exclude_paths: Iterable[str | os.PathLike[str]] = (),
        debounce: float = 0.05,
        polling: bool = False,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self._root = os.fspath(root)
        self._real_root = os.path.realpath(self._root)
        self._on_change = on_change
        self._manifest = manifest if manifest is not None else Manifest()
        self._exclude = tuple(exclude)
        self._include_hidden = include_hidden
        self._exclude_paths = tuple(os.path.realpath(p) for p in exclude_paths)
        self._debounce = debounce
        self._polling = polling
        self._alive = alive
        self._keys: dict[str, cache.Key] = dict(keys or {})
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._changed: set[str] = set()
        self._dirty = False
        self._first_event = self._last_event = 0.0
        self._started = self._stopping = False
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None

    @property
    def manifest(self) -> Manifest:
        """The latest manifest; current as soon as `start` returns."""
        return self._manifest

    @property
    def polling(self) -> bool:
        """True when the root is polled rather than watched with native events."""
        return self._polling

    def start(self) -> None:
        """Starts watching, then brings the manifest up to date before returning.

        Watching starts first so that a change made during the initial build is
        not lost. Raises `RootError` if the root is not a directory and
        `WatchError` in a process forked after the watcher was made.
        """
        if os.getpid() != self._pid:
            raise WatchError(
                "an assetver watcher cannot start in a process forked after it was made"
            )
        if self._started:
            raise WatchError("an assetver watcher can be started only once")
        self._started = True
        if not os.path.isdir(self._real_root):
            raise RootError(
                f"static root {self._root} is not a directory; "
                "pass the directory holding your assets"
            )
        # watchdog 7.1 warns from its reader thread when a directory appears while it
        # walks the parent (mkdir -p, git checkout). The warning is benign, but under
        # -W error, as in test suites, it kills that thread and all watching stops.
        warnings.filterwarnings(
            "ignore", "Callback with id .* already exists", RuntimeWarning, "watchdog"
        )
        self._observer = self._start_observer()
        try:
            self._refresh(set())
        except BaseException:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._run, name="assetver-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops watching and joins every thread the watcher started; idempotent."""
        if not self._started:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            if observer.is_alive():
                observer.join()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def __enter__(self) -> Watcher:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()

    def _start_observer(self) -> BaseObserver:
        if not self._polling:
            observer: BaseObserver | None = None
            try:
                observer = Observer()
                self._schedule(observer)
                return observer
            except OSError as e:
                if observer is not None:
                    observer.stop()
                if e.errno not in _LIMIT_ERRNOS:
                    raise
                log.warning(
                    "cannot watch %s with native file events (%s); polling every %s s instead. "
                    "Raise the limit (e.g. sysctl fs.inotify.max_user_watches) to fix it",
                    self._root,
                    e.strerror or e,
                    POLL_INTERVAL,
                )
                self._polling = True
        observer = PollingObserver(timeout=POLL_INTERVAL)
        self._schedule(observer)
        return observer

    def _schedule(self, observer: BaseObserver) -> None:
        observer.name = "assetver-observer"
        observer.schedule(_Handler(self), self._real_root, recursive=True, event_filter=_EVENTS)
        observer.start()

    def _notice(self, event: FileSystemEvent) -> None:
        paths = [self._logical(event.src_path)]
        if event.dest_path:
            paths.append(self._logical(event.dest_path))
        relevant = [p for p in paths if p is not None and self._matters(p)]
        if not relevant:
            return
        now = time.monotonic()
        with self._cond:
            if not self._dirty:
                self._dirty = True
                self._first_event = now
            self._last_event = now
            self._changed.update(relevant)
            self._cond.notify()

    def _logical(self, path: bytes | str) -> str | None:
        path = os.fsdecode(path)
        if path == self._real_root:
            return ""
        if not path.startswith(self._real_root + os.sep) or path in self._exclude_paths:
            return None
        return path[len(self._real_root) + 1 :].replace(os.sep, "/")

    def _matters(self, logical_path: str) -> bool:
        for name in logical_path.split("/"):
            if name.startswith(".") and (
                not self._include_hidden or name == STATE_DIR or name.startswith(TEMP_PREFIX)
            ):
                return False
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    if self._dirty:
                        due = min(
                            self._last_event + self._debounce,
                            self._first_event + max(self._debounce, MAX_DELAY),
                        )
                        wait = due - time.monotonic()
                        if wait <= 0:
                            break
                        self._cond.wait(wait)
                    elif self._alive is None:
                        self._cond.wait()
                    elif self._cond.wait(ALIVE_CHECK) or self._alive():
                        continue
                    else:
                        break
                if self._stopping or not self._dirty:
                    break
                changed, self._changed, self._dirty = self._changed, set(), False
            try:
                self._refresh(changed - {""})
            except Exception as e:
                # Keep the paths to re-hash for the rebuild the next event triggers.
                with self._cond:
                    self._changed |= changed
                if isinstance(e, (AssetverError, OSError)):
                    log.error("assetver watcher: cannot rebuild %s: %s", self._root, e)
                else:
                    log.exception("assetver watcher: cannot rebuild %s", self._root)
        self.stop()

    def _refresh(self, changed: set[str]) -> None:
        done = refresh(
            self._real_root,
            self._manifest,
            keys=self._keys,
            changed=changed,
            exclude=self._exclude,
            include_hidden=self._include_hidden,
            exclude_paths=self._exclude_paths,
        )
        self._keys = done.keys
        new = done.result.manifest
        if new == self._manifest:
            return
        self._manifest = new
        if self._thread is threading.current_thread():
            try:
                self._on_change(new)
            except Exception:
                log.exception("assetver watcher: on_change(%r) failed", new)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def dispatch(self, event: FileSystemEvent) -> None:
        self._watcher._notice(event)
