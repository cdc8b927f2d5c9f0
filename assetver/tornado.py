"""Tornado integration: ``static_url()`` answered from the manifest, and a
`StaticFileHandler` that sends far-future caching only for bytes proven to be the
digest in their URL.

Set it up with `settings`, which loads the manifest while the `Application` is built,
before ``server.start(n)`` forks, so every worker renders the same URLs::

    app = tornado.web.Application(
        handlers,
        **assetver.tornado.settings(
            static_path="static",
            assetver_output="dist/static",  # from `assetver build static -o dist/static`
        ),
    )

This is the only module that imports tornado. The handler uses only Tornado's
documented override points (``parse_url_path``, ``validate_absolute_path``,
``get_content*``, ``compute_etag``, ``set_headers``...), so a subclass's own overrides
and Tornado's output transforms apply to every response.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import stat
import threading
import time
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from typing import Any

import tornado.process
import tornado.web
from tornado import httputil
from tornado.escape import xhtml_escape
from tornado.ioloop import IOLoop
from tornado.web import HTTPError

from . import startup
from .errors import ConfigError
from .hashing import OPEN_FLAGS, digest_bytes
from .http import SUFFIXES, accepted_encodings, content_type
from .memory import Loaded
from .policy import IMMUTABLE_SECONDS, NO_STORE, Status, cache_control, classify
from .serving import MEMORY_FILE_MAX, Assets, Config, Target
from .statkey import key_of
from .urls import hashed_path, is_digest, is_hidden

log = logging.getLogger("assetver")

STATE_KEY = "assetver.state"
"""Key of the `.serving.Assets` object in ``Application.settings`` (not a user setting)."""

KNOWN_SETTINGS = frozenset(
    {
        "assetver_manifest",
        "assetver_output",
        "assetver_url_style",
        "assetver_url_host",
        "assetver_strict",
        "assetver_stale",
        "assetver_max_age",
        "assetver_memory",
        "assetver_allow_origin",
        "assetver_exclude",
        "assetver_include_hidden",
    }
)

_create_lock = threading.Lock()
_watch_lock = threading.Lock()


def config_from_settings(settings: dict[str, Any]) -> Config:
    """Reads and validates the ``assetver_*`` settings of an Application."""
    unknown = sorted(k for k in settings if k.startswith("assetver_") and k not in KNOWN_SETTINGS)
    if unknown:
        raise ConfigError(
            f"unknown setting {unknown[0]}; known settings: {', '.join(sorted(KNOWN_SETTINGS))}"
        )
    static_path = settings.get("static_path")
    if not static_path:
        raise ConfigError("assetver needs the static_path setting: the directory to serve")
    output = settings.get("assetver_output")
    manifest = settings.get("assetver_manifest")
    return Config(
        root=os.path.realpath(static_path),
        prefix=settings.get("static_url_prefix", "/static/"),
        output=os.path.realpath(output) if output else None,
        manifest_path=os.fspath(manifest) if manifest else None,
        url_style=settings.get("assetver_url_style", "query"),
        url_host=(settings.get("assetver_url_host") or "").rstrip("/"),
        strict=bool(settings.get("assetver_strict", False)),
        stale=str(settings.get("assetver_stale", "serve")),
        max_age=settings.get("assetver_max_age", 0),
        memory=settings.get("assetver_memory", 32 << 20),
        debug=bool(settings.get("debug")) or settings.get("static_hash_cache") is False,
        allow_origin=settings.get("assetver_allow_origin", "*"),
        options=startup.scan_options(
            exclude=settings.get("assetver_exclude", ()),
            include_hidden=bool(settings.get("assetver_include_hidden", False)),
        ),
    )


def _assets(settings: dict[str, Any]) -> Assets:
    """The Application's `Assets`, created on first use; in debug mode, starts the
    watcher on first use from within the event loop."""
    assets: Assets | None = settings.get(STATE_KEY)
    if assets is None:
        with _create_lock:
            assets = settings.get(STATE_KEY)
            if assets is None:
                assets = startup.start(config_from_settings(settings))
                settings[STATE_KEY] = assets
    if assets.config.debug and assets.stop_watching is None:
        _watch(assets)
    return assets


def _watch(assets: Assets) -> None:
    try:
        asyncio_loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    with _watch_lock:
        if assets.stop_watching is not None:
            return
        io_loop = IOLoop.current()

        def deliver(update: Any) -> None:
            with contextlib.suppress(RuntimeError):
                io_loop.add_callback(assets.set_manifest, *update)

        assets.stop_watching = startup.watch(
            assets,
            deliver,
            alive=lambda: not asyncio_loop.is_closed(),
            task_id=tornado.process.task_id(),
        )


def settings(**options: Any) -> dict[str, Any]:
    """Returns Application settings that serve ``static_path`` through assetver.

    Takes the same keywords as `tornado.web.Application` (``static_path``,
    ``static_url_prefix``, ``debug``, ...) plus the ``assetver_*`` settings:

    * ``assetver_output``: a compiled output (``assetver build ROOT -o DIR``) to serve
      instead of ``static_path``, with its manifest ``DIR/.assetver/manifest.json``.
      In debug mode ``static_path`` is compiled into it at start-up and kept compiled
      by the watcher; in production ``static_path`` need not exist.
    * ``assetver_manifest``: a manifest written by ``assetver build``; without one the
      manifest is built once, here.
    * ``assetver_url_style``: ``"query"`` (``/static/app.css?v=<digest>``, the default)
      or ``"filename"`` (``/static/app.<digest>.css``). Both forms are served either way.
    * ``assetver_url_host``: an origin (``https://cdn.example.com``) that ``static_url``
      puts in front of the prefix; the local route keeps serving.
    * ``assetver_strict``: ``static_url`` of a path not in the manifest raises
      `.AssetNotFound` instead of logging a warning and returning an unversioned URL;
      a manifest that does not match the files is a `.ConfigError`.
    * ``assetver_stale``: what a request for a digest that is neither current nor
      retained gets: ``"serve"`` (current bytes, ``no-cache``), ``"redirect"`` or
      ``"404"``.
    * ``assetver_max_age``: seconds unversioned requests may be cached (default 0:
      ``no-cache``, revalidated with the ETag).
    * ``assetver_memory``: bytes of small files kept in memory per process (default
      32 MiB; files up to 256 KiB and their variants).
    * ``assetver_allow_origin``: ``Access-Control-Allow-Origin`` of static responses
      (default ``"*"``, which web fonts served from another origin need; None: none).
    * ``assetver_exclude``, ``assetver_include_hidden``: which files count, as the
      CLI's ``--exclude`` and ``--include-hidden``.

    Raises `.ConfigError` naming the setting when a value is wrong.
    """
    result = dict(options)
    result.setdefault("static_handler_class", StaticFileHandler)
    result.pop(STATE_KEY, None)
    theirs = result.get("ui_methods")
    result["ui_methods"] = [UI_METHODS, theirs] if theirs is not None else UI_METHODS
    _assets(result)
    return result


def static_integrity(handler: tornado.web.RequestHandler, path: str) -> str | None:
    """Returns the Subresource Integrity value (``sha384-...``) of ``path``, computed
    when the output was compiled, or None (a path outside the manifest, or a root's
    manifest, which records none)."""
    entry = _assets(handler.settings).manifest.get(path)
    return entry.integrity if entry is not None else None


def _attributes(handler: tornado.web.RequestHandler, path: str, **extra: str | None) -> str:
    assets = _assets(handler.settings)
    attrs: dict[str, str | None] = dict(extra)
    sri = static_integrity(handler, path)
    if sri is not None:
        attrs["integrity"] = sri
    if assets.config.url_host:  # another origin: SRI and fonts need a CORS request
        attrs["crossorigin"] = "anonymous"
    return "".join(
        f" {name}" if value == "" else f' {name}="{xhtml_escape(value)}"'
        for name, value in attrs.items()
        if value is not None
    )


def stylesheet_tag(handler: tornado.web.RequestHandler, path: str, media: str | None = None) -> str:
    """Returns ``<link rel="stylesheet" href=...>`` for ``path``, with its integrity and,
    when assets come from another origin, ``crossorigin``. In a template:
    ``{% raw stylesheet_tag("css/app.css") %}``."""
    href = xhtml_escape(handler.static_url(path))
    return f'<link rel="stylesheet" href="{href}"{_attributes(handler, path, media=media)}>'


def script_tag(
    handler: tornado.web.RequestHandler,
    path: str,
    module: bool = False,
    defer: bool = False,
    async_: bool = False,
) -> str:
    """Returns ``<script src=...></script>`` for ``path`` (``type="module"`` with
    ``module``), with its integrity and, from another origin, ``crossorigin``."""
    attrs = _attributes(
        handler,
        path,
        type="module" if module else None,
        defer="" if defer else None,
        **{"async": "" if async_ else None},
    )
    return f'<script src="{xhtml_escape(handler.static_url(path))}"{attrs}></script>'


def modulepreload_tag(handler: tornado.web.RequestHandler, path: str) -> str:
    """Returns ``<link rel="modulepreload" href=...>`` for a JavaScript module, so the
    browser fetches it (and checks its integrity) before an import asks for it."""
    href = xhtml_escape(handler.static_url(path))
    return f'<link rel="modulepreload" href="{href}"{_attributes(handler, path)}>'


UI_METHODS = {
    "static_integrity": static_integrity,
    "stylesheet_tag": stylesheet_tag,
    "script_tag": script_tag,
    "modulepreload_tag": modulepreload_tag,
}
"""The template helpers `settings` installs as ``ui_methods`` (yours are added after, and
win on a clash); handlers reach them as ``self.ui["stylesheet_tag"](path)``."""


@dataclass(slots=True)
class _Served:
    """What one response sends: decided in `validate_absolute_path`."""

    status: Status | None
    label: str | None
    """The digest the bytes are proven to be (the ETag), or None (a stat-based ETag)."""
    size: int
    mtime: float
    body: bytes | None = None
    """The bytes, when they come from memory."""
    fd: int = -1
    key: bytes | None = None
    """Root mode: the key the file must still have when the last byte is read."""
    coding: str | None = None
    vary: bool = False


class StaticFileHandler(tornado.web.StaticFileHandler):
    """A `tornado.web.StaticFileHandler` that versions URLs from the manifest.

    Use it as ``static_handler_class`` (`settings` does): ``static_url()`` becomes a
    dict look-up, a request carrying the current digest gets one year of
    ``immutable`` caching when the bytes sent are proven to be that digest, a retained
    digest gets its own bytes, stale or forged digests never get far-future caching,
    and nothing is hashed on a request but what is read into memory. Routes to other
    directories (``{"path": ...}``) work as with Tornado's class, revalidated.
    """

    _served: _Served | None = None
    _logical: str | None = None

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")

    @classmethod
    def reset(cls) -> None:
        """Does nothing. Debug mode calls this before every request; assetver's watcher
        keeps versions fresh instead of re-hashing."""

    @classmethod
    def make_static_url(
        cls, settings: dict[str, Any], path: str, include_version: bool = True
    ) -> str:
        """Returns the URL of ``path`` from the manifest: no file I/O, no hashing."""
        assets = settings.get(STATE_KEY)
        if assets is not None and include_version:
            url = assets.urls.get(path)
            if url is not None:
                return url  # type: ignore[no-any-return]
        return _assets(settings).url(path, include_version)

    @classmethod
    def get_version(cls, settings: dict[str, Any], path: str) -> str | None:
        """Returns the manifest's digest of ``path``, or None; never hashes."""
        entry = _assets(settings).manifest.get(path)
        return entry.digest if entry is not None else None

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        assets = self._assets()
        if assets is not None and assets.config.output is not None:
            self.root = assets.config.output

    def _assets(self) -> Assets | None:
        """The app's assets when this route serves the app's static root, else None."""
        if STATE_KEY not in self.settings and not self.settings.get("static_path"):
            return None
        assets = _assets(self.settings)
        same = assets.same_root.get(self.root)
        if same is None:
            same = os.path.realpath(self.root) in (assets.config.root, assets.config.output)
            assets.same_root[self.root] = same
        return assets if same else None

    def parse_url_path(self, url_path: str) -> str:
        if "\x00" in url_path:
            raise HTTPError(400, "NUL in path")
        if is_hidden(url_path):
            raise HTTPError(404)
        self._logical = url_path
        return super().parse_url_path(url_path)

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        path = self._decide(root, absolute_path)
        if self._served is not None:
            if _overrides(type(self), "get_content", "get_content_size", "get_modified_time"):
                self._served = None  # a subclass serves its own bytes: Tornado's ways apply
            else:
                # Tornado's get() calls self.get_content(...): reading from what was decided
                # here, not reopening the path, is what keeps bytes and proof together.
                self.__dict__["get_content"] = self._read
        return path

    def _decide(self, root: str, absolute_path: str) -> str | None:
        assets = self._assets()
        if assets is None or self._logical is None:
            path = self._validate(root, absolute_path)
            if path is not None:
                self._served = self._plain(path, None)
            return path
        values = self.request.query_arguments.get("v")
        target = assets.resolve(self._logical, values[-1].decode("latin-1") if values else None)
        if target.entry is None and target.requested is not None and assets.config.output:
            return self._serve_retained(assets, root, target.logical, target.requested, None)
        if target.entry is None:
            path = self._validate(root, absolute_path)
            if path is None:
                return None
            logical = os.path.relpath(path, os.path.realpath(root)).replace(os.sep, "/")
            entry = assets.manifest.get(logical) if logical != self._logical else None
            if entry is None:  # not in the manifest (or a directory's default file that is)
                self._served = self._plain(path, target.requested)
                return path
            target = Target(logical, None, entry)
        entry, requested = target.entry, target.requested
        assert entry is not None
        if requested is not None and requested != entry.digest:
            if assets.config.output and is_digest(requested):
                path = self._serve_retained(assets, root, target.logical, requested, entry)
                if path is not None or self._finished:
                    return path
            policy = assets.config.stale
            if policy == "404":
                raise HTTPError(404)
            if policy == "redirect":
                self.set_header("Cache-Control", NO_STORE)
                self.redirect(assets.url(target.logical))
                return None
        if assets.config.output is not None:
            return self._serve_output(
                assets, root, target.logical, entry.digest, requested, entry.variants
            )
        return self._serve_root(assets, root, target.logical, entry.digest, requested)

    def _serve_output(
        self,
        assets: Assets,
        root: str,
        logical: str,
        digest: str,
        requested: str | None,
        variants: Iterable[str],
    ) -> str | None:
        """Serves the hashed copy of ``digest`` from the output (content-addressed)."""
        hashed = hashed_path(logical, digest)
        status = classify(requested, digest, proven=True, retained=requested == digest)
        if requested is not None and requested != digest and status.immutable:
            status = Status.STALE
        coding = self._coding(variants)
        absolute = os.path.join(root, hashed)
        loaded = assets.memory.get(hashed)
        if loaded is None:
            path = self._validate(root, absolute)
            if path is None:
                return None
            suffixes = {c: path + SUFFIXES[c] for c in variants}
            fd, st = _open(path)
            if st.st_size <= MEMORY_FILE_MAX:
                os.close(fd)
                loaded = assets.load(hashed, path, key=None, variants=suffixes)
                if loaded.digest != digest:
                    assets.warn_once(
                        f"{path} does not hash to its name: the output is damaged; "
                        f"rebuild it: assetver build {assets.config.root} -o {root}"
                    )
                    raise HTTPError(500, "damaged output")
            else:
                if coding is not None and "Range" not in self.request.headers:
                    os.close(fd)
                    fd, st = _open(suffixes[coding])
                else:
                    coding = None
                self._served = _Served(
                    status,
                    digest,
                    st.st_size,
                    st.st_mtime,
                    fd=fd,
                    coding=coding,
                    vary=bool(suffixes),
                )
                return absolute
        self._served = self._from_memory(status, loaded, coding, vary=bool(loaded.variants))
        return absolute

    def _serve_retained(
        self, assets: Assets, root: str, logical: str, digest: str, entry: Any
    ) -> str | None:
        """A digest that is not current: its hashed copy, if the output still has it."""
        hashed = hashed_path(logical, digest)
        if assets.memory.get(hashed) is None:
            absolute = os.path.join(root, hashed)
            try:
                st = os.stat(absolute)
            except OSError:
                st = None
            if st is None or not stat.S_ISREG(st.st_mode):
                if entry is None:
                    raise HTTPError(404)
                return None
        found = [
            c
            for c, suffix in SUFFIXES.items()
            if os.path.isfile(os.path.join(root, hashed + suffix))
        ]
        return self._serve_output(assets, root, logical, digest, digest, found)

    def _serve_root(
        self, assets: Assets, root: str, logical: str, digest: str, requested: str | None
    ) -> str | None:
        """Serves ``logical`` from the root: from memory when its stat key is the one
        it had when read, else from the file, proven by the key recorded at hashing."""
        absolute = os.path.join(root, logical)
        loaded = assets.memory.get(logical)
        if loaded is not None:
            try:
                st = os.lstat(absolute)
            except OSError:
                st = None
            if st is not None and stat.S_ISREG(st.st_mode) and key_of(st) == loaded.key:
                proven = loaded.digest == digest
                status = classify(requested, digest, proven=proven)
                self._served = self._from_memory(status, loaded, None, vary=False)
                return absolute
        path = self._validate(root, absolute)
        if path is None:
            return None
        fd, st = _open(path)
        key = key_of(st)
        if st.st_size <= MEMORY_FILE_MAX:
            with os.fdopen(fd, "rb") as f:
                body = f.read()
            # Kept under its stat key: a hit serves exactly these bytes, labelled with
            # their own digest, so even a rewrite the key cannot see serves no wrong label.
            loaded = Loaded(digest_bytes(body), body, st.st_mtime, key)
            assets.memory.put(logical, loaded)
            status = classify(requested, digest, proven=loaded.digest == digest)
            if loaded.digest != digest:
                self._unproven(assets, path)
            self._served = self._from_memory(status, loaded, None, vary=False)
            return path
        proven = assets.proofs.get(logical) == key
        status = classify(requested, digest, proven=proven)
        if not proven:
            self._unproven(assets, path)
        self._served = _Served(
            status,
            digest if proven else None,
            st.st_size,
            st.st_mtime,
            fd=fd,
            key=key if proven else None,
        )
        return path

    def _unproven(self, assets: Assets, path: str) -> None:
        assets.warn_once(
            f"{path} is not the file its manifest digest was made from (changed since the "
            f"build): served unversioned. Rebuild: assetver build {assets.config.root}"
        )

    def _from_memory(
        self, status: Status, loaded: Loaded, coding: str | None, *, vary: bool
    ) -> _Served:
        body = loaded.body
        if coding is not None and coding in loaded.variants and "Range" not in self.request.headers:
            body = loaded.variants[coding]
        else:
            coding = None
        return _Served(
            status, loaded.digest, len(body), loaded.mtime, body=body, coding=coding, vary=vary
        )

    def _plain(self, path: str, requested: str | None) -> _Served:
        """A file the manifest does not have: current bytes, revalidated."""
        fd, st = _open(path)
        status = Status.ABSENT if requested is None else Status.STALE
        return _Served(status, None, st.st_size, st.st_mtime, fd=fd)

    def _coding(self, variants: Iterable[str]) -> str | None:
        available = set(variants)
        if not available or "Range" in self.request.headers:
            return None
        for coding in accepted_encodings(self.request.headers.get("Accept-Encoding")):
            if coding in available:
                return coding
        return None

    def _validate(self, root: str, absolute_path: str) -> str | None:
        """Tornado's validation, with what releases before 6.5.9 and 6.6 do not check
        done first: the file that would be opened (symlinks resolved) is inside the root
        and not hidden, and no redirect starts with two slashes (an open redirect)."""
        self._inside(root, absolute_path)
        if (
            self.default_filename is not None
            and not self.request.path.endswith("/")
            and self.request.path[1:2] in ("/", "\\")
            and os.path.isdir(absolute_path)
        ):
            raise HTTPError(403, "cannot redirect path with two initial slashes")
        path = super().validate_absolute_path(root, absolute_path)
        if path is None:
            return None
        return self._inside(root, path)

    def _inside(self, root: str, path: str) -> str:
        real = os.path.realpath(path)
        inside = os.path.relpath(real, os.path.realpath(root)).replace(os.sep, "/")
        if inside.startswith("../") or inside == ".." or os.path.isabs(inside):
            raise HTTPError(403, "%s is not in root static directory", self.path)
        if is_hidden(inside):
            raise HTTPError(404)
        return real

    def should_return_304(self) -> bool:
        # Tornado before 6.5 answers an unparsable If-Modified-Since with a 500.
        try:
            return super().should_return_304()
        except (ValueError, TypeError):
            return False

    def _read(
        self, abspath: str, start: int | None = None, end: int | None = None
    ) -> bytes | Generator[bytes, None, None]:
        """`get_content` of this response: the bytes decided in `validate_absolute_path`,
        from memory or from the file opened there (never reopened by name)."""
        served = self._served
        assert served is not None
        if served.body is not None:
            return served.body[start:end]
        return self._stream(served, start or 0, served.size if end is None else end)

    def _stream(self, served: _Served, start: int, end: int) -> Generator[bytes, None, None]:
        fd = served.fd
        while start < end:
            chunk = os.pread(fd, min(64 * 1024, end - start), start)
            if not chunk:
                break
            start += len(chunk)
            if start >= end and served.key is not None and key_of(os.fstat(fd)) != served.key:
                log.warning(
                    "%s changed while it was sent; the response is cut short so that no "
                    "cache keeps it",
                    self.absolute_path,
                )
                _cut_short(self.request.connection)
                return
            yield chunk

    def get_content_size(self) -> int:
        if self._served is None:
            return super().get_content_size()
        return self._served.size

    def get_modified_time(self) -> datetime.datetime | None:
        if self._served is None:
            return super().get_modified_time()
        return datetime.datetime.fromtimestamp(int(self._served.mtime), datetime.timezone.utc)

    def get_content_type(self) -> str:
        if self._served is None:
            return super().get_content_type()
        return content_type(self.absolute_path or self.path)

    def compute_etag(self) -> str | None:
        served = self._served
        if served is None:
            return super().compute_etag()
        if served.label is None:
            return f'"{served.size:x}-{int(served.mtime * 1e9):x}"'
        if served.coding is not None:
            return f'"{served.label}.{served.coding}"'
        return f'"{served.label}"'

    def get_cache_time(self, path: str, modified: datetime.datetime | None, mime_type: str) -> int:
        """0: the Cache-Control of every response is set from assetver's policy."""
        return 0

    def set_headers(self) -> None:
        served = self._served
        status = served.status if served is not None else None
        assets = self._assets()
        max_age = assets.config.max_age if assets is not None else 0
        self.set_header("Cache-Control", cache_control(status, 200, max_age=max_age))
        if status is not None and status.immutable:
            self.set_header("Expires", _expires())
        if served is not None and served.vary:
            self.set_header("Vary", "Accept-Encoding")
        if served is not None and served.coding is not None:
            self.set_header("Content-Encoding", served.coding)
        origin = assets.config.allow_origin if assets is not None else "*"
        if origin is not None:
            self.set_header("Access-Control-Allow-Origin", origin)
        super().set_headers()

    def finish(self, chunk: Any = None) -> Any:
        code = self.get_status()
        if code not in (200, 206, 304):
            self.set_header("Cache-Control", cache_control(None, code))
            self.clear_header("Expires")
        return super().finish(chunk)

    def on_finish(self) -> None:
        served = self._served
        if served is not None and served.fd >= 0:
            os.close(served.fd)
            served.fd = -1

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Cache-Control", NO_STORE)
        super().write_error(status_code, **kwargs)


def _overrides(cls: type, *names: str) -> bool:
    """Tells whether ``cls`` overrides any of Tornado's methods ``names`` below our class."""
    for klass in cls.__mro__:
        if klass is StaticFileHandler:
            return False
        if any(name in vars(klass) for name in names):
            return True
    return False


def _open(path: str) -> tuple[int, os.stat_result]:
    """Opens the file that will be served and stats it through the descriptor, so the
    bytes sent and the stat checked are those of one file whatever renames happen."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError as e:
        raise HTTPError(404) from e
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise HTTPError(403, "not a file")
    os.set_blocking(fd, True)
    return fd, st


_expires_at: tuple[int, str] = (0, "")


def _expires() -> str:
    """``Expires`` one year out, formatted once per second rather than per request."""
    global _expires_at
    now = int(time.time())
    if _expires_at[0] != now:
        _expires_at = (now, httputil.format_timestamp(now + IMMUTABLE_SECONDS))
    return _expires_at[1]


def _cut_short(connection: Any) -> None:
    """Closes the connection under a response whose body cannot be finished: the client
    sees fewer bytes than Content-Length and no cache keeps what it got."""
    connection.detach().close()
