"""Rebuilding from a build cache: digests of unchanged files, and a tree that need not
be listed again when none of its directories changed (see `.cache`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from itertools import repeat, starmap
from operator import attrgetter

from . import cache
from .digests import hash_found
from .manifest import NO_EXTRA, Entry
from .scan import Found


def candidates(previous: cache.Cache) -> dict[str, tuple[cache.Key | None, Entry]]:
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


def reuse_listings(
    real_root: str,
    previous: cache.Cache,
    jobs: int,
    stamp: int | None,
    progress: Callable[[int, int], None] | None,
) -> tuple[dict[str, Entry], bytes, int] | None:
    """Rebuilds from the cache without listing any directory: returns the files (in
    the cache's order), their packed keys and how many were hashed, or None when the
    cache holds no listings or a directory changed (then the tree must be scanned).

    Unchanged directories hold the same names as when the cache was made, so the
    cached files are the files: each is stat'ed, and hashed only if its key differs
    (a racy key differs from every key).
    """
    base = real_root.rstrip("/") + "/"
    stat, dir_key = os.stat, cache.dir_key
    paths, old = previous.paths, previous.keys
    dirs = previous.dirs
    if dirs is None:
        return None
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
        hashed = hash_found(todo, jobs, stamp, progress, total)
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
    return files, keys, len(changed)


_STAT_FIELDS = attrgetter("st_size", "st_mtime_ns", "st_ino", "st_ctime_ns")
