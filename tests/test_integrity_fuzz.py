"""The immutable promise under random histories, in every serving mode.

A hypothesis state machine edits a small static tree (same size and different size,
in place and by rename, truncation, deletion, restores of earlier versions with their
old mtimes, symlink swaps inside and out of the root), delivers rebuilds late or in
order (debug), deploys new builds into a served output (production), and requests
every kind of URL with Range, HEAD, If-None-Match and Accept-Encoding variations. Every
response is checked by `problems`: an ``immutable`` response, or one whose ETag is made
from a digest, must carry exactly the bytes of that digest (decoded, sliced for a 206),
nothing is ever a 5xx, and no byte from outside the root is served.

Debug deliveries are driven by the test (the rebuild `assetver.startup.watch` runs,
queued and delivered with `Assets.set_manifest`), so every example is reproducible; the
real watcher is exercised by the concurrent load test at the end, which counts wrong
responses while a writer thread saves files every few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import brotli
import pytest
import zstandard
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.simple_httpclient import HTTPStreamClosedError

import assetver.tornado
from assetver import startup
from assetver.build import build
from assetver.hashing import digest_bytes
from assetver.output import CompileOptions, compile_output
from assetver.statkey import read_stamp
from assetver.tornado import STATE_KEY
from assetver.urls import hashed_path, is_digest, split_hashed

from .tornado_support import StaticTestCase

PRUNED_COPY_NOT_REWRITTEN = False
"""The bug of `test_adversarial.PrunedThenRestoredTest`, found by this test (fixed in
4b9b921): a file deleted, pruned and restored with the same bytes never got its hashed
copy back (the compile raised FileNotFoundError, or its manifest named a missing copy).
True tolerates it, to test the rest on a tree that still has it."""

PREFIX = "/static/"
SECRET = b"SECRET-OUTSIDE-THE-ROOT"
DOTFILE = b"SECRET-DOTFILE"
DIGEST_ETAG = re.compile(r'"([0-9a-f]{16})(?:\.([a-z]+))?"\Z')
CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)\Z")

# -- the check every response goes through ---------------------------------------------


def decode(body: bytes, coding: str | None) -> bytes:
    """The identity bytes of a body sent with ``Content-Encoding: coding``."""
    if coding is None:
        return body
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "br":
        return bytes(brotli.decompress(body))
    if coding == "zstd":
        return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(body))
    raise AssertionError(f"unknown Content-Encoding {coding!r}")


def url_digest(url: str) -> str | None:
    """The digest a URL names: in its file name (filename style) or its ``v`` argument."""
    parts = urlsplit(url)
    if parts.path.startswith(PREFIX):
        split = split_hashed(unquote(parts.path[len(PREFIX) :]))
        if split is not None:
            return split[1]
    elif not parts.path.startswith("/app.js"):
        return None  # a route to another directory: no URL there names a digest
    values = parse_qs(parts.query, keep_blank_values=True).get("v")
    return values[-1] if values else None


def problems(
    url: str,
    method: str,
    sent: dict[str, str],
    response: HTTPResponse,
    known: dict[str, bytes],
    *,
    transformed: bool = False,
    all_known: bool = True,
) -> list[str]:
    """What is wrong with ``response`` to ``method url`` (request headers ``sent``);
    ``known`` maps each digest to its bytes. An empty list: the promise holds.
    ``transformed``: the app has ``compress_response``, so Tornado may gzip a body whose
    ETag names the identity bytes (as stock Tornado does). ``all_known``: every version
    the server may have read is in ``known``; False under concurrent writes, where a
    file may be read half-written, so a 206 or HEAD labelled with a digest the test never
    saw cannot be checked (a full 200 is always checked, by hashing its body)."""
    found: list[str] = []
    code = response.code
    headers = response.headers
    body = response.body or b""
    where = f"{method} {url} {sent} -> {code} {dict(headers.get_all())}"
    if code >= 500 or code == 599:
        found.append(f"server error: {where}")
        return found
    if SECRET in body or DOTFILE in body:
        found.append(f"served a byte from outside the root or a dotfile: {where}")
    cache_control = headers.get("Cache-Control", "")
    immutable = "immutable" in cache_control
    in_url = url_digest(url)
    match = DIGEST_ETAG.match(headers.get("Etag", ""))
    labelled = match.group(1) if match else None
    coding = headers.get("Content-Encoding")
    claims = set()
    if immutable:
        if code not in (200, 206, 304):
            found.append(f"immutable on a {code}: {where}")
        if in_url is None or not is_digest(in_url):
            found.append(f"immutable for a URL naming no digest: {where}")
        else:
            claims.add(in_url)
    if labelled is not None:
        claims.add(labelled)
        suffix = match.group(2) if match else None
        by_tornado = transformed and suffix is None and coding == "gzip"
        if code in (200, 206) and suffix != coding and not by_tornado:
            found.append(f"ETag coding {suffix} but Content-Encoding {coding}: {where}")
    if code == 200 and method == "GET":
        try:
            identity = decode(body, coding)
        except Exception as e:  # a body that does not decode is as wrong as wrong bytes
            found.append(f"body does not decode ({e!r}): {where}")
            return found
        actual = digest_bytes(identity)
        found += [f"body is {actual}, labelled {d}: {where}" for d in sorted(claims) if d != actual]
    elif code == 206:
        span = CONTENT_RANGE.match(headers.get("Content-Range", ""))
        if span is None or (coding is not None and not (transformed and coding == "gzip")):
            found.append(f"206 with coding {coding} or no Content-Range: {where}")
        elif claims:
            start, end, total = map(int, span.groups())
            part = decode(body, coding) if body else body
            for d in sorted(claims):
                data = known.get(d)
                if data is None and not all_known:
                    continue
                expected = data[start : end + 1] if method == "GET" and data else b""
                if data is None or len(data) != total or expected != part:
                    found.append(f"206 bytes {start}-{end} are not those of {d}: {where}")
    elif code == 200 and method == "HEAD" and coding is None:
        length = int(headers.get("Content-Length", "-1"))
        for d in sorted(claims):
            if d not in known and not all_known:
                continue
            if d not in known or len(known[d]) != length:
                found.append(f"HEAD Content-Length {length} is not that of {d}: {where}")
    elif code == 304 and immutable and sent.get("If-None-Match") != "*" and labelled != in_url:
        found.append(f"304 confirms {labelled} for a year under {in_url}: {where}")
    return found


# -- the server under test ---------------------------------------------------------------


def _no_watcher() -> None:
    """Stands in for the watcher's stop function: deliveries are driven by the test."""


class Case(StaticTestCase):
    """A `StaticTestCase` set up per example: one mode, one URL style, one stale policy."""

    __test__ = False  # set up by hand, not collected

    def __init__(
        self,
        mode: str,
        style: str,
        stale: str,
        files: dict[str, bytes],
        *,
        manifest: bool = False,
        before_start: Callable[[], None] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__("runTest")
        self.mode = mode
        self.files = files
        self.output = mode.startswith("output")
        self.compress = "br:1,gzip:1,zstd:1"
        self.style, self.stale = style, stale
        self.manifest = manifest
        self.before_start = before_start
        self.extra = extra or {}

    def runTest(self) -> None:  # pragma: no cover - never run as a test
        pass

    def get_app(self) -> Any:
        if self.manifest:
            # `assetver build static -m manifest.json` in CI, then the tree changes
            # before the server starts (a checkout, a hot fix, a bad deploy).
            assetver.build_manifest(self.static).dump(os.path.join(self.tmp, "manifest.json"))
        if self.before_start is not None:
            self.before_start()
        return super().get_app()

    def app_settings(self) -> dict[str, Any]:
        extra: dict[str, Any] = dict(self.extra)
        if self.mode.endswith("debug"):
            extra.update(debug=True, autoreload=False)
        if self.manifest:
            extra["assetver_manifest"] = os.path.join(self.tmp, "manifest.json")
        return {"assetver_url_style": self.style, "assetver_stale": self.stale, **extra}

    @property
    def assets(self) -> Any:
        return self._app.settings[STATE_KEY]

    def static_url(self, logical: str) -> str:
        return assetver.tornado.StaticFileHandler.make_static_url(self._app.settings, logical)

    def handlers(self) -> list[Any]:
        """Extra routes as Tornado's guide has them: a file of the root at the top
        (``/app.js``), and another directory (``/img/``, a subdirectory of the root, so
        not the app's root: served revalidated, never under a digest)."""
        cls = self.extra.get("static_handler_class", assetver.tornado.StaticFileHandler)
        return [
            (r"/(app\.js)", cls, {"path": self.static}),
            (r"/img/(.*)", cls, {"path": os.path.join(self.static, "img")}),
        ]


def small_versions(seed: int) -> list[bytes]:
    """Versions of a small text file (memory path): two pairs of equal sizes."""
    base = [f"console.log({i}, 'version {seed}');\n".encode() for i in range(40)]
    a = b"".join(base)
    return [a, a.replace(b"version", b"VERSION"), a + b"//more\n", a[:-300], a.upper()]


def big_versions(compressible: bool) -> list[bytes]:
    """Versions of a file over the memory limit (streamed from the file)."""
    rng = random.Random(7)
    size = 300 * 1024
    base = (
        bytes(rng.randrange(256) for _ in range(4096)) * (size // 4096)
        if compressible
        else rng.randbytes(size)
    )
    flipped = bytes([base[0] ^ 0xFF]) + base[1:]
    return [base, flipped, base + b"tail", base[: size - 5000], bytes(reversed(base))]


class Subclass(assetver.tornado.StaticFileHandler):
    """An app's subclass using Tornado's documented hooks."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("X-App", "1")

    def get_content_type(self) -> str:
        return "text/x-app" if self.absolute_path.endswith(".svg") else super().get_content_type()


FILES = ("app.js", "img/logo.svg", "big.bin", "img/a b+é.txt")


@dataclass
class History:
    """Everything the test knows: each digest's bytes, and each file's versions."""

    known: dict[str, bytes] = field(default_factory=dict)
    digests: dict[str, list[str]] = field(default_factory=dict)
    mtimes: dict[str, list[int]] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)

    def saw(self, logical: str, data: bytes) -> str:
        digest = digest_bytes(data)
        self.known[digest] = data
        seen = self.digests.setdefault(logical, [])
        if digest not in seen:
            seen.append(digest)
        return digest


class Integrity(RuleBasedStateMachine):
    """One server in one mode; rules edit, rebuild, deliver and request."""

    mode = "root-production"

    def __init__(self) -> None:
        super().__init__()
        self.case: Case | None = None
        self.history = History()
        self.pending: deque[tuple[Any, dict[str, bytes]]] = deque()
        self.cache: Any = None
        self.transformed = False

    # -- set-up ----------------------------------------------------------------------

    @initialize(
        style=st.sampled_from(["query", "filename"]),
        stale=st.sampled_from(["serve", "redirect", "404"]),
        manifest=st.booleans(),
        early=st.lists(st.tuples(st.sampled_from(FILES), st.integers(0, 4)), max_size=2),
        hooks=st.sampled_from(["none", "subclass", "compress_response"]),
    )
    def start(
        self,
        style: str,
        stale: str,
        manifest: bool,
        early: list[tuple[str, int]],
        hooks: str,
    ) -> None:
        self.versions = {
            "app.js": small_versions(1),
            "img/logo.svg": [b"<svg xmlns='http://www.w3.org/2000/svg'/>\n" * 3, b"<svg/>" * 20],
            "big.bin": big_versions(compressible=self.mode == "output-production"),
            "img/a b+é.txt": [b"plain text\n" * 120, b"PLAIN TEXT\n" * 120, b"short\n"],
        }
        files = {logical: versions[0] for logical, versions in self.versions.items()}
        files[".env"] = DOTFILE
        self.transformed = hooks == "compress_response"
        extra: dict[str, Any] = {
            "none": {},
            "subclass": {"static_handler_class": Subclass},
            "compress_response": {"compress_response": True},
        }[hooks]
        # A prebuilt manifest (root modes), with edits made after it was built and
        # before the server started.
        manifest = manifest and self.mode.startswith("root")

        def before_start() -> None:
            for logical, version in early:
                self.edit_in_place(logical, version)

        case = Case(
            self.mode,
            style,
            stale,
            files,
            manifest=manifest,
            before_start=before_start if manifest else None,
            extra=extra,
        )
        self.case = case
        case.setUp()
        assets = case.assets
        if assets.config.debug:
            assets.stop_watching = _no_watcher
        self.cache = assets.cache
        with open(os.path.join(case.tmp, "secret.txt"), "wb") as f:
            f.write(SECRET)
        for logical, data in files.items():
            self.history.saw(logical, data)
            with open(self.path(logical), "rb") as f:
                self._record(logical, f.read())
        if case.output:
            self._learn(assets.manifest)

    def teardown(self) -> None:
        if self.case is not None:
            self.case.tearDown()
            self.case.doCleanups()

    def path(self, logical: str) -> str:
        assert self.case is not None
        return os.path.join(self.case.static, logical)

    def _learn(self, manifest: Any) -> None:
        """Learns the bytes of every hashed copy of an output (what it serves)."""
        assert self.case is not None
        for logical, entry in manifest.items():
            try:
                with open(os.path.join(self.case.out, entry.hashed), "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                if PRUNED_COPY_NOT_REWRITTEN:
                    continue  # served as a 404, which the checks accept
                raise
            assert digest_bytes(data) == entry.digest, f"{entry.hashed} is not its digest"
            self.history.saw(logical, data)

    # -- edits -----------------------------------------------------------------------

    def _record(self, logical: str, data: bytes) -> None:
        self.history.saw(logical, data)
        with contextlib.suppress(OSError):
            self.history.mtimes.setdefault(logical, []).append(
                os.stat(self.path(logical)).st_mtime_ns
            )

    def _prepare(self, logical: str) -> str:
        path = self.path(logical)
        if os.path.islink(path) or not os.path.exists(path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb"):
                pass
        return path

    @rule(logical=st.sampled_from(FILES), version=st.integers(0, 4))
    def edit_in_place(self, logical: str, version: int) -> None:
        data = self.versions[logical][version % len(self.versions[logical])]
        with open(self._prepare(logical), "r+b") as f:
            f.write(data)
            f.truncate()
        self._record(logical, data)

    @rule(logical=st.sampled_from(FILES), version=st.integers(0, 4))
    def save_by_rename(self, logical: str, version: int) -> None:
        data = self.versions[logical][version % len(self.versions[logical])]
        path = self.path(logical)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temp = os.path.join(os.path.dirname(path), ".save.tmp")
        with open(temp, "wb") as f:
            f.write(data)
        os.replace(temp, path)
        self._record(logical, data)

    @rule(logical=st.sampled_from(FILES), version=st.integers(0, 4), which=st.integers(0, 3))
    def restore_with_old_mtime(self, logical: str, version: int, which: int) -> None:
        """``cp -p`` / ``rsync -a`` of an earlier version: its bytes and an old mtime."""
        self.edit_in_place(logical, version)
        mtimes = self.history.mtimes[logical]
        ns = mtimes[which % len(mtimes)]
        os.utime(self.path(logical), ns=(ns, ns))

    @rule(logical=st.sampled_from(FILES), half=st.booleans())
    def truncate(self, logical: str, half: bool) -> None:
        path = self.path(logical)
        if os.path.isfile(path) and not os.path.islink(path):
            size = os.path.getsize(path)
            os.truncate(path, size // 2 if half else 0)
            with open(path, "rb") as f:
                self._record(logical, f.read())

    @rule(logical=st.sampled_from(FILES))
    def delete(self, logical: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(logical))

    @rule(logical=st.sampled_from(FILES), to=st.sampled_from([*FILES, "outside", ".env"]))
    def symlink_swap(self, logical: str, to: str) -> None:
        """Replaces the file by a symlink, atomically: to another file of the root, to
        a dotfile, or out of the root."""
        assert self.case is not None
        path = self.path(logical)
        if to == "outside":
            points = os.path.join(self.case.tmp, "secret.txt")
        else:
            points = os.path.relpath(self.path(to), os.path.dirname(path))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        temp = os.path.join(os.path.dirname(path), ".link.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        os.symlink(points, temp)
        os.replace(temp, path)

    @rule(ms=st.sampled_from([1, 5, 20]))
    def wait(self, ms: int) -> None:
        """Lets the clock tick, so the racy rule sees old and new files both ways."""
        time.sleep(ms / 1000)

    # -- rebuilds and deliveries -----------------------------------------------------

    def _debug(self) -> bool:
        return self.mode.endswith("debug")

    @precondition(lambda self: self._debug())
    @rule()
    def rebuild(self) -> None:
        """What the watcher's rebuild makes; delivered later by `deliver`."""
        assert self.case is not None
        assets = self.case.assets
        if self.case.output:
            try:
                compiled = compile_output(
                    assets.config.root, assets.config.output, options=assets.config.options
                )
            except assetver.AssetverError:
                return  # the watcher logs it and tries again on the next change
            self._learn(compiled.manifest)
            self.pending.append((compiled.manifest, {}))
            return
        root = assets.config.root
        result = build(
            root, options=assets.config.options, previous=self.cache, stamp=read_stamp(root)
        )
        self.cache = result.cache
        self.pending.append((result.manifest, startup.proofs(result)))

    @precondition(lambda self: bool(self.pending))
    @rule(latest=st.booleans())
    def deliver(self, latest: bool) -> None:
        """The watcher's delivery reaching the event loop (the oldest, or all of them)."""
        assert self.case is not None
        while self.pending:
            manifest, proofs = self.pending.popleft()
            self.case.assets.set_manifest(manifest, proofs)
            if not latest:
                break

    @precondition(lambda self: self.mode == "output-production")
    @rule(keep=st.sampled_from([0, 1, 3]), keep_for=st.sampled_from([0.0, 3600.0]))
    def deploy(self, keep: int, keep_for: float) -> None:
        """``assetver build ROOT -o DIR`` again while the server runs on DIR's old
        manifest (a rolling deploy), pruning as told."""
        assert self.case is not None
        assets = self.case.assets
        try:
            compiled = compile_output(
                assets.config.root,
                assets.config.output,
                settings=CompileOptions.make(
                    compress=self.case.compress, keep=keep, keep_for=keep_for
                ),
            )
        except assetver.AssetverError:
            return
        except FileNotFoundError:
            if PRUNED_COPY_NOT_REWRITTEN:
                return
            raise
        self._learn(compiled.manifest)

    # -- requests --------------------------------------------------------------------

    def _url(self, logical: str, kind: str, pick: int) -> str:
        assert self.case is not None
        if kind == "current":
            return self.case.static_url(logical)
        if kind == "plain":
            return PREFIX + logical
        if kind == "forged":
            return f"{PREFIX}{logical}?v={['zz', '', '0123', 'G' * 16][pick % 4]}"
        if kind == "random":
            return f"{PREFIX}{logical}?v={digest_bytes(str(pick).encode())}"
        seen = self.history.digests.get(logical) or [digest_bytes(b"")]
        digest = seen[pick % len(seen)]
        if kind == "old-filename":
            return PREFIX + hashed_path(logical, digest)
        return f"{PREFIX}{logical}?v={digest}"

    def fetch(self, url: str, method: str, headers: dict[str, str]) -> None:
        """One request, checked."""
        assert self.case is not None
        response = self.case.fetch(
            url,
            method=method,
            headers=headers,
            decompress_response=False,
            follow_redirects=False,
            raise_error=False,
        )
        found = problems(
            url, method, headers, response, self.history.known, transformed=self.transformed
        )
        assert not found, "\n".join(found)
        if "Etag" in response.headers:
            self.history.etags[url] = response.headers["Etag"]
        immutable = "immutable" in response.headers.get("Cache-Control", "")
        event(f"{response.code}{' immutable' if immutable else ''}")

    def headers(self, url: str, span: str | None, coding: str | None, cond: str | None) -> Any:
        headers: dict[str, str] = {}
        if span is not None:
            headers["Range"] = span
        if coding is not None:
            headers["Accept-Encoding"] = coding
        last = self.history.etags.get(url)
        if cond == "last" and last is not None:
            headers["If-None-Match"] = last
        elif cond == "random":
            headers["If-None-Match"] = f'"{digest_bytes(url.encode())}"'
        elif cond == "*":
            headers["If-None-Match"] = "*"
        elif cond == "both" and last is not None:
            headers["If-None-Match"] = last
            headers["If-Modified-Since"] = "Fri, 01 Jan 2100 00:00:00 GMT"
        return headers

    @rule(
        logical=st.sampled_from([*FILES, ".env", "missing.js"]),
        kind=st.sampled_from(["current", "current", "old", "old-filename", "plain", "forged"]),
        pick=st.integers(0, 7),
        variants=st.lists(
            st.tuples(
                st.sampled_from(["GET", "GET", "HEAD"]),
                st.sampled_from([None, None, "bytes=0-9", "bytes=7-", "bytes=-7", "bytes=0-0"]),
                st.sampled_from(
                    [None, "gzip", "br", "zstd", "br;q=0.5, gzip", "identity", "*", "gzip;q=0"]
                ),
                st.sampled_from([None, None, "last", "random", "*", "both"]),
            ),
            min_size=1,
            max_size=4,
        ),
    )
    def request(
        self,
        logical: str,
        kind: str,
        pick: int,
        variants: list[tuple[str, str | None, str | None, str | None]],
    ) -> None:
        """One URL, asked for in up to four ways (method, Range, Accept-Encoding,
        If-None-Match)."""
        url = quote(self._url(logical, kind, pick), safe="/?=&%")
        for method, span, coding, cond in variants:
            self.fetch(url, method, self.headers(url, span, coding, cond))

    @rule(
        route=st.sampled_from(["/app.js", "/img/logo.svg", "/img/a%20b%2B%C3%A9.txt"]),
        digest_of=st.sampled_from(["app.js", "img/logo.svg", "img/a b+é.txt"]),
        pick=st.integers(0, 7),
        coding=st.sampled_from([None, "br, gzip"]),
    )
    def request_other_route(
        self, route: str, digest_of: str, pick: int, coding: str | None
    ) -> None:
        """The extra routes, with or without a digest in ``v``. On ``/img/`` nothing may
        be immutable (the URL check sees no prefix, so no digest): a route on another
        directory is not the app's root."""
        seen = self.history.digests.get(digest_of) or [digest_bytes(b"")]
        for url in (route, f"{route}?v={seen[pick % len(seen)]}"):
            self.fetch(url, "GET", self.headers(url, None, coding, None))

    @rule(coding=st.sampled_from([None, "br, gzip", "zstd"]))
    def request_every_current_url(self, coding: str | None) -> None:
        """What a page rendered now links, each asked for as a browser would."""
        assert self.case is not None
        for logical in FILES:
            url = self.case.static_url(logical)
            self.fetch(url, "GET", self.headers(url, None, coding, "last"))

    @rule(
        attack=st.sampled_from(
            [
                "../secret.txt",
                "%2e%2e/secret.txt",
                ".env",
                "img/../.env",
                ".assetver/manifest.json",
                ".assetver/state",
                "img/%2e%2e/%2e%2e/secret.txt",
            ]
        ),
        query=st.sampled_from(["", "?v=0123456789abcdef"]),
    )
    def hostile(self, attack: str, query: str) -> None:
        assert self.case is not None
        response = self.case.raw(f"GET {PREFIX}{attack}{query} HTTP/1.1".encode())
        status = response.split(b"\r\n", 1)[0]
        assert SECRET not in response and DOTFILE not in response, (attack, response[:300])
        assert b'"files"' not in response, attack
        assert not status.startswith(b"HTTP/1.1 5"), (attack, status)


def _machine(mode: str) -> type[Integrity]:
    return type(f"Integrity_{mode.replace('-', '_')}", (Integrity,), {"mode": mode})


MODES = ["root-production", "root-debug", "output-production", "output-debug"]
"""Root modes draw a prebuilt manifest (assetver_manifest) or none."""


@pytest.mark.timeout(900)  # a failure found is shrunk: that takes longer than a pass
@pytest.mark.parametrize("mode", MODES)
def test_every_label_is_its_bytes(mode: str) -> None:
    run_state_machine_as_test(
        _machine(mode),
        settings=settings(
            max_examples=40,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        ),
    )


# -- concurrent load: a writer thread, several clients, the real watcher ------------------


class Writer(threading.Thread):
    """Saves files every few milliseconds (same size and not, in place and by rename,
    now and then a delete and a restore), recording every version's bytes before it
    can be read; in output-production, deploys a new build into the served output
    every few saves (pruning every build but the last)."""

    def __init__(self, case: Case, versions: dict[str, list[bytes]], known: dict[str, bytes]):
        super().__init__(name="fuzz-writer", daemon=True)
        self.case, self.versions, self.known = case, versions, known
        self.stop = threading.Event()
        self.saves = 0
        self.rng = random.Random(1234)

    def run(self) -> None:
        rng = self.rng
        while not self.stop.is_set():
            logical = rng.choice(list(self.versions))
            versions = self.versions[logical]
            # The first version half the time: the manifest's, so proofs come and go.
            data = versions[0] if rng.random() < 0.5 else rng.choice(versions)
            self.known[digest_bytes(data)] = data
            path = os.path.join(self.case.static, logical)
            how = rng.random()
            if how < 0.05:
                os.unlink(path)
                time.sleep(0.002)
            if how < 0.5:
                with open(path, "r+b" if os.path.exists(path) else "wb") as f:
                    f.write(data)
                    f.truncate()
            else:
                temp = os.path.join(os.path.dirname(path), ".w.tmp")
                with open(temp, "wb") as f:
                    f.write(data)
                os.replace(temp, path)
            self.saves += 1
            if self.case.mode == "output-production" and self.saves % 10 == 0:
                self.deploy()
            time.sleep(rng.choice([0.001, 0.002, 0.004]))

    def deploy(self) -> None:
        options = CompileOptions.make(compress="gzip:1", keep=0, keep_for=0)
        known_bug = FileNotFoundError if PRUNED_COPY_NOT_REWRITTEN else ()
        with contextlib.suppress(assetver.AssetverError, known_bug):  # changed mid-build
            compiled = compile_output(self.case.static, self.case.out, settings=options)
            for entry in compiled.manifest.values():
                with (
                    contextlib.suppress(OSError),
                    open(os.path.join(self.case.out, entry.hashed), "rb") as f,
                ):
                    data = f.read()
                    self.known[digest_bytes(data)] = data


def run_load(mode: str, seconds: float) -> tuple[int, int, list[str]]:
    """Serves ``mode`` under a writer and 8 clients for ``seconds``; returns (responses,
    immutable responses checked, problems)."""
    versions = {"app.js": small_versions(2), "big.bin": big_versions(compressible=False)}
    files = {logical: v[0] for logical, v in versions.items()}
    case = Case(mode, "query", "serve", files)
    case.setUp()
    known: dict[str, bytes] = {digest_bytes(v): v for vs in versions.values() for v in vs}
    if case.output:
        for entry in case.assets.manifest.values():
            with open(os.path.join(case.out, entry.hashed), "rb") as f:
                data = f.read()
            known[digest_bytes(data)] = data
    writer = Writer(case, versions, known)
    found: list[str] = []
    counts = [0, 0, 0]
    old = [f"{PREFIX}{logical}?v={digest_bytes(v)}" for logical, vs in versions.items() for v in vs]

    async def client(n: int) -> None:
        rng = random.Random(n)
        http = AsyncHTTPClient()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            logical = rng.choice(list(versions))
            url = case.static_url(logical) if rng.random() < 0.6 else rng.choice(old)
            headers = rng.choice([{}, {"Range": "bytes=0-99"}, {"Accept-Encoding": "br, gzip"}])
            try:
                response = await http.fetch(
                    case.get_url(url), headers=headers, decompress_response=False, raise_error=False
                )
            except (HTTPStreamClosedError, OSError):
                # Cut short on purpose (a file changed while it was sent): no cache
                # keeps a response shorter than its Content-Length.
                counts[2] += 1
                continue
            counts[0] += 1
            counts[1] += "immutable" in response.headers.get("Cache-Control", "")
            found.extend(problems(url, "GET", headers, response, known, all_known=False))

    async def main() -> None:
        await asyncio.gather(*(client(n) for n in range(8)))

    try:
        case.fetch(case.static_url("app.js"))  # starts the watcher (debug) on the loop
        writer.start()
        case.io_loop.run_sync(main, timeout=seconds + 30)
    finally:
        writer.stop.set()
        writer.join()
        case.tearDown()
        case.doCleanups()
    assert writer.saves > 50, "the writer did not run"
    return counts[0], counts[1], found


@pytest.mark.parametrize("mode", MODES)
def test_concurrent_saves_never_mislabel(mode: str) -> None:
    """A writer saving every few milliseconds, 8 clients, the real watcher (debug):
    not one response may carry a label its bytes do not have."""
    responses, immutable, found = run_load(mode, seconds=0.6)
    print(f"{mode}: {responses} responses, {immutable} immutable, {len(found)} wrong")
    assert responses > 30 and immutable > 0, (responses, immutable)
    assert not found, f"{len(found)} wrong of {responses}:\n" + "\n".join(found[:5])
