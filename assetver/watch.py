"""Keeping a build fresh while files change: watchdog events -> debounce -> rebuild.

This is the only module that imports watchdog, and it knows neither Tornado nor what a
rebuild is: the caller passes ``rebuild``, called on the watcher's own thread after
each burst of changes, and hands what it makes to its event loop itself. Events only
say *that* something changed; the rebuild's own stat keys and directory keys say what.

The watcher does not go blind: the root is checked every `ALIVE_CHECK` seconds, and a
root that was deleted and made again, replaced by a symlink, or whose symlink now
points elsewhere is watched anew; where inotify cannot watch every directory (its
watch limit) the root is polled instead, with one warning.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
import types
import warnings
from collections.abc import Callable

from watchdog import events
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .errors import AssetverError, RootError, WatchError
from .scan import ALL_FILES, ScanOptions

log = logging.getLogger("assetver")

MAX_DELAY = 1.0
"""Seconds a steady stream of events may postpone a rebuild, so that changes made
while files keep changing still show within two seconds."""

ALIVE_CHECK = 0.2
"""Seconds between two checks of the root (and of ``alive``) while nothing changes."""

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

Rebuild = Callable[["frozenset[str] | None"], "float | None"]
"""Rebuilds from the tree: given the logical paths events named since the last rebuild
(None: anything may have changed), returns in how many seconds to rebuild again even
without an event (to verify, or for files too recent to prove yet), or None."""


def refuse_in_child(task_id: int | None) -> None:
    """Raises `.WatchError` when ``task_id`` (``tornado.process.task_id()``) is set.

    Every forked worker would watch and re-hash the same root, and their manifests
    could disagree between requests; Tornado's autoreload refuses the same way.
    """
    if task_id is not None:
        raise WatchError(
            f"the assetver watcher cannot run in forked child {task_id}; run debug mode "
            "in one process (server.start(1)), as Tornado's autoreload requires"
        )


class Watcher:
    """Watches ``root`` and calls ``rebuild()`` after each change to it.

    A burst of events (an editor's temp file and rename, a ``git checkout``) is
    coalesced until ``debounce`` seconds pass without a new one (or `MAX_DELAY`
    seconds after the first), then ``rebuild`` runs once, on the watcher's thread.
    ``options`` say which paths matter (the scan's). With ``polling`` (or when
    inotify's limits are too low for the tree) the root is polled every
    `POLL_INTERVAL` seconds instead. With ``alive``, the watcher stops by itself once
    ``alive()`` returns False: an adapter passes "is my event loop still open".
    ``directories``, if known, is how many directories the tree has, to tell whether
    inotify watches them all.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        rebuild: Rebuild,
        options: ScanOptions = ALL_FILES,
        debounce: float = 0.05,
        polling: bool = False,
        alive: Callable[[], bool] | None = None,
        directories: int = 0,
    ) -> None:
        self._root = os.fspath(root)
        self._rebuild = rebuild
        self._options = options
        self._debounce = debounce
        self._polling = polling
        self._alive = alive
        self._directories = directories
        self._pid = os.getpid()
        self._cond = threading.Condition()
        self._dirty = False
        self._changed: set[str] | None = None
        self._first_event = self._last_event = 0.0
        self._again: float | None = None
        self._started = self._stopping = False
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None
        self._watched: tuple[str, int, int] | None = None
        self._lost = False

    @property
    def polling(self) -> bool:
        """True when the root is polled rather than watched with native events."""
        return self._polling

    def start(self) -> None:
        """Starts watching, then rebuilds once before returning, so that a change made
        while the caller built is not lost. Raises `.RootError` if the root is not a
        directory and `.WatchError` in a process forked after the watcher was made."""
        if os.getpid() != self._pid:
            raise WatchError(
                "an assetver watcher cannot start in a process forked after it was made"
            )
        if self._started:
            raise WatchError("an assetver watcher can be started only once")
        self._started = True
        if not os.path.isdir(self._root):
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
            self._run_rebuild(None)
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
        self._stop_observer()
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

    def _identity(self) -> tuple[str, int, int] | None:
        """The real root and its (device, inode), or None while it does not exist."""
        try:
            real = os.path.realpath(self._root)
            st = os.stat(real)
        except OSError:
            return None
        return (real, st.st_dev, st.st_ino) if os.path.isdir(real) else None

    def _start_observer(self) -> BaseObserver:
        self._watched = self._identity()
        if self._watched is None:
            raise RootError(f"static root {self._root} does not exist")
        if not self._polling:
            observer: BaseObserver | None = None
            try:
                before = _inotify_watches()
                observer = Observer()
                self._schedule(observer)
                added = _inotify_watches() - before
                if 0 <= added < self._directories:
                    raise OSError(errno.ENOSPC, f"only {added} of {self._directories} directories")
                return observer
            except OSError as e:
                if observer is not None:
                    observer.stop()
                    if observer.is_alive():
                        observer.join()
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
        assert self._watched is not None
        observer.name = "assetver-observer"
        observer.schedule(_Handler(self), self._watched[0], recursive=True, event_filter=_EVENTS)
        observer.start()

    def _stop_observer(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            if observer.is_alive():
                observer.join()

    def _notice(self, event: FileSystemEvent) -> None:
        watched = self._watched
        if watched is None:
            return
        paths = [event.src_path, event.dest_path] if event.dest_path else [event.src_path]
        if event.event_type in ("deleted", "moved") and os.fsdecode(event.src_path) == watched[0]:
            self._lost = True  # its inode number may be reused by the new root: not a tell
        logicals = [self._logical(watched[0], os.fsdecode(p)) for p in paths]
        relevant = [p for p in logicals if p and self._options.keeps(p)]
        if not relevant and "" not in logicals:
            return
        self._mark_dirty(relevant if "" not in logicals else None)

    def _mark_dirty(self, paths: list[str] | None) -> None:
        now = time.monotonic()
        with self._cond:
            if not self._dirty:
                self._dirty = True
                self._first_event = now
                self._changed = set()
            if paths is None or self._changed is None:
                self._changed = None
            else:
                self._changed.update(paths)
            self._last_event = now
            self._cond.notify()

    @staticmethod
    def _logical(real_root: str, path: str) -> str | None:
        """The logical path of an event's path ("" for the root), or None outside it."""
        if path == real_root:
            return ""
        if not path.startswith(real_root + os.sep):
            return None
        return path[len(real_root) + 1 :].replace(os.sep, "/")

    def _check_root(self) -> None:
        """Watches the root anew when it is no longer the directory being watched."""
        now = self._identity()
        if now is None or (now == self._watched and not self._lost):
            return
        self._lost = False
        log.warning("assetver watcher: %s changed under it; watching it again", self._root)
        self._stop_observer()
        try:
            self._observer = self._start_observer()
        except (OSError, AssetverError) as e:
            log.error("assetver watcher: cannot watch %s again: %s", self._root, e)
            self._watched = None
            return
        self._mark_dirty(None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping:
                    now = time.monotonic()
                    if self._dirty:
                        due = min(
                            self._last_event + self._debounce,
                            self._first_event + max(self._debounce, MAX_DELAY),
                        )
                    elif self._again is not None:
                        due = self._again
                    else:
                        due = now + ALIVE_CHECK
                    wait = due - now
                    if wait <= 0 and (self._dirty or self._again is not None):
                        break
                    if self._cond.wait(min(max(wait, 0.0), ALIVE_CHECK)) or self._dirty:
                        continue
                    if self._alive is not None and not self._alive():
                        self._stopping = True
                        break
                    self._cond.release()
                    try:
                        self._check_root()
                    finally:
                        self._cond.acquire()
                if self._stopping:
                    break
                self._dirty = False
                changed = None if self._changed is None else frozenset(self._changed)
                self._changed = None
                self._again = None
            try:
                self._run_rebuild(changed)
            except Exception as e:
                if isinstance(e, (AssetverError, OSError)):
                    log.error("assetver watcher: cannot rebuild %s: %s", self._root, e)
                else:
                    log.exception("assetver watcher: cannot rebuild %s", self._root)
        self._stop_observer()

    def _run_rebuild(self, changed: frozenset[str] | None) -> None:
        again = self._rebuild(changed)
        if again is not None:
            with self._cond:
                due = time.monotonic() + again
                self._again = due if self._again is None else min(self._again, due)


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    def dispatch(self, event: FileSystemEvent) -> None:
        self._watcher._notice(event)


def _inotify_watches() -> int:
    """Counts the inotify watches this process holds (Linux), -1 elsewhere: watchdog
    ignores a failed watch on a subdirectory, so the count is how a watch limit shows."""
    total = 0
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return -1
    for fd in fds:
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/self/fdinfo/{fd}", "rb") as f:
                total += sum(1 for line in f if line.startswith(b"inotify wd:"))
        except OSError:
            continue
    return total
