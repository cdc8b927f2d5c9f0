"""Several worker processes, as in Tornado's deployment guide: the manifest is loaded
before the fork, so every worker renders the same URLs and none hashes anything."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from assetver import Entry, Manifest, build_manifest
from assetver.hashing import digest_bytes

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, dict(r.headers), r.read()


def test_two_workers_render_identical_urls_without_hashing(tmp_path: Path) -> None:
    static = tmp_path / "static"
    shutil.copytree(EXAMPLE / "static", static, ignore=shutil.ignore_patterns(".assetver"))
    real = build_manifest(static)
    # A digest no file has: a worker that hashed instead of reading the manifest would
    # render the real one; and since no file has it, it is never served as proven.
    planted = "feedfacecafebeef"
    files = dict(real.items())
    files["css/site.css"] = Entry(planted, real["css/site.css"].size)
    manifest_path = tmp_path / "manifest.json"
    Manifest(files).dump(manifest_path)

    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLE / "app.py"),
            f"--port={port}",
            "--processes=2",
            f"--manifest={manifest_path}",
            "--logging=warning",
        ],
        env=env,
        start_new_session=True,
    )
    try:
        pages: dict[str, str] = {}
        deadline = time.monotonic() + 15
        while len(pages) < 2 and time.monotonic() < deadline:
            try:
                _, _, body = fetch(f"http://127.0.0.1:{port}/")
            except OSError:
                time.sleep(0.05)
                continue
            text = body.decode()
            pid = re.search(r"process (\d+)", text)
            assert pid is not None
            pages[pid.group(1)] = re.sub(r"process \d+", "", text)
        assert len(pages) == 2, "both workers should have answered"
        first, second = pages.values()
        assert first == second
        assert f"/static/css/site.css?v={planted}" in first
        assert f"/static/js/site.js?v={real['js/site.js'].digest}" in first
        # The planted digest is not the file's: never immutable, whichever worker answers.
        status, headers, _ = fetch(f"http://127.0.0.1:{port}/static/css/site.css?v={planted}")
        assert status == 200 and headers["Cache-Control"] == "no-cache"
        digest = real["js/site.js"].digest
        status, headers, body = fetch(f"http://127.0.0.1:{port}/static/js/site.js?v={digest}")
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert digest_bytes(body) == digest
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
