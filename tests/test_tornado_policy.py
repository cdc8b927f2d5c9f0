"""The caching policy table of DESIGN.md, precompressed siblings, configuration errors,
hostile requests and the promise that no request hashes anything."""

from __future__ import annotations

import gzip
import os
from typing import Any
from urllib.parse import unquote

import pytest
import tornado.web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.web import RequestHandler

import assetver.hashing
import assetver.tornado
from assetver import ConfigError, Entry, Manifest
from assetver.compress import decompress
from assetver.hashing import digest_bytes
from assetver.serving import Assets, Config
from assetver.tornado import STATE_KEY

from .tornado_support import ROBOTS, StaticTestCase

IMMUTABLE = "public, max-age=31536000, immutable"
CSS = b"body { color: red }\n" * 80
JS = b"console.log('x');\n"


class UrlHandler(RequestHandler):
    def get(self, path: str) -> None:
        self.write(self.static_url(path))


class PolicyBase(StaticTestCase):
    @property
    def zstd(self) -> bool:
        return "zstd" in self.compress

    style = "query"
    stale = "serve"
    files = {
        "robots.txt": ROBOTS,
        "css/app.css": CSS,
        "css/app.css.gz": gzip.compress(CSS, mtime=0),
        "css/app.css.br": b"not really brotli but a distinct body",
        "js/app.js": JS,
        "js/katex.min.js": b"/* katex */\n",
        "LICENSE": b"MIT\n",
        ".env": b"SECRET=1\n",
        "big.bin": os.urandom(200 * 1024),
    }

    def handlers(self) -> list[Any]:
        return [("/url/(.*)", UrlHandler)]

    def app_settings(self) -> dict[str, Any]:
        return {"assetver_url_style": self.style, "assetver_stale": self.stale}

    def url(self, logical: str) -> str:
        return self.fetch(f"/url/{logical}").body.decode()

    def stale_url(self, logical: str) -> str:
        if self.style == "query":
            return f"/static/{logical}?v=0123456789abcdef"
        stem, dot, ext = logical.rpartition(".")
        return (
            f"/static/{stem}.0123456789abcdef.{ext}"
            if dot
            else f"/static/{logical}.0123456789abcdef"
        )

    def get_twice(self, url: str, **kwargs: Any) -> Any:
        """The first response comes from disk, the second may come from memory: both
        must say the same."""
        first = self.fetch(url, **kwargs)
        second = self.fetch(url, **kwargs)
        assert first.code == second.code
        assert first.body == second.body
        for name in (
            "Cache-Control",
            "Etag",
            "Content-Type",
            "Content-Length",
            "Vary",
            "Content-Encoding",
            "Last-Modified",
            "Accept-Ranges",
            "X-Content-Type-Options",
        ):
            assert first.headers.get(name) == second.headers.get(name), name
        assert ("Expires" in first.headers) == ("Expires" in second.headers)
        return second


class QueryPolicyTest(PolicyBase):
    def test_url_forms(self) -> None:
        digest = self.digest("css/app.css")
        if self.style == "query":
            assert self.url("css/app.css") == f"/static/css/app.css?v={digest}"
            assert self.url("LICENSE") == f"/static/LICENSE?v={self.digest('LICENSE')}"
        else:
            assert self.url("css/app.css") == f"/static/css/app.{digest}.css"
            assert self.url("LICENSE") == f"/static/LICENSE.{self.digest('LICENSE')}"
            assert self.url("js/katex.min.js") == (
                f"/static/js/katex.min.{self.digest('js/katex.min.js')}.js"
            )

    def test_current_digest_is_immutable(self) -> None:
        for logical in ("js/app.js", "LICENSE", "js/katex.min.js", "big.bin"):
            r = self.get_twice(self.url(logical), headers={"Accept-Encoding": "identity"})
            assert r.code == 200
            assert r.headers["Cache-Control"] == IMMUTABLE
            assert len(r.headers.get_list("Cache-Control")) == 1
            assert "Expires" in r.headers
            assert r.headers["Etag"] == f'"{self.digest(logical)}"'
            assert r.headers["X-Content-Type-Options"] == "nosniff"

    def test_both_url_forms_served_whatever_the_style(self) -> None:
        d = self.digest("js/app.js")
        for url in (f"/static/js/app.js?v={d}", f"/static/js/app.{d}.js"):
            r = self.get_twice(url)
            assert r.body == JS and r.headers["Cache-Control"] == IMMUTABLE

    def test_stale_or_forged_digest_is_never_far_future(self) -> None:
        r = self.fetch(self.stale_url("js/app.js"), follow_redirects=False)
        if self.stale == "serve":
            r = self.get_twice(self.stale_url("js/app.js"))
            assert r.code == 200 and r.body == JS
            assert r.headers["Cache-Control"] == "no-cache"
            assert r.headers["Etag"] == f'"{self.digest("js/app.js")}"'
        elif self.stale == "redirect":
            assert r.code == 302
            assert r.headers["Location"] == self.url("js/app.js")
            assert r.headers["Cache-Control"] == "no-store"
        else:
            assert r.code == 404
            assert r.headers["Cache-Control"] == "no-store"
        assert "Expires" not in r.headers

    def test_empty_v_is_stale(self) -> None:
        r = self.fetch("/static/js/app.js?v=", follow_redirects=False)
        assert r.headers.get("Cache-Control") != IMMUTABLE

    def test_no_digest_revalidates(self) -> None:
        r = self.get_twice("/static/js/app.js")
        assert r.code == 200 and r.headers["Cache-Control"] == "no-cache"
        assert "Expires" not in r.headers
        again = self.fetch("/static/js/app.js", headers={"If-None-Match": r.headers["Etag"]})
        assert again.code == 304

    def test_not_found_is_no_store(self) -> None:
        for url in (
            "/static/missing.css",
            "/static/css/missing.0123456789abcdef.css",
            "/static/missing.css?v=0123456789abcdef",
        ):
            r = self.fetch(url)
            assert r.code == 404 and r.headers["Cache-Control"] == "no-store", url

    def test_304_and_416_keep_policy_headers(self) -> None:
        url = self.url("css/app.css")
        first = self.fetch(url, headers={"Accept-Encoding": "gzip"}, decompress_response=False)
        for _ in range(2):
            r = self.fetch(
                url, headers={"Accept-Encoding": "gzip", "If-None-Match": first.headers["Etag"]}
            )
            assert r.code == 304
            assert r.headers["Cache-Control"] == IMMUTABLE
            assert r.headers["Etag"] == first.headers["Etag"]
            assert r.headers.get("Vary") == ("Accept-Encoding" if self.output else None)
            assert r.headers["Access-Control-Allow-Origin"] == "*"
        r = self.fetch(url, headers={"Range": f"bytes={len(CSS)}-"})
        assert r.code == 416
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["Access-Control-Allow-Origin"] == "*"

    def test_dotfiles_and_state_are_not_served(self) -> None:
        for url in ("/static/.env", "/static/.assetver/manifest.json", "/static/css/.hidden"):
            r = self.fetch(url)
            assert r.code == 404 and b"SECRET" not in r.body, url

    def test_variants(self) -> None:
        """An output serves the variants its build made, by Accept-Encoding with q-values;
        a root serves none (a variant made by another tool may hold old bytes)."""
        url = self.url("css/app.css")
        digest = self.digest("css/app.css")
        cases = [
            ("br, gzip", "br"),
            ("gzip, br;q=0", "gzip"),
            ("br;q=0.5, gzip;q=0.9", "gzip"),
            ("zstd, gzip;q=0.5", "zstd" if self.output and self.zstd else "gzip"),
            ("*", "br"),
            ("*;q=0, gzip", "gzip"),
            ("identity", None),
            ("*;q=0", None),
            ("compress, x-unknown", None),
            ("x-gzip", "gzip"),
            ("", None),
        ]
        etags = set()
        for accept, coding in cases:
            if not self.output:
                coding = None
            r = self.get_twice(url, headers={"Accept-Encoding": accept}, decompress_response=False)
            assert r.headers.get("Content-Encoding") == coding, accept
            body = decompress(r.body, coding) if coding else r.body
            assert body == CSS and digest_bytes(body) == digest, accept
            assert r.headers["Content-Length"] == str(len(r.body))
            assert r.headers["Content-Type"] == "text/css"
            assert r.headers["Cache-Control"] == IMMUTABLE
            assert ("Vary" in r.headers) == self.output
            etags.add(r.headers["Etag"])
            head = self.fetch(
                url, method="HEAD", headers={"Accept-Encoding": accept}, decompress_response=False
            )
            assert head.headers["Content-Length"] == str(len(r.body))
        assert len(etags) == (
            1 + len(self._app.settings[STATE_KEY].manifest["css/app.css"].variants)
            if self.output
            else 1
        )

    def test_range_is_served_from_the_identity_bytes(self) -> None:
        r = self.fetch(
            self.url("css/app.css"),
            headers={"Accept-Encoding": "br, gzip", "Range": "bytes=0-3"},
            decompress_response=False,
        )
        assert r.code == 206 and r.body == CSS[:4] and "Content-Encoding" not in r.headers


class OutputQueryPolicyTest(QueryPolicyTest):
    output = True
    compress = "br,gzip,zstd"


class FilenamePolicyTest(QueryPolicyTest):
    style = "filename"


class OutputFilenamePolicyTest(QueryPolicyTest):
    style = "filename"
    output = True


class RedirectPolicyTest(QueryPolicyTest):
    stale = "redirect"


class FilenameRedirectPolicyTest(QueryPolicyTest):
    style = "filename"
    stale = "redirect"


class NotFoundPolicyTest(QueryPolicyTest):
    stale = "404"


class OutputRedirectPolicyTest(QueryPolicyTest):
    stale = "redirect"
    output = True


class OutputNotFoundPolicyTest(QueryPolicyTest):
    style = "filename"
    stale = "404"
    output = True


class FilenameNotFoundPolicyTest(QueryPolicyTest):
    style = "filename"
    stale = "404"


class MediaTypesTest(StaticTestCase):
    files = {
        f"f.{ext}": b"x"
        for ext in (
            "mjs",
            "wasm",
            "map",
            "webmanifest",
            "woff",
            "woff2",
            "ttf",
            "otf",
            "svg",
            "avif",
            "webp",
            "css",
            "js",
        )
    }

    def test_types(self) -> None:
        expected = {
            "mjs": "text/javascript",
            "wasm": "application/wasm",
            "map": "application/json",
            "webmanifest": "application/manifest+json",
            "woff": "font/woff",
            "woff2": "font/woff2",
            "ttf": "font/ttf",
            "otf": "font/otf",
            "svg": "image/svg+xml",
            "avif": "image/avif",
            "webp": "image/webp",
            "css": "text/css",
            "js": "text/javascript",
        }
        for ext, media_type in expected.items():
            assert self.fetch(f"/static/f.{ext}").headers["Content-Type"] == media_type, ext


class UrlHostTest(StaticTestCase):
    def handlers(self) -> list[Any]:
        return [("/url/(.*)", UrlHandler)]

    def app_settings(self) -> dict[str, Any]:
        return {"assetver_url_host": "https://cdn.example.com/"}

    def test_absolute_url_and_local_route(self) -> None:
        url = self.fetch("/url/robots.txt").body.decode()
        assert url == f"https://cdn.example.com/static/robots.txt?v={self.digest('robots.txt')}"
        r = self.fetch(url.removeprefix("https://cdn.example.com"))
        assert r.body == ROBOTS and r.headers["Cache-Control"] == IMMUTABLE


class StrictTest(StaticTestCase):
    def handlers(self) -> list[Any]:
        return [("/url/(.*)", UrlHandler)]

    def app_settings(self) -> dict[str, Any]:
        return {"assetver_strict": True}

    def test_missing_path_raises(self) -> None:
        with pytest.raises(assetver.AssetNotFound, match=r"'nope\.css'.*assetver build"):
            self._app.settings["static_handler_class"].make_static_url(
                self._app.settings, "nope.css"
            )
        assert self.fetch("/url/nope.css").code == 500


class LenientTest(StaticTestCase):
    def handlers(self) -> list[Any]:
        return [("/url/(.*)", UrlHandler)]

    def test_missing_path_warns_once(self) -> None:
        with self.assertLogs("assetver", "WARNING") as logs:
            assert self.fetch("/url/nope.css").body == b"/static/nope.css"
            assert self.fetch("/url/nope.css").body == b"/static/nope.css"
        assert len([m for m in logs.output if "nope.css" in m]) == 1


class MaxAgeTest(StaticTestCase):
    def app_settings(self) -> dict[str, Any]:
        return {"assetver_max_age": 60}

    def test_unversioned_short_max_age(self) -> None:
        assert self.fetch("/static/robots.txt").headers["Cache-Control"] == "public, max-age=60"


class EditedWithoutRebuildTest(StaticTestCase):
    """A file edited in place after the manifest was built must not keep far-future
    caching or the old ETag (stock Tornado keeps its per-process hash)."""

    def test_size_change_is_served_unversioned(self) -> None:
        built = self.digest("robots.txt")
        url = f"/static/robots.txt?v={built}"
        with open(os.path.join(self.static, "robots.txt"), "ab") as f:
            f.write(b"# more\n")
        with self.assertLogs("assetver", "WARNING"):
            r = self.fetch(url)
        assert r.body.endswith(b"# more\n")
        assert r.headers["Cache-Control"] == "no-cache"
        assert r.headers["Etag"] != f'"{built}"'


# -- hostile requests -------------------------------------------------------------------


class HostileTest(StaticTestCase):
    files = {"robots.txt": ROBOTS, ".env": b"SECRET=dotfile", "dir/ok.txt": b"ok"}

    def setUp(self) -> None:
        super().setUp()
        with open(os.path.join(self.tmp, "secret.txt"), "wb") as f:
            f.write(b"SECRET=outside")
        os.symlink(os.path.join(self.tmp, "secret.txt"), os.path.join(self.static, "escape.txt"))

    def app_settings(self) -> dict[str, Any]:
        return {"static_handler_args": {"default_filename": "index.html"}}

    def assert_safe(self, target: bytes) -> None:
        response = self.raw(b"GET " + target + b" HTTP/1.1")
        status = response.split(b"\r\n", 1)[0]
        assert b"SECRET" not in response, target
        head = response.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        for location in (h[len(b"Location: ") :] for h in head if h.startswith(b"Location: ")):
            # Only same-origin redirects: no scheme, no //host or /\\host authority.
            assert location.startswith(b"/"), (target, location)
            assert not location.startswith((b"//", b"/\\")) and b"://" not in location, target
        assert not status.startswith(b"HTTP/1.1 5"), (target, status)

    def test_known_attacks(self) -> None:
        targets = [
            b"/static/../secret.txt",
            b"/static/%2e%2e/secret.txt",
            b"/static/%2E%2E%2Fsecret.txt",
            b"/static/..%2fsecret.txt",
            b"/static/dir/..%2f..%2fsecret.txt",
            b"/static/..\\secret.txt",
            b"/static/%5c..%5csecret.txt",
            b"/static/robots.txt%00.css",
            b"/static/%00",
            b"/static//etc/passwd",
            b"/static/%2fetc%2fpasswd",
            b"/static/" + self.tmp.encode() + b"/secret.txt",
            b"/static/escape.txt",
            b"/static/.env",
            b"/static/dir/../.env",
            b"/static/%2eenv",
            b"/static/dir/%2e%2e/.env",
            b"//evil.com/../static/dir",
            b"/static//evil.com/%2e%2e/dir",
            b"/static/\\evil.com/dir",
            b"/static/CON",
            b"/static/NUL.txt",
            b"/static/dir/ok.txt:secret",
            b"/static/escape.0123456789abcdef.txt",
            b"/static/.env?v=0123456789abcdef",
        ]
        for target in targets:
            self.assert_safe(target)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.lists(
            st.sampled_from(
                [
                    "..",
                    ".",
                    "%2e%2e",
                    "%2f",
                    "%5c",
                    "\\",
                    "dir",
                    "robots.txt",
                    ".env",
                    "escape.txt",
                    "secret.txt",
                    "%00",
                    "",
                    "evil.com",
                    "%2e",
                    "CON",
                    "0123456789abcdef",
                ]
            ),
            max_size=8,
        )
    )
    def test_generated_paths(self, parts: list[str]) -> None:
        self.assert_safe(("/static/" + "/".join(parts)).encode())


# -- configuration ------------------------------------------------------------------------


def app(tmp_path: Any, **options: Any) -> tornado.web.Application:
    (tmp_path / "static").mkdir(exist_ok=True)
    (tmp_path / "static" / "a.css").write_text("a")
    return tornado.web.Application(
        **assetver.tornado.settings(static_path=str(tmp_path / "static"), **options)
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"assetver_manifest": "/nonexistent/m.json"},
            r"assetver_manifest: manifest .* does not exist",
        ),
        ({"assetver_url_style": "path"}, r"assetver_url_style='path'"),
        ({"assetver_stale": "ignore"}, r"assetver_stale='ignore'"),
        ({"assetver_url_host": "cdn.example.com"}, r"assetver_url_host="),
        ({"assetver_max_age": -1}, r"assetver_max_age=-1"),
        ({"assetver_memory": "lots"}, r"assetver_memory="),
        ({"assetver_stlye": "query"}, r"unknown setting assetver_stlye"),
    ],
)
def test_bad_configuration_fails_at_construction(
    tmp_path: Any, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        app(tmp_path, **options)


def test_corrupt_manifest_fails_at_construction(tmp_path: Any) -> None:
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"assetver_manifest: .*m\.json is not valid JSON"):
        app(tmp_path, assetver_manifest=str(bad))


def test_missing_static_path() -> None:
    with pytest.raises(ConfigError, match="static_path"):
        assetver.tornado.settings(debug=False)


def test_prebuilt_manifest_is_used(tmp_path: Any) -> None:
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "a.css").write_text("a")
    Manifest({"a.css": Entry("00000000000000aa", 1)}).dump(tmp_path / "m.json")
    application = app(tmp_path, assetver_manifest=str(tmp_path / "m.json"))
    handler = application.settings["static_handler_class"]
    assert (
        handler.make_static_url(application.settings, "a.css") == "/static/a.css?v=00000000000000aa"
    )


# -- URL make/parse inverse -----------------------------------------------------------------

logical_paths = st.lists(
    st.text(
        st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/"),
        min_size=1,
        max_size=12,
    ).filter(lambda s: s not in (".", "..")),
    min_size=1,
    max_size=4,
).map("/".join)


@given(
    logical=logical_paths,
    digest=st.from_regex(r"[0-9a-f]{16}", fullmatch=True),
    style=st.sampled_from(["query", "filename"]),
)
def test_make_and_parse_are_inverse(logical: str, digest: str, style: str) -> None:
    config = Config(root="/srv/static", url_style=style)
    assets = Assets(config, Manifest({logical: Entry(digest, 1)}), {})
    url = assets.url(logical)
    assert url.startswith("/static/")
    path, _, query = url.removeprefix("/static/").partition("?")
    target = assets.resolve(unquote(path), query.removeprefix("v=") or None)
    assert (target.logical, target.requested) == (logical, digest)


# -- no hashing on requests ------------------------------------------------------------------


class Counting:
    def __init__(self) -> None:
        self.calls = 0


class NoHashingTest(StaticTestCase):
    files = PolicyBase.files

    def handlers(self) -> list[Any]:
        return [("/url/(.*)", UrlHandler)]

    def test_requests_hash_nothing(self) -> None:
        counter = Counting()
        patched = []

        def wrap(owner: Any, name: str) -> None:
            original = getattr(owner, name)

            def counted(*args: Any, **kwargs: Any) -> Any:
                counter.calls += 1
                return original(*args, **kwargs)

            patched.append((owner, name, original))
            setattr(owner, name, counted)

        import hashlib

        import xxhash

        wrap(assetver.hashing.xxhash, "xxh3_64_hexdigest")
        wrap(assetver.hashing.xxhash, "xxh3_64")
        wrap(assetver.hashing, "hexdigest")
        wrap(tornado.web.StaticFileHandler, "get_content_version")
        wrap(hashlib, "sha512")
        try:
            urls = [self.fetch(f"/url/{p}").body.decode() for p in self.files]

            def requests() -> None:
                for url in urls:
                    for headers in (
                        {},
                        {"Accept-Encoding": "br"},
                        {"Range": "bytes=0-0"},
                        {"If-None-Match": '"x"'},
                    ):
                        self.fetch(url, headers=headers)
                        self.fetch(url, method="HEAD", headers=headers)
                self.fetch("/static/robots.txt?v=0000000000000000")
                self.fetch("/robots.txt")

            requests()
            # What is read into memory is hashed as it is read: once per file, no more.
            assert 0 < counter.calls <= len(self.files)
            counter.calls = 0
            for _ in range(3):
                requests()
            assert counter.calls == 0
            assetver.build_manifest(self.static)
            assert counter.calls > 0, "the counter must see hashing when it happens"
            assert xxhash is assetver.hashing.xxhash
        finally:
            for owner, name, original in patched:
                setattr(owner, name, original)
