"""Shared pieces of the end-to-end tests (test_page.py, test_deploy.py).

- A realistic static tree (`write_tree`): an app stylesheet that ``@import``s another,
  ``@font-face`` with a WOFF2 and a WOFF font, ``url()`` images (PNG, SVG), an
  ``image-set()``, source maps; vendor stylesheets with their own fonts laid out like
  Font Awesome (``url(../webfonts/x.woff2)``) and KaTeX (``url(fonts/x.woff2)``); a JS
  module. Fonts are real (`tests.browser.tiny_font` wrapped as WOFF and WOFF2), so
  Chromium's font sanitizer accepts them; images are real PNGs.
- The page app (`make_app`): a Tornado app serving a compiled output with the tag
  helpers (SRI), laid out like ``examples/app.py``; also runnable as a process
  (``python -m tests.e2e_support --fd N --output DIR ...``) on a socket the test bound.
- The checks of the immutable promise on what a server sends (`assert_immutable`,
  `crawl`), with XXH3 computed here from the bytes received, not taken from assetver.
- Real processes with bounded waits: the app (`start_app`), nginx (`Nginx`), the CLI
  (`cli`); `stop` ends one by its id.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import brotli
import xxhash
from tornado.httpclient import HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders
from tornado.simple_httpclient import SimpleAsyncHTTPClient
from tornado.template import Template
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler

import assetver.tornado

from .browser import tiny_font

REPO = Path(__file__).resolve().parents[1]
PREFIX = "/static/"
IMMUTABLE = "public, max-age=31536000, immutable"
STYLES = ("query", "filename")
BROTLI_MODULES = (
    "/usr/lib/nginx/modules/ngx_http_brotli_static_module.so",
    "/usr/share/nginx/modules/ngx_http_brotli_static_module.so",
)

# --- fonts and images -------------------------------------------------------------------


def _sfnt_tables(font: bytes) -> list[tuple[bytes, int, bytes]]:
    (count,) = struct.unpack(">H", font[4:6])
    tables = []
    for i in range(count):
        tag, checksum, offset, length = struct.unpack(">4s3I", font[12 + 16 * i : 28 + 16 * i])
        tables.append((tag, checksum, font[offset : offset + length]))
    return tables


def woff(font: bytes) -> bytes:
    """``font`` (TrueType) as WOFF 1.0: each table zlib-compressed when that is smaller."""
    tables = _sfnt_tables(font)
    header_size = 44 + 20 * len(tables)
    directory = data = b""
    for tag, checksum, table in tables:
        packed = zlib.compress(table, 9)
        if len(packed) >= len(table):
            packed = table
        offset = header_size + len(data)
        directory += struct.pack(">4s4I", tag, offset, len(packed), len(table), checksum)
        data += packed + b"\0" * (-len(packed) % 4)
    header = struct.pack(
        ">4sIIHHIHHIIIII",
        *(b"wOFF", 0x00010000, header_size + len(data), len(tables), 0, len(font)),
        *(1, 0, 0, 0, 0, 0, 0),
    )
    return header + directory + data


_WOFF2_TAGS = [b"cmap", b"head", b"hhea", b"hmtx", b"maxp", b"name", b"OS/2", b"post"]
_WOFF2_TAGS += [b"cvt ", b"fpgm", b"glyf", b"loca", b"prep"]


def _base128(n: int) -> bytes:
    out = [n & 0x7F]
    while n := n >> 7:
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


def woff2(font: bytes) -> bytes:
    """``font`` (TrueType) as WOFF 2.0: every table untransformed (glyf and loca with the
    null transform), one brotli stream."""
    tables = _sfnt_tables(font)
    directory = stream = b""
    for tag, _, table in tables:
        index = _WOFF2_TAGS.index(tag) if tag in _WOFF2_TAGS else 63
        version = 3 if tag in (b"glyf", b"loca") else 0  # 3: the null transform for these
        directory += bytes([index | version << 6]) + (tag if index == 63 else b"")
        directory += _base128(len(table))
        stream += table
    packed: bytes = brotli.compress(stream)
    sfnt_size = 12 + 16 * len(tables) + sum(len(t) + (-len(t) % 4) for _, _, t in tables)
    size = 48 + len(directory) + len(packed)
    pad = -size % 4
    header = struct.pack(
        ">4sIIHHIIHHIIIII",
        *(b"wOF2", 0x00010000, size + pad, len(tables), 0, sfnt_size, len(packed)),
        *(1, 0, 0, 0, 0, 0, 0),
    )
    return header + directory + packed + b"\0" * pad


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid PNG of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    rows = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">2I5B", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def svg(colour: str) -> bytes:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">'
        f'<circle id="dot" cx="8" cy="8" r="7" fill="{colour}"/></svg>\n'
    ).encode()


# --- the static tree ---------------------------------------------------------------------

FONT_FAMILIES = {"App Sans", "App Serif", "Font Awesome 6 Free", "KaTeX_Main"}
"""The ``@font-face`` families of the tree, all used by the page."""

UTILITIES = "".join(f".m-{i} {{ margin: {i * 0.25}rem; }}\n" for i in range(60))
"""Bulk that makes the stylesheets worth compressing (variants are made above 1 KiB)."""


def app_css(version: int) -> str:
    colour = "rgb(10, 20, 30)" if version == 1 else "rgb(40, 50, 60)"
    banner = ".banner { background: url('../img/old-banner.svg'); }\n" if version == 1 else ""
    return (
        '@import "base.css";\n'
        "/* a comment is no reference: url(../img/missing.png) */\n"
        '@font-face { font-family: "App Sans"; font-display: block;\n'
        '  src: url("../fonts/app-sans.woff2") format("woff2"),\n'
        '       url(../fonts/app-sans.woff) format("woff"); }\n'
        '@font-face { font-family: "App Serif"; font-display: block;\n'
        "  src: url('../fonts/app-serif.woff') format('woff'); }\n"
        f"body {{ font-family: 'App Sans', sans-serif; color: {colour}; }}\n"
        "h1 { font-family: 'App Serif', serif; }\n"
        ".logo { width: 32px; height: 32px; background: url(../img/logo.png) no-repeat; }\n"
        ".hero { width: 64px; height: 16px; background-image: url(../img/hero.png);\n"
        '  background-image: image-set("../img/hero.png" 1x, "../img/hero@2x.png" 2x); }\n'
        ".icon { width: 16px; height: 16px; background: url(/static/img/icon.svg); }\n"
        f"{banner}{UTILITIES}"
        "/*# sourceMappingURL=app.css.map */\n"
    )


BASE_CSS = (
    "html { background: #fff url(\"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'"
    '/%3E") no-repeat; }\n'
    ".mark { display: inline-block; width: 16px; height: 16px;\n"
    '  background: url("../img/dot.svg#dot"); }\n'
    "a[href^='http://'] { text-decoration: underline; }\n"
)

FA_CSS = (
    '@font-face{font-family:"Font Awesome 6 Free";font-style:normal;font-weight:900;'
    'font-display:block;src:url(../webfonts/fa-solid-900.woff2) format("woff2"),'
    'url(../webfonts/fa-solid-900.ttf) format("truetype")}'
    '.fa-solid{font-family:"Font Awesome 6 Free";font-weight:900}'
    + "".join(f'.fa-i{i}:before{{content:"\\f{i:03x}"}}' for i in range(80))
    + "\n"
)

KATEX_CSS = (
    "@font-face{font-family:KaTeX_Main;font-style:normal;font-weight:400;"
    'font-display:block;src:url(fonts/KaTeX_Main-Regular.woff2) format("woff2"),'
    'url(fonts/KaTeX_Main-Regular.woff) format("woff")}'
    '.katex{font:normal 1.21em KaTeX_Main,"Times New Roman",serif;line-height:1.2}'
    + "".join(f".katex .mspace{i}{{margin-right:{i / 18:.4f}em}}" for i in range(60))
    + "\n"
)

APP_MJS = (
    "const marks = document.querySelectorAll('.mark');\n"
    "document.documentElement.dataset.module = `ran ${marks.length}`;\n"
    "//# sourceMappingURL=app.mjs.map\n"
)


def source_map(source: str) -> str:
    return json.dumps({"version": 3, "sources": [source], "names": [], "mappings": "AAAA"})


def tree_files(version: int = 1) -> dict[str, bytes]:
    """The files of the tree; ``version`` 2 is the next deploy: the app stylesheet
    edited (a colour; the banner image dropped), its WOFF2 font replaced, the banner
    image deleted. ``css/admin.css`` imports the app stylesheet: unchanged itself, it
    reaches the font."""
    files: dict[str, str | bytes] = {
        "css/app.css": app_css(version),
        "css/app.css.map": source_map("app.scss"),
        "css/base.css": BASE_CSS,
        "css/admin.css": '@import "app.css";\n.admin { outline: 1px solid red; }\n',
        "fonts/app-sans.woff2": woff2(tiny_font("AppSans" if version == 1 else "AppSansTwo")),
        "fonts/app-sans.woff": woff(tiny_font("AppSans")),
        "fonts/app-serif.woff": woff(tiny_font("AppSerif")),
        "img/logo.png": png(32, 32, (200, 30, 30)),
        "img/hero.png": png(64, 16, (30, 200, 30)),
        "img/hero@2x.png": png(128, 32, (30, 200, 30)),
        "img/icon.svg": svg("#36c"),
        "img/dot.svg": svg("#c63"),
        "vendor/fontawesome/css/all.min.css": FA_CSS,
        "vendor/fontawesome/webfonts/fa-solid-900.woff2": woff2(tiny_font("FASolid")),
        "vendor/fontawesome/webfonts/fa-solid-900.ttf": tiny_font("FASolid"),
        "vendor/katex/katex.min.css": KATEX_CSS,
        "vendor/katex/fonts/KaTeX_Main-Regular.woff2": woff2(tiny_font("KaTeXMain")),
        "vendor/katex/fonts/KaTeX_Main-Regular.woff": woff(tiny_font("KaTeXMain")),
        "js/app.mjs": APP_MJS,
        "js/app.mjs.map": source_map("app.ts"),
    }
    if version == 1:
        files["img/old-banner.svg"] = svg("#999")
    return {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}


def write_tree(root: Path, version: int = 1) -> None:
    """Makes ``root`` hold exactly `tree_files` of ``version``."""
    files = tree_files(version)
    if root.exists():
        for path in sorted(root.rglob("*"), reverse=True):
            logical = path.relative_to(root).as_posix()
            if path.is_file() and logical not in files:
                path.unlink()
    for logical, data in files.items():
        path = root / logical
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != data:
            path.write_bytes(data)


# --- the page app ------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="build" content="{{ label }}">
  <title>assetver page</title>
  <link rel="icon" href="data:,">
  {% raw stylesheet_tag("vendor/fontawesome/css/all.min.css") %}
  {% raw stylesheet_tag("vendor/katex/katex.min.css") %}
  {% raw stylesheet_tag("css/app.css") %}
  {% raw modulepreload_tag("js/app.mjs") %}
</head>
<body>
  <h1>Heading in App Serif</h1>
  <p>Body text in App Sans <i class="fa-solid fa-i1">A</i> <span class="katex">x+y</span></p>
  <div class="logo"></div><div class="hero"></div><div class="icon"></div>
  <span class="mark"></span>
  <img src="{{ static_url('img/icon.svg') }}" alt="icon" width="16" height="16">
  {% raw script_tag("js/app.mjs", module=True) %}
</body>
</html>
"""

PAGE_ASSETS = {
    "vendor/fontawesome/css/all.min.css",
    "vendor/fontawesome/webfonts/fa-solid-900.woff2",
    "vendor/katex/katex.min.css",
    "vendor/katex/fonts/KaTeX_Main-Regular.woff2",
    "css/app.css",
    "css/base.css",
    "fonts/app-sans.woff2",
    "fonts/app-serif.woff",
    "img/logo.png",
    "img/hero.png",
    "img/icon.svg",
    "img/dot.svg",
    "js/app.mjs",
}
"""The logical paths a browser at 1x with WOFF2 loads for `PAGE` over `tree_files(1)`."""


_PAGE_TEMPLATE = Template(PAGE, name="page.html")


class PageHandler(RequestHandler):
    def get(self) -> None:
        # Generated here rather than with render(): Tornado caches template loaders per
        # process by template_path (None for a `template_loader`), so a DictLoader of
        # one test's app would answer another test's render("page.html").
        namespace = self.get_template_namespace()
        self.finish(_PAGE_TEMPLATE.generate(**namespace, label=self.settings["page_label"]))


def make_app(
    *,
    root: str,
    output: str,
    url_style: str = "query",
    url_host: str | None = None,
    label: str = "",
) -> Application:
    """The page app over a compiled output, as a production server runs it."""
    return Application(
        [(r"/", PageHandler)],
        page_label=label,
        **assetver.tornado.settings(
            static_path=root,
            assetver_output=output,
            assetver_url_style=url_style,
            assetver_url_host=url_host,
        ),
    )


def main(argv: list[str] | None = None) -> None:
    """Serves the page app on an inherited listening socket (``--fd``) till killed."""
    p = argparse.ArgumentParser()
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--url-style", default="query")
    p.add_argument("--label", default="")
    args = p.parse_args(argv)
    app = make_app(
        root=args.root, output=args.output, url_style=args.url_style, label=args.label
    )  # the manifest is loaded here, before serving, as in examples/app.py
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(False)

    async def serve() -> None:
        server = HTTPServer(app, xheaders=True)
        server.add_sockets([sock])
        await asyncio.Event().wait()

    asyncio.run(serve())


# --- URLs, HTTP and the immutable promise ------------------------------------------------

_HASHED = re.compile(r"\.([0-9a-f]{16})(?=(?:\.[^./]*)?$)")


def url_digest(url: str) -> str | None:
    """The digest a URL names: its ``v`` argument, else the one in its file name."""
    parts = urlsplit(url)
    values = [v for k, v in parse_qsl(parts.query) if k == "v"]
    if values:
        return values[0]
    found = _HASHED.search(parts.path.rsplit("/", 1)[-1])
    return found[1] if found else None


def logical_of(url: str) -> str:
    """The logical path a static URL names (prefix, digest and query removed)."""
    path = urlsplit(url).path
    assert path.startswith(PREFIX), url
    head, _, name = path[len(PREFIX) :].rpartition("/")
    name = _HASHED.sub("", name, count=1)
    return f"{head}/{name}" if head else name


def xxh3(data: bytes) -> str:
    return xxhash.xxh3_64_hexdigest(data)


@dataclass
class Response:
    url: str
    status: int
    headers: HTTPHeaders
    body: bytes

    def cache_control(self) -> list[str]:
        return self.headers.get_list("Cache-Control")

    def decoded(self) -> bytes:
        coding = self.headers.get("Content-Encoding")
        if coding == "br":
            return bytes(brotli.decompress(self.body))
        if coding == "gzip":
            return gzip.decompress(self.body)
        assert coding is None, (self.url, coding)
        return self.body

    def __str__(self) -> str:
        return f"{self.url} -> {self.status} {dict(self.headers.get_all())}"


class Client:
    """A plain HTTP client (Tornado's, no decompression, no redirects, no cache)."""

    def __init__(self) -> None:
        self._client = SimpleAsyncHTTPClient(force_instance=True)

    async def get(self, url: str, **headers: str) -> Response:
        request = HTTPRequest(
            url,
            headers={k.replace("_", "-"): v for k, v in headers.items()},
            decompress_response=False,
            follow_redirects=False,
            request_timeout=5,
        )
        r = await self._client.fetch(request, raise_error=False)
        assert r.code != 599, f"{url}: {r.error}"
        return Response(url, r.code, r.headers, r.body or b"")

    def close(self) -> None:
        self._client.close()


@contextlib.asynccontextmanager
async def client() -> Any:
    c = Client()
    try:
        yield c
    finally:
        c.close()


def assert_immutable(r: Response) -> None:
    """The promise for an asset: 200, exactly one ``Cache-Control``, far-future and
    immutable, and the decoded bytes hash to the digest the URL names."""
    assert r.status == 200, str(r)
    assert r.cache_control() == [IMMUTABLE], str(r)
    digest = url_digest(r.url)
    assert digest is not None, f"{r.url} is immutable but names no digest"
    assert xxh3(r.decoded()) == digest, f"{r.url}: the bytes are not {digest}'s"


def assert_not_immutable(r: Response) -> None:
    """What a URL no hashed copy backs gets: never far-future caching."""
    assert r.status in (200, 404), str(r)
    assert len(r.cache_control()) == 1, str(r)
    assert "immutable" not in r.cache_control()[0] and "Expires" not in r.headers, str(r)
    assert r.cache_control()[0] == ("no-cache" if r.status == 200 else "no-store"), str(r)


_LINKS = re.compile(r'<(?:link|script|img)\b[^>]*?\b(?:href|src)="([^"]+)"')
_CSS_REFS = [
    re.compile(r"""url\(\s*(['"]?)([^'")]*)\1\s*\)"""),
    re.compile(r"""@import\s+(['"])([^'"]+)\1"""),
]
_IMAGE_SET = re.compile(r"image-set\(([^)]*)\)")
_STRING = re.compile(r"""(['"])([^'"]+)\1""")
_SOURCE_MAP = re.compile(r"[#@] sourceMappingURL=(\S+?)(?:\s*\*/)?\s*$", re.M)
_COMMENT = re.compile(r"/\*(?!#).*?\*/", re.S)


def page_links(html: str, base: str) -> list[str]:
    """The static URLs a page names (stylesheets, scripts, preloads, images)."""
    urls = [urljoin(base, u.replace("&amp;", "&")) for u in _LINKS.findall(html)]
    return [u for u in urls if urlsplit(u).path.startswith(PREFIX)]


def references(url: str, body: bytes) -> list[str]:
    """The URLs a stylesheet's or script's references name, resolved against ``url``."""
    text = body.decode()
    found = [m[1] for m in _SOURCE_MAP.finditer(text)]
    if urlsplit(url).path.endswith(".css"):
        text = _COMMENT.sub("", text)
        for pattern in _CSS_REFS:
            found += [m[2] for m in pattern.finditer(text)]
        for group in _IMAGE_SET.findall(text):
            found += [m[2] for m in _STRING.finditer(group)]
    refs = []
    for ref in found:
        if ref and not ref.startswith(("data:", "#")):
            resolved = urljoin(url, ref).split("#", 1)[0]
            if resolved not in refs:
                refs.append(resolved)
    return refs


async def crawl(http: Client, urls: list[str]) -> dict[str, Response]:
    """Fetches ``urls`` and, transitively, every URL their references name, each once
    with identity encoding; returns URL -> response."""
    seen: dict[str, Response] = {}
    todo = list(urls)
    while todo:
        url = todo.pop(0)
        if url in seen:
            continue
        r = seen[url] = await http.get(url)
        if r.status == 200 and urlsplit(url).path.endswith((".css", ".js", ".mjs")):
            todo += references(url, r.body)
    return seen


@contextlib.asynccontextmanager
async def serve(app: Application) -> AsyncIterator[str]:
    """Serves ``app`` in this loop on an unused 127.0.0.1 port; yields its origin."""
    sock, port = bind_unused_port()
    server = HTTPServer(app)
    server.add_sockets([sock])
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        await server.close_all_connections()


def by_logical(responses: dict[str, Response]) -> dict[str, Response]:
    return {logical_of(url): r for url, r in responses.items()}


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def listening_socket() -> tuple[socket.socket, int]:
    """A listening socket on an unused 127.0.0.1 port, to hand to a child process."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock, sock.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}: {log.read_text()}")


def wait_for_http(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 10) -> None:
    """Waits until the process answers an HTTP request (a bound socket accepts
    connections before the app is built)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited with {proc.returncode}: {log.read_text()}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=0.5) as s,
        ):
            s.sendall(b"HEAD / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            if s.recv(16).startswith(b"HTTP/1."):
                return
        time.sleep(0.02)
    raise AssertionError(f"127.0.0.1:{port} does not answer HTTP: {log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Ends ``proc`` (by its id) and reaps it, boundedly."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)


def start_app(
    sock: socket.socket, *, root: Path, output: Path, style: str, label: str, log: Path
) -> subprocess.Popen[bytes]:
    """Starts the page app as its own process, serving on ``sock`` (closed here: the
    child owns it)."""
    try:
        with open(log, "wb") as err:
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.e2e_support",
                    f"--fd={sock.fileno()}",
                    f"--root={root}",
                    f"--output={output}",
                    f"--url-style={style}",
                    f"--label={label}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                pass_fds=[sock.fileno()],
                cwd=REPO,
            )
    finally:
        sock.close()


def cli(*args: str) -> str:
    """Runs ``python -m assetver ARGS``; returns its stdout (fails on a non-zero exit)."""
    result = subprocess.run(
        [sys.executable, "-m", "assetver", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, f"assetver {' '.join(args)}: {result.stderr}"
    return result.stdout


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def find_brotli_module() -> str | None:
    return next((m for m in BROTLI_MODULES if os.path.exists(m)), None)


class Nginx:
    """nginx with its prefix in a tmp directory, ``site`` included in ``http { }``, the
    brotli_static module loaded when it is installed."""

    def __init__(self, binary: str, prefix: Path, site: str) -> None:
        self.binary, self.prefix = binary, prefix
        self.conf = prefix / "nginx.conf"
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "site.conf").write_text(site, encoding="utf-8")
        temp = "".join(
            f'    {name}_temp_path "{prefix}/{name}";\n'
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        module = find_brotli_module()
        self.conf.write_text(
            (f"load_module {module};\n" if module else "")
            + ("user root;\n" if os.geteuid() == 0 else "")
            + "worker_processes 1;\n"
            f'pid "{prefix}/nginx.pid";\n'
            f'error_log "{prefix}/error.log" warn;\n'
            "events { worker_connections 128; }\n"
            f"http {{\n    access_log off;\n{temp}    include site.conf;\n}}\n"
        )

    def errors(self) -> str:
        try:
            return (self.prefix / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    @contextlib.contextmanager
    def running(self, port: int) -> Iterator[None]:
        log = self.prefix / "stderr.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [self.binary, "-p", f"{self.prefix}/", "-c", str(self.conf), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            wait_for_port(port, proc, log)
            yield
        finally:
            stop(proc)


if __name__ == "__main__":
    main()
