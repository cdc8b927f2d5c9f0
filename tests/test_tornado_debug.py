"""Debug mode through a real Tornado server: the watcher keeps ``static_url`` and the
served bytes fresh; requests neither rebuild nor hash."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tornado.web
from tornado.web import RequestHandler

import assetver.build
import assetver.hashing
import assetver.tornado
from assetver import build_manifest

from .tornado_support import Counted, StaticTestCase

REPO = Path(__file__).resolve().parent.parent


class UrlHandler(RequestHandler):
    def get(self, path: str) -> None:
        self.write(self.static_url(path))


class DebugTest(StaticTestCase):
    files = {"css/app.css": b"body { color: red }\n", "js/app.js": b"1;\n", "old/a.txt": b"a"}
    settle = 2.0

    def handlers(self) -> list[Any]:
        return [("/url/(.*)", UrlHandler)]

    def app_settings(self) -> dict[str, Any]:
        return {"static_hash_cache": False}

    def setUp(self) -> None:
        super().setUp()
        self.assertEqual(self.fetch("/url/css/app.css").code, 200)

    def url(self, logical: str) -> str:
        return self.fetch(f"/url/{logical}").body.decode()

    def until(self, check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + self.settle
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.01)
        raise AssertionError("not reflected within the bounded wait")

    def assert_serves(self, logical: str, body: bytes) -> None:
        digest = assetver.hashing.digest_bytes(body)
        self.until(lambda: self.url(logical).endswith(f"?v={digest}"))
        r = self.fetch(self.url(logical))
        assert r.code == 200 and r.body == body
        assert r.headers["Etag"] == f'"{digest}"'
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"

    def assert_gone(self, logical: str) -> None:
        self.until(lambda: self.url(logical) == f"/static/{logical}")
        assert self.fetch(f"/static/{logical}").code == 404

    def write(self, logical: str, data: bytes) -> None:
        path = Path(self.static, logical)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def test_create(self) -> None:
        self.write("css/new.css", b"new\n")
        self.assert_serves("css/new.css", b"new\n")

    def test_modify_in_place(self) -> None:
        old = self.url("css/app.css")
        self.write("css/app.css", b"body { color: blu }\n")
        self.assert_serves("css/app.css", b"body { color: blu }\n")
        stale = self.fetch(old)
        if self.output:  # the output retains the old hashed copy: its own bytes, immutable
            assert stale.body == b"body { color: red }\n"
            assert stale.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        else:
            assert stale.headers["Cache-Control"] == "no-cache"

    def test_atomic_save(self) -> None:
        tmp = Path(self.static, "css/.app.css.swp")
        tmp.write_bytes(b"saved atomically\n")
        os.replace(tmp, Path(self.static, "css/app.css"))
        self.assert_serves("css/app.css", b"saved atomically\n")

    def test_delete(self) -> None:
        Path(self.static, "js/app.js").unlink()
        self.assert_gone("js/app.js")

    def test_rename(self) -> None:
        os.rename(Path(self.static, "js/app.js"), Path(self.static, "js/main.js"))
        self.assert_serves("js/main.js", b"1;\n")
        self.assert_gone("js/app.js")

    def test_new_directory_with_files(self) -> None:
        staging = Path(self.tmp, "staging")
        (staging / "sub").mkdir(parents=True)
        (staging / "sub" / "x.css").write_bytes(b"x\n")
        os.rename(staging, Path(self.static, "fresh"))
        self.assert_serves("fresh/sub/x.css", b"x\n")

    def test_deleted_directory(self) -> None:
        Path(self.static, "old/a.txt").unlink()
        Path(self.static, "old").rmdir()
        self.assert_gone("old/a.txt")

    def test_moved_directory(self) -> None:
        os.rename(Path(self.static, "old"), Path(self.static, "moved"))
        self.assert_serves("moved/a.txt", b"a")
        self.assert_gone("old/a.txt")

    def test_requests_neither_rebuild_nor_hash(self) -> None:
        urls = [self.url(p) for p in self.files]
        for url in urls:  # what is read into memory is hashed as it is read, once
            assert self.fetch(url).code == 200
        with Counted() as counted:
            for _ in range(20):
                for url in urls:
                    assert self.fetch(url).code == 200
                    self.url("css/app.css")
            assert (counted.hashes, counted.builds) == (0, 0)
        with Counted() as counted:
            build_manifest(self.static)
        assert counted.hashes > 0 and counted.builds == 1, "the counter must see it"

    def test_watcher_thread_runs(self) -> None:
        assert any(t.name == "assetver-watch" for t in threading.enumerate())


class DebugOutputTest(DebugTest):
    """Debug mode with an output: the watcher keeps it compiled, same URLs and bytes."""

    output = True


class DebugWithManifestTest(DebugTest):
    """A manifest named by assetver_manifest is a head start, never rewritten."""

    def setUp(self) -> None:
        self.manifest_path: str | None = None
        super().setUp()

    def app_settings(self) -> dict[str, Any]:
        self.manifest_path = os.path.join(self.tmp, "manifest.json")
        build_manifest(self.static).dump(self.manifest_path)
        return {"static_hash_cache": False, "assetver_manifest": self.manifest_path}

    def test_manifest_file_is_not_rewritten(self) -> None:
        assert self.manifest_path is not None
        before = Path(self.manifest_path).read_bytes()
        self.write("css/app.css", b"edited\n")
        self.assert_serves("css/app.css", b"edited\n")
        assert Path(self.manifest_path).read_bytes() == before


def test_head_start_rehashes_files_newer_than_the_manifest(tmp_path: Path) -> None:
    static = tmp_path / "static"
    static.mkdir()
    (static / "a.css").write_bytes(b"aaaa")
    manifest_path = tmp_path / "m.json"
    build_manifest(static).dump(manifest_path)
    time.sleep(0.01)
    (static / "a.css").write_bytes(b"bbbb")  # same size, written after the manifest
    app_settings = assetver.tornado.settings(
        static_path=str(static), static_hash_cache=False, assetver_manifest=str(manifest_path)
    )
    handler = app_settings["static_handler_class"]
    expected = assetver.hashing.digest_bytes(b"bbbb")
    assert handler.make_static_url(app_settings, "a.css") == f"/static/a.css?v={expected}"


def test_production_mode_starts_no_watcher(tmp_path: Path) -> None:
    (tmp_path / "a.css").write_text("a")
    before = set(threading.enumerate())
    app = tornado.web.Application(**assetver.tornado.settings(static_path=str(tmp_path)))
    handler = app.settings["static_handler_class"]
    handler.make_static_url(app.settings, "a.css")
    assert set(threading.enumerate()) == before
    assert app.settings["assetver.state"].stop_watching is None


CHILD = """
import asyncio, sys
import tornado.process, tornado.web
import assetver.tornado
from assetver.watch import WatchError

tornado.process.fork_processes(1, max_restarts=0)
app = tornado.web.Application(**assetver.tornado.settings(static_path=sys.argv[1], debug=False,
                                                         static_hash_cache=False))

async def main():
    try:
        app.settings["static_handler_class"].make_static_url(app.settings, "a.css")
    except WatchError as e:
        print("refused:", e, flush=True)
        return
    print("not refused", flush=True)

asyncio.run(main())
"""


def test_forked_child_refuses_to_watch(tmp_path: Path) -> None:
    (tmp_path / "a.css").write_text("a")
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert "refused: the assetver watcher cannot run in forked child 0" in result.stdout, (
        result.stdout + result.stderr
    )


def test_same_size_edit_before_the_first_request_is_seen(tmp_path: Path) -> None:
    """The manifest is built with the Application; the watcher starts at the first
    request and must compare stat data, not only sizes, with what was hashed."""
    import asyncio

    static = tmp_path / "static"
    static.mkdir()
    (static / "app.css").write_bytes(b"#fff")
    app = tornado.web.Application(
        **assetver.tornado.settings(static_path=str(static), static_hash_cache=False)
    )
    time.sleep(0.01)
    (static / "app.css").write_bytes(b"#000")
    handler = app.settings["static_handler_class"]

    async def first_use() -> str:
        return str(handler.make_static_url(app.settings, "app.css"))

    url = asyncio.run(first_use())
    assert url == f"/static/app.css?v={assetver.hashing.digest_bytes(b'#000')}"
