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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .atomic import TEMP_PREFIX as TEMP_PREFIX
from .cache import DirKey, dir_key
from .errors import RootError

log = logging.getLogger("assetver")

STATE_DIR = ".assetver"
"""Directory in the root holding the build's own state; never part of a manifest."""


Found = tuple[str, str, "os.stat_result | None"]
"""A regular file the scan accepted: (logical path, path to open, stat or None).

The stat is None for plain files: the directory entry's type says "regular file"
without a system call, and a cold build takes the stat from the open file instead.
"""


@dataclass(slots=True)
class ScanResult:
    root: str
    """The real path of the root."""
    files: list[Found] = field(default_factory=list)
    """Sorted by logical path."""
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


def _exclude_matcher(patterns: Iterable[str]) -> re.Pattern[str] | None:
    regexes = [fnmatch.translate(p.strip("/")) for p in patterns if p.strip("/")]
    return re.compile("|".join(regexes)) if regexes else None


def scan(
    root: str,
    *,
    exclude: Iterable[str] = (),
    include_hidden: bool = False,
    exclude_paths: Iterable[str] = (),
) -> ScanResult:
    """Lists the regular files under ``root``.

    ``exclude`` globs match a file's or directory's logical path or its bare name
    (``*.map``, ``src``, ``vendor/*``). Dotfiles and dot-directories are left out
    unless ``include_hidden``; the state directory, temporary files and the real
    paths in ``exclude_paths`` (the manifest, the cache) always are. Symlinks are
    followed only when their target is inside the root; links out of it and link
    loops are skipped with a warning. FIFOs, sockets and devices are skipped without
    being opened.
    """
    result = ScanResult(check_root(root))
    for files in walk(
        result, exclude=exclude, include_hidden=include_hidden, exclude_paths=exclude_paths
    ):
        result.files += files
    result.files.sort()
    return result


def walk(
    result: ScanResult,
    *,
    exclude: Iterable[str] = (),
    include_hidden: bool = False,
    exclude_paths: Iterable[str] = (),
) -> Iterator[list[Found]]:
    """Yields the files `scan` accepts, a directory's at a time, as it lists them.

    Nothing is sorted, and ``result.files`` is left alone: this is for hashing files
    while the walk goes on. ``result`` collects the rest (skipped entries, directories).
    """
    real_root = result.root
    inside = real_root.rstrip(os.sep) + os.sep
    excluded = {os.path.realpath(p) for p in exclude_paths}
    matcher = _exclude_matcher(exclude)
    root_st = os.stat(real_root)
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (real_root, "", frozenset({(root_st.st_dev, root_st.st_ino)}))
    ]
    dirs = result.dirs
    dirs.append(("", dir_key(root_st)))
    while stack:
        directory, prefix, ancestors = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as e:
            if not prefix:
                raise RootError(f"cannot read root {real_root}: {e.strerror}") from e
            result.skip(prefix.rstrip("/"), f"cannot list directory: {e.strerror}")
            continue
        files: list[Found] = []
        for entry in entries:
            name = entry.name
            if name[0] == "." and (
                not include_hidden or name == STATE_DIR or name.startswith(TEMP_PREFIX)
            ):
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
                if entry.is_symlink():
                    result.plain = False
                    target = os.path.realpath(path)
                    if not (target.startswith(inside) or target == real_root):
                        result.skip(logical, "symlink points outside the root")
                        continue
                    st = os.stat(path)
                elif entry.is_dir(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                else:
                    continue
            except FileNotFoundError:
                continue
            except OSError as e:
                result.skip(logical, f"cannot stat: {e.strerror}")
                continue
            if stat.S_ISREG(st.st_mode):
                if target not in excluded:
                    files.append((logical, path, st))
            elif stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    result.skip(logical, "symlink loop")
                else:
                    dirs.append((logical + "/", dir_key(st)))
                    stack.append((path, logical + "/", ancestors | {key}))
        if files:
            yield files


def check_root(root: str) -> str:
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
