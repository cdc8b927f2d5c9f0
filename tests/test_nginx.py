"""`assetver nginx` against a real nginx on 127.0.0.1."""

from __future__ import annotations

import gzip
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from pathlib import Path
from urllib.parse import quote

import pytest

from assetver.cli import main
from assetver.errors import ConfigError
from assetver.http import IMMUTABLE, NO_STORE, REVALIDATE
from assetver.manifest import Entry, Manifest
from assetver.nginx import render
from assetver.urls import hashed_path

from .conftest import write

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_APP = REPO / "examples" / "app.py"

MIME_TYPES = """types {
    text/html html;
    text/css css;
    text/plain txt;
    application/javascript js;
    image/svg+xml svg;
    image/x-icon ico;
}
"""

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


def _find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


@pytest.fixture(scope="module")
def nginx_bin() -> str:
    binary = _find_nginx()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI (.ci/run installs the Debian nginx package)")
        pytest.skip("no nginx binary on PATH or at /usr/sbin/nginx; install nginx to run these")
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"process exited with {proc.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    pytest.fail(f"nothing listens on 127.0.0.1:{port}: {log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)


class Nginx:
    """An nginx prefix in a tmp directory: ``site.conf`` is included in ``http { }``."""

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
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            f"{user}worker_processes 1;\n"
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


def get(port: int, path: str, **headers: str) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3)
    try:
        conn.request("GET", path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        resp = conn.getresponse()
        return Response(resp.status, resp.msg, resp.read())
    finally:
        conn.close()


def raw_get(port: int, path: str) -> tuple[int, bytes]:
    """Sends ``path`` byte for byte (no client normalisation); returns status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def assert_current(r: Response, body: bytes | None = None) -> None:
    assert r.status == 200
    assert r.cache_control() == IMMUTABLE
    expires = r.headers.get_all("Expires") or []
    assert len(expires) == 1 and int(expires[0].split()[3]) >= time.gmtime().tm_year + 1
    assert r.headers["ETag"]
    if body is not None:
        assert r.body == body


def assert_revalidated(r: Response, body: bytes | None = None) -> None:
    assert r.status == 200
    assert r.cache_control() == REVALIDATE
    assert "Expires" not in r.headers
    if body is not None:
        assert r.body == body


def assert_not_found(r: Response) -> None:
    assert r.status == 404
    assert r.cache_control() == NO_STORE
    assert "Expires" not in r.headers


CSS = b"body { color: red }\n" * 20


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A static root with a gzip sibling, dotfiles, a manifest, and a secret beside it."""
    root = tmp_path / "static"
    write(root, "css/app.css", CSS)
    (root / "css/app.css.gz").write_bytes(gzip.compress(CSS, mtime=0))
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
    return Manifest.load(root / ".assetver" / "manifest.json")


def cli_config(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["nginx", *args]) == 0
    return capsys.readouterr().out


def test_query_style_policy(nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    nginx.site(cli_config(capsys, str(site), "--listen", f"127.0.0.1:{port}"))
    m = manifest_of(site)
    css, js = m["css/app.css"].digest, m["js/app.js"].digest
    with nginx.running(port):
        current = get(port, f"/static/css/app.css?v={css}")
        assert_current(current, CSS)
        assert current.headers["Content-Type"].startswith("text/css")
        assert current.headers["X-Content-Type-Options"] == "nosniff"
        revalidation = get(
            port, f"/static/css/app.css?v={css}", If_None_Match=current.headers["ETag"]
        )
        assert revalidation.status == 304 and revalidation.cache_control() == IMMUTABLE
        assert_current(get(port, f"/static/LICENSE?v={m['LICENSE'].digest}"), b"MIT\n")
        for forged in ("0" * 16, js, css[:-1], css + "0", "", css.upper() + "x", f"{css}%20"):
            assert_revalidated(get(port, f"/static/css/app.css?v={forged}"), CSS)
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


def test_gzip_sibling_dotfiles_and_errors(
    nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    nginx.site(cli_config(capsys, str(site), "--listen", f"127.0.0.1:{port}"))
    css = manifest_of(site)["css/app.css"].digest
    with nginx.running(port):
        r = get(port, f"/static/css/app.css?v={css}", Accept_Encoding="gzip")
        assert_current(r)
        assert r.headers["Content-Encoding"] == "gzip"
        assert r.headers["Vary"] == "Accept-Encoding"
        assert gzip.decompress(r.body) == CSS
        identity = get(port, f"/static/css/app.css?v={css}")
        assert "Content-Encoding" not in identity.headers and identity.body == CSS
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
        assert_revalidated(get(port, "/robots.txt"), b"User-agent: *\n")


def test_traversal_is_not_served(
    nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    nginx.site(cli_config(capsys, str(site), "--listen", f"127.0.0.1:{port}"))
    with nginx.running(port):
        for path in (
            "/static/../secret.txt",
            "/static/%2e%2e/secret.txt",
            "/static/%2E%2E/secret.txt",
            "/static/..%2fsecret.txt",
            "/static/%2e%2e%2fsecret.txt",
            "/static/css/..%2F..%2Fsecret.txt",
            "/static/css/%2e%2e/%2e%2e/secret.txt",
            "/static..%2fsecret.txt",
            "/static/..%5csecret.txt",
            "/static/%2fsecret.txt",
            "/static/../../../../../../etc/passwd",
            "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "/static/.%2e/secret.txt",
        ):
            status, body = raw_get(port, path)
            assert status in (400, 404), (path, status)
            assert b"SECRET" not in body and b"root:" not in body, path


def test_symlink_out_of_the_root_is_not_followed(
    nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A link to someone else's file is refused (``disable_symlinks if_not_owner``), as
    Tornado refuses links out of the root; a link to a sibling file still serves."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give the link's target another owner")
    secret = site.parent / "secret.txt"
    os.chown(secret, 65534, 65534)
    os.symlink(secret, site / "escape.txt")
    os.symlink("app.css", site / "css" / "alias.css")
    port = free_port()
    nginx.site(cli_config(capsys, str(site), "--listen", f"127.0.0.1:{port}"))
    with nginx.running(port):
        status, body = raw_get(port, "/static/escape.txt")
        assert status in (403, 404) and b"SECRET" not in body
        assert get(port, "/static/css/alias.css").status == 200


def test_manifest_inside_root_is_denied(
    nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", str(site), "-q", "-o", str(site / "manifest.json")]) == 0
    port = free_port()
    nginx.site(
        cli_config(
            capsys, str(site), "-m", str(site / "manifest.json"), "--listen", f"127.0.0.1:{port}"
        )
    )
    with nginx.running(port):
        assert_not_found(get(port, "/static/manifest.json"))
        assert_not_found(get(port, "/static/manifest.json?v=0123456789abcdef"))


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
            digest = m[name].digest
            if style == "query":
                url = f"/static/{quote(name)}?v={digest}"
            else:
                url = "/static/" + quote(hashed_path(name, digest))
            assert_current(get(port, url), f"file {i}\n".encode())
            assert_revalidated(get(port, f"/static/{quote(name)}"), f"file {i}\n".encode())


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
    config = cli_config(capsys, *args)
    assert ("upstream assetver_frontends" in config) == bool(upstreams)
    assert ("proxy_next_upstream error;" in config) == bool(upstreams)
    assert "brotli_static" not in config
    nginx.site(config)
    nginx.check()


def test_parts_go_into_an_existing_server(
    nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    upstream = ["--upstream", "127.0.0.1:1"]
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
        assert_revalidated(get(port, "/static/css/app.css?v=0123456789abcdef"), CSS)


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


def test_brotli_is_opt_in(site: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "brotli_static on;" in cli_config(capsys, str(site), "--brotli")
    assert "brotli_static" not in cli_config(capsys, str(site))


def test_max_age_for_unversioned(
    nginx: Nginx, site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    nginx.site(cli_config(capsys, str(site), "--listen", f"127.0.0.1:{port}", "--max-age", "60"))
    css = manifest_of(site)["css/app.css"].digest
    with nginx.running(port):
        assert get(port, "/static/css/app.css").cache_control() == "public, max-age=60"
        assert_current(get(port, f"/static/css/app.css?v={css}"), CSS)
        assert_not_found(get(port, "/static/none.css"))


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
    with pytest.raises(ConfigError):
        render(m, root="relative/static")
    with pytest.raises(ConfigError):
        render(m, root="/srv", style="path")
    with pytest.raises(ConfigError):
        render(m, root="/srv", part="location")
    with pytest.raises(ConfigError):
        render(Manifest({"a.css": Entry("not hex", 1)}), root="/srv")
    assert "open_file_cache max=256 " in render(m, root="/srv")
    assert "open_file_cache" not in render(m, root="/srv", open_file_cache=0)


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
    assert main(["build", str(static), "-q", "-o", str(manifest)]) == 0
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
