"""A small headless-Chromium harness for page tests, driven over the DevTools protocol.

Page tests ask what a real browser does with the headers assetver sets: which assets
a return visit still fetches, whether Subresource Integrity and CORS pass. Only a
browser answers that, so this launches Chromium and speaks the Chrome DevTools
Protocol (CDP) over Tornado's own websocket client: no new dependency.

Usage, inside any running asyncio loop (``asyncio.run``, or ``gen_test`` in an
``AsyncHTTPTestCase`` whose server shares the loop)::

    async with Browser() as browser:
        first = await browser.visit(url)
        again = await browser.visit(url)  # the return visit
        assert again.network(documents=False) == [], again.report()
        assert again.errors() == [] and again.failed() == []

Return visits, as verified by tests/test_browser_harness.py on Chromium 156: each
`Browser` has its own temporary profile, so its HTTP cache starts empty and lasts
across its visits. `Browser.visit` opens a new tab, navigates it (``Page.navigate``,
as a link or the address bar does), waits for its load event and then for the network
to be quiet, and closes it: a user coming back later. Then an asset that is still
fresh (``max-age``, ``immutable``) is answered from the disk cache with no request at
all; a ``no-cache`` one is revalidated with a conditional request (304); the page
itself, having no freshness of its own, is revalidated too. `Tab.visit` again in the
same tab behaves the same, except that Blink's memory cache answers the fresh assets.
A hard reload (which refetches everything unconditionally) is never used.

Everything waits with a bound, and teardown always kills the browser's whole process
group and removes the profile, even after a failure.

Chromium's ways, which the API above smooths over:

- SRI refusals raise no ``Network.loadingFailed``: the response loads in full and is
  dropped, with a ``security`` console error naming it; that sets
  `Exchange.integrity_failed`. CORS blocks do fail the load (``cors_error``).
- After a revalidation the page is told 200 (from the HTTP cache) or 304 (from the
  memory cache); `Exchange.wire_status` is what the server sent, and it may arrive
  before the request it belongs to.
- On its first visit to an origin Chromium fetches ``/favicon.ico`` itself (type
  ``Other``); a 404 there is a console error. Pages under test declare an icon
  (``<link rel=icon href="data:,">``) or serve one.
- An error status with an empty body is a navigation error (`Visit.error`): Chromium
  shows its own error page.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, BinaryIO

from tornado.websocket import WebSocketClientConnection, websocket_connect

__all__ = [
    "CHROMIUM_FLAGS",
    "Browser",
    "BrowserError",
    "ConsoleMessage",
    "Exchange",
    "FontFace",
    "JavaScriptError",
    "Tab",
    "Visit",
    "find_chromium",
    "tiny_font",
]

#: Flags this machine needs: no sandbox (root in a container), no GPU, no QUIC, and no
#: background traffic that would show up in (or race with) the network log.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-default-browser-check",
    "--disable-extensions",
    "--mute-audio",
)

# Debian's /usr/bin/chromium is a shell script that sources /etc/chromium.d (adding
# --enable-gpu-rasterization, --load-extension=... and, here, tripping over a /dev/shm
# mounted twice); the binary it execs is used directly when it is there.
_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
_ON_PATH = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Returns a Chromium executable, or None so a test can skip with a reason."""
    for path in _CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    for name in _ON_PATH:
        found = shutil.which(name)
        if found is not None:
            return found
    return None


class BrowserError(Exception):
    """The browser could not be started, driven, or did not answer in time."""


class JavaScriptError(BrowserError):
    """An expression given to `Tab.evaluate` threw."""


@dataclass
class Exchange:
    """One request the page made and what became of it (one per redirect hop).

    ``from_memory_cache`` is ``Network.requestServedFromCache`` (Blink's memory cache),
    ``from_disk_cache`` is ``response.fromDiskCache`` (a fresh HTTP-cache entry):
    either means no request left the browser (`from_cache`). A revalidation is a
    network exchange (`revalidated` when it got a 304).
    """

    request_id: str
    url: str
    method: str
    resource_type: str
    request_headers: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    from_memory_cache: bool = False
    from_disk_cache: bool = False
    #: the status actually received (``responseReceivedExtraInfo``); None when no
    #: request left the browser, or for the browser's own favicon fetch
    wire_status: int | None = None
    #: ``Network.loadingFinished.encodedDataLength``: bytes read from the network
    encoded_length: int | None = None
    finished: bool = False
    #: ``Network.loadingFailed.errorText``, e.g. ``net::ERR_FAILED`` for a CORS block
    error: str | None = None
    #: ``loadingFailed.blockedReason`` (CSP, CORP, mixed content...)
    blocked_reason: str | None = None
    #: ``loadingFailed.corsErrorStatus.corsError``, e.g. ``MissingAllowOriginHeader``
    cors_error: str | None = None
    canceled: bool = False
    #: refused by Subresource Integrity. Chromium loads such a response completely and
    #: then discards it: no ``loadingFailed``, only a console error naming the URL,
    #: which is what sets this.
    integrity_failed: bool = False

    @property
    def from_cache(self) -> bool:
        """True when the browser answered this itself, without any request."""
        return self.from_memory_cache or self.from_disk_cache

    @property
    def revalidated(self) -> bool:
        """A conditional request answered 304.

        The page itself may be told 200 (the cached copy, from the HTTP cache) or 304
        (when Blink's memory cache revalidated); ``wire_status`` is what was received.
        """
        return self.wire_status == 304 or self.status == 304

    @property
    def failed(self) -> bool:
        """The page did not get this resource: a network/CORS/CSP failure or SRI."""
        return self.error is not None or self.integrity_failed

    def __str__(self) -> str:
        outcome = "" if self.status is None else str(self.status)
        if self.wire_status is not None and self.wire_status != self.status:
            outcome += f" (wire {self.wire_status})"
        if self.from_memory_cache:
            outcome += " (memory cache)"
        elif self.from_disk_cache:
            outcome += " (disk cache)"
        if self.error is not None:
            outcome += f" FAILED {self.error}"
        for label, value in (("blocked", self.blocked_reason), ("cors", self.cors_error)):
            if value:
                outcome += f" {label}={value}"
        if self.integrity_failed:
            outcome += " BLOCKED by integrity check"
        url = self.url if len(self.url) <= 160 else self.url[:100] + "..."  # data: URLs
        return f"{self.method} {url} [{self.resource_type}] -> {outcome.strip()}"


@dataclass(frozen=True)
class ConsoleMessage:
    """A console message or uncaught exception.

    ``source`` is ``"console"`` (``console.*`` calls), ``"exception"`` (uncaught), or
    ``Log.entryAdded``'s source (``"network"``, ``"security"``, ``"javascript"``, ...),
    which is where Chromium reports SRI and CORS failures.
    """

    source: str
    level: str
    text: str
    url: str | None = None

    def __str__(self) -> str:
        return f"[{self.source}:{self.level}] {self.text}"


@dataclass(frozen=True)
class FontFace:
    """One entry of ``document.fonts`` after ``document.fonts.ready``."""

    family: str
    status: str  # "unloaded", "loading", "loaded" or "error"
    style: str
    weight: str


@dataclass
class Visit:
    """Everything one navigation did, up to network idle."""

    url: str
    #: ``Page.navigate``'s ``errorText``: ``net::ERR_CONNECTION_REFUSED``, or
    #: ``net::ERR_HTTP_RESPONSE_CODE_FAILURE`` for an error status with an empty body
    #: (Chromium shows its own error page instead); also listed in `errors`
    error: str | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    console: list[ConsoleMessage] = field(default_factory=list)
    #: ``document.fonts`` when asked for (``visit(url, fonts=True)``), else None
    fonts: list[FontFace] | None = None

    @property
    def document(self) -> Exchange | None:
        """The last exchange for the page itself (after redirects)."""
        docs = [e for e in self.exchanges if e.resource_type == "Document"]
        return docs[-1] if docs else None

    def network(self, *, documents: bool = True) -> list[Exchange]:
        """Exchanges that went to the network (not answered from a cache, not data:).

        ``documents=False`` leaves out the pages themselves, which a return visit
        revalidates: what is left is the assets that were requested.
        """
        return [
            e
            for e in self.exchanges
            if not e.from_cache
            and not e.url.startswith(("data:", "blob:"))
            and (documents or e.resource_type != "Document")
        ]

    def cached(self) -> list[Exchange]:
        """Exchanges answered from the memory or disk cache."""
        return [e for e in self.exchanges if e.from_cache]

    def failed(self) -> list[Exchange]:
        """Loads the page did not get (failed, blocked, or refused by SRI)."""
        return [e for e in self.exchanges if e.failed]

    def errors(self) -> list[ConsoleMessage]:
        """Console errors and uncaught exceptions."""
        return [m for m in self.console if m.level == "error"]

    def find(self, fragment: str) -> list[Exchange]:
        """Exchanges whose URL contains ``fragment``."""
        return [e for e in self.exchanges if fragment in e.url]

    def report(self) -> str:
        """A readable log for assertion messages."""
        lines = [f"visit {self.url}:" + (f" {self.error}" if self.error else "")]
        lines += [f"  {e}" for e in self.exchanges]
        lines += [f"  {m}" for m in self.console]
        if self.fonts is not None:
            lines += [f"  font {f.family!r} {f.status}" for f in self.fonts]
        return "\n".join(lines)


# "Failed to find a valid digest in the 'integrity' attribute for resource 'URL' with
# computed SHA-384 integrity '...'. The resource has been blocked." (and the variant for
# a cross-origin resource loaded without CORS, which cannot be checked).
_SRI_RESOURCE = re.compile(r"resource '([^']+)'")

_FONTS_JS = """
document.fonts.ready.then(() => Array.from(document.fonts, f => ({
    family: f.family, status: f.status, style: f.style, weight: f.weight,
})))
"""


def _remote_text(obj: dict[str, Any]) -> str:
    """Renders a CDP ``Runtime.RemoteObject`` roughly as the console would."""
    if "value" in obj:
        value = obj["value"]
        return value if isinstance(value, str) else json.dumps(value)
    if "unserializableValue" in obj:
        return str(obj["unserializableValue"])
    return str(obj.get("description", obj.get("type", "")))


class _Recording:
    """Collects one visit's events and tells when the network has fallen quiet."""

    def __init__(self, url: str) -> None:
        self.visit = Visit(url)
        self.by_id: dict[str, Exchange] = {}
        self.hops: dict[str, list[Exchange]] = {}  # a request id's redirect hops, in order
        # responseReceivedExtraInfo comes from the network service, and may arrive
        # before the renderer's requestWillBeSent: its statuses wait here till then
        self.early_wire: dict[str, list[int]] = {}
        self.in_flight: set[str] = set()
        self.changed = asyncio.Event()
        self.last_activity = time.monotonic()

    def _touch(self) -> None:
        self.last_activity = time.monotonic()
        self.changed.set()

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is not None:
            handler(params)

    def _Network_requestWillBeSent(self, p: dict[str, Any]) -> None:
        rid = p["requestId"]
        previous = self.by_id.get(rid)
        if previous is not None and "redirectResponse" in p:
            self._response(previous, p["redirectResponse"])
            previous.finished = True
        request = p["request"]
        exchange = Exchange(
            request_id=rid,
            url=request["url"] + request.get("urlFragment", ""),
            method=request["method"],
            resource_type=p.get("type", "Other"),
            request_headers={k.lower(): v for k, v in request.get("headers", {}).items()},
        )
        self.by_id[rid] = exchange
        self.hops.setdefault(rid, []).append(exchange)
        early = self.early_wire.get(rid)
        if early:
            exchange.wire_status = early.pop(0)
        self.visit.exchanges.append(exchange)
        self.in_flight.add(rid)
        self._touch()

    def _Network_requestServedFromCache(self, p: dict[str, Any]) -> None:
        exchange = self.by_id.get(p["requestId"])
        if exchange is not None:
            exchange.from_memory_cache = True

    def _response(self, exchange: Exchange, response: dict[str, Any]) -> None:
        exchange.status = int(response["status"])
        exchange.response_headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
        exchange.from_disk_cache = bool(response.get("fromDiskCache"))
        if response.get("fromPrefetchCache"):
            exchange.from_disk_cache = True

    def _Network_responseReceived(self, p: dict[str, Any]) -> None:
        exchange = self.by_id.get(p["requestId"])
        if exchange is not None:
            self._response(exchange, p["response"])
            self._touch()

    def _Network_responseReceivedExtraInfo(self, p: dict[str, Any]) -> None:
        rid = p["requestId"]
        waiting = [e for e in self.hops.get(rid, []) if e.wire_status is None]
        if waiting:
            waiting[0].wire_status = int(p["statusCode"])
        else:
            self.early_wire.setdefault(rid, []).append(int(p["statusCode"]))

    def _Network_loadingFinished(self, p: dict[str, Any]) -> None:
        exchange = self.by_id.get(p["requestId"])
        if exchange is not None:
            exchange.finished = True
            exchange.encoded_length = int(p.get("encodedDataLength", 0))
        self.in_flight.discard(p["requestId"])
        self._touch()

    def _Network_loadingFailed(self, p: dict[str, Any]) -> None:
        exchange = self.by_id.get(p["requestId"])
        if exchange is not None:
            exchange.error = p.get("errorText") or "failed"
            exchange.blocked_reason = p.get("blockedReason")
            exchange.cors_error = (p.get("corsErrorStatus") or {}).get("corsError")
            exchange.canceled = bool(p.get("canceled"))
        self.in_flight.discard(p["requestId"])
        self._touch()

    def _Runtime_consoleAPICalled(self, p: dict[str, Any]) -> None:
        kind = p.get("type", "log")
        level = {"assert": "error", "trace": "log"}.get(kind, kind)
        if level not in ("error", "warning", "info", "debug"):
            level = "log"
        text = " ".join(_remote_text(a) for a in p.get("args", []))
        frames = (p.get("stackTrace") or {}).get("callFrames") or [{}]
        self.visit.console.append(ConsoleMessage("console", level, text, frames[0].get("url")))

    def _Runtime_exceptionThrown(self, p: dict[str, Any]) -> None:
        details = p["exceptionDetails"]
        exception = details.get("exception")
        text = _remote_text(exception) if exception else details.get("text", "exception")
        self.visit.console.append(ConsoleMessage("exception", "error", text, details.get("url")))

    def _Log_entryAdded(self, p: dict[str, Any]) -> None:
        entry = p["entry"]
        text = entry["text"]
        self.visit.console.append(
            ConsoleMessage(entry["source"], entry["level"], text, entry.get("url"))
        )
        if entry["source"] == "security" and "integrity" in text and "blocked" in text:
            refused = _SRI_RESOURCE.search(text)
            for exchange in self.visit.exchanges:
                if refused is not None and exchange.url == refused[1]:
                    exchange.integrity_failed = True


class Tab:
    """One page target, attached over the browser's single websocket (flat sessions)."""

    def __init__(self, browser: Browser, target_id: str, session_id: str) -> None:
        self._browser = browser
        self.target_id = target_id
        self.session_id = session_id
        self._recording: _Recording | None = None
        self._load_loaders: set[str] = set()
        #: why this tab can no longer load anything (crashed, connection lost), if so
        self.gone: str | None = None

    async def _send(
        self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        return await self._browser.send(method, params, session_id=self.session_id, timeout=timeout)

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.lifecycleEvent" and params.get("name") == "load":
            self._load_loaders.add(params.get("loaderId", ""))
        if method == "Inspector.targetCrashed":
            self.gone = "the tab crashed"
        elif method == "Inspector.detached":
            self.gone = f"DevTools detached: {params.get('reason', '')}"
        recording = self._recording
        if recording is not None:
            recording.on_event(method, params)
            if method.startswith(("Page.lifecycleEvent", "Inspector.")):
                recording._touch()

    async def visit(
        self, url: str, *, fonts: bool = False, idle: float = 0.2, timeout: float | None = None
    ) -> Visit:
        """Navigates this tab to ``url`` as a user would (a link or the address bar).

        Returns once the page's load event has fired and no request has been in flight,
        nor started, for ``idle`` seconds. With ``fonts``, also waits for
        ``document.fonts.ready`` and records every font face's status.
        """
        timeout = self._browser.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        recording = _Recording(url)
        self._recording = recording
        try:
            result = await self._send("Page.navigate", {"url": url}, timeout=timeout)
            if result.get("errorText"):
                # Chromium shows its error page, which loads like any other page.
                recording.visit.error = result["errorText"]
                recording.visit.console.append(
                    ConsoleMessage("navigation", "error", result["errorText"], url)
                )
            loader_id = result.get("loaderId", "")
            while True:
                if self.gone is not None:
                    raise BrowserError(f"{self.gone} while loading {url}")
                now = time.monotonic()
                wait = deadline - now
                if loader_id in self._load_loaders and not recording.in_flight:
                    quiet = now - recording.last_activity
                    if quiet >= idle:
                        break
                    wait = min(wait, idle - quiet)
                if wait <= 0:
                    pending = [recording.by_id[r].url for r in sorted(recording.in_flight)]
                    loaded = loader_id in self._load_loaders
                    raise BrowserError(
                        f"{url}: no load and network idle after {timeout}s "
                        f"(load event: {loaded}; in flight: {pending})\n" + recording.visit.report()
                    )
                recording.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(recording.changed.wait(), wait)
            if fonts:
                remaining = max(deadline - time.monotonic(), 0.1)
                faces = await self.evaluate(_FONTS_JS, timeout=remaining)
                recording.visit.fonts = [FontFace(**face) for face in faces]
        finally:
            self._recording = None
        return recording.visit

    async def evaluate(self, expression: str, *, timeout: float | None = None) -> Any:
        """Evaluates JavaScript in the page, awaiting a promise, and returns its value.

        The value comes back as JSON (``returnByValue``), so return plain data.
        """
        result = await self._send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            timeout=timeout,
        )
        details = result.get("exceptionDetails")
        if details is not None:
            exception = details.get("exception")
            text = _remote_text(exception) if exception else details.get("text", "")
            raise JavaScriptError(f"{expression.strip()[:200]!r} threw: {text}")
        return result.get("result", {}).get("value")

    async def close(self) -> None:
        """Closes the tab; the profile, and so its cache, stays with the browser."""
        self._browser._tabs.pop(self.session_id, None)
        if self._browser._ws is not None:
            with contextlib.suppress(BrowserError):
                await self._browser.send("Target.closeTarget", {"targetId": self.target_id})


class Browser:
    """A headless Chromium with a fresh profile, for use as ``async with Browser():``.

    ``timeout`` bounds every wait: start-up, each DevTools command, each visit.
    """

    def __init__(
        self,
        executable: str | None = None,
        *,
        timeout: float = 10.0,
        flags: Iterable[str] = (),
    ) -> None:
        found = executable or find_chromium()
        if found is None:
            raise BrowserError("no Chromium installed: apt-get install chromium")
        self.executable = found
        self.timeout = timeout
        self.flags = (*CHROMIUM_FLAGS, *flags)
        self._tmp: str | None = None
        self._log: BinaryIO | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ws: WebSocketClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tabs: dict[str, Tab] = {}

    async def __aenter__(self) -> Browser:
        try:
            await self._start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def pid(self) -> int:
        """The browser's process id, which is also its process group's id."""
        assert self._proc is not None, "the browser is not started"
        return self._proc.pid

    @property
    def profile(self) -> str:
        """The temporary ``--user-data-dir`` (removed on close)."""
        assert self._tmp is not None, "the browser is not started"
        return os.path.join(self._tmp, "profile")

    def log(self) -> str:
        """Chromium's own stderr so far (for failure messages)."""
        if self._tmp is None:
            return ""
        try:
            with open(os.path.join(self._tmp, "chromium.log"), "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    async def _start(self) -> None:
        self._tmp = tempfile.mkdtemp(prefix="assetver-chromium-")
        os.mkdir(self.profile)
        self._log = open(os.path.join(self._tmp, "chromium.log"), "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                self.executable,
                *self.flags,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            start_new_session=True,  # its own process group, killed as one
            preexec_fn=_die_with_parent,
        )
        atexit.register(self._cleanup)
        port, path = await self._devtools_address()
        self._ws = await asyncio.wait_for(
            websocket_connect(
                f"ws://127.0.0.1:{port}{path}",
                connect_timeout=self.timeout,
                max_message_size=256 * 1024 * 1024,
            ),
            self.timeout,
        )
        self._reader = asyncio.ensure_future(self._read(self._ws))

    async def _devtools_address(self) -> tuple[int, str]:
        """Waits (boundedly) for Chromium to write ``DevToolsActivePort`` in the profile."""
        assert self._proc is not None
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrowserError(
                    f"{self.executable} exited with {self._proc.returncode}:\n{self.log()}"
                )
            with contextlib.suppress(OSError, ValueError):
                with open(port_file) as f:
                    lines = f.read().split("\n")
                if len(lines) >= 2 and lines[1].startswith("/devtools/browser/"):
                    return int(lines[0]), lines[1].strip()
            await asyncio.sleep(0.02)
        raise BrowserError(f"no DevToolsActivePort after {self.timeout}s:\n{self.log()}")

    async def _read(self, ws: WebSocketClientConnection) -> None:
        """Routes command results to their callers and events to their tabs."""
        try:
            while True:
                raw = await ws.read_message()
                if raw is None:
                    break
                message = json.loads(raw)
                if "id" in message:
                    future = self._pending.pop(message["id"], None)
                    if future is not None and not future.done():
                        future.set_result(message)
                    continue
                tab = self._tabs.get(message.get("sessionId", ""))
                if tab is not None:
                    tab._on_event(message["method"], message.get("params", {}))
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BrowserError("the DevTools connection closed"))
            self._pending.clear()
            for tab in self._tabs.values():  # wakes a visit waiting for events
                tab._on_event("Inspector.detached", {"reason": "the connection closed"})

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session_id: str | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Sends one CDP command and returns its result (bounded by ``timeout``)."""
        if self._ws is None or self._reader is None:
            raise BrowserError(f"{method}: the browser is not running")
        if self._reader.done():
            cause = None if self._reader.cancelled() else self._reader.exception()
            raise BrowserError(f"{method}: the DevTools connection is closed") from cause
        self._next_id += 1
        command_id = self._next_id
        message: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        timeout = self.timeout if timeout is None else timeout
        try:
            await self._ws.write_message(json.dumps(message))
            reply = await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise BrowserError(f"{method}: no answer in {timeout}s") from None
        except Exception as e:
            if isinstance(e, BrowserError):
                raise
            raise BrowserError(f"{method}: {e!r}") from e
        finally:
            self._pending.pop(command_id, None)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message', reply['error'])}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def new_tab(self) -> Tab:
        """Opens a blank tab with the Page, Network, Runtime and Log domains enabled."""
        created = await self.send("Target.createTarget", {"url": "about:blank"})
        target_id = created["targetId"]
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target_id, "flatten": True}
        )
        tab = Tab(self, target_id, attached["sessionId"])
        self._tabs[tab.session_id] = tab
        try:
            await asyncio.gather(
                tab._send("Page.enable"),
                tab._send("Page.setLifecycleEventsEnabled", {"enabled": True}),
                tab._send("Network.enable"),
                tab._send("Runtime.enable"),
                tab._send("Log.enable"),
            )
        except BaseException:
            await tab.close()
            raise
        return tab

    @contextlib.asynccontextmanager
    async def tab(self) -> AsyncIterator[Tab]:
        """``async with browser.tab() as tab:`` a tab that is closed afterwards."""
        tab = await self.new_tab()
        try:
            yield tab
        finally:
            await tab.close()

    async def visit(
        self, url: str, *, fonts: bool = False, idle: float = 0.2, timeout: float | None = None
    ) -> Visit:
        """Visits ``url`` in a new tab, closed afterwards (see `Tab.visit`)."""
        async with self.tab() as tab:
            return await tab.visit(url, fonts=fonts, idle=idle, timeout=timeout)

    async def close(self) -> None:
        """Kills the browser's process group and removes the profile; safe to repeat."""
        ws, self._ws = self._ws, None
        self._tabs.clear()
        try:
            if ws is not None:
                ws.close()  # a close frame: Chromium answers it and the reader ends
                if self._reader is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(asyncio.shield(self._reader), 1.0)
        finally:
            self._cleanup()
            reader, self._reader = self._reader, None
            if reader is not None and not reader.done():  # the kill closed its socket
                reader.cancel()
                with contextlib.suppress(BaseException):
                    await reader

    def _cleanup(self) -> None:
        """Kills the process group and removes the files; also run at exit as a backstop."""
        atexit.unregister(self._cleanup)
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                # The leader is not reaped yet, so its pid still names this group only.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL undelivered
                    proc.kill()
                    proc.wait(timeout=5)
                # SIGKILL takes a moment to land on the renderers and helpers: the
                # profile is removed once none of them can still write to it.
                deadline = time.monotonic() + 5
                while _live_members(proc.pid) and time.monotonic() < deadline:
                    time.sleep(0.005)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
                self._tmp = None


def _live_members(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies are not).

    Killed children are reparented to init, which reaps them in its own time (about a
    second on this machine), so ``killpg(pgid, 0)`` would still find them. Linux only:
    elsewhere this does not wait.
    """
    try:
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def _prctl() -> Any:
    """libc's prctl, looked up here rather than in the forked child (dlopen locks)."""
    try:
        return ctypes.CDLL(None).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _prctl()


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL Chromium if the test process dies (Linux).

    A backstop for a test runner killed outright, when no teardown runs at all.
    """
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _checksum(data: bytes) -> int:
    data += b"\0" * (-len(data) % 4)
    words: tuple[int, ...] = struct.unpack(f">{len(data) // 4}I", data)
    return sum(words) & 0xFFFFFFFF


def tiny_font(family: str = "Probe") -> bytes:
    """A valid TrueType font (one square glyph for all of printable ASCII), ~900 bytes.

    Chromium runs web fonts through the OTS sanitizer and rejects junk, so a page test
    needs a real font to see ``document.fonts`` report ``loaded``; this builds one
    instead of shipping a binary.
    """
    first, last = 0x20, 0x7E
    square = struct.pack(">5h2H", 1, 100, 0, 600, 700, 3, 0)  # 1 contour, bbox, end pt, no code
    square += bytes([0x01] * 4)  # four on-curve points, 16-bit deltas
    square += struct.pack(">4h4h", 100, 500, 0, -500, 0, 0, 700, 0)
    square += b"\0" * (-len(square) % 4)
    segments = 2  # printable ASCII -> glyph 1 through the glyph array, then the 0xFFFF stop
    search = 2 * (1 << (segments.bit_length() - 1))
    cmap4 = struct.pack(
        ">4H", segments * 2, search, segments.bit_length() - 1, segments * 2 - search
    )
    cmap4 += struct.pack(">2H2x2H2h2H", last, 0xFFFF, first, 0xFFFF, 0, 1, segments * 2, 0)
    cmap4 += struct.pack(f">{last - first + 1}H", *[1] * (last - first + 1))
    cmap4 = struct.pack(">3H", 4, 6 + len(cmap4), 0) + cmap4
    names = [family, "Regular", f"{family}-Regular", f"{family} Regular", "Version 1.0"]
    names.append(f"{family}-Regular")
    records = strings = b""
    for name_id, text in enumerate(names, start=1):
        encoded = text.encode("utf-16-be")
        records += struct.pack(">6H", 3, 1, 0x409, name_id, len(encoded), len(strings))
        strings += encoded
    tables = {
        b"OS/2": struct.pack(
            ">HhHHH10hh10s4I4sHHHhhhHHIIhhHHH",
            *(4, 700, 400, 5, 0, 650, 600, 0, 75, 650, 600, 0, 350, 50, 250, 0, bytes(10)),
            *(1, 0, 0, 0, b"NONE", 0x40, first, last, 800, -200, 0, 800, 200, 1, 0),
            *(500, 700, 0, 0x20, 1),
        ),
        b"cmap": struct.pack(">4HI", 0, 1, 3, 1, 12) + cmap4,
        b"glyf": square,
        b"head": struct.pack(
            ">4I2H2q4h2H3h",
            *(0x00010000, 0x00010000, 0, 0x5F0F3CF5, 0x000B, 1000, 0, 0),
            *(100, 0, 600, 700, 0, 8, 2, 0, 0),
        ),
        b"hhea": struct.pack(
            ">I3hH6h8xhH", 0x00010000, 800, -200, 0, 700, 0, 100, 600, 1, 0, 0, 0, 2
        ),
        b"hmtx": struct.pack(">HhHh", 700, 0, 700, 100),
        b"loca": struct.pack(">3H", 0, 0, len(square) // 2),
        b"maxp": struct.pack(">IH13H", 0x00010000, 2, 4, 1, 0, 0, 2, *[0] * 8),
        b"name": struct.pack(">3H", 0, len(names), 6 + len(records)) + records + strings,
        b"post": struct.pack(">IIhh5I", 0x00030000, 0, -100, 50, 0, 0, 0, 0, 0),
    }
    count = len(tables)
    search = 16 * (1 << (count.bit_length() - 1))
    font = bytearray(
        struct.pack(">I4H", 0x00010000, count, search, count.bit_length() - 1, count * 16 - search)
    )
    offset = len(font) + 16 * count
    body = bytearray()
    head_at = 0
    for tag in sorted(tables):
        data = tables[tag]
        if tag == b"head":
            head_at = offset + len(body)
        font += struct.pack(">4s3I", tag, _checksum(data), offset + len(body), len(data))
        body += data + b"\0" * (-len(data) % 4)
    font += body
    adjustment = (0xB1B0AFBA - _checksum(bytes(font))) & 0xFFFFFFFF
    font[head_at + 8 : head_at + 12] = struct.pack(">I", adjustment)
    return bytes(font)
