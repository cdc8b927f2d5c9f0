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
import threading
import time
from collections.abc import Generator
from typing import Any

import tornado.process
import tornado.web
from tornado import httputil
from tornado.escape import xhtml_escape
from tornado.ioloop import IOLoop
from tornado.web import HTTPError

from . import startup
from .answer import Answer, Redirect, Served, plain
from .errors import ConfigError, Refused
from .http import content_type
from .policy import IMMUTABLE_SECONDS, NO_STORE, cache_control
from .serving import Assets, Config
from .statkey import key_of
from .urls import is_hidden, is_internal

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


def static_url(
    handler: tornado.web.RequestHandler,
    path: str,
    include_host: bool | None = None,
    **kwargs: Any,
) -> str:
    """Templates' ``static_url``: Tornado's, except that with ``assetver_url_host`` the URL
    already names its origin, and ``include_host`` must not put a second one in front.
    (Handler code calling ``self.static_url(path, include_host=True)`` gets Tornado's own
    method, which cannot tell: leave ``include_host`` off when ``assetver_url_host`` is
    set.)"""
    if _assets(handler.settings).config.url_host:
        include_host = False
    return handler.static_url(path, include_host=include_host, **kwargs)


UI_METHODS = {
    "static_url": static_url,
    "static_integrity": static_integrity,
    "stylesheet_tag": stylesheet_tag,
    "script_tag": script_tag,
    "modulepreload_tag": modulepreload_tag,
}
"""The template helpers `settings` installs as ``ui_methods`` (yours are added after, and
win on a clash); handlers reach them as ``self.ui["stylesheet_tag"](path)``."""


class StaticFileHandler(tornado.web.StaticFileHandler):
    """A `tornado.web.StaticFileHandler` that versions URLs from the manifest.

    Use it as ``static_handler_class`` (`settings` does): ``static_url()`` becomes a
    dict look-up, a request carrying the current digest gets one year of
    ``immutable`` caching when the bytes sent are proven to be that digest, a retained
    digest gets its own bytes, stale or forged digests never get far-future caching,
    and nothing is hashed on a request but what is read into memory. Routes to other
    directories (``{"path": ...}``) work as with Tornado's class, revalidated.
    """

    _served: Served | None = None
    _logical: str | None = None

    def prepare(self) -> None:
        """Answers a GET or HEAD whose bytes are in memory (the common case) here: the
        same hooks (`set_headers`, `should_return_304`, `write`, `finish`) and so the
        same headers, transforms and subclass overrides as Tornado's `get`, without its
        streaming machinery. Anything else (a range, a file not in memory, a subclass
        that serves its own way) goes on to `get` as usual."""
        request = self.request
        if request.method not in ("GET", "HEAD") or "Range" in request.headers:
            return
        if len(self.path_args) != 1 or self.path_kwargs or _overrides(type(self), *_OWN_WAYS):
            return
        if self.application.transforms:  # compress_response: Tornado's get() chunks feed it
            return
        assets = self._assets()
        if assets is None:
            return
        url_path = self.path_args[0]
        if "\x00" in url_path or not self._may_serve(url_path):
            return
        target = assets.resolve(url_path, self._query_digest())
        entry = target.entry
        if entry is None or (target.requested is not None and target.requested != entry.digest):
            return
        served = Answer(
            assets, self.root, _never, request.headers.get("Accept-Encoding"), False
        ).in_memory(target.logical, entry, target.requested)
        if served is None:
            return
        self._logical = url_path
        self.path = url_path
        self.absolute_path = served.path
        self._served = served
        self.modified = self.get_modified_time()
        self.set_headers()
        if self.should_return_304():
            self.set_status(304)
        else:
            self.set_header("Content-Length", served.size)
            if request.method == "GET":
                assert served.body is not None
                self.write(served.body)
        self.finish()

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
        if not self._may_serve(url_path):
            raise HTTPError(404)
        self._logical = url_path
        return super().parse_url_path(url_path)

    def _query_digest(self) -> str | None:
        """The ``v`` argument (the last one, as Tornado's ``get_argument`` takes)."""
        values = self.request.query_arguments.get("v")
        return values[-1].decode("latin-1") if values else None

    def _may_serve(self, logical: str) -> bool:
        """Dotfiles are never served, unless the app counts them (then only assetver's
        own state and temporary files are not)."""
        assets = self._assets()
        if assets is not None and assets.config.options.include_hidden:
            return not any(map(is_internal, logical.split("/")))
        return not is_hidden(logical)

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        assets = self._assets()
        if _overrides(type(self), *_CONTENT_HOOKS):  # a subclass serves its own bytes
            return self._validate(root, absolute_path)
        result: Served | Redirect | None
        try:
            if assets is None or self._logical is None:
                path = self._validate(root, absolute_path)
                result = None if path is None else plain(path, root)
            else:
                answer = Answer(
                    assets,
                    root,
                    lambda inside: self._validate(root, self.get_absolute_path(root, inside)),
                    self.request.headers.get("Accept-Encoding"),
                    "Range" in self.request.headers,
                )
                result = answer(assets.resolve(self._logical, self._query_digest()))
        except Refused as e:
            raise HTTPError(e.code) from e
        if isinstance(result, Redirect):
            self.set_header("Cache-Control", NO_STORE)
            self.redirect(result.url)
            return None
        if result is None:
            return None
        self._served = result
        # Tornado's get() calls self.get_content(...): reading from what was decided here,
        # not reopening the path, is what keeps bytes and proof together.
        self.__dict__["get_content"] = self._read
        return result.path

    def _validate(self, root: str, absolute_path: str) -> str | None:
        """Tornado's validation, with what releases before 6.5.9 and 6.6 do not check
        done first: the file that would be opened (symlinks resolved) is inside the root
        and may be served, and no redirect starts with two slashes (an open redirect)."""
        self._inside(root, absolute_path)
        if (
            self.default_filename is not None
            and not self.request.path.endswith("/")
            and self.request.path[1:2] in ("/", "\\")
            and os.path.isdir(absolute_path)
        ):
            raise HTTPError(403, "cannot redirect path with two initial slashes")
        try:
            path = super().validate_absolute_path(root, absolute_path)
        except OSError as e:  # a component swapped while Tornado resolved it
            raise HTTPError(404) from e
        if path is None:
            return None
        return self._inside(root, path)

    def _inside(self, root: str, path: str) -> str:
        try:
            real, real_root = os.path.realpath(path), os.path.realpath(root)
        except (OSError, ValueError) as e:
            raise HTTPError(404) from e
        inside = os.path.relpath(real, real_root).replace(os.sep, "/")
        if inside.startswith("../") or inside == ".." or os.path.isabs(inside):
            raise HTTPError(403, "%s is not in root static directory", self.path)
        if inside != "." and not self._may_serve(inside):
            raise HTTPError(404)
        return real

    def should_return_304(self) -> bool:
        served = self._served
        status = served.status if served is not None else None
        if status is not None and status.immutable and "If-None-Match" not in self.request.headers:
            # A 304 carrying a year of caching must be for the bytes the client holds:
            # only its ETag (the digest) says which, a date does not.
            return False
        try:
            return super().should_return_304()
        except (ValueError, TypeError):  # Tornado before 6.5: a bad If-Modified-Since
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

    def _stream(self, served: Served, start: int, end: int) -> Generator[bytes, None, None]:
        fd = served.fd
        while start < end:
            chunk = os.pread(fd, min(64 * 1024, end - start), start)
            start += len(chunk)
            last = start >= end or not chunk
            if last and (
                not chunk or (served.key is not None and key_of(os.fstat(fd)) != served.key)
            ):
                log.warning(
                    "%s changed while it was sent; the response is cut short so that no "
                    "cache keeps it",
                    served.path,
                )
                _cut_short(self.request.connection)
                yield b""  # written to the closed stream: Tornado's get() ends quietly
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
        if self._served is not None:
            self._served.close()

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Cache-Control", NO_STORE)
        super().write_error(status_code, **kwargs)


_CONTENT_HOOKS = ("get_absolute_path", "get_content", "get_content_size", "get_modified_time")
_OWN_WAYS = (*_CONTENT_HOOKS, "get", "head", "parse_url_path", "validate_absolute_path")
"""What a subclass overrides when `prepare`'s answer from memory would bypass its code."""


def _never(path: str) -> str | None:
    raise AssertionError("an answer from memory opens no file")


"""Tornado's hooks for serving bytes from elsewhere: a subclass overriding one gets
Tornado's own serving (and assetver's revalidating headers), never a proof."""


def _overrides(cls: type, *names: str) -> bool:
    """Tells whether ``cls`` overrides any of Tornado's methods ``names`` below our class."""
    for klass in cls.__mro__:
        if klass is StaticFileHandler:
            return False
        if any(name in vars(klass) for name in names):
            return True
    return False


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
    connection.stream.close()
