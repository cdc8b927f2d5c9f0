"""The watcher, with real files, real watchdog observers and bounded waits."""

from __future__ import annotations

import json
import logging
import operator
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

import assetver
from assetver.build import refresh
from assetver.manifest import Entry, Manifest
from assetver.watch import POLL_INTERVAL, Watcher, WatchError, refuse_in_child

from .conftest import write

BOUND = 2.0
"""Seconds any expectation may take; typical is the 50 ms debounce plus the rebuild."""


class Recorder:
    """An ``on_change`` that keeps each manifest delivered, with its arrival time."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, Manifest]] = []
        self._cond = threading.Condition()

    def __call__(self, manifest: Manifest) -> None:
        with self._cond:
            self.calls.append((time.monotonic(), manifest))
            self._cond.notify_all()

    def wait_for(
        self, check: Callable[[Manifest], bool], *, since: float, timeout: float = BOUND
    ) -> tuple[float, Manifest]:
        """Waits until the latest manifest, delivered after ``since``, passes ``check``.

        Returns the latency from ``since`` and the manifest.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self.calls and self.calls[-1][0] >= since and check(self.calls[-1][1]):
                    at, manifest = self.calls[-1]
                    return at - since, manifest
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    latest = self.calls[-1][1] if self.calls else None
                    pytest.fail(f"no matching manifest within {timeout} s; latest: {latest!r}")
                self._cond.wait(remaining)

    def wait_for_build(
        self, root: Path, *, since: float, timeout: float = BOUND, exclude: list[str] | None = None
    ) -> Manifest:
        """Waits until the latest manifest equals a fresh build of ``root``."""
        expected = assetver.build_manifest(root, exclude=exclude or ())
        return self.wait_for(lambda m: m == expected, since=since, timeout=timeout)[1]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def watcher(tree: Path, recorder: Recorder) -> Iterator[Watcher]:
    with Watcher(tree, on_change=recorder) as w:
        yield w


def _atomic_save(root: Path, logical_path: str, data: str) -> None:
    target = root / logical_path
    tmp = target.with_name(f".{target.name}.swp")
    tmp.write_text(data)
    os.replace(tmp, target)


def test_start_builds_the_initial_manifest(tree: Path, recorder: Recorder) -> None:
    with Watcher(tree, on_change=recorder) as w:
        assert w.manifest == assetver.build_manifest(tree)
        assert not w.polling
    assert recorder.calls == []


def _new_directory(root: Path) -> None:
    for i in range(3):
        write(root, f"fonts/sub/f{i}.woff2", f"font {i}")


def _directory_moved_in(root: Path) -> None:
    for i in range(3):
        write(root.parent / "outside", f"d/f{i}.js", f"x{i}")
    (root.parent / "outside/d").rename(root / "vendor")


OPERATIONS: dict[str, Callable[[Path], object]] = {
    "create": lambda root: write(root, "css/new.css", "a { }\n"),
    "modify in place, same size": lambda root: (root / "css/app.css").write_text(
        "body { color: tan }\n"
    ),
    "atomic save": lambda root: _atomic_save(root, "css/app.css", "body { color: blue }\n"),
    "delete": lambda root: (root / "css/app.css").unlink(),
    "rename": lambda root: (root / "css/app.css").rename(root / "css/site.css"),
    "new directory with files": _new_directory,
    "directory moved in": _directory_moved_in,
    "deleted directory": lambda root: shutil.rmtree(root / "js"),
    "moved directory": lambda root: (root / "js").rename(root / "scripts"),
    "directory moved out": lambda root: (root / "js").rename(root.parent / "js-out"),
}


@pytest.mark.parametrize("operation", OPERATIONS, ids=list(OPERATIONS))
def test_each_change_reaches_the_callback(
    tree: Path, recorder: Recorder, watcher: Watcher, operation: str
) -> None:
    before = watcher.manifest
    since = time.monotonic()
    OPERATIONS[operation](tree)
    expected = assetver.build_manifest(tree)
    assert expected != before
    latency, got = recorder.wait_for(lambda m: m == expected, since=since)
    assert watcher.manifest == got
    assert latency < BOUND


def test_moved_directory_keeps_digests_under_new_paths(
    tree: Path, recorder: Recorder, watcher: Watcher
) -> None:
    old = watcher.manifest
    since = time.monotonic()
    (tree / "js").rename(tree / "scripts")
    new = recorder.wait_for_build(tree, since=since)
    assert not any(p.startswith("js/") for p in new)
    assert new["scripts/app.js"] == old["js/app.js"]
    assert new["scripts/katex.min.js"] == old["js/katex.min.js"]


def test_latency_of_single_edits(tree: Path, recorder: Recorder, watcher: Watcher) -> None:
    latencies = []
    for i in range(15):
        since = time.monotonic()
        (tree / "css/app.css").write_text(f"body {{ margin: {i}px }}\n")
        expected = assetver.build_manifest(tree)
        latencies.append(recorder.wait_for(partial(operator.eq, expected), since=since)[0])
    median = statistics.median(latencies)
    print(f"\nedit -> callback: median {median * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
    assert median < 0.5
    assert max(latencies) < BOUND


_BURST_WRITER = textwrap.dedent(
    """
    import sys, pathlib
    root = pathlib.Path(sys.argv[1])
    for i in range(1000):
        path = root / f"burst/d{i % 10}/f{i:04}.css"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"/* {i} */")
    """
)


@pytest.mark.parametrize("new_files", [False, True], ids=["modify 1000", "create 1000"])
def test_burst_of_1000_changes_rebuilds_a_few_times(
    tree: Path, recorder: Recorder, new_files: bool
) -> None:
    if not new_files:
        for i in range(1000):
            write(tree, f"burst/d{i % 10}/f{i:04}.css", "old")
    with Watcher(tree, on_change=recorder) as w:
        since = time.monotonic()
        # From another process, as git checkout would.
        subprocess.run([sys.executable, "-c", _BURST_WRITER, str(tree)], check=True, timeout=30)
        written = time.monotonic()
        got = recorder.wait_for_build(tree, since=since)
        assert len(got) == 1006
        assert w.manifest == got
    rebuilds = len(recorder.calls)
    print(
        f"\n1000 files written in {(written - since) * 1000:.0f} ms: {rebuilds} rebuild(s), "
        f"last {(recorder.calls[-1][0] - written) * 1000:.0f} ms after the writer exited"
    )
    assert 1 <= rebuilds <= 3


def test_refresh_hashes_only_what_changed(tree: Path) -> None:
    first = refresh(tree, Manifest())
    assert first.result.hashed == 6
    assert first.result.manifest == assetver.build_manifest(tree)
    same = refresh(tree, first.result.manifest, keys=first.keys)
    assert (same.result.hashed, same.result.reused) == (0, 6)
    one = refresh(tree, first.result.manifest, keys=first.keys, changed={"css/app.css"})
    assert one.result.hashed == 1
    folder = refresh(tree, first.result.manifest, keys=first.keys, changed={"js"})
    assert folder.result.hashed == 2
    (tree / "img/logo.svg").write_text("<svg/>\n")
    missed = refresh(tree, first.result.manifest, keys=first.keys)
    assert missed.result.hashed == 1
    assert missed.result.manifest == assetver.build_manifest(tree)


def test_given_manifest_is_a_head_start(tree: Path, recorder: Recorder) -> None:
    real = assetver.build_manifest(tree)
    trusted = Entry("0123456789abcdef", real["LICENSE"].size)
    given = Manifest({**real, "LICENSE": trusted, "gone.css": Entry("0" * 16, 1)})
    write(tree, "css/app.css", "body { color: a-longer-colour }\n")
    with Watcher(tree, on_change=recorder, manifest=given) as w:
        assert w.manifest["LICENSE"] == trusted
        assert "gone.css" not in w.manifest
        assert w.manifest["css/app.css"] == assetver.build_manifest(tree)["css/app.css"]
    assert recorder.calls == []


def test_rebuilds_use_the_build_filters(tmp_path: Path, recorder: Recorder) -> None:
    root = tmp_path / "static"
    write(root, "app.js", "1")
    outside = write(tmp_path, "secret.txt", "s")
    exclude = ["*.map", "src"]
    with Watcher(root, on_change=recorder, exclude=exclude) as w:
        since = time.monotonic()
        write(root, "app.js.map", "{}")
        write(root, "src/app.ts", "let a")
        write(root, ".hidden", "h")
        write(root, ".assetver/cache.json", "{}")
        write(root, ".assetver-123.tmp", "{}")
        (root / "out-link.txt").symlink_to(outside)
        (root / "in-link.js").symlink_to(root / "app.js")
        write(root, "app.css", "2")
        got = recorder.wait_for_build(root, since=since, exclude=exclude)
        assert set(got) == {"app.css", "app.js", "in-link.js"}
        assert w.manifest == got


def test_hidden_and_state_files_do_not_trigger_rebuilds(
    tree: Path, recorder: Recorder, watcher: Watcher
) -> None:
    write(tree, ".assetver/manifest.json", "{}")
    write(tree, "css/.app.css.swp", "x")
    since = time.monotonic()
    write(tree, "css/real.css", "x")
    recorder.wait_for_build(tree, since=since)
    assert len(recorder.calls) == 1


def test_a_file_deleted_between_scan_and_hash_is_left_out(tmp_path: Path) -> None:
    root = tmp_path / "static"
    names = [f"f{i:05}.css" for i in range(5000)]
    for name in names:
        write(root, name, name)
    first, last = root / names[10], root / names[-1]
    first_atime = first.stat().st_atime_ns
    errors: list[BaseException] = []

    def delete_once_hashing_started() -> None:
        deadline = time.monotonic() + BOUND
        while first.stat().st_atime_ns == first_atime:
            if time.monotonic() > deadline:
                errors.append(TimeoutError("hashing never started"))
                return
        last.unlink()

    deleter = threading.Thread(target=delete_once_hashing_started)
    deleter.start()
    done = refresh(root, Manifest(), jobs=1)
    deleter.join()
    if errors:
        pytest.skip(f"{errors[0]} (atime not updated on this filesystem?)")
    assert done.result.hashed == 5000
    assert names[-1] not in done.result.manifest
    assert names[-1] not in done.keys
    assert done.result.manifest == assetver.build_manifest(root)


def test_files_deleted_while_being_hashed_do_not_stop_the_watcher(
    tree: Path, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="assetver")
    big = b"x" * (4 << 20)
    with Watcher(tree, on_change=recorder, debounce=0.002) as w:
        stop_at = time.monotonic() + 0.4
        i = 0
        while time.monotonic() < stop_at:
            path = write(tree, f"churn/{i % 7}/f{i}.bin", big if i % 5 == 0 else b"small")
            time.sleep(0.001)
            path.unlink()
            i += 1
        (tree / "churn").rename(tree.parent / "churn-gone")
        # The last rebuilds may find what an earlier one delivered: no callback then.
        got = recorder.wait_for_build(tree, since=0.0)
        assert not any(p.startswith("churn/") for p in got)
        assert w.manifest == got
    assert len(recorder.calls) > 1
    assert [r for r in caplog.records if r.name == "assetver" and r.levelno >= logging.ERROR] == []


def test_stop_joins_every_thread_and_is_idempotent(tree: Path, recorder: Recorder) -> None:
    before = set(threading.enumerate())
    w = Watcher(tree, on_change=recorder)
    w.stop()
    w.start()
    started = set(threading.enumerate()) - before
    assert "assetver-watch" in {t.name for t in started}
    assert "assetver-observer" in {t.name for t in started}
    w.stop()
    w.stop()
    assert not [t for t in started if t.is_alive()]
    with pytest.raises(WatchError, match="only once"):
        w.start()


def test_stop_from_the_callback(tree: Path) -> None:
    stopped = threading.Event()

    def on_change(manifest: Manifest) -> None:
        w.stop()
        stopped.set()

    w = Watcher(tree, on_change=on_change)
    w.start()
    try:
        write(tree, "new.css", "x")
        assert stopped.wait(BOUND)
    finally:
        w.stop()


def test_a_failing_callback_is_logged_and_watching_goes_on(
    tree: Path, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def on_change(manifest: Manifest) -> None:
        calls.append(manifest)
        if len(calls) == 1:
            raise ValueError("boom")
        recorder(manifest)

    with Watcher(tree, on_change=on_change):
        write(tree, "one.css", "1")
        since = time.monotonic()
        deadline = since + BOUND
        while not calls and time.monotonic() < deadline:
            time.sleep(0.005)
        write(tree, "two.css", "2")
        recorder.wait_for_build(tree, since=since)
    assert "on_change" in caplog.text and "boom" in caplog.text


def test_missing_root_is_refused(tmp_path: Path, recorder: Recorder) -> None:
    with pytest.raises(assetver.RootError, match="not a directory"):
        Watcher(tmp_path / "nope", on_change=recorder).start()


def test_refused_in_a_forked_child(tree: Path, recorder: Recorder) -> None:
    with pytest.raises(WatchError, match="forked child 3"):
        refuse_in_child(3)
    refuse_in_child(None)
    w = Watcher(tree, on_change=recorder)
    pid = os.fork()
    if pid == 0:
        try:
            w.start()
        except WatchError:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_polling(tree: Path, recorder: Recorder) -> None:
    with Watcher(tree, on_change=recorder, polling=True) as w:
        assert w.polling
        since = time.monotonic()
        (tree / "js").rename(tree / "scripts")
        write(tree, "css/app.css", "body { color: green }\n")
        recorder.wait_for_build(tree, since=since, timeout=BOUND + POLL_INTERVAL)


_FALLBACK_CHILD = textwrap.dedent(
    """
    import ctypes, json, logging, os, sys, threading, time
    import assetver
    from assetver.watch import Watcher

    root, uid = sys.argv[1], int(sys.argv[2])
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    libc = ctypes.CDLL(None, use_errno=True)
    held = 0
    while libc.inotify_init() >= 0:
        held += 1
        if held > 100_000:
            sys.exit("inotify instances are not limited here")
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logging.getLogger("assetver").addHandler(handler)
    got = threading.Event()
    with Watcher(root, on_change=lambda m: got.set()) as w:
        since = time.monotonic()
        with open(os.path.join(root, "app.css"), "w") as f:
            f.write("changed")
        delivered = got.wait(2.5)
        latency = time.monotonic() - since
        fresh = w.manifest == assetver.build_manifest(root)
    print(json.dumps({"polling": w.polling, "delivered": delivered,
                      "fresh": fresh, "latency": latency, "messages": messages}))
    """
)


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or os.geteuid() != 0,
    reason="exhausts inotify instances as a spare uid, which needs Linux and root",
)
def test_falls_back_to_polling_when_inotify_is_exhausted() -> None:
    # A spare uid of our own, so that exhausting its inotify instances disturbs nobody.
    uid = 3_000_000 + os.getpid() % 100_000
    root = Path(tempfile.mkdtemp(prefix="assetver-fallback-"))
    try:
        write(root, "app.css", "before")
        for path in [root, root / "app.css"]:
            os.chown(path, uid, uid)
        proc = subprocess.run(
            [sys.executable, "-c", _FALLBACK_CHILD, str(root), str(uid)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        shutil.rmtree(root)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    print(f"\npolling fallback: change -> callback in {result['latency'] * 1000:.0f} ms")
    assert result["polling"] and result["delivered"] and result["fresh"], result
    [message] = result["messages"]
    assert "polling every" in message and "inotify instance limit" in message
    assert result["latency"] < BOUND
