"""The manifest: an immutable map of logical path to `Entry`, and its JSON form.

The JSON is deterministic (sorted keys, two-space indent, trailing newline, no
timestamps or machine data), so the same tree always gives the same bytes and a
committed manifest diffs cleanly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring  # what dumps(str, ensure_ascii=False) uses
from types import MappingProxyType
from typing import Any, NamedTuple

from .atomic import read_regular, write_atomic
from .errors import ManifestError
from .hashing import ALGORITHM
from .urls import hashed_path, is_digest

VERSION = 1
"""Schema version of a manifest of files served in place from their root."""

OUTPUT_VERSION = 2
"""Schema version of the manifest of a compiled output: digests of served (rewritten)
bytes with ``hashed``, ``deps`` and ``integrity`` per entry. A reader of version 1
refuses it, so an older assetver never serves an output as if it were a root."""

READS = (VERSION, OUTPUT_VERSION)

REBUILD = "rebuild it with: assetver build"
"""The fix named by loading errors when the caller knows no better one."""


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

    @property
    def hashed(self) -> str | None:
        """The hashed path of the served bytes in an output."""
        return self.extra.get("hashed")

    @property
    def integrity(self) -> str | None:
        """``sha384-<base64>`` of the served identity bytes, in an output."""
        return self.extra.get("integrity")

    @property
    def variants(self) -> Mapping[str, int]:
        """Content coding -> size of each precompressed variant the build wrote."""
        return self.extra.get("variants") or NO_EXTRA

    @property
    def deps(self) -> list[str]:
        """The logical paths this file's references resolve to."""
        return list(self.extra.get("deps") or ())


@dataclass(frozen=True, slots=True)
class Change:
    """One logical path whose served bytes differ between two manifests."""

    path: str
    old: Entry | None
    new: Entry | None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        for side, entry in (("old", self.old), ("new", self.new)):
            if entry is not None:
                out[side] = {
                    "digest": entry.digest,
                    **({"hashed": entry.hashed} if entry.hashed else {}),
                }
        return out


@dataclass(frozen=True, slots=True)
class ManifestDiff:
    """Logical paths that differ between two manifests, each list sorted."""

    added: list[str]
    removed: list[str]
    changed: list[str]
    changes: list[Change] = field(default_factory=list, compare=False)
    """Every added, removed and changed path with its old and new entry, sorted."""

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
            "files": [c.to_json() for c in self.changes],
        }


class Manifest(Mapping[str, Entry]):
    """An immutable mapping of logical path (``css/app.css``) to `Entry`.

    Build one with `assetver.build_manifest`, or read one with `Manifest.load`.
    Iteration is in sorted order of logical paths. ``output`` is true for the manifest
    of a compiled output (schema `OUTPUT_VERSION`): its files are served from the
    output's hashed copies, not from a root.
    """

    __slots__ = ("_files", "_sorted", "output")

    def __init__(self, files: Mapping[str, Entry] | None = None, *, output: bool = False) -> None:
        self._files: dict[str, Entry] = dict(sorted((files or {}).items()))
        self._sorted = True
        self.output = output

    @classmethod
    def from_unordered(cls, files: dict[str, Entry], *, output: bool = False) -> Manifest:
        """Wraps ``files``, in any order and not to be changed afterwards.

        The order is made on first iteration: look-ups, all that serving does, never
        need it, and sorting 100,000 paths is a tenth of a build that hashes them.
        """
        manifest = cls.__new__(cls)
        manifest._files = files
        manifest._sorted = False
        manifest.output = output
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
        return self.output == other.output and self._files == other._files

    def __hash__(self) -> int:
        return hash(tuple((k, v.digest) for k, v in self._ordered().items()))

    def __repr__(self) -> str:
        kind = "output manifest" if self.output else "manifest"
        return f"<{kind} of {len(self)} files>"

    @property
    def version(self) -> int:
        return OUTPUT_VERSION if self.output else VERSION

    def total_size(self) -> int:
        """Returns the sum of every entry's size in bytes."""
        return sum(e.size for e in self._files.values())

    def diff(self, new: Manifest) -> ManifestDiff:
        """Returns what changed going from this manifest to ``new`` (in served bytes)."""
        old_files, new_files = self._ordered(), new._ordered()
        changes = [
            Change(p, old_files.get(p), e)
            for p, e in new_files.items()
            if p not in old_files or old_files[p][:2] != e[:2]
        ]
        changes += [Change(p, e, None) for p, e in old_files.items() if p not in new_files]
        changes.sort(key=lambda c: c.path)
        return ManifestDiff(
            added=[c.path for c in changes if c.old is None],
            removed=[c.path for c in changes if c.new is None],
            changed=[c.path for c in changes if c.old is not None and c.new is not None],
            changes=changes,
        )

    def to_json(self) -> str:
        """Returns the canonical JSON text.

        Equal to ``json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) +
        "\\n"``, written by hand for the common entry shape because the stdlib's
        indenting encoder is pure Python and dominates no-change rebuilds.
        """
        files = self._ordered()
        head = f'{{\n  "algorithm": "{ALGORITHM}",\n  "files": '
        tail = f',\n  "version": {self.version}\n}}\n'
        if not files:
            return head + "{}" + tail
        dumps, quote = json.dumps, encode_basestring
        parts = []
        for path, e in files.items():
            if e.extra:
                body = dumps(e.to_json(), indent=2, sort_keys=True, ensure_ascii=False)
                body = body.replace("\n", "\n    ")
            else:
                body = f'{{\n      "digest": "{e.digest}",\n      "size": {e.size}\n    }}'
            parts.append(f"    {quote(path)}: {body}")
        return head + "{\n" + ",\n".join(parts) + "\n  }" + tail

    def dump(self, path: str | os.PathLike[str]) -> None:
        """Writes the manifest to ``path`` atomically (see `.write_atomic`)."""
        write_atomic(os.fspath(path), self.to_json().encode("utf-8"))

    @classmethod
    def from_json(
        cls,
        text: str | bytes,
        *,
        source: str = "<manifest>",
        fix: str = REBUILD,
        trusted: bool = False,
    ) -> Manifest:
        """Parses and validates manifest JSON; ``source`` names it in errors, whose last
        words are ``fix``. With ``trusted`` (bytes this assetver wrote and checked by
        their digest, as an output's no-change rebuild does) entries are not checked
        one by one."""
        if trusted:
            data = json.loads(text)
            files = {
                path: Entry(raw.pop("digest"), raw.pop("size"), raw)
                for path, raw in data["files"].items()
            }
            return cls.from_unordered(files, output=data["version"] == OUTPUT_VERSION)
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
            raise ManifestError(f"{source} is not valid JSON ({e}); {fix}") from e
        if not isinstance(data, dict) or "version" not in data:
            raise ManifestError(f"{source} is not an assetver manifest; {fix}")
        if data["version"] not in READS:
            raise ManifestError(
                f"{source} has manifest version {data['version']!r}, this assetver reads "
                f"versions {', '.join(map(str, READS))}; {fix}"
            )
        if data.get("algorithm") != ALGORITHM:
            raise ManifestError(
                f"{source} uses algorithm {data.get('algorithm')!r}, expected {ALGORITHM!r}; {fix}"
            )
        raw_files = data.get("files")
        if not isinstance(raw_files, dict):
            raise ManifestError(f"{source} has no 'files' object; {fix}")
        output = data["version"] == OUTPUT_VERSION
        files = {}
        for path, raw in raw_files.items():
            if not (
                isinstance(raw, dict)
                and isinstance(raw.get("digest"), str)
                and is_digest(raw["digest"])
                and type(raw.get("size")) is int
                and raw["size"] >= 0
                and (not output or _valid_output_entry(path, raw))
            ):
                raise ManifestError(f"{source} has a malformed entry for {path!r}; {fix}")
            extra = {k: v for k, v in raw.items() if k not in ("digest", "size")}
            files[path] = Entry(raw["digest"], raw["size"], extra)
        return cls(files, output=output)

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, fix: str = REBUILD) -> Manifest:
        """Reads the manifest at ``path``; raises `.ManifestError` ending with ``fix``."""
        source = os.fspath(path)
        try:
            text = read_regular(source)
        except FileNotFoundError as e:
            raise ManifestError(f"manifest {source} does not exist; {fix}") from e
        except OSError as e:
            raise ManifestError(f"cannot read manifest {source}: {e.strerror or e}; {fix}") from e
        return cls.from_json(text, source=source, fix=fix)


def _valid_output_entry(path: str, raw: dict[str, Any]) -> bool:
    """An output entry names its hashed copy, which must be the hashed path of its
    digest: the handler serves that file, so a forged name must not point elsewhere."""
    variants = raw.get("variants", {})
    digests = raw.get("variant_digests", {})
    return (
        raw.get("hashed") == hashed_path(path, raw["digest"])
        and isinstance(variants, dict)
        and all(isinstance(k, str) and type(v) is int and v > 0 for k, v in variants.items())
        and isinstance(digests, dict)
        and all(k in variants and isinstance(v, str) and is_digest(v) for k, v in digests.items())
    )
