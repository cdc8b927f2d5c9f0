"""Walking the root: which files belong in the manifest, under which logical path.

Logical paths keep the bytes of the names on disk (no Unicode normalisation): the
server has to open exactly that file, and on Linux an NFC and an NFD spelling are
two different files. Names that are not valid UTF-8 cannot be requested through
Tornado's URL decoding, so they are skipped with a warning.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import stat
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field

from .errors import VANISHED, RootError
from .statkey import DirKey, dir_key
from .urls import is_hidden, is_internal

log = logging.getLogger("assetver")


Found = tuple[str, str, "os.stat_result | None"]
"""A regular file the scan accepted: (logical path, path to open, stat or None).

The stat is None for plain files: the directory entry's type says "regular file"
without a system call, and a build takes the stat from the open file instead.
"""


@dataclass(frozen=True, slots=True)
class ScanOptions:
    """What, besides the tree, decides which files a scan finds.

    ``exclude`` globs match a file's or directory's logical path or its bare name
    (``*.map``, ``src``, ``vendor/*``). Dotfiles and dot-directories are left out
    unless ``include_hidden``; assetver's state directory and temporary files always
    are, and so are the files at ``exclude_paths`` (a manifest or cache in the root).
    """

    exclude: tuple[str, ...] = ()
    include_hidden: bool = False
    exclude_paths: tuple[str, ...] = ()
    """Absolute paths, as given (see `make`)."""

    @classmethod
    def make(
        cls,
        *,
        exclude: Iterable[str] = (),
        include_hidden: bool = False,
        exclude_paths: Iterable[str | os.PathLike[str]] = (),
    ) -> ScanOptions:
        return cls(
            tuple(exclude),
            include_hidden,
            tuple(sorted({os.path.abspath(os.fspath(p)) for p in exclude_paths})),
        )

    def with_excluded(self, *paths: str) -> ScanOptions:
        """These options, also leaving out ``paths``."""
        return ScanOptions.make(
            exclude=self.exclude,
            include_hidden=self.include_hidden,
            exclude_paths=(*self.exclude_paths, *paths),
        )

    @property
    def fingerprint(self) -> str:
        """Equal for options that find the same files: a cache made with others is not
        used. (Absolute rather than real paths: two spellings of one output only cost a
        full build.)"""
        return repr((sorted(self.exclude), self.include_hidden, list(self.exclude_paths)))

    def matcher(self) -> re.Pattern[str] | None:
        regexes = [fnmatch.translate(p.strip("/")) for p in self.exclude if p.strip("/")]
        return re.compile("|".join(regexes)) if regexes else None

    def keeps_name(self, name: str) -> bool:
        """Tells whether a file or directory called ``name`` may be listed at all."""
        return not (name[0] == "." and (not self.include_hidden or is_internal(name)))

    def keeps(self, logical_path: str) -> bool:
        """Tells whether a logical path passes the name rules and the globs (a watcher's
        question about an event); `walk` applies the same rules name by name."""
        if is_hidden(logical_path) and not all(
            self.keeps_name(name) for name in logical_path.split("/")
        ):
            return False
        matcher = self.matcher()
        if matcher is None:
            return True
        prefix = ""
        for name in logical_path.split("/"):
            prefix += name
            if matcher.match(prefix) or matcher.match(name):
                return False
            prefix += "/"
        return True


ALL_FILES = ScanOptions()
"""The default options: every file but dotfiles and assetver's own."""


@dataclass(slots=True)
class ScanResult:
    root: str
    """The real path of the root."""
    files: list[Found] = field(default_factory=list)
    """Sorted by logical path (`scan`); in listing order (`walk`)."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(logical path, reason) of entries left out with a warning."""
    dirs: list[tuple[str, DirKey]] = field(default_factory=list)
    """(logical path + "/", or "" for the root; stat key taken before listing it) of
    every directory listed."""
    plain: bool = True
    """No symlink and nothing skipped: the directories' listings alone decide which
    files there are, so unchanged directories mean unchanged names."""

    def skip(self, logical_path: str, reason: str) -> None:
        log.warning("skipped %s: %s", logical_path, reason)
        self.skipped.append((logical_path, reason))
        self.plain = False


def scan(root: str, options: ScanOptions) -> ScanResult:
    """Lists the regular files under ``root`` that ``options`` keep.

    Symlinks are followed only when their target is inside the root; links out of it
    and link loops are skipped with a warning. FIFOs, sockets and devices are skipped
    without being opened; entries that vanish or change type while the scan runs are
    left out as vanished.
    """
    result = ScanResult(check_root(root))
    for files in walk(result, options):
        result.files += files
    result.files.sort()
    return result


def walk(
    result: ScanResult,
    options: ScanOptions,
    start: Iterable[str] = ("",),
    known: Collection[str] = (),
) -> Iterator[list[Found]]:
    """Yields the files `scan` accepts, a directory's at a time, as it lists them.

    Nothing is sorted, and ``result.files`` is left alone: this is for hashing files
    while the walk goes on. ``result`` collects the rest (skipped entries,
    directories). ``start`` names the directories (logical path + "/", "" for the root)
    to walk from; subdirectories in ``known`` are neither listed nor recorded (the
    caller has them from a cache).
    """
    real_root = result.root
    inside = real_root.rstrip(os.sep) + os.sep
    excluded = {os.path.realpath(p) for p in options.exclude_paths}
    matcher = options.matcher()
    keeps_name = options.keeps_name
    root_st = os.stat(real_root)
    root_id = (root_st.st_dev, root_st.st_ino)
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = []
    for prefix in start:
        path = os.path.join(real_root, prefix) if prefix else real_root
        try:
            st = os.stat(path)
        except VANISHED:
            continue
        if not stat.S_ISDIR(st.st_mode):
            continue
        stack.append((path.rstrip(os.sep), prefix, frozenset({root_id})))
        result.dirs.append((prefix, dir_key(st)))
    dirs = result.dirs
    while stack:
        directory, prefix, ancestors = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except VANISHED:
            continue
        except OSError as e:
            if not prefix:
                raise RootError(f"cannot read root {real_root}: {e.strerror}") from e
            result.skip(prefix.rstrip("/"), f"cannot list directory: {e.strerror}")
            continue
        files: list[Found] = []
        for entry in entries:
            name = entry.name
            if not keeps_name(name):
                continue
            logical = prefix + name
            if not name.isascii():
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:
                    shown = logical.encode("utf-8", "backslashreplace").decode()
                    result.skip(shown, "name is not UTF-8")
                    continue
            if matcher is not None and (matcher.match(logical) or matcher.match(name)):
                continue
            path = entry.path
            try:
                if entry.is_file(follow_symlinks=False):
                    if path not in excluded:
                        files.append((logical, path, None))
                    continue
                target = path
                if entry.is_symlink():
                    result.plain = False
                    target = os.path.realpath(path)
                    if not (target.startswith(inside) or target == real_root):
                        result.skip(logical, "symlink points outside the root")
                        continue
                    inner = os.path.relpath(target, real_root).replace(os.sep, "/")
                    if inner != "." and not all(map(keeps_name, inner.split("/"))):
                        result.skip(logical, "symlink points to a hidden file")
                        continue
                    st = os.stat(path)
                elif entry.is_dir(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                else:
                    continue
            except VANISHED:
                continue
            except OSError as e:
                result.skip(logical, f"cannot stat: {e.strerror}")
                continue
            if stat.S_ISREG(st.st_mode):
                if target not in excluded:
                    files.append((logical, path, st))
            elif stat.S_ISDIR(st.st_mode) and logical + "/" not in known:
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    result.skip(logical, "symlink loop")
                else:
                    dirs.append((logical + "/", dir_key(st)))
                    stack.append((path, logical + "/", ancestors | {key}))
        if files:
            yield files


def check_root(root: str) -> str:
    """Returns the real path of ``root``; raises `.RootError` unless it is a directory."""
    if not root:
        raise RootError("static root is empty; pass the directory holding your assets")
    real_root = os.path.realpath(root)
    if not os.path.exists(real_root):
        raise RootError(
            f"static root {root} does not exist; pass the directory holding your assets"
        )
    if not os.path.isdir(real_root):
        raise RootError(
            f"static root {root} is not a directory; pass the directory holding your assets"
        )
    return real_root
