"""Tornado's own StaticFileHandler tests (tornado/test/web_test.py, 6.6.1), run against
assetver's class. Each deliberate difference is named in a ``DIFFERS:`` docstring."""

from __future__ import annotations

import datetime
import email.utils
import gzip
import os
from typing import Any

from tornado.web import RequestHandler

from assetver.tornado import StaticFileHandler

from .tornado_support import ROBOTS, StaticTestCase


class StaticUrlHandler(RequestHandler):
    def get(self, path: str) -> None:
        with_v = int(self.get_argument("include_version", "1"))
        self.write(self.static_url(path, include_version=bool(with_v)))


class AbsoluteStaticUrlHandler(StaticUrlHandler):
    include_host = True


class OverrideStaticUrlHandler(RequestHandler):
    def get(self, path: str) -> None:
        do_include = bool(self.get_argument("include_host"))
        self.include_host = not do_include
        regular_url = self.static_url(path)
        override_url = self.static_url(path, include_host=do_include)
        protocol = self.request.protocol + "://"
        if do_include:
            result = override_url.startswith(protocol) and not regular_url.startswith(protocol)
        else:
            result = regular_url.startswith(protocol) and not override_url.startswith(protocol)
        self.write(str(result))


class StaticFileTest(StaticTestCase):
    files = {
        "robots.txt": ROBOTS,
        "sample.xml": b"<root/>\n",
        "sample.xml.gz": gzip.compress(b"<root/>\n", mtime=0),
        "sample.xml.bz2": b"BZh not really",
        "dir/index.html": b"<p>index</p>\n",
    }

    def handlers(self) -> list[Any]:
        return [
            ("/static_url/(.*)", StaticUrlHandler),
            ("/abs_static_url/(.*)", AbsoluteStaticUrlHandler),
            ("/override_static_url/(.*)", OverrideStaticUrlHandler),
            ("/root_static/(.*)", StaticFileHandler, {"path": "/"}),
        ]

    def test_static_files(self) -> None:
        assert b"Disallow: /" in self.fetch("/robots.txt").body
        response = self.fetch("/static/robots.txt")
        assert b"Disallow: /" in response.body
        assert response.headers.get("Content-Type") == "text/plain"

    def test_static_files_cacheable(self) -> None:
        """DIFFERS: stock gives far-future caching to any ``v`` (here a forged one);
        assetver gives it only to the current digest."""
        forged = self.fetch("/robots.txt?v=12345")
        assert b"Disallow: /" in forged.body
        assert forged.headers["Cache-Control"] == "no-cache"
        assert "Expires" not in forged.headers
        current = self.fetch(f"/robots.txt?v={self.digest('robots.txt')}")
        assert current.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert "Expires" in current.headers

    def test_static_compressed_files(self) -> None:
        assert self.fetch("/static/sample.xml.gz").headers["Content-Type"] == "application/gzip"
        bz2 = self.fetch("/static/sample.xml.bz2")
        assert bz2.headers["Content-Type"] == "application/octet-stream"
        xml = self.fetch("/static/sample.xml")
        assert xml.headers["Content-Type"] in {"text/xml", "application/xml"}

    def test_static_windows_special_filenames(self) -> None:
        for name in ["CON", "PRN", "AUX", "NUL", "COM1", "LPT1", "con.txt", "nul.css"]:
            response = self.fetch(f"/static/{name}")
            assert response.code in (403, 404), name

    def test_static_url(self) -> None:
        response = self.fetch("/static_url/robots.txt")
        assert response.body == f"/static/robots.txt?v={self.digest('robots.txt')}".encode()

    def test_absolute_static_url(self) -> None:
        response = self.fetch("/abs_static_url/robots.txt")
        expected = f"{self.get_url('/')}static/robots.txt?v={self.digest('robots.txt')}"
        assert response.body == expected.encode()

    def test_relative_version_exclusion(self) -> None:
        assert self.fetch("/static_url/robots.txt?include_version=0").body == b"/static/robots.txt"

    def test_absolute_version_exclusion(self) -> None:
        response = self.fetch("/abs_static_url/robots.txt?include_version=0")
        assert response.body == (self.get_url("/") + "static/robots.txt").encode()

    def test_include_host_override(self) -> None:
        assert self.fetch("/override_static_url/robots.txt?include_host=true").body == b"True"
        assert self.fetch("/override_static_url/robots.txt?include_host=").body == b"True"

    def get_and_head(self, *args: Any, **kwargs: Any) -> Any:
        """Every Content-* header is identical between GET and HEAD."""
        head = self.fetch(*args, method="HEAD", **kwargs)
        get = self.fetch(*args, method="GET", **kwargs)
        assert head.code == get.code
        assert head.body == b""
        for h in (
            "Accept-Ranges",
            "Content-Length",
            "Content-Range",
            "Content-Type",
            "Etag",
            "Last-Modified",
            "Cache-Control",
            "Vary",
            "Content-Encoding",
        ):
            assert head.headers.get(h) == get.headers.get(h), h
        return get

    def test_static_304_if_modified_since(self) -> None:
        r1 = self.get_and_head("/static/robots.txt")
        r2 = self.get_and_head(
            "/static/robots.txt", headers={"If-Modified-Since": r1.headers["Last-Modified"]}
        )
        assert r2.code == 304
        assert "Content-Length" not in r2.headers

    def test_static_304_if_none_match(self) -> None:
        r1 = self.get_and_head("/static/robots.txt")
        r2 = self.get_and_head("/static/robots.txt", headers={"If-None-Match": r1.headers["Etag"]})
        assert r2.code == 304

    def test_static_304_etag_modified_bug(self) -> None:
        r1 = self.get_and_head("/static/robots.txt")
        r2 = self.get_and_head(
            "/static/robots.txt",
            headers={
                "If-None-Match": '"MISMATCH"',
                "If-Modified-Since": r1.headers["Last-Modified"],
            },
        )
        assert r2.code == 200

    def test_static_304_if_modified_since_invalid(self) -> None:
        r = self.get_and_head("/static/robots.txt", headers={"If-Modified-Since": "!nv@l!d"})
        assert r.code == 200

    def test_static_if_modified_since_pre_epoch(self) -> None:
        r = self.get_and_head(
            "/static/robots.txt", headers={"If-Modified-Since": "Fri, 01 Jan 1960 00:00:00 GMT"}
        )
        assert r.code == 200

    def test_static_if_modified_since_time_zone(self) -> None:
        stat = os.stat(os.path.join(self.static, "robots.txt"))
        for delta, code in ((-1, 200), (1, 304)):
            when = datetime.datetime.fromtimestamp(stat.st_mtime + delta, datetime.timezone.utc)
            ims = email.utils.format_datetime(when, usegmt=True)
            r = self.get_and_head("/static/robots.txt", headers={"If-Modified-Since": ims})
            assert r.code == code

    def test_static_etag(self) -> None:
        """DIFFERS: the ETag is the manifest's XXH3 digest, not a per-process SHA-512."""
        r = self.get_and_head("/static/robots.txt")
        assert r.headers["Etag"] == f'"{self.digest("robots.txt")}"'

    def test_static_with_range(self) -> None:
        r = self.get_and_head("/static/robots.txt", headers={"Range": "bytes=0-9"})
        assert r.code == 206
        assert r.body == b"User-agent"
        assert r.headers["Etag"] == f'"{self.digest("robots.txt")}"'
        assert r.headers["Content-Length"] == "10"
        assert r.headers["Content-Range"] == "bytes 0-9/26"

    def test_static_with_range_full_file(self) -> None:
        r = self.get_and_head("/static/robots.txt", headers={"Range": "bytes=0-"})
        assert r.code == 200 and r.body == ROBOTS and "Content-Range" not in r.headers

    def test_static_with_range_full_past_end(self) -> None:
        r = self.get_and_head("/static/robots.txt", headers={"Range": "bytes=0-10000000"})
        assert r.code == 200 and r.body == ROBOTS and r.headers["Content-Length"] == "26"

    def test_static_with_range_partial_past_end(self) -> None:
        r = self.get_and_head("/static/robots.txt", headers={"Range": "bytes=1-10000000"})
        assert r.code == 206 and r.body == ROBOTS[1:]
        assert r.headers["Content-Range"] == "bytes 1-25/26"

    def test_static_with_range_end_edge(self) -> None:
        r = self.get_and_head("/static/robots.txt", headers={"Range": "bytes=22-"})
        assert r.body == b": /\n" and r.headers["Content-Length"] == "4"

    def test_static_with_range_neg_end(self) -> None:
        r = self.get_and_head("/static/robots.txt", headers={"Range": "bytes=-4"})
        assert r.body == b": /\n" and r.headers["Content-Range"] == "bytes 22-25/26"

    def test_static_with_range_neg_past_start(self) -> None:
        r = self.get_and_head("/static/robots.txt", headers={"Range": "bytes=-1000000"})
        assert r.code == 200 and r.body == ROBOTS

    def test_static_with_range_first_byte(self) -> None:
        r = self.get_and_head("/static/robots.txt", headers={"Range": "bytes=0-0"})
        assert r.code == 206 and r.body == b"U" and r.headers["Content-Range"] == "bytes 0-0/26"

    def test_static_invalid_range(self) -> None:
        assert self.get_and_head("/static/robots.txt", headers={"Range": "asdf"}).code == 200

    def test_static_unsatisfiable_ranges(self) -> None:
        for value in ("bytes=-0", "bytes=26", "bytes=10-3"):
            r = self.get_and_head("/static/robots.txt", headers={"Range": value})
            assert r.code == 416, value
            assert r.headers["Content-Range"] == "bytes */26"
            assert r.headers["Etag"] == f'"{self.digest("robots.txt")}"'
            # an error status is never stored, whatever the asset's status
            assert r.headers["Cache-Control"] == "no-store"
            assert r.headers["Access-Control-Allow-Origin"] == "*"

    def test_static_head(self) -> None:
        r = self.fetch("/static/robots.txt", method="HEAD")
        assert r.code == 200 and r.body == b"" and r.headers["Content-Length"] == "26"
        assert r.headers["Etag"] == f'"{self.digest("robots.txt")}"'

    def test_static_head_range(self) -> None:
        r = self.fetch("/static/robots.txt", method="HEAD", headers={"Range": "bytes=1-4"})
        assert r.code == 206 and r.body == b"" and r.headers["Content-Length"] == "4"

    def test_static_range_if_none_match(self) -> None:
        r = self.get_and_head(
            "/static/robots.txt",
            headers={"Range": "bytes=1-4", "If-None-Match": f'"{self.digest("robots.txt")}"'},
        )
        assert r.code == 304 and "Content-Length" not in r.headers and "Etag" in r.headers

    def test_static_404(self) -> None:
        r = self.get_and_head("/static/blarg")
        assert r.code == 404
        assert r.headers["Cache-Control"] == "no-store"

    def test_static_directory_without_default_filename(self) -> None:
        assert self.fetch("/static/dir/").code == 403

    def test_path_traversal_protection(self) -> None:
        with open(os.path.join(self.tmp, "static_foo.txt"), "wb") as f:
            f.write(b"should not be served")
        response = self.raw(b"GET /static/../static_foo.txt HTTP/1.1")
        assert response.startswith(b"HTTP/1.1 403")
        assert b"should not be served" not in response

    def test_root_static_path(self) -> None:
        path = os.path.join(self.static, "robots.txt")
        r = self.fetch("/root_static" + path)
        assert r.code == 200 and r.body == ROBOTS
        assert r.headers["Cache-Control"] == "no-cache"


class StaticDefaultFilenameTest(StaticTestCase):
    files = {"dir/index.html": b"<p>index</p>\n", "index.html": b"top\n"}

    def app_settings(self) -> dict[str, Any]:
        return {"static_handler_args": {"default_filename": "index.html"}}

    def test_static_default_filename(self) -> None:
        r = self.fetch("/static/dir/")
        assert r.code == 200 and r.body == b"<p>index</p>\n"
        assert r.headers["Content-Type"] == "text/html"
        assert r.headers["Etag"] == f'"{self.digest("dir/index.html")}"'

    def test_static_default_redirect(self) -> None:
        r = self.fetch("/static/dir", follow_redirects=False)
        assert r.code == 301 and r.headers["Location"].endswith("/static/dir/")


class StaticDefaultFilenameRootTest(StaticTestCase):
    files = {"dir/index.html": b"<p>index</p>\n"}

    def app_settings(self) -> dict[str, Any]:
        return {
            "static_url_prefix": "/",
            "static_handler_args": {"default_filename": "index.html"},
        }

    def test_no_open_redirect(self) -> None:
        """CVE-2023-28370: //evil.com/../... must not redirect off-site."""
        response = self.raw(f"GET //evil.com/../{self.static.lstrip('/')}/dir HTTP/1.1".encode())
        assert response.startswith(b"HTTP/1.1 403"), response[:80]
        assert b"Location" not in response

    def test_no_open_redirect_backslash(self) -> None:
        response = self.raw(b"GET /\\evil.com/../dir HTTP/1.1")
        assert response.startswith(b"HTTP/1.1 403"), response[:80]
        assert b"Location" not in response


class StaticFileSymlinkTest(StaticTestCase):
    files = {"inside.txt": b"inside\n", "real/index.html": b"real index\n"}

    def setUp(self) -> None:
        super().setUp()
        outside = os.path.join(self.tmp, "outside")
        os.makedirs(outside)
        with open(os.path.join(outside, "secret.txt"), "wb") as f:
            f.write(b"secret\n")
        with open(os.path.join(outside, "index.html"), "wb") as f:
            f.write(b"outside index\n")
        links = {
            "link-inside.txt": os.path.join(self.static, "inside.txt"),
            "link-secret.txt": os.path.join(outside, "secret.txt"),
            "link-outside-dir": outside,
            "link-missing-dir": os.path.join(self.tmp, "missing"),
        }
        for name, target in links.items():
            os.symlink(target, os.path.join(self.static, name))
        os.makedirs(os.path.join(self.static, "linked-index"))
        os.symlink(
            os.path.join(outside, "index.html"),
            os.path.join(self.static, "linked-index", "index.html"),
        )

    def app_settings(self) -> dict[str, Any]:
        return {"static_handler_args": {"default_filename": "index.html"}}

    def test_regular_file(self) -> None:
        assert self.fetch("/static/inside.txt").body == b"inside\n"

    def test_symlink_within_root(self) -> None:
        assert self.fetch("/static/link-inside.txt").code == 200

    def test_symlinked_file_escaping_root(self) -> None:
        r = self.fetch("/static/link-secret.txt")
        assert r.code == 403 and b"secret" not in r.body

    def test_symlinked_directory_escaping_root(self) -> None:
        assert self.fetch("/static/link-outside-dir/secret.txt").code == 403

    def test_symlinked_default_filename(self) -> None:
        assert self.fetch("/static/linked-index/").code == 403

    def test_no_existence_oracle_for_symlinked_directory(self) -> None:
        for name in ("link-outside-dir", "link-missing-dir"):
            r = self.fetch(f"/static/{name}", follow_redirects=False)
            assert r.code in (403, 404) and "Location" not in r.headers, name

    def test_served_directory_itself(self) -> None:
        assert self.fetch("/static/real/").body == b"real index\n"


class StaticFileSymlinkedRootTest(StaticTestCase):
    def get_app(self) -> Any:
        link = os.path.join(self.tmp, "static-link")
        os.symlink(self.static, link)
        self.static_link = link
        from tornado.web import Application

        import assetver.tornado

        return Application(**assetver.tornado.settings(static_path=link))

    def test_symlinked_root(self) -> None:
        r = self.fetch(f"/static/robots.txt?v={self.digest('robots.txt')}")
        assert r.body == ROBOTS
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"


class StaticFileWithPathTest(StaticTestCase):
    files = {"robots.txt": ROBOTS, "other/apple-touch-icon.png": b"\x89PNG fake"}

    def handlers(self) -> list[Any]:
        return [
            ("/foo/(.*)", StaticFileHandler, {"path": os.path.join(self.static, "other")}),
            (r"/(apple-touch-icon\.png)", StaticFileHandler, {"path": self.static + "/other"}),
        ]

    def test_serve(self) -> None:
        r = self.fetch("/foo/apple-touch-icon.png")
        assert r.body == b"\x89PNG fake" and r.headers["Content-Type"] == "image/png"
        assert r.headers["Cache-Control"] == "no-cache" and r.headers["Etag"]

    def test_extra_route_revalidates(self) -> None:
        r = self.fetch("/apple-touch-icon.png")
        assert r.code == 200
        again = self.fetch("/apple-touch-icon.png", headers={"If-None-Match": r.headers["Etag"]})
        assert again.code == 304


class CustomStaticFileTest(StaticTestCase):
    """The stock test's hashed-file-name subclass, done by ``assetver_url_style``."""

    files = {"foo.txt": b"bar"}

    def app_settings(self) -> dict[str, Any]:
        return {"assetver_url_style": "filename"}

    def handlers(self) -> list[Any]:
        return [("/static_url/(.*)", StaticUrlHandler)]

    def test_serve(self) -> None:
        r = self.fetch(f"/static/foo.{self.digest('foo.txt')}.txt")
        assert r.body == b"bar"
        assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"

    def test_static_url(self) -> None:
        assert self.fetch("/static_url/foo.txt").body == (
            f"/static/foo.{self.digest('foo.txt')}.txt".encode()
        )


class GzipStaticTest(StaticTestCase):
    def app_settings(self) -> dict[str, Any]:
        return {"compress_response": True}

    def test_gzip_static(self) -> None:
        r = self.fetch(
            "/robots.txt",
            use_gzip=False,
            headers={"Accept-Encoding": "gzip"},
            decompress_response=False,
        )
        assert r.headers["Content-Encoding"] == "gzip"
        assert "Accept-Encoding" in r.headers["Vary"]
