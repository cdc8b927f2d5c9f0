"""The immutable promise in a root (files served in place): every response that carries
``immutable`` or a digest ETag has a body that hashes to that digest, whatever happens
to the files; each observation of the serving-integrity issue is a test here."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tornado.web
from tornado.httpclient import HTTPResponse
from tornado.testing import AsyncHTTPTestCase
from tornado.web import Application, RequestHandler

import assetver
import assetver.tornado
from assetver.hashing import digest_bytes
from assetver.tornado import STATE_KEY

from .tornado_support import ROBOTS, StaticTestCase, make_tree

IMMUTABLE = "public, max-age=31536000, immutable"
SMALL = b"body { color: red }\n" * 10
BIG = bytes(range(256)) * 2048  # 512 KiB: served from the file, not from memory


def replace(path: str, data: bytes) -> None:
    """Saves ``data`` the way editors do: a temporary file renamed over the old one."""
    tmp = path + ".tmp~"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def overwrite(path: str, data: bytes) -> None:
    """Saves ``data`` in place (same inode)."""
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()


def digest_in(response: HTTPResponse) -> str | None:
    """The digest a response claims its body is: the ETag's, or the URL's when immutable."""
    etag = response.headers.get("Etag", "").strip('"')
    return etag.split(".")[0] if len(etag.split(".")[0]) == 16 else None


def assert_honest(response: HTTPResponse, url: str) -> None:
    """The promise: immutable only for the digest in the URL, and any digest ETag is
    the digest of the body."""
    claimed = digest_in(response)
    if claimed is not None and response.code == 200:
        assert digest_bytes(response.body) == claimed, (url, response.headers)
    if response.headers.get("Cache-Control") == IMMUTABLE:
        assert response.code in (200, 206, 304)
        in_url = url.split("?v=")[1] if "?v=" in url else url.rsplit(".", 2)[-2]
        if response.code == 200:
            assert digest_bytes(response.body) == in_url, url


class UrlHandler(RequestHandler):
    def get(self, path: str) -> None:
        self.write(self.static_url(path))


class RootCase(StaticTestCase):
    files = {"robots.txt": ROBOTS, "css/app.css": SMALL, "big.bin": BIG}
    debug = False

    def handlers(self) -> list[Any]:
        return [("/url/(.*)", UrlHandler)]

    def app_settings(self) -> dict[str, Any]:
        return {"debug": self.debug} if self.debug else {}

    def url(self, logical: str) -> str:
        return self.fetch(f"/url/{logical}").body.decode()

    def get(self, url: str, **kwargs: Any) -> HTTPResponse:
        response = self.fetch(url, **kwargs)
        assert_honest(response, url)
        return response

    def path(self, logical: str) -> str:
        return os.path.join(self.static, logical)


class ProductionEditTest(RootCase):
    """Observation 2: a same-size edit after the manifest was built, served cold, warm,
    from disk and by Range, never goes out under the old digest."""

    def test_same_size_edit_in_place(self) -> None:
        for logical, data in (("css/app.css", SMALL), ("big.bin", BIG)):
            url = self.url(logical)
            warm = self.get(url)
            assert warm.headers["Cache-Control"] == IMMUTABLE and warm.body == data
            edited = bytes(reversed(data))
            overwrite(self.path(logical), edited)
            for headers in ({}, {"Range": "bytes=0-99"}, {"If-None-Match": warm.headers["Etag"]}):
                r = self.get(url, headers=headers)
                assert r.headers["Cache-Control"] != IMMUTABLE, (logical, headers)
                if r.code == 200:
                    assert r.body == edited
                if r.code == 206:
                    assert r.body == edited[:100]

    def test_size_changing_edit(self) -> None:
        url = self.url("css/app.css")
        self.get(url)
        replace(self.path("css/app.css"), SMALL + b"/* more */")
        for headers in ({}, {"Range": "bytes=0-9"}):
            r = self.get(url, headers=headers)
            assert r.headers["Cache-Control"] == "no-cache"
            assert r.body.startswith(SMALL[:10])

    def test_cold_edit_before_any_request(self) -> None:
        url = self.url("big.bin")
        overwrite(self.path("big.bin"), bytes(reversed(BIG)))
        r = self.get(url)
        assert r.headers["Cache-Control"] == "no-cache" and r.body == bytes(reversed(BIG))

    def test_edit_reverted_is_proven_again(self) -> None:
        url = self.url("css/app.css")
        replace(self.path("css/app.css"), SMALL.upper())
        assert self.get(url).headers["Cache-Control"] == "no-cache"
        replace(self.path("css/app.css"), SMALL)
        assert self.get(url).headers["Cache-Control"] == IMMUTABLE


class DebugLagTest(RootCase):
    """Observation 1: in debug mode a save the watcher has not seen yet never goes out
    under the old digest, and nothing wrong is remembered under it."""

    debug = True

    def test_save_within_the_debounce(self) -> None:
        url = self.url("css/app.css")
        assert self.get(url).headers["Cache-Control"] == IMMUTABLE
        replace(self.path("css/app.css"), SMALL.upper())
        r = self.get(url)  # before the watcher rebuilt: unproven
        assert r.headers["Cache-Control"] != IMMUTABLE or r.body == SMALL
        replace(self.path("css/app.css"), SMALL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            r = self.get(url)
            if r.headers["Cache-Control"] == IMMUTABLE:
                break
            self.io_loop.run_sync(lambda: __import__("asyncio").sleep(0.05))
        assert r.body == SMALL and r.headers["Cache-Control"] == IMMUTABLE


class NoVariantsInRootTest(RootCase):
    """Observation 3: a ``.gz`` beside a file in a root is another tool's and may hold
    old bytes (after ``git clone`` or ``rsync -a``): a root serves no variants."""

    files = {
        "css/app.css": SMALL,
        "css/app.css.gz": gzip.compress(b"old stylesheet", mtime=0),
    }

    def test_newer_gz_is_not_served_for_the_file(self) -> None:
        gz = self.path("css/app.css.gz")
        future = time.time() + 60
        os.utime(gz, (future, future))
        url = self.url("css/app.css")
        r = self.get(url, headers={"Accept-Encoding": "gzip"}, decompress_response=False)
        assert "Content-Encoding" not in r.headers and r.body == SMALL


class DebugHeadStartTest(AsyncHTTPTestCase):
    """Observation 4: a debug app started with a manifest trusts no digest by the
    manifest file's mtime: a file edited after the build gets its own digest."""

    def get_app(self) -> Application:
        self.tmp = Path(self.__class__.__name__ + str(os.getpid()))
        root = Path(os.environ.get("TMPDIR", "/tmp")) / self.tmp
        shutil.rmtree(root, ignore_errors=True)
        make_tree(str(root / "static"), {"app.css": SMALL})
        manifest = root / "manifest.json"
        assetver.build_manifest(root / "static").dump(manifest)
        overwrite(str(root / "static" / "app.css"), SMALL.upper())
        os.utime(manifest)  # a cp or git checkout bumps it
        self.root = root
        return Application(
            [("/url/(.*)", UrlHandler)],
            **assetver.tornado.settings(
                static_path=str(root / "static"), debug=True, assetver_manifest=str(manifest)
            ),
        )

    def tearDown(self) -> None:
        assets = self._app.settings[STATE_KEY]
        super().tearDown()
        if assets.stop_watching is not None:
            assets.stop_watching()
        shutil.rmtree(self.root, ignore_errors=True)

    def test_edited_file_gets_its_own_digest(self) -> None:
        url = self.fetch("/url/app.css").body.decode()
        assert url.endswith("?v=" + digest_bytes(SMALL.upper()))
        r = self.fetch(url)
        assert r.body == SMALL.upper() and r.headers["Cache-Control"] == IMMUTABLE


class OutOfRootSymlinkTest(RootCase):
    """Observation 5 (every Tornado this project supports): a symlink out of the root
    is neither listed nor served, nor one to a dotfile inside it (observation 9)."""

    def setUp(self) -> None:
        super().setUp()
        os.symlink("/etc/passwd", self.path("passwd.txt"))
        with open(self.path(".env"), "wb") as f:
            f.write(b"SECRET=1\n")
        os.symlink(".env", self.path("settings.txt"))

    def test_not_served(self) -> None:
        for name in ("passwd.txt", "settings.txt"):
            r = self.fetch(f"/static/{name}")
            assert r.code in (403, 404), name
            assert b"root:" not in r.body and b"SECRET" not in r.body
            assert r.headers["Cache-Control"] == "no-store"

    def test_not_listed(self) -> None:
        manifest = assetver.build_manifest(self.static)
        assert "passwd.txt" not in manifest and "settings.txt" not in manifest


class OtherDirectoryRouteTest(RootCase):
    """Observation 9: assetver's class mounted on another directory serves no dotfile."""

    def setUp(self) -> None:
        self.other = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"other-{os.getpid()}")
        make_tree(self.other, {".env": b"SECRET=1\n", "ok.txt": b"ok"})
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        shutil.rmtree(self.other, ignore_errors=True)

    def handlers(self) -> list[Any]:
        return [(r"/other/(.*)", assetver.tornado.StaticFileHandler, {"path": self.other})]

    def test_dotfile_refused(self) -> None:
        assert self.fetch("/other/.env").code == 404
        r = self.fetch("/other/ok.txt")
        assert r.body == b"ok" and r.headers["Cache-Control"] == "no-cache"


class TwoApplicationsTest(AsyncHTTPTestCase):
    """Observation 6: two Applications in one process keep their own roots, even with a
    route of one pointing at the other's root."""

    def get_app(self) -> Application:
        base = Path(os.environ.get("TMPDIR", "/tmp")) / f"two-apps-{os.getpid()}"
        shutil.rmtree(base, ignore_errors=True)
        self.base = base
        make_tree(str(base / "a"), {"x.css": b"A" * 100})
        make_tree(str(base / "b"), {"x.css": b"B" * 100})
        self.app_a = Application(
            [("/url/(.*)", UrlHandler)], **assetver.tornado.settings(static_path=str(base / "a"))
        )
        return Application(
            [
                ("/url/(.*)", UrlHandler),
                (r"/a/(.*)", assetver.tornado.StaticFileHandler, {"path": str(base / "a")}),
            ],
            **assetver.tornado.settings(static_path=str(base / "b")),
        )

    def tearDown(self) -> None:
        super().tearDown()
        shutil.rmtree(self.base, ignore_errors=True)

    def test_each_app_its_own_bytes(self) -> None:
        url_b = self.fetch("/url/x.css").body.decode()
        r = self.fetch(url_b)
        assert r.body == b"B" * 100 and r.headers["Cache-Control"] == IMMUTABLE
        digest_a = digest_bytes(b"A" * 100)
        r = self.fetch(f"/a/x.css?v={digest_a}")
        assert r.body == b"A" * 100 and r.headers["Cache-Control"] != IMMUTABLE
        assert self.app_a.settings[STATE_KEY].manifest["x.css"].digest == digest_a


class MaxAgeTest(RootCase):
    """Observation 7: ``assetver_max_age`` is for unversioned requests only."""

    def app_settings(self) -> dict[str, Any]:
        return {"assetver_max_age": 86400}

    def test_not_for_stale_or_forged(self) -> None:
        assert self.get("/static/robots.txt").headers["Cache-Control"] == "public, max-age=86400"
        for url in ("/static/robots.txt?v=0123456789abcdef", "/static/robots.txt?v=forged"):
            assert self.get(url).headers["Cache-Control"] == "no-cache", url


class Subclass(assetver.tornado.StaticFileHandler):
    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-Subclass", "yes")

    def get_content_type(self) -> str:
        return (
            "text/x-subclass" if self.absolute_path.endswith(".css") else super().get_content_type()
        )


class OverridePointsTest(RootCase):
    """Observation 8: the memory path honours Tornado's override points and transforms."""

    def app_settings(self) -> dict[str, Any]:
        return {"static_handler_class": Subclass, "compress_response": True}

    def test_every_response_goes_through_the_hooks(self) -> None:
        url = self.url("css/app.css")
        first = self.get(url, headers={"Accept-Encoding": "identity"})
        for _ in range(2):
            r = self.get(url, headers={"Accept-Encoding": "identity"})
            assert r.headers["X-Subclass"] == "yes"
            assert r.headers["Content-Type"] == "text/x-subclass"
        r = self.fetch(url, headers={"If-None-Match": first.headers["Etag"]})
        assert r.code == 304 and r.headers["X-Subclass"] == "yes"
        for _ in range(2):
            r = self.fetch(url, headers={"Accept-Encoding": "gzip"}, decompress_response=False)
            assert r.headers.get("Content-Encoding") == "gzip"
            assert gzip.decompress(r.body) == SMALL


class CustomStaticFileHandler(assetver.tornado.StaticFileHandler):
    """Tornado's CustomStaticFileTest pattern on assetver's class: bytes from elsewhere."""

    @classmethod
    def make_static_url(
        cls, settings: dict[str, Any], path: str, include_version: bool = True
    ) -> str:
        stem, ext = path.rsplit(".", 1)
        return f"/static/{stem}.{cls.get_version(settings, path)}.{ext}"

    def parse_url_path(self, url_path: str) -> str:
        stem, _, ext = url_path.rpartition(".")
        return f"{stem.rpartition('.')[0]}.{ext}"

    @classmethod
    def get_absolute_path(cls, root: str, path: str) -> str:
        return "CustomStaticFileTest:" + path

    def validate_absolute_path(self, root: str, absolute_path: str) -> str:
        return absolute_path

    @classmethod
    def get_content(cls, path: str, start: int | None = None, end: int | None = None) -> bytes:
        assert start is None and end is None
        if path == "CustomStaticFileTest:foo.txt":
            return b"bar"
        raise Exception(f"unexpected path {path!r}")

    def get_content_size(self) -> int:
        return 3

    def get_modified_time(self) -> None:
        return None

    @classmethod
    def get_version(cls, settings: dict[str, Any], path: str) -> str:
        return "42"


class CustomHandlerTest(RootCase):
    def app_settings(self) -> dict[str, Any]:
        return {"static_handler_class": CustomStaticFileHandler}

    def test_serves_its_own_bytes(self) -> None:
        r = self.fetch("/static/foo.42.txt")
        assert r.code == 200 and r.body == b"bar"
        assert r.headers["Cache-Control"] != IMMUTABLE


class ForeignManifestTest(StaticTestCase):
    """Observation 12: a manifest of another tree is reported at start-up (strict: an
    error), and none of its digests is served as proven."""

    files = {"a.css": b"a" * 50, "b.css": b"b" * 50}

    def get_app(self) -> Application:
        other = os.path.join(self.tmp, "other")
        make_tree(other, {"a.css": b"other a", "gone.css": b"x"})
        self.manifest = os.path.join(self.tmp, "manifest.json")
        assetver.build_manifest(other).dump(self.manifest)
        with self.assertLogs("assetver", logging.WARNING) as logs:
            app = super().get_app()
        assert any("2 missing" not in m and "1 missing" in m and "a.css" in m for m in logs.output)
        return app

    def app_settings(self) -> dict[str, Any]:
        return {"assetver_manifest": self.manifest}

    def test_served_unproven(self) -> None:
        digest = digest_bytes(b"other a")
        r = self.fetch(f"/static/a.css?v={digest}")
        assert r.body == b"a" * 50 and r.headers["Cache-Control"] == "no-cache"

    def test_strict_refuses(self) -> None:
        with pytest.raises(assetver.ConfigError, match="does not match"):
            tornado.web.Application(
                **assetver.tornado.settings(
                    static_path=self.static,
                    assetver_manifest=self.manifest,
                    assetver_strict=True,
                )
            )


def test_debug_in_forked_children_fails_once_at_start(tmp_path: Path) -> None:
    """Observation 11: ``--debug`` with two processes stops at start-up with one clear
    message instead of answering every request with a 500."""
    example = Path(__file__).resolve().parents[1] / "examples" / "app.py"
    env = {**os.environ, "PYTHONPATH": str(example.parents[1])}
    proc = subprocess.Popen(
        [sys.executable, str(example), "--port=0", "--processes=2", "--debug", "--logging=error"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail("the app kept running in debug mode with two processes")
    assert proc.returncode != 0
    assert err.count(b"debug mode (debug=True) cannot run in forked processes") >= 1
