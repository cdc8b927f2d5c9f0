"""The real page in a real browser: a compiled output served by Tornado (and by nginx in
front of Tornado), loaded in headless Chromium, in both URL styles.

The tree (`e2e_support.tree_files`) is what a real app ships: an app stylesheet that
``@import``s another, two web fonts (WOFF2, WOFF), PNG and SVG images, an
``image-set()``, source maps, vendor stylesheets with their own fonts laid out like Font
Awesome and KaTeX, a JS module; the page uses the tag helpers, so every stylesheet and
script carries its Subresource Integrity. What is asserted, per URL style:

- first visit: every asset the browser fetched is ``immutable`` (100% of the asset bytes
  on the wire), each one's bytes, fetched again with a plain client, hash to the digest
  in its URL (so do those of every URL the assets reference: fallback fonts, the 2x
  image, source maps), no console error, no failed load, every font loaded, the module ran;
- return visit: no asset request at all;
- assets on another origin (``assetver_url_host``): fonts load (CORS), SRI is accepted;
- a tampered asset behind a CDN that serves bytes as they are: the browser refuses it
  (SRI), and that is the only error;
- nginx (``assetver nginx --upstream``) in front of Tornado: the same, served by nginx.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
import tornado.web

from assetver.output import CompileOptions, compile_output

from .browser import Browser, Tab, Visit, find_chromium
from .e2e_support import (
    FONT_FAMILIES,
    IMMUTABLE,
    PAGE_ASSETS,
    PREFIX,
    STYLES,
    Client,
    Nginx,
    Response,
    assert_immutable,
    by_logical,
    cli,
    client,
    crawl,
    find_brotli_module,
    free_port,
    logical_of,
    make_app,
    page_links,
    serve,
    write_tree,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def chromium() -> None:
    if find_chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI (.ci/run installs Debian's chromium)")
        pytest.skip("no Chromium installed: apt-get install chromium")


@dataclass(frozen=True)
class Built:
    tmp: Path
    root: Path
    out: Path


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    """The tree, compiled once (``assetver build static -o out``) for the whole module."""
    tmp = Path(tempfile.mkdtemp(prefix="assetver-page-"))
    try:
        root, out = tmp / "static", tmp / "out"
        write_tree(root)
        compile_output(root, out, settings=CompileOptions.make(compress="br,gzip"))
        yield Built(tmp, root, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def app(built: Built, style: str, url_host: str | None = None) -> tornado.web.Application:
    return make_app(root=str(built.root), output=str(built.out), url_style=style, url_host=url_host)


# --- what every complete page load must show ---------------------------------------------


def family(name: str) -> str:
    return name.strip("\"'")


def assert_complete(visit: Visit, assets_origin: str) -> None:
    """Everything loaded, nothing failed, every asset far-future, all from one origin."""
    assert visit.error is None, visit.report()
    assert visit.errors() == [], visit.report()
    assert visit.failed() == [], visit.report()
    assert visit.document is not None and visit.document.status == 200, visit.report()
    assets = visit.network(documents=False)
    assert {logical_of(e.url) for e in assets} == PAGE_ASSETS, visit.report()
    for e in assets:
        assert e.url.startswith(assets_origin + PREFIX), e
        assert e.status == 200 and e.finished, e
        # CDP joins repeated headers with a newline: equality also means "exactly one"
        assert e.response_headers.get("cache-control") == IMMUTABLE, e
    total = sum(e.encoded_length or 0 for e in assets)
    cached_forever = sum(
        e.encoded_length or 0
        for e in assets
        if e.response_headers.get("cache-control") == IMMUTABLE
    )
    assert total > 0 and cached_forever == total, f"{cached_forever} of {total} bytes immutable"
    assert visit.fonts is not None
    assert {family(f.family): f.status for f in visit.fonts} == dict.fromkeys(
        FONT_FAMILIES, "loaded"
    ), visit.report()


async def assert_rendered(tab: Tab) -> None:
    """What the page shows agrees: stylesheets applied, images decoded, the module ran."""
    assert await tab.evaluate("document.documentElement.dataset.module") == "ran 1"
    assert await tab.evaluate("getComputedStyle(document.body).color") == "rgb(10, 20, 30)"
    assert await tab.evaluate("document.fonts.check('16px \"App Sans\"')") is True
    assert await tab.evaluate("document.querySelector('img').naturalWidth") == 16


def assert_return_visit(again: Visit) -> None:
    assert again.network(documents=False) == [], again.report()
    cached = {logical_of(e.url) for e in again.cached() if not e.url.startswith("data:")}
    assert cached == PAGE_ASSETS, again.report()
    assert again.errors() == [] and again.failed() == [], again.report()
    assert again.fonts is not None
    assert {f.status for f in again.fonts} == {"loaded"}, again.report()


async def assert_promise_kept(http: Client, page: Response, visit: Visit) -> dict[str, Response]:
    """Fetches the page's assets again with a plain client, and every URL they reference
    (fallback fonts, the 2x image, source maps): each is immutable with its digest's
    bytes, identity and each variant; the page's integrity values are the sha384 of those
    bytes. Returns the crawl."""
    html = page.body.decode()
    crawled = await crawl(http, page_links(html, page.url))
    for r in crawled.values():
        assert_immutable(r)
        for coding in ("br", "gzip"):
            assert_immutable(await http.get(r.url, Accept_Encoding=coding))
    assert {e.url.split("#")[0] for e in visit.network(documents=False)} <= set(crawled)
    logicals = by_logical(crawled)
    assert set(logicals) >= PAGE_ASSETS | {
        "fonts/app-sans.woff",  # the WOFF fallback of a WOFF2 font
        "img/hero@2x.png",  # image-set()'s 2x
        "css/app.css.map",
        "js/app.mjs.map",
        "vendor/fontawesome/webfonts/fa-solid-900.ttf",
        "vendor/katex/fonts/KaTeX_Main-Regular.woff",
    }, sorted(logicals)
    integrity = re.findall(r'(?:href|src)="([^"]+)"[^>]*integrity="([^"]+)"', html)
    assert len(integrity) == 5, html  # 3 stylesheets, the modulepreload, the script
    for url, value in integrity:
        assert value == sri(crawled[urljoin(page.url, url.replace("&amp;", "&"))].body), url
    return crawled


# --- Tornado ------------------------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_first_and_return_visit(built: Built, style: str) -> None:
    async def scenario() -> None:
        async with serve(app(built, style)) as origin, client() as http, Browser() as browser:
            async with browser.tab() as tab:
                first = await tab.visit(origin + "/", fonts=True)
                await assert_rendered(tab)
            assert_complete(first, origin)
            crawled = await assert_promise_kept(http, await http.get(origin + "/"), first)
            [css] = [u for u in crawled if logical_of(u) == "css/app.css"]
            assert ("?v=" in css) == (style == "query"), css
            # Tornado sends the brotli variant to a browser that accepts it
            [seen] = first.find(urlsplit(css).path)
            assert seen.response_headers.get("content-encoding") == "br", seen
            again = await browser.visit(origin + "/", fonts=True)
            assert_return_visit(again)

    run(scenario)


@pytest.mark.parametrize("style", STYLES)
def test_assets_on_another_origin(built: Built, style: str) -> None:
    """``assetver_url_host`` names a second server over the same output: fonts load
    (CORS), every integrity check passes, nothing errs."""

    async def scenario() -> None:
        async with (
            serve(app(built, style)) as cdn,
            serve(app(built, style, cdn)) as origin,
            client() as http,
            Browser() as browser,
        ):
            async with browser.tab() as tab:
                first = await tab.visit(origin + "/", fonts=True)
                await assert_rendered(tab)
            assert_complete(first, cdn)
            page = await http.get(origin + "/")
            tags = re.findall(r"<(?:link|script) [^>]*integrity=[^>]*>", page.body.decode())
            assert len(tags) == 5 and all('crossorigin="anonymous"' in t for t in tags)
            await assert_promise_kept(http, page, first)
            fonts = [e for e in first.exchanges if e.resource_type == "Font"]
            assert len(fonts) == 4, first.report()
            for e in fonts:
                assert e.request_headers.get("origin") == origin, e
                assert e.response_headers.get("access-control-allow-origin") == "*", e
            again = await browser.visit(origin + "/", fonts=True)
            assert_return_visit(again)

    run(scenario)


class BytesAsTheyAre(tornado.web.StaticFileHandler):
    """A CDN or object store: serves whatever bytes its files hold, with CORS."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Access-Control-Allow-Origin", "*")


TAMPERED = "vendor/fontawesome/css/all.min.css"


@pytest.fixture(scope="module")
def tampered(built: Built) -> Path:
    """A copy of the output whose vendor stylesheet was altered after the build (its
    current file and its hashed copy), as a compromised or broken CDN would serve it."""
    copy = built.tmp / "tampered"
    shutil.copytree(built.out, copy)
    folder = TAMPERED.rsplit("/", 1)[0]
    paths = [
        p for p in (copy / folder).iterdir() if p.name.endswith(".css") and "min" in p.name
    ]  # all.min.css and all.min.<digest>.css
    assert len(paths) == 2, paths
    for path in paths:
        data = path.read_bytes()
        assert b"font-weight:900}" in data
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
        path.write_bytes(data.replace(b"font-weight:900}", b"font-weight:700}", 1))
    return copy


@pytest.mark.parametrize("style", STYLES)
def test_tampered_asset_is_refused(built: Built, tampered: Path, style: str) -> None:
    cdn_app = tornado.web.Application([(r"/static/(.*)", BytesAsTheyAre, {"path": str(tampered)})])

    async def scenario() -> None:
        async with serve(cdn_app) as cdn, serve(app(built, style, cdn)) as origin:
            async with Browser() as browser:
                visit = await browser.visit(origin + "/", fonts=True)
            [refused] = visit.failed()
            assert refused.integrity_failed and logical_of(refused.url) == TAMPERED, visit.report()
            assert refused.status == 200 and refused.error is None  # loaded, then dropped
            [error] = visit.errors()
            assert error.source == "security" and refused.url in error.text, visit.report()
            # the rest of the page is unaffected; the refused stylesheet's font never loads
            assert {logical_of(e.url) for e in visit.network(documents=False)} == PAGE_ASSETS - {
                "vendor/fontawesome/webfonts/fa-solid-900.woff2"
            }, visit.report()
            assert visit.fonts is not None
            assert {family(f.family): f.status for f in visit.fonts} == dict.fromkeys(
                FONT_FAMILIES - {"Font Awesome 6 Free"}, "loaded"
            ), visit.report()

    run(scenario)


# --- nginx in front of Tornado -------------------------------------------------------------


@pytest.mark.parametrize("style", STYLES)
def test_through_nginx_in_front_of_tornado(
    built: Built, style: str, nginx_bin: str, tmp_path: Path
) -> None:
    """nginx serves ``/static/`` from the output (``assetver nginx DIR --upstream``) and
    proxies the page to Tornado: every asset comes from nginx, far-future, and a return
    visit asks for none."""
    port = free_port()

    async def scenario() -> None:
        async with serve(app(built, style)) as upstream:
            args = ["nginx", str(built.out), "--prefix", PREFIX, "--listen", f"127.0.0.1:{port}"]
            args += ["--upstream", upstream.removeprefix("http://")]
            args += ["--brotli"] if find_brotli_module() else []
            nginx = Nginx(nginx_bin, tmp_path / "nginx", cli(*args))
            origin = f"http://127.0.0.1:{port}"
            with nginx.running(port):
                async with client() as http, Browser() as browser:
                    async with browser.tab() as tab:
                        first = await tab.visit(origin + "/", fonts=True)
                        await assert_rendered(tab)
                    assert_complete(first, origin)
                    assert first.document is not None
                    assert first.document.response_headers["server"].startswith("TornadoServer")
                    for e in first.network(documents=False):
                        assert e.response_headers["server"].startswith("nginx"), e
                        if find_brotli_module() and logical_of(e.url) == "css/app.css":
                            assert e.response_headers.get("content-encoding") == "br", e
                    page = await http.get(origin + "/")
                    crawled = await assert_promise_kept(http, page, first)
                    assert all(r.headers["Server"].startswith("nginx") for r in crawled.values())
                    again = await browser.visit(origin + "/", fonts=True)
                    assert_return_visit(again)
            errors = nginx.errors()
            assert "[error]" not in errors and "[crit]" not in errors, errors
            assert "uninitialized variable" not in errors, errors

    run(scenario)
