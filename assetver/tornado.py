"""Tornado integration: ``static_url()`` answered from the manifest, and a
`StaticFileHandler` that sends far-future caching only for current versions.

Set it up with `settings`, which loads the manifest while the `Application` is built,
before ``server.start(n)`` forks, so every worker renders the same URLs::

    app = tornado.web.Application(
        handlers,
        **assetver.tornado.settings(
            static_path="static",
            assetver_manifest="static/.assetver/manifest.json",
        ),
    )

This is the only module that imports tornado.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import threading
import time
from collections.abc import Awaitable
from typing import Any, ClassVar

import tornado.process
import tornado.web
from tornado import httputil
from tornado.ioloop import IOLoop
from tornado.web import HTTPError

from .http import (
    ENCODINGS,
    IMMUTABLE,
    IMMUTABLE_SECONDS,
    NO_STORE,
    REVALIDATE,
    accepted_encodings,
    content_type,
)
from .manifest import Entry
from .memory import Headers, Representation, read_exactly
from .serving import STATE_KEY, Assets, assets_for
from .watch import Watcher, refuse_in_child

log = logging.getLogger("assetver")

_watch_lock = threading.Lock()


def _assets(settings: dict[str, Any]) -> Assets:
    """The Application's `Assets`; in debug mode, starts the watcher on first use from
    within the event loop (a handler's ``static_url`` or a request)."""
    assets = settings.get(STATE_KEY) or assets_for(settings)
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
        refuse_in_child(tornado.process.task_id())
        io_loop = IOLoop.current()

        def deliver(manifest: Any) -> None:
            with contextlib.suppress(RuntimeError):
                io_loop.add_callback(assets.set_manifest, manifest)

        config = assets.config
        watcher = Watcher(
            config.root,
            on_change=deliver,
            manifest=assets.manifest,
            keys=assets.keys,
            exclude_paths=[config.manifest_path] if config.manifest_path else [],
            alive=lambda: not asyncio_loop.is_closed(),
        )
        watcher.start()
        assets.set_manifest(watcher.manifest)
        assets.stop_watching = watcher.stop


def settings(**options: Any) -> dict[str, Any]:
    """Returns Application settings that serve ``static_path`` through assetver.

    Takes the same keywords as `tornado.web.Application` (``static_path``,
    ``static_url_prefix``, ``debug``, ...) plus the ``assetver_*`` settings:

    * ``assetver_manifest``: a manifest written by ``assetver build``; without one the
      manifest is built once, here.
    * ``assetver_url_style``: ``"query"`` (``/static/app.css?v=<digest>``, the default)
      or ``"filename"`` (``/static/app.<digest>.css``). Both forms are served either way.
    * ``assetver_url_host``: an origin (``https://cdn.example.com``) that ``static_url``
      puts in front of the prefix; the local route keeps serving.
    * ``assetver_strict``: ``static_url`` of a path not in the manifest raises
      `.AssetNotFound` instead of logging a warning and returning an unversioned URL.
    * ``assetver_stale``: what a request for a digest that is not current gets:
      ``"serve"`` (current bytes, ``no-cache``), ``"redirect"`` or ``"404"``.
    * ``assetver_max_age``: seconds unversioned requests may be cached (default 0:
      ``no-cache``, revalidated with the ETag).
    * ``assetver_memory``: bytes of small files kept in memory per process (default
      32 MiB; files up to 64 KiB and their precompressed siblings).

    Raises `.ConfigError` naming the setting when a value is wrong.
    """
    result = dict(options)
    result.setdefault("static_handler_class", StaticFileHandler)
    result.pop(STATE_KEY, None)
    _assets(result)
    return result


class StaticFileHandler(tornado.web.StaticFileHandler):
    """A `tornado.web.StaticFileHandler` that versions URLs from the manifest.

    Use it as ``static_handler_class`` (`settings` does): ``static_url()`` becomes a
    dict look-up, requests carrying the current digest get one year of ``immutable``
    caching, stale or forged digests never do, and nothing is hashed on a request.
    Routes to other directories (``{"path": ...}``) work as with Tornado's class, with
    ETag revalidation.
    """

    MEMORY_FILE_MAX = 64 * 1024
    """Files up to this size (and their siblings) are served from memory."""

    _assets: Assets | None = None
    _logical = ""
    _entry: Entry | None = None
    _status: str | None = None
    _coding: str | None = None
    _vary = False
    _identity_path: str | None = None
    _same_root: ClassVar[dict[str, bool]] = {}

    def set_default_headers(self) -> None:
        self._headers["X-Content-Type-Options"] = "nosniff"

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

    def parse_url_path(self, url_path: str) -> str:
        """Inverse of `make_static_url`: strips a digest from a hashed file name."""
        assets = self._find_assets()
        if assets is not None:
            url_path = assets.resolve(url_path)[0]
        return super().parse_url_path(url_path)

    def _find_assets(self) -> Assets | None:
        if not self.settings.get("static_path"):
            return None
        assets = _assets(self.settings)
        same = self._same_root.get(self.root)
        if same is None:
            same = os.path.realpath(self.root) == assets.config.root
            self._same_root[self.root] = same
        return assets if same else None

    def get(  # type: ignore[override]
        self, path: str, include_body: bool = True
    ) -> Awaitable[None] | None:
        if "\x00" in path:
            raise HTTPError(400, "NUL in path")
        assets = self._find_assets()
        if assets is not None:
            logical, digest = assets.resolve(path)
            if "/." in "/" + logical and any(
                part.startswith(".") and part not in (".", "..") for part in logical.split("/")
            ):
                raise HTTPError(404)
            self._assets, self._logical = assets, logical
            entry = assets.manifest.get(logical)
            if entry is not None:
                if digest is None:
                    values = self.request.query_arguments.get("v")
                    digest = values[-1].decode("latin-1") if values else None
                if digest is None:
                    self._status = "absent"
                elif digest == entry.digest:
                    self._status = "current"
                else:
                    self._status = "stale"
                    if assets.config.stale == "404":
                        raise HTTPError(404)
                    if assets.config.stale == "redirect":
                        self.set_header("Cache-Control", NO_STORE)
                        self.redirect(assets.url(logical))
                        return None
                self._entry = entry
                rep = assets.memory.get(logical, entry.digest)
                if rep is not None and self._serve_from_memory(rep, include_body):
                    return None
        return super().get(path, include_body)

    def _serve_from_memory(self, rep: Representation, include_body: bool) -> bool:
        request = self.request.headers
        if "Range" in request or (
            "If-Modified-Since" in request and "If-None-Match" not in request
        ):
            return False
        variants = rep.variants
        coding = None
        if len(variants) > 1:
            for candidate in accepted_encodings(request.get("Accept-Encoding")):
                if candidate in variants:
                    coding = candidate
                    break
        body, ready = variants[coding]
        headers = self._headers
        for name, value in ready:
            headers[name] = value
        self._set_cache_headers()
        if "If-None-Match" in request and self.check_etag_header():
            self.set_status(304)
            return True
        headers["Content-Length"] = str(len(body))
        if include_body:
            self.write(body)
        return True

    def validate_absolute_path(self, root: str, absolute_path: str) -> str | None:
        path = super().validate_absolute_path(root, absolute_path)
        if path is None or self._assets is None:
            return path
        if self._entry is None and self.default_filename and os.path.isdir(absolute_path):
            logical = os.path.relpath(path, self._assets.config.root).replace(os.sep, "/")
            self._entry = self._assets.manifest.get(logical)
            self._logical, self._status = logical, "absent"
        if self._entry is None:
            return path
        identity = self._stat_result
        if identity.st_size != self._entry.size:
            self._warn_stale_manifest(path)
            self._entry = self._status = None
            return path
        self._identity_path = path
        siblings = self._siblings(root, path, identity)
        self._vary = bool(siblings)
        if identity.st_size <= self.MEMORY_FILE_MAX and (
            self._assets.memory.get(self._logical, self._entry.digest) is None
        ):
            self._remember(path, identity, siblings)
        if "Range" not in self.request.headers:
            for coding in accepted_encodings(self.request.headers.get("Accept-Encoding")):
                if coding in siblings:
                    self._coding = coding
                    path, self._stat_result = siblings[coding]
                    break
        return path

    def _remember(
        self, path: str, identity: os.stat_result, siblings: dict[str, tuple[str, os.stat_result]]
    ) -> None:
        assert self._assets is not None and self._entry is not None
        body = read_exactly(path, self._entry.size)
        if body is None:
            return
        bodies: dict[str | None, bytes] = {None: body}
        for coding, (sibling_path, st) in siblings.items():
            if st.st_size > self.MEMORY_FILE_MAX:
                return
            data = read_exactly(sibling_path, st.st_size)
            if data is None:
                return
            bodies[coding] = data
        common = (
            ("Accept-Ranges", "bytes"),
            ("Last-Modified", httputil.format_timestamp(_modified(identity))),
            ("Content-Type", content_type(path)),
            *((("Vary", "Accept-Encoding"),) if siblings else ()),
        )
        variants: dict[str | None, tuple[bytes, Headers]] = {}
        for name, data in bodies.items():
            encoding: Headers = (("Content-Encoding", name),) if name is not None else ()
            variants[name] = (data, (("Etag", self._etag_for(name)), *common, *encoding))
        self._assets.memory.put(self._logical, self._entry.digest, Representation(variants))

    def _siblings(
        self, root: str, path: str, identity: os.stat_result
    ) -> dict[str, tuple[str, os.stat_result]]:
        found = {}
        for coding, suffix in ENCODINGS:
            try:
                candidate = super().validate_absolute_path(root, path + suffix)
            except HTTPError:
                continue
            if candidate is not None and self._stat_result.st_mtime_ns >= identity.st_mtime_ns:
                found[coding] = (candidate, self._stat_result)
        self._stat_result = identity
        return found

    def _etag_for(self, coding: str | None) -> str:
        assert self._entry is not None
        if coding is None:
            return f'"{self._entry.digest}"'
        return f'"{self._entry.digest}.{coding}"'

    def _warn_stale_manifest(self, path: str) -> None:
        assert self._assets is not None
        self._assets.warn_once(
            f"{path} does not match the manifest (size differs); serving it unversioned. "
            f"Rebuild the manifest: assetver build {self._assets.config.root}"
        )

    def compute_etag(self) -> str | None:
        if self._entry is not None:
            return self._etag_for(self._coding)
        st = self._stat()
        return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'

    def get_content_type(self) -> str:
        assert self.absolute_path is not None
        return content_type(self._identity_path or self.absolute_path)

    def get_cache_time(self, path: str, modified: Any, mime_type: str) -> int:
        return IMMUTABLE_SECONDS if self._status == "current" else 0

    def set_extra_headers(self, path: str) -> None:
        self._set_cache_headers()
        if self._vary:
            self.set_header("Vary", "Accept-Encoding")
        if self._coding is not None:
            self.set_header("Content-Encoding", self._coding)

    def _set_cache_headers(self) -> None:
        headers = self._headers
        if self._status == "current":
            headers["Cache-Control"] = IMMUTABLE
            headers["Expires"] = _expires()
        else:
            max_age = self._assets.config.max_age if self._assets is not None else 0
            headers["Cache-Control"] = f"public, max-age={max_age}" if max_age else REVALIDATE

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Cache-Control", NO_STORE)
        super().write_error(status_code, **kwargs)


_expires_at: tuple[int, str] = (0, "")


def _expires() -> str:
    """``Expires`` one year out, formatted once per second rather than per request."""
    global _expires_at
    now = int(time.time())
    if _expires_at[0] != now:
        _expires_at = (now, httputil.format_timestamp(now + IMMUTABLE_SECONDS))
    return _expires_at[1]


def _modified(st: os.stat_result) -> datetime.datetime:
    """Last-Modified as Tornado computes it: whole seconds, UTC."""
    return datetime.datetime.fromtimestamp(int(st.st_mtime), datetime.timezone.utc)
