"""Shared pieces of the Tornado tests: a temporary static root and an app factory."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from typing import Any

from tornado.tcpclient import TCPClient
from tornado.testing import AsyncHTTPTestCase
from tornado.web import Application

import assetver.tornado
from assetver.hashing import digest_bytes
from assetver.output import CompileOptions, compile_output
from assetver.tornado import STATE_KEY

ROBOTS = b"User-agent: *\nDisallow: /\n"


class Counted:
    """Counts, on the calling thread only, every XXH3 and SHA-512 computation and every
    build started: what a request must not do (patched on the modules that do it, so a
    moved function cannot make the count silently zero)."""

    def __init__(self) -> None:
        self.hashes = 0
        self.builds = 0
        self._patched: list[tuple[Any, str, Any]] = []
        self._thread = threading.get_ident()

    def _wrap(self, owner: Any, name: str, counter: str) -> None:
        original = getattr(owner, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == self._thread:
                setattr(self, counter, getattr(self, counter) + 1)
            return original(*args, **kwargs)

        self._patched.append((owner, name, original))
        setattr(owner, name, counted)

    def __enter__(self) -> Counted:
        import hashlib

        import xxhash

        import assetver.build
        import assetver.hashing

        for name in ("xxh3_64_hexdigest", "xxh3_64"):
            self._wrap(xxhash, name, "hashes")
        self._wrap(assetver.hashing, "hexdigest", "hashes")
        self._wrap(hashlib, "sha512", "hashes")
        self._wrap(assetver.build, "_Run", "builds")
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name, original in reversed(self._patched):
            setattr(owner, name, original)


def make_tree(root: str, files: dict[str, bytes]) -> None:
    for logical, data in files.items():
        path = os.path.join(root, logical)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)


class StaticTestCase(AsyncHTTPTestCase):
    """An AsyncHTTPTestCase whose app serves a fresh temporary static root.

    Subclasses set ``files`` and may override `handlers` and `app_settings`.
    """

    files: dict[str, bytes] = {"robots.txt": ROBOTS}
    compress = "br,gzip"
    output = False
    """Serve a compiled output of the tree (``assetver build static -o out``) instead of
    the tree itself."""

    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="assetver-test-")
        self.static = os.path.join(self.tmp, "static")
        self.out = os.path.join(self.tmp, "out")
        os.makedirs(self.static)
        make_tree(self.static, self.files)
        if self.output:
            compile_output(
                self.static, self.out, settings=CompileOptions.make(compress=self.compress)
            )
        super().setUp()

    def tearDown(self) -> None:
        assets = self._app.settings.get(STATE_KEY)
        super().tearDown()
        if assets is not None and assets.stop_watching is not None:
            assets.stop_watching()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def handlers(self) -> list[Any]:
        return []

    def app_settings(self) -> dict[str, Any]:
        return {}

    def get_app(self) -> Application:
        extra = {"assetver_output": self.out} if self.output else {}
        return Application(
            self.handlers(),
            **assetver.tornado.settings(static_path=self.static, **extra, **self.app_settings()),
        )

    def digest(self, logical: str) -> str:
        """The digest of the bytes served for ``logical`` (a rewritten stylesheet's in an
        output)."""
        assets = self._app.settings[STATE_KEY]
        if self.output:
            return assets.manifest[logical].digest  # type: ignore[no-any-return]
        with open(os.path.join(self.static, logical), "rb") as f:
            return digest_bytes(f.read())

    def raw(self, request_line: bytes) -> bytes:
        """Sends one request exactly as written (no client-side normalisation)."""

        async def exchange() -> bytes:
            stream = await TCPClient().connect("127.0.0.1", self.get_http_port())
            try:
                await stream.write(
                    request_line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                )
                return await stream.read_until_close()
            finally:
                stream.close()

        return self.io_loop.run_sync(exchange, timeout=5)
