"""Small files kept in memory with their headers, so a hit costs no system call.

Bounded: only files up to a size limit are kept, and the total stays under a byte
budget by evicting the oldest representation first. Keyed by logical path and digest,
so a new manifest never serves old bytes under a new digest.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Representation:
    """Everything needed to answer a GET for one file without touching the disk.

    ``variants`` maps a content coding (None for identity) to the body and the
    ready-formatted headers that describe it (all but the caching headers, which
    depend on the request's digest, and Content-Length, which a 304 must not carry).
    """

    variants: dict[str | None, tuple[bytes, Headers]]

    @property
    def cost(self) -> int:
        return sum(len(body) for body, _ in self.variants.values())


class Memory:
    """A byte-bounded map of (logical path, digest) to `Representation`."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._items: dict[tuple[str, str], Representation] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, logical_path: str, digest: str) -> Representation | None:
        return self._items.get((logical_path, digest))

    def put(self, logical_path: str, digest: str, rep: Representation) -> None:
        cost = rep.cost
        if cost > self.budget:
            return
        key = (logical_path, digest)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.used -= old.cost
            while self._items and self.used + cost > self.budget:
                self.used -= self._items.pop(next(iter(self._items))).cost
            self._items[key] = rep
            self.used += cost


def read_exactly(path: str, size: int) -> bytes | None:
    """Returns the bytes of ``path`` when it holds exactly ``size`` bytes, else None."""
    try:
        with open(path, "rb") as f:
            data = f.read(size + 1)
    except OSError:
        return None
    return data if len(data) == size else None
