"""A rolling deploy end to end: real nginx on 127.0.0.1 in front of two Tornado
processes over the same output DIR, one still running build N, the other build N+1.

1. Build N into DIR; start backend A (it loads N's manifest at start-up). Render the
   nginx configuration from this output, with A and B as upstreams: it lists no file, so
   the same configuration serves every later build into DIR without a reload.
2. Edit the app stylesheet (a colour; a banner image dropped) and replace a font it
   references, delete the banner image; build N+1 into the same DIR (retention keeps N's
   copies); start backend B. nginx round-robins between the two, as mid-rollout.
3. Both pages load completely through nginx: every URL they name, and every URL those
   assets reference, is a 200 from nginx, ``immutable``, whose bytes (identity and each
   variant) hash to the digest in its URL; the old page gets N's stylesheet and font, the
   new page N+1's. Straight from Tornado, each backend also serves the other build's
   URLs with their own bytes (a hashed copy any build wrote is found through the builds'
   snapshots in ``DIR/.assetver/builds/``).
4. ``assetver diff`` of the two manifests is the CDN purge list: the stylesheet, the
   font, every stylesheet that reaches the font (``css/admin.css`` imports the app
   stylesheet and is otherwise unchanged), and the deleted image.
5. ``assetver clean DIR --keep 0 --keep-for 0`` removes N's copies and nothing of N+1's:
   the new page still loads completely; the old page's URLs are never far-future any
   more (a changed file's old digest gets the current bytes with ``no-cache``, the
   deleted image a 404 ``no-store``), through nginx and through Tornado.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from .e2e_support import (
    PREFIX,
    STYLES,
    Client,
    Nginx,
    Response,
    assert_immutable,
    assert_not_immutable,
    by_logical,
    cli,
    client,
    crawl,
    find_brotli_module,
    free_port,
    listening_socket,
    make_app,
    page_links,
    serve,
    start_app,
    stop,
    tree_files,
    url_digest,
    wait_for_http,
    write_tree,
)

pytestmark = pytest.mark.timeout(90)

SUFFIXES = {"br": ".br", "gzip": ".gz", "zstd": ".zst"}
CHANGED = ["css/admin.css", "css/app.css", "fonts/app-sans.woff2"]
REMOVED = ["img/old-banner.svg"]


@pytest.fixture
def workdir() -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix="assetver-deploy-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build(root: Path, out: Path, keep: Path) -> dict[str, Any]:
    """``assetver build ROOT -o DIR``; keeps a copy of the manifest (as CI would keep
    each release's) and returns its files."""
    cli("build", str(root), "-o", str(out), "-q")
    shutil.copyfile(out / ".assetver" / "manifest.json", keep)
    files: dict[str, Any] = json.loads(keep.read_text())["files"]
    return files


def on_disk(files: dict[str, Any], *, current: bool = True) -> set[str]:
    """What an output holds for a manifest's files: hashed copies, current files (unless
    not ``current``), and the variants of both."""
    names = set()
    for logical, entry in files.items():
        for name in (logical, entry["hashed"]) if current else (entry["hashed"],):
            names.add(name)
            names.update(name + SUFFIXES[c] for c in entry.get("variants", {}))
    return names


def output_files(out: Path) -> set[str]:
    return {
        p.relative_to(out).as_posix()
        for p in out.rglob("*")
        if p.is_file() and not p.relative_to(out).as_posix().startswith(".assetver/")
    }


def label_of(page: Response) -> str:
    found = re.search(r'<meta name="build" content="([^"]*)">', page.body.decode())
    assert found is not None, page.body
    return found[1]


def rebase(url: str, origin: str) -> str:
    parts = urlsplit(url)
    return origin + parts.path + (f"?{parts.query}" if parts.query else "")


async def assert_loads(http: Client, responses: dict[str, Response], server: str) -> None:
    """Every response is a 200 from ``server``, immutable, its bytes its digest's, and
    so are its variants."""
    for url, r in responses.items():
        assert_immutable(r)
        assert r.headers["Server"].startswith(server), str(r)
        for coding in ("br", "gzip"):
            assert_immutable(await http.get(url, Accept_Encoding=coding))


def assert_promise(r: Response) -> None:
    """Whatever a server still running build N sends: never far-future for bytes that
    are not the digest in the URL."""
    if r.status == 200 and any("immutable" in v for v in r.cache_control()):
        assert_immutable(r)
    else:
        assert_not_immutable(r)


async def settled(http: Client, url: str, seconds: float = 3.0) -> Response:
    """nginx's ``open_file_cache`` keeps a removed file's descriptor, and serves its
    (right) bytes, until the entry is revalidated (``open_file_cache_valid 1s``): polls,
    boundedly, until the removal shows, checking the promise on every answer."""
    deadline = time.monotonic() + seconds
    while True:
        r = await http.get(url)
        assert_promise(r)
        if "immutable" not in r.cache_control()[0] or time.monotonic() > deadline:
            return r
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("style", STYLES)
def test_rolling_deploy(workdir: Path, style: str, nginx_bin: str) -> None:
    root, out = workdir / "static", workdir / "dist" / "static"
    port = free_port()
    brotli = ["--brotli"] if find_brotli_module() else []
    with contextlib.ExitStack() as stack:
        sock_a, port_a = listening_socket()
        stack.callback(sock_a.close)
        sock_b, port_b = listening_socket()
        stack.callback(sock_b.close)

        write_tree(root, version=1)
        old = build(root, out, workdir / "manifest-N.json")
        site = cli(
            *("nginx", str(out), "--prefix", PREFIX, "--listen", f"127.0.0.1:{port}", *brotli),
            *("--upstream", f"127.0.0.1:{port_a}", "--upstream", f"127.0.0.1:{port_b}"),
        )
        a = start_app(sock_a, root=root, output=out, style=style, label="N", log=workdir / "a.log")
        stack.callback(stop, a)
        wait_for_http(port_a, a, workdir / "a.log")  # A has loaded build N's manifest

        write_tree(root, version=2)
        new = build(root, out, workdir / "manifest-N+1.json")
        b = start_app(
            sock_b, root=root, output=out, style=style, label="N+1", log=workdir / "b.log"
        )
        stack.callback(stop, b)
        wait_for_http(port_b, b, workdir / "b.log")

        # the CDN purge list: changed served bytes, the dependants included, and removals
        diff = json.loads(
            cli(
                "diff",
                str(workdir / "manifest-N.json"),
                str(workdir / "manifest-N+1.json"),
                "--json",
            )
        )
        assert (diff["added"], diff["changed"], diff["removed"]) == ([], CHANGED, REMOVED)
        assert (
            sorted(p for p in new if p in old and new[p]["digest"] != old[p]["digest"]) == CHANGED
        )
        # both builds' files are in DIR: N's copies are retained
        assert on_disk(old, current=False) | on_disk(new) == output_files(out)

        nginx = Nginx(nginx_bin, workdir / "nginx", site)
        stack.enter_context(nginx.running(port))
        backends = {"N": f"http://127.0.0.1:{port_a}", "N+1": f"http://127.0.0.1:{port_b}"}
        asyncio.run(scenario(out, f"http://127.0.0.1:{port}", backends, old, new, style))
        errors = nginx.errors()
        assert "[crit]" not in errors and "uninitialized variable" not in errors, errors


async def scenario(
    out: Path,
    front: str,
    backends: dict[str, str],
    old: dict[str, Any],
    new: dict[str, Any],
    style: str,
) -> None:
    async with client() as http:
        # nginx spreads the pages over both backends, as mid-rollout
        pages: dict[str, Response] = {}
        for _ in range(8):
            page = await http.get(front + "/")
            assert page.status == 200 and page.headers["Server"].startswith("TornadoServer")
            label = label_of(page)
            assert pages.setdefault(label, page).body == page.body, "one backend, one page"
            if len(pages) == 2:
                break
        assert set(pages) == {"N", "N+1"}, "nginx should route pages to both backends"
        for label, origin in backends.items():
            assert (await http.get(origin + "/")).body == pages[label].body

        # both pages load completely through nginx, each with its own build's bytes
        loaded = {}
        for label, page in pages.items():
            crawled = await crawl(http, page_links(page.body.decode(), page.url))
            await assert_loads(http, crawled, "nginx")
            loaded[label] = crawled
        was, now = by_logical(loaded["N"]), by_logical(loaded["N+1"])
        assert set(was) - set(now) == set(REMOVED) and set(now) <= set(was)
        for logical, r in was.items():
            assert url_digest(r.url) == old[logical]["digest"], r.url
        for logical, r in now.items():
            assert url_digest(r.url) == new[logical]["digest"], r.url
            assert (r.url == was[logical].url) == (logical not in CHANGED), logical
        page_css = [u for u in page_links(pages["N"].body.decode(), front) if "app" in u]
        assert all(("?v=" in u) == (style == "query") for u in page_css), page_css
        v1, v2 = tree_files(1), tree_files(2)
        assert was["fonts/app-sans.woff2"].body == v1["fonts/app-sans.woff2"]
        assert (
            now["fonts/app-sans.woff2"].body
            == v2["fonts/app-sans.woff2"]
            != v1["fonts/app-sans.woff2"]
        )
        assert b"rgb(10, 20, 30)" in was["css/app.css"].body
        assert b"rgb(40, 50, 60)" in now["css/app.css"].body
        assert old["fonts/app-sans.woff2"]["hashed"].encode() in was["css/app.css"].body
        assert new["fonts/app-sans.woff2"]["hashed"].encode() in now["css/app.css"].body

        # straight from Tornado: each backend serves the other build's copies too
        for label, origin in backends.items():
            other = loaded["N+1" if label == "N" else "N"]
            await assert_loads(
                http, {u: await http.get(rebase(u, origin)) for u in other}, "TornadoServer"
            )

        # past the retention window: N's copies go, nothing of N+1's
        cli("clean", str(out), "--keep", "0", "--keep-for", "0")
        assert output_files(out) == on_disk(new)
        fresh = {u: await http.get(u) for u in loaded["N+1"]}
        await assert_loads(http, fresh, "nginx")
        await assert_loads(
            http,
            {u: await http.get(rebase(u, backends["N+1"])) for u in loaded["N+1"]},
            "TornadoServer",
        )
        gone = {p: r.url for p, r in was.items() if r.url not in loaded["N+1"]}
        assert set(gone) == {"css/app.css", "fonts/app-sans.woff2", *REMOVED}  # no admin.css
        for logical, url in gone.items():
            r = await settled(http, url)  # nginx: the stale policy
            assert_not_immutable(r)
            if logical in REMOVED:
                assert r.status == 404, str(r)
            else:  # a changed file's old digest: its current bytes, revalidated
                assert r.status == 200 and r.body == now[logical].body, str(r)
            # B loaded these copies while they were retained: whatever it sends now
            # (see test_a_cleaned_build_gets_the_stale_policy), never other bytes under
            # N's digests
            assert_promise(await http.get(rebase(url, backends["N+1"])))
            # A still renders build N's page, but its copies are gone: A cannot serve
            # them (retention must outlast the rollout)
            r = await http.get(rebase(url, backends["N"]))
            assert r.status == 404 and r.cache_control() == ["no-store"], str(r)
        # what N and N+1 share still loads from A
        kept = {u: await http.get(rebase(u, backends["N"])) for u in loaded["N"]}
        await assert_loads(
            http, {u: r for u, r in kept.items() if u not in gone.values()}, "TornadoServer"
        )


def test_a_cleaned_build_gets_the_stale_policy(workdir: Path) -> None:
    """A server running build N+1, asked for a digest of build N after N was cleaned
    away, answers as for any stale digest: the current bytes, ``no-cache``."""
    root, out = workdir / "static", workdir / "dist" / "static"
    write_tree(root, version=1)
    old = build(root, out, workdir / "manifest-N.json")
    write_tree(root, version=2)
    new = build(root, out, workdir / "manifest-N+1.json")
    app = make_app(root=str(root), output=str(out), url_style="filename", label="N+1")

    async def scenario() -> None:
        async with serve(app) as origin, client() as http:
            css, font = (f"{origin}{PREFIX}{old[p]['hashed']}" for p in CHANGED[1:])
            assert_immutable(await http.get(css))  # retained: N's own bytes
            cli("clean", str(out), "--keep", "0", "--keep-for", "0")
            assert not (out / old["fonts/app-sans.woff2"]["hashed"]).exists()
            r = await http.get(font)
            assert_not_immutable(r)
            assert r.status == 200, str(r)
            assert r.body == tree_files(2)["fonts/app-sans.woff2"]
            assert url_digest(font) != new["fonts/app-sans.woff2"]["digest"]

    asyncio.run(scenario())
