"""The headless-browser harness (tests/browser.py) against small Tornado apps.

These pin down what the page tests rely on: what a return visit fetches, and that
console errors, SRI refusals and CORS blocks are reported. Each test cross-checks
the browser's account against what the server actually received.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from tornado.httpserver import HTTPServer
from tornado.testing import AsyncHTTPTestCase, bind_unused_port, gen_test
from tornado.web import Application, RequestHandler

from .browser import Browser, BrowserError, find_chromium, tiny_font

pytestmark = [
    pytest.mark.skipif(
        find_chromium() is None, reason="no Chromium installed: apt-get install chromium"
    ),
    pytest.mark.timeout(30),
]

IMMUTABLE = "public, max-age=31536000, immutable"
NO_FAVICON = '<link rel=icon href="data:,">'  # or Chromium fetches /favicon.ico itself


@dataclass
class Resource:
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Site:
    """A Tornado server on an unused 127.0.0.1 port, with a log of what it was asked."""

    routes: dict[str, Resource]
    origin: str = ""
    log: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return self.origin + path

    def paths(self) -> list[str]:
        return [path for _, path, _ in self.log]


class _Handler(RequestHandler):
    """Serves `Site.routes`; Tornado's own Etag handling answers 304s."""

    def initialize(self, site: Site) -> None:
        self.site = site

    async def get(self) -> None:
        self.site.log.append(("GET", self.request.path, dict(self.request.headers)))
        resource = self.site.routes.get(self.request.path)
        if resource is None:
            self.set_status(404)
            return
        if resource.content_type == "hang":  # never answers until the test ends
            await self.site.release.wait()
            return
        self.set_header("Content-Type", resource.content_type)
        for name, value in resource.headers.items():
            self.set_header(name, value)
        self.write(resource.body)


@contextlib.asynccontextmanager
async def serve(routes: dict[str, Resource]) -> AsyncIterator[Site]:
    sock, port = bind_unused_port()
    site = Site(routes, origin=f"http://127.0.0.1:{port}")
    server = HTTPServer(Application([(r"/.*", _Handler, {"site": site})]))
    server.add_sockets([sock])
    try:
        yield site
    finally:
        site.release.set()
        server.stop()
        await server.close_all_connections()


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Runs one scenario on a fresh event loop: the servers' and the browser's."""
    asyncio.run(scenario())


def html(body: str) -> Resource:
    return Resource(f"<!doctype html>{NO_FAVICON}{body}".encode(), "text/html")


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


CACHING_SITE = {
    "/": html('<link rel=stylesheet href="/app.css"><script src="/app.js"></script><p>hi'),
    "/app.css": Resource(b"p { color: red }", "text/css", {"Cache-Control": IMMUTABLE}),
    "/app.js": Resource(b"document.title = 'ok';", "text/javascript", {"Cache-Control": IMMUTABLE}),
}


@pytest.mark.parametrize("how", ["new tab", "same tab"])
def test_immutable_asset_is_not_requested_on_a_return_visit(how: str) -> None:
    async def scenario() -> None:
        async with serve(CACHING_SITE) as site, Browser() as browser:
            if how == "new tab":
                first = await browser.visit(site.url("/"))
                site.log.clear()
                again = await browser.visit(site.url("/"))
            else:
                async with browser.tab() as tab:
                    first = await tab.visit(site.url("/"))
                    site.log.clear()
                    again = await tab.visit(site.url("/"))
            assets = {site.url("/app.css"), site.url("/app.js")}
            assert {e.url for e in first.network(documents=False)} == assets, first.report()
            assert again.network(documents=False) == [], again.report()
            assert {e.url for e in again.cached()} == assets
            # the server agrees: only the page itself was asked for, conditionally
            assert site.paths() == ["/"]
            assert "If-None-Match" in site.log[0][2]
            assert again.document is not None and again.document.revalidated
            assert again.errors() == [] and again.failed() == []

    run(scenario)


def test_no_cache_asset_is_revalidated_with_a_304() -> None:
    routes = {
        "/": html('<link rel=stylesheet href="/app.css"><p>hi'),
        "/app.css": Resource(b"p { color: red }", "text/css", {"Cache-Control": "no-cache"}),
    }

    async def scenario() -> None:
        async with serve(routes) as site, Browser() as browser:
            await browser.visit(site.url("/"))
            site.log.clear()
            again = await browser.visit(site.url("/"))
            [css] = again.find("/app.css")
            assert not css.from_cache and css.revalidated, again.report()
            assert css.wire_status == 304
            assert site.paths() == ["/", "/app.css"]
            assert "If-None-Match" in site.log[1][2]

    run(scenario)


def test_console_messages_and_exceptions_are_captured() -> None:
    script = "console.log('hello', 42); console.error('bad thing', {a: 1}); nosuch();"
    routes = {"/": html(f"<script>{script}</script><img src=/missing.png>")}

    async def scenario() -> None:
        async with serve(routes) as site, Browser() as browser:
            visit = await browser.visit(site.url("/"))
            texts = [(m.source, m.level, m.text) for m in visit.console]
            assert ("console", "log", "hello 42") in texts, visit.report()
            assert ("console", "error", "bad thing Object") in texts
            errors = [m.text for m in visit.errors()]
            assert any("ReferenceError: nosuch is not defined" in t for t in errors)
            assert any("404" in t for t in errors)  # Chromium's "Failed to load resource"
            [img] = visit.find("/missing.png")
            assert img.status == 404 and not img.failed

    run(scenario)


def test_an_sri_mismatch_is_reported_as_blocked_and_as_a_console_error() -> None:
    css = b"body { color: rgb(255, 0, 0) }"
    wrong = sri(b"something else")
    routes = {
        "/": html(
            f'<link rel=stylesheet href="/bad.css" integrity="{wrong}">'
            f'<script src="/good.js" integrity="{sri(b"window.ran = 1;")}"></script>'
        ),
        "/bad.css": Resource(css, "text/css"),
        "/good.js": Resource(b"window.ran = 1;", "text/javascript"),
    }

    async def scenario() -> None:
        async with serve(routes) as site, Browser() as browser, browser.tab() as tab:
            visit = await tab.visit(site.url("/"))
            assert [e.url for e in visit.failed()] == [site.url("/bad.css")], visit.report()
            [error] = visit.errors()
            assert error.source == "security" and site.url("/bad.css") in error.text
            # what the page sees agrees: the stylesheet was refused, the script ran
            assert await tab.evaluate("getComputedStyle(document.body).color") != "rgb(255, 0, 0)"
            assert await tab.evaluate("window.ran") == 1

    run(scenario)


def test_a_cross_origin_font_needs_cors() -> None:
    font = tiny_font()
    fonts = {
        "/blocked.ttf": Resource(font, "font/ttf"),
        "/allowed.ttf": Resource(font, "font/ttf", {"Access-Control-Allow-Origin": "*"}),
    }

    async def scenario() -> None:
        async with serve(fonts) as cdn:
            faces = "".join(
                f"@font-face {{ font-family: {name}; src: url({cdn.url(path)}) }}"
                for name, path in (("Blocked", "/blocked.ttf"), ("Allowed", "/allowed.ttf"))
            )
            page = html(
                f"<style>{faces}</style>"
                "<p style='font-family: Blocked'>A</p><p style='font-family: Allowed'>A</p>"
            )
            async with serve({"/": page}) as site, Browser() as browser:
                visit = await browser.visit(site.url("/"), fonts=True)
            assert visit.fonts is not None
            status = {f.family: f.status for f in visit.fonts}
            assert status == {"Blocked": "error", "Allowed": "loaded"}, visit.report()
            [blocked] = visit.failed()
            assert blocked.url == cdn.url("/blocked.ttf") and blocked.resource_type == "Font"
            assert blocked.cors_error == "MissingAllowOriginHeader"
            [allowed] = visit.find("/allowed.ttf")
            assert allowed.status == 200 and not allowed.failed
            assert [m.text for m in visit.errors() if "CORS policy" in m.text], visit.report()
            assert all("allowed.ttf" not in m.text for m in visit.console)
            # both were fetched: CORS is enforced by the browser, not the server
            assert sorted(cdn.paths()) == ["/allowed.ttf", "/blocked.ttf"]

    run(scenario)


def test_a_visit_that_never_goes_idle_times_out_with_what_is_pending() -> None:
    routes = {
        "/": html('<img src="/slow.png">'),
        "/slow.png": Resource(b"", "hang"),
        "/ok": html("<p>ok"),
    }

    async def scenario() -> None:
        async with serve(routes) as site, Browser() as browser:
            assert (await browser.visit(site.url("/ok"))).errors() == []  # warmed up
            started = time.monotonic()
            with pytest.raises(BrowserError, match=r"in flight: \['http://.*/slow.png'\]"):
                await browser.visit(site.url("/"), timeout=1.0)
            assert time.monotonic() - started < 3.0
            # the browser is still usable afterwards; and an error status with an empty
            # body is a navigation error (Chromium shows its own error page)
            missing = await browser.visit(site.url("/missing"))
            assert missing.error == "net::ERR_HTTP_RESPONSE_CODE_FAILURE"
            assert missing.document is not None and missing.document.status == 404
            assert "navigation" in [m.source for m in missing.errors()], missing.report()

    run(scenario)


class _StaticPage(RequestHandler):
    def get(self) -> None:
        self.write(
            f"<!doctype html>{NO_FAVICON}"
            f'<link rel=stylesheet href="{self.static_url("app.css")}"><p>hi'
        )


class TestInsideAsyncHTTPTestCase(AsyncHTTPTestCase):
    """The pattern for page tests: the app's own server and the browser on one loop.

    Stock Tornado's versioned ``static_url`` (``max-age`` of ten years) serves here.
    """

    def setUp(self) -> None:
        self.static = tempfile.mkdtemp(prefix="assetver-harness-")
        with open(os.path.join(self.static, "app.css"), "w") as f:
            f.write("p { color: red }")
        super().setUp()

    def tearDown(self) -> None:
        super().tearDown()
        shutil.rmtree(self.static, ignore_errors=True)

    def get_app(self) -> Application:
        return Application([("/", _StaticPage)], static_path=self.static)

    @gen_test(timeout=20)
    async def test_versioned_static_url_is_not_refetched(self) -> None:
        async with Browser() as browser:
            first = await browser.visit(self.get_url("/"))
            again = await browser.visit(self.get_url("/"))
        [css] = first.find("/static/app.css?v=")
        assert css.status == 200 and "max-age=315360000" in css.response_headers["cache-control"]
        assert again.network(documents=False) == [], again.report()
        assert [e.url for e in again.cached()] == [css.url]


def test_teardown_kills_the_browser_and_removes_the_profile_even_on_failure() -> None:
    seen: dict[str, object] = {}

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="the test failed"):
            async with Browser() as browser:
                seen["profile"] = browser.profile
                assert os.path.exists(os.path.join(browser.profile, "DevToolsActivePort"))
                seen["pgid"] = browser.pid
                raise RuntimeError("the test failed")

    run(scenario)
    assert not os.path.exists(str(seen["profile"]))
    assert live_members(int(str(seen["pgid"]))) == []  # not even dying ones


def live_members(pgid: int) -> list[int]:
    """Processes in group ``pgid`` that are not zombies.

    Killed renderers are orphans that init reaps in its own time (about a second
    here), so a zombie counts as gone.
    """
    live = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        state, _ppid, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state not in ("Z", "X"):
            live.append(int(entry))
    return live
