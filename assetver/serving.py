"""What a server keeps in memory, and the proofs it serves by: the manifest in force,
what is derived from it (URLs, small files), and which files hold their digest's bytes.

Framework-neutral: the Tornado adapter validates its settings into a `Config` and keeps
one `Assets` per Application; nothing here imports tornado.

Proofs (DESIGN.md, "The immutable promise"): in an output, a hashed copy is the bytes
of its digest by construction; in a root, a file is proven while its stat key equals
the key recorded when its bytes were hashed (``proofs``), and bytes read into memory
are hashed as they are read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from .cache import Cache
from .errors import AssetNotFound, ConfigError, ManifestError
from .manifest import Entry, Manifest
from .memory import Memory
from .policy import STALE_POLICIES
from .scan import ScanOptions
from .statkey import Key
from .urls import BUILDS_DIR, STATE_DIR, hashed_path, split_hashed

log = logging.getLogger("assetver")

URL_STYLES = ("query", "filename")

MEMORY_FILE_MAX = 256 * 1024
"""Files up to this size (and their variants) are served from memory: most stylesheets
and scripts, so most responses are proven by hashing what was read."""


@dataclass(frozen=True, slots=True)
class Config:
    """How one Application serves its assets; validated on construction."""

    root: str
    """The real path of the source root (it need not exist when serving an output)."""
    prefix: str = "/static/"
    output: str | None = None
    """The real path of the compiled output served, if any."""
    manifest_path: str | None = None
    url_style: str = "query"
    url_host: str = ""
    strict: bool = False
    stale: str = "serve"
    max_age: int = 0
    memory: int = 32 << 20
    debug: bool = False
    allow_origin: str | None = "*"
    options: ScanOptions = field(default_factory=ScanOptions)

    def __post_init__(self) -> None:
        if self.url_style not in URL_STYLES:
            raise ConfigError(f"assetver_url_style={self.url_style!r} is not one of {URL_STYLES}")
        if self.stale not in STALE_POLICIES:
            raise ConfigError(f"assetver_stale={self.stale!r} is not one of {STALE_POLICIES}")
        host = self.url_host
        if host and not (
            host.startswith(("https://", "http://", "//"))
            and "/" not in host.split("//", 1)[1]
            and host.split("//", 1)[1]
        ):
            raise ConfigError(
                f"assetver_url_host={host!r} is not an origin such as https://cdn.example.com"
            )
        if type(self.max_age) is not int or self.max_age < 0:
            raise ConfigError(
                f"assetver_max_age={self.max_age!r} must be a whole number of seconds >= 0"
            )
        if type(self.memory) is not int or self.memory < 0:
            raise ConfigError(f"assetver_memory={self.memory!r} must be a number of bytes >= 0")
        origin = self.allow_origin
        if origin is not None and (not isinstance(origin, str) or not origin or "\n" in origin):
            raise ConfigError(
                f"assetver_allow_origin={origin!r} must be an origin, '*' or None to send none"
            )


@dataclass(slots=True)
class Target:
    """What a URL under the prefix names."""

    logical: str
    requested: str | None
    """The digest in the file name or the ``v`` argument, if any."""
    entry: Entry | None
    """The manifest's entry of ``logical``, if it has one."""
    named: bool = False
    """Whether the digest was in the file name (a hashed path) rather than ``v``."""


class Assets:
    """The manifest in force for one Application, and what is derived from it.

    Replaced wholesale (`set_manifest`) when the watcher delivers a new manifest, so a
    request always sees one consistent version.
    """

    def __init__(self, config: Config, manifest: Manifest, proofs: dict[str, Key]) -> None:
        self.config = config
        self.memory = Memory(config.memory)
        self._warned: set[str] = set()
        self.manifest = manifest
        self.proofs = proofs
        """Root mode: logical path -> stat key of the file when the bytes of its
        manifest digest were hashed from it."""
        self.urls: dict[str, str] = {}
        self.same_root: dict[str, bool] = {}
        """Route root (as given) -> whether it is this root (computed once per route)."""
        self.cache: Cache | None = None
        """The build cache of the start-up build, for a debug watcher to start from."""
        self.stop_watching: Callable[[], None] | None = None
        """Set while a debug watcher keeps `manifest` fresh."""
        self.copies = Copies(config.output)
        """The hashed copies the output's builds wrote: what retained digests serve."""

    def set_manifest(self, manifest: Manifest, proofs: dict[str, Key]) -> None:
        self.manifest, self.proofs = manifest, proofs
        self.urls = {}

    def url(self, path: str, include_version: bool = True) -> str:
        """Returns the URL of logical path ``path`` (see `make_static_url` in the adapter)."""
        config = self.config
        base = config.url_host + config.prefix
        if not include_version:
            return base + quote(path)
        entry = self.manifest.get(path)
        if entry is None:
            return self._missing(path, base)
        if config.url_style == "filename":
            url = base + quote(hashed_path(path, entry.digest))
        else:
            url = f"{base}{quote(path)}?v={entry.digest}"
        self.urls[path] = url
        return url

    def _missing(self, path: str, base: str) -> str:
        source = self.config.manifest_path or f"the manifest of {self.config.root}"
        if self.config.strict:
            raise AssetNotFound(
                f"static_url({path!r}): not in {source}; fix the name or run: "
                f"assetver build {self.config.root}"
            )
        self.warn_once(f"static_url({path!r}): not in {source}; serving it unversioned")
        return base + quote(path)

    def warn_once(self, message: str) -> None:
        """Logs ``message`` as a warning the first time only: a missing asset would
        otherwise log on every page."""
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s", message)

    def resolve(self, url_path: str, query_digest: str | None) -> Target:
        """Maps a URL path (prefix removed) and its ``v`` argument to a `Target`.

        A real file whose name looks hashed keeps its own name; a hashed name of a file
        the manifest no longer has still names it (a retained copy may serve it).
        """
        manifest = self.manifest
        entry = manifest.get(url_path)
        if entry is not None:
            return Target(url_path, query_digest, entry)
        split = split_hashed(url_path)
        if split is not None:
            return Target(split[0], split[1], manifest.get(split[0]), named=True)
        return Target(url_path, query_digest, None)


def check_manifest(config: Config, manifest: Manifest, found: Manifest) -> None:
    """Reports files of ``manifest`` that ``found`` (what is on disk) does not match:
    counts and an example, one warning; in strict mode a `.ConfigError`."""
    missing = [p for p in manifest if p not in found]
    differ = [p for p in manifest if p in found and found[p].digest != manifest[p].digest]
    if not missing and not differ:
        return
    source = config.manifest_path or "the manifest"
    where = config.output or config.root
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if differ:
        parts.append(f"{len(differ)} with other bytes (e.g. {differ[0]})")
    message = (
        f"{source} does not match {where}: {', '.join(parts)} of {len(manifest)} files; "
        f"those are served unversioned. Rebuild it: assetver build {config.root}"
    )
    if config.strict:
        raise ConfigError(message)
    log.warning("%s", message)


class Copies:
    """The hashed copies an output's builds wrote, by logical path and digest, read from
    the build snapshots in ``DIR/.assetver/builds/`` (again whenever a build adds one):
    only a copy named there is served as a digest's bytes. A file that merely sits at a
    hashed path (a vendored ``lib.0123456789abcdef.js``) is not one."""

    def __init__(self, output: str | None) -> None:
        self._dir = os.path.join(output, STATE_DIR, BUILDS_DIR) if output is not None else None
        self._seen: tuple[int, int] | None = None
        self._index: dict[tuple[str, str], Entry] = {}

    def get(self, logical: str, digest: str) -> Entry | None:
        if self._changed():  # one stat: builds come and go (retention, `assetver clean`)
            self._load()
        return self._index.get((logical, digest))

    def _changed(self) -> bool:
        if self._dir is None:
            return False
        try:
            st = os.stat(self._dir)
        except OSError:
            return False
        seen = (st.st_mtime_ns, st.st_ino)
        if seen == self._seen:
            return False
        self._seen = seen
        return True

    def _load(self) -> None:
        assert self._dir is not None
        index: dict[tuple[str, str], Entry] = {}
        try:
            names = os.listdir(self._dir)
        except OSError:
            names = []
        for name in names:
            if not name.endswith(".json"):
                continue
            try:
                snapshot = Manifest.load(os.path.join(self._dir, name))
            except ManifestError:
                continue
            if snapshot.output:
                index.update(((p, e.digest), e) for p, e in snapshot.items())
        self._index = index
