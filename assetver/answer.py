"""Which bytes answer a request for an asset, and what proves them.

Framework-neutral: the Tornado adapter resolves the URL, hands over a ``validate``
callable (its framework's path checks), and maps the `Served` it gets back onto its
response hooks. The proofs (DESIGN.md, "The immutable promise"):

* in an output, a hashed copy named in a build's manifest is that digest's bytes by
  construction; it is still hashed once when first read (into memory, or, for a big
  one, before its stat key is trusted), so a copy damaged on disk is never labelled;
* in a root, a file is proven while its stat key is the one recorded when the bytes of
  its manifest digest were hashed from it, and bytes read into memory are hashed as
  they are read.

A file is opened once, checked through its descriptor (that it is a regular file, is
inside the root, has the expected size and key), and served from that descriptor, so
no rename or symlink swap between the check and the read changes what is sent.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .errors import Refused
from .hashing import OPEN_FLAGS, digest_bytes, read_buffer
from .http import SUFFIXES, accepted_encodings
from .manifest import Entry
from .memory import Loaded
from .policy import Status, classify
from .serving import MEMORY_FILE_MAX, Assets, Target
from .statkey import Key, key_of
from .urls import is_digest

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@dataclass(slots=True)
class Served:
    """What one response sends."""

    status: Status | None
    """None for a file the manifest does not name."""
    label: str | None
    """The digest the bytes are proven to be (the ETag), or None (a stat-based ETag)."""
    size: int
    mtime: float
    path: str
    """The file served (for its media type)."""
    body: bytes | None = None
    """The bytes, when they come from memory."""
    fd: int = -1
    key: Key | None = None
    """The key the file must still have when its last byte is read (else the response
    is cut short)."""
    coding: str | None = None
    vary: bool = False

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(frozen=True, slots=True)
class Redirect:
    url: str


Validate = Callable[[str], "str | None"]
"""The adapter's check of a path under the served root: returns the real path to open,
None when it answered itself (a directory's redirect), or raises."""


class Answer:
    """Answers one request: ``validate`` is the adapter's path check, ``accept`` the
    request's ``Accept-Encoding``, ``ranged`` whether it asks for a range (then identity
    bytes only)."""

    def __init__(
        self, assets: Assets, root: str, validate: Validate, accept: str | None, ranged: bool
    ) -> None:
        self.assets, self.root, self.validate = assets, root, validate
        self.accept, self.ranged = accept, ranged

    def __call__(self, target: Target) -> Served | Redirect | None:
        entry, requested, config = target.entry, target.requested, self.assets.config
        if requested is not None and (entry is None or requested != entry.digest):
            if config.output is not None and is_digest(requested):
                known = self.assets.copies.get(target.logical, requested)
                # A build named it; `assetver clean` may have removed it since.
                if known is not None and os.path.isfile(
                    os.path.join(self.root, known.hashed or "")
                ):
                    return self.copy(target.logical, known, Status.RETAINED)
            if entry is None:
                if target.named:
                    raise Refused(404, f"{target.logical} has no copy of {requested}")
                return self.plain(target.logical, requested)
            if config.stale == "404":
                raise Refused(404, "stale digest")
            if config.stale == "redirect":
                return Redirect(self.assets.url(target.logical))
        if entry is None:
            return self.plain(target.logical, None)
        status = classify(requested, entry.digest, proven=True)
        if config.output is not None:
            return self.copy(target.logical, entry, status)
        return self.source(target.logical, entry, requested)

    def in_memory(self, logical: str, entry: Entry, requested: str | None) -> Served | None:
        """The answer for ``entry`` (current or unversioned) when its bytes are in memory
        and still those of the file (a root's file checked by its stat key); None
        otherwise, for the full path through the adapter's checks."""
        if self.assets.config.output is not None:
            hashed = entry.hashed
            loaded = self.assets.memory.get(hashed) if hashed is not None else None
            if loaded is None or hashed is None:
                return None
            status = classify(requested, entry.digest, proven=True)
            coding = self.coding(entry.variants)
            path = os.path.join(self.root, hashed)
            return self.from_memory(status, loaded, coding, path, vary=bool(entry.variants))
        loaded = self.assets.memory.get(logical)
        if loaded is None:
            return None
        try:
            st = os.lstat(os.path.join(self.root, logical))
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode) or key_of(st) != loaded.key:
            return None
        status = classify(requested, entry.digest, proven=loaded.digest == entry.digest)
        path = os.path.join(self.root, logical)
        return self.from_memory(status, loaded, None, path, vary=False)

    def plain(self, logical: str, requested: str | None) -> Served | Redirect | None:
        """A file the manifest does not name (or a directory's default file that it
        does): current bytes, revalidated."""
        path = self.validate(logical)
        if path is None:
            return None
        inside = os.path.relpath(path, os.path.realpath(self.root)).replace(os.sep, "/")
        entry = self.assets.manifest.get(inside) if inside != logical else None
        if entry is not None:  # what Tornado's default_filename found
            return self(Target(inside, None, entry))
        return plain(path, self.root, requested)

    def copy(self, logical: str, entry: Entry, status: Status) -> Served | None:
        """The hashed copy of ``entry`` in the output, or one of its variants."""
        hashed = entry.hashed
        if hashed is None:
            raise Refused(500, f"{logical}: an output entry without a hashed copy")
        coding = self.coding(entry.variants)
        loaded = self.assets.memory.get(hashed)
        if loaded is not None:
            at = os.path.join(self.root, hashed)
            return self.from_memory(status, loaded, coding, at, vary=bool(entry.variants))
        path = self.validate(hashed)
        if path is None:
            return None
        fd, st = self.open(path)
        if st.st_size != entry.size:
            os.close(fd)
            self.damaged(path, "has another size than its manifest says")
        if st.st_size <= MEMORY_FILE_MAX:
            with os.fdopen(fd, "rb") as f:
                body = f.read()
            if digest_bytes(body) != entry.digest:
                self.damaged(path, "does not hash to its name")
            variants = self.variants(path, entry)
            loaded = Loaded(entry.digest, body, st.st_mtime, None, variants)
            self.assets.memory.put(hashed, loaded)
            return self.from_memory(status, loaded, coding, path, vary=bool(entry.variants))
        key = self.prove(path, fd, st, entry.digest)
        if coding is not None:
            variant = self.variant(path, entry, coding)
            if variant is not None:
                os.close(fd)
                vfd, vst, vkey = variant
                return Served(
                    status, entry.digest, vst.st_size, st.st_mtime, path, fd=vfd, key=vkey,
                    coding=coding, vary=True,
                )  # fmt: skip
        return Served(
            status, entry.digest, st.st_size, st.st_mtime, path, fd=fd, key=key,
            vary=bool(entry.variants),
        )  # fmt: skip

    def source(self, logical: str, entry: Entry, requested: str | None) -> Served | None:
        """``logical`` in the root: from memory when its stat key is the one it had when
        read, else from the file, proven by the key recorded when it was hashed."""
        assets, digest = self.assets, entry.digest
        loaded = assets.memory.get(logical)
        if loaded is not None:
            try:
                st = os.lstat(os.path.join(self.root, logical))
            except (OSError, ValueError):
                st = None
            if st is not None and stat.S_ISREG(st.st_mode) and key_of(st) == loaded.key:
                status = classify(requested, digest, proven=loaded.digest == digest)
                at = os.path.join(self.root, logical)
                return self.from_memory(status, loaded, None, at, vary=False)
        path = self.validate(logical)
        if path is None:
            return None
        fd, st = self.open(path)
        key = key_of(st)
        if st.st_size <= MEMORY_FILE_MAX:
            with os.fdopen(fd, "rb") as f:
                body = f.read()
            # Kept under its stat key: a hit serves exactly these bytes, labelled with
            # their own digest, so even a rewrite the key cannot see serves no wrong label.
            loaded = Loaded(digest_bytes(body), body, st.st_mtime, key)
            assets.memory.put(logical, loaded)
            if loaded.digest != digest:
                self.unproven(path)
            status = classify(requested, digest, proven=loaded.digest == digest)
            return self.from_memory(status, loaded, None, path, vary=False)
        proven = assets.proofs.get(logical) == key
        if not proven:
            self.unproven(path)
        status = classify(requested, digest, proven=proven)
        label = digest if proven else None
        return Served(
            status, label, st.st_size, st.st_mtime, path, fd=fd, key=key if proven else None
        )

    def from_memory(
        self, status: Status, loaded: Loaded, coding: str | None, path: str, *, vary: bool
    ) -> Served:
        body = loaded.body
        if coding is not None and coding in loaded.variants:
            body = loaded.variants[coding]
        else:
            coding = None
        return Served(
            status, loaded.digest, len(body), loaded.mtime, path, body=body, coding=coding,
            vary=vary,
        )  # fmt: skip

    def coding(self, variants: Mapping[str, int]) -> str | None:
        if not variants or self.ranged:
            return None
        for coding in accepted_encodings(self.accept):
            if coding in variants:
                return coding
        return None

    def variants(self, path: str, entry: Entry) -> dict[str, bytes]:
        """The recorded variants of a small hashed copy, each checked against the digest
        the build recorded for it; one missing or damaged is left out, with a warning."""
        found = {}
        digests = entry.extra.get("variant_digests") or {}
        for coding, size in entry.variants.items():
            name = path + SUFFIXES[coding]
            try:
                fd, _ = self.open(name, inside=False)
            except Refused:
                self.damaged(name, "is missing", fatal=False)
                continue
            with os.fdopen(fd, "rb") as f:
                data = f.read(size + 1)
            if len(data) != size or digests.get(coding) != digest_bytes(data):
                self.damaged(name, "is not the variant its build made", fatal=False)
                continue
            found[coding] = data
        return found

    def variant(
        self, path: str, entry: Entry, coding: str
    ) -> tuple[int, os.stat_result, Key] | None:
        """A big variant's descriptor, stat and proven key, or None when it is missing or
        not the build's (then identity bytes are sent)."""
        name = path + SUFFIXES[coding]
        try:
            fd, st = self.open(name, inside=False)
        except Refused:
            self.damaged(name, "is missing", fatal=False)
            return None
        digest = (entry.extra.get("variant_digests") or {}).get(coding)
        if st.st_size != entry.variants[coding] or digest is None:
            os.close(fd)
            self.damaged(name, "is not the variant its build made", fatal=False)
            return None
        try:
            key = self.prove(name, fd, st, digest)
        except Refused:
            os.close(fd)
            return None
        return fd, st, key

    def prove(self, path: str, fd: int, st: os.stat_result, digest: str) -> Key:
        """The key under which a big file of the output is proven to be ``digest``: hashed
        once (through ``fd``) the first time, its key remembered until it changes."""
        key = key_of(st)
        if self.assets.proofs.get(path) == key:
            return key
        if _digest_fd(fd) != digest:
            self.damaged(path, "does not hash to its name")
        self.assets.proofs[path] = key
        return key

    def open(self, path: str, *, inside: bool = True) -> tuple[int, os.stat_result]:
        return open_file(path, self.root if inside else None)

    def damaged(self, path: str, what: str, *, fatal: bool = True) -> None:
        self.assets.warn_once(
            f"{path} {what}: the output is damaged; rebuild it: assetver build "
            f"{self.assets.config.root} -o {self.root}"
        )
        if fatal:
            raise Refused(500, f"{path} {what}")

    def unproven(self, path: str) -> None:
        self.assets.warn_once(
            f"{path} is not the file its manifest digest was made from (changed since the "
            f"build): served unversioned. Rebuild: assetver build {self.assets.config.root}"
        )


def open_file(path: str, root: str | None) -> tuple[int, os.stat_result]:
    """Opens the file to serve and stats it through the descriptor. With ``root``, checks
    that the descriptor's file is inside it (a symlink swapped in after the adapter's
    checks is caught here); without, the file (a variant, beside a checked one) is
    opened without following a symlink at all."""
    try:
        fd = os.open(path, OPEN_FLAGS | (0 if root is not None else _NOFOLLOW))
    except (OSError, ValueError) as e:
        raise Refused(404, f"{path}: {e}") from e
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(403, f"{path} is not a file")
        if root is not None and not _inside(fd, root):
            raise Refused(403, f"{path} is not in the root")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def plain(path: str, root: str, requested: str | None = None) -> Served:
    """A file served as it is: current bytes, revalidated with a stat-based ETag."""
    fd, st = open_file(path, root)
    status = Status.ABSENT if requested is None else Status.STALE
    return Served(status, None, st.st_size, st.st_mtime, path, fd=fd)


def _inside(fd: int, root: str) -> bool:
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return True  # no /proc: the adapter's realpath check stands alone
    real_root = os.path.realpath(root)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _digest_fd(fd: int) -> str:
    """The digest of the whole file open at ``fd`` (read with pread: the descriptor's
    offset, which serving uses, is not moved)."""
    from .hashing import digest_parts

    view = read_buffer()

    def chunks() -> object:
        at = 0
        while n := os.preadv(fd, (view,), at):
            yield view[:n]
            at += n

    return digest_parts(chunks())  # type: ignore[arg-type]
