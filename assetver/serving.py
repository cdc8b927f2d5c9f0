"""What a server keeps in memory: the validated ``assetver_*`` settings, the manifest in
force, and what is derived from it (URLs, small files).

Framework-neutral: the Tornado adapter reads its settings dict through `Config` and
keeps one `Assets` per Application; nothing here imports tornado.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from .build import build, refresh
from .cache import Key
from .errors import AssetNotFound, ConfigError, ManifestError
from .manifest import Manifest
from .memory import Memory
from .urls import hashed_path, split_hashed

log = logging.getLogger("assetver")

STATE_KEY = "assetver.state"
"""Key of the `Assets` object in ``Application.settings`` (not a user setting)."""

URL_STYLES = ("query", "filename")
STALE_POLICIES = ("serve", "redirect", "404")
KNOWN_SETTINGS = frozenset(
    {
        "assetver_manifest",
        "assetver_url_style",
        "assetver_url_host",
        "assetver_strict",
        "assetver_stale",
        "assetver_max_age",
        "assetver_memory",
    }
)


@dataclass(frozen=True, slots=True)
class Config:
    """The ``assetver_*`` settings, validated; read only here."""

    root: str
    prefix: str
    manifest_path: str | None
    url_style: str
    url_host: str
    strict: bool
    stale: str
    max_age: int
    memory: int
    debug: bool

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Config:
        unknown = sorted(
            k for k in settings if k.startswith("assetver_") and k not in KNOWN_SETTINGS
        )
        if unknown:
            raise ConfigError(
                f"unknown setting {unknown[0]}; known settings: {', '.join(sorted(KNOWN_SETTINGS))}"
            )
        static_path = settings.get("static_path")
        if not static_path:
            raise ConfigError("assetver needs the static_path setting: the directory to serve")
        style = settings.get("assetver_url_style", "query")
        if style not in URL_STYLES:
            raise ConfigError(f"assetver_url_style={style!r} is not one of {URL_STYLES}")
        stale = str(settings.get("assetver_stale", "serve"))
        if stale not in STALE_POLICIES:
            raise ConfigError(f"assetver_stale={stale!r} is not one of {STALE_POLICIES}")
        host = settings.get("assetver_url_host") or ""
        if host and not (
            host.startswith(("https://", "http://", "//"))
            and "/" not in host.split("//", 1)[1].rstrip("/")
            and host.split("//", 1)[1].strip("/")
        ):
            raise ConfigError(
                f"assetver_url_host={host!r} is not an origin such as https://cdn.example.com"
            )
        max_age = settings.get("assetver_max_age", 0)
        if type(max_age) is not int or max_age < 0:
            raise ConfigError(
                f"assetver_max_age={max_age!r} must be a whole number of seconds >= 0"
            )
        memory = settings.get("assetver_memory", 32 << 20)
        if type(memory) is not int or memory < 0:
            raise ConfigError(f"assetver_memory={memory!r} must be a number of bytes >= 0")
        manifest_path = settings.get("assetver_manifest")
        return cls(
            root=os.path.realpath(static_path),
            prefix=settings.get("static_url_prefix", "/static/"),
            manifest_path=os.fspath(manifest_path) if manifest_path else None,
            url_style=style,
            url_host=host.rstrip("/"),
            strict=bool(settings.get("assetver_strict", False)),
            stale=stale,
            max_age=max_age,
            memory=memory,
            debug=bool(settings.get("debug")) or settings.get("static_hash_cache") is False,
        )


class Assets:
    """The manifest in force for one Application, and what is derived from it.

    Replaced wholesale (`set_manifest`) when the watcher delivers a new manifest, so a
    request always sees one consistent version.
    """

    def __init__(self, config: Config, manifest: Manifest) -> None:
        self.config = config
        self.memory = Memory(config.memory)
        self._warned: set[str] = set()
        self.manifest = manifest
        self.urls: dict[str, str] = {}
        self.keys: dict[str, Key] = {}
        """Debug mode: stat data of the files `manifest` was hashed from."""
        self.stop_watching: Callable[[], None] | None = None
        """Set while a debug watcher keeps `manifest` fresh."""

    def set_manifest(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.urls = {}

    def url(self, path: str, include_version: bool = True) -> str:
        """Returns the URL of logical path ``path``; see `StaticFileHandler.make_static_url`."""
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
        source = self.config.manifest_path or f"the manifest built from {self.config.root}"
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

    def resolve(self, url_path: str) -> tuple[str, str | None]:
        """Maps a URL path (prefix removed) to (logical path, digest in the file name).

        A real file whose name looks hashed keeps its own name.
        """
        if url_path in self.manifest:
            return url_path, None
        split = split_hashed(url_path)
        if split is not None and split[0] in self.manifest:
            return split
        return url_path, None


_create_lock = threading.Lock()


def assets_for(settings: dict[str, Any]) -> Assets:
    """Returns the `Assets` of an Application's settings, creating them on first use.

    `settings` creates them eagerly, so that bad configuration fails while the
    Application is built and nothing is hashed after ``server.start(n)`` forks.
    """
    assets: Assets | None = settings.get(STATE_KEY)
    if assets is not None:
        return assets
    with _create_lock:
        assets = settings.get(STATE_KEY)
        if assets is None:
            config = Config.from_settings(settings)
            manifest, keys = _initial_manifest(config)
            assets = Assets(config, manifest)
            assets.keys = keys
            settings[STATE_KEY] = assets
    return assets


def _initial_manifest(config: Config) -> tuple[Manifest, dict[str, Key]]:
    """Production: the manifest file, or one build now. Debug: a build now, taking
    from the manifest file only digests of files older than it (a head start), with
    the stat data the watcher compares against when it starts."""
    loaded = Manifest()
    if config.manifest_path is not None:
        try:
            loaded = Manifest.load(config.manifest_path)
        except ManifestError as e:
            raise ConfigError(f"assetver_manifest: {e}") from e
        if not config.debug:
            return loaded, {}
    elif not config.debug:
        return build(config.root).manifest, {}
    done = refresh(
        config.root,
        _older_than_manifest(config, loaded),
        exclude_paths=([config.manifest_path] if config.manifest_path else []),
    )
    return done.result.manifest, done.keys


def _older_than_manifest(config: Config, loaded: Manifest) -> Manifest:
    """The entries of ``loaded`` for files unchanged since it was written: same size,
    mtime and ctime strictly older than the manifest file's."""
    if config.manifest_path is None or not loaded:
        return Manifest()
    written = os.stat(config.manifest_path).st_mtime_ns
    trusted = {}
    for logical, entry in loaded.items():
        try:
            st = os.stat(os.path.join(config.root, logical))
        except OSError:
            continue
        if st.st_mtime_ns < written and st.st_ctime_ns < written and st.st_size == entry.size:
            trusted[logical] = entry
    return Manifest.from_sorted(trusted)
