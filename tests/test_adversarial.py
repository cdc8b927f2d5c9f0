"""Ways found to break the immutable promise (or the root's boundary), one test each.

Written against a14c697, where every test here failed. Most were fixed (63db1fe,
4b9b921) while this file was being written (each says what the cause was); they stay
as regression tests. The ones still open are marked ``xfail(strict=True)``: fix the
product, see the test pass (strict xfail then fails the run), and remove the mark.
Each docstring gives the reproduction. `problems` (from the fuzz test) is the one
definition of an honest response.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import brotli
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.web import RequestHandler

import assetver.tornado
from assetver.hashing import digest_bytes
from assetver.output import CompileOptions, compile_output
from assetver.tornado import STATE_KEY

from .test_integrity_fuzz import problems
from .tornado_support import StaticTestCase

IMMUTABLE = "public, max-age=31536000, immutable"
SMALL = b"console.log('small');\n" * 60  # 1.3 KiB: from memory, with variants
BIG = b"console.log('big');\n" * 20000  # 400 KiB: streamed from the file, with variants
H = "0123456789abcdef"
SECRET = b"SECRET-OUTSIDE-THE-ROOT"


def honest(case: StaticTestCase, url: str, headers: dict[str, str] | None = None) -> HTTPResponse:
    """Fetches ``url`` and fails on any response `problems` finds wrong."""
    headers = dict(headers or {})
    response = case.fetch(url, headers=headers, decompress_response=False, raise_error=False)
    found = problems(url, "GET", headers, response, {})
    assert not found, "\n".join(found)
    return response


def overwrite(path: str, data: bytes) -> None:
    """Writes ``data`` into the existing file (same inode), as ``cp`` onto it does."""
    with open(path, "r+b") as f:
        f.write(data)
        f.truncate()


class OutputCase(StaticTestCase):
    output = True
    files = {"js/x.js": SMALL, "js/big.js": BIG}

    def entry(self, logical: str) -> Any:
        return self._app.settings[STATE_KEY].manifest[logical]

    def url(self, logical: str) -> str:
        return f"/static/{logical}?v={self.entry(logical).digest}"


# -- output: what the handler takes for a retained hashed copy ------------------------------


class VendoredHashedNameTest(OutputCase):
    """A tree with ``lib.js`` and a file whose name merely looks hashed
    (``lib.0123456789abcdef.js``, e.g. a vendored webpack build): any client asking for
    ``/static/lib.js?v=0123456789abcdef`` gets the *other* file as lib.js's retained
    copy, ``immutable``, with ``ETag: "0123456789abcdef"``."""

    files = {
        "lib.js": SMALL,
        f"lib.{H}.js": b"vendored\n" * 200,
        "big.js": BIG,
        f"big.{H}.js": BIG.upper(),
    }

    # Found against a14c697, fixed in 63db1fe. Cause then: tornado.py _serve_retained:
    # any existing file at hashed_path(logical, v) is taken for a retained hashed copy,
    # with no check that a build wrote it (the big one goes out immutable under a digest
    # it does not have; the small one is a 500, then immutable from memory)
    def test_other_file_is_not_a_retained_copy(self) -> None:
        for logical in ("big.js", "lib.js", "lib.js"):
            r = honest(self, f"/static/{logical}?v={H}")
            assert r.code != 500


class NonDigestQueryTest(OutputCase):
    """In an output, a ``v`` that is not a digest on a path the manifest does not have
    reaches `_serve_retained` unchecked: ``hashed_path("js/x", "js")`` is ``js/x.js``."""

    # Found against a14c697, fixed in 63db1fe. Cause then: tornado.py _decide: the
    # 'entry is None' branch calls _serve_retained without is_digest(requested); the
    # file found is served as CURRENT, immutable, ETag "js"
    def test_not_immutable_without_a_digest(self) -> None:
        r = self.fetch("/static/js/big?v=js", decompress_response=False)
        assert r.code == 404 or "immutable" not in r.headers.get("Cache-Control", ""), dict(
            r.headers.get_all()
        )

    # Found against a14c697, fixed in 63db1fe. Cause then: tornado.py _serve_output: the
    # file found does not hash to the 'digest' ("damaged output", 500) and Assets.load
    # has already put it in memory
    def test_no_server_error(self) -> None:
        for url in ("/static/js/x?v=js", "/static/js/?v=/x.js", "/static/js/x?v=js"):
            assert self.fetch(url).code < 500, url

    # Found against a14c697, fixed in 63db1fe. Cause then: tornado.py _serve_retained:
    # os.stat(path with NUL) raises ValueError, only OSError is caught: 500 with a
    # traceback
    def test_nul_in_v(self) -> None:
        for url in ("/static/nothere?v=%00", "/static/js/x.js.gz?v=a%00b"):
            assert self.fetch(url).code < 500, url

    # Found against a14c697, fixed in 63db1fe. Cause then: tornado.py _serve_retained:
    # os.stat(root + hashed_path(logical, v)) runs before any validation, so 403
    # (exists) vs 404 (does not) tells whether any file on the server exists:
    # /static/js/?v=./../x -> <output>/js/../../x
    def test_no_existence_oracle_outside_the_output(self) -> None:
        with open(os.path.join(self.tmp, "exists.txt"), "wb") as f:
            f.write(b"x")
        present = self.fetch("/static/js/?v=./../exists.txt").code
        absent = self.fetch("/static/js/?v=./../absent.txt").code
        assert present == absent and present in (403, 404), (present, absent)


# -- output: files changed after the build ----------------------------------------------


class HardLinkedCurrentFileTest(OutputCase):
    """``DIR/js/big.js`` is a hard link to ``DIR/js/big.<digest>.js``: writing into the
    current file in place (``cp new.js DIR/js/big.js``, an editor, ``>>``) changes the
    hashed copy, which then goes out ``immutable`` under a digest it no longer has."""

    # Found against a14c697, fixed in 63db1fe. Cause then: output.py _link hard-links
    # current files to hashed copies, and tornado.py _serve_output trusts a hashed copy
    # over MEMORY_FILE_MAX without any check
    def test_big_hashed_copy_changed_through_its_link(self) -> None:
        url = self.url("js/big.js")
        overwrite(os.path.join(self.out, "js/big.js"), BIG.upper())
        honest(self, url)

    # Found against a14c697, fixed in 63db1fe. Cause then: serving.py Assets.load puts
    # the bytes in memory before tornado.py _serve_output compares their digest: the
    # first request is a 500, every later one serves the wrong bytes from memory,
    # immutable, under the URL's digest
    def test_small_hashed_copy_changed_through_its_link(self) -> None:
        url = self.url("js/x.js")
        overwrite(os.path.join(self.out, "js/x.js"), SMALL.upper())
        for _ in range(2):
            r = self.fetch(url, decompress_response=False, raise_error=False)
            if r.code != 500:  # "damaged output" is the handler's answer today; fine
                found = problems(url, "GET", {}, r, {})
                assert not found, "\n".join(found)


class VariantTest(OutputCase):
    """Variants are read without any check: not that they exist, not where they point,
    not what they hold."""

    # Found against a14c697, fixed in 63db1fe. Cause then: serving.py Assets.load opens
    # every recorded variant and lets FileNotFoundError escape: a deleted .br makes
    # every request a 500, identity ones included (and a 404 for br clients of a big
    # file)
    def test_missing_variant_is_not_a_server_error(self) -> None:
        for logical in ("js/x.js", "js/big.js"):
            os.unlink(os.path.join(self.out, self.entry(logical).hashed + ".br"))
            for coding in ("identity", "br", "gzip"):
                r = honest(self, self.url(logical), {"Accept-Encoding": coding})
                assert r.code == 200, (logical, coding, r.code)

    # Found against a14c697, fixed in 63db1fe. Cause then: tornado.py _serve_output
    # validates the hashed copy's path but not its variants' (path + '.br' is opened as
    # is): a symlinked variant serves bytes from outside the output, immutable
    def test_symlinked_variant_is_not_followed_out(self) -> None:
        secret = os.path.join(self.tmp, "secret.txt")
        with open(secret, "wb") as f:
            f.write(SECRET)
        for logical in ("js/x.js", "js/big.js"):
            variant = os.path.join(self.out, self.entry(logical).hashed + ".br")
            os.unlink(variant)
            os.symlink(secret, variant)
            r = self.fetch(
                self.url(logical), headers={"Accept-Encoding": "br"}, decompress_response=False
            )
            assert SECRET not in r.body, (logical, dict(r.headers.get_all()))

    # Found against a14c697, fixed in 63db1fe. Cause then: variants are trusted by name:
    # the manifest records only their sizes. Record each variant's own XXH3 (of its
    # compressed bytes, no decoding) at build time and compare it where the identity
    # bytes are checked (Assets.load)
    def test_variant_changed_through_its_link(self) -> None:
        url = self.url("js/x.js")
        # cp of another build's variant onto the current one: a hard link of the hashed
        # variant, so that one changes too.
        overwrite(os.path.join(self.out, "js/x.js.gz"), gzip.compress(b"alert('other')"))
        honest(self, url, {"Accept-Encoding": "gzip"})


class PrunedThenRestoredTest(StaticTestCase):
    """Found by the fuzz test: ``assetver build static -o out`` after a stylesheet or
    script was deleted, its build pruned (``--keep 0 --keep-for 0`` here; by default
    after three builds and an hour), and the file restored with the same bytes (``git
    revert``). The build crashes (FileNotFoundError traceback, exit 1) because its
    hashed copy is never written again; every later build then exits 0 saying "0
    written", and the output's manifest lacks the file for good: its URL is a 404."""

    files = {"app.js": SMALL, "logo.svg": b"<svg/>\n"}

    # Found by the fuzz test against a14c697 (still there in 63db1fe), fixed in 4b9b921.
    # Cause then: output.py _rewrite: merkle.compile_tree(reuse=state.outputs) reuses the
    # state kept for app.js's digest (done.data None: no write_copy), _repair_copies runs
    # only after an interrupted build and skips rewritable files, so nothing writes the
    # pruned hashed copy; and build_cached saved the source cache before the crash, so the
    # next build takes the no-change shortcut. Check that every reused output's hashed copy
    # exists (else rewrite it), and prune the state of pruned digests
    def test_restored_file_is_compiled_again(self) -> None:
        options = CompileOptions.make(keep=0, keep_for=0)
        path = os.path.join(self.static, "app.js")
        compile_output(self.static, self.out, settings=options)
        os.unlink(path)
        compile_output(self.static, self.out, settings=options)
        with open(path, "wb") as f:
            f.write(SMALL)
        for _ in range(2):
            try:
                compiled = compile_output(self.static, self.out, settings=options)
            except FileNotFoundError as e:
                raise AssertionError(f"the build crashed: {e!r}") from e
            entry = compiled.manifest.get("app.js")
            assert entry is not None, "app.js is missing from the output's manifest"
            with open(os.path.join(self.out, entry.hashed), "rb") as f:
                assert f.read() == SMALL


class ClaimedVariantNameTest(StaticTestCase):
    """A file of the tree named like another file's hashed variant
    (``app.<digest>.css.br``) becomes that name's current file in the output, written
    over the variant the build made: brotli clients of ``app.css?v=<digest>`` then get
    its bytes, ``immutable``, ``ETag "<digest>.br"``. (A file named like an earlier
    digest's hashed copy, ``app.<old>.css``, overwrites that retained copy the same
    way.) Either the build refuses the tree, or the variant is the build's."""

    files = {"app.css": b"body { color: red }\n" * 100}

    # Found against a14c697, fixed in 63db1fe. Cause then: output.py _check_clashes only
    # compares identity hashed names with the tree's paths; names of variants (and of
    # retained copies) can be claimed by a file of the tree, and _current_files links it
    # over them. Reserve every name split_hashed() parses (with or without a variant
    # suffix) for the output
    def test_variant_is_the_builds(self) -> None:
        css = self.files["app.css"]
        claimed = f"app.{digest_bytes(css)}.css.br"
        with open(os.path.join(self.static, claimed), "wb") as f:
            f.write(brotli.compress(b"/* other */"))
        try:
            compiled = compile_output(self.static, self.out)
        except assetver.AssetverError as e:
            assert claimed in str(e)
            return
        entry = compiled.manifest["app.css"]
        assert "br" in entry.variants
        with open(os.path.join(self.out, entry.hashed + ".br"), "rb") as f:
            assert brotli.decompress(f.read()) == css, "the output's variant is another file"


# -- root: conditional requests ---------------------------------------------------------


class IfModifiedSinceTest(StaticTestCase):
    """A 304 with ``immutable`` tells a cache to keep what it has for a year. A cache
    that revalidates by date alone (If-Modified-Since, no If-None-Match) gets that for
    bytes the server itself sent under the same URL as unproven:

    1. ``app.js?v=D`` (D: the bytes B1) is edited in place to B2 (production, or debug
       within the debounce): the server sends B2, ``no-cache``, Last-Modified T2.
    2. The old version is put back with its old mtime (``cp -p``, ``rsync -a``, or any
       restore within the same second): the file is proven to be D again.
    3. Revalidating with ``If-Modified-Since: T2`` gets 304 ``immutable``: the cache
       keeps B2 under ``?v=D`` for a year.
    """

    files = {"app.js": SMALL}

    # Found against a14c697, fixed in 63db1fe. Cause then: Tornado's should_return_304
    # falls back to If-Modified-Since; for an immutable response only an If-None-Match
    # naming the digest proves what the client holds. tornado.py should override
    # should_return_304 to ignore If-Modified-Since when the response is immutable (or
    # send Last-Modified only for CURRENT bytes)
    def test_304_immutable_only_for_the_digest_etag(self) -> None:
        path = os.path.join(self.static, "app.js")
        old = os.stat(path)
        url = f"/static/app.js?v={digest_bytes(SMALL)}"
        assert honest(self, url).headers["Cache-Control"] == IMMUTABLE
        overwrite(path, SMALL.upper())
        unproven = honest(self, url)
        assert unproven.headers["Cache-Control"] == "no-cache" and unproven.body != SMALL
        overwrite(path, SMALL)
        os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))
        r = self.fetch(url, headers={"If-Modified-Since": unproven.headers["Last-Modified"]})
        assert not (r.code == 304 and r.headers["Cache-Control"] == IMMUTABLE), (
            "304 immutable confirms the unproven bytes the client holds",
            dict(r.headers.get_all()),
        )


# -- root: files changed while they are served ------------------------------------------


class TruncatedWhileStreamedTest(StaticTestCase):
    """A big file truncated while it is streamed (a save that truncates first, a log
    rotated in place): the response is short, which is right, but Tornado logs
    ``Uncaught exception ... HTTPOutputError: Tried to write N bytes less than
    Content-Length`` with a traceback, where the grown-file case is cut short on
    purpose with one warning."""

    files = {"huge.bin": bytes(range(256)) * (96 * 1024)}  # 24 MiB: more than the sockets hold

    # Found against a14c697, fixed in 63db1fe. Cause then: tornado.py _stream: on a
    # short read (pread returns b'') it breaks out without _cut_short, so Tornado's
    # finish() raises HTTPOutputError; treat an early EOF like a changed key (warn, cut
    # short)
    def test_truncation_is_cut_short_without_a_traceback(self) -> None:
        path = os.path.join(self.static, "huge.bin")
        port = self.get_http_port()
        received = [0]
        truncate_now = threading.Event()

        def slow_client() -> None:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(b"GET /static/huge.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                received[0] += len(s.recv(65536))
                time.sleep(0.3)  # stop reading: the server blocks in flush()
                truncate_now.set()
                time.sleep(0.2)
                while chunk := s.recv(1 << 20):
                    received[0] += len(chunk)

        thread = threading.Thread(target=slow_client)

        async def run() -> None:
            thread.start()
            deadline = time.monotonic() + 15
            while thread.is_alive() and time.monotonic() < deadline:
                if truncate_now.is_set():
                    os.truncate(path, 1000)
                    truncate_now.clear()
                await asyncio.sleep(0.01)

        errors: list[logging.LogRecord] = []

        class Catch(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                if record.levelno >= logging.ERROR:
                    errors.append(record)

        catch = Catch()
        logging.getLogger("tornado").addHandler(catch)
        try:
            self.io_loop.run_sync(run, timeout=20)
        finally:
            logging.getLogger("tornado").removeHandler(catch)
            thread.join(5)
        assert received[0] < 24 * 1024 * 1024  # cut short, as it must be
        assert not errors, [e.getMessage()[:200] for e in errors]


SWAPPER = """
import os, sys, threading
root, outside, names = sys.argv[1], sys.argv[2], sys.argv[3:]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
for name in names:
    os.symlink(outside, os.path.join(root, name + "_lnk"))
while not stop.is_set():
    for name in names:
        real = os.path.join(root, name)
        os.rename(real, real + "_dir")
        os.rename(real + "_lnk", real)
        os.rename(real, real + "_lnk")
        os.rename(real + "_dir", real)
"""
"""Swaps each directory ``root/NAME`` with a symlink to ``outside`` until stdin closes."""


DEEP = "a/" * 150
SWAPPED = ("d0", "d1", "d2", "d3")


class SymlinkSwapRaceTest(StaticTestCase):
    """A directory of the root swapped with a symlink to a directory outside it (a
    deploy that links ``current -> releases/N``, or an attacker with write access to
    the tree), while requests run. The handler resolves the path (``realpath``), then
    opens it by name: a swap in between opens the file outside the root. Deep paths
    (``d/a/a/.../x.txt``) widen that window, so the race is won within a few requests.
    The same swaps make ``os.path.realpath`` itself raise (ENOENT, EINVAL): a 500."""

    DEEP = DEEP
    NAMES = SWAPPED
    files = {**{f"{n}/{DEEP}x.txt": b"inside\n" * 10 for n in SWAPPED}, "big/y.bin": b"i" * 400_000}

    def app_settings(self) -> dict[str, Any]:
        return {"assetver_memory": 0}  # every request resolves and opens the file

    def race(self, stop_when: Any, seconds: float = 2.5) -> dict[str, int]:
        outside = os.path.join(self.tmp, "outside")
        os.makedirs(os.path.join(outside, self.DEEP))
        with open(os.path.join(outside, self.DEEP, "x.txt"), "wb") as f:
            f.write(SECRET)
        with open(os.path.join(outside, "y.bin"), "wb") as f:
            f.write(SECRET * 20_000)
        # The swaps run in another process, as a deploy or an attacker would: truly in
        # parallel with the server, not at the mercy of its GIL.
        swapper = subprocess.Popen(
            [sys.executable, "-c", SWAPPER, self.static, outside, *self.NAMES, "big"],
            stdin=subprocess.PIPE,
        )
        seen = {"leaks": 0, "errors": 0, "responses": 0}

        async def client(url: str) -> None:
            http = AsyncHTTPClient()
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not stop_when(seen):
                r = await http.fetch(self.get_url(url), raise_error=False)
                seen["responses"] += 1
                seen["leaks"] += SECRET in (r.body or b"")
                seen["errors"] += r.code >= 500

        urls = [f"/static/{n}/{self.DEEP}x.txt" for n in self.NAMES] + ["/static/big/y.bin"]

        async def main() -> None:
            await asyncio.gather(*(client(u) for u in urls * 2))

        try:
            self.io_loop.run_sync(main, timeout=seconds + 10)
        finally:
            assert swapper.stdin is not None
            swapper.stdin.close()  # tells it to stop
            swapper.wait(10)
        return seen

    # Found against a14c697, fixed in 63db1fe. Cause then: tornado.py _validate/_inside
    # resolve with realpath, then _open(path) opens by name (TOCTOU). Check the opened
    # descriptor instead: after os.open, realpath('/proc/self/fd/N') (or fstat against a
    # dirfd walk with O_NOFOLLOW / openat2 RESOLVE_BENEATH) must be inside the root
    def test_never_serves_outside_the_root(self) -> None:
        seen = self.race(lambda s: s["leaks"] > 0)
        assert seen["leaks"] == 0, seen

    # Found against a14c697, fixed in 63db1fe. Cause then: tornado.py _inside (and
    # Tornado's own validate_absolute_path) call os.path.realpath, which raises OSError
    # when a component changes under it; catch OSError there and answer 404
    def test_no_server_error_while_swapped(self) -> None:
        seen = self.race(lambda s: s["errors"] > 0)
        assert seen["errors"] == 0, seen


# -- subclasses and settings ------------------------------------------------------------


class Themed(assetver.tornado.StaticFileHandler):
    """Serves every path from the root's ``theme/`` directory (get_absolute_path is one
    of Tornado's documented override points)."""

    @classmethod
    def get_absolute_path(cls, root: str, path: str) -> str:
        return os.path.abspath(os.path.join(root, "theme", path))


class GetAbsolutePathOverrideTest(StaticTestCase):
    files = {"a.css": b"a{}" * 10, "theme/a.css": b"b{}" * 10}

    def app_settings(self) -> dict[str, Any]:
        return {"static_handler_class": Themed}

    # Found against a14c697, fixed in 63db1fe. Cause then: tornado.py
    # _decide/_serve_root rebuild the path from the logical path (os.path.join(root,
    # logical)) and ignore the absolute_path get_absolute_path made; _overrides() should
    # step aside for get_absolute_path too
    def test_override_is_honoured(self) -> None:
        r = self.fetch("/static/a.css")
        assert r.body == b"b{}" * 10, r.body


class IncludeHiddenTest(StaticTestCase):
    files = {".well-known/assetlinks.json": b"[]\n", "a.css": b"a{}"}

    def app_settings(self) -> dict[str, Any]:
        return {"assetver_include_hidden": True}

    # Found against a14c697, fixed in 63db1fe. Cause then: tornado.py parse_url_path and
    # _inside refuse every is_hidden() path whatever assetver_include_hidden says, so
    # static_url() of a file the manifest lists (.well-known/...) is a 404; refuse only
    # is_internal() names then
    def test_listed_hidden_file_is_served(self) -> None:
        url = assetver.tornado.StaticFileHandler.make_static_url(
            self._app.settings, ".well-known/assetlinks.json"
        )
        assert "?v=" in url
        r = self.fetch(url)
        assert r.code == 200 and r.body == b"[]\n", (url, r.code)


class UrlHostIncludeHostTest(StaticTestCase):
    """``static_url(path, include_host=True)`` in a template (Tornado's documented
    keyword) with ``assetver_url_host`` set: one origin, the CDN's. (Handler code calling
    ``self.static_url(..., include_host=True)`` reaches Tornado's own method, which puts a
    second origin in front: the README says not to combine them.)"""

    files = {"a.css": b"a{}"}

    def handlers(self) -> list[Any]:
        class Url(RequestHandler):
            def get(self) -> None:
                self.write(self.render_string_from('{{ static_url("a.css", include_host=True) }}'))

            def render_string_from(self, text: str) -> bytes:
                from tornado.template import Template

                return Template(text).generate(**self.get_template_namespace())

        return [("/url", Url)]

    def app_settings(self) -> dict[str, Any]:
        return {"assetver_url_host": "https://cdn.example.com"}

    def test_one_origin(self) -> None:
        url = self.fetch("/url").body.decode()
        assert url.startswith("https://cdn.example.com/static/a.css?v="), url
