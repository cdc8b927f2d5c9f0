"""Retention: which builds' hashed copies an output keeps for pages rendered before a
deploy, and removing the others.

Every build of an output records its manifest in ``DIR/.assetver/builds/<digest>.json``
(touched when a build repeats it, so its age counts from the last build). A build is
retained while it is the current one, one of the ``keep`` most recent others, or younger
than ``keep_for`` seconds; a hashed copy or variant is removed once no retained build
names it, and never while it is a current file's name.
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from .atomic import locked, read_regular, write_atomic
from .errors import OutputError
from .hashing import digest_bytes
from .http import SUFFIXES
from .urls import BUILDS_DIR, MANIFEST_NAME, STATE_DIR, is_digest, state_manifest


def snapshot(output: str, text: bytes) -> None:
    """Records a build of ``output`` whose manifest is ``text``."""
    path = os.path.join(output, STATE_DIR, BUILDS_DIR, digest_bytes(text) + ".json")
    if os.path.exists(path):
        os.utime(path)
    else:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomic(path, text)


def _read(path: str) -> bytes | None:
    try:
        return read_regular(path)
    except OSError:
        return None


def prune(output: str, *, keep: int = 3, keep_for: float = 3600.0) -> int:
    """Removes the hashed copies and variants that no retained build of ``output`` names
    (builds beyond the newest ``keep`` and older than ``keep_for`` seconds; the current
    build is always retained) and returns how many files it removed."""
    builds_dir = os.path.join(output, STATE_DIR, BUILDS_DIR)
    try:
        names = [n for n in os.listdir(builds_dir) if n.endswith(".json") and is_digest(n[:-5])]
    except FileNotFoundError:
        return 0
    current = _read(state_manifest(output))
    current_name = digest_bytes(current) + ".json" if current is not None else None
    aged = sorted(((os.stat(os.path.join(builds_dir, n)).st_mtime, n) for n in names), reverse=True)
    now = time.time()
    kept, dropped = [], []
    earlier = 0
    for mtime, name in aged:
        if name == current_name:
            kept.append(name)
        elif earlier < keep or now - mtime < keep_for:
            kept.append(name)
            earlier += 1
        else:
            dropped.append(name)
    if not dropped:
        return 0
    alive: set[str] = set()
    if current is not None:
        for logical, entry in json.loads(current).get("files", {}).items():
            alive.add(logical)
            alive.update(logical + SUFFIXES[c] for c in entry.get("variants", {}) if c in SUFFIXES)
    for name in kept:
        alive |= _files_of(os.path.join(builds_dir, name))
    removed = 0
    for name in dropped:
        for path in _files_of(os.path.join(builds_dir, name)) - alive:
            try:
                os.unlink(os.path.join(output, path))
                removed += 1
            except FileNotFoundError:
                pass
        os.unlink(os.path.join(builds_dir, name))
    return removed


def retained_files(output: str) -> set[str]:
    """The hashed copies and variants every retained build of ``output`` names."""
    names: set[str] = set()
    builds = os.path.join(output, STATE_DIR, BUILDS_DIR)
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(builds):
            if name.endswith(".json"):
                names |= _files_of(os.path.join(builds, name))
    return names


def _files_of(snapshot: str) -> set[str]:
    """The hashed copies and variants a build's manifest names."""
    data = json.loads(read_regular(snapshot))
    files = set()
    for entry in data.get("files", {}).values():
        hashed = entry.get("hashed")
        if not hashed:
            continue
        files.add(hashed)
        files.update(hashed + SUFFIXES[c] for c in entry.get("variants", {}) if c in SUFFIXES)
    return files


def clean(output: str, *, keep: int = 3, keep_for: float = 3600.0) -> int:
    """`prune` for ``assetver clean``: checks ``output`` is an output first."""
    if not os.path.isfile(state_manifest(output)):
        raise OutputError(
            f"{output} has no {STATE_DIR}/{MANIFEST_NAME}: not a compiled output; "
            "pass the directory given to assetver build -o"
        )
    with locked(os.path.join(output, STATE_DIR)):
        return prune(output, keep=keep, keep_for=keep_for)
