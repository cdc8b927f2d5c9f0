"""The compiled output: what servers, nginx and CDNs serve, written crash-safely.

Layout (DESIGN.md, "The compiled output")::

    DIR/css/app.css                  current bytes (a hard link to the hashed copy)
    DIR/css/app.<digest>.css         hashed copy: written once, never changed
    DIR/css/app.<digest>.css.br      its variants (and DIR/css/app.css.br, linked)
    DIR/.assetver/manifest.json      the output manifest
    DIR/.assetver/builds/<d>.json    every retained build's manifest, named by its digest
    DIR/.assetver/.assetver-cache    the source build cache; state: references, variants

Writes are ordered so that a kill at any moment leaves DIR servable by the previous
manifest and the next build repairs it: new hashed copies and variants first (synced),
then the build's snapshot, then the manifest (atomically), then the current files (each
atomically), then the ``done`` marker; pruning comes last and removes only files no
retained build names. A no-change rebuild writes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import marshal
import os
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .atomic import (
    CONTENT_MODE,
    Syncing,
    check_target,
    copy_file,
    locked,
    read_regular,
    sync_files,
    write_atomic,
    write_copy,
)
from .build import BuildResult, Progress, build, build_cached
from .diagnostics import Diagnostic
from .errors import VANISHED, CompileError, ConfigError, OutputError
from .hashing import digest_bytes, integrity, read_file
from .http import SUFFIXES
from .manifest import Entry, Manifest
from .retention import prune, retained_files, snapshot
from .scan import ALL_FILES, ScanOptions, check_root
from .urls import MANIFEST_NAME, STATE_DIR, hashed_path, is_rewritable, split_hashed, state_manifest

if TYPE_CHECKING:
    from .references import Reference

log = logging.getLogger("assetver")

MANIFEST = MANIFEST_NAME
DONE = "done"
STATE = "state"
CACHE = ".assetver-cache"
_STATE_VERSION = 2

UNRESOLVED = frozenset(
    {"missing-reference", "excluded-reference", "outside-root", "malformed-reference"}
)
"""Diagnostic kinds of references that do not resolve to a file of the tree."""


@dataclass(frozen=True, slots=True)
class CompileOptions:
    """How a tree is compiled: root-relative references resolve under ``prefix``;
    ``compress`` names the variants made; the hashed copies of the last ``keep`` builds
    and of any build younger than ``keep_for`` seconds are retained; ``strict`` counts
    unresolved references as failures; ``cycles`` is ``"error"`` or ``"leave"``."""

    prefix: str = "/static/"
    compress: Any = None
    """A `.compress` options value; None: no variants."""
    keep: int = 3
    keep_for: float = 3600.0
    strict: bool = False
    cycles: str = "error"

    @classmethod
    def make(
        cls,
        *,
        prefix: str = "/static/",
        compress: str = "br,gzip",
        keep: int = 3,
        keep_for: float = 3600.0,
        strict: bool = False,
        cycles: str = "error",
    ) -> CompileOptions:
        from .compress import CompressOptions

        if not (prefix.startswith("/") and prefix.endswith("/")):
            raise ConfigError(f"prefix {prefix!r} must start and end with '/', like /static/")
        if cycles not in ("error", "leave"):
            raise ConfigError(f"cycles={cycles!r} is not 'error' or 'leave'")
        if keep < 0 or keep_for < 0:
            raise ConfigError("keep and keep_for must be >= 0")
        parsed = CompressOptions.parse(compress)
        return cls(prefix, parsed if parsed.levels else None, keep, keep_for, strict, cycles)

    @property
    def fingerprint(self) -> str:
        """What, besides the tree and the codecs, decides the output's bytes (variants
        are keyed by their codec on their own; retention decides nothing)."""
        return repr((self.prefix, self.strict, self.cycles))


@dataclass(frozen=True, slots=True)
class Compiled:
    """What `compile_output` did."""

    manifest: Manifest
    manifest_path: str
    output: str
    source: BuildResult
    written: int
    """Hashed copies, variants and current files written."""
    compressed: int
    """Variants made by this build."""
    pruned: int
    diagnostics: list[Diagnostic] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def unresolved(self) -> list[Diagnostic]:
        """The references ``--strict`` fails on (a missing source map is not one)."""
        return [d for d in self.diagnostics if d.kind in UNRESOLVED]


def compile_output(
    root: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    options: ScanOptions = ALL_FILES,
    settings: CompileOptions | None = None,
    jobs: int | None = None,
    progress: Progress | None = None,
    cache: bool = True,
    only: Collection[str] | None = None,
) -> Compiled:
    """Compiles ``root`` into ``output``; see the module docstring. ``settings``
    default to `CompileOptions.make`'s (variants br and gzip).

    Raises `.CompileError` for a reference cycle (``cycles="error"``) or a name clash,
    `.OutputError` when ``output`` cannot be written, `.RootError` for a bad root.
    """
    started = time.perf_counter()
    if settings is None:
        settings = CompileOptions.make()
    real_root = check_root(os.fspath(root))
    out = _prepare(os.fspath(output), real_root)
    state_dir = os.path.join(out, STATE_DIR)
    with locked(state_dir):
        job = _Compile(real_root, out, options, settings)
        source = (
            build_cached(
                real_root,
                os.path.join(state_dir, CACHE),
                options=options,
                jobs=jobs,
                copy_to=out,
                keep=is_rewritable,
                progress=progress,
                only=only,
            )
            if cache
            else build(
                real_root,
                options=options,
                jobs=jobs,
                copy_to=out,
                keep=is_rewritable,
                progress=progress,
            )
        )
        return job.run(source, started)


class _Compile:
    def __init__(self, root: str, out: str, options: ScanOptions, settings: CompileOptions) -> None:
        self.root, self.out, self.options, self.settings = root, out, options, settings
        self.state_dir = os.path.join(out, STATE_DIR)
        self.manifest_path = state_manifest(out)
        self.fingerprint = settings.fingerprint + options.fingerprint
        self.diagnostics: list[Diagnostic] = []
        self.written = 0

    def run(self, source: BuildResult, started: float) -> Compiled:
        prior = _read(self.manifest_path)
        done = self._done(prior)
        complete = done is not None
        if done is not None and source.unchanged:
            files, diagnostics = done
            kept = Manifest.from_unordered(
                {p: Entry(*fields) for p, fields in files.items()}, output=True
            )
            return self._result(kept, source, 0, started, diagnostics)
        # The copies the hashing workers wrote are made durable while stylesheets are
        # rewritten; whatever is written after is synced before the manifest names it.
        syncing = Syncing(self.out) if source.digested else None
        try:
            previous = _load_previous(self.manifest_path)
            state = _State.load(self.state_dir, self.fingerprint) or _State(self.fingerprint)
            files = self._drop_foreign_variants(dict(source.manifest.items()))
            entries = self._rewrite(files, source, state)
            self._check_clashes(entries)
            if not complete:
                self._repair_copies(entries, files)
            compressed = self._variants(entries, state)
            manifest = Manifest(entries, output=True)
            text = manifest.to_json().encode("utf-8")
        finally:
            if syncing is not None:
                syncing.join()
        if self.written:
            sync_files(self.out)
        snapshot(self.out, text)
        if prior != text:
            write_atomic(self.manifest_path, text)
        self._current_files(manifest, previous if complete else None)
        diagnostics = [_fields(d) for d in self.diagnostics]
        state.forget(manifest, files)
        state.save(self.state_dir)
        entries_now = {p: (e.digest, e.size, dict(e.extra)) for p, e in manifest.items()}
        marker = (self.fingerprint, digest_bytes(text), entries_now, diagnostics)
        write_atomic(os.path.join(self.state_dir, DONE), marshal.dumps(marker), durable=False)
        pruned = prune(self.out, keep=self.settings.keep, keep_for=self.settings.keep_for)
        return self._result(manifest, source, compressed, started, diagnostics, pruned)

    def _done(self, manifest_text: bytes | None) -> tuple[dict[str, Any], list[Any]] | None:
        """What the last build left when it completed: its entries and diagnostics, if
        it completed with these options and wrote exactly this manifest; else None (an
        interrupted or foreign build: the next one repairs)."""
        data = _read(os.path.join(self.state_dir, DONE))
        if data is None or manifest_text is None:
            return None
        try:
            fingerprint, digest, files, diagnostics = marshal.loads(data)
        except (EOFError, ValueError, TypeError):
            return None
        if fingerprint != self.fingerprint or digest != digest_bytes(manifest_text):
            return None
        return files, diagnostics

    def _result(
        self,
        manifest: Manifest,
        source: BuildResult,
        compressed: int,
        started: float,
        diagnostics: Iterable[Any],
        pruned: int = 0,
    ) -> Compiled:
        found = [d if isinstance(d, Diagnostic) else Diagnostic(*d) for d in diagnostics]
        return Compiled(
            manifest,
            self.manifest_path,
            self.out,
            source,
            self.written,
            compressed,
            pruned,
            found,
            time.perf_counter() - started,
        )

    def _drop_foreign_variants(self, files: dict[str, Entry]) -> dict[str, Entry]:
        """A ``.gz``/``.br``/``.zst`` beside its file was made by another tool: the output
        gets its own variants, so such files are left out (with a warning)."""
        for logical in list(files):
            for suffix in SUFFIXES.values():
                if logical.endswith(suffix) and logical[: -len(suffix)] in files:
                    del files[logical]
                    self.diagnostics.append(
                        Diagnostic(
                            logical,
                            1,
                            1,
                            "foreign-variant",
                            "precompressed file left out: the output makes its own variants",
                        )
                    )
        return files

    def _rewrite(
        self, files: dict[str, Entry], source: BuildResult, state: _State
    ) -> dict[str, Entry]:
        """Entries of the output: references rewritten in Merkle order, digests and
        sizes of the served bytes, hashed copies of rewritten files written."""
        from . import merkle, references

        rewritable = [p for p in files if is_rewritable(p)]
        datas: dict[str, bytes] = {}

        def data_of(logical: str) -> bytes:
            data = datas.get(logical)
            if data is None:
                data = source.kept.get(logical)
                if data is None:
                    data, digest, _ = read_file(os.path.join(self.root, logical))
                    if digest != files[logical].digest:
                        raise CompileError(f"{logical} changed while the build ran; build again")
                datas[logical] = data
            return data

        found_refs: dict[str, list[references.Reference]] = {}
        for logical in rewritable:
            digest = files[logical].digest
            refs = state.refs_of(digest)
            if refs is None:
                refs = references.scan(logical, data_of(logical)) or []
                state.remember_refs(digest, refs)
            found_refs[logical] = refs
        lookup = self._lookup(files)
        resolved = {
            p: [
                (r, references.resolve(r, p, prefix=self.settings.prefix, lookup=lookup))
                for r in refs
            ]
            for p, refs in found_refs.items()
        }
        # An output is reused only while its hashed copy exists (it may have been pruned
        # while the tree held other bytes, then the old bytes came back).
        reuse = {
            p: record
            for p, record in state.outputs.items()
            if p in files and os.path.exists(os.path.join(self.out, hashed_path(p, record[1])))
        }
        result = merkle.compile_tree(
            resolved,
            data_of=data_of,
            digest_of=lambda p: files[p].digest,
            hexdigest=digest_bytes,
            cycles=self.settings.cycles,
            reuse=reuse,
        )
        self.diagnostics += result.diagnostics
        entries: dict[str, Entry] = {}
        for logical, entry in files.items():
            done = result.files.get(logical)
            if done is None:
                extra: dict[str, Any] = {"hashed": hashed_path(logical, entry.digest)}
                entries[logical] = Entry(entry.digest, entry.size, extra)
                continue
            hashed = hashed_path(logical, done.digest)
            if done.data is not None:
                if write_copy(os.path.join(self.out, hashed), done.data):
                    self.written += 1
                state.outputs[logical] = (
                    done.key,
                    done.digest,
                    done.size,
                    integrity(done.data),
                    done.deps,
                )
            _, _, _, sri, deps = state.outputs[logical]
            extra = {"hashed": hashed, "integrity": sri}
            if deps:
                extra["deps"] = list(deps)
            entries[logical] = Entry(done.digest, done.size, extra)
        return entries

    def _lookup(self, files: dict[str, Entry]) -> Callable[[str], str]:
        def lookup(logical: str) -> str:
            if logical in files:
                return "ok"
            try:
                os.stat(os.path.join(self.root, logical))
            except OSError:
                return "missing"
            return "excluded"

        return lookup

    def _check_clashes(self, entries: dict[str, Entry]) -> None:
        """Refuses a tree file whose logical path is a name the output gives a hashed copy
        or a variant (of this build or of a retained one): writing it would change bytes
        that pages cache for a year."""
        reserved: dict[str, str] = {}
        for logical, entry in entries.items():
            assert entry.hashed is not None
            for suffix in ("", *SUFFIXES.values()):
                reserved[entry.hashed + suffix] = logical
        for name in retained_files(self.out):
            reserved.setdefault(name, "an earlier build")
        for logical in entries:
            owner = reserved.get(logical)
            if owner is not None and owner != logical:
                raise CompileError(
                    f"{logical} is both a file of the tree and the name of a hashed copy "
                    f"(of {owner}); rename it, or exclude it with --exclude '{logical}'"
                )
            if split_hashed(logical) is not None:
                self.diagnostics.append(
                    Diagnostic(
                        logical,
                        1,
                        1,
                        "hashed-looking-name",
                        "its name looks like a hashed copy's: assetver serves it as the "
                        "file it is, but nginx and CDNs, which do not read the manifest, "
                        "cache it as immutable",
                    )
                )

    def _repair_copies(self, entries: dict[str, Entry], files: dict[str, Entry]) -> None:
        """After an interrupted build, hashed copies the cache takes for granted may be
        missing: those are copied again from the tree (hashed as copied)."""
        from .statkey import NEVER
        from .workers import Job, digest_one

        copy = Job(self.root.rstrip("/") + "/", NEVER, self.out + "/")
        for logical, entry in entries.items():
            if entry.hashed is None or os.path.exists(os.path.join(self.out, entry.hashed)):
                continue
            if is_rewritable(logical):
                continue
            try:
                digest, _, _ = digest_one(copy, logical)
            except VANISHED:
                continue
            if digest != files[logical].digest:
                raise CompileError(f"{logical} changed while the build ran; build again")
            self.written += 1

    def _variants(self, entries: dict[str, Entry], state: _State) -> int:
        """Writes the variants every hashed copy lacks (a variant whose codec key is
        recorded is never made again) and records them in the entries."""
        options = self.settings.compress
        if options is None:
            return 0
        from .compress import CompressOptions, compress_all, should_compress, variant_key

        groups: dict[tuple[tuple[str, int], ...], list[tuple[str, str]]] = {}
        for logical, entry in entries.items():
            hashed = entry.hashed
            assert hashed is not None
            if not should_compress(logical, entry.size):
                continue
            known = state.variants.get(hashed, {})
            needed = []
            for coding, level in options.levels:
                record = known.get(coding)
                path = os.path.join(self.out, hashed + SUFFIXES[coding])
                if (
                    record is None
                    or record[0] != variant_key(entry.digest, coding, level)
                    or (record[1] and not os.path.exists(path))
                ):
                    needed.append((coding, level))
            if needed:
                groups.setdefault(tuple(needed), []).append((logical, hashed))
        made = 0
        for levels, todo in groups.items():
            items = [
                (hashed, self._copy_bytes(entries[logical], hashed)) for logical, hashed in todo
            ]
            digests = {hashed: entries[logical].digest for logical, hashed in todo}
            for hashed, variants in compress_all(items, CompressOptions(levels)).items():
                records = state.variants.setdefault(hashed, {})
                for coding, level in levels:
                    data = variants.get(coding)
                    if data is not None:
                        path = os.path.join(self.out, hashed + SUFFIXES[coding])
                        write_atomic(path, data, durable=False, mode=CONTENT_MODE)
                        made += 1
                        self.written += 1
                    records[coding] = (
                        variant_key(digests[hashed], coding, level),
                        len(data or b""),
                        digest_bytes(data) if data is not None else "",
                    )
        for logical, entry in entries.items():
            assert entry.hashed is not None
            known = state.variants.get(entry.hashed, {})
            kept = [c for c, _ in options.levels if c in known and known[c][1]]
            if kept and should_compress(logical, entry.size):
                extra = {
                    **entry.extra,
                    "variants": {c: known[c][1] for c in kept},
                    "variant_digests": {c: known[c][2] for c in kept},
                }
                entries[logical] = Entry(entry.digest, entry.size, extra)
        return made

    def _copy_bytes(self, entry: Entry, hashed: str) -> bytes:
        """The bytes of a hashed copy, checked against its name before anything is made
        from them."""
        path = os.path.join(self.out, hashed)
        data = read_regular(path)
        if digest_bytes(data) != entry.digest:
            raise OutputError(f"{path} does not hash to its name; delete it and build again")
        return data

    def _current_files(self, manifest: Manifest, previous: Manifest | None) -> None:
        """Points each logical path at its hashed copy (and its variants), atomically,
        where it changed; removes the current files of paths the tree no longer has."""
        for logical, entry in manifest.items():
            old = previous.get(logical) if previous is not None else None
            if old is not None and old.digest == entry.digest and old.variants == entry.variants:
                continue
            assert entry.hashed is not None
            self._link(entry.hashed, logical)
            for coding, suffix in SUFFIXES.items():
                if coding in entry.variants:
                    self._link(entry.hashed + suffix, logical + suffix)
                elif old is not None and coding in old.variants:
                    _unlink(os.path.join(self.out, logical + suffix))
        if previous is not None:
            for logical, old in previous.items():
                if logical not in manifest:
                    _unlink(os.path.join(self.out, logical))
                    for coding in old.variants:
                        _unlink(os.path.join(self.out, logical + SUFFIXES[coding]))

    def _link(self, hashed: str, logical: str) -> None:
        """Replaces the current file ``logical`` by a copy of ``hashed``, atomically. A
        copy, not a hard link: a file edited in place at its logical path (``cp`` onto
        it) must not change the hashed copy, which pages cache for a year."""
        target = os.path.join(self.out, logical)
        check_target(target, "output file")
        copy_file(os.path.join(self.out, hashed), target)
        self.written += 1


def _fields(record: Any) -> tuple[Any, ...]:
    """A dataclass's fields as a tuple (``astuple`` copies deeply, which costs here)."""
    return tuple(getattr(record, f.name) for f in fields(record))


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _read(path: str) -> bytes | None:
    try:
        return read_regular(path)
    except OSError:
        return None


def _load_previous(path: str) -> Manifest | None:
    text = _read(path)
    if text is None:
        return None
    try:
        manifest = Manifest.from_json(text, source=path)
    except ValueError:
        return None
    return manifest if manifest.output else None


def _prepare(output: str, real_root: str) -> str:
    """Returns the real path of the output directory, made if missing; refuses one that
    overlaps the root, or a path that is not a directory."""
    if not output:
        raise OutputError("output directory is empty; pass the directory to compile into")
    out = os.path.realpath(output)
    for a, b, what in ((out, real_root, "inside the root"), (real_root, out, "around the root")):
        if a == b or a.startswith(b.rstrip("/") + "/"):
            raise OutputError(
                f"output {output} is {what} {real_root}; choose a directory outside it"
            )
    try:
        os.makedirs(os.path.join(out, STATE_DIR), exist_ok=True)
    except OSError as e:
        raise OutputError(
            f"cannot create output {output}: {e.strerror}; choose a writable directory"
        ) from e
    ignore = os.path.join(out, STATE_DIR, ".gitignore")
    if not os.path.exists(ignore):
        write_atomic(
            ignore, b"# made by assetver: its cache and state are machine data\n*\n", durable=False
        )
    return out


class _State:
    """What the next build of an output can reuse: references found in each source
    digest, rewritten outputs, and the variants written with their codec keys."""

    def __init__(self, fingerprint: str) -> None:
        self.fingerprint = fingerprint
        self.refs: dict[str, list[tuple[Any, ...]]] = {}
        self.outputs: dict[str, tuple[Any, ...]] = {}
        self.variants: dict[str, dict[str, tuple[str, int, str]]] = {}
        """Hashed path -> coding -> (codec key, size of the variant (0 when refused), its
        digest, which the handler checks what it serves against)."""

    @classmethod
    def load(cls, state_dir: str, fingerprint: str) -> _State | None:
        try:
            data = marshal.loads(read_regular(os.path.join(state_dir, STATE)))
            if data["version"] != _STATE_VERSION or data["fingerprint"] != fingerprint:
                return None
            state = cls(fingerprint)
            state.refs, state.outputs, state.variants = (
                data["refs"],
                data["outputs"],
                data["variants"],
            )
            return state
        except (OSError, EOFError, ValueError, TypeError, KeyError):
            return None

    def save(self, state_dir: str) -> None:
        data = {
            "version": _STATE_VERSION,
            "fingerprint": self.fingerprint,
            "refs": self.refs,
            "outputs": self.outputs,
            "variants": self.variants,
        }
        write_atomic(os.path.join(state_dir, STATE), marshal.dumps(data), durable=False)

    def forget(self, manifest: Manifest, sources: dict[str, Entry]) -> None:
        """Keeps only what the next build may reuse: references of current sources,
        outputs of current paths, variants of hashed copies some build still names."""
        digests = {e.digest for e in sources.values()}
        self.refs = {d: r for d, r in self.refs.items() if d in digests}
        self.outputs = {p: o for p, o in self.outputs.items() if p in manifest}
        live = {e.hashed for e in manifest.values()}
        self.variants = {h: v for h, v in self.variants.items() if h in live}

    def refs_of(self, digest: str) -> list[Reference] | None:
        from .references import Reference

        found = self.refs.get(digest)
        return None if found is None else [Reference(*r) for r in found]

    def remember_refs(self, digest: str, refs: list[Reference]) -> None:
        self.refs[digest] = [_fields(r) for r in refs]
