from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from .e2e_support import find_nginx

# CI explores the same examples every run, so a landing never hinges on a lucky draw;
# locally every run explores new ones.
settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fails a test that leaves a thread running (watchers, hashing pools)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not leaked, f"threads leaked: {[t.name for t in leaked]}"


@pytest.fixture(scope="module")
def nginx_bin() -> str:
    """The nginx binary; CI must have one, elsewhere its tests are skipped."""
    binary = find_nginx()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is required in CI (.ci/run installs the Debian nginx package)")
        pytest.skip("no nginx binary on PATH or at /usr/sbin/nginx; install nginx to run these")
    return binary


def write(root: Path, logical_path: str, data: bytes | str) -> Path:
    """Creates the file ``root/logical_path`` with ``data`` and returns its path."""
    path = root / logical_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small static root like a Tornado app's."""
    root = tmp_path / "static"
    write(root, "css/app.css", "body { color: red }\n")
    write(root, "js/app.js", "console.log('hi');\n")
    write(root, "js/katex.min.js", "/* katex */\n")
    write(root, "img/logo.svg", "<svg xmlns='http://www.w3.org/2000/svg'/>\n")
    write(root, "robots.txt", "User-agent: *\nDisallow: /\n")
    write(root, "LICENSE", "MIT\n")
    return root


def age(root: Path, seconds: float = 10.0) -> None:
    """Makes every file under ``root`` old enough for the build cache to trust.

    mtimes move into the past; ctimes cannot, so this waits (boundedly) until the
    filesystem clock has ticked past the newest ctime, as it would have by the next
    real build.
    """
    newest = 0
    for path in [root, *root.rglob("*")]:
        st = path.stat()
        ns = st.st_mtime_ns - int(seconds * 1e9)
        os.utime(path, ns=(ns, ns))
        newest = max(newest, path.stat().st_ctime_ns)
    probe = root.parent / ".clock-probe"
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        probe.write_bytes(b"")
        if probe.stat().st_mtime_ns > newest:
            break
        time.sleep(0.001)
    probe.unlink()
