"""`assetver nginx` against a real nginx on 127.0.0.1: roots and compiled outputs.

Every response fetched with `get` goes through `check_promise`: one that carries
``immutable`` must be a 200/304 whose decoded body hashes to the digest in its URL.
"""

from __future__ import annotations

import gzip
import http.client
import io
import itertools
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import brotli
import pytest
from hypothesis import given
from hypothesis import strategies as st

from assetver.cli import main
from assetver.errors import ConfigError
from assetver.hashing import digest_bytes
from assetver.http import SUFFIXES, TYPES
from assetver.manifest import Entry, Manifest
from assetver.nginx import render
from assetver.policy import IMMUTABLE, NO_STORE, REVALIDATE, STALE_POLICIES
from assetver.urls import STATE_DIR, hashed_path, split_hashed

from .conftest import write
from .e2e_support import find_brotli_module, free_port, stop, wait_for_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_APP = REPO / "examples" / "app.py"
PREFIX = "/static/"
STYLES = ("query", "filename")
PARTS = ("all", "http", "server")

MIME_TYPES = """types {
    text/html html;
    text/css css;
    text/plain txt;
    application/javascript js;
    image/svg+xml svg;
    image/x-icon ico;
}
"""
"""The host's table in these tests: deliberately without .mjs, .woff2, .wasm..."""

SPECIAL_NAMES = [
    "sp ace.css",
    "q\"uote's.css",
    "dol$lar.js",
    "${x}.js",
    "br{ace};#.txt",
    "café/ünïcode.css",
    "back\\slash.txt",
    "per%41cent.css",
    "qu?estion.css",
    "~tilde.css",
]

TRICKY_NAMES = [
    "LICENSE",
    "js/katex.min.js",
    "a.",
    "a..b",
    "archive.tar.gz",
    "x.0123456789abcdef.js",
    "v/x.0123456789abcdef",
    "deep/er/pa-th_~/n.m.o.p",
    "café/ünï code.css",
]


@pytest.fixture
def brotli_module() -> str:
    module = find_brotli_module()
    if module is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Debian's libnginx-mod-http-brotli-static for these")
        pytest.skip(
            "no ngx_http_brotli_static_module: apt-get install libnginx-mod-http-brotli-static"
        )
    return module


class Nginx:
    """An nginx prefix in a tmp directory: ``site.conf`` is included in ``http { }``;
    the brotli_static module is loaded when it is installed."""

    def __init__(self, binary: str, prefix: Path) -> None:
        self.binary = binary
        self.prefix = prefix
        self.conf = prefix / "nginx.conf"
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "mime.types").write_text(MIME_TYPES)
        temp = "\n".join(
            f'    {name}_temp_path "{prefix}/{name}";'
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        module = find_brotli_module()
        self.conf.write_text(
            (f"load_module {module};\n" if module else "")
            + ("user root;\n" if os.geteuid() == 0 else "")
            + "worker_processes 1;\n"
            f'pid "{prefix}/nginx.pid";\n'
            f'error_log "{prefix}/error.log" warn;\n'
            "events { worker_connections 64; }\n"
            "http {\n"
            "    include mime.types;\n"
            "    access_log off;\n"
            f"{temp}\n"
            "    include site.conf;\n"
            "}\n"
        )

    def site(self, text: str) -> None:
        (self.prefix / "site.conf").write_text(text, encoding="utf-8")

    def check(self) -> float:
        """Runs ``nginx -t``; fails on errors and warnings; returns the seconds it took."""
        start = time.perf_counter()
        result = subprocess.run(
            [self.binary, "-t", "-q", "-p", f"{self.prefix}/", "-c", str(self.conf)],
            capture_output=True,
            text=True,
            timeout=20,
        )
        seconds = time.perf_counter() - start
        assert result.returncode == 0, result.stderr
        assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr
        return seconds

    @contextmanager
    def running(self, port: int) -> Iterator[None]:
        log = self.prefix / "stderr.log"
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [self.binary, "-p", f"{self.prefix}/", "-c", str(self.conf), "-g", "daemon off;"],
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        try:
            wait_for_port(port, proc, log)
            yield
        finally:
            stop(proc)
        errors = (self.prefix / "error.log").read_text(errors="replace")
        assert "uninitialized variable" not in errors, errors


@pytest.fixture
def nginx(nginx_bin: str, tmp_path: Path) -> Nginx:
    return Nginx(nginx_bin, tmp_path / "nginx")


class Response:
    def __init__(self, status: int, headers: Message, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def cache_control(self) -> str:
        values = self.headers.get_all("Cache-Control") or []
        assert len(values) == 1, f"expected one Cache-Control, got {values}"
        return values[0]

    def decoded(self) -> bytes:
        coding = self.headers.get("Content-Encoding")
        if coding == "gzip":
            return gzip.decompress(self.body)
        if coding == "br":
            return bytes(brotli.decompress(self.body))
        assert coding is None, coding
        return self.body


def url_digests(url: str) -> set[str]:
    """The digests a URL names: its hashed file name's, and its first ``v`` argument
    (nginx's ``$arg_v``, case-insensitive). Which one the server takes depends on
    whether the file name is a logical path; the bytes must be one of them."""
    parts = urlsplit(url)
    found = set()
    split = split_hashed(unquote(parts.path).removeprefix(PREFIX))
    if split is not None:
        found.add(split[1])
    values = [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() == "v"]
    return found | set(values[:1])


def check_promise(url: str, r: Response) -> None:
    """The immutable promise, for every response these tests see (a 206's slice and a
    304 have no whole body to hash; their URL must still name a digest)."""
    values = r.headers.get_all("Cache-Control") or []
    if url.startswith((PREFIX, "/favicon.ico", "/robots.txt")):
        assert len(values) == 1, f"{url}: expected one Cache-Control, got {values}"
    if not any("immutable" in v for v in values):
        assert "Expires" not in r.headers, url
        return
    assert r.status in (200, 206, 304), (url, r.status)
    digests = url_digests(url)
    assert digests, f"{url} names no digest, yet is immutable"
    if r.status == 200:
        assert digest_bytes(r.decoded()) in digests, f"{url}: the bytes are not {digests}'s"


def get(port: int, path: str, **headers: str) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request("GET", path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        resp = conn.getresponse()
        r = Response(resp.status, resp.msg, resp.read())
    finally:
        conn.close()
    check_promise(path, r)
    return r


def raw_get(port: int, path: str) -> tuple[int, bytes]:
    """Sends ``path`` byte for byte (no client normalisation); returns status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    message = http.client.parse_headers(io.BytesIO(head.split(b"\r\n", 1)[1]))
    r = Response(int(head.split(b" ", 2)[1]), message, body)
    if r.status != 400:
        check_promise(path, r)
    return r.status, body


def assert_current(r: Response, body: bytes | None = None) -> None:
    assert r.status == 200
    assert r.cache_control() == IMMUTABLE
    expires = r.headers.get_all("Expires") or []
    assert len(expires) == 1 and int(expires[0].split()[3]) >= time.gmtime().tm_year + 1
    assert r.headers["ETag"]
    if body is not None:
        assert r.decoded() == body


def assert_revalidated(r: Response, body: bytes | None = None, cache: str = REVALIDATE) -> None:
    assert r.status == 200
    assert r.cache_control() == cache
    assert "Expires" not in r.headers
    if body is not None:
        assert r.decoded() == body


def assert_not_found(r: Response) -> None:
    assert r.status == 404
    assert r.cache_control() == NO_STORE
    assert "Expires" not in r.headers
    assert "Access-Control-Allow-Origin" not in r.headers


CSS = b"body { color: red }\n" * 20


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A static root with a gzip sibling, dotfiles, a manifest, and a secret beside it."""
    root = tmp_path / "static"
    write(root, "css/app.css", CSS)
    (root / "css/app.css.gz").write_bytes(gzip.compress(b"old bytes\n", mtime=0))
    write(root, "js/app.js", "console.log('hi');\n")
    write(root, "LICENSE", "MIT\n")
    write(root, "favicon.ico", b"\x00\x00\x01\x00")
    write(root, "robots.txt", "User-agent: *\n")
    write(root, ".env", "SECRET=dotfile\n")
    write(root, "css/.hidden.css", "hidden\n")
    write(tmp_path, "secret.txt", "SECRET=outside\n")
    assert main(["build", str(root), "-q"]) == 0
    return root


def manifest_of(root: Path) -> Manifest:
    return Manifest.load(root / STATE_DIR / "manifest.json")


def cli_config(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["nginx", *args]) == 0
    return capsys.readouterr().out


def write_output(
    out: Path,
    files: dict[str, bytes],
    *,
    retained: dict[str, bytes] | None = None,
    codings: tuple[str, ...] = ("gzip", "br"),
) -> Manifest:
    """Writes a compiled output by hand, laid out as `assetver.output` lays it out:
    hashed copies (and ``retained`` ones of an earlier build), their variants, current
    files and their variants as hard links, the manifest in ``.assetver/``."""
    entries = {}
    for logical, data in [*(retained or {}).items(), *files.items()]:
        digest = digest_bytes(data)
        hashed = hashed_path(logical, digest)
        write(out, hashed, data)
        variants = {}
        for coding in codings:
            packed = gzip.compress(data, mtime=0) if coding == "gzip" else brotli.compress(data)
            (out / (hashed + SUFFIXES[coding])).write_bytes(packed)
            variants[coding] = len(packed)
        if logical in files:
            for suffix in ("", *(SUFFIXES[c] for c in codings)):
                link = out / (logical + suffix)
                link.unlink(missing_ok=True)
                os.link(out / (hashed + suffix), link)
            entries[logical] = Entry(digest, len(data), {"hashed": hashed, "variants": variants})
    manifest = Manifest(entries, output=True)
    (out / STATE_DIR).mkdir(exist_ok=True)
    manifest.dump(out / STATE_DIR / "manifest.json")
    return manifest


def output_url(logical: str, digest: str, style: str) -> str:
    if style == "query":
        return f"{PREFIX}{quote(logical)}?v={digest}"
    return PREFIX + quote(hashed_path(logical, digest))


OLD_CSS = b"body { color: blue }\n" * 20
JS = b"export const answer = 42;\n" * 10


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An output with a retained earlier build of css/app.css, and secrets beside it."""
    out = tmp_path / "dist" / "static"
    write_output(
        out,
        {"css/app.css": CSS, "js/app.mjs": JS, "LICENSE": b"MIT\n", "favicon.ico": b"\0\0\1\0"},
        retained={"css/app.css": OLD_CSS},
    )
    write(out, ".env", "SECRET=dotfile\n")
    write(tmp_path, "app/settings.env", "SECRET=outside\n")
    return out


# --- a root served in place (manifest version 1) ------------------------------------------


def test_query_style_policy(nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    nginx.site(cli_config(capsys, str(site), "--listen", f"127.0.0.1:{port}"))
    m = manifest_of(site)
    css, js = m["css/app.css"].digest, m["js/app.js"].digest
    with nginx.running(port):
        current = get(port, f"/static/css/app.css?v={css}")
        assert_current(current, CSS)
        assert current.headers["Content-Type"] == "text/css"
        assert current.headers["X-Content-Type-Options"] == "nosniff"
        revalidation = get(
            port, f"/static/css/app.css?v={css}", If_None_Match=current.headers["ETag"]
        )
        assert revalidation.status == 304 and revalidation.cache_control() == IMMUTABLE
        assert_current(get(port, f"/static/LICENSE?v={m['LICENSE'].digest}"), b"MIT\n")
        for forged in ("0" * 16, js, css[:-1], css + "0", "", css.upper() + "x", f"{css}%20"):
            assert_revalidated(get(port, f"/static/css/app.css?v={forged}"), CSS)
        assert_revalidated(get(port, "/static/css/app.css?v"), CSS)
        assert_revalidated(get(port, f"/static/css/app.css?w={css}"), CSS)
        assert_revalidated(get(port, "/static/css/app.css"), CSS)
        assert_revalidated(get(port, "/static/" + hashed_path("css/app.css", css)), CSS)
        assert_revalidated(get(port, "/static/" + hashed_path("css/app.css", "1" * 16)), CSS)


def test_filename_style_policy(
    nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    nginx.site(
        cli_config(capsys, str(site), "--listen", f"127.0.0.1:{port}", "--style", "filename")
    )
    m = manifest_of(site)
    css = m["css/app.css"].digest
    with nginx.running(port):
        assert_current(get(port, "/static/" + hashed_path("css/app.css", css)), CSS)
        assert_current(get(port, "/static/" + hashed_path("LICENSE", m["LICENSE"].digest)))
        stale = "/static/" + hashed_path("css/app.css", "0" * 16)
        assert_revalidated(get(port, stale), CSS)
        forged = "/static/" + hashed_path("css/app.css", m["js/app.js"].digest)
        assert_revalidated(get(port, forged), CSS)
        assert_revalidated(get(port, "/static/css/app.css"), CSS)
        assert_revalidated(get(port, f"/static/css/app.css?v={css}"), CSS)
        assert_not_found(get(port, "/static/" + hashed_path("css/none.css", css)))


def test_root_serves_no_precompressed_variant(
    nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A root's .gz may hold old bytes (another tool made it): never served as a variant."""
    config = cli_config(capsys, str(site), "--listen", f"127.0.0.1:{(port := free_port())}")
    assert "gzip_static" not in config and "brotli_static" not in config
    css = manifest_of(site)["css/app.css"].digest
    nginx.site(config)
    with nginx.running(port):
        for coding in ("gzip", "br", "gzip, br", "*"):
            r = get(port, f"/static/css/app.css?v={css}", Accept_Encoding=coding)
            assert_current(r, CSS)
            assert "Content-Encoding" not in r.headers
    with pytest.raises(ConfigError, match="output only"):
        render(manifest_of(site), root=str(site), brotli=True)


def test_dotfiles_and_errors(nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    nginx.site(cli_config(capsys, str(site), "--listen", f"127.0.0.1:{port}"))
    with nginx.running(port):
        for path in (
            "/static/.env",
            "/static/%2eenv",
            "/static/css/.hidden.css",
            "/static/.assetver/manifest.json",
            "/static/%2Eassetver/manifest.json",
            "/static/.assetver/",
            "/static/missing.css",
            "/static/css/",
            "/static/css",
            "/elsewhere",
        ):
            r = get(port, path)
            assert_not_found(r)
            assert b"SECRET" not in r.body and b'"files"' not in r.body
        assert get(port, "/favicon.ico").body == b"\x00\x00\x01\x00"
        assert get(port, "/favicon.ico").headers["Content-Type"] == TYPES[".ico"]
        assert_revalidated(get(port, "/robots.txt"), b"User-agent: *\n")


def test_max_age_is_for_unversioned_requests_only(
    nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    nginx.site(cli_config(capsys, str(site), "--listen", f"127.0.0.1:{port}", "--max-age", "60"))
    css = manifest_of(site)["css/app.css"].digest
    with nginx.running(port):
        assert get(port, "/static/css/app.css").cache_control() == "public, max-age=60"
        assert get(port, "/robots.txt").cache_control() == "public, max-age=60"
        assert_current(get(port, f"/static/css/app.css?v={css}"), CSS)
        for url in (
            "/static/css/app.css?v=0123456789abcdef",
            "/static/css/app.css?v=notadigest",
            "/static/css/app.css?v=",
            "/static/" + hashed_path("css/app.css", "0" * 16),
        ):
            assert_revalidated(get(port, url), CSS)
        assert_not_found(get(port, "/static/none.css"))


@pytest.mark.parametrize("style", ["query", "filename"])
def test_root_stale_policies(
    nginx: Nginx, site: Path, style: str, capsys: pytest.CaptureFixture[str]
) -> None:
    m = manifest_of(site)
    css = m["css/app.css"].digest
    current = output_url("css/app.css", css, style)
    stale_urls = [
        "/static/css/app.css?v=0123456789abcdef",
        "/static/css/app.css?v=notadigest",
        "/static/" + hashed_path("css/app.css", "0" * 16),
    ]
    for policy in ("redirect", "404"):
        port = free_port()
        args = [str(site), "--listen", f"127.0.0.1:{port}", "--style", style, "--stale", policy]
        nginx.site(cli_config(capsys, *args))
        with nginx.running(port):
            assert_current(get(port, current), CSS)
            assert_revalidated(get(port, "/static/css/app.css"), CSS)
            assert_not_found(get(port, "/static/none.css?v=0123456789abcdef"))
            for url in stale_urls:
                r = get(port, url)
                if policy == "404":
                    assert_not_found(r)
                else:
                    assert r.status == 302 and r.cache_control() == NO_STORE
                    assert r.headers["Location"] == current
                    assert "Access-Control-Allow-Origin" not in r.headers


def test_symlinks_are_never_served(
    nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``disable_symlinks on``: no link is followed, into the root or out of it, whoever
    owns its target (the handler serves links that stay inside the root)."""
    app = site.parent / "app"
    write(app, "settings.env", "SECRET=settings\n")
    os.symlink("../app/settings.env", site / "vendor.css")
    os.symlink(".env", site / "dotted.css")
    os.symlink("app.css", site / "css" / "alias.css")
    os.symlink("../secret.txt", site / "escape.txt")
    port = free_port()
    nginx.site(cli_config(capsys, str(site), "--listen", f"127.0.0.1:{port}"))
    with nginx.running(port):
        for path in ("vendor.css", "dotted.css", "css/alias.css", "escape.txt"):
            status, body = raw_get(port, f"/static/{path}")
            assert status == 404 and b"SECRET" not in body and b"color" not in body, path


def test_manifest_inside_root_is_denied_under_every_name(
    nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", str(site), "-q", "-m", str(site / "manifest.json")]) == 0
    for style in ("query", "filename"):
        port = free_port()
        args = ["-m", str(site / "manifest.json"), "--listen", f"127.0.0.1:{port}"]
        nginx.site(cli_config(capsys, str(site), *args, "--style", style))
        with nginx.running(port):
            for url in (
                "/static/manifest.json",
                "/static/manifest.json?v=0123456789abcdef",
                "/static/manifest.0123456789abcdef.json",
                "/static/" + hashed_path("manifest.json", manifest_of(site)["LICENSE"].digest),
                "/static/.assetver/manifest.0123456789abcdef.json",
                "/static/.assetver-cache",
            ):
                r = get(port, url)
                assert_not_found(r)
                assert b'"files"' not in r.body


def test_media_types_whatever_the_host_table(tmp_path: Path, nginx: Nginx) -> None:
    root = tmp_path / "static"
    names = [f"f{ext}" for ext in TYPES]
    for name in [*names, "blob.unknownext"]:
        write(root, name, name.encode())
    assert main(["build", str(root), "-q"]) == 0
    port = free_port()
    nginx.site(render(manifest_of(root), root=str(root), listen=f"127.0.0.1:{port}"))
    with nginx.running(port):
        for name in names:
            assert get(port, f"/static/{name}").headers["Content-Type"] == TYPES[name[1:]]
        assert get(port, "/static/blob.unknownext").headers["Content-Type"] == (
            "application/octet-stream"
        )


def test_root_cors(nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    css = manifest_of(site)["css/app.css"].digest
    for origin, expected in (("*", "*"), ("https://app.example", "https://app.example")):
        port = free_port()
        args = [str(site), "--listen", f"127.0.0.1:{port}", "--allow-origin", origin]
        nginx.site(cli_config(capsys, *args))
        with nginx.running(port):
            assert_cors(port, f"/static/css/app.css?v={css}", expected)
    port = free_port()
    args = [str(site), "--listen", f"127.0.0.1:{port}", "--allow-origin", "none"]
    nginx.site(cli_config(capsys, *args))
    with nginx.running(port):
        assert_cors(port, f"/static/css/app.css?v={css}", None)


def assert_cors(port: int, url: str, origin: str | None) -> None:
    """``Access-Control-Allow-Origin`` on 200, 206, 304 and 416, once; not on errors."""
    full = get(port, url)
    responses = [
        full,
        get(port, url, If_None_Match=full.headers["ETag"]),
        get(port, url, Range="bytes=0-3"),
        get(port, url, Range="bytes=999999-"),
    ]
    assert [r.status for r in responses] == [200, 304, 206, 416]
    for r in responses:
        assert (r.headers.get_all("Access-Control-Allow-Origin") or [None]) == [origin]
    for r in responses[2:]:
        assert r.cache_control() == NO_STORE and "Expires" not in r.headers
    assert "Access-Control-Allow-Origin" not in get(port, "/static/none.css").headers


@pytest.mark.parametrize("style", ["query", "filename"])
def test_names_needing_escaping(
    nginx: Nginx, tmp_path: Path, style: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / 'we$ird {root}; "x"'
    for i, name in enumerate(SPECIAL_NAMES):
        write(root, name, f"file {i}\n")
    assert main(["build", str(root), "-q"]) == 0
    m = manifest_of(root)
    assert sorted(m) == sorted(SPECIAL_NAMES)
    port = free_port()
    config = cli_config(capsys, str(root), "--listen", f"127.0.0.1:{port}", "--style", style)
    nginx.site(config)
    nginx.check()
    with nginx.running(port):
        for i, name in enumerate(SPECIAL_NAMES):
            body = f"file {i}\n".encode()
            assert_current(get(port, output_url(name, m[name].digest, style)), body)
            assert_revalidated(get(port, f"/static/{quote(name)}"), body)
            stale = output_url(name, "0" * 16, style)
            assert_revalidated(get(port, stale), body)


@pytest.mark.parametrize("style", ["query", "filename"])
def test_root_names_that_look_hashed(
    nginx: Nginx, tmp_path: Path, style: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "static"
    for name in TRICKY_NAMES:
        write(root, name, f"{name}\n")
    write(root, "x.js", "the other x\n")
    assert main(["build", str(root), "-q"]) == 0
    m = manifest_of(root)
    port = free_port()
    nginx.site(cli_config(capsys, str(root), "--listen", f"127.0.0.1:{port}", "--style", style))
    with nginx.running(port):
        for name in [*TRICKY_NAMES, "x.js"]:
            body = f"{name}\n".encode() if name != "x.js" else b"the other x\n"
            assert_current(get(port, output_url(name, m[name].digest, style)), body)
            assert_revalidated(get(port, f"/static/{quote(name)}"), body)


@pytest.mark.parametrize("style", ["query", "filename"])
@pytest.mark.parametrize("upstreams", [[], ["127.0.0.1:8001", "[::1]:8002"]])
def test_nginx_accepts_every_variant(
    nginx: Nginx,
    site: Path,
    style: str,
    upstreams: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [str(site), "--listen", "127.0.0.1:8080", "--style", style, "--server-name", "x.test"]
    for address in upstreams:
        args += ["--upstream", address]
    for policy in ("serve", "redirect", "404"):
        config = cli_config(capsys, *args, "--stale", policy, "--max-age", "30")
        assert ("upstream assetver_frontends" in config) == bool(upstreams)
        assert ("proxy_next_upstream error;" in config) == bool(upstreams)
        assert "brotli_static" not in config and "gzip_static" not in config
        nginx.site(config)
        nginx.check()


def test_parts_go_into_an_existing_server(
    nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    upstream = ["--upstream", "127.0.0.1:1", "--stale", "redirect"]
    http_part = cli_config(capsys, str(site), "--part", "http", *upstream)
    server_part = cli_config(capsys, str(site), "--part", "server", *upstream)
    assert "location" not in http_part and "server {" not in http_part
    assert "map " not in server_part and "server {" not in server_part
    assert "proxy_pass" in server_part
    (nginx.prefix / "http.conf").write_text(http_part)
    (nginx.prefix / "server.conf").write_text(server_part)
    nginx.site(
        "include http.conf;\n"
        f"server {{\n    listen 127.0.0.1:{port};\n    include server.conf;\n}}\n"
    )
    nginx.check()
    css = manifest_of(site)["css/app.css"].digest
    with nginx.running(port):
        assert_current(get(port, f"/static/css/app.css?v={css}"), CSS)
        assert get(port, "/static/css/app.css?v=0123456789abcdef").status == 302


@pytest.mark.parametrize("style", ["query", "filename"])
def test_large_manifest(nginx: Nginx, tmp_path: Path, style: str) -> None:
    files = {
        f"vendor/pkg-{i // 500:03d}/dist/components/module-{i:06d}.bundle.min.js": Entry(
            f"{i * 0x9E3779B97F4A7C15 % (1 << 64):016x}", i
        )
        for i in range(100_000)
    }
    config = render(Manifest(files), root=str(tmp_path), style=style, listen="127.0.0.1:8080")
    nginx.site(config)
    assert nginx.check() < 2.0


def test_cli_errors(site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        ([str(tmp_path / "missing")], "not a directory"),
        ([str(site), "-m", str(tmp_path / "none.json")], "assetver build"),
        ([str(site), "--prefix", "/static"], "/static/"),
        ([str(site), "--prefix", "/../"], "prefix"),
        ([str(site), "--listen", "127.0.0.1:80; evil"], "listen"),
        ([str(site), "--upstream", "x y"], "upstream"),
        ([str(site), "--server-name", "a;b"], "server name"),
        ([str(site), "--max-age", "-1"], "max_age"),
        ([str(site), "--allow-origin", 'a"; evil'], "allow_origin"),
        ([str(site), "--brotli"], "output only"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(["nginx", *args]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("assetver: error:") and message in err, err
        assert "Traceback" not in err


def test_render_is_deterministic_and_validates() -> None:
    m = Manifest({"a.css": Entry("0123456789abcdef", 1)})
    assert render(m, root="/srv/static") == render(m, root="/srv/static")
    for bad in (
        {"root": "relative/static"},
        {"root": "/srv", "style": "path"},
        {"root": "/srv", "part": "location"},
        {"root": "/srv", "stale": "ignore"},
        {"root": "/srv", "allow_origin": "a b"},
        {"root": "/srv", "max_age": -1},
    ):
        with pytest.raises(ConfigError):
            render(m, **bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        render(Manifest({"a.css": Entry("not hex", 1)}), root="/srv")
    assert "open_file_cache max=256 " in render(m, root="/srv")
    assert "open_file_cache" not in render(m, root="/srv", open_file_cache=0)
    assert "Access-Control-Allow-Origin" not in render(m, root="/srv", allow_origin=None)


# --- a compiled output ----------------------------------------------------------------------


def output_config(out: Path, port: int, **options: object) -> str:
    manifest = Manifest.load(out / STATE_DIR / "manifest.json")
    return render(manifest, root=str(out), listen=f"127.0.0.1:{port}", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("style", ["query", "filename"])
def test_output_current_retained_stale_forged_absent(nginx: Nginx, out: Path, style: str) -> None:
    port = free_port()
    config = output_config(out, port)
    assert "css/app.css" not in config, "the configuration must not list files"
    nginx.site(config)
    new, old = digest_bytes(CSS), digest_bytes(OLD_CSS)
    with nginx.running(port):
        current = get(port, output_url("css/app.css", new, style))
        assert_current(current, CSS)
        assert current.headers["Content-Type"] == "text/css"
        again = get(
            port, output_url("css/app.css", new, style), If_None_Match=current.headers["ETag"]
        )
        assert again.status == 304 and again.cache_control() == IMMUTABLE
        assert_current(get(port, output_url("css/app.css", old, style)), OLD_CSS)
        assert_current(get(port, output_url("LICENSE", digest_bytes(b"MIT\n"), style)), b"MIT\n")
        for stale in ("0123456789abcdef", digest_bytes(JS)):
            assert_revalidated(get(port, output_url("css/app.css", stale, style)), CSS)
        for forged in ("notadigest", "", new.upper(), new[:-1], f"{new}0", f"{new}%20"):
            assert_revalidated(get(port, f"/static/css/app.css?v={forged}"), CSS)
        assert_revalidated(get(port, "/static/css/app.css?v"), CSS)
        assert_revalidated(get(port, "/static/css/app.css"), CSS)
        assert_revalidated(get(port, f"/static/css/app.css?w={new}"), CSS)
        # a hashed name with a ?v= digest is read by its ?v= (the handler reads the name)
        assert_revalidated(get(port, f"{output_url('css/app.css', new, 'filename')}?v={old}"), CSS)
        for missing in ("css/none.css", "none"):
            assert_not_found(get(port, output_url(missing, new, style)))
            assert_not_found(get(port, f"/static/{missing}"))


def test_missing_hashed_copy_is_never_immutable(nginx: Nginx, out: Path) -> None:
    """The decision is made on the file served: a current digest whose hashed copy is
    gone (an interrupted deploy, a pruned output) gets the current file, revalidated."""
    new = digest_bytes(CSS)
    (out / hashed_path("css/app.css", new)).unlink()
    for suffix in SUFFIXES.values():
        (out / (hashed_path("css/app.css", new) + suffix)).unlink(missing_ok=True)
    port = free_port()
    nginx.site(output_config(out, port, brotli=find_brotli_module() is not None))
    with nginx.running(port):
        for style in ("query", "filename"):
            for coding in ("", "gzip", "br"):
                r = get(port, output_url("css/app.css", new, style), Accept_Encoding=coding)
                assert_revalidated(r, CSS)


def test_output_max_age_is_for_unversioned_requests_only(nginx: Nginx, out: Path) -> None:
    port = free_port()
    nginx.site(output_config(out, port, max_age=600))
    with nginx.running(port):
        assert get(port, "/static/css/app.css").cache_control() == "public, max-age=600"
        assert get(port, "/favicon.ico").cache_control() == "public, max-age=600"
        assert_current(get(port, output_url("css/app.css", digest_bytes(CSS), "query")), CSS)
        for url in (
            "/static/css/app.css?v=0123456789abcdef",
            "/static/css/app.0123456789abcdef.css",
            "/static/css/app.css?v=notadigest",
            "/static/css/app.css?v=",
        ):
            assert_revalidated(get(port, url), CSS)


def test_output_stale_404(nginx: Nginx, out: Path) -> None:
    port = free_port()
    nginx.site(output_config(out, port, stale="404"))
    with nginx.running(port):
        for style in ("query", "filename"):
            assert_current(get(port, output_url("css/app.css", digest_bytes(CSS), style)), CSS)
            assert_current(get(port, output_url("css/app.css", digest_bytes(OLD_CSS), style)))
            assert_not_found(get(port, output_url("css/app.css", "0123456789abcdef", style)))
        for forged in ("notadigest", ""):
            assert_not_found(get(port, f"/static/css/app.css?v={forged}"))
        assert_revalidated(get(port, "/static/css/app.css"), CSS)
        assert_not_found(get(port, "/static/none.css"))


def test_output_stale_redirect(nginx: Nginx, out: Path) -> None:
    """Redirects go to the unversioned URL: the configuration knows no digests."""
    write_output(out, {"sp ace.css": b"spaced\n", "dir/a+b.css": b"plus\n"})
    port = free_port()
    nginx.site(output_config(out, port, stale="redirect"))
    with nginx.running(port):
        for url, target in (
            ("/static/css/app.css?v=0123456789abcdef", "/static/css/app.css"),
            ("/static/css/app.0123456789abcdef.css", "/static/css/app.css"),
            ("/static/css/app.css?v=notadigest", "/static/css/app.css"),
            ("/static/dir/a+b.0123456789abcdef.css", "/static/dir/a+b.css"),
            ("/static/LICENSE.0123456789abcdef", "/static/LICENSE"),
        ):
            r = get(port, url)
            assert r.status == 302 and r.headers["Location"] == target, url
            assert r.cache_control() == NO_STORE and "Access-Control-Allow-Origin" not in r.headers
        assert_not_found(get(port, "/static/sp%20ace.css?v=0123456789abcdef"))
        assert_revalidated(get(port, "/static/sp%20ace.css"), b"spaced\n")
        assert_not_found(get(port, "/static/none.css"))
        assert_current(get(port, output_url("css/app.css", digest_bytes(OLD_CSS), "query")))


def test_new_build_needs_no_reload(nginx: Nginx, out: Path) -> None:
    port = free_port()
    nginx.site(output_config(out, port))
    newer = b"body { color: green }\n" * 20
    with nginx.running(port):
        assert_revalidated(get(port, "/static/css/app.css"), CSS)
        write_output(out, {"css/app.css": newer, "js/new.js": JS})
        time.sleep(1.1)  # open_file_cache revalidates every second
        for style in ("query", "filename"):
            assert_current(get(port, output_url("css/app.css", digest_bytes(newer), style)), newer)
            assert_current(get(port, output_url("css/app.css", digest_bytes(CSS), style)), CSS)
            assert_current(get(port, output_url("js/new.js", digest_bytes(JS), style)), JS)
        assert_revalidated(get(port, "/static/css/app.css"), newer)


def test_output_hostile_paths(nginx: Nginx, out: Path) -> None:
    outside = out.parent.parent / "app" / "settings.env"
    os.symlink(os.path.relpath(outside, out / "css"), out / "css" / "vendor.css")
    os.symlink("../.env", out / "css" / "dotted.css")
    os.symlink(os.path.relpath(outside, out), out / "evil.0123456789abcdef.css")
    os.symlink(hashed_path("app.css", digest_bytes(CSS)), out / "css" / "alias.css")
    os.symlink(str(out.parent.parent / "app"), out / "linked")
    port = free_port()
    nginx.site(output_config(out, port))
    new = digest_bytes(CSS)
    with nginx.running(port):
        for path in (
            "/static/.env",
            "/static/%2eenv",
            f"/static/{STATE_DIR}/manifest.json",
            f"/static/%2E{STATE_DIR[1:]}/manifest.json",
            f"/static/{STATE_DIR}/manifest.json?v={new}",
            f"/static/{STATE_DIR}/",
            "/static/css/vendor.css",
            "/static/css/vendor.css?v=0123456789abcdef",
            "/static/css/dotted.css",
            "/static/evil.0123456789abcdef.css",
            "/static/evil.css?v=0123456789abcdef",
            "/static/css/alias.css",
            "/static/linked/settings.env",
            "/static/css/",
            "/static/css",
            "/static/../app/settings.env",
            "/static/%2e%2e/app/settings.env",
            "/static/..%2fapp/settings.env",
            "/static/%2e%2e%2fapp%2fsettings.env",
            "/static/css/..%2F..%2F..%2Fapp/settings.env",
            "/static/..%5capp%5csettings.env",
            "/static/%2fetc/passwd",
            "/static/../../../../../../etc/passwd",
            "/static/.%2e/.%2e/app/settings.env",
        ):
            status, body = raw_get(port, path)
            assert status in (400, 404), (path, status)
            assert b"SECRET" not in body and b"root:" not in body and b'"files"' not in body
        for path in (
            f"/static/css/app.css?v={new}/../../../app/settings.env",
            "/static/css/app.css?v=../../../app/settings.env",
            f"/static/css%2Fapp.{new}.css",
        ):
            assert raw_get(port, path) == (200, CSS), path


def test_output_names_that_look_hashed(nginx: Nginx, tmp_path: Path) -> None:
    """Tricky names, both styles: digest before the last extension exactly as
    `hashed_path`; a logical path whose name looks hashed is a file of its own, served
    as it is and never immutable."""
    out = tmp_path / "out"
    files = {name: f"{name}\n".encode() for name in TRICKY_NAMES}
    m = write_output(out, files, codings=())
    port = free_port()
    config = output_config(out, port)
    assert '"/static/x.0123456789abcdef.js" $uri;' in config
    nginx.site(config)
    with nginx.running(port):
        for name, body in files.items():
            for style in ("query", "filename"):
                assert_current(get(port, output_url(name, m[name].digest, style)), body)
            r = get(port, f"/static/{quote(name)}")
            assert_revalidated(r, body)


DIGESTS = st.text("0123456789abcdef", min_size=16, max_size=16)
NAMES = st.one_of(
    st.text("ab.-_ é~", min_size=1, max_size=8),
    st.builds(
        lambda a, d, b: f"{a}.{d}{b}",
        st.text("ab.", max_size=3),
        DIGESTS,
        st.text("ab.", max_size=3),
    ),
)


def test_shapes_agree_with_hashed_path() -> None:
    """The rendered regular expressions are `hashed_path` and `split_hashed` (checked
    in Python's re, whose syntax for them is PCRE's)."""
    config = render(Manifest({}, output=True), root="/srv/out")
    query = _map_entries(config, "assetver_query_copy")
    named = _map_entries(config, "assetver_named_copy")
    logical = _map_entries(config, "assetver_logical")

    def copy(arg_v: str, uri: str) -> str:
        """The $assetver_copy chain: by $arg_v, the ?v= shapes, else the name's."""
        found = _nginx_map(query, f"{arg_v}&{uri}", default="") if arg_v else ""
        return found or _nginx_map(named, uri, default="")

    @given(st.lists(NAMES, min_size=1, max_size=3), DIGESTS)
    def check(segments: list[str], digest: str) -> None:
        if any(s.startswith(".") for s in segments):
            return
        path = "/".join(segments)
        hashed = hashed_path(path, digest)
        split = split_hashed(path)
        marked = PREFIX + "./"
        assert copy(digest, PREFIX + path) == marked + hashed
        assert copy("", PREFIX + hashed) == marked + hashed
        assert copy("notadigest", PREFIX + hashed) == marked + hashed
        assert copy("", PREFIX + path) == (marked + path if split else "")
        assert _nginx_map(logical, PREFIX + hashed, default="") == PREFIX + path
        plain = _nginx_map(logical, PREFIX + path, default=PREFIX + path)
        assert plain == PREFIX + (split[0] if split else path)

    check()


def _map_entries(config: str, name: str) -> list[tuple[str, str]]:
    block = re.search(rf"map [^\n]* \${name} {{\n(.*?)\n}}", config, re.S)
    assert block is not None
    entries = []
    for line in block.group(1).splitlines():
        found = re.fullmatch(r'\s*"~(.*)" "?(.*?)"?;', line)
        if found:
            entries.append((found.group(1).replace("\\\\", "\\"), found.group(2)))
    return entries


def _nginx_map(entries: list[tuple[str, str]], value: str, *, default: str) -> str:
    for regex, template in entries:
        found = re.search(regex, value)
        if found:
            return found.expand(re.sub(r"\$(\d)", r"\\g<\1>", template))
    return default


ENCODINGS_TABLE = [
    # Accept-Encoding, what nginx sends with gzip_static and brotli_static (without)
    ("", None, None),
    ("gzip", "gzip", "gzip"),
    ("br", "br", None),
    ("gzip, br", "br", "gzip"),
    ("gzip;q=1, br;q=0.1", "br", "gzip"),  # brotli_static ignores relative q-values
    ("br;q=0, gzip", "gzip", "gzip"),
    ("gzip;q=0, br", "br", None),
    ("GZIP", "gzip", "gzip"),
    ("gzip;q=0.001", "gzip", "gzip"),
    ("gzip;q=0", None, None),
    ("br;q=0.000", None, None),
    ("*", None, None),  # nginx reads no "*"
    ("identity;q=0", None, None),  # nor identity: it sends identity anyway
    ("x-gzip", None, None),
    ("zstd", None, None),  # no stock zstd module: Tornado serves .zst
    ("deflate, compress", None, None),
]


@pytest.mark.parametrize("with_brotli", [True, False])
def test_variants_negotiation(
    nginx: Nginx, out: Path, with_brotli: bool, request: pytest.FixtureRequest
) -> None:
    if with_brotli:
        request.getfixturevalue("brotli_module")
    port = free_port()
    nginx.site(output_config(out, port, brotli=with_brotli))
    urls = [output_url("css/app.css", digest_bytes(d), s) for d in (CSS, OLD_CSS) for s in STYLES]
    with nginx.running(port):
        for accept, with_br, without_br in ENCODINGS_TABLE:
            expected = with_br if with_brotli else without_br
            for url in [*urls, "/static/css/app.css"]:
                r = get(port, url, Accept_Encoding=accept) if accept else get(port, url)
                assert r.headers.get("Content-Encoding") == expected, (accept, url)
                assert r.headers["Vary"] == "Accept-Encoding"
                assert digest_bytes(r.decoded()) in (digest_bytes(CSS), digest_bytes(OLD_CSS))
        assert "Vary" not in get(port, "/static/none.css").headers


def test_output_media_types(nginx: Nginx, tmp_path: Path) -> None:
    out = tmp_path / "out"
    files = {f"f{ext}": ext.encode() for ext in TYPES}
    files["blob.unknownext"] = b"?"
    m = write_output(out, files, codings=())
    port = free_port()
    nginx.site(output_config(out, port))
    with nginx.running(port):
        for name in files:
            expected = TYPES.get(os.path.splitext(name)[1], "application/octet-stream")
            for url in (f"/static/{name}", output_url(name, m[name].digest, "query")):
                r = get(port, url)
                assert r.headers["Content-Type"] == expected, url
                assert r.headers["X-Content-Type-Options"] == "nosniff"
        for name, media_type in (
            ("f.mjs", "text/javascript"),
            ("f.woff2", "font/woff2"),
            ("f.wasm", "application/wasm"),
            ("f.webmanifest", "application/manifest+json"),
            ("f.svg", "image/svg+xml"),
        ):
            assert get(port, f"/static/{name}").headers["Content-Type"] == media_type
        assert get(port, "/favicon.ico").status == 404


def test_output_cors(nginx: Nginx, out: Path) -> None:
    url = output_url("css/app.css", digest_bytes(CSS), "filename")
    for origin in ("*", "https://app.example", None):
        port = free_port()
        nginx.site(output_config(out, port, allow_origin=origin))
        with nginx.running(port):
            assert_cors(port, url, origin)
            assert_cors(port, "/static/css/app.css", origin)


def test_nginx_accepts_every_output_variant(
    nginx: Nginx, tmp_path: Path, brotli_module: str
) -> None:
    weird = tmp_path / 'we$ird {dir}; "x"'
    looking_hashed = ["d$.0123456789abcdef.js", 'q"x.0123456789abcdef', "a b.0123456789abcdef.c"]
    names = [*SPECIAL_NAMES, *looking_hashed]
    manifest = write_output(weird, {n: n.encode() for n in names}, codings=())
    for style, stale, brotli_on in itertools.product(STYLES, STALE_POLICIES, (True, False)):
        options = dict(root=str(weird), style=style, stale=stale, brotli=brotli_on, max_age=60)
        options.update(upstreams=["127.0.0.1:8001"], listen="127.0.0.1:8080")
        for part in PARTS:
            text = render(manifest, part=part, **options)  # type: ignore[arg-type]
            if part == "http":
                text += "server { listen 127.0.0.1:8080; }\n"
            elif part == "server":
                http = render(manifest, part="http", **options)  # type: ignore[arg-type]
                text = f"{http}server {{\n listen 127.0.0.1:8080;\n{text}}}\n"
            nginx.site(text)
            nginx.check()


def test_compiled_output_end_to_end(
    nginx: Nginx, tmp_path: Path, brotli_module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real compiler's output through the CLI, served as it is: every file and
    variant immutable under both URL styles, rewritten references included."""
    from assetver.output import CompileOptions, compile_output

    src = tmp_path / "src"
    write(src, "css/app.css", "body { background: url(../img/logo.svg) }\n" * 20)
    write(src, "img/logo.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>\n" * 20)
    write(src, "js/app.mjs", "export default 1;\n" * 20)
    dist = tmp_path / "dist" / "static"
    compile_output(src, dist, settings=CompileOptions.make(compress="br,gzip"))
    port = free_port()
    nginx.site(cli_config(capsys, str(dist), "--listen", f"127.0.0.1:{port}", "--brotli"))
    m = Manifest.load(dist / STATE_DIR / "manifest.json")
    with nginx.running(port):
        for logical, entry in m.items():
            for style in STYLES:
                for coding in ("", "gzip", "br"):
                    url = output_url(logical, entry.digest, style)
                    r = get(port, url, Accept_Encoding=coding) if coding else get(port, url)
                    assert_current(r)
                    assert (r.headers.get("Content-Encoding") or "") == (
                        coding if coding in entry.variants else ""
                    )
        css = get(port, output_url("css/app.css", m["css/app.css"].digest, "query")).body
        ref = re.search(rb"url\(\.\./(img/[^)]+)\)", css)
        assert ref is not None
        assert_current(get(port, PREFIX + ref.group(1).decode()))


def _start_example(port: int, manifest: Path, style: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as err:
        return subprocess.Popen(
            [
                sys.executable,
                str(EXAMPLE_APP),
                f"--port={port}",
                "--address=127.0.0.1",
                f"--manifest={manifest}",
                f"--url_style={style}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=REPO,
        )


@pytest.mark.skipif(not EXAMPLE_APP.exists(), reason="examples/app.py is not written yet")
@pytest.mark.parametrize("style", ["query", "filename"])
def test_guide_setup_with_example_app(
    nginx: Nginx, tmp_path: Path, style: str, capsys: pytest.CaptureFixture[str]
) -> None:
    static = EXAMPLE_APP.parent / "static"
    manifest = tmp_path / "manifest.json"
    assert main(["build", str(static), "-q", "-m", str(manifest)]) == 0
    ports = [free_port(), free_port()]
    port = free_port()
    args = [str(static), "-m", str(manifest), "--listen", f"127.0.0.1:{port}", "--style", style]
    for backend in ports:
        args += ["--upstream", f"127.0.0.1:{backend}"]
    nginx.site(cli_config(capsys, *args))
    backends = []
    try:
        for backend in ports:
            log = tmp_path / f"app-{backend}.log"
            proc = _start_example(backend, manifest, style, log)
            backends.append(proc)
            wait_for_port(backend, proc, log)
        with nginx.running(port):
            pids, urls = set(), set()
            for _ in range(4):
                page = get(port, "/")
                assert page.status == 200 and page.headers["Server"].startswith("TornadoServer")
                text = page.body.decode()
                pids.update(re.findall(r"process (\d+)", text))
                urls.add(tuple(re.findall(r'(?:href|src)="(/static/[^"]+)"', text)))
            assert len(pids) == 2, "nginx should spread pages over both processes"
            assert len(urls) == 1, f"backends rendered different asset URLs: {urls}"
            assets = urls.pop()
            assert len(assets) >= 3
            for url in assets:
                r = get(port, url)
                assert_current(r)
                assert r.headers["Server"].startswith("nginx")
            assert get(port, "/favicon.ico").headers["Server"].startswith("nginx")
            assert_not_found(get(port, "/static/css/none.css"))
    finally:
        for proc in backends:
            stop(proc)
