"""The manifest: an immutable map of logical path to `Entry`, and its JSON form.

The JSON is deterministic (sorted keys, two-space indent, trailing newline, no
timestamps or machine data), so the same tree always gives the same bytes and a
committed manifest diffs cleanly.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from json.encoder import encode_basestring  # what dumps(str, ensure_ascii=False) uses
from types import MappingProxyType
from typing import Any, NamedTuple

from .atomic import write_atomic
from .errors import ManifestError
from .hashing import ALGORITHM

VERSION = 1
"""Schema version written to and required from manifest files."""

_DIGEST_RE = re.compile(r"[0-9a-f]{16}\Z")
_REBUILD = "rebuild it with: assetver build ROOT -o {path}"


NO_EXTRA: Mapping[str, Any] = MappingProxyType({})
"""The ``extra`` of an entry without other keys (shared: it is immutable)."""


class Entry(NamedTuple):
    """What the manifest knows of one file.

    ``digest`` is the XXH3-64 hex of the served bytes and ``size`` their length.
    ``extra`` holds the keys later stages add (``hashed``, ``variants``,
    ``integrity``, ``deps``), kept verbatim so that no tool drops another's data.
    A named tuple: a build makes one per file, and this is the cheapest immutable value.
    """

    digest: str
    size: int
    extra: Mapping[str, Any] = NO_EXTRA

    def to_json(self) -> dict[str, Any]:
        return {**self.extra, "digest": self.digest, "size": self.size}


@dataclass(frozen=True, slots=True)
class ManifestDiff:
    """Logical paths that differ between two manifests, each list sorted."""

    added: list[str]
    removed: list[str]
    changed: list[str]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def to_json(self) -> dict[str, list[str]]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}


class Manifest(Mapping[str, Entry]):
    """An immutable mapping of logical path (``css/app.css``) to `Entry`.

    Build one with `assetver.build_manifest`, or read one with `Manifest.load`.
    Iteration is in sorted order of logical paths.
    """

    __slots__ = ("_files", "_sorted")

    def __init__(self, files: Mapping[str, Entry] | None = None) -> None:
        self._files: dict[str, Entry] = dict(sorted((files or {}).items()))
        self._sorted = True

    @classmethod
    def from_sorted(cls, files: dict[str, Entry]) -> Manifest:
        """Wraps ``files``, already in sorted order and not to be changed afterwards."""
        return cls._wrap(files, is_sorted=True)

    @classmethod
    def from_unordered(cls, files: dict[str, Entry]) -> Manifest:
        """Wraps ``files``, in any order and not to be changed afterwards.

        The order is made on first iteration: look-ups, all that serving does, never
        need it, and sorting 100,000 paths is a tenth of a build that hashes them.
        """
        return cls._wrap(files, is_sorted=False)

    @classmethod
    def _wrap(cls, files: dict[str, Entry], *, is_sorted: bool) -> Manifest:
        manifest = cls.__new__(cls)
        manifest._files = files
        manifest._sorted = is_sorted
        return manifest

    def _ordered(self) -> dict[str, Entry]:
        if not self._sorted:
            files = self._files
            self._files = {p: files[p] for p in sorted(files)}
            self._sorted = True
        return self._files

    def __getitem__(self, logical_path: str) -> Entry:
        return self._files[logical_path]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ordered())

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, logical_path: object) -> bool:
        return logical_path in self._files

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Manifest):
            return NotImplemented
        return self._files == other._files

    def __hash__(self) -> int:
        return hash(tuple((k, v.digest) for k, v in self._ordered().items()))

    def __repr__(self) -> str:
        return f"<Manifest of {len(self)} files>"

    def total_size(self) -> int:
        """Returns the sum of every entry's size in bytes."""
        return sum(e.size for e in self._files.values())

    def diff(self, new: Manifest) -> ManifestDiff:
        """Returns what changed going from this manifest to ``new``."""
        old_files, new_files = self._ordered(), new._ordered()
        return ManifestDiff(
            added=[p for p in new_files if p not in old_files],
            removed=[p for p in old_files if p not in new_files],
            changed=[
                p
                for p, e in new_files.items()
                if p in old_files and (old_files[p].digest, old_files[p].size) != (e.digest, e.size)
            ],
        )

    def to_json(self) -> str:
        """Returns the canonical JSON text.

        Equal to ``json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) +
        "\\n"``, written by hand for the common entry shape because the stdlib's
        indenting encoder is pure Python and dominates no-change rebuilds.
        """
        files = self._ordered()
        if not files:
            return (
                f'{{\n  "algorithm": "{ALGORITHM}",\n  "files": {{}},\n  "version": {VERSION}\n}}\n'
            )
        dumps, quote = json.dumps, encode_basestring
        parts = []
        for path, e in files.items():
            if e.extra:
                body = dumps(e.to_json(), indent=2, sort_keys=True, ensure_ascii=False)
                body = body.replace("\n", "\n    ")
            else:
                body = f'{{\n      "digest": "{e.digest}",\n      "size": {e.size}\n    }}'
            parts.append(f"    {quote(path)}: {body}")
        body = ",\n".join(parts)
        return (
            f'{{\n  "algorithm": "{ALGORITHM}",\n  "files": {{\n{body}\n  }},\n'
            f'  "version": {VERSION}\n}}\n'
        )

    def dump(self, path: str | os.PathLike[str]) -> None:
        """Writes the manifest to ``path`` atomically (see `.write_atomic`)."""
        write_atomic(os.fspath(path), self.to_json().encode("utf-8"))

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "<manifest>") -> Manifest:
        """Parses and validates manifest JSON; ``source`` names it in errors."""
        fix = _REBUILD.format(path=source)
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise ManifestError(f"{source} is not valid JSON ({e}); {fix}") from e
        if not isinstance(data, dict) or "version" not in data:
            raise ManifestError(f"{source} is not an assetver manifest; {fix}")
        if data["version"] != VERSION:
            raise ManifestError(
                f"{source} has manifest version {data['version']!r}, this assetver reads "
                f"version {VERSION}; {fix}"
            )
        if data.get("algorithm") != ALGORITHM:
            raise ManifestError(
                f"{source} uses algorithm {data.get('algorithm')!r}, expected {ALGORITHM!r}; {fix}"
            )
        raw_files = data.get("files")
        if not isinstance(raw_files, dict):
            raise ManifestError(f"{source} has no 'files' object; {fix}")
        files = {}
        for path, raw in raw_files.items():
            if not (
                isinstance(raw, dict)
                and isinstance(raw.get("digest"), str)
                and _DIGEST_RE.match(raw["digest"])
                and type(raw.get("size")) is int
                and raw["size"] >= 0
            ):
                raise ManifestError(f"{source} has a malformed entry for {path!r}; {fix}")
            extra = {k: v for k, v in raw.items() if k not in ("digest", "size")}
            files[path] = Entry(raw["digest"], raw["size"], extra)
        return cls(files)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Manifest:
        """Reads the manifest at ``path``; raises `.ManifestError` saying how to fix it."""
        source = os.fspath(path)
        try:
            with open(source, "rb") as f:
                text = f.read()
        except FileNotFoundError as e:
            raise ManifestError(
                f"manifest {source} does not exist; {_REBUILD.format(path=source)}"
            ) from e
        except OSError as e:
            raise ManifestError(f"cannot read manifest {source}: {e.strerror}") from e
        return cls.from_json(text, source=source)
