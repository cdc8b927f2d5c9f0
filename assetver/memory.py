"""Small files kept in memory, hashed when they were read, so a hit costs no system call
and its bytes are proven to be the digest that labels them.

Bounded: only files up to a size limit are kept, and the total stays under a byte
budget by evicting the oldest first. Keyed by the served file's path under the served
directory: a hashed path in an output (content-addressed, so an entry never goes
stale) or a logical path in a root (checked against the file's stat key on use).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from .statkey import Key


@dataclass(frozen=True, slots=True)
class Loaded:
    """The bytes of one file as read, and what was learnt reading them."""

    digest: str
    """XXH3 of ``body``, computed from the very bytes kept."""
    body: bytes
    mtime: float
    """The file's mtime, for Last-Modified."""
    key: Key | None = None
    """The file's stat key when read, for files that may change (in a root)."""
    variants: dict[str, bytes] = field(default_factory=dict)
    """Content coding -> bytes of each precompressed variant the build recorded."""

    @property
    def cost(self) -> int:
        return len(self.body) + sum(map(len, self.variants.values()))


class Memory:
    """A byte-bounded map of served path to `Loaded`."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._items: dict[str, Loaded] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, path: str) -> Loaded | None:
        return self._items.get(path)

    def put(self, path: str, loaded: Loaded) -> None:
        cost = loaded.cost
        if cost > self.budget:
            return
        with self._lock:
            old = self._items.pop(path, None)
            if old is not None:
                self.used -= old.cost
            while self._items and self.used + cost > self.budget:
                self.used -= self._items.pop(next(iter(self._items))).cost
            self._items[path] = loaded
            self.used += cost

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.used = 0
