"""Shared pieces of the Tornado tests: a temporary static root and an app factory."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from tornado.tcpclient import TCPClient
from tornado.testing import AsyncHTTPTestCase
from tornado.web import Application

import assetver.tornado
from assetver.hashing import digest_bytes
from assetver.tornado import STATE_KEY

ROBOTS = b"User-agent: *\nDisallow: /\n"


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

    def setUp(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="assetver-test-")
        self.static = os.path.join(self.tmp, "static")
        os.makedirs(self.static)
        make_tree(self.static, self.files)
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
        return Application(
            self.handlers(),
            **assetver.tornado.settings(static_path=self.static, **self.app_settings()),
        )

    def digest(self, logical: str) -> str:
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
